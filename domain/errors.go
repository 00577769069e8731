package domain

import (
	"errors"
	"fmt"
)

// Stable error codes. Clients branch on these, so they never change; the
// HTTP layer maps each to a status in one table.
const (
	CodeInvalid              = "invalid_request"
	CodeForbiddenField       = "forbidden_field"
	CodeNotFound             = "not_found"
	CodeIdempotencyReused    = "idempotency_key_reused"
	CodeVersionConflict      = "version_conflict"
	CodeDailyLimitExceeded   = "daily_limit_exceeded"
	CodeInsufficientFunds    = "insufficient_funds"
	CodeFactorNotIndependent = "factor_not_independent"
	CodeProofInvalid         = "proof_invalid"
	CodeAuthFailed           = "authentication_failed"
	CodeAccessLocked         = "access_locked"
	CodeAccountSuspended     = "account_suspended"
	CodeAccountClosed        = "account_closed"
	CodeConflict             = "conflict"
	CodePaymentExpired       = "payment_expired"
	// CodePayeeUnavailable: the payee's service is suspended or its account
	// closed (R14), so it takes no payments.
	CodePayeeUnavailable = "payee_unavailable"
	// CodeBankAccountNameMismatch: the bound bank account was bound under
	// another holder name than the account's current one (R10's exclusion
	// covers only the customer's own same-name bank account).
	CodeBankAccountNameMismatch = "bank_account_name_mismatch"
	// CodeInsufficientVerification: the proofs of a sensitive change
	// verified but counted fewer factor categories than the change needs
	// (two for a phone change or credential reset, one for an identity
	// change). Details: required_categories, verified_categories.
	CodeInsufficientVerification = "insufficient_verification"
	// CodeUnauthenticated: the request carries no valid credentials (no
	// session token or staff key, or one that expired or was revoked).
	CodeUnauthenticated = "unauthenticated"
	// CodeForbidden: the credentials are valid but may not do this here
	// (another holder's account, a staff role without the right). An id
	// the caller may not see answers the same whether it exists or not.
	CodeForbidden = "forbidden"
	// CodeUnsupportedMediaType: a request body that is not sent as
	// application/json.
	CodeUnsupportedMediaType = "unsupported_media_type"
	// CodeMethodNotAllowed: the path exists, but not with this method.
	CodeMethodNotAllowed = "method_not_allowed"
	// CodeRateLimited: too many failures from this client address or
	// against this account, or every password-hashing slot is busy; the
	// problem carries retry_after (seconds) and nothing was recorded.
	CodeRateLimited = "rate_limited"
	// CodeFactorCoolingOff: a factor enrolled or reset without an
	// operator's identity check cannot move money before usable_from.
	CodeFactorCoolingOff = "factor_cooling_off"
	// CodeBankReferenceUsed: a deposit with this bank transfer reference
	// was already credited (details: deposit_id).
	CodeBankReferenceUsed = "bank_reference_used"
	// CodeSecretShownOnce: an idempotent replay of a request whose reply
	// carried a secret (a session token, a TOTP seed); the secret is not
	// shown again, so the client must make a new request.
	CodeSecretShownOnce = "secret_shown_once"
	// CodeUnavailable: the request cannot be decided now because a part
	// it depends on is behind (the balances projection, for a close or a
	// read); nothing was recorded and the same request can be retried.
	CodeUnavailable = "unavailable"
	// CodeStorageUnavailable: the log cannot be written now (its disk is
	// full or read-only, or failing); nothing was recorded, the request
	// can be retried, and GET /healthz says why.
	CodeStorageUnavailable = "storage_unavailable"
	// CodeDegraded: the health check's answer when something an operator
	// must act on keeps the ledger from working (details: reasons).
	CodeDegraded = "degraded"
	CodeInternal = "internal"
)

// Error is the one coded error type of the ledger. Typed details (the
// remaining limit, the available balance, the field at fault) travel in
// Details rather than in the message, so clients never parse prose.
type Error struct {
	Code    string
	Message string
	// Details are extra problem fields, e.g. "limit", "used", "remaining".
	// Values are strings, numbers or booleans, never money as floats.
	Details map[string]any
}

// Error implements error.
func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf builds a coded error with a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// With returns e with one more detail field.
func (e *Error) With(key string, value any) *Error {
	if e.Details == nil {
		e.Details = map[string]any{}
	}
	e.Details[key] = value
	return e
}

// Invalid is the error for malformed input; field names the offending input.
func Invalid(field, msg string) *Error {
	return Errorf(CodeInvalid, "%s", msg).With("field", field)
}

// ErrorCode returns the code of err, or CodeInternal for anything that is
// not a domain error: unknown failures never leak as client errors.
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// ErrorDetails returns the detail fields of a domain error, or nil.
func ErrorDetails(err error) map[string]any {
	var e *Error
	if errors.As(err, &e) {
		return e.Details
	}
	return nil
}
