package domain

import (
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"strings"
	"time"
)

// Sensitive changes of an account (R1, R26): each changes how the account
// is protected or paid out, so each hands the account to whoever makes it
// (a new factor, a changed reserved phone, a reset password, another bank
// account), and each must be authorised by fresh proofs (a step-up),
// verified exactly like a withdrawal's: attempts are counted and locked
// (R9), every attempt is an event, a one-time password that verified is
// spent (R7) and an OTP on the sending device does not count (R6). The
// kinds name the change in VerificationFailed.Purpose, ChangeRejected.Change,
// HolderNotified.Change and the challenge.
const (
	ChangeKindIdentity        = "identity_change"
	ChangeKindPhone           = "phone_change"
	ChangeKindCredentialReset = "credential_reset"
	ChangeKindEnrolment       = "factor_enrolment"
	ChangeKindRevocation      = "factor_revocation"
	ChangeKindLimit           = "limit_change"
	ChangeKindBankAccount     = "bank_account_binding"
	ChangeKindDevice          = "device_registration"
	ChangeKindDeviceRevoke    = "device_revocation"
	// Notified without a step-up: a loss report only takes access away,
	// and an operator's unlock follows an identity check.
	ChangeKindLossReport = "credential_loss_report"
	ChangeKindUnlock     = "access_unlock"
)

// RequiredCategories is how many independent factor categories (R5, R6)
// the proofs of a change must count: two, so that no single stolen
// credential changes how the account is protected or paid out (a lost
// password must not be resettable with a password alone).
func RequiredCategories(kind string) int { return 2 }

// stepUpNeed is how many categories the proofs of a change of kind must
// count on this account: RequiredCategories, except that an account whose
// factors span fewer categories (one opened with a password) may enrol
// with every category it has, so that its holder can add a second one,
// which then cools off. Factors reported lost still count there: a loss
// report must not lower what a new enrolment needs.
func (a *Account) stepUpNeed(kind string) int {
	if kind != ChangeKindEnrolment {
		return RequiredCategories(kind)
	}
	return min(RequiredCategories(kind), a.categories("", func(f *Factor) bool { return !f.Revoked }))
}

// usableCategories counts the categories the proofs of a change of kind
// can come from: active factors other than the one being reset (except),
// and for any change but an enrolment only those past their cooling-off.
func (a *Account) usableCategories(kind, except string, now time.Time) int {
	return a.categories(except, func(f *Factor) bool {
		return f.Active && (kind == ChangeKindEnrolment || !now.Before(f.UsableFrom))
	})
}

// PaymentChallenge is what certificate, e-signature, biometric and device
// proofs of a payment sign (dynamic linking: the signature covers what is
// paid, to whom): the UTF-8 bytes of
//
//	"payledger/payment/v1\n" + paymentID + "\n" + payer + "\n" + payee + "\n" +
//	amount + "\n" + fee + "\n" + currency + "\n" + base64url(nonce)
//
// with amount and fee as decimal strings with the currency's places
// ("12.50") and the nonce in unpadded base64url. A client rebuilds it from
// the payment's details to check what it signs.
func PaymentChallenge(paymentID, payer, payee string, amount, fee Money, nonce []byte) []byte {
	return []byte("payledger/payment/v1\n" + paymentID + "\n" + payer + "\n" + payee + "\n" +
		amount.String() + "\n" + fee.String() + "\n" +
		string(amount.Currency) + "\n" + base64.RawURLEncoding.EncodeToString(nonce))
}

// ChangeChallenge is what certificate, e-signature and biometric proofs of
// a change sign: SHA-256 of the text
//
//	"payledger/change/v1\n" + kind + "\n" + accountID + "\n" + version + "\n" + subject
//
// where version is the account's current version in decimal and subject
// is the requested holder_name or phone exactly as sent, or the id of the
// factor being reset. Every attempt that checks a proof appends an event,
// which moves the version on, so a signature over one challenge can be
// verified at most once.
func ChangeChallenge(kind, accountID string, version int64, subject string) []byte {
	h := sha256.New()
	h.Write([]byte("payledger/change/v1\n" + kind + "\n" + accountID + "\n" + strconv.FormatInt(version, 10) + "\n" + subject))
	return h.Sum(nil)
}

func decideIdentity(a *Account, c ChangeIdentity, p Policy, now time.Time) ([]Event, error) {
	name, err := holderName(c.HolderName)
	if err != nil {
		return nil, err
	}
	return a.authoriseChange(p, now, ChangeKindIdentity, c.HolderName, "", c.Auth, func(by Authorised) Event {
		return IdentityChanged{HolderName: name, Authorised: by}
	})
}

func decidePhone(a *Account, c ChangePhone, p Policy, now time.Time) ([]Event, error) {
	if !digitsOnly(strings.TrimPrefix(c.Phone, "+"), 5, 20) {
		return nil, Invalid("phone", "phone must be 5 to 20 digits, optionally after +")
	}
	return a.authoriseChange(p, now, ChangeKindPhone, c.Phone, "", c.Auth, func(by Authorised) Event {
		return PhoneChanged{Phone: c.Phone, Authorised: by}
	})
}

func decideReset(a *Account, c ResetCredential, p Policy, now time.Time) ([]Event, error) {
	f, ok := a.factors[c.FactorID]
	if !ok {
		return nil, Errorf(CodeNotFound, "factor %s not found", c.FactorID).With("field", "factor_id")
	}
	if f.Revoked {
		return nil, Errorf(CodeConflict, "factor %s is revoked; enrol a new one", c.FactorID)
	}
	if f.Method == MethodBiometric {
		return nil, Invalid("factor_id", "a biometric factor has no credential to reset; enrol it again")
	}
	if !f.Active && a.activeFactors() >= maxFactors {
		return nil, Errorf(CodeConflict, "an account may have at most %d active factors; revoke one before restoring this one", maxFactors)
	}
	// The factor being reset proves nothing about its own reset: whoever
	// knows a password must not be able to replace it with that password
	// alone. Refused before any proof is checked, so nothing is spent.
	for _, pr := range c.Auth.Proofs {
		if pr.FactorID == c.FactorID {
			return nil, Errorf(CodeFactorNotIndependent, "factor %s cannot authorise its own reset; prove %d other factor categories",
				c.FactorID, RequiredCategories(ChangeKindCredentialReset)).With("field", "proofs")
		}
	}
	cred, err := credential(f.Method, f.DeviceID, c.Password, c.Salt, c.SealedSecret, c.PublicKey, false)
	if err != nil {
		return nil, err
	}
	cred.FactorID, cred.Method = c.FactorID, f.Method
	// A reset credential is a new one: like a factor enrolled without an
	// operator's identity check, it cools off before it can move money.
	cred.UsableFrom = now.Add(p.CoolingOff)
	return a.authoriseChange(p, now, ChangeKindCredentialReset, c.FactorID, c.FactorID, c.Auth, func(by Authorised) Event {
		cred.Authorised = by
		return cred
	})
}

// signsChallenge reports whether a method's proof is a signature over a
// challenge.
func signsChallenge(method string) bool {
	return method == MethodCertificate || method == MethodESignature || method == MethodBiometric
}

// authoriseChange verifies the authorisation of a change of kind, after
// its input was validated, through the same path as a withdrawal: the lock
// (R9), the proofs (verifyProofs, R6 for auth.DeviceID), a wrong proof
// recorded as VerificationFailed that counts towards the lock, and a
// refusal after the proofs verified (too few categories) recorded as
// ChangeRejected with the one-time passwords it spent (R7). subject is what
// the challenge names; ref is the factor being reset, if any. done makes
// the change's event from how it was authorised.
func (a *Account) authoriseChange(p Policy, now time.Time, kind, subject, ref string, auth Authorisation, done func(Authorised) Event) ([]Event, error) {
	except := ""
	if kind == ChangeKindCredentialReset {
		except = ref
	}
	need := a.stepUpNeed(kind)
	if usable := a.usableCategories(kind, except, now); usable < need {
		// No proofs could authorise the change, so it is refused before
		// any proof is checked.
		return nil, Errorf(CodeInsufficientVerification, "this %s needs proofs of %d factor categories, and the account's usable factors span %d; enrol another factor (a new one cools off first) or ask an operator, who checks the holder's identity",
			strings.ReplaceAll(kind, "_", " "), need, usable).With("required_categories", need).With("verified_categories", 0)
	}
	if !validDeviceID(auth.DeviceID) {
		return nil, Invalid("device_id", deviceIDRule)
	}
	var challenge []byte
	if auth.Version != 0 {
		if auth.Version != a.Version {
			return nil, Errorf(CodeVersionConflict, "the account is at version %d, not %d: sign the challenge of the current version", a.Version, auth.Version).
				With("current_version", a.Version)
		}
		challenge = ChangeChallenge(kind, a.ID, a.Version, subject)
	} else {
		for _, pr := range auth.Proofs {
			if f, ok := a.factors[pr.FactorID]; ok && f.Active && signsChallenge(f.Method) {
				return nil, Invalid("version", "certificate, e-signature and biometric proofs sign the change's challenge, which names the account version: send version")
			}
		}
	}
	pre, n, err := a.lockCheck(now)
	if err != nil {
		return a.lockedAttempt(kind, ref, auth.DeviceID, n), err
	}
	// A factor still cooling off may enrol further factors (a holder who
	// opened the account online has only such factors), but authorises no
	// other change, which could redirect the money or the notices.
	dv, bad, fail := a.verifyDevice(auth.DeviceID, auth.Device, kind, subject, now)
	if bad != nil {
		return nil, bad
	}
	if fail != nil {
		return verificationFailed(p, now, pre, kind, ref, auth.DeviceID, n, fail, nil)
	}
	v, bad, fail := a.verifyProofs(p, auth.Proofs, []string{auth.DeviceID}, challenge, kind != ChangeKindEnrolment, dv.proven, now)
	if bad != nil {
		return nil, bad
	}
	if fail != nil {
		evs, err := verificationFailed(p, now, pre, kind, ref, auth.DeviceID, n, fail, v.otpUses)
		return dv.withUse(evs), err // a device signature that verified is spent too
	}
	if len(v.categories) < need {
		what := strings.ReplaceAll(kind, "_", " ")
		e := Errorf(CodeInsufficientVerification, "a %s needs proofs of %d independent factor categories; these count %d", what, need, len(v.categories))
		if v.reachesWithExcluded(need) {
			e = Errorf(CodeFactorNotIndependent, "a one-time password counts as a second factor only when a registered device other than the one it is delivered to signs the %s (R6); without it the proofs count %d of the %d categories it needs",
				what, len(v.categories), need)
		}
		e = e.With("required_categories", need).With("verified_categories", len(v.categories))
		return dv.withUse(append(pre, ChangeRejected{Change: kind, Reference: ref, DeviceID: auth.DeviceID, Code: e.Code, Reason: e.Message,
			Details: e.Details, OTPUses: v.otpUses})), e
	}
	return dv.withUse(append(pre, done(Authorised{DeviceID: auth.DeviceID, FactorIDs: v.factorIDs, Categories: v.categories, OTPUses: v.otpUses}),
		HolderNotified{Change: kind, Reference: ref})), nil
}

// operatorOrStepUp authorises a change that an operator may make after
// checking the holder's identity (staff), and the holder with a step-up
// (auth); either way a HolderNotified follows.
func (a *Account) operatorOrStepUp(p Policy, now time.Time, kind, subject, ref string, staff Staff, auth Authorisation, done func(Authorised) Event) ([]Event, error) {
	if staff.StaffKey == "" {
		return a.authoriseChange(p, now, kind, subject, ref, auth, done)
	}
	if !staff.IdentityChecked() {
		return nil, Invalid("identity_check", "an operator makes a "+strings.ReplaceAll(kind, "_", " ")+
			" only after checking the holder's identity: name the check in identity_check")
	}
	return []Event{done(Authorised{}), HolderNotified{Change: kind, Reference: ref, Staff: staff}}, nil
}

// reachesWithExcluded reports whether the proofs would have counted need
// categories had the OTP excluded by R6 counted.
func (v verified) reachesWithExcluded(need int) bool {
	if !v.excluded {
		return false
	}
	if need <= 1 {
		return true // the excluded OTP verified: one category at least
	}
	return v.levelWithExcluded != LevelSingleFactor // two categories or more
}
