package domain

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"
)

// Event is a domain event: a past-tense fact about one account. Its type
// name is an explicit constant, never derived from the Go type name, so a
// rename in code cannot change what is stored.
type Event interface {
	EventType() string
}

// Event type names as stored in the log. They never change.
const (
	TypeAccountOpened          = "AccountOpened"
	TypeFactorEnrolled         = "FactorEnrolled"
	TypeFactorRevoked          = "FactorRevoked"
	TypeCredentialReset        = "CredentialReset"
	TypeCredentialLossReported = "CredentialLossReported"
	TypeLoginSucceeded         = "LoginSucceeded"
	TypeLoginFailed            = "LoginFailed"
	TypeVerificationFailed     = "VerificationFailed"
	TypeAccessLocked           = "AccessLocked"
	TypeAccessUnlocked         = "AccessUnlocked"
	TypeLimitAdjusted          = "LimitAdjusted"
	TypeIdentityChanged        = "IdentityChanged"
	TypePhoneChanged           = "PhoneChanged"
	TypeBankAccountBound       = "BankAccountBound"
	TypeFundsDeposited         = "FundsDeposited"
	TypePaymentInitiated       = "PaymentInitiated"
	TypePaymentConfirmed       = "PaymentConfirmed"
	TypePaymentRejected        = "PaymentRejected"
	TypeFundsWithdrawn         = "FundsWithdrawn"
	TypeWithdrawalRejected     = "WithdrawalRejected"
	TypeChangeRejected         = "ChangeRejected"
	TypeServiceSuspended       = "ServiceSuspended"
	TypeServiceReactivated     = "ServiceReactivated"
	TypeAccountClosed          = "AccountClosed"
	TypeSessionEnded           = "SessionEnded"
	TypeHolderNotified         = "HolderNotified"
	TypeStaffRead              = "StaffRead"
	TypeDeviceRegistered       = "DeviceRegistered"
	TypeDeviceUsed             = "DeviceUsed"
	TypeDeviceRevoked          = "DeviceRevoked"
)

// Account kinds.
const (
	KindPersonal = "personal"
	KindMerchant = "merchant"
)

// ClearingAccountID is the institution's bank-clearing account for a
// currency: the other side of every deposit (money from outside) and every
// withdrawal (money to the customer's bank). It is an institution account,
// so its balance is the negative of what customers hold and may be below
// zero; customer accounts never are.
func ClearingAccountID(c Currency) string { return "clearing-" + string(c) }

// AccountOpened starts an account stream.
type AccountOpened struct {
	AccountID        string   `json:"account_id"`
	HolderName       string   `json:"holder_name"`
	Currency         Currency `json:"currency"`
	Kind             string   `json:"kind"`
	AgreedDailyLimit Money    `json:"agreed_daily_limit"`
	// Staff is set when an operator opened the account for a customer.
	Staff
}

// FactorEnrolled records a new authentication factor. It never holds a
// secret in the clear (R8): a password is an argon2id hash, a TOTP secret is
// sealed with the server key, certificates hold only a public key, and a
// biometric factor holds only the device that attests it.
type FactorEnrolled struct {
	FactorID     string `json:"factor_id"`
	Method       string `json:"method"`
	Category     string `json:"category"`
	DeviceID     string `json:"device_id,omitempty"`
	PasswordHash string `json:"password_hash,omitempty"`
	SealedSecret []byte `json:"sealed_secret,omitempty"`
	PublicKey    []byte `json:"public_key,omitempty"`
	// UsableFrom is when the factor may first confirm a payment or a
	// withdrawal (the cooling-off, R26); zero when an operator checked the
	// holder's identity, and in events written before cooling-off existed.
	UsableFrom time.Time `json:"usable_from,omitzero"`
	// Authorised is the holder's step-up that authorised the enrolment;
	// zero for the first factor and for an operator's enrolment.
	Authorised Authorised `json:"authorised,omitzero"`
	Staff
}

// FactorRevoked retires a factor; it can no longer prove anything.
type FactorRevoked struct {
	FactorID   string     `json:"factor_id"`
	Reason     string     `json:"reason"`
	Authorised Authorised `json:"authorised,omitzero"`
}

// CredentialReset replaces a factor's credential (new password hash, new
// sealed TOTP secret or new public key) after a reset. Authorised names the
// other factors that authorised it (absent in events written before resets
// needed proofs).
type CredentialReset struct {
	FactorID     string `json:"factor_id"`
	Method       string `json:"method,omitempty"`
	PasswordHash string `json:"password_hash,omitempty"`
	SealedSecret []byte `json:"sealed_secret,omitempty"`
	PublicKey    []byte `json:"public_key,omitempty"`
	// UsableFrom: see FactorEnrolled.
	UsableFrom time.Time `json:"usable_from,omitzero"`
	Authorised
}

// Authorised records how a sensitive change (identity, reserved phone,
// credential reset) was authorised: the device that sent it, the factors
// whose proofs verified and the categories that counted (R5, R6), and the
// one-time passwords it spent (R7). Its fields sit at the top level of the
// event's payload; events written before changes needed proofs have none.
type Authorised struct {
	DeviceID   string   `json:"device_id,omitempty"`
	FactorIDs  []string `json:"factor_ids,omitempty"`
	Categories []string `json:"categories,omitempty"`
	OTPUses    []OTPUse `json:"otp_uses,omitempty"`
}

// CredentialLossReported records that the customer reported a credential
// (certificate, device, password) lost; the factor stops counting at once.
type CredentialLossReported struct {
	FactorID string `json:"factor_id"`
	Method   string `json:"method"`
	Staff
}

// OTPUse records that a one-time password of a factor was consumed at a
// time step, so the same code can never be used again (R7).
type OTPUse struct {
	FactorID string `json:"factor_id"`
	Step     int64  `json:"step"`
}

// LoginSucceeded records a successful login and the session it opened. Only
// the SHA-256 of the session token is kept.
type LoginSucceeded struct {
	SessionID  string    `json:"session_id"`
	TokenHash  []byte    `json:"token_hash"`
	DeviceID   string    `json:"device_id"`
	FactorIDs  []string  `json:"factor_ids"`
	Categories []string  `json:"categories"`
	ExpiresAt  time.Time `json:"expires_at"`
	OTPUses    []OTPUse  `json:"otp_uses,omitempty"`
}

// LoginFailed records a failed login attempt and the consecutive count.
type LoginFailed struct {
	DeviceID       string `json:"device_id"`
	Reason         string `json:"reason"`
	FailedAttempts int    `json:"failed_attempts"`
	// Code is the refusal's error code; empty in events written before it
	// existed, which were all authentication failures or locked attempts.
	Code string `json:"code,omitempty"`
	// LockedUntil is set when the attempt came during a lock.
	LockedUntil time.Time `json:"locked_until,omitzero"`
	// OTPUses records one-time passwords that verified in the failed
	// attempt (beside a wrong password, or from the device logging in):
	// they are spent all the same (R7). Absent in older events.
	OTPUses []OTPUse `json:"otp_uses,omitempty"`
}

// VerificationFailed records a failed verification of a payment or
// withdrawal instruction or of a sensitive change (Purpose "payment",
// "withdrawal" or a ChangeKind); it counts towards the same lockout as
// logins (R9).
type VerificationFailed struct {
	Purpose        string `json:"purpose"`
	Reference      string `json:"reference"`
	DeviceID       string `json:"device_id"`
	Reason         string `json:"reason"`
	FailedAttempts int    `json:"failed_attempts"`
	// LockedUntil is set when the attempt came during a lock (R9: every
	// attempt is an event, including those the lock turns away).
	LockedUntil time.Time `json:"locked_until,omitzero"`
	// OTPUses records one-time passwords that verified beside the proof
	// that failed: they are spent all the same (R7). Absent in older events.
	OTPUses []OTPUse `json:"otp_uses,omitempty"`
}

// AccessLocked records that too many consecutive failures locked access.
type AccessLocked struct {
	Until          time.Time `json:"until"`
	FailedAttempts int       `json:"failed_attempts"`
}

// AccessUnlocked records the end of a lock (it expired, or an operator
// lifted it).
type AccessUnlocked struct {
	Reason string `json:"reason"`
	Staff
	// Authorised is the holder's step-up when the holder lifted the lock.
	Authorised Authorised `json:"authorised,omitzero"`
}

// LimitAdjusted changes the daily limit agreed between institution and
// customer, which applies to payments verified with a certificate or
// e-signature plus another category (R10).
type LimitAdjusted struct {
	Previous         Money      `json:"previous"`
	AgreedDailyLimit Money      `json:"agreed_daily_limit"`
	Authorised       Authorised `json:"authorised,omitzero"`
}

// IdentityChanged records a change of the holder's identity data.
type IdentityChanged struct {
	HolderName string `json:"holder_name"`
	Authorised
}

// PhoneChanged records a change of the reserved phone number.
type PhoneChanged struct {
	Phone string `json:"phone"`
	Authorised
}

// BankAccountBound binds the same-name bank account that withdrawals go to
// (the fund collection method). Only a token and the last four digits of the
// bank account number are kept (R19).
type BankAccountBound struct {
	BankAccountToken string     `json:"bank_account_token"`
	Last4            string     `json:"last4"`
	HolderName       string     `json:"holder_name"`
	Authorised       Authorised `json:"authorised,omitzero"`
}

// FundsDeposited moves money from outside into the account: debit the
// clearing account, credit the customer. It lives in the credited stream.
type FundsDeposited struct {
	DepositID     string `json:"deposit_id"`
	DebitAccount  string `json:"debit_account"`
	CreditAccount string `json:"credit_account"`
	Amount        Money  `json:"amount"`
	Reference     string `json:"reference"`
	Staff
}

// PaymentInitiated is the first step of confirm-then-execute (R15): the
// full details shown to the customer and the challenge the proofs sign.
type PaymentInitiated struct {
	PaymentID   string    `json:"payment_id"`
	Payer       string    `json:"payer"`
	Payee       string    `json:"payee"`
	Amount      Money     `json:"amount"`
	Fee         Money     `json:"fee"`
	Channel     string    `json:"channel"`
	Terminal    string    `json:"terminal"`
	DeviceID    string    `json:"device_id"`
	Description string    `json:"description"`
	Challenge   []byte    `json:"challenge"`
	ExpiresAt   time.Time `json:"expires_at"`
	// FeeSchedule is the version of the fee schedule that priced Fee
	// (none for a free payment), named again by its FeeCharged.
	FeeSchedule string `json:"fee_schedule,omitempty"`
}

// PaymentConfirmed executes a payment: one balanced double entry, debit the
// payer, credit the payee, in the payer's stream. It names the verification
// level and factor categories that authorised it (R10).
type PaymentConfirmed struct {
	PaymentID         string   `json:"payment_id"`
	DebitAccount      string   `json:"debit_account"`
	CreditAccount     string   `json:"credit_account"`
	Amount            Money    `json:"amount"`
	Fee               Money    `json:"fee"`
	Description       string   `json:"description"`
	VerificationLevel string   `json:"verification_level"`
	Categories        []string `json:"categories"`
	FactorIDs         []string `json:"factor_ids"`
	DeviceID          string   `json:"device_id"`
	OTPUses           []OTPUse `json:"otp_uses,omitempty"`
	// DailyLimit and DailyUsed are the cap of this payment's level and what
	// the day had used of it including this payment, as shown to the payer.
	DailyLimit Money `json:"daily_limit"`
	DailyUsed  Money `json:"daily_used"`
}

// PaymentRejected ends a payment without moving money, with the coded reason.
// OTPUses records one-time passwords that verified before the refusal (a
// limit, the balance): they are spent all the same (R7).
type PaymentRejected struct {
	PaymentID string         `json:"payment_id"`
	Code      string         `json:"code"`
	Reason    string         `json:"reason"`
	Details   map[string]any `json:"details,omitempty"`
	OTPUses   []OTPUse       `json:"otp_uses,omitempty"`
}

// FundsWithdrawn moves money to the account's own bound bank account: debit
// the customer, credit the clearing account. Outside the daily cap (R10).
type FundsWithdrawn struct {
	WithdrawalID      string   `json:"withdrawal_id"`
	DebitAccount      string   `json:"debit_account"`
	CreditAccount     string   `json:"credit_account"`
	Amount            Money    `json:"amount"`
	BankAccountLast4  string   `json:"bank_account_last4"`
	VerificationLevel string   `json:"verification_level"`
	Categories        []string `json:"categories"`
	FactorIDs         []string `json:"factor_ids"`
	DeviceID          string   `json:"device_id"`
	OTPUses           []OTPUse `json:"otp_uses,omitempty"`
}

// WithdrawalRejected records a withdrawal refused after its proofs were
// checked (the balance, R6 independence): the attempt is in the log (R1,
// R9) and the one-time passwords that verified are spent (R7). No money
// moves. Code, Reason and Details are the refusal the client received, so
// an idempotent replay answers the same.
type WithdrawalRejected struct {
	WithdrawalID string         `json:"withdrawal_id"`
	Amount       Money          `json:"amount"`
	DeviceID     string         `json:"device_id"`
	Code         string         `json:"code"`
	Reason       string         `json:"reason"`
	Details      map[string]any `json:"details,omitempty"`
	OTPUses      []OTPUse       `json:"otp_uses,omitempty"`
}

// ChangeRejected records a sensitive change (Change is "identity_change",
// "phone_change" or "credential_reset") refused after its proofs verified,
// because they did not reach the categories the change needs: the attempt
// is in the log (R1, R9) and the one-time passwords that verified are spent
// (R7). It does not count towards the lock (no proof was wrong). Reference
// is the factor being reset, if any. Code, Reason and Details are the
// refusal the client received, so an idempotent replay answers the same.
// The requested new value is not kept.
type ChangeRejected struct {
	Change    string         `json:"change"`
	Reference string         `json:"reference,omitempty"`
	DeviceID  string         `json:"device_id"`
	Code      string         `json:"code"`
	Reason    string         `json:"reason"`
	Details   map[string]any `json:"details,omitempty"`
	OTPUses   []OTPUse       `json:"otp_uses,omitempty"`
}

// ServiceSuspended records that the customer (or the institution) suspended
// the payment service (R14).
type ServiceSuspended struct {
	Reason string `json:"reason"`
	// Staff is set when an operator suspended it for risk; only an
	// operator lifts such a suspension.
	Staff
}

// ServiceReactivated lifts a suspension.
type ServiceReactivated struct {
	Reason string `json:"reason"`
	Staff
}

// AccountClosed is final: no further operation is accepted.
type AccountClosed struct {
	Reason string `json:"reason"`
	Staff
}

// SessionEnded ends a login session before its expiry: the holder logged
// out. Sessions also end, without an event of their own, when they expire
// or when a factor they logged in with is revoked, reset or reported lost.
type SessionEnded struct {
	SessionID string `json:"session_id"`
	Reason    string `json:"reason"`
}

// HolderNotified is a notice owed to the holder about a change to how the
// account is protected or paid out (a factor, the limit, the bank account,
// the phone, the identity), for a notification channel to deliver; it
// follows the change's event in the same append.
type HolderNotified struct {
	Change    string `json:"change"`
	Reference string `json:"reference,omitempty"`
	// Staff names the operator when an operator made the change.
	Staff
}

// StaffRead records that a staff key read an account's personal data or
// history (R26): who, in which role, which account and what. It lives in
// the key's own stream (StaffStream), so a staff read never moves the
// account's version, which a holder's signed change names.
type StaffRead struct {
	AccountID string `json:"account_id"`
	Role      string `json:"role"`
	What      string `json:"what"`
	Staff
}

// DeviceRegistered records a holder's device and its Ed25519 public key
// (R6): instructions it signs are proven to come from it. SignedAt is the
// time of the registration's own signature, the first the device used.
type DeviceRegistered struct {
	DeviceID   string     `json:"device_id"`
	PublicKey  []byte     `json:"public_key"`
	Label      string     `json:"label,omitempty"`
	SignedAt   time.Time  `json:"signed_at"`
	Authorised Authorised `json:"authorised,omitzero"`
}

// DeviceRevoked removes a registered device: its signatures prove nothing
// more. Authorised is the holder's step-up, or Staff the operator's.
type DeviceRevoked struct {
	DeviceID   string     `json:"device_id"`
	Reason     string     `json:"reason,omitempty"`
	Authorised Authorised `json:"authorised,omitzero"`
	Staff
}

// DeviceUsed records that an instruction was proven to come from a
// registered device by its signature at SignedAt, which no later
// instruction of the device may use again. It follows the instruction's
// event in the same append.
type DeviceUsed struct {
	DeviceID string    `json:"device_id"`
	SignedAt time.Time `json:"signed_at"`
}

// StaffStream is the stream of a staff key's recorded reads.
func StaffStream(keyID string) string { return "staff-" + keyID }

func (AccountOpened) EventType() string          { return TypeAccountOpened }
func (FactorEnrolled) EventType() string         { return TypeFactorEnrolled }
func (FactorRevoked) EventType() string          { return TypeFactorRevoked }
func (CredentialReset) EventType() string        { return TypeCredentialReset }
func (CredentialLossReported) EventType() string { return TypeCredentialLossReported }
func (LoginSucceeded) EventType() string         { return TypeLoginSucceeded }
func (LoginFailed) EventType() string            { return TypeLoginFailed }
func (VerificationFailed) EventType() string     { return TypeVerificationFailed }
func (AccessLocked) EventType() string           { return TypeAccessLocked }
func (AccessUnlocked) EventType() string         { return TypeAccessUnlocked }
func (LimitAdjusted) EventType() string          { return TypeLimitAdjusted }
func (IdentityChanged) EventType() string        { return TypeIdentityChanged }
func (PhoneChanged) EventType() string           { return TypePhoneChanged }
func (BankAccountBound) EventType() string       { return TypeBankAccountBound }
func (FundsDeposited) EventType() string         { return TypeFundsDeposited }
func (PaymentInitiated) EventType() string       { return TypePaymentInitiated }
func (PaymentConfirmed) EventType() string       { return TypePaymentConfirmed }
func (PaymentRejected) EventType() string        { return TypePaymentRejected }
func (FundsWithdrawn) EventType() string         { return TypeFundsWithdrawn }
func (WithdrawalRejected) EventType() string     { return TypeWithdrawalRejected }
func (ChangeRejected) EventType() string         { return TypeChangeRejected }
func (ServiceSuspended) EventType() string       { return TypeServiceSuspended }
func (ServiceReactivated) EventType() string     { return TypeServiceReactivated }
func (AccountClosed) EventType() string          { return TypeAccountClosed }
func (SessionEnded) EventType() string           { return TypeSessionEnded }
func (HolderNotified) EventType() string         { return TypeHolderNotified }
func (StaffRead) EventType() string              { return TypeStaffRead }
func (DeviceRegistered) EventType() string       { return TypeDeviceRegistered }
func (DeviceUsed) EventType() string             { return TypeDeviceUsed }
func (DeviceRevoked) EventType() string          { return TypeDeviceRevoked }

// decoders maps a stored type and schema version to a decoder. Every version ever
// written stays here: five-year retention means today's code reads
// five-year-old events (R2). A new payload layout gets a new version and a
// decoder that upgrades it to the current struct.
var decoders = map[eventKey]func([]byte) (Event, error){
	key(TypeAccountOpened, 1):          decodeAs[AccountOpened],
	key(TypeFactorEnrolled, 1):         decodeAs[FactorEnrolled],
	key(TypeFactorRevoked, 1):          decodeAs[FactorRevoked],
	key(TypeCredentialReset, 1):        decodeAs[CredentialReset],
	key(TypeCredentialLossReported, 1): decodeAs[CredentialLossReported],
	key(TypeLoginSucceeded, 1):         decodeAs[LoginSucceeded],
	key(TypeLoginFailed, 1):            decodeAs[LoginFailed],
	key(TypeVerificationFailed, 1):     decodeAs[VerificationFailed],
	key(TypeAccessLocked, 1):           decodeAs[AccessLocked],
	key(TypeAccessUnlocked, 1):         decodeAs[AccessUnlocked],
	key(TypeLimitAdjusted, 1):          decodeAs[LimitAdjusted],
	key(TypeIdentityChanged, 1):        decodeAs[IdentityChanged],
	key(TypePhoneChanged, 1):           decodeAs[PhoneChanged],
	key(TypeBankAccountBound, 1):       decodeAs[BankAccountBound],
	key(TypeFundsDeposited, 1):         decodeAs[FundsDeposited],
	key(TypePaymentInitiated, 1):       decodeAs[PaymentInitiated],
	key(TypePaymentConfirmed, 1):       decodeAs[PaymentConfirmed],
	key(TypePaymentRejected, 1):        decodeAs[PaymentRejected],
	key(TypeFundsWithdrawn, 1):         decodeAs[FundsWithdrawn],
	key(TypeWithdrawalRejected, 1):     decodeAs[WithdrawalRejected],
	key(TypeChangeRejected, 1):         decodeAs[ChangeRejected],
	key(TypeServiceSuspended, 1):       decodeAs[ServiceSuspended],
	key(TypeServiceReactivated, 1):     decodeAs[ServiceReactivated],
	key(TypeAccountClosed, 1):          decodeAs[AccountClosed],
	key(TypeSessionEnded, 1):           decodeAs[SessionEnded],
	key(TypeHolderNotified, 1):         decodeAs[HolderNotified],
	key(TypeStaffRead, 1):              decodeAs[StaffRead],
	key(TypeDeviceRegistered, 1):       decodeAs[DeviceRegistered],
	key(TypeDeviceUsed, 1):             decodeAs[DeviceUsed],
	key(TypeDeviceRevoked, 1):          decodeAs[DeviceRevoked],
	key(TypePersonalDataErased, 1):     decodeAs[PersonalDataErased],

	key(TypeFeeCharged, 1):            decodeAs[FeeCharged],
	key(TypeReserveProvisioned, 1):    decodeAs[ReserveProvisioned],
	key(TypeReserveAdjusted, 1):       decodeAs[ReserveAdjusted],
	key(TypeReserveShortfall, 1):      decodeAs[ReserveShortfall],
	key(TypeDayClosed, 1):             decodeAs[DayClosed],
	key(TypeCompensationPaid, 1):      decodeAs[CompensationPaid],
	key(TypeCompensationRecovered, 1): decodeAs[CompensationRecovered],
	key(TypeLossReported, 1):          decodeAs[LossReported],
	key(TypeLossInvestigated, 1):      decodeAs[LossInvestigated],
	key(TypeLiabilityDetermined, 1):   decodeAs[LiabilityDetermined],
	key(TypeLossCaseClosed, 1):        decodeAs[LossCaseClosed],
	key(TypeLossClaimed, 1):           decodeAs[LossClaimed],
	key(TypeDisputeOpened, 1):         decodeAs[DisputeOpened],
	key(TypeDisputeAssigned, 1):       decodeAs[DisputeAssigned],
	key(TypeDisputeAnswered, 1):       decodeAs[DisputeAnswered],
	key(TypeDisputeResolved, 1):       decodeAs[DisputeResolved],
}

// CurrentSchemaVersion is the payload version new events are written with.
const CurrentSchemaVersion = 1

// eventKey is a stored event type at one schema version. A struct rather
// than a formatted string, so that looking a type up (every DecodeEvent,
// every KnownEventType of a projection skipping events) allocates nothing.
type eventKey struct {
	typ     string
	version int
}

func key(typ string, v int) eventKey { return eventKey{typ, v} }

func (k eventKey) String() string { return fmt.Sprintf("%s/%d", k.typ, k.version) }

func decodeAs[T Event](b []byte) (Event, error) {
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, err
	}
	return v, nil
}

// EncodeEvent returns the stored form of e: its type name, schema version
// and JSON payload, as JSONCodec writes it.
func EncodeEvent(e Event) (typ string, schemaVersion int, payload []byte, err error) {
	return JSONCodec{}.Encode(e)
}

// EventTypes returns every stored type name with the schema versions it
// has, as "Type/version", sorted; tests use it to check that readers
// handle every type.
func EventTypes() []string {
	out := make([]string, 0, len(decoders))
	for k := range decoders {
		out = append(out, k.String())
	}
	sort.Strings(out)
	return out
}

// KnownEventType reports whether typ at schemaVersion can be decoded. A
// reader that needs only some types checks the others with it instead of
// paying for their decoding.
func KnownEventType(typ string, schemaVersion int) bool {
	_, ok := decoders[key(typ, schemaVersion)]
	return ok
}

// DecodeEvent turns a stored event back into its domain type with
// JSONCodec. An unknown type or version is an error, never a panic: the
// caller adds the position.
func DecodeEvent(typ string, schemaVersion int, payload []byte) (Event, error) {
	return JSONCodec{}.Decode(typ, schemaVersion, payload)
}

// Movement is the double entry carried by a money event.
type Movement struct {
	Debit  string
	Credit string
	Amount Money
	// Ref is the id of the deposit, payment or withdrawal.
	Ref         string
	Description string
}

// MovementOf returns the double entry of a money event, and false for every
// other event. Projections and the aggregate read money only through it, so
// a new money event type needs only one new case here.
func MovementOf(e Event) (Movement, bool) {
	switch v := e.(type) {
	case FundsDeposited:
		return Movement{v.DebitAccount, v.CreditAccount, v.Amount, v.DepositID, v.Reference}, true
	case PaymentConfirmed:
		return Movement{v.DebitAccount, v.CreditAccount, v.Amount, v.PaymentID, v.Description}, true
	case FundsWithdrawn:
		return Movement{v.DebitAccount, v.CreditAccount, v.Amount, v.WithdrawalID, "withdrawal to bank account ****" + v.BankAccountLast4}, true
	}
	return institutionMovement(e)
}

// AccountStream is the name of an account's event stream.
func AccountStream(accountID string) string { return "account-" + accountID }

// Refusal is the error the client got when the payment was rejected.
func (e PaymentRejected) Refusal() *Error {
	return &Error{Code: e.Code, Message: e.Reason, Details: e.Details}
}

// Refusal is the error the client got when the withdrawal was rejected.
func (e WithdrawalRejected) Refusal() *Error {
	return &Error{Code: e.Code, Message: e.Reason, Details: e.Details}
}

// Refusal is the error the client got when the change was rejected.
func (e ChangeRejected) Refusal() *Error {
	return &Error{Code: e.Code, Message: e.Reason, Details: e.Details}
}
