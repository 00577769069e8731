package httpapi

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/reserves"
)

// retryAfter is the Retry-After (seconds) of an unavailable problem.
const retryAfter = "1"

// statusOf is the one table from error code to HTTP status.
var statusOf = map[string]int{
	domain.CodeInvalid:                  http.StatusBadRequest,
	domain.CodeForbiddenField:           http.StatusBadRequest,
	domain.CodeNotFound:                 http.StatusNotFound,
	domain.CodeIdempotencyReused:        http.StatusConflict,
	domain.CodeVersionConflict:          http.StatusConflict,
	domain.CodeConflict:                 http.StatusConflict,
	domain.CodeAccountSuspended:         http.StatusConflict,
	domain.CodeAccountClosed:            http.StatusConflict,
	domain.CodePayeeUnavailable:         http.StatusConflict,
	domain.CodeBankAccountNameMismatch:  http.StatusConflict,
	domain.CodeDailyLimitExceeded:       http.StatusUnprocessableEntity,
	domain.CodeInsufficientFunds:        http.StatusUnprocessableEntity,
	domain.CodeFactorNotIndependent:     http.StatusUnprocessableEntity,
	domain.CodeInsufficientVerification: http.StatusUnprocessableEntity,
	domain.CodeProofInvalid:             http.StatusUnprocessableEntity,
	domain.CodePaymentExpired:           http.StatusUnprocessableEntity,
	domain.CodeAuthFailed:               http.StatusUnauthorized,
	domain.CodeUnauthenticated:          http.StatusUnauthorized,
	domain.CodeForbidden:                http.StatusForbidden,
	domain.CodeMethodNotAllowed:         http.StatusMethodNotAllowed,
	domain.CodeUnsupportedMediaType:     http.StatusUnsupportedMediaType,
	domain.CodeRateLimited:              http.StatusTooManyRequests,
	domain.CodeFactorCoolingOff:         http.StatusUnprocessableEntity,
	domain.CodeBankReferenceUsed:        http.StatusConflict,
	domain.CodeSecretShownOnce:          http.StatusConflict,
	domain.CodeAccessLocked:             http.StatusLocked,
	domain.CodeUnavailable:              http.StatusServiceUnavailable,
	domain.CodeStorageUnavailable:       http.StatusServiceUnavailable,
	domain.CodeDegraded:                 http.StatusServiceUnavailable,
	domain.CodeInternal:                 http.StatusInternalServerError,
	domain.CodePersonalDataRetained:     http.StatusConflict,
	domain.CodePersonalDataErased:       http.StatusConflict,
	domain.CodePersonalDataInClear:      http.StatusConflict,
	reserves.CodeReserveShortfall:       http.StatusConflict,
	reserves.CodeReserveFloor:           http.StatusConflict,
	reserves.CodeDayNotOver:             http.StatusConflict,
	reserves.CodeCaseState:              http.StatusConflict,
	reserves.CodeEvidenceRequired:       http.StatusUnprocessableEntity,
}

// titles are the short human titles of each code.
var titles = map[string]string{
	domain.CodeInvalid:                  "Invalid request",
	domain.CodeForbiddenField:           "Forbidden field",
	domain.CodeNotFound:                 "Not found",
	domain.CodeIdempotencyReused:        "Idempotency key reused",
	domain.CodeVersionConflict:          "Version conflict",
	domain.CodeConflict:                 "Conflict",
	domain.CodeAccountSuspended:         "Account suspended",
	domain.CodeAccountClosed:            "Account closed",
	domain.CodePayeeUnavailable:         "Payee unavailable",
	domain.CodeBankAccountNameMismatch:  "Bank account name mismatch",
	domain.CodeDailyLimitExceeded:       "Daily limit exceeded",
	domain.CodeInsufficientFunds:        "Insufficient funds",
	domain.CodeFactorNotIndependent:     "Factor not independent",
	domain.CodeInsufficientVerification: "Insufficient verification",
	domain.CodeProofInvalid:             "Proof invalid",
	domain.CodePaymentExpired:           "Payment expired",
	domain.CodeAuthFailed:               "Authentication failed",
	domain.CodeUnauthenticated:          "Unauthenticated",
	domain.CodeForbidden:                "Forbidden",
	domain.CodeMethodNotAllowed:         "Method not allowed",
	domain.CodeUnsupportedMediaType:     "Unsupported media type",
	domain.CodeRateLimited:              "Too many requests",
	domain.CodeFactorCoolingOff:         "Factor cooling off",
	domain.CodeBankReferenceUsed:        "Bank reference already credited",
	domain.CodeSecretShownOnce:          "Secret shown once",
	domain.CodeAccessLocked:             "Access locked",
	domain.CodeUnavailable:              "Temporarily unavailable",
	domain.CodeStorageUnavailable:       "Storage unavailable",
	domain.CodeDegraded:                 "Degraded",
	domain.CodeInternal:                 "Internal error",
	reserves.CodeReserveShortfall:       "Reserve shortfall",
	reserves.CodeReserveFloor:           "Below the reserve's floor",
	reserves.CodeDayNotOver:             "Day not over",
	reserves.CodeCaseState:              "Not at this step",
	reserves.CodeEvidenceRequired:       "Evidence required",
}

// Codes lists every stable problem code, for the OpenAPI document's test.
func Codes() []string {
	out := make([]string, 0, len(statusOf))
	for c := range statusOf {
		out = append(out, c)
	}
	return out
}

// StatusOf returns the HTTP status of a problem code.
func StatusOf(code string) int {
	if s, ok := statusOf[code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// writeProblem renders err as RFC 9457 problem+json. Unknown errors become
// "internal" with no detail, and are logged (without request bodies).
func (s *Server) writeProblem(w http.ResponseWriter, r *http.Request, err error) {
	code := domain.ErrorCode(err)
	status := StatusOf(code)
	body := map[string]any{}
	for k, v := range domain.ErrorDetails(err) {
		body[k] = v
	}
	body["type"] = "/problems/" + code
	body["title"] = titles[code]
	body["status"] = status
	body["code"] = code
	var de *domain.Error
	if errors.As(err, &de) && code != domain.CodeInternal {
		body["detail"] = de.Message
	} else {
		body["detail"] = "an internal error occurred; it has been logged"
		s.log.Error("request failed", slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.String("error", err.Error()))
	}
	w.Header().Set("Content-Type", "application/problem+json")
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="payledger"`)
	}
	if code == domain.CodeRateLimited {
		if secs, ok := domain.ErrorDetails(err)["retry_after"].(int); ok {
			w.Header().Set("Retry-After", strconv.Itoa(secs))
		}
	}
	if code == domain.CodeStorageUnavailable {
		s.log.Error("write refused: storage unavailable", slog.String("method", r.Method), slog.String("error", s.svc.StorageProblem()))
		w.Header().Set("Retry-After", "5")
	}
	if code == domain.CodeUnavailable {
		// Retryable, but an operator should see the projection falling behind.
		s.log.Warn("request not decided", slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.String("error", err.Error()))
		w.Header().Set("Retry-After", retryAfter)
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

// writeJSON writes a JSON response.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
