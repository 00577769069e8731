package domain

import (
	"time"
	"unicode/utf8"

	"github.com/shopspring/decimal"
)

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

// Staff names the staff key behind a command an operator or the funding
// desk made, and for an operator the reference of the identity check they
// did (a branch visit, a video call): recorded on the event, so every
// staff action in the log names its key (R26).
type Staff struct {
	StaffKey      string `json:"staff_key,omitempty"`
	IdentityCheck string `json:"identity_check,omitempty"`
}

// ByStaff reports whether a staff key made the command or the event.
func (s Staff) ByStaff() bool { return s.StaffKey != "" }

// IdentityChecked reports whether an operator checked the holder's
// identity for this command.
func (s Staff) IdentityChecked() bool { return s.StaffKey != "" && s.IdentityCheck != "" }

// validate refuses an identity check that no staff key names, and one
// longer than 100 characters: it is stored in the event.
func (s Staff) validate() *Error {
	if s.IdentityCheck != "" && s.StaffKey == "" {
		return Invalid("identity_check", "identity_check is named by the operator who checked the holder's identity; leave it out")
	}
	if utf8.RuneCountInString(s.IdentityCheck) > 100 {
		return Invalid("identity_check", "identity_check is at most 100 characters")
	}
	return nil
}

// staffOf returns the Staff of a command that carries one.
func staffOf(cmd Command) (Staff, bool) {
	switch c := cmd.(type) {
	case OpenAccount:
		return c.Staff, true
	case EnrollFactor:
		return c.Staff, true
	case ReportCredentialLoss:
		return c.Staff, true
	case Deposit:
		return c.Staff, true
	case Suspend:
		return c.Staff, true
	case Reactivate:
		return c.Staff, true
	case CloseAccount:
		return c.Staff, true
	case Unlock:
		return c.Staff, true
	case RevokeDevice:
		return c.Staff, true
	case RecoverCompensation:
		return c.Staff, true
	case ErasePersonalData:
		return c.Staff, true
	}
	return Staff{}, false
}

// OpenAccount opens a new account with its first factor: an account never
// exists without a way for its holder to prove who they are. Staff is set
// when an operator opens it for a customer.
type OpenAccount struct {
	AccountID  string
	HolderName string
	Currency   string
	Kind       string
	Factor     EnrollFactor
	Staff      Staff
}

// EnrollFactor enrols a factor. For a password, Password and Salt; for
// TOTP, DeviceID and SealedSecret; for certificate and e-signature,
// PublicKey; for biometric, DeviceID.
//
// The holder authorises it with Auth (two factor categories, see
// StepUpCategories); an operator instead names the identity check they
// did (Staff), and only then is the factor usable at once: otherwise it
// waits Policy.CoolingOff before it can move money.
type EnrollFactor struct {
	FactorID     string
	Method       string
	DeviceID     string
	Password     string
	Salt         []byte
	SealedSecret []byte
	PublicKey    []byte
	Auth         Authorisation
	Staff        Staff
}

// RevokeFactor retires a factor; Auth must prove two factor categories.
type RevokeFactor struct {
	FactorID string
	Reason   string
	Auth     Authorisation
}

// ReportCredentialLoss reports a credential lost or stolen (R1). It only
// takes access away, so the holder's session suffices; an operator
// reports it after an identity check (Staff).
type ReportCredentialLoss struct {
	FactorID string
	Staff    Staff
}

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
	Device   DeviceProof
	Version  int64
	Proofs   []Proof
}

// Login verifies proofs and opens a session (R9).
type Login struct {
	SessionID string
	TokenHash []byte
	DeviceID  string
	Device    DeviceProof
	Proofs    []Proof
}

// RevokeDevice removes a registered device: its signatures prove nothing
// more. The holder authorises it with a step-up (Auth); an operator, after
// checking the holder's identity (Staff), can too, which is how a holder
// who lost every device starts again.
type RevokeDevice struct {
	DeviceID string
	Reason   string
	Auth     Authorisation
	Staff    Staff
}

// RegisterDevice registers a device's Ed25519 key: Signature, by that key
// over DeviceChallenge("device_registration", ...) at SignedAt, proves the
// holder has it. The first device needs no step-up; any other needs Auth.
type RegisterDevice struct {
	DeviceID  string
	PublicKey []byte
	Label     string
	SignedAt  time.Time
	Signature []byte
	Auth      Authorisation
}

// AdjustLimit sets the daily limit agreed with the customer (R10). A raise
// must be authorised by Auth (two factor categories); a lower limit only
// protects the holder and needs none.
type AdjustLimit struct {
	Limit string
	Auth  Authorisation
}

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
	Auth       Authorisation
}

// Deposit credits money arriving from outside: a bank transfer the
// funding desk (Staff) matched, named by its bank reference, which can be
// credited once.
type Deposit struct {
	DepositID string
	Amount    string
	Currency  string
	Reference string
	Staff     Staff
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
	// Nonce makes the challenge unique; the challenge itself is
	// PaymentChallenge of the payment's details.
	Nonce []byte
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
	Device    DeviceProof
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
	Device       DeviceProof
	Proofs       []Proof
	Balance      Balance
}

// Suspend suspends the payment service (R14): by the holder, or by an
// operator for risk (Staff).
type Suspend struct {
	Reason string
	Staff  Staff
}

// Reactivate lifts a suspension. A holder may lift only a suspension the
// holder made; one an operator made for risk is lifted by an operator.
type Reactivate struct {
	Reason string
	Staff  Staff
}

// CloseAccount closes the account for good; the balance must be zero.
type CloseAccount struct {
	Reason  string
	Balance Balance
	Staff   Staff
}

// Unlock lifts R9's lock before it expires: an operator after an identity
// check.
//
// Or the holder, early: with a step-up of two factor categories from a
// registered device that signs it (Auth, Auth.Device).
type Unlock struct {
	Reason string
	Staff  Staff
	Auth   Authorisation
}

// RecoverCompensation takes back up to Amount of a loss case's advance
// compensation after liability was found to be the holder's (staff only).
type RecoverCompensation struct {
	CaseID  string
	Amount  Money
	Balance Balance
	Staff   Staff
}

// ClaimLoss claims the account's payments in a loss case (the holder's
// report); a payment claimed before is refused.
type ClaimLoss struct {
	CaseID     string
	PaymentIDs []string
}

// Logout ends a session.
type Logout struct {
	SessionID string
	Reason    string
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
func (Unlock) isCommand()               {}
func (RegisterDevice) isCommand()       {}
func (RevokeDevice) isCommand()         {}
func (Logout) isCommand()               {}
func (RecoverCompensation) isCommand()  {}
func (ClaimLoss) isCommand()            {}
