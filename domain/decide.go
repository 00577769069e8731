package domain

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/shopspring/decimal"
)

// Decide turns a command into events against the account's current state.
// It is pure: no I/O, no clock (now is fixed once by the caller), no
// randomness. On success it returns the events to append. On refusal it
// returns a *Error; the events returned alongside an error (a failed login,
// a rejected payment) still must be appended, because the attempt itself is
// an operation the log records (R1, R9, R15). With no events and an error,
// nothing changes.
func Decide(a *Account, cmd Command, p Policy, now time.Time) ([]Event, error) {
	if staff, ok := staffOf(cmd); ok {
		if err := staff.validate(); err != nil {
			return nil, err
		}
	}
	if open, ok := cmd.(OpenAccount); ok {
		return decideOpen(a, open, p, now)
	}
	if !a.Exists() {
		return nil, Errorf(CodeNotFound, "account not found")
	}
	if erase, ok := cmd.(ErasePersonalData); ok {
		return decideErase(a, erase, now)
	}
	if a.Status == StatusClosed {
		return nil, Errorf(CodeAccountClosed, "account %s is closed", a.ID)
	}
	switch c := cmd.(type) {
	case EnrollFactor:
		return decideEnroll(a, c, p, now)
	case RevokeFactor:
		return decideRevoke(a, c, p, now)
	case ReportCredentialLoss:
		return decideLossReport(a, c)
	case ResetCredential:
		return decideReset(a, c, p, now)
	case Login:
		return decideLogin(a, c, p, now)
	case RegisterDevice:
		return decideRegisterDevice(a, c, p, now)
	case RevokeDevice:
		return decideRevokeDevice(a, c, p, now)
	case Logout:
		if _, ok := a.Session(c.SessionID); !ok {
			return nil, Errorf(CodeUnauthenticated, "the session has already ended")
		}
		return one(SessionEnded{SessionID: c.SessionID, Reason: limitText(c.Reason, 200)})
	case AdjustLimit:
		return decideLimit(a, c, p, now)
	case ChangeIdentity:
		return decideIdentity(a, c, p, now)
	case ChangePhone:
		return decidePhone(a, c, p, now)
	case BindBankAccount:
		return decideBind(a, c, p, now)
	case Deposit:
		return decideDeposit(a, c)
	case InitiatePayment:
		return decideInitiate(a, c, p, now)
	case ConfirmPayment:
		return decideConfirm(a, c, p, now)
	case Withdraw:
		return decideWithdraw(a, c, p, now)
	case Suspend:
		// An operator's suspension for risk replaces the holder's own, so
		// that the holder cannot lift it.
		if a.Status == StatusSuspended && (c.Staff.StaffKey == "" || a.staffSuspended) {
			return nil, Errorf(CodeAccountSuspended, "account %s is already suspended", a.ID)
		}
		return one(ServiceSuspended{Reason: limitText(c.Reason, 200), Staff: c.Staff})
	case Reactivate:
		if a.Status != StatusSuspended {
			return nil, Errorf(CodeConflict, "account %s is not suspended", a.ID)
		}
		if a.staffSuspended && c.Staff.StaffKey == "" {
			return nil, Errorf(CodeForbidden, "an operator suspended this account; only an operator can reactivate it")
		}
		return one(ServiceReactivated{Reason: limitText(c.Reason, 200), Staff: c.Staff})
	case CloseAccount:
		if a.staffSuspended && c.Staff.StaffKey == "" {
			return nil, Errorf(CodeForbidden, "an operator suspended this account; only an operator can close it")
		}
		if avail := a.Available(c.Balance.Projected, c.Balance.Checkpoint); !avail.Amount.IsZero() {
			return nil, Errorf(CodeConflict, "withdraw the remaining balance %s before closing", avail).
				With("available", avail.String())
		}
		return one(AccountClosed{Reason: limitText(c.Reason, 200), Staff: c.Staff})
	case RecoverCompensation:
		return decideRecover(a, c)
	case ClaimLoss:
		return decideClaim(a, c)
	case Unlock:
		if c.Staff.StaffKey == "" {
			return decideHolderUnlock(a, c, p, now)
		}
		if !c.Staff.IdentityChecked() {
			return nil, Invalid("identity_check", "an operator lifts a lock only after checking the holder's identity: name the check in identity_check")
		}
		if a.lockedUntil.IsZero() || !now.Before(a.lockedUntil) {
			return nil, Errorf(CodeConflict, "account %s is not locked", a.ID)
		}
		return []Event{AccessUnlocked{Reason: limitText(c.Reason, 200), Staff: c.Staff},
			HolderNotified{Change: ChangeKindUnlock, Staff: c.Staff}}, nil
	}
	return nil, Errorf(CodeInternal, "unknown command %T", cmd)
}

func one(e Event) ([]Event, error) { return []Event{e}, nil }

func limitText(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n])
}

func digitsOnly(s string, min, max int) bool {
	if len(s) < min || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func holderName(s string) (string, error) {
	name := strings.TrimSpace(s)
	if name == "" || utf8.RuneCountInString(name) > 200 {
		return "", Invalid("holder_name", "holder_name must be 1 to 200 characters")
	}
	return name, nil
}

func decideOpen(a *Account, c OpenAccount, p Policy, now time.Time) ([]Event, error) {
	if a.Exists() {
		return nil, Errorf(CodeConflict, "account %s already exists", a.ID)
	}
	name, err := holderName(c.HolderName)
	if err != nil {
		return nil, err
	}
	cur, err := ParseCurrency(c.Currency, "currency")
	if err != nil {
		return nil, err
	}
	if cur != p.DefaultAgreedLimit.Currency {
		return nil, Invalid("currency", fmt.Sprintf("currency %s is not offered: accounts are kept in %s, the currency the daily caps are set in", cur, p.DefaultAgreedLimit.Currency))
	}
	kind := c.Kind
	if kind == "" {
		kind = KindPersonal
	}
	if kind != KindPersonal && kind != KindMerchant {
		return nil, Invalid("kind", "kind must be personal or merchant")
	}
	if c.Staff.StaffKey != "" && !c.Staff.IdentityChecked() {
		return nil, Invalid("identity_check", "an operator opens an account only after checking the holder's identity: name the check in identity_check")
	}
	opened := AccountOpened{AccountID: c.AccountID, HolderName: name, Currency: cur, Kind: kind, AgreedDailyLimit: p.DefaultAgreedLimit, Staff: c.Staff}
	first, err := newFactor(&Account{factors: map[string]*Factor{}}, c.Factor, c.Staff, p, now)
	if err != nil {
		return nil, err
	}
	return []Event{opened, first}, nil
}

// maxFactors bounds how many active factors one account may have.
const maxFactors = 20

// newFactor validates an enrolment and returns its event, without its
// authorisation: the first factor of an account, or one an operator
// enrols after an identity check, or (decideEnroll) one the holder's
// step-up authorises. Without an identity check the factor cools off.
func newFactor(a *Account, c EnrollFactor, staff Staff, p Policy, now time.Time) (FactorEnrolled, error) {
	cat, ok := CategoryOf(c.Method)
	if !ok {
		return FactorEnrolled{}, Invalid("method", "method must be one of password, totp, certificate, e_signature, biometric")
	}
	if _, dup := a.factors[c.FactorID]; dup {
		return FactorEnrolled{}, Errorf(CodeConflict, "factor %s already exists", c.FactorID)
	}
	if a.activeFactors() >= maxFactors {
		return FactorEnrolled{}, Errorf(CodeConflict, "an account may have at most %d active factors; revoke one first", maxFactors)
	}
	if c.DeviceID != "" && !validDeviceID(c.DeviceID) {
		return FactorEnrolled{}, Invalid("device_id", deviceIDRule)
	}
	ev := FactorEnrolled{FactorID: c.FactorID, Method: c.Method, Category: cat, DeviceID: c.DeviceID, Staff: staff}
	cred, err := credential(c.Method, c.DeviceID, c.Password, c.Salt, c.SealedSecret, c.PublicKey, true)
	if err != nil {
		return FactorEnrolled{}, err
	}
	ev.PasswordHash, ev.SealedSecret, ev.PublicKey = cred.PasswordHash, cred.SealedSecret, cred.PublicKey
	if !staff.IdentityChecked() {
		ev.UsableFrom = now.Add(p.CoolingOff)
	}
	return ev, nil
}

func decideEnroll(a *Account, c EnrollFactor, p Policy, now time.Time) ([]Event, error) {
	ev, err := newFactor(a, c, c.Staff, p, now)
	if err != nil {
		return nil, err
	}
	return a.operatorOrStepUp(p, now, ChangeKindEnrolment, c.Method, ev.FactorID, c.Staff, c.Auth, func(by Authorised) Event {
		ev.Authorised = by
		return ev
	})
}

func decideRevoke(a *Account, c RevokeFactor, p Policy, now time.Time) ([]Event, error) {
	if err := a.activeFactor(c.FactorID); err != nil {
		return nil, err
	}
	if a.activeFactors() == 1 {
		return nil, Errorf(CodeConflict, "factor %s is the account's last active factor; enrol another before revoking it", c.FactorID)
	}
	return a.authoriseChange(p, now, ChangeKindRevocation, c.FactorID, c.FactorID, c.Auth, func(by Authorised) Event {
		return FactorRevoked{FactorID: c.FactorID, Reason: limitText(c.Reason, 200), Authorised: by}
	})
}

func decideLossReport(a *Account, c ReportCredentialLoss) ([]Event, error) {
	if err := a.activeFactor(c.FactorID); err != nil {
		return nil, err
	}
	if c.Staff.StaffKey != "" && !c.Staff.IdentityChecked() {
		return nil, Invalid("identity_check", "an operator takes a loss report only after checking the holder's identity: name the check in identity_check")
	}
	return []Event{CredentialLossReported{FactorID: c.FactorID, Method: a.factors[c.FactorID].Method, Staff: c.Staff},
		HolderNotified{Change: ChangeKindLossReport, Reference: c.FactorID, Staff: c.Staff}}, nil
}

func decideLimit(a *Account, c AdjustLimit, p Policy, now time.Time) ([]Event, error) {
	m, err := ParseAmount(c.Limit, a.Currency, "agreed_daily_limit")
	if err != nil {
		return nil, err
	}
	if !m.Amount.GreaterThan(a.AgreedLimit.Amount) {
		// A lower limit only protects the holder: no step-up.
		return []Event{LimitAdjusted{Previous: a.AgreedLimit, AgreedDailyLimit: m},
			HolderNotified{Change: ChangeKindLimit, Reference: m.String()}}, nil
	}
	return a.authoriseChange(p, now, ChangeKindLimit, c.Limit, m.String(), c.Auth, func(by Authorised) Event {
		return LimitAdjusted{Previous: a.AgreedLimit, AgreedDailyLimit: m, Authorised: by}
	})
}

// credential validates and derives the stored credential of a factor.
func credential(method, deviceID, password string, salt, sealed, pub []byte, enrol bool) (CredentialReset, error) {
	var out CredentialReset
	switch method {
	case MethodPassword:
		if utf8.RuneCountInString(password) < MinPasswordLength || len(password) > 1024 {
			return out, Invalid("password", fmt.Sprintf("password must be %d to 1024 characters", MinPasswordLength))
		}
		h, err := HashPassword(password, salt)
		if err != nil {
			return out, Errorf(CodeInternal, "%v", err)
		}
		out.PasswordHash = h
	case MethodTOTP:
		if enrol && deviceID == "" {
			return out, Invalid("device_id", "a totp factor is enrolled on a device_id")
		}
		if len(sealed) == 0 {
			return out, Errorf(CodeInternal, "totp seed missing")
		}
		out.SealedSecret = sealed
	case MethodCertificate, MethodESignature:
		if len(pub) != 32 {
			return out, Invalid("public_key", "public_key must be a base64 Ed25519 public key (32 bytes)")
		}
		out.PublicKey = pub
	case MethodBiometric:
		if enrol && deviceID == "" {
			return out, Invalid("device_id", "a biometric factor is enrolled on a device_id")
		}
	}
	return out, nil
}

func (a *Account) activeFactor(id string) error {
	f, ok := a.factors[id]
	if !ok {
		return Errorf(CodeNotFound, "factor %s not found", id).With("field", "factor_id")
	}
	if !f.Active {
		return Errorf(CodeConflict, "factor %s is no longer active", id)
	}
	return nil
}

func decideBind(a *Account, c BindBankAccount, p Policy, now time.Time) ([]Event, error) {
	if !digitsOnly(c.Number, 8, 34) {
		return nil, Invalid("bank_account_number", "bank_account_number must be 8 to 34 digits")
	}
	name, err := holderName(c.HolderName)
	if err != nil {
		return nil, err
	}
	if !strings.EqualFold(name, a.HolderName) {
		return nil, Invalid("holder_name", "the bank account must be in the account holder's own name")
	}
	return a.authoriseChange(p, now, ChangeKindBankAccount, c.Number, "", c.Auth, func(by Authorised) Event {
		return BankAccountBound{BankAccountToken: c.Token, Last4: c.Number[len(c.Number)-4:], HolderName: name, Authorised: by}
	})
}

// moneyOf parses an amount and checks it is in the account's currency.
func (a *Account) moneyOf(amount, currency string) (Money, error) {
	if currency != "" && Currency(currency) != a.Currency {
		return Money{}, Invalid("currency", fmt.Sprintf("account %s is kept in %s, not %s", a.ID, a.Currency, currency))
	}
	return ParseAmount(amount, a.Currency, "amount")
}

// bankRefKey is the form a bank reference is compared in: banks print
// references with varying case and spacing, and one transfer is credited
// once however it is typed.
func bankRefKey(ref string) string { return strings.ToUpper(strings.Join(strings.Fields(ref), "")) }

func (a *Account) requireActive() error {
	if a.Status == StatusSuspended {
		return Errorf(CodeAccountSuspended, "account %s is suspended", a.ID)
	}
	return nil
}

func decideDeposit(a *Account, c Deposit) ([]Event, error) {
	if c.Staff.StaffKey == "" {
		return nil, Errorf(CodeForbidden, "only the funding desk credits money, for a bank transfer it matched")
	}
	if err := a.requireActive(); err != nil {
		return nil, err
	}
	m, err := a.moneyOf(c.Amount, c.Currency)
	if err != nil {
		return nil, err
	}
	ref := strings.TrimSpace(c.Reference)
	if ref == "" || utf8.RuneCountInString(ref) > 140 {
		return nil, Invalid("reference", "reference must name the bank transfer (1 to 140 characters)")
	}
	if id, used := a.depositRefs[bankRefKey(ref)]; used {
		return nil, Errorf(CodeBankReferenceUsed, "bank transfer %q was already credited as deposit %s", ref, id).
			With("deposit_id", id).With("field", "reference")
	}
	return one(FundsDeposited{DepositID: c.DepositID, DebitAccount: ClearingAccountID(a.Currency), CreditAccount: a.ID,
		Amount: m, Reference: ref, Staff: c.Staff})
}

// lockCheck applies R9's lock. While locked it returns access_locked. When
// a lock has expired it returns the AccessUnlocked event to record first
// and the failure count to continue from (zero).
func (a *Account) lockCheck(now time.Time) ([]Event, int, error) {
	if a.lockedUntil.IsZero() {
		return nil, a.failures, nil
	}
	if now.Before(a.lockedUntil) {
		return nil, a.failures, Errorf(CodeAccessLocked, "access is locked until %s", a.lockedUntil.UTC().Format(time.RFC3339Nano)).
			With("locked_until", a.lockedUntil.UTC().Format(time.RFC3339Nano))
	}
	return []Event{AccessUnlocked{Reason: "lock expired"}}, 0, nil
}

// verificationFailed records a wrong proof on a payment or withdrawal
// instruction: one more consecutive failure (R9), locking at the threshold.
// spent are the one-time passwords that verified beside the wrong proof;
// they are used up all the same (R7).
func verificationFailed(p Policy, now time.Time, pre []Event, purpose, ref, device string, n int, fail *proofFailure, spent []OTPUse) ([]Event, error) {
	attempt := VerificationFailed{Purpose: purpose, Reference: ref, DeviceID: device, Reason: fail.reason, FailedAttempts: n + 1, OTPUses: spent}
	return failed(p, now, pre, attempt, n+1, CodeProofInvalid, fail.reason)
}

// lockedAttempt records a verification attempt that the lock turned away
// (R9); it does not add to the failure count.
func (a *Account) lockedAttempt(purpose, ref, device string, n int) []Event {
	return []Event{VerificationFailed{Purpose: purpose, Reference: ref, DeviceID: device, Reason: "access locked",
		FailedAttempts: n, LockedUntil: a.lockedUntil}}
}

// failed records a failed attempt and, at the threshold, the lock.
func failed(p Policy, now time.Time, pre []Event, attempt Event, n int, code, reason string) ([]Event, error) {
	events := append(pre, attempt)
	if n >= p.MaxFailures {
		until := now.Add(p.LockDuration)
		events = append(events, AccessLocked{Until: until, FailedAttempts: n})
		return events, Errorf(CodeAccessLocked, "%s; %d failed attempts lock access until %s", reason, n, until.UTC().Format(time.RFC3339Nano)).
			With("locked_until", until.UTC().Format(time.RFC3339Nano))
	}
	return events, Errorf(code, "%s", reason).With("attempts_remaining", p.MaxFailures-n)
}

func decideLogin(a *Account, c Login, p Policy, now time.Time) ([]Event, error) {
	if !validDeviceID(c.DeviceID) {
		return nil, Invalid("device_id", deviceIDRule)
	}
	pre, n, err := a.lockCheck(now)
	if err != nil {
		return []Event{LoginFailed{DeviceID: c.DeviceID, Code: CodeAccessLocked, Reason: "access locked", FailedAttempts: n, LockedUntil: a.lockedUntil}}, err
	}
	dv, bad, fail := a.verifyDevice(c.DeviceID, c.Device, "login", "", now)
	if bad != nil {
		return nil, bad
	}
	if fail != nil {
		return failed(p, now, pre, LoginFailed{DeviceID: c.DeviceID, Code: CodeAuthFailed, Reason: fail.reason, FailedAttempts: n + 1},
			n+1, CodeAuthFailed, fail.reason)
	}
	v, bad, fail := a.verifyProofs(p, c.Proofs, []string{c.DeviceID}, nil, false, dv.proven, now)
	if bad != nil {
		return nil, bad
	}
	// A one-time password that verified is spent even when the login fails
	// (R7): the failure event records it.
	// From here a device signature that verified is spent, whatever the
	// outcome, so a refused instruction's signature cannot be sent again.
	if fail != nil {
		evs, err := failed(p, now, pre, LoginFailed{DeviceID: c.DeviceID, Code: CodeAuthFailed, Reason: fail.reason, FailedAttempts: n + 1,
			OTPUses: v.otpUses}, n+1, CodeAuthFailed, fail.reason)
		return dv.withUse(evs), err
	}
	if len(v.categories) == 0 {
		// Not a wrong proof, so it does not count towards the lock, but the
		// attempt is recorded like every other (R9).
		err := Errorf(CodeFactorNotIndependent, "a one-time password delivered to the device that is logging in does not count as a factor (R6)")
		return dv.withUse(append(pre, LoginFailed{DeviceID: c.DeviceID, Code: CodeFactorNotIndependent, Reason: err.Message, FailedAttempts: n,
			OTPUses: v.otpUses})), err
	}
	return dv.withUse(append(pre, LoginSucceeded{SessionID: c.SessionID, TokenHash: c.TokenHash, DeviceID: c.DeviceID,
		FactorIDs: v.factorIDs, Categories: v.categories, ExpiresAt: now.Add(p.SessionTTL), OTPUses: v.otpUses})), nil
}

// maxDescription bounds free text on a payment.
const maxDescription = 140

var channels = map[string]bool{"app": true, "web": true, "api": true, "pos": true}
var terminals = map[string]bool{"mobile": true, "desktop": true, "pos": true, "server": true}

func decideInitiate(a *Account, c InitiatePayment, p Policy, now time.Time) ([]Event, error) {
	if err := a.requireActive(); err != nil {
		return nil, err
	}
	if _, _, err := a.lockCheck(now); err != nil {
		return nil, err
	}
	m, err := a.moneyOf(c.Amount, c.Currency)
	if err != nil {
		return nil, err
	}
	switch {
	case c.PayeeID == a.ID:
		return nil, Invalid("payee_account_id", "an account cannot pay itself")
	case !c.Payee.Exists:
		return nil, Errorf(CodeNotFound, "payee account %s not found", c.PayeeID).With("field", "payee_account_id")
	case !c.Payee.takesPayments():
		return nil, payeeUnavailable(c.PayeeID, c.Payee)
	case c.Payee.Currency != a.Currency:
		return nil, Invalid("payee_account_id", "payee account is kept in another currency")
	case !channels[c.Channel]:
		return nil, Invalid("channel", "channel must be one of app, web, api, pos")
	case !terminals[c.Terminal]:
		return nil, Invalid("terminal", "terminal must be one of mobile, desktop, pos, server")
	case !validDeviceID(c.DeviceID):
		return nil, Invalid("device_id", deviceIDRule)
	case utf8.RuneCountInString(c.Description) > maxDescription:
		return nil, Invalid("description", "description is at most 140 characters")
	case len(c.Nonce) < 16:
		return nil, Errorf(CodeInternal, "payment nonce too short")
	}
	fee, schedule := p.Fees.FeeFor(m), ""
	if fee.Amount.IsPositive() {
		schedule = p.Fees.Version
	}
	return one(PaymentInitiated{FeeSchedule: schedule, PaymentID: c.PaymentID, Payer: a.ID, Payee: c.PayeeID, Amount: m, Fee: fee,
		Channel: c.Channel, Terminal: c.Terminal, DeviceID: c.DeviceID, Description: c.Description,
		Challenge: PaymentChallenge(c.PaymentID, a.ID, c.PayeeID, m, fee, c.Nonce), ExpiresAt: now.Add(p.ChallengeTTL)})
}

// takesPayments reports whether a payee may be paid: R14 lets a customer
// suspend or close their payment service, and a suspended or closed
// account receives no payments either.
func (p Payee) takesPayments() bool {
	return p.Status != StatusSuspended && p.Status != StatusClosed
}

func payeeUnavailable(id string, p Payee) *Error {
	return Errorf(CodePayeeUnavailable, "payee account %s is %s and accepts no payments", id, p.Status).
		With("field", "payee_account_id").With("payee_status", p.Status)
}

func (a *Account) pendingPayment(id string) (PaymentInitiated, error) {
	pi, ok := a.pending[id]
	if ok {
		return pi, nil
	}
	if st, done := a.finished[id]; done {
		return pi, Errorf(CodeConflict, "payment %s is already %s", id, st).With("payment_status", st)
	}
	return pi, Errorf(CodeNotFound, "no pending payment %s on this account", id)
}

func decideConfirm(a *Account, c ConfirmPayment, p Policy, now time.Time) ([]Event, error) {
	if err := a.requireActive(); err != nil {
		return nil, err
	}
	pi, err := a.pendingPayment(c.PaymentID)
	if err != nil {
		return nil, err
	}
	if c.PayeeID != pi.Payee || !c.Payee.Exists {
		// The payee of a pending payment always exists: the caller did not
		// look it up (or looked up another). Refuse rather than skip R14.
		return nil, Errorf(CodeInternal, "the payee of payment %s was not looked up", pi.PaymentID)
	}
	if !validDeviceID(c.DeviceID) {
		return nil, Invalid("device_id", deviceIDRule)
	}
	pre, n, err := a.lockCheck(now)
	if err != nil {
		return a.lockedAttempt("payment", pi.PaymentID, c.DeviceID, n), err
	}
	var spent []OTPUse // one-time passwords that verified are spent even on refusal (R7)
	var dv deviceCheck // and so is a device signature that verified
	reject := func(e *Error) ([]Event, error) {
		return dv.withUse(append(pre, PaymentRejected{PaymentID: pi.PaymentID, Code: e.Code, Reason: e.Message, Details: e.Details, OTPUses: spent})), e
	}
	if now.After(pi.ExpiresAt) {
		return reject(Errorf(CodePaymentExpired, "payment %s expired at %s", pi.PaymentID, pi.ExpiresAt.UTC().Format(time.RFC3339Nano)))
	}
	dv, bad, fail := a.verifyDevice(c.DeviceID, c.Device, "payment", pi.PaymentID, now)
	if bad != nil {
		return nil, bad
	}
	if fail != nil {
		return verificationFailed(p, now, pre, "payment", pi.PaymentID, c.DeviceID, n, fail, nil)
	}
	v, bad, fail := a.verifyProofs(p, c.Proofs, []string{c.DeviceID, pi.DeviceID}, pi.Challenge, true, dv.proven, now)
	if bad != nil {
		return nil, bad
	}
	if fail != nil {
		evs, err := verificationFailed(p, now, pre, "payment", pi.PaymentID, c.DeviceID, n, fail, v.otpUses)
		return dv.withUse(evs), err
	}
	spent = v.otpUses
	if len(v.categories) == 0 {
		return reject(Errorf(CodeFactorNotIndependent, "a one-time password delivered to the device issuing the payment does not count as a factor (R6)").
			With("verification_level", "none"))
	}
	if !c.Payee.takesPayments() {
		return reject(payeeUnavailable(pi.Payee, c.Payee))
	}
	// The caps count what is paid to payees (R10); the fee is taken too,
	// so the balance must cover both.
	total := pi.Amount.Add(pi.Fee)
	if lerr := a.checkLimits(p, now, v.level(), pi.Amount.Amount); lerr != nil {
		if v.excluded && a.checkLimits(p, now, v.levelWithExcluded, pi.Amount.Amount) == nil {
			return reject(Errorf(CodeFactorNotIndependent, "a one-time password counts as a second factor only when a registered device other than the one it is delivered to signs the payment (R6); %s", lerr.Message).
				With("verification_level", v.level()))
		}
		return reject(lerr)
	}
	if avail := a.Available(c.Balance.Projected, c.Balance.Checkpoint); avail.LessThan(total) {
		return reject(Errorf(CodeInsufficientFunds, "available balance %s is less than %s", avail, total).
			With("available", avail.String()).With("required", total.String()))
	}
	limit, used := a.DailyCap(p, now, v.level())
	evs := append(pre, PaymentConfirmed{PaymentID: pi.PaymentID, DebitAccount: a.ID, CreditAccount: pi.Payee,
		Amount: pi.Amount, Fee: pi.Fee, Description: pi.Description, VerificationLevel: v.level(),
		Categories: v.categories, FactorIDs: v.factorIDs, DeviceID: c.DeviceID, OTPUses: v.otpUses,
		DailyLimit: limit, DailyUsed: used.Add(pi.Amount)})
	if pi.Fee.Amount.IsPositive() {
		evs = append(evs, FeeCharged{PaymentID: pi.PaymentID, DebitAccount: a.ID, CreditAccount: FeeIncomeAccountID(a.Currency),
			Amount: pi.Fee, Schedule: pi.FeeSchedule})
	}
	return dv.withUse(evs), nil
}

// capCheck is one nested daily cap of R10.
type capCheck struct {
	name  string
	level string
	limit decimal.Decimal
	used  decimal.Decimal
}

// DailyCap returns the cap that a payment at level is reported against
// (limit) and what the day has used of it, for replies to the customer.
func (a *Account) DailyCap(p Policy, now time.Time, level string) (limit, used Money) {
	caps, _ := a.caps(p, now, level)
	c := caps[0]
	return Money{Amount: c.limit, Currency: a.Currency}, Money{Amount: c.used, Currency: a.Currency}
}

// caps lists the first n caps of the array as those a payment at level
// must stay within, its own first (R10: the caps nest, so a weaker
// verification never goes past a stronger one's cap).
func (a *Account) caps(p Policy, now time.Time, level string) (caps [3]capCheck, n int) {
	single, noCert, all := a.DayUsage(now)
	agreed := capCheck{"agreed_daily", LevelTwoFactorCertificate, a.AgreedLimit.Amount, all}
	two := capCheck{"two_factor_daily", LevelTwoFactor, p.TwoFactorDailyCap.Amount, noCert}
	one := capCheck{"single_factor_daily", LevelSingleFactor, p.SingleFactorDailyCap.Amount, single}
	switch level {
	case LevelSingleFactor:
		return [3]capCheck{one, two, agreed}, 3
	case LevelTwoFactor:
		return [3]capCheck{two, agreed}, 2
	}
	return [3]capCheck{agreed}, 1
}

// checkLimits refuses amt when it would take any applicable cap past its
// limit, naming the cap that binds (the one with least remaining).
func (a *Account) checkLimits(p Policy, now time.Time, level string, amt decimal.Decimal) *Error {
	var bind *capCheck
	caps, n := a.caps(p, now, level)
	for i := range n {
		c := &caps[i]
		if c.used.Add(amt).GreaterThan(c.limit) && (bind == nil || c.limit.Sub(c.used).LessThan(bind.limit.Sub(bind.used))) {
			bind = c
		}
	}
	if bind == nil {
		return nil
	}
	remaining := decimal.Max(bind.limit.Sub(bind.used), decimal.Zero)
	cur := a.Currency
	return Errorf(CodeDailyLimitExceeded, "payment of %s would pass the %s limit of %s for today: %s used, %s remaining",
		Money{amt, cur}, strings.ReplaceAll(bind.name, "_", " "), Money{bind.limit, cur}, Money{bind.used, cur}, Money{remaining, cur}).
		With("limit", Money{bind.limit, cur}.String()).
		With("used", Money{bind.used, cur}.String()).
		With("remaining", Money{remaining, cur}.String()).
		With("cap", bind.name).
		With("verification_level", level)
}

func decideWithdraw(a *Account, c Withdraw, p Policy, now time.Time) ([]Event, error) {
	if err := a.requireActive(); err != nil {
		return nil, err
	}
	if a.bank == nil {
		return nil, Errorf(CodeConflict, "bind a same-name bank account before withdrawing").With("field", "bank_account")
	}
	if !strings.EqualFold(a.bank.HolderName, a.HolderName) {
		// The identity changed since the binding: the bound account is no
		// longer known to be the customer's own same-name account (R10's
		// exclusion), so it must be bound again under the current name.
		return nil, Errorf(CodeBankAccountNameMismatch, "the bank account ****%s was bound under another holder name; bind it again under the current name before withdrawing", a.bank.Last4).
			With("field", "bank_account")
	}
	m, err := a.moneyOf(c.Amount, c.Currency)
	if err != nil {
		return nil, err
	}
	if !validDeviceID(c.DeviceID) {
		return nil, Invalid("device_id", deviceIDRule)
	}
	pre, n, err := a.lockCheck(now)
	if err != nil {
		return a.lockedAttempt("withdrawal", c.WithdrawalID, c.DeviceID, n), err
	}
	dv, bad, fail := a.verifyDevice(c.DeviceID, c.Device, "withdrawal", c.Amount, now)
	if bad != nil {
		return nil, bad
	}
	if fail != nil {
		return verificationFailed(p, now, pre, "withdrawal", c.WithdrawalID, c.DeviceID, n, fail, nil)
	}
	v, bad, fail := a.verifyProofs(p, c.Proofs, []string{c.DeviceID}, nil, true, dv.proven, now)
	if bad != nil {
		return nil, bad
	}
	if fail != nil {
		evs, err := verificationFailed(p, now, pre, "withdrawal", c.WithdrawalID, c.DeviceID, n, fail, v.otpUses)
		return dv.withUse(evs), err
	}
	// From here the proofs verified: a refusal is recorded, with the
	// one-time passwords it spent (R1, R7, R9).
	reject := func(e *Error) ([]Event, error) {
		return dv.withUse(append(pre, WithdrawalRejected{WithdrawalID: c.WithdrawalID, Amount: m, DeviceID: c.DeviceID,
			Code: e.Code, Reason: e.Message, Details: e.Details, OTPUses: v.otpUses})), e
	}
	if len(v.categories) == 0 {
		return reject(Errorf(CodeFactorNotIndependent, "a one-time password delivered to the device issuing the withdrawal does not count as a factor (R6)"))
	}
	if avail := a.Available(c.Balance.Projected, c.Balance.Checkpoint); avail.LessThan(m) {
		return reject(Errorf(CodeInsufficientFunds, "available balance %s is less than %s", avail, m).
			With("available", avail.String()).With("required", m.String()))
	}
	return dv.withUse(append(pre, FundsWithdrawn{WithdrawalID: c.WithdrawalID, DebitAccount: a.ID, CreditAccount: ClearingAccountID(a.Currency),
		Amount: m, BankAccountLast4: a.bank.Last4, VerificationLevel: v.level(), Categories: v.categories,
		FactorIDs: v.factorIDs, DeviceID: c.DeviceID, OTPUses: v.otpUses})), nil
}

// decideRecover takes back what it can of an advance the holder was found
// liable for: at most what the account holds, never below zero (R25).
func decideRecover(a *Account, c RecoverCompensation) ([]Event, error) {
	if c.Staff.StaffKey == "" || c.CaseID == "" {
		return nil, Errorf(CodeInternal, "a recovery names its case and the staff key")
	}
	if c.Amount.Currency != a.Currency || !c.Amount.Amount.IsPositive() {
		return nil, Errorf(CodeInternal, "recovery of %s from an account in %s", c.Amount, a.Currency)
	}
	take := c.Amount
	if avail := a.Available(c.Balance.Projected, c.Balance.Checkpoint); avail.LessThan(take) {
		if !avail.Amount.IsPositive() {
			return nil, Errorf(CodeInsufficientFunds, "the account holds nothing to recover").With("available", avail.String())
		}
		take = avail
	}
	return one(CompensationRecovered{CaseID: c.CaseID, DebitAccount: a.ID, CreditAccount: ReserveAccountID(a.Currency),
		Amount: take, Staff: c.Staff})
}

// maxClaims bounds the payments one account may have claimed in loss
// cases, and so the memory the aggregate keeps of them.
const maxClaims = 1000

// decideClaim claims payments in a loss case: each at most once, whatever
// the case.
func decideClaim(a *Account, c ClaimLoss) ([]Event, error) {
	if c.CaseID == "" || len(c.PaymentIDs) == 0 {
		return nil, Errorf(CodeInternal, "a claim names its case and payments")
	}
	for _, p := range c.PaymentIDs {
		if other, ok := a.claims[p]; ok {
			return nil, Errorf(CodeConflict, "payment %s is already claimed in loss case %s", p, other).
				With("case_id", other).With("payment_id", p)
		}
	}
	if len(a.claims)+len(c.PaymentIDs) > maxClaims {
		return nil, Errorf(CodeConflict, "this account has %d payments claimed in loss cases, the most one account may: call the institution", len(a.claims))
	}
	return one(LossClaimed(c))
}
