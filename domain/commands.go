package domain

import "github.com/shopspring/decimal"

// Command is a request to change one account. Commands are plain data; the
// caller fills in ids, salts, tokens and sealed secrets (the domain has no
// randomness) and Decide turns the command into events.
type Command interface{ isCommand() }

// Proof is one presented authentication proof (R5). Exactly the field that
// matches the factor's method is used.
type Proof struct {
	FactorID    string
	Password    string
	Code        string
	Signature   []byte
	Attestation []byte
}

// OpenAccount opens a new account.
type OpenAccount struct {
	AccountID  string
	HolderName string
	Currency   string
	Kind       string
}

// EnrollFactor enrols a factor. For a password, Password and Salt; for
// TOTP, DeviceID and SealedSecret; for certificate and e-signature,
// PublicKey; for biometric, DeviceID.
type EnrollFactor struct {
	FactorID     string
	Method       string
	DeviceID     string
	Password     string
	Salt         []byte
	SealedSecret []byte
	PublicKey    []byte
}

// RevokeFactor retires a factor.
type RevokeFactor struct {
	FactorID string
	Reason   string
}

// ReportCredentialLoss reports a credential lost or stolen (R1).
type ReportCredentialLoss struct{ FactorID string }

// ResetCredential replaces a factor's credential (R1 password/certificate
// reset), for example a new password with a new salt. Auth must prove two
// factor categories without the factor being reset (see ChangeChallenge).
type ResetCredential struct {
	FactorID     string
	Password     string
	Salt         []byte
	SealedSecret []byte
	PublicKey    []byte
	Auth         Authorisation
}

// Authorisation is what authorises a sensitive change of the account (an
// identity change, a reserved phone change, a credential reset): the device
// sending it and the proofs, verified like a withdrawal's (R6, R7, R9).
// Version is the account version that certificate, e-signature and
// biometric proofs signed over in the change's challenge (ChangeChallenge);
// zero when no such proof is given. When set it must be the account's
// current version.
type Authorisation struct {
	DeviceID string
	Version  int64
	Proofs   []Proof
}

// Login verifies proofs and opens a session (R9).
type Login struct {
	SessionID string
	TokenHash []byte
	DeviceID  string
	Proofs    []Proof
}

// AdjustLimit sets the daily limit agreed with the customer (R10).
type AdjustLimit struct{ Limit string }

// ChangeIdentity corrects the holder's identity data; Auth must prove at
// least one factor category.
type ChangeIdentity struct {
	HolderName string
	Auth       Authorisation
}

// ChangePhone changes the reserved phone number; Auth must prove two factor
// categories.
type ChangePhone struct {
	Phone string
	Auth  Authorisation
}

// BindBankAccount binds the same-name bank account for withdrawals. Token is
// computed by the caller (a keyed hash); only it and the last four digits
// are stored.
type BindBankAccount struct {
	Number     string
	HolderName string
	Token      string
}

// Deposit credits money arriving from outside.
type Deposit struct {
	DepositID string
	Amount    string
	Currency  string
	Reference string
}

// Payee is what the caller found about the payee account.
type Payee struct {
	Exists   bool
	Status   string
	Currency Currency
}

// InitiatePayment is step one of confirm-then-execute (R15).
type InitiatePayment struct {
	PaymentID   string
	PayeeID     string
	Payee       Payee
	Amount      string
	Currency    string
	Channel     string
	Terminal    string
	DeviceID    string
	Description string
	Challenge   []byte
}

// Balance is the balances projection's figure for the account at its
// checkpoint; see Account.Available.
type Balance struct {
	Projected  decimal.Decimal
	Checkpoint int64
}

// ConfirmPayment is step two: proofs over the payment's challenge.
// PayeeID and Payee are what the caller found about the pending payment's
// payee just before (R14: a suspended or closed payee takes no payments);
// a confirmation without them is refused as an internal error.
type ConfirmPayment struct {
	PaymentID string
	DeviceID  string
	Proofs    []Proof
	Balance   Balance
	PayeeID   string
	Payee     Payee
}

// Withdraw sends money to the bound same-name bank account (outside the
// daily caps of R10).
type Withdraw struct {
	WithdrawalID string
	Amount       string
	Currency     string
	DeviceID     string
	Proofs       []Proof
	Balance      Balance
}

// Suspend suspends the payment service (R14).
type Suspend struct{ Reason string }

// Reactivate lifts a suspension.
type Reactivate struct{ Reason string }

// CloseAccount closes the account for good; the balance must be zero.
type CloseAccount struct {
	Reason  string
	Balance Balance
}

func (OpenAccount) isCommand()          {}
func (EnrollFactor) isCommand()         {}
func (RevokeFactor) isCommand()         {}
func (ReportCredentialLoss) isCommand() {}
func (ResetCredential) isCommand()      {}
func (Login) isCommand()                {}
func (AdjustLimit) isCommand()          {}
func (ChangeIdentity) isCommand()       {}
func (ChangePhone) isCommand()          {}
func (BindBankAccount) isCommand()      {}
func (Deposit) isCommand()              {}
func (InitiatePayment) isCommand()      {}
func (ConfirmPayment) isCommand()       {}
func (Withdraw) isCommand()             {}
func (Suspend) isCommand()              {}
func (Reactivate) isCommand()           {}
func (CloseAccount) isCommand()         {}
