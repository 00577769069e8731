package domain

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"testing"
	"time"

	_ "time/tzdata" // Asia/Shanghai even where the system has no zoneinfo

	"github.com/shopspring/decimal"
)

// t0 is the fixed "now" of the tests: 18:00 in Shanghai.
var t0 = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

const (
	testPassword = "correct horse battery"
	// TOTP seeds (base32); the test SecretOpener seals nothing, so the
	// sealed bytes are the seed itself.
	secretOther = "JBSWY3DPEHPK3PXP"
	secretApp   = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
	// deviceApp issues payment instructions; deviceToken is a separate
	// hardware token that shows one-time passwords.
	deviceApp   = "phone-1"
	deviceToken = "token-2"
	accountID   = "acc-1"
	payeeID     = "acc-2"
	holder      = "Li Wei"
)

// Factor ids of the base account.
const (
	fPassword = "pw"
	fOTP      = "otp"     // TOTP on deviceToken: independent of deviceApp
	fOTPApp   = "otp-app" // TOTP on deviceApp: not independent (R6)
	fCert     = "cert"
	fESig     = "esig"
	fBio      = "bio"
)

// identityOpener is a SecretOpener that returns the sealed bytes as the
// secret.
type identityOpener struct{}

func (identityOpener) Open(sealed []byte) ([]byte, error) { return sealed, nil }

var (
	certKey     = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, ed25519.SeedSize))
	esigKey     = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, ed25519.SeedSize))
	providerKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{3}, ed25519.SeedSize))
	strangerKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{4}, ed25519.SeedSize))
)

func pubOf(k ed25519.PrivateKey) []byte { return []byte(k.Public().(ed25519.PublicKey)) }

func shanghai(t *testing.T) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		t.Fatalf("load Asia/Shanghai: %v", err)
	}
	return loc
}

func testPolicy(t *testing.T) Policy {
	t.Helper()
	p := DefaultPolicy(shanghai(t))
	p.Secrets = identityOpener{}
	p.BiometricProviderKey = providerKey.Public().(ed25519.PublicKey)
	return p
}

// applied is one event of the harness's log with its recorded facts.
type applied struct {
	e Event
	r Recorded
}

// harness holds one account, the policy, the clock and the log of applied
// events. Positions increase by 10 per event, leaving room for other
// streams' events between them.
type harness struct {
	t   *testing.T
	p   Policy
	a   *Account
	now time.Time
	log []applied
	pos int64
	seq int
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	p := testPolicy(t)
	return &harness{t: t, p: p, a: NewAccount(p.Location), now: t0, pos: 100}
}

// decide runs Decide at h.now, then applies the returned events (those
// returned with an error too, as the store would append them) with
// increasing Recorded{Version, Position, OccurredAt}.
func (h *harness) decide(cmd Command) ([]Event, error) {
	h.t.Helper()
	evs, err := Decide(h.a, cmd, h.p, h.now)
	h.apply(evs...)
	return evs, err
}

func (h *harness) apply(evs ...Event) {
	for _, e := range evs {
		h.pos += 10
		r := Recorded{Version: h.a.Version + 1, Position: h.pos, OccurredAt: h.now}
		h.a.Apply(e, r)
		h.log = append(h.log, applied{e, r})
	}
}

// must runs cmd and fails the test on an error.
func (h *harness) must(cmd Command) []Event {
	h.t.Helper()
	evs, err := h.decide(cmd)
	if err != nil {
		h.t.Fatalf("%T: %v", cmd, err)
	}
	return evs
}

// refuse runs cmd, asserts the error code and returns the error and the
// events recorded with it.
func (h *harness) refuse(cmd Command, code string) (*Error, []Event) {
	h.t.Helper()
	evs, err := h.decide(cmd)
	return wantCode(h.t, err, code), evs
}

// replay builds a fresh aggregate from the harness's log.
func (h *harness) replay() *Account {
	a := NewAccount(h.p.Location)
	for _, x := range h.log {
		a.Apply(x.e, x.r)
	}
	return a
}

// Staff of the tests: an operator who checked the holder's identity, one
// who did not say how, and the funding desk that credits deposits.
var (
	operator    = Staff{StaffKey: "staff-op-1", IdentityCheck: "branch-visit-42"}
	uncheckedOp = Staff{StaffKey: "staff-op-2"}
	fundingDesk = Staff{StaffKey: "staff-funding-1"}
)

// firstFactor is the factor open enrols with the account: a biometric on
// deviceApp (no password hashing, so harnesses stay cheap).
var firstFactor = EnrollFactor{FactorID: fBio, Method: MethodBiometric, DeviceID: deviceApp}

// open opens the account with its first factor (firstFactor), as an
// operator who checked the holder's identity does, so that the factor is
// usable at once.
func (h *harness) open() *harness {
	h.t.Helper()
	h.must(OpenAccount{AccountID: accountID, HolderName: holder, Currency: "CNY", Factor: firstFactor, Staff: operator})
	return h
}

// openWith decides cmd and applies its events with the hash of a password
// factor replaced by cheapHash(testPassword) when the command's password
// is testPassword: the events are Decide's (UsableFrom, Staff and all),
// only cheaper to verify.
func (h *harness) openWith(cmd OpenAccount) []Event {
	h.t.Helper()
	evs, err := Decide(h.a, cmd, h.p, h.now)
	if err != nil {
		h.t.Fatalf("open: %v", err)
	}
	for i, e := range evs {
		if f, ok := e.(FactorEnrolled); ok && f.Method == MethodPassword && cmd.Factor.Password == testPassword {
			f.PasswordHash = cheapHash(testPassword)
			evs[i] = f
		}
	}
	h.apply(evs...)
	return evs
}

// passwordOnly returns an account the holder opened alone with a password
// (fPassword): one factor category, in its cooling-off.
func passwordOnly(t *testing.T) *harness {
	t.Helper()
	h := newHarness(t)
	h.openWith(OpenAccount{AccountID: accountID, HolderName: holder, Currency: "CNY",
		Factor: EnrollFactor{FactorID: fPassword, Method: MethodPassword, Password: testPassword, Salt: make([]byte, SaltLength)}})
	return h
}

// baseAccount returns an open account with one factor of every kind and
// 100,000.00 deposited. The factors are enrolled by an operator after an
// identity check, so none of them cools off. The password factor is
// recorded with a low-cost argon2id hash so that tests stay fast;
// enrolment through Decide with the real parameters is tested separately.
func baseAccount(t *testing.T) *harness {
	t.Helper()
	h := newHarness(t).open()
	h.apply(FactorEnrolled{FactorID: fPassword, Method: MethodPassword, Category: CategoryKnowledge, PasswordHash: cheapHash(testPassword)})
	h.must(EnrollFactor{FactorID: fOTP, Method: MethodTOTP, DeviceID: deviceToken, SealedSecret: []byte(secretOther), Staff: operator})
	h.must(EnrollFactor{FactorID: fOTPApp, Method: MethodTOTP, DeviceID: deviceApp, SealedSecret: []byte(secretApp), Staff: operator})
	h.must(EnrollFactor{FactorID: fCert, Method: MethodCertificate, PublicKey: pubOf(certKey), Staff: operator})
	h.must(EnrollFactor{FactorID: fESig, Method: MethodESignature, PublicKey: pubOf(esigKey), Staff: operator})
	h.deposit("100000.00")
	return h
}

// deposit credits amount as the funding desk, with a bank reference of its
// own.
func (h *harness) deposit(amount string) FundsDeposited {
	h.t.Helper()
	h.seq++
	evs := h.must(Deposit{DepositID: fmt.Sprintf("d%d", h.seq), Amount: amount, Currency: "CNY",
		Reference: fmt.Sprintf("bank transfer %d", h.seq), Staff: fundingDesk})
	return evs[0].(FundsDeposited)
}

// code returns the TOTP code of secret at h.now.
func (h *harness) code(secret string) string {
	h.t.Helper()
	c, err := TOTPCode(secret, TOTPStepAt(h.now))
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

// proofs builds valid proofs of the named base factors over challenge.
func (h *harness) proofs(challenge []byte, factors ...string) []Proof {
	h.t.Helper()
	var out []Proof
	for _, f := range factors {
		switch f {
		case fPassword:
			out = append(out, Proof{FactorID: f, Password: testPassword})
		case fOTP:
			out = append(out, Proof{FactorID: f, Code: h.code(secretOther)})
		case fOTPApp:
			out = append(out, Proof{FactorID: f, Code: h.code(secretApp)})
		case fCert:
			out = append(out, Proof{FactorID: f, Signature: ed25519.Sign(certKey, challenge)})
		case fESig:
			out = append(out, Proof{FactorID: f, Signature: ed25519.Sign(esigKey, challenge)})
		case fBio:
			out = append(out, Proof{FactorID: f, Attestation: ed25519.Sign(providerKey, challenge)})
		default:
			h.t.Fatalf("no proof builder for factor %q", f)
		}
	}
	return out
}

// payCmd is a valid payment instruction of amount to payeeID.
func (h *harness) payCmd(amount string) InitiatePayment {
	h.seq++
	id := fmt.Sprintf("p%d", h.seq)
	return InitiatePayment{PaymentID: id, PayeeID: payeeID, Payee: activePayee,
		Amount: amount, Currency: "CNY", Channel: "app", Terminal: "mobile", DeviceID: deviceApp,
		Description: "payment " + id, Nonce: []byte("nonce-for-" + id + "-0123456789")}
}

// initiate starts a payment and returns its PaymentInitiated event.
func (h *harness) initiate(amount string) PaymentInitiated {
	h.t.Helper()
	evs := h.must(h.payCmd(amount))
	if len(evs) != 1 {
		h.t.Fatalf("initiate returned %d events", len(evs))
	}
	return evs[0].(PaymentInitiated)
}

// activePayee is the payee as the write path finds it when it is open and
// active.
var activePayee = Payee{Exists: true, Status: StatusActive, Currency: CNY}

// confirmCmd confirms payment id from deviceApp with proofs of factors. The
// balance projection is taken as empty at checkpoint 0, so the available
// balance is exactly the account's own money events. The payment's payee
// is found active.
func (h *harness) confirmCmd(id string, factors ...string) ConfirmPayment {
	h.t.Helper()
	pi, ok := h.a.Pending(id)
	if !ok {
		pi.Challenge = []byte("no-such-payment-challenge")
	}
	return ConfirmPayment{PaymentID: id, DeviceID: deviceApp, Proofs: h.proofs(pi.Challenge, factors...), PayeeID: pi.Payee, Payee: activePayee}
}

func (h *harness) confirm(id string, factors ...string) ([]Event, error) {
	h.t.Helper()
	return h.decide(h.confirmCmd(id, factors...))
}

// pay initiates and confirms a payment of amount with proofs of factors.
func (h *harness) pay(amount string, factors ...string) ([]Event, error) {
	h.t.Helper()
	pi := h.initiate(amount)
	return h.confirm(pi.PaymentID, factors...)
}

// confirmed returns the PaymentConfirmed among evs, failing if there is none.
func confirmed(t *testing.T, evs []Event) PaymentConfirmed {
	t.Helper()
	for _, e := range evs {
		if c, ok := e.(PaymentConfirmed); ok {
			return c
		}
	}
	t.Fatalf("no PaymentConfirmed in %v", types(evs))
	return PaymentConfirmed{}
}

// types lists the event types of evs.
func types(evs []Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.EventType())
	}
	return out
}

func wantTypes(t *testing.T, evs []Event, want ...string) {
	t.Helper()
	got := types(evs)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("events %v, want %v", got, want)
	}
}

// available is the account's available balance with an empty projection.
func (h *harness) available() string {
	return h.a.Available(decimal.Zero, 0).String()
}

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

// byPassword authorises a change from deviceApp with the password alone:
// one factor category, enough only on an account whose active factors
// span one category.
func byPassword() Authorisation {
	return Authorisation{DeviceID: deviceApp, Proofs: []Proof{{FactorID: fPassword, Password: testPassword}}}
}

// auth authorises a change of kind with subject from device with valid
// proofs of the named base factors, signatures over the change's challenge
// at the account's current version.
func (h *harness) auth(kind, subject, device string, factors ...string) Authorisation {
	h.t.Helper()
	return Authorisation{DeviceID: device, Version: h.a.Version,
		Proofs: h.proofs(ChangeChallenge(kind, accountID, h.a.Version, subject), factors...)}
}

// stepUp is a two-category step-up of the base account for a change of kind
// with subject (the password and the biometric, from deviceApp): no
// one-time password, so it spends nothing a test may use next.
func (h *harness) stepUp(kind, subject string) Authorisation {
	h.t.Helper()
	return h.auth(kind, subject, deviceApp, fPassword, fBio)
}

// authorised returns cmd with a stepUp over its challenge when it is a
// protected change (the subject each kind's challenge names), at the
// account's version when it is decided: call it right before deciding.
func (h *harness) authorised(cmd Command) Command {
	h.t.Helper()
	switch c := cmd.(type) {
	case EnrollFactor:
		c.Auth = h.stepUp(ChangeKindEnrolment, c.Method)
		return c
	case RevokeFactor:
		c.Auth = h.stepUp(ChangeKindRevocation, c.FactorID)
		return c
	case AdjustLimit:
		c.Auth = h.stepUp(ChangeKindLimit, c.Limit)
		return c
	case BindBankAccount:
		c.Auth = h.stepUp(ChangeKindBankAccount, c.Number)
		return c
	case ChangeIdentity:
		c.Auth = h.stepUp(ChangeKindIdentity, c.HolderName)
		return c
	case ChangePhone:
		c.Auth = h.stepUp(ChangeKindPhone, c.Phone)
		return c
	}
	return cmd
}

// mustAuthorised runs cmd with a stepUp (authorised) and fails the test on
// an error.
func (h *harness) mustAuthorised(cmd Command) []Event {
	h.t.Helper()
	return h.must(h.authorised(cmd))
}

// bind binds the holder's same-name bank account number with a stepUp.
func (h *harness) bind(number, name, token string) BankAccountBound {
	h.t.Helper()
	return h.mustAuthorised(BindBankAccount{Number: number, HolderName: name, Token: token})[0].(BankAccountBound)
}
