package ledger_test

import (
	"context"
	"testing"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/ledger"
)

// lastOf returns the last event of an outcome.
func lastOf(out ledger.Outcome) domain.Event { return out.Decoded[len(out.Decoded)-1] }

// TestCoolingOffThroughTheService: a factor the holder enrols with a
// step-up (no operator's identity check) cannot move money for
// Policy.CoolingOff: a payment or withdrawal proved with it is refused as
// factor_cooling_off and records nothing, while it still logs in. After
// the cooling-off it pays. A factor an operator enrols after an identity
// check is usable at once; without the check the operator is refused.
func TestCoolingOffThroughTheService(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, nil)
	p := f.e.policy
	auth := f.payer.stepUp(t, f.svc, domain.ChangeKindEnrolment, domain.MethodTOTP)
	out, err := f.svc.EnrollFactor(ctx, f.payer.actor(), f.payer.id, ledger.Idem{}, ledger.EnrollRequest{Method: domain.MethodTOTP, DeviceID: "token-1", Auth: auth})
	if err != nil || out.Refusal != nil {
		t.Fatalf("holder enrols a TOTP: %v / %v", err, out.Refusal)
	}
	fe := out.Decoded[0].(domain.FactorEnrolled)
	enrolledAt := out.Events[0].OccurredAt
	if !fe.UsableFrom.Equal(enrolledAt.Add(p.CoolingOff)) || fe.StaffKey != "" || len(fe.Authorised.FactorIDs) != 1 {
		t.Fatalf("enrolled %+v at %v: want usable %v later, authorised by the certificate", fe, enrolledAt, p.CoolingOff)
	}
	if n, ok := lastOf(out).(domain.HolderNotified); !ok || n.Change != domain.ChangeKindEnrolment || n.Reference != fe.FactorID {
		t.Errorf("enrolment notified %#v", lastOf(out))
	}
	seed, err := f.svc.TOTPSecret(fe)
	if err != nil {
		t.Fatal(err)
	}
	code := func() domain.Proof {
		t.Helper()
		f.e.clock.Advance(domain.TOTPStep)
		c, err := domain.TOTPCode(seed, domain.TOTPStepAt(f.e.clock.Now()))
		if err != nil {
			t.Fatal(err)
		}
		return domain.Proof{FactorID: fe.FactorID, Code: c}
	}

	pi := f.initiate(t, f.payer, f.payee, "5.00")
	head := f.e.head(t)
	_, err = f.svc.ConfirmPayment(ctx, f.payer.actor(), f.payer.id, pi.PaymentID, ledger.Idem{}, "phone-other", []domain.Proof{code()})
	wantCode(t, "payment with a cooling factor", err, domain.CodeFactorCoolingOff)
	if d := domain.ErrorDetails(err); d["factor_id"] != fe.FactorID || d["usable_from"] == nil {
		t.Errorf("cooling-off details %v", d)
	}
	if h := f.e.head(t); h != head {
		t.Errorf("the refused payment appended: head %d -> %d", head, h)
	}
	// Binding needs two categories past their cooling-off: the certificate
	// and a password the operator enrols (the new TOTP does not count yet).
	pw := enrolPassword(t, f.svc, f.payer.id)
	bindAuth := f.payer.stepUp(t, f.svc, domain.ChangeKindBankAccount, "6222020200112233445", byPassword(pw).Proofs...)
	if _, err := f.svc.BindBankAccount(ctx, f.payer.actor(), f.payer.id, ledger.Idem{}, "6222020200112233445", payerName, bindAuth); err != nil {
		t.Fatalf("bind: %v", err)
	}
	head = f.e.head(t)
	_, err = f.svc.Withdraw(ctx, f.payer.actor(), f.payer.id, ledger.Idem{}, "1.00", "CNY", "laptop", []domain.Proof{code()})
	wantCode(t, "withdrawal with a cooling factor", err, domain.CodeFactorCoolingOff)
	if h := f.e.head(t); h != head {
		t.Errorf("the refused withdrawal appended: head %d -> %d", head, h)
	}
	// It logs in meanwhile: the cooling-off is about moving money.
	login, err := f.svc.Login(ctx, publicActor, f.payer.id, ledger.Idem{}, "laptop", []domain.Proof{code()})
	if err != nil || login.Refusal != nil {
		t.Errorf("login with the cooling factor: %v / %v", err, login.Refusal)
	}
	// The certificate, enrolled by the operator, pays at once.
	if err := f.confirm(ctx, pi); err != nil {
		t.Fatalf("payment with the certificate: %v", err)
	}

	f.e.clock.Advance(p.CoolingOff)
	pi = f.initiate(t, f.payer, f.payee, "5.00")
	conf, err := f.svc.ConfirmPayment(ctx, f.payer.actor(), f.payer.id, pi.PaymentID, ledger.Idem{}, "phone-other", []domain.Proof{code()})
	if err != nil || conf.Refusal != nil {
		t.Fatalf("payment with the TOTP after the cooling-off: %v / %v", err, conf.Refusal)
	}

	// An operator's enrolment after an identity check is usable at once
	// and names the key; without the check it is refused.
	out, err = f.svc.EnrollFactor(ctx, operatorActor, f.payer.id, ledger.Idem{}, ledger.EnrollRequest{Method: domain.MethodBiometric,
		DeviceID: "phone-2", IdentityCheck: testIdentityCheck})
	if err != nil {
		t.Fatal(err)
	}
	if fe := out.Decoded[0].(domain.FactorEnrolled); !fe.UsableFrom.IsZero() || !fe.Staff.IdentityChecked() || fe.StaffKey != operatorActor.KeyID {
		t.Errorf("operator's enrolment %+v", fe)
	}
	if n, ok := lastOf(out).(domain.HolderNotified); !ok || n.StaffKey != operatorActor.KeyID {
		t.Errorf("operator's enrolment notified %#v", lastOf(out))
	}
	_, err = f.svc.EnrollFactor(ctx, operatorActor, f.payer.id, ledger.Idem{}, ledger.EnrollRequest{Method: domain.MethodBiometric, DeviceID: "phone-3"})
	wantCode(t, "operator's enrolment without an identity check", err, domain.CodeInvalid)
}

// TestDepositsNeedFundingAndAUniqueReference: only the funding desk
// credits money; each names its bank transfer, which is credited once per
// account; the event names the key.
func TestDepositsNeedFundingAndAUniqueReference(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, nil)
	out, err := f.svc.Deposit(ctx, fundingActor, f.payee.id, ledger.Idem{}, "3.00", "CNY", "  BANK-REF-1 ")
	if err != nil {
		t.Fatal(err)
	}
	fd := out.Decoded[0].(domain.FundsDeposited)
	if fd.StaffKey != fundingActor.KeyID || fd.Reference != "BANK-REF-1" {
		t.Errorf("deposit recorded %+v", fd)
	}
	head := f.e.head(t)
	_, err = f.svc.Deposit(ctx, fundingActor, f.payee.id, ledger.Idem{}, "3.00", "CNY", "BANK-REF-1")
	wantCode(t, "the same bank reference again", err, domain.CodeBankReferenceUsed)
	if d := domain.ErrorDetails(err); d["deposit_id"] != fd.DepositID {
		t.Errorf("details %v, want deposit_id %s", d, fd.DepositID)
	}
	_, err = f.svc.Deposit(ctx, fundingActor, f.payee.id, ledger.Idem{}, "3.00", "CNY", "  ")
	wantCode(t, "no bank reference", err, domain.CodeInvalid)
	for _, by := range []ledger.Actor{f.payee.actor(), operatorActor, staffActor(roleFinance), publicActor} {
		_, err := f.svc.Deposit(ctx, by, f.payee.id, ledger.Idem{}, "3.00", "CNY", "BANK-REF-2")
		if c := domain.ErrorCode(err); c != domain.CodeForbidden && c != domain.CodeUnauthenticated {
			t.Errorf("deposit by %+v: %v", by, err)
		}
	}
	if h := f.e.head(t); h != head {
		t.Errorf("refused deposits appended: head %d -> %d", head, h)
	}
	// The same reference is another transfer on another account.
	if _, err := f.svc.Deposit(ctx, fundingActor, f.payer.id, ledger.Idem{}, "3.00", "CNY", "BANK-REF-1"); err != nil {
		t.Errorf("the reference on another account: %v", err)
	}
	v, err := f.svc.Account(ctx, f.payee.actor(), f.payee.id)
	if err != nil || v.Available.String() != "3.00" {
		t.Errorf("payee holds %s, %v; want 3.00", v.Available, err)
	}
}

// TestOperatorSuspensionAndUnlock: a suspension an operator made for risk
// is lifted only by an operator; the holder lifts their own. An operator
// lifts R9's lock after an identity check; the holder cannot.
func TestOperatorSuspensionAndUnlock(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 31)
	svc := e.node(t, nil)
	id, pw := openPasswordAccount(t, svc, "Risky Holder")
	holder := holderOf(id)

	out, err := svc.Suspend(ctx, operatorActor, id, ledger.Idem{}, "risk")
	if err != nil {
		t.Fatal(err)
	}
	if ss := out.Decoded[0].(domain.ServiceSuspended); ss.StaffKey != operatorActor.KeyID {
		t.Errorf("suspension recorded %+v", ss)
	}
	_, err = svc.Reactivate(ctx, holder, id, ledger.Idem{}, "it was me")
	wantCode(t, "holder lifts the operator's suspension", err, domain.CodeForbidden)
	if _, err := svc.Reactivate(ctx, operatorActor, id, ledger.Idem{}, "cleared"); err != nil {
		t.Fatalf("operator lifts it: %v", err)
	}
	if _, err := svc.Suspend(ctx, holder, id, ledger.Idem{}, "holiday"); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Reactivate(ctx, holder, id, ledger.Idem{}, "back"); err != nil {
		t.Fatalf("holder lifts their own suspension: %v", err)
	}

	_, err = svc.Unlock(ctx, operatorActor, id, ledger.Idem{}, "not locked", testIdentityCheck)
	wantCode(t, "unlock without a lock", err, domain.CodeConflict)
	wrong := []domain.Proof{{FactorID: pw, Password: "wrong battery"}}
	var last ledger.Outcome
	for range e.policy.MaxFailures {
		if last, err = svc.Login(ctx, publicActor, id, ledger.Idem{}, "laptop", wrong); err != nil {
			t.Fatal(err)
		}
	}
	wantCode(t, "the last wrong password", last.Refusal, domain.CodeAccessLocked)
	right := []domain.Proof{{FactorID: pw, Password: testPassword}}
	if out, err := svc.Login(ctx, publicActor, id, ledger.Idem{}, "laptop", right); err != nil || domain.ErrorCode(out.Refusal) != domain.CodeAccessLocked {
		t.Fatalf("login while locked: %v / %v", err, out.Refusal)
	}
	// A holder's early unlock needs a registered device's signature.
	_, err = svc.Unlock(ctx, holder, id, ledger.Idem{}, "let me in", testIdentityCheck)
	wantCode(t, "holder unlocks without a device", err, domain.CodeInvalid)
	_, err = svc.Unlock(ctx, operatorActor, id, ledger.Idem{}, "called in", "")
	wantCode(t, "operator unlocks without an identity check", err, domain.CodeInvalid)
	out, err = svc.Unlock(ctx, operatorActor, id, ledger.Idem{}, "called in", testIdentityCheck)
	if err != nil {
		t.Fatal(err)
	}
	if u, ok := out.Decoded[0].(domain.AccessUnlocked); !ok || u.StaffKey != operatorActor.KeyID || u.IdentityCheck != testIdentityCheck {
		t.Errorf("unlock recorded %#v", out.Decoded[0])
	}
	if n, ok := lastOf(out).(domain.HolderNotified); !ok || n.Change != domain.ChangeKindUnlock {
		t.Errorf("unlock notified %#v", lastOf(out))
	}
	login(t, svc, id, pw)
}

// TestHolderUnlocksEarlyFromARegisteredDevice: a locked holder lifts the
// lock with a step-up of two categories sent from a registered device that
// signs it; without the device's signature, with one category or with a
// wrong signature the lock stays.
func TestHolderUnlocksEarlyFromARegisteredDevice(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, nil)
	id := f.payer.id
	pw := enrolPassword(t, f.svc, id)
	otp := enrolTOTP(t, f, "token-1")
	laptop := registerDevice(t, f.svc, f.e.clock.Now, id, "laptop", 11)
	holder := f.payer.actor()
	wrong := []domain.Proof{{FactorID: pw, Password: "not the password"}}
	for i := 0; i < f.e.policy.MaxFailures; i++ {
		if _, err := f.svc.Login(ctx, publicActor, id, ledger.Idem{}, "laptop", wrong); err != nil {
			t.Fatal(err)
		}
	}
	early := func(a domain.Authorisation) (ledger.Outcome, error) {
		return f.svc.UnlockEarly(ctx, holder, id, ledger.Idem{}, "it was me", a)
	}
	both := func() []domain.Proof { return append(byPassword(pw).Proofs, otp.proof(t, f)) }
	// No device signature: refused as input, nothing recorded.
	head := f.e.head(t)
	_, err := early(domain.Authorisation{DeviceID: "laptop", Proofs: both()})
	wantCode(t, "early unlock without a device signature", err, domain.CodeInvalid)
	if h := f.e.head(t); h != head {
		t.Errorf("refused unlock appended: head %d -> %d", head, h)
	}
	// A wrong device signature: recorded, the lock stays.
	bad := laptop.sign(id, domain.ChangeKindUnlock, "")
	bad.Signature[0] ^= 1
	out, err := early(domain.Authorisation{DeviceID: "laptop", Device: bad, Proofs: both()})
	if err != nil || domain.ErrorCode(out.Refusal) != domain.CodeAccessLocked {
		t.Fatalf("early unlock with a wrong device signature: %v / %v", err, out.Refusal)
	}
	// Proofs of one category are refused before any is checked, so the
	// refusal does not tell whether the password was right.
	f.e.clock.Advance(domain.TOTPStep)
	head = f.e.head(t)
	_, err = early(domain.Authorisation{DeviceID: "laptop", Device: laptop.sign(id, domain.ChangeKindUnlock, ""), Proofs: byPassword(pw).Proofs})
	wantCode(t, "early unlock with one category", err, domain.CodeInvalid)
	if h := f.e.head(t); h != head {
		t.Errorf("refused unlock appended: head %d -> %d", head, h)
	}
	if out, err := f.svc.Login(ctx, publicActor, id, ledger.Idem{}, "laptop", byPassword(pw).Proofs); err != nil || domain.ErrorCode(out.Refusal) != domain.CodeAccessLocked {
		t.Fatalf("still locked: %v / %v", err, out.Refusal)
	}
	// The password and a TOTP delivered to another device, signed by the
	// laptop: unlocked, the holder told, the device's signature spent.
	f.e.clock.Advance(domain.TOTPStep)
	proof := laptop.sign(id, domain.ChangeKindUnlock, "")
	out, err = early(domain.Authorisation{DeviceID: "laptop", Device: proof, Proofs: both()})
	if err != nil || out.Refusal != nil {
		t.Fatalf("early unlock: %v / %v", err, out.Refusal)
	}
	if u, ok := out.Decoded[0].(domain.AccessUnlocked); !ok || len(u.Authorised.Categories) != 2 || u.StaffKey != "" {
		t.Errorf("unlock recorded %#v", out.Decoded[0])
	}
	if used, ok := lastOf(out).(domain.DeviceUsed); !ok || !used.SignedAt.Equal(proof.SignedAt) {
		t.Errorf("the device's use recorded %#v", lastOf(out))
	}
	login(t, f.svc, id, pw)
}
