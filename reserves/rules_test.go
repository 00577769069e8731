package reserves

import (
	"errors"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/payledger/payledger/domain"
)

var (
	shanghai = time.FixedZone("CST", 8*3600)
	t0       = time.Date(2026, 3, 10, 9, 0, 0, 0, shanghai)
)

func cny(s string) domain.Money { return domain.MustMoney(s, domain.CNY) }

func pay(id, amount, level string, at time.Time) domain.LossPayment {
	return domain.LossPayment{PaymentID: id, Payee: "PAYEE", Amount: cny(amount), VerificationLevel: level, ConfirmedAt: at}
}

func codeOf(err error) string {
	var de *domain.Error
	if errors.As(err, &de) {
		return de.Code
	}
	return ""
}

func reported(t *testing.T, payments ...domain.LossPayment) *LossCase {
	t.Helper()
	c := &LossCase{}
	evs, err := ReportLoss(c, "CASE1", "ACCT1", payments, "not me", DefaultPolicy(shanghai), t0)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range evs {
		c.Apply(e, domain.Recorded{Version: int64(i + 1), Position: int64(i + 1), OccurredAt: t0})
	}
	return c
}

func TestAdvanceRules(t *testing.T) {
	old := t0.Add(-400 * 24 * time.Hour)
	for _, tc := range []struct {
		name     string
		payments []domain.LossPayment
		want     string
		amount   string
	}{
		{"two-factor loss is paid in advance", []domain.LossPayment{pay("P1", "120.00", domain.LevelTwoFactor, t0.Add(-time.Hour))}, AdvancePay, "120.00"},
		{"single-factor loss is paid even when old", []domain.LossPayment{pay("P1", "80.00", domain.LevelSingleFactor, old)}, AdvancePay, "80.00"},
		{"only the single-factor part is paid when the rest is above the cap",
			[]domain.LossPayment{pay("P1", "60000.00", domain.LevelTwoFactorCertificate, t0), pay("P2", "1.00", domain.LevelSingleFactor, t0)}, AdvancePay, "1.00"},
		{"only the single-factor part is paid when the rest is old",
			[]domain.LossPayment{pay("P1", "2000.00", domain.LevelTwoFactorCertificate, old), pay("P2", "0.01", domain.LevelSingleFactor, t0)}, AdvancePay, "0.01"},
		{"both parts are paid when the rules allow the rest",
			[]domain.LossPayment{pay("P1", "20.00", domain.LevelTwoFactor, t0), pay("P2", "5.00", domain.LevelSingleFactor, old)}, AdvancePay, "25.00"},
		{"old two-factor loss waits for investigation", []domain.LossPayment{pay("P1", "80.00", domain.LevelTwoFactor, old)}, "claim_window_passed", "0.00"},
		{"a loss above the cap waits", []domain.LossPayment{pay("P1", "50000.01", domain.LevelTwoFactorCertificate, t0)}, "above_advance_cap", "0.00"},
		{"the cap counts only what the rules judge", []domain.LossPayment{pay("P1", "50000.00", domain.LevelTwoFactorCertificate, t0), pay("P2", "9.00", domain.LevelSingleFactor, t0)}, AdvancePay, "50009.00"},
		{"a loss at the cap is paid", []domain.LossPayment{pay("P1", "50000.00", domain.LevelTwoFactorCertificate, t0)}, AdvancePay, "50000.00"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := reported(t, tc.payments...)
			if c.Report.Advance != tc.want || c.Report.AdvanceAmount.String() != tc.amount {
				t.Fatalf("advance = %q of %s (%s), want %q of %s", c.Report.Advance, c.Report.AdvanceAmount, c.Report.AdvanceReason, tc.want, tc.amount)
			}
		})
	}
}

func TestReportLossRefusesBadInput(t *testing.T) {
	p := DefaultPolicy(shanghai)
	many := make([]domain.LossPayment, MaxCasePayments+1)
	for i := range many {
		many[i] = pay(string(rune('A'+i)), "1.00", domain.LevelTwoFactor, t0)
	}
	usd := pay("P2", "1.00", domain.LevelTwoFactor, t0)
	usd.Amount.Currency = "USD"
	for name, payments := range map[string][]domain.LossPayment{
		"none":       nil,
		"too many":   many,
		"twice":      {pay("P1", "1.00", domain.LevelTwoFactor, t0), pay("P1", "1.00", domain.LevelTwoFactor, t0)},
		"currencies": {pay("P1", "1.00", domain.LevelTwoFactor, t0), usd},
	} {
		if _, err := ReportLoss(&LossCase{}, "C", "A", payments, "", p, t0); codeOf(err) != domain.CodeInvalid {
			t.Errorf("%s: err = %v, want invalid_request", name, err)
		}
	}
}

func TestLiabilityRules(t *testing.T) {
	two := pay("P1", "300.00", domain.LevelTwoFactor, t0)
	single := pay("P2", "50.00", domain.LevelSingleFactor, t0)
	for _, tc := range []struct {
		name      string
		payments  []domain.LossPayment
		finding   Finding
		wantCode  string
		wantShare string
		wantRule  string
	}{
		{"institution found", []domain.LossPayment{two}, Finding{Liable: domain.LiableInstitution, Reasons: []string{"phishing site"}}, "", "0.00", "institution_found"},
		{"customer shown with evidence", []domain.LossPayment{two}, Finding{Liable: domain.LiableCustomer, Reasons: []string{"shared password"}, Evidence: []string{"call-123"}}, "", "300.00", "customer_shown_single_factor_excepted"},
		{"customer not shown without evidence", []domain.LossPayment{two}, Finding{Liable: domain.LiableCustomer, Reasons: []string{"suspicious"}}, CodeEvidenceRequired, "", ""},
		{"customer not shown without reasons", []domain.LossPayment{two}, Finding{Liable: domain.LiableCustomer, Evidence: []string{"x"}}, CodeEvidenceRequired, "", ""},
		{"single-factor part stays the institution's", []domain.LossPayment{two, single}, Finding{Liable: domain.LiableCustomer, Reasons: []string{"r"}, Evidence: []string{"e"}}, "", "300.00", "customer_shown_single_factor_excepted"},
		{"single-factor only: the institution's whatever is shown", []domain.LossPayment{single}, Finding{Liable: domain.LiableCustomer, Reasons: []string{"r"}, Evidence: []string{"e"}}, "", "0.00", "customer_shown_single_factor_excepted"},
		{"unknown party", []domain.LossPayment{two}, Finding{Liable: "merchant"}, domain.CodeInvalid, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := reported(t, tc.payments...)
			evs, err := Determine(c, tc.finding, domain.Staff{StaffKey: "K1"})
			if tc.wantCode != "" {
				if codeOf(err) != tc.wantCode || evs != nil {
					t.Fatalf("err = %v, events %v; want %s and none", err, evs, tc.wantCode)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			d := evs[0].(domain.LiabilityDetermined)
			if d.CustomerShare.String() != tc.wantShare || d.Rule != tc.wantRule {
				t.Fatalf("share %s rule %s, want %s %s", d.CustomerShare, d.Rule, tc.wantShare, tc.wantRule)
			}
			wantLiable := domain.LiableInstitution
			if d.CustomerShare.Amount.IsPositive() {
				wantLiable = domain.LiableCustomer
			}
			if d.Liable != wantLiable {
				t.Fatalf("liable %s, want %s", d.Liable, wantLiable)
			}
		})
	}
}

func TestSettlementAndRecovery(t *testing.T) {
	two := pay("P1", "300.00", domain.LevelTwoFactor, t0)
	single := pay("P2", "50.00", domain.LevelSingleFactor, t0)
	d := decimal.RequireFromString
	for _, tc := range []struct {
		name                 string
		liable               string
		paid, recovered      string
		wantPay, wantRecover string
		closeCode            string
		outcome              string
	}{
		{"institution, advance paid in full", domain.LiableInstitution, "350.00", "0", "0", "0", "", "compensated"},
		{"institution, advance excluded: settle in full", domain.LiableInstitution, "0", "0", "350.00", "0", CodeCaseState, ""},
		{"customer, advance paid: recover all but single-factor", domain.LiableCustomer, "350.00", "0", "0", "300.00", "", "recovery_outstanding"},
		{"customer, partly recovered", domain.LiableCustomer, "350.00", "120.00", "0", "180.00", "", "recovery_outstanding"},
		{"customer, recovered", domain.LiableCustomer, "350.00", "300.00", "0", "0", "", "customer_liable"},
		{"customer, no advance: pay the single-factor part", domain.LiableCustomer, "0", "0", "50.00", "0", CodeCaseState, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := reported(t, two, single)
			f := Finding{Liable: tc.liable, Reasons: []string{"r"}, Evidence: []string{"e"}}
			evs, err := Determine(c, f, domain.Staff{StaffKey: "K"})
			if err != nil {
				t.Fatal(err)
			}
			c.Apply(evs[0], domain.Recorded{Version: 2, Position: 2, OccurredAt: t0})
			s, err := SettlementOf(c, d(tc.paid), d(tc.recovered))
			if err != nil {
				t.Fatal(err)
			}
			if !s.Pay.Equal(d(tc.wantPay)) || !s.Recover.Equal(d(tc.wantRecover)) {
				t.Fatalf("settlement pay %s recover %s, want %s %s", s.Pay, s.Recover, tc.wantPay, tc.wantRecover)
			}
			evs, err = CloseCase(c, d(tc.paid), d(tc.recovered), domain.Staff{StaffKey: "K"})
			if codeOf(err) != tc.closeCode {
				t.Fatalf("close err = %v, want code %q", err, tc.closeCode)
			}
			if tc.outcome != "" && evs[0].(domain.LossCaseClosed).Outcome != tc.outcome {
				t.Fatalf("outcome %s, want %s", evs[0].(domain.LossCaseClosed).Outcome, tc.outcome)
			}
		})
	}
}

func TestCaseStepsFollowTheStatus(t *testing.T) {
	c := reported(t, pay("P1", "10.00", domain.LevelTwoFactor, t0))
	if _, err := CloseCase(c, decimal.Zero, decimal.Zero, domain.Staff{}); codeOf(err) != CodeCaseState {
		t.Fatalf("close before determination: %v", err)
	}
	evs, err := Investigate(c, "looking", domain.Staff{StaffKey: "K"})
	if err != nil {
		t.Fatal(err)
	}
	c.Apply(evs[0], domain.Recorded{Version: 2})
	if _, err := Investigate(c, "again", domain.Staff{StaffKey: "K"}); codeOf(err) != CodeCaseState {
		t.Fatalf("second investigation: %v", err)
	}
	if _, err := Investigate(&LossCase{}, "", domain.Staff{}); codeOf(err) != domain.CodeNotFound {
		t.Fatalf("missing case: %v", err)
	}
}

func TestCompensateNeverOverdrawsTheReserve(t *testing.T) {
	r := NewReserve(domain.CNY)
	for _, tc := range []struct {
		balance, amount string
		wantCode        string
	}{
		{"100.00", "100.00", ""},
		{"100.00", "99.99", ""},
		{"100.00", "100.01", CodeReserveShortfall},
		{"0.00", "0.01", CodeReserveShortfall},
	} {
		evs, err := Compensate(r, "C1", domain.CompensationAdvance, "ACCT", []string{"P1"}, cny(tc.amount), domain.Staff{}, cny(tc.balance))
		if codeOf(err) != tc.wantCode {
			t.Fatalf("%s of %s: err %v, want %q", tc.amount, tc.balance, err, tc.wantCode)
		}
		if tc.wantCode == "" {
			if p := evs[0].(domain.CompensationPaid); p.DebitAccount != domain.ReserveAccountID(domain.CNY) || p.Amount.String() != tc.amount {
				t.Fatalf("paid %+v", p)
			}
			continue
		}
		if len(evs) != 1 {
			t.Fatalf("shortfall events %v", evs)
		}
		if s, ok := evs[0].(domain.ReserveShortfall); !ok || s.Needed.String() != tc.amount || s.Available.String() != tc.balance {
			t.Fatalf("shortfall event %+v", evs[0])
		}
	}
	// One shortfall is recorded per case until it is paid.
	evs, _ := Compensate(r, "C9", domain.CompensationAdvance, "ACCT", []string{"P9"}, cny("5.00"), domain.Staff{}, cny("1.00"))
	r.Apply(evs[0], domain.Recorded{Version: 1, Position: 5})
	if again, err := Compensate(r, "C9", domain.CompensationAdvance, "ACCT", []string{"P9"}, cny("5.00"), domain.Staff{}, cny("1.00")); len(again) != 0 || codeOf(err) != CodeReserveShortfall {
		t.Fatalf("second shortfall of a case: %v %v", again, err)
	}
	// A payment is compensated once, whichever case names it.
	evs, _ = Compensate(r, "C1", domain.CompensationAdvance, "ACCT", []string{"P1"}, cny("5.00"), domain.Staff{}, cny("10.00"))
	r.Apply(evs[0], domain.Recorded{Version: 2, Position: 7})
	if _, err := Compensate(r, "C2", domain.CompensationAdvance, "ACCT", []string{"P1"}, cny("5.00"), domain.Staff{}, cny("10.00")); codeOf(err) != domain.CodeConflict {
		t.Fatalf("second compensation of P1: %v", err)
	}
	if got := r.Available(decimal.RequireFromString("10.00"), 6); got.String() != "5.00" {
		t.Fatalf("available before the projection counted the payout = %s, want 5.00", got)
	}
	if got := r.Available(decimal.RequireFromString("5.00"), 7); got.String() != "5.00" {
		t.Fatalf("available after = %s", got)
	}
}

func TestCloseDayProvisionsOnceByPolicy(t *testing.T) {
	p := DefaultPolicy(shanghai)
	p.Floor = decimal.RequireFromString("1000")
	r := NewReserve(domain.CNY)
	b := Basis{FeeIncome: cny("123.45"), Volume: cny("98765.43"), Through: 40}
	evs := CloseDay(r, "2026-03-09", b, p, cny("900.00"))
	// 20% of 123.45 = 24.69, 0.05% of 98765.43 = 49.38 (floored), then
	// 1000 - (900 + 74.07) = 25.93 up to the floor.
	want := []string{"24.69 fee_income", "49.38 volume", "25.93 floor"}
	if len(evs) != 4 {
		t.Fatalf("events %v", evs)
	}
	for i, w := range want {
		pv := evs[i].(domain.ReserveProvisioned)
		if got := pv.Amount.String() + " " + pv.Source; got != w {
			t.Errorf("provision %d = %s, want %s", i, got, w)
		}
		if pv.CreditAccount != domain.ReserveAccountID(domain.CNY) || pv.Policy != p.Version {
			t.Errorf("provision %d %+v", i, pv)
		}
	}
	closed := evs[3].(domain.DayClosed)
	if closed.Provisioned.String() != "100.00" || closed.ThroughPosition != 40 {
		t.Fatalf("close %+v", closed)
	}
	r.Apply(closed, domain.Recorded{Version: 4, Position: 44})
	if again := CloseDay(r, "2026-03-09", b, p, cny("1000.00")); again != nil {
		t.Fatalf("second close gave %v", again)
	}
	if evs := CloseDay(r, "2026-03-10", Basis{FeeIncome: cny("0"), Volume: cny("0")}, p, cny("1000.00")); len(evs) != 1 {
		t.Fatalf("an idle day above the floor provisions nothing but closes: %v", evs)
	}
}

func TestAdjustKeepsTheFloor(t *testing.T) {
	p := DefaultPolicy(shanghai)
	p.Floor = decimal.RequireFromString("500")
	r := NewReserve(domain.CNY)
	staff := domain.Staff{StaffKey: "F1"}
	if _, err := Adjust(r, "A1", domain.AdjustRelease, cny("500.01"), "surplus", staff, p, cny("1000.00")); codeOf(err) != CodeReserveFloor {
		t.Fatalf("release below floor: %v", err)
	}
	evs, err := Adjust(r, "A1", domain.AdjustRelease, cny("500.00"), "surplus", staff, p, cny("1000.00"))
	if err != nil {
		t.Fatal(err)
	}
	if a := evs[0].(domain.ReserveAdjusted); a.DebitAccount != domain.ReserveAccountID(domain.CNY) || a.CreditAccount != domain.OwnFundsAccountID(domain.CNY) {
		t.Fatalf("release %+v", a)
	}
	r.Apply(evs[0], domain.Recorded{Version: 1, Position: 3})
	if again, err := Adjust(r, "A1", domain.AdjustRelease, cny("500.00"), "surplus", staff, p, cny("500.00")); again != nil || err != nil {
		t.Fatalf("repeated adjustment id: %v %v", again, err)
	}
	if _, err := Adjust(r, "A2", domain.AdjustTopUp, cny("1.00"), "", staff, p, cny("0")); codeOf(err) != domain.CodeInvalid {
		t.Fatalf("adjustment without a reason: %v", err)
	}
	if _, err := Adjust(r, "A3", "steal", cny("1.00"), "x", staff, p, cny("10")); codeOf(err) != domain.CodeInvalid {
		t.Fatalf("unknown kind: %v", err)
	}
}

func TestFeeSchedule(t *testing.T) {
	d := decimal.RequireFromString
	s := domain.FeeSchedule{Version: "fees-1", Rate: d("0.006"), Fixed: d("0.10"), Min: d("0.50"), Max: d("25")}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	for amount, want := range map[string]string{
		"10.00": "0.50", "100.00": "0.70", "100.75": "0.70", "100.84": "0.71", "10000.00": "25.00",
	} {
		if got := s.FeeFor(cny(amount)).String(); got != want {
			t.Errorf("fee of %s = %s, want %s", amount, got, want)
		}
	}
	// In a currency without minor units the bounds round inwards.
	jpy := domain.FeeSchedule{Version: "f", Rate: d("0.001"), Min: d("0.50"), Max: d("20.50")}
	for amount, want := range map[int64]string{10: "1", 100000: "20"} {
		if got := jpy.FeeFor(domain.Money{Amount: decimal.NewFromInt(amount), Currency: "JPY"}).String(); got != want {
			t.Errorf("fee of %d JPY = %s, want %s", amount, got, want)
		}
	}
	if got := (domain.FeeSchedule{}).FeeFor(cny("99.99")); !got.Amount.IsZero() {
		t.Errorf("free schedule charged %s", got)
	}
	for _, bad := range []domain.FeeSchedule{
		{Version: "x", Rate: d("-0.1")}, {Version: "x", Rate: d("0.2")}, {Version: "x", Min: d("5"), Max: d("1")}, {Rate: d("0.01")},
		{Version: "x", Rate: d("0.01"), Max: d("0.005")}, {Version: "x", Fixed: d("0.001")},
	} {
		if bad.Validate() == nil {
			t.Errorf("%+v validated", bad)
		}
	}
}
