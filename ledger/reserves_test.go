package ledger_test

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/eventstore"
	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/projections"
	"github.com/payledger/payledger/reserves"
)

var (
	financeActor    = staffActor(roleFinance)
	complianceActor = staffActor(roleCompliance)
)

// lossHolder is an account whose factors confirm payments at each
// verification level: the certificate alone (single factor), password and
// biometric (two factors), certificate and password (two factors with a
// certificate).
type lossHolder struct {
	certHolder
	password string
	bio      string
	provider ed25519.PrivateKey
}

func openLossHolder(t testing.TB, s *ledger.Service, provider ed25519.PrivateKey, name string, seed byte) lossHolder {
	t.Helper()
	h := lossHolder{certHolder: openCertAccount(t, context.Background(), s, name, seed), provider: provider}
	h.password = enrolPassword(t, s, h.id)
	out, err := s.EnrollFactor(context.Background(), operatorActor, h.id, ledger.Idem{},
		ledger.EnrollRequest{Method: domain.MethodBiometric, DeviceID: h.device, IdentityCheck: testIdentityCheck})
	if err != nil {
		t.Fatalf("enrol biometric: %v", err)
	}
	h.bio = out.Decoded[0].(domain.FactorEnrolled).FactorID
	return h
}

func (h lossHolder) proofsFor(level string, challenge []byte) []domain.Proof {
	cert := domain.Proof{FactorID: h.factor, Signature: ed25519.Sign(h.priv, challenge)}
	pw := domain.Proof{FactorID: h.password, Password: testPassword}
	bio := domain.Proof{FactorID: h.bio, Attestation: ed25519.Sign(h.provider, challenge)}
	switch level {
	case domain.LevelSingleFactor:
		return []domain.Proof{cert}
	case domain.LevelTwoFactor:
		return []domain.Proof{pw, bio}
	}
	return []domain.Proof{cert, pw}
}

// pay initiates and confirms a payment at a verification level and returns
// what the payer's stream recorded.
func (h lossHolder) pay(t testing.TB, s *ledger.Service, payee, amount, level string) (domain.PaymentConfirmed, *domain.FeeCharged) {
	t.Helper()
	ctx := context.Background()
	out, err := s.InitiatePayment(ctx, h.actor(), h.id, ledger.Idem{}, paymentReq(payee, amount, h.device))
	if err != nil {
		t.Fatalf("initiate %s: %v", amount, err)
	}
	pi := initiated(t, out)
	conf, err := s.ConfirmPayment(ctx, h.actor(), h.id, pi.PaymentID, ledger.Idem{}, h.device, h.proofsFor(level, pi.Challenge))
	if err != nil || conf.Refusal != nil {
		t.Fatalf("confirm %s at %s: %v / %v", amount, level, err, conf.Refusal)
	}
	var pc domain.PaymentConfirmed
	var fee *domain.FeeCharged
	for _, d := range conf.Decoded {
		switch v := d.(type) {
		case domain.PaymentConfirmed:
			pc = v
		case domain.FeeCharged:
			fee = &v
		}
	}
	if pc.VerificationLevel != level {
		t.Fatalf("payment confirmed at %s, want %s", pc.VerificationLevel, level)
	}
	return pc, fee
}

type reserveFixture struct {
	e        *env
	svc      *ledger.Service
	payer    lossHolder
	payee    certHolder
	provider ed25519.PrivateKey
}

func newReserveFixture(t *testing.T, mod func(*ledger.Config)) *reserveFixture {
	t.Helper()
	e := newEnv(t, 33)
	e.runProjection(t)
	provider := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	svc := e.node(t, func(c *ledger.Config) {
		c.Policy.BiometricProviderKey = provider.Public().(ed25519.PublicKey)
		c.Policy.Fees = domain.FeeSchedule{Version: "fees-test", Rate: decimal.RequireFromString("0.001"), Min: decimal.RequireFromString("0.01")}
		c.Reserves = reserves.DefaultPolicy(e.policy.Location)
		c.Reserves.AdvanceCap = decimal.RequireFromString("400")
		if mod != nil {
			mod(c)
		}
	})
	f := &reserveFixture{e: e, svc: svc, provider: provider}
	f.payer = openLossHolder(t, svc, provider, "Loss Payer", 41)
	f.payee = openCertAccount(t, context.Background(), svc, "Loss Payee", 42)
	fund(t, svc, f.payer.id, "5000.00")
	return f
}

func (f *reserveFixture) topUp(t *testing.T, amount string) {
	t.Helper()
	if _, err := f.svc.AdjustReserve(context.Background(), financeActor, ledger.Idem{}, domain.AdjustTopUp, amount, "CNY", "initial funding"); err != nil {
		t.Fatalf("top up: %v", err)
	}
}

// TestFeesAreShownChargedAndCredited: the fee is in the confirmation
// details (and the challenge) before the holder confirms, the payer pays
// amount and fee, and fee income receives the fee.
func TestFeesAreShownChargedAndCredited(t *testing.T) {
	ctx := context.Background()
	f := newReserveFixture(t, nil)
	out, err := f.svc.InitiatePayment(ctx, f.payer.actor(), f.payer.id, ledger.Idem{}, paymentReq(f.payee.id, "250.00", f.payer.device))
	if err != nil {
		t.Fatal(err)
	}
	pi := initiated(t, out)
	if pi.Fee.String() != "0.25" {
		t.Fatalf("fee shown %s, want 0.25", pi.Fee)
	}
	if want := domain.PaymentChallenge(pi.PaymentID, pi.Payer, pi.Payee, pi.Amount, pi.Fee, nil); len(pi.Challenge) <= len(want) {
		t.Fatalf("challenge %q does not carry the fee's line", pi.Challenge)
	}
	if pi.FeeSchedule != "fees-test" {
		t.Fatalf("the initiation names schedule %q", pi.FeeSchedule)
	}
	// Confirmed on a node whose schedule changed since: the fee charged is
	// the one shown, named by the schedule that priced it.
	other := f.e.node(t, func(c *ledger.Config) {
		c.Policy.BiometricProviderKey = f.provider.Public().(ed25519.PublicKey)
		c.Policy.Fees = domain.FeeSchedule{Version: "fees-v2", Rate: decimal.RequireFromString("0.01")}
	})
	conf, err := other.ConfirmPayment(ctx, f.payer.actor(), f.payer.id, pi.PaymentID, ledger.Idem{}, f.payer.device,
		f.payer.proofsFor(domain.LevelTwoFactorCertificate, pi.Challenge))
	if err != nil || conf.Refusal != nil {
		t.Fatalf("confirm: %v / %v", err, conf.Refusal)
	}
	fee, ok := conf.Decoded[1].(domain.FeeCharged)
	if !ok || fee.Amount.String() != "0.25" || fee.CreditAccount != domain.FeeIncomeAccountID(domain.CNY) || fee.Schedule != "fees-test" {
		t.Fatalf("after the payment: %#v", conf.Decoded)
	}
	if err := f.e.rm.WaitFor(ctx, conf.Events[len(conf.Events)-1].Position); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]string{f.payer.id: "4749.75", f.payee.id: "250.00", domain.FeeIncomeAccountID(domain.CNY): "0.25"} {
		if bal, _ := f.e.rm.Snapshot(id); bal.StringFixed(2) != want {
			t.Errorf("balance of %s = %s, want %s", id, bal.StringFixed(2), want)
		}
	}
	// The balance must cover amount and fee: 4749.75 pays 4745.00 + 4.75
	// but not 4746.00 + 4.75.
	_, err = f.svc.InitiatePayment(ctx, f.payer.actor(), f.payer.id, ledger.Idem{}, paymentReq(f.payee.id, "4746.00", f.payer.device))
	if err != nil {
		t.Fatal(err)
	}
}

// TestLossCaseLifecycle: a reported loss is compensated in advance from
// the reserve at once; a shortfall is recorded and never overdraws the
// reserve, and the advance is paid once finance tops up; liability found
// to be the customer's (with evidence) is recovered, except single-factor
// payments, which stay the institution's.
func TestLossCaseLifecycle(t *testing.T) {
	ctx := context.Background()
	f := newReserveFixture(t, nil)
	two, _ := f.payer.pay(t, f.svc, f.payee.id, "300.00", domain.LevelTwoFactor)
	single, _ := f.payer.pay(t, f.svc, f.payee.id, "50.00", domain.LevelSingleFactor)

	// The reserve is empty: the advance is due, the shortfall recorded.
	head := f.e.head(t)
	v, err := f.svc.ReportLossCase(ctx, f.payer.actor(), f.payer.id, idemFor("loss-1", "a"), ledger.LossRequest{
		PaymentIDs: []string{two.PaymentID, single.PaymentID}, Description: "my phone was stolen"})
	if err != nil {
		t.Fatal(err)
	}
	if v.Advance != "due" || domain.ErrorCode(v.Refusal) != reserves.CodeReserveShortfall || v.Loss.String() != "350.00" || v.Status != reserves.StatusReported {
		t.Fatalf("report with an empty reserve: %+v", v)
	}
	short := readNamed(t, f.e.store, domain.ReserveStream(domain.CNY))
	if len(short) != 1 || short[0].Type != domain.TypeReserveShortfall || short[0].Position <= head {
		t.Fatalf("reserve stream after the shortfall: %v", short)
	}
	// The same request again answers with the same case and pays nothing.
	again, err := f.svc.ReportLossCase(ctx, f.payer.actor(), f.payer.id, idemFor("loss-1", "a"), ledger.LossRequest{
		PaymentIDs: []string{two.PaymentID, single.PaymentID}, Description: "my phone was stolen"})
	if err != nil || again.CaseID != v.CaseID {
		t.Fatalf("replayed report: %+v, %v (first %s)", again, err, v.CaseID)
	}

	f.topUp(t, "1000.00")
	v, err = f.svc.SettleLoss(ctx, financeActor, v.CaseID, ledger.Idem{})
	if err != nil || v.Advance != "paid" || v.Compensated.String() != "350.00" {
		t.Fatalf("advance after the top-up: %+v, %v", v, err)
	}
	// No payment is claimed in two cases; nothing is recorded.
	head = f.e.head(t)
	_, err = f.svc.ReportLossCase(ctx, f.payer.actor(), f.payer.id, ledger.Idem{}, ledger.LossRequest{PaymentIDs: []string{two.PaymentID}})
	wantCode(t, "a second case on a claimed payment", err, domain.CodeConflict)
	if d := domain.ErrorDetails(err); d["case_id"] != v.CaseID {
		t.Errorf("the refusal names case %v, want %s", d["case_id"], v.CaseID)
	}
	if h := f.e.head(t); h != head {
		t.Errorf("the refused report appended: %d -> %d", head, h)
	}
	_, err = f.svc.SettleLoss(ctx, financeActor, v.CaseID, ledger.Idem{})
	wantCode(t, "settling a paid advance before liability", err, domain.CodeConflict)

	// Compliance: a finding against the customer needs evidence.
	if _, err := f.svc.InvestigateLoss(ctx, complianceActor, v.CaseID, ledger.Idem{}, "called the holder"); err != nil {
		t.Fatal(err)
	}
	_, err = f.svc.DetermineLiability(ctx, complianceActor, v.CaseID, ledger.Idem{}, reserves.Finding{Liable: domain.LiableCustomer, Reasons: []string{"told a caller the password"}})
	wantCode(t, "a finding without evidence", err, reserves.CodeEvidenceRequired)
	v, err = f.svc.DetermineLiability(ctx, complianceActor, v.CaseID, ledger.Idem{}, reserves.Finding{Liable: domain.LiableCustomer,
		Reasons: []string{"told a caller the password"}, Evidence: []string{"call-recording-7781"}})
	if err != nil || v.Liability.CustomerShare.String() != "300.00" || v.Liability.StaffKey != complianceActor.KeyID {
		t.Fatalf("determined: %+v, %v", v.Liability, err)
	}
	_, err = f.svc.CloseLossCase(ctx, financeActor, v.CaseID, ledger.Idem{})
	if err != nil {
		t.Fatalf("close with a recovery outstanding: %v", err)
	}

	// Recovery takes back the two-factor payment's advance, not the
	// single-factor one; another case is settled the same way.
	c2, err := f.svc.ReportLossCase(ctx, f.payer.actor(), f.payer.id, ledger.Idem{}, ledger.LossRequest{
		PaymentIDs: []string{f.payer.payID(t, f.svc, f.payee.id, "120.00", domain.LevelTwoFactor)}})
	if err != nil || c2.Advance != "paid" {
		t.Fatalf("second case: %+v %v", c2, err)
	}
	if _, err := f.svc.DetermineLiability(ctx, complianceActor, c2.CaseID, ledger.Idem{}, reserves.Finding{Liable: domain.LiableCustomer,
		Reasons: []string{"r"}, Evidence: []string{"e"}}); err != nil {
		t.Fatal(err)
	}
	c2, err = f.svc.SettleLoss(ctx, financeActor, c2.CaseID, ledger.Idem{})
	if err != nil || c2.Recovered.String() != "120.00" {
		t.Fatalf("recovery: %+v, %v", c2, err)
	}
	_, err = f.svc.SettleLoss(ctx, financeActor, c2.CaseID, ledger.Idem{})
	wantCode(t, "settling a settled case", err, domain.CodeConflict)
	c2, err = f.svc.CloseLossCase(ctx, complianceActor, c2.CaseID, ledger.Idem{})
	if err != nil || c2.Closing.Outcome != "customer_liable" {
		t.Fatalf("close: %+v %v", c2, err)
	}
	_, err = f.svc.CloseLossCase(ctx, financeActor, c2.CaseID, ledger.Idem{})
	wantCode(t, "closing a closed case", err, reserves.CodeCaseState)
	// A loss above the advance cap waits for its investigation, then the
	// institution settles it in full.
	big, err := f.svc.ReportLossCase(ctx, f.payer.actor(), f.payer.id, ledger.Idem{}, ledger.LossRequest{
		PaymentIDs: []string{f.payer.payID(t, f.svc, f.payee.id, "450.00", domain.LevelTwoFactorCertificate)}})
	if err != nil || big.Advance != "above_advance_cap" || !big.Compensated.Amount.IsZero() {
		t.Fatalf("case above the cap: %+v %v", big, err)
	}
	if _, err := f.svc.DetermineLiability(ctx, complianceActor, big.CaseID, ledger.Idem{}, reserves.Finding{Liable: domain.LiableInstitution,
		Reasons: []string{"phishing page impersonated us"}}); err != nil {
		t.Fatal(err)
	}
	_, err = f.svc.CloseLossCase(ctx, complianceActor, big.CaseID, ledger.Idem{})
	wantCode(t, "closing while the holder is owed", err, reserves.CodeCaseState)
	big, err = f.svc.SettleLoss(ctx, financeActor, big.CaseID, ledger.Idem{})
	if err != nil || big.Compensated.String() != "450.00" {
		t.Fatalf("settlement: %+v %v", big, err)
	}

	// The reserve never went below zero, and its balance is its history.
	view, err := f.svc.Reserve(ctx, financeActor, "CNY", 5)
	if err != nil {
		t.Fatal(err)
	}
	// 1000 top-up - 350 - 120 - 450 paid + 120 recovered.
	if view.Balance.String() != "200.00" {
		t.Fatalf("reserve %s, want 200.00", view.Balance)
	}
}

// payID pays and returns the payment's id.
func (h lossHolder) payID(t testing.TB, s *ledger.Service, payee, amount, level string) string {
	t.Helper()
	pc, _ := h.pay(t, s, payee, amount, level)
	return pc.PaymentID
}

// TestLossCaseAccess: a holder reports losses on their own payments only,
// sees their own cases only (another's answers as a missing one does), and
// takes no staff step; staff roles take only their own steps.
func TestLossCaseAccess(t *testing.T) {
	ctx := context.Background()
	f := newReserveFixture(t, nil)
	other := openLossHolder(t, f.svc, f.provider, "Other Payer", 43)
	fund(t, f.svc, other.id, "100.00")
	theirs := other.payID(t, f.svc, f.payee.id, "10.00", domain.LevelTwoFactorCertificate)
	mine := f.payer.payID(t, f.svc, f.payee.id, "10.00", domain.LevelTwoFactorCertificate)

	head := f.e.head(t)
	_, err := f.svc.ReportLossCase(ctx, f.payer.actor(), f.payer.id, ledger.Idem{}, ledger.LossRequest{PaymentIDs: []string{theirs}})
	wantCode(t, "a loss on another holder's payment", err, domain.CodeInvalid)
	_, err = f.svc.ReportLossCase(ctx, f.payer.actor(), other.id, ledger.Idem{}, ledger.LossRequest{PaymentIDs: []string{theirs}})
	wantCode(t, "a loss report on another account", err, domain.CodeForbidden)
	// The payee cannot claim the payment it received.
	_, err = f.svc.ReportLossCase(ctx, holderOf(f.payee.id), f.payee.id, ledger.Idem{}, ledger.LossRequest{PaymentIDs: []string{mine}})
	wantCode(t, "the payee claims a received payment", err, domain.CodeInvalid)
	if h := f.e.head(t); h != head {
		t.Fatalf("refused reports appended: %d -> %d", head, h)
	}

	v, err := f.svc.ReportLossCase(ctx, f.payer.actor(), f.payer.id, ledger.Idem{}, ledger.LossRequest{PaymentIDs: []string{mine}})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := f.svc.LossCase(ctx, f.payer.actor(), v.CaseID); err != nil || got.CaseID != v.CaseID {
		t.Fatalf("own case: %v", err)
	}
	_, errOther := f.svc.LossCase(ctx, other.actor(), v.CaseID)
	_, errMissing := f.svc.LossCase(ctx, other.actor(), "01JNYS0000000000000000NOPE")
	wantCode(t, "another holder's case", errOther, domain.CodeForbidden)
	if errOther == nil || errMissing == nil || errOther.Error() != errMissing.Error() {
		t.Fatalf("another holder's case answers %v, a missing one %v", errOther, errMissing)
	}
	for _, r := range []struct {
		by   ledger.Actor
		code string
	}{{financeActor, ""}, {complianceActor, ""}, {staffActor(roleAuditor), ""}, {operatorActor, domain.CodeForbidden}, {fundingActor, domain.CodeForbidden}, {publicActor, domain.CodeUnauthenticated}} {
		_, err := f.svc.LossCase(ctx, r.by, v.CaseID)
		if (r.code == "" && err != nil) || (r.code != "" && domain.ErrorCode(err) != r.code) {
			t.Errorf("%+v reads the case: %v, want %q", r.by, err, r.code)
		}
	}
	// Each staff read is recorded in the key's stream, naming the case
	// and the holder's account (R26); the holder's own reads are not.
	reads := readNamed(t, f.e.store, domain.StaffStream(financeActor.KeyID))
	if len(reads) != 1 {
		t.Fatalf("finance's key stream holds %d events, want its one read", len(reads))
	}
	if r := decode(t, reads[0]).(domain.StaffRead); r.What != "loss_case "+v.CaseID || r.AccountID != f.payer.id || r.StaffKey != financeActor.KeyID {
		t.Errorf("recorded read %+v", r)
	}
	head = f.e.head(t)
	_, err = f.svc.DetermineLiability(ctx, f.payer.actor(), v.CaseID, ledger.Idem{}, reserves.Finding{Liable: domain.LiableInstitution, Reasons: []string{"me"}})
	wantCode(t, "the holder determines liability", err, domain.CodeForbidden)
	_, err = f.svc.DetermineLiability(ctx, financeActor, v.CaseID, ledger.Idem{}, reserves.Finding{Liable: domain.LiableInstitution, Reasons: []string{"me"}})
	wantCode(t, "finance determines liability", err, domain.CodeForbidden)
	_, err = f.svc.SettleLoss(ctx, complianceActor, v.CaseID, ledger.Idem{})
	wantCode(t, "compliance moves money", err, domain.CodeForbidden)
	_, err = f.svc.AdjustReserve(ctx, f.payer.actor(), ledger.Idem{}, domain.AdjustRelease, "1.00", "CNY", "mine now")
	wantCode(t, "a holder releases the reserve", err, domain.CodeForbidden)
	if h := f.e.head(t); h != head {
		t.Fatalf("refused steps appended: %d -> %d", head, h)
	}
}

// TestCloseDay: a day is closed only once it is over, provisions by the
// policy on the day's fees and volume read from the log, and a second
// close changes nothing.
func TestCloseDay(t *testing.T) {
	ctx := context.Background()
	f := newReserveFixture(t, nil)
	day := reserves.DayOf(f.e.clock.Now(), f.e.policy.Location)
	f.payer.pay(t, f.svc, f.payee.id, "1000.00", domain.LevelTwoFactorCertificate)
	f.payer.pay(t, f.svc, f.payee.id, "234.56", domain.LevelSingleFactor)
	_, err := f.svc.CloseDay(ctx, financeActor, domain.CNY, day)
	wantCode(t, "closing today", err, reserves.CodeDayNotOver)
	f.e.clock.Advance(24 * time.Hour)
	// A payment of the next day is not the closed day's.
	f.payer.pay(t, f.svc, f.payee.id, "99.00", domain.LevelSingleFactor)
	cl, err := f.svc.CloseDay(ctx, financeActor, domain.CNY, day)
	if err != nil {
		t.Fatal(err)
	}
	// Fees 1.00 + 0.23; provisions: 20% of 1.23 = 0.24 (rounded down),
	// 0.05% of 1234.56 = 0.61.
	if cl.FeeIncome.String() != "1.23" || cl.Volume.String() != "1234.56" || cl.Provisioned.String() != "0.85" {
		t.Fatalf("close %+v", cl)
	}
	head := f.e.head(t)
	again, err := f.svc.CloseDay(ctx, financeActor, domain.CNY, day)
	if err != nil || again.ThroughPosition != cl.ThroughPosition || f.e.head(t) != head {
		t.Fatalf("second close: %+v %v (head %d -> %d)", again, err, head, f.e.head(t))
	}
	if err := f.e.rm.WaitFor(ctx, head); err != nil {
		t.Fatal(err)
	}
	if bal, _ := f.e.rm.Snapshot(domain.ReserveAccountID(domain.CNY)); bal.StringFixed(2) != "0.85" {
		t.Fatalf("reserve %s after the close", bal)
	}
}

// TestDisputeLifecycle: a holder opens a dispute about an error in their
// own payment (not another's) or a complaint; the desk assigns, answers
// and resolves it (not before answering); it is overdue past the service
// time; the holder may withdraw their own, and nobody else's.
func TestDisputeLifecycle(t *testing.T) {
	ctx := context.Background()
	f := newReserveFixture(t, nil)
	other := openLossHolder(t, f.svc, f.provider, "Other Payer", 44)
	fund(t, f.svc, other.id, "50.00")
	theirs := other.payID(t, f.svc, f.payee.id, "5.00", domain.LevelSingleFactor)
	mine := f.payer.payID(t, f.svc, f.payee.id, "5.00", domain.LevelSingleFactor)

	_, err := f.svc.OpenDispute(ctx, f.payer.actor(), f.payer.id, ledger.Idem{}, ledger.DisputeRequest{Kind: domain.DisputeError, PaymentID: theirs, Subject: "charged twice"})
	wantCode(t, "a dispute on another holder's payment", err, domain.CodeInvalid)
	_, err = f.svc.OpenDispute(ctx, f.payer.actor(), f.payer.id, ledger.Idem{}, ledger.DisputeRequest{Kind: domain.DisputeError, Subject: "charged twice"})
	wantCode(t, "an error dispute without its payment", err, domain.CodeInvalid)
	d, err := f.svc.OpenDispute(ctx, f.payer.actor(), f.payer.id, idemFor("d-1", "x"), ledger.DisputeRequest{Kind: domain.DisputeError, PaymentID: mine,
		Subject: "charged twice", Description: "the coffee shows twice"})
	if err != nil || d.Status != reserves.DisputeOpen || d.Overdue {
		t.Fatalf("open: %+v %v", d, err)
	}
	id := d.Opened.DisputeID
	if again, err := f.svc.OpenDispute(ctx, f.payer.actor(), f.payer.id, idemFor("d-1", "x"), ledger.DisputeRequest{Kind: domain.DisputeError, PaymentID: mine,
		Subject: "charged twice", Description: "the coffee shows twice"}); err != nil || again.Opened.DisputeID != id {
		t.Fatalf("replayed open: %+v %v", again, err)
	}
	_, errOther := f.svc.Dispute(ctx, other.actor(), id)
	_, errMissing := f.svc.Dispute(ctx, other.actor(), "01JNYS0000000000000000NOPE")
	wantCode(t, "another holder's dispute", errOther, domain.CodeForbidden)
	if errOther == nil || errMissing == nil || errOther.Error() != errMissing.Error() {
		t.Fatalf("another holder's dispute answers %v, a missing one %v", errOther, errMissing)
	}
	_, err = f.svc.WithdrawDispute(ctx, other.actor(), id, ledger.Idem{}, "not mine")
	wantCode(t, "another holder withdraws it", err, domain.CodeForbidden)
	_, err = f.svc.AnswerDispute(ctx, f.payer.actor(), id, ledger.Idem{}, "I answer myself")
	wantCode(t, "the holder answers", err, domain.CodeForbidden)
	_, err = f.svc.AnswerDispute(ctx, financeActor, id, ledger.Idem{}, "finance answers")
	wantCode(t, "finance answers", err, domain.CodeForbidden)

	if d, err = f.svc.AssignDispute(ctx, operatorActor, id, ledger.Idem{}, "payments desk"); err != nil || d.Assignee != "payments desk" {
		t.Fatalf("assign: %+v %v", d, err)
	}
	_, err = f.svc.ResolveDispute(ctx, complianceActor, id, ledger.Idem{}, reserves.OutcomeUpheld, "refunded")
	wantCode(t, "resolving before answering", err, reserves.CodeCaseState)
	f.e.clock.Advance(16 * 24 * time.Hour)
	if d, err = f.svc.Dispute(ctx, complianceActor, id); err != nil || !d.Overdue {
		t.Fatalf("past the service time: %+v %v", d, err)
	}
	if _, err = f.svc.AnswerDispute(ctx, operatorActor, id, ledger.Idem{}, "the second charge was a display error"); err != nil {
		t.Fatal(err)
	}
	_, err = f.svc.ResolveDispute(ctx, operatorActor, id, ledger.Idem{}, reserves.OutcomeWithdrawn, "x")
	wantCode(t, "staff withdrawing", err, domain.CodeInvalid)
	d, err = f.svc.ResolveDispute(ctx, operatorActor, id, ledger.Idem{}, reserves.OutcomeRejected, "one charge only")
	if err != nil || d.Status != reserves.DisputeResolved || d.Overdue || d.Resolution.StaffKey != operatorActor.KeyID {
		t.Fatalf("resolve: %+v %v", d, err)
	}
	_, err = f.svc.AnswerDispute(ctx, operatorActor, id, ledger.Idem{}, "more")
	wantCode(t, "answering a resolved dispute", err, reserves.CodeCaseState)

	c, err := f.svc.OpenDispute(ctx, f.payer.actor(), f.payer.id, ledger.Idem{}, ledger.DisputeRequest{Kind: domain.DisputeComplaint, Subject: "app too slow"})
	if err != nil {
		t.Fatal(err)
	}
	if c, err = f.svc.WithdrawDispute(ctx, f.payer.actor(), c.Opened.DisputeID, ledger.Idem{}, ""); err != nil || c.Resolution.Outcome != reserves.OutcomeWithdrawn || c.Resolution.StaffKey != "" {
		t.Fatalf("withdraw: %+v %v", c, err)
	}
	open, err := f.svc.OpenDispute(ctx, f.payer.actor(), f.payer.id, ledger.Idem{}, ledger.DisputeRequest{Kind: domain.DisputeComplaint, Subject: "statement unclear"})
	if err != nil {
		t.Fatal(err)
	}
	// The read models list the open and the overdue ones.
	if err := f.e.rm.WaitFor(ctx, f.e.head(t)); err != nil {
		t.Fatal(err)
	}
	ids := func(q projections.CaseQuery) []string {
		t.Helper()
		q.Kind = domain.CaseDispute
		rows, _, err := f.e.rm.Cases(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range rows {
			out = append(out, r.CaseID+" "+r.Status)
		}
		return out
	}
	all := ids(projections.CaseQuery{})
	if len(all) != 3 || all[0] != id+" resolved" {
		t.Fatalf("all disputes: %v", all)
	}
	if got := ids(projections.CaseQuery{OpenOnly: true}); len(got) != 1 || got[0] != open.Opened.DisputeID+" open" {
		t.Fatalf("open disputes: %v", got)
	}
	if got := ids(projections.CaseQuery{OverdueAt: f.e.clock.Now()}); len(got) != 0 {
		t.Fatalf("overdue now: %v", got)
	}
	if got := ids(projections.CaseQuery{OverdueAt: f.e.clock.Now().Add(16 * 24 * time.Hour)}); len(got) != 1 {
		t.Fatalf("overdue in 16 days: %v", got)
	}
	// Rebuilt from the log, the read models are the same.
	live, err := f.e.rm.Digest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := projections.Open(filepath.Join(t.TempDir(), "rebuilt.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if err := fresh.Rebuild(ctx, f.e.store); err != nil {
		t.Fatal(err)
	}
	if rebuilt, err := fresh.Digest(ctx); err != nil || rebuilt != live {
		t.Fatalf("rebuilt digest %s (%v), live %s", rebuilt, err, live)
	}
}

// TestCloseDueDays: serve's scheduler closes every day that is over since
// the last close (none before the ledger's first event), once.
func TestCloseDueDays(t *testing.T) {
	ctx := context.Background()
	f := newReserveFixture(t, nil)
	loc := f.e.policy.Location
	first := reserves.DayOf(f.e.clock.Now(), loc)
	if closed, err := f.svc.CloseDueDays(ctx, domain.CNY, 31); err != nil || len(closed) != 0 {
		t.Fatalf("on the first day: %v %v", closed, err)
	}
	f.e.clock.Advance(3 * 24 * time.Hour)
	closed, err := f.svc.CloseDueDays(ctx, domain.CNY, 31)
	if err != nil || len(closed) != 3 || closed[0].Day != string(first) {
		t.Fatalf("three days later: %+v %v", closed, err)
	}
	if again, err := f.svc.CloseDueDays(ctx, domain.CNY, 31); err != nil || len(again) != 0 {
		t.Fatalf("again: %+v %v", again, err)
	}
	f.e.clock.Advance(24 * time.Hour)
	if next, err := f.svc.CloseDueDays(ctx, domain.CNY, 31); err != nil || len(next) != 1 || next[0].Day <= closed[2].Day {
		t.Fatalf("a day later: %+v %v", next, err)
	}
	// A day closed by hand past open ones leaves them to the scheduler.
	f.e.clock.Advance(3 * 24 * time.Hour)
	late := reserves.DayOf(f.e.clock.Now().Add(-24*time.Hour), loc)
	if _, err := f.svc.CloseDay(ctx, financeActor, domain.CNY, late); err != nil {
		t.Fatal(err)
	}
	if gaps, err := f.svc.CloseDueDays(ctx, domain.CNY, 31); err != nil || len(gaps) != 2 || gaps[1].Day >= string(late) {
		t.Fatalf("the days before a later close: %+v %v", gaps, err)
	}
	// Nothing before the ledger's first day is closed.
	start, _ := first.Bounds(loc)
	_, err = f.svc.CloseDay(ctx, financeActor, domain.CNY, reserves.DayOf(start.Add(-time.Hour), loc))
	wantCode(t, "a close before the ledger began", err, domain.CodeInvalid)
	_, err = f.svc.CloseDay(ctx, financeActor, domain.CNY, "0001-01-01")
	wantCode(t, "a close of year 1", err, domain.CodeInvalid)
	// The days follow each other.
	for i := 1; i < len(closed); i++ {
		start, _ := reserves.Day(closed[i-1].Day).Bounds(loc)
		if want := string(reserves.DayOf(start.Add(25*time.Hour), loc)); closed[i].Day != want {
			t.Fatalf("close %d is of %s, want %s", i, closed[i].Day, want)
		}
	}
}

// TestLossReportStoppedBetweenAppends: a report that claimed its payments
// in the account's stream but could not open the case's stream is
// completed by the next report of the same payments, under the same case
// id; the payments stay claimed once.
func TestLossReportStoppedBetweenAppends(t *testing.T) {
	ctx := context.Background()
	f := newReserveFixture(t, nil)
	pay := f.payer.payID(t, f.svc, f.payee.id, "20.00", domain.LevelTwoFactorCertificate)
	hook := &hookStore{ConditionalStore: f.e.store}
	var failed atomic.Bool
	hook.before = func(stream string, _ int64) error {
		if strings.HasPrefix(stream, "losscase-") && failed.CompareAndSwap(false, true) {
			return fmt.Errorf("disk gone: %w", eventstore.ErrUnavailable)
		}
		return nil
	}
	svc := f.e.node(t, func(c *ledger.Config) {
		c.Store = hook
		c.Policy.BiometricProviderKey = f.provider.Public().(ed25519.PublicKey)
	})
	_, err := svc.ReportLossCase(ctx, f.payer.actor(), f.payer.id, ledger.Idem{}, ledger.LossRequest{PaymentIDs: []string{pay}})
	wantCode(t, "the report whose case could not open", err, domain.CodeStorageUnavailable)
	v, err := svc.ReportLossCase(ctx, f.payer.actor(), f.payer.id, ledger.Idem{}, ledger.LossRequest{PaymentIDs: []string{pay}})
	if err != nil || v.Status != reserves.StatusReported {
		t.Fatalf("the report again: %+v %v", v, err)
	}
	claims := 0
	for _, e := range readStream(t, f.e.store, f.payer.id) {
		if e.Type == domain.TypeLossClaimed {
			claims++
			if c := decode(t, e).(domain.LossClaimed); c.CaseID != v.CaseID {
				t.Errorf("claimed in case %s, the case is %s", c.CaseID, v.CaseID)
			}
		}
	}
	if claims != 1 {
		t.Fatalf("%d claims in the account's stream, want 1", claims)
	}
	_, err = svc.ReportLossCase(ctx, f.payer.actor(), f.payer.id, ledger.Idem{}, ledger.LossRequest{PaymentIDs: []string{pay}})
	wantCode(t, "a third report", err, domain.CodeConflict)
}

// reserveStreamTypes counts the event types of the reserve's stream.
func reserveStreamTypes(t *testing.T, e *env) map[string]int {
	t.Helper()
	n := map[string]int{}
	for _, ev := range readNamed(t, e.store, domain.ReserveStream(domain.CNY)) {
		n[ev.Type]++
	}
	return n
}

// TestLossAttacksOnTheAdvance: a replayed report moves no money (not after
// a settlement, not after a finding against the holder), and retries
// while the reserve is short record one shortfall.
func TestLossAttacksOnTheAdvance(t *testing.T) {
	ctx := context.Background()
	f := newReserveFixture(t, nil)
	p := f.payer.payID(t, f.svc, f.payee.id, "300.00", domain.LevelTwoFactor)
	req := ledger.LossRequest{PaymentIDs: []string{p}}
	v, err := f.svc.ReportLossCase(ctx, f.payer.actor(), f.payer.id, idemFor("k", "b"), req)
	if err != nil || v.Advance != "due" {
		t.Fatalf("report: %+v %v", v, err)
	}
	for i := 0; i < 10; i++ {
		if _, err := f.svc.ReportLossCase(ctx, f.payer.actor(), f.payer.id, idemFor("k", "b"), req); err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.SettleLoss(ctx, financeActor, v.CaseID, ledger.Idem{}); err != nil {
			t.Fatalf("settling while short: %v", err)
		}
	}
	if n := reserveStreamTypes(t, f.e); n[domain.TypeReserveShortfall] != 1 {
		t.Fatalf("shortfalls recorded: %v, want one", n)
	}
	f.topUp(t, "5000.00")
	if _, err := f.svc.DetermineLiability(ctx, complianceActor, v.CaseID, ledger.Idem{}, reserves.Finding{Liable: domain.LiableInstitution, Reasons: []string{"x"}}); err != nil {
		t.Fatal(err)
	}
	if v, err = f.svc.SettleLoss(ctx, financeActor, v.CaseID, ledger.Idem{}); err != nil || v.Compensated.String() != "300.00" {
		t.Fatalf("settlement: %+v %v", v, err)
	}
	if v, err = f.svc.ReportLossCase(ctx, f.payer.actor(), f.payer.id, idemFor("k", "b"), req); err != nil || !v.Replayed || v.Compensated.String() != "300.00" {
		t.Fatalf("replay after the settlement: %+v %v", v, err)
	}
	if n := reserveStreamTypes(t, f.e); n[domain.TypeCompensationPaid] != 1 {
		t.Fatalf("payouts: %v, want one", n)
	}

	// Found liable before the advance was paid: a replay pays nothing.
	q := f.payer.payID(t, f.svc, f.payee.id, "40.00", domain.LevelTwoFactor)
	released, err := f.svc.Reserve(ctx, financeActor, "CNY", 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.AdjustReserve(ctx, financeActor, ledger.Idem{}, domain.AdjustRelease, released.Balance.String(), "CNY", "empty it"); err != nil {
		t.Fatal(err)
	}
	w, err := f.svc.ReportLossCase(ctx, f.payer.actor(), f.payer.id, idemFor("k2", "b"), ledger.LossRequest{PaymentIDs: []string{q}})
	if err != nil || w.Advance != "due" {
		t.Fatalf("second report: %+v %v", w, err)
	}
	if _, err := f.svc.DetermineLiability(ctx, complianceActor, w.CaseID, ledger.Idem{}, reserves.Finding{Liable: domain.LiableCustomer,
		Reasons: []string{"r"}, Evidence: []string{"e"}}); err != nil {
		t.Fatal(err)
	}
	f.topUp(t, "100.00")
	if w, err = f.svc.ReportLossCase(ctx, f.payer.actor(), f.payer.id, idemFor("k2", "b"), ledger.LossRequest{PaymentIDs: []string{q}}); err != nil || !w.Compensated.Amount.IsZero() {
		t.Fatalf("replay after a finding against the holder: %+v %v", w, err)
	}
	_, err = f.svc.SettleLoss(ctx, financeActor, w.CaseID, ledger.Idem{})
	wantCode(t, "settling a case the holder is liable for, unpaid", err, domain.CodeConflict)
}

// TestConcurrentSettlementsMoveMoneyOnce: two nodes settle the same case
// at once, their reserve appends slowed so that both decide before either
// lands: the institution pays once; the same for recoveries.
func TestConcurrentSettlementsMoveMoneyOnce(t *testing.T) {
	ctx := context.Background()
	f := newReserveFixture(t, nil)
	f.topUp(t, "5000.00")
	slow := &hookStore{ConditionalStore: f.e.store, before: func(stream string, _ int64) error {
		if strings.HasPrefix(stream, "reserve-") || strings.HasPrefix(stream, "account-") {
			time.Sleep(30 * time.Millisecond)
		}
		return nil
	}}
	nodes := []*ledger.Service{f.svc, f.e.node(t, func(c *ledger.Config) {
		c.Store = slow
		c.Policy.BiometricProviderKey = f.provider.Public().(ed25519.PublicKey)
	})}
	settleBoth := func(caseID string) {
		t.Helper()
		var wg sync.WaitGroup
		for _, n := range nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := n.SettleLoss(ctx, financeActor, caseID, ledger.Idem{}); err != nil && domain.ErrorCode(err) != domain.CodeConflict &&
					domain.ErrorCode(err) != domain.CodeVersionConflict {
					t.Errorf("settle: %v", err)
				}
			}()
		}
		wg.Wait()
	}
	// Above the cap: no advance; the institution owes 450.00.
	big, err := f.svc.ReportLossCase(ctx, f.payer.actor(), f.payer.id, ledger.Idem{}, ledger.LossRequest{
		PaymentIDs: []string{f.payer.payID(t, f.svc, f.payee.id, "450.00", domain.LevelTwoFactorCertificate)}})
	if err != nil || big.Advance != "above_advance_cap" {
		t.Fatalf("report: %+v %v", big, err)
	}
	if _, err := f.svc.DetermineLiability(ctx, complianceActor, big.CaseID, ledger.Idem{}, reserves.Finding{Liable: domain.LiableInstitution, Reasons: []string{"x"}}); err != nil {
		t.Fatal(err)
	}
	settleBoth(big.CaseID)
	if v, err := f.svc.LossCase(ctx, financeActor, big.CaseID); err != nil || v.Compensated.String() != "450.00" {
		t.Fatalf("after two settlements at once: %+v %v", v, err)
	}
	// Advance paid, holder liable: 300.00 to take back, once.
	c, err := f.svc.ReportLossCase(ctx, f.payer.actor(), f.payer.id, ledger.Idem{}, ledger.LossRequest{
		PaymentIDs: []string{f.payer.payID(t, f.svc, f.payee.id, "300.00", domain.LevelTwoFactor)}})
	if err != nil || c.Advance != "paid" {
		t.Fatalf("report: %+v %v", c, err)
	}
	if _, err := f.svc.DetermineLiability(ctx, complianceActor, c.CaseID, ledger.Idem{}, reserves.Finding{Liable: domain.LiableCustomer,
		Reasons: []string{"r"}, Evidence: []string{"e"}}); err != nil {
		t.Fatal(err)
	}
	settleBoth(c.CaseID)
	if v, err := f.svc.LossCase(ctx, financeActor, c.CaseID); err != nil || v.Recovered.String() != "300.00" {
		t.Fatalf("after two recoveries at once: %+v %v", v, err)
	}
}
