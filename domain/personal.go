package domain

import (
	"time"
)

// Personal data in events (R20). The fields listed by MapPersonal hold
// what identifies or describes a customer: the holder's name, the
// reserved phone, the bank account's last digits, a device's label and
// the free text a customer writes (payment descriptions, reasons). The
// ledger seals each such field with the customer's data key before the
// event is stored and opens it when the event is read; erasing the key
// (crypto-shredding) leaves the event, its hash and every amount as they
// were while the fields can no longer be read.

// TypePersonalDataErased is the stored type name of PersonalDataErased.
const TypePersonalDataErased = "PersonalDataErased"

// ErasedText is what a field of personal data reads after its key was
// erased.
const ErasedText = "[erased]"

// RetentionYears is how long the personal data of an account's operations
// must stay readable after its last operation (R2: events are kept at
// least five years from the operation).
const RetentionYears = 5

// CodePersonalDataRetained: an erasure was asked for while a retention
// rule still needs the account's personal data (the account is open, or
// its last operation is less than RetentionYears old). Details:
// retained_until when the period is known.
const CodePersonalDataRetained = "personal_data_retained"

// CodePersonalDataErased: the account's personal data is already erased.
const CodePersonalDataErased = "personal_data_erased"

// CodePersonalDataInClear: the account's stream holds personal data
// written in clear (events older than the encryption), which erasing the
// key would not make unreadable; the erasure is refused rather than
// claimed.
const CodePersonalDataInClear = "personal_data_in_clear"

// PersonalDataErased records that compliance erased the account's data key
// (R20): the personal data of its events is unreadable from then on. It
// holds no personal data: the compliance key and the reference of the
// erasure request in compliance's own records.
type PersonalDataErased struct {
	Reference string `json:"reference"`
	Staff
}

// EventType implements Event.
func (PersonalDataErased) EventType() string { return TypePersonalDataErased }

// ErasePersonalData asks for the erasure of the account's personal data by
// a compliance key; Reference names the request in compliance's records.
type ErasePersonalData struct {
	Reference string
	Staff
}

func (ErasePersonalData) isCommand() {}

// maxErasureReference bounds an erasure's reference.
const maxErasureReference = 64

// validErasureReference accepts a short reference of letters, digits and
// ".:_-", so that an erasure event cannot carry free text such as a name.
func validErasureReference(s string) bool {
	if s == "" || len(s) > maxErasureReference {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == ':' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// RetainedUntil is when the retention of the account's personal data ends:
// RetentionYears after its last operation. It is zero while the account is
// open, whose data its operations still need.
func (a *Account) RetainedUntil() time.Time {
	if a.Status != StatusClosed {
		return time.Time{}
	}
	return a.lastAt.AddDate(RetentionYears, 0, 0)
}

// Erased reports whether the account's personal data was erased.
func (a *Account) Erased() bool { return a.erased }

func decideErase(a *Account, c ErasePersonalData, now time.Time) ([]Event, error) {
	if c.StaffKey == "" {
		return nil, Errorf(CodeForbidden, "only compliance erases personal data")
	}
	if !validErasureReference(c.Reference) {
		return nil, Invalid("reference", "reference must be 1 to 64 letters, digits or .:_- (the erasure request's reference, not free text)")
	}
	if a.erased {
		return nil, Errorf(CodePersonalDataErased, "the personal data of account %s is already erased", a.ID)
	}
	if a.Status != StatusClosed {
		return nil, Errorf(CodePersonalDataRetained, "account %s is %s: its personal data is needed while it runs; close it, and erase it %d years after its last operation",
			a.ID, a.Status, RetentionYears)
	}
	until := a.RetainedUntil()
	if now.Before(until) {
		u := until.UTC().Format(time.RFC3339)
		return nil, Errorf(CodePersonalDataRetained, "the operations of account %s are retained until %s (R2: %d years from the last operation); its personal data cannot be erased before",
			a.ID, u, RetentionYears).With("retained_until", u)
	}
	return one(PersonalDataErased(c))
}

// MapPersonal returns e with fn applied to each non-empty field of personal
// data, and whether e has any such field (empty or not). Events without
// personal data come back unchanged. fn sees one field at a time, named
// as in the payload; an error from it is returned as is.
func MapPersonal(e Event, fn func(field, value string) (string, error)) (Event, bool, error) {
	var err error
	f := func(name string, s *string) {
		if err != nil || *s == "" {
			return
		}
		*s, err = fn(name, *s)
	}
	switch v := e.(type) {
	// identity_check is the operator's free text about how they checked
	// the holder (up to 100 characters: often the document and its number).
	case AccountOpened:
		f("holder_name", &v.HolderName)
		f("identity_check", &v.IdentityCheck)
		return v, true, err
	case FactorEnrolled:
		f("identity_check", &v.IdentityCheck)
		return v, true, err
	case CredentialLossReported:
		f("identity_check", &v.IdentityCheck)
		return v, true, err
	case FundsDeposited:
		f("identity_check", &v.IdentityCheck)
		return v, true, err
	case HolderNotified:
		f("identity_check", &v.IdentityCheck)
		return v, true, err
	case IdentityChanged:
		f("holder_name", &v.HolderName)
		return v, true, err
	case PhoneChanged:
		f("phone", &v.Phone)
		return v, true, err
	case BankAccountBound:
		f("holder_name", &v.HolderName)
		f("last4", &v.Last4)
		// The token is a keyed hash of the whole number under a key
		// derived from server.key, which every copy of the data directory
		// holds: in clear, the number is found again by trying candidates.
		f("bank_account_token", &v.BankAccountToken)
		return v, true, err
	case FundsWithdrawn:
		f("bank_account_last4", &v.BankAccountLast4)
		return v, true, err
	case PaymentInitiated:
		f("description", &v.Description)
		return v, true, err
	case PaymentConfirmed:
		f("description", &v.Description)
		return v, true, err
	case DeviceRegistered:
		f("label", &v.Label)
		return v, true, err
	case DeviceRevoked:
		f("reason", &v.Reason)
		f("identity_check", &v.IdentityCheck)
		return v, true, err
	case FactorRevoked:
		f("reason", &v.Reason)
		return v, true, err
	case SessionEnded:
		f("reason", &v.Reason)
		return v, true, err
	case ServiceSuspended:
		f("reason", &v.Reason)
		f("identity_check", &v.IdentityCheck)
		return v, true, err
	case ServiceReactivated:
		f("reason", &v.Reason)
		f("identity_check", &v.IdentityCheck)
		return v, true, err
	case AccountClosed:
		f("reason", &v.Reason)
		f("identity_check", &v.IdentityCheck)
		return v, true, err
	case AccessUnlocked:
		f("reason", &v.Reason)
		f("identity_check", &v.IdentityCheck)
		return v, true, err
	// A case's text is the customer's account of a loss or a dispute and
	// staff's notes and answers about it: sealed with the customer's key.
	case LossReported:
		f("description", &v.Description)
		return v, true, err
	case LossInvestigated:
		f("note", &v.Note)
		return v, true, err
	case DisputeOpened:
		f("subject", &v.Subject)
		f("description", &v.Description)
		return v, true, err
	case DisputeAnswered:
		f("answer", &v.Answer)
		return v, true, err
	case DisputeResolved:
		f("resolution", &v.Resolution)
		return v, true, err
	}
	return e, false, nil
}

// CaseOwner returns the account a loss case's or a dispute's stream is
// about, from the event that opens it.
func CaseOwner(e Event) (string, bool) {
	switch v := e.(type) {
	case LossReported:
		return v.AccountID, true
	case DisputeOpened:
		return v.AccountID, true
	}
	return "", false
}

// eraseState replaces the personal data the aggregate holds with
// ErasedText, as reading the erased fields gives.
func (a *Account) eraseState() {
	a.erased = true
	a.HolderName, a.Phone = ErasedText, erasedIfSet(a.Phone)
	if a.bank != nil {
		b := *a.bank
		b.HolderName, b.Last4, b.BankAccountToken = ErasedText, ErasedText, ErasedText
		a.bank = &b
	}
	for _, d := range a.devices {
		d.Label = erasedIfSet(d.Label)
	}
	for id, p := range a.pending {
		p.Description = erasedIfSet(p.Description)
		a.pending[id] = p
	}
}

func erasedIfSet(s string) string {
	if s == "" {
		return ""
	}
	return ErasedText
}
