package domain

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
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
	// sigs counts the device signatures made (sign), so that each is
	// later than the one before (a device signature is single use).
	sigs int
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

// baseAccount returns an open account with one factor of every kind, its
// devices deviceApp and deviceToken registered with their keys
// (deviceKeys), and 100,000.00 deposited. The factors are enrolled by an operator after an
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
	h.registerDevice(deviceApp)
	h.registerDevice(deviceToken)
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

// deviceLaptop is a device of the holder with no factor on it: a TOTP on
// deviceApp or deviceToken is independent of it.
const deviceLaptop = "laptop-1"

// deviceKeys are the Ed25519 keys of the harness's devices, fixed so that
// runs are repeatable.
var deviceKeys = map[string]ed25519.PrivateKey{
	deviceApp:    ed25519.NewKeyFromSeed(bytes.Repeat([]byte{11}, ed25519.SeedSize)),
	deviceToken:  ed25519.NewKeyFromSeed(bytes.Repeat([]byte{12}, ed25519.SeedSize)),
	deviceLaptop: ed25519.NewKeyFromSeed(bytes.Repeat([]byte{13}, ed25519.SeedSize)),
	"laptop-9":   ed25519.NewKeyFromSeed(bytes.Repeat([]byte{14}, ed25519.SeedSize)),
}

// deviceKey returns the key of one of the harness's devices.
func (h *harness) deviceKey(device string) ed25519.PrivateKey {
	h.t.Helper()
	key, ok := deviceKeys[device]
	if !ok {
		h.t.Fatalf("no key for device %q", device)
	}
	return key
}

// signedAt returns the time of the next device signature: h.now plus one
// millisecond per signature made so far, so that every signature is later
// than the one before and well within DeviceSkew of h.now.
func (h *harness) signedAt() time.Time {
	h.sigs++
	return h.now.Add(time.Duration(h.sigs) * time.Millisecond)
}

// sign returns device's proof that it sent an instruction of purpose about
// subject: its signature over DeviceChallenge at the next signedAt.
func (h *harness) sign(purpose, device, subject string) DeviceProof {
	h.t.Helper()
	return h.signAt(purpose, device, subject, h.signedAt())
}

// signAt is sign at a given time.
func (h *harness) signAt(purpose, device, subject string, at time.Time) DeviceProof {
	h.t.Helper()
	return signWith(h.deviceKey(device), purpose, device, subject, at)
}

// signWith returns key's signature, as device's, over the DeviceChallenge
// of purpose and subject at at.
func signWith(key ed25519.PrivateKey, purpose, device, subject string, at time.Time) DeviceProof {
	return DeviceProof{SignedAt: at, Signature: ed25519.Sign(key, DeviceChallenge(purpose, accountID, device, at, subject))}
}

// registerCmd is the registration of device with its key, signed by that
// key over the registration's challenge (its subject is the key in
// standard base64), without a step-up.
func (h *harness) registerCmd(device string) RegisterDevice {
	h.t.Helper()
	return h.registerKeyCmd(device, h.deviceKey(device))
}

// registerKeyCmd is registerCmd with key as the device's.
func (h *harness) registerKeyCmd(device string, key ed25519.PrivateKey) RegisterDevice {
	pub := pubOf(key)
	at := h.signedAt()
	sig := ed25519.Sign(key, DeviceChallenge(ChangeKindDevice, accountID, device, at, base64.StdEncoding.EncodeToString(pub)))
	return RegisterDevice{DeviceID: device, PublicKey: pub, Label: "device " + device, SignedAt: at, Signature: sig}
}

// registerDevice registers device through Decide: the account's first
// device without a step-up, any other with a stepUp (the password and the
// biometric from deviceApp).
func (h *harness) registerDevice(device string) []Event {
	h.t.Helper()
	cmd := h.registerCmd(device)
	if len(h.a.Devices()) > 0 {
		cmd = h.withStepUp(cmd)
	}
	return h.must(cmd)
}

// withStepUp returns the registration cmd with a stepUp over its
// change's challenge at the account's current version.
func (h *harness) withStepUp(cmd RegisterDevice) RegisterDevice {
	h.t.Helper()
	cmd.Auth = h.stepUp(ChangeKindDevice, cmd.DeviceID)
	return cmd
}

// deviceChallengeOf returns what the device of an instruction signs for
// it (DeviceChallenge): the purpose, the device the instruction (or its
// authorisation) names, and the subject: "" for a login, the payment id
// of a confirmation, the amount of a withdrawal as sent, and the subject
// a change's ChangeChallenge names (for a device registration's step-up,
// the id of the device registered).
func deviceChallengeOf(cmd Command) (purpose, device, subject string, ok bool) {
	switch c := cmd.(type) {
	case Login:
		return "login", c.DeviceID, "", true
	case ConfirmPayment:
		return "payment", c.DeviceID, c.PaymentID, true
	case Withdraw:
		return "withdrawal", c.DeviceID, c.Amount, true
	case EnrollFactor:
		return ChangeKindEnrolment, c.Auth.DeviceID, c.Method, true
	case RevokeFactor:
		return ChangeKindRevocation, c.Auth.DeviceID, c.FactorID, true
	case ResetCredential:
		return ChangeKindCredentialReset, c.Auth.DeviceID, c.FactorID, true
	case AdjustLimit:
		return ChangeKindLimit, c.Auth.DeviceID, c.Limit, true
	case BindBankAccount:
		return ChangeKindBankAccount, c.Auth.DeviceID, c.Number, true
	case ChangeIdentity:
		return ChangeKindIdentity, c.Auth.DeviceID, c.HolderName, true
	case ChangePhone:
		return ChangeKindPhone, c.Auth.DeviceID, c.Phone, true
	case RegisterDevice:
		return ChangeKindDevice, c.Auth.DeviceID, c.DeviceID, true
	case Unlock:
		return ChangeKindUnlock, c.Auth.DeviceID, "", true
	}
	return "", "", "", false
}

// withDevice returns cmd carrying the device proof dp (in its
// authorisation for a change).
func withDevice(cmd Command, dp DeviceProof) Command {
	switch c := cmd.(type) {
	case Login:
		c.Device = dp
		return c
	case ConfirmPayment:
		c.Device = dp
		return c
	case Withdraw:
		c.Device = dp
		return c
	case EnrollFactor:
		c.Auth.Device = dp
		return c
	case RevokeFactor:
		c.Auth.Device = dp
		return c
	case ResetCredential:
		c.Auth.Device = dp
		return c
	case AdjustLimit:
		c.Auth.Device = dp
		return c
	case BindBankAccount:
		c.Auth.Device = dp
		return c
	case ChangeIdentity:
		c.Auth.Device = dp
		return c
	case ChangePhone:
		c.Auth.Device = dp
		return c
	case RegisterDevice:
		c.Auth.Device = dp
		return c
	case Unlock:
		c.Auth.Device = dp
		return c
	}
	panic(fmt.Sprintf("%T carries no device proof", cmd))
}

// deviceProofOf returns the device proof an instruction carries.
func deviceProofOf(cmd Command) DeviceProof {
	switch c := cmd.(type) {
	case Login:
		return c.Device
	case ConfirmPayment:
		return c.Device
	case Withdraw:
		return c.Device
	case EnrollFactor:
		return c.Auth.Device
	case RevokeFactor:
		return c.Auth.Device
	case ResetCredential:
		return c.Auth.Device
	case AdjustLimit:
		return c.Auth.Device
	case BindBankAccount:
		return c.Auth.Device
	case ChangeIdentity:
		return c.Auth.Device
	case ChangePhone:
		return c.Auth.Device
	case RegisterDevice:
		return c.Auth.Device
	case Unlock:
		return c.Auth.Device
	}
	return DeviceProof{}
}

// prove returns cmd signed by the device it names (sign) over its
// DeviceChallenge (deviceChallengeOf).
func (h *harness) prove(cmd Command) Command {
	h.t.Helper()
	purpose, device, subject, ok := deviceChallengeOf(cmd)
	if !ok {
		h.t.Fatalf("%T carries no device proof", cmd)
	}
	return withDevice(cmd, h.sign(purpose, device, subject))
}

// signedAuth is auth from a proven device: its proofs, and device's
// signature over the change's DeviceChallenge.
func (h *harness) signedAuth(kind, subject, device string, factors ...string) Authorisation {
	h.t.Helper()
	a := h.auth(kind, subject, device, factors...)
	a.Device = h.sign(kind, device, subject)
	return a
}

// signedConfirm is confirmCmd signed by deviceApp (a proven device).
func (h *harness) signedConfirm(id string, factors ...string) ConfirmPayment {
	h.t.Helper()
	return h.prove(h.confirmCmd(id, factors...)).(ConfirmPayment)
}

// signedPay is pay with the confirmation signed by deviceApp.
func (h *harness) signedPay(amount string, factors ...string) ([]Event, error) {
	h.t.Helper()
	pi := h.initiate(amount)
	return h.decide(h.signedConfirm(pi.PaymentID, factors...))
}

// wantDeviceUsed asserts that evs end with exactly one DeviceUsed, the
// use of device's signature at signedAt, and returns the events before it.
func wantDeviceUsed(t *testing.T, evs []Event, device string, signedAt time.Time) []Event {
	t.Helper()
	n := len(evs)
	if n < 2 {
		t.Fatalf("events %v, want the instruction's then %s", types(evs), TypeDeviceUsed)
	}
	du, ok := evs[n-1].(DeviceUsed)
	if !ok || du.DeviceID != device || !du.SignedAt.Equal(signedAt) {
		t.Fatalf("last event %#v, want DeviceUsed of %s at %v", evs[n-1], device, signedAt)
	}
	for _, e := range evs[:n-1] {
		if e.EventType() == TypeDeviceUsed {
			t.Fatalf("events %v record the device's use twice", types(evs))
		}
	}
	return evs[:n-1]
}

// mustProven runs cmd signed by its device (prove), fails the test on an
// error, checks that the events end with the signature's DeviceUsed and
// returns the events before it.
func (h *harness) mustProven(cmd Command) []Event {
	h.t.Helper()
	cmd = h.prove(cmd)
	_, device, _, _ := deviceChallengeOf(cmd)
	return wantDeviceUsed(h.t, h.must(cmd), device, deviceProofOf(cmd).SignedAt)
}

// lastSignedAt returns the LastSignedAt of a registered device.
func lastSignedAt(t *testing.T, a *Account, device string) time.Time {
	t.Helper()
	for _, d := range a.Devices() {
		if d.ID == device {
			return d.LastSignedAt
		}
	}
	t.Fatalf("device %s is not registered", device)
	return time.Time{}
}
