package ledger_test

import (
	"context"
	"encoding/hex"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/eventstore/merkle"
	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/staffkeys"
	"github.com/payledger/payledger/reserves"
)

// yearTotals is what the year test computes from what it generated,
// independently of the reserves package.
type yearTotals struct {
	losses                         int
	lossSum, compSum, recoveredSum decimal.Decimal
	comps, recoveries, shortfalls  int
	disputes, errors, upheld       int
	provisioned, toppedUp          decimal.Decimal
	feesByDay, volumeByDay         map[string]decimal.Decimal
}

// TestYearOfActivity generates a calendar year of activity (deposits,
// payments at each verification level with fees, losses with advance
// compensation, a shortfall, liability both ways, recoveries, daily
// closes) and checks the annual report's figures against the ones the test
// computes from what it did, and that the reconciliation of the log
// against the projection finds nothing.
func TestYearOfActivity(t *testing.T) {
	if testing.Short() {
		t.Skip("a year of activity")
	}
	ctx := context.Background()
	f := newReserveFixture(t, func(c *ledger.Config) { c.Reserves.AdvanceCap = decimal.Zero })
	loc := f.e.policy.Location
	// Start the year's first day at 09:00 in the institution's zone.
	start := time.Date(2026, 1, 1, 9, 0, 0, 0, loc)
	f.e.clock.Advance(start.Sub(f.e.clock.Now()))
	rng := rand.New(rand.NewPCG(7, 11))
	levels := []string{domain.LevelSingleFactor, domain.LevelTwoFactor, domain.LevelTwoFactorCertificate}
	d := decimal.RequireFromString
	want := yearTotals{feesByDay: map[string]decimal.Decimal{}, volumeByDay: map[string]decimal.Decimal{}}
	policy := reserves.DefaultPolicy(loc)
	var lossIDs []string
	closeDay := func(day reserves.Day) {
		t.Helper()
		cl, err := f.svc.CloseDay(ctx, financeActor, domain.CNY, day)
		if err != nil {
			t.Fatalf("close %s: %v", day, err)
		}
		fee, vol := want.feesByDay[string(day)], want.volumeByDay[string(day)]
		if !cl.FeeIncome.Amount.Equal(fee) || !cl.Volume.Amount.Equal(vol) {
			t.Fatalf("close %s: fees %s volume %s, the test made %s and %s", day, cl.FeeIncome, cl.Volume, fee, vol)
		}
		want.provisioned = want.provisioned.Add(fee.Mul(policy.FeeShare).RoundFloor(2)).Add(vol.Mul(policy.VolumeShare).RoundFloor(2))
	}
	// The first day's first loss meets an empty reserve.
	active := 0
	for dayNo := 0; dayNo < 365; dayNo += 1 + rng.IntN(4) {
		active++
		now := start.AddDate(0, 0, dayNo)
		f.e.clock.Advance(now.Sub(f.e.clock.Now()))
		day := reserves.DayOf(now, loc)
		if active%10 == 1 {
			fund(t, f.svc, f.payer.id, "20000.00")
		}
		for i := 0; i < 1+rng.IntN(3); i++ {
			level := levels[rng.IntN(len(levels))]
			if level == domain.LevelTwoFactor && rng.IntN(3) > 0 {
				level = domain.LevelSingleFactor // passwords cost an argon2 hash: keep them few
			}
			// Every sixth active day's first payment is reported lost;
			// every other case is found to be the customer's, alternately
			// on a certificate payment (recovered) and on a single-factor
			// one (the institution's whatever is shown).
			lost := active%6 == 1 && i == 0
			if lost && len(lossIDs)%4 == 1 {
				level = domain.LevelTwoFactorCertificate
			}
			if lost && len(lossIDs)%4 == 3 {
				level = domain.LevelSingleFactor
			}
			// Three single-factor payments stay within that day's cap.
			amount := decimal.New(int64(100+rng.IntN(29900)), -2)
			if level != domain.LevelSingleFactor {
				amount = decimal.New(int64(100+rng.IntN(89900)), -2)
			}
			pc, fee := f.payer.pay(t, f.svc, f.payee.id, amount.StringFixed(2), level)
			want.volumeByDay[string(day)] = want.volumeByDay[string(day)].Add(pc.Amount.Amount)
			if fee == nil {
				t.Fatal("a payment without a fee")
			}
			want.feesByDay[string(day)] = want.feesByDay[string(day)].Add(fee.Amount.Amount)
			// Every ninth active day's first payment is disputed as an
			// error, alternately upheld and withdrawn; every eleventh day
			// brings a complaint left open.
			if active%9 == 4 && i == 0 {
				d, err := f.svc.OpenDispute(ctx, f.payer.actor(), f.payer.id, ledger.Idem{}, ledger.DisputeRequest{Kind: domain.DisputeError,
					PaymentID: pc.PaymentID, Subject: "charged twice"})
				if err != nil {
					t.Fatal(err)
				}
				want.disputes++
				want.errors++
				id := d.Opened.DisputeID
				if want.errors%2 == 1 {
					if _, err := f.svc.AnswerDispute(ctx, operatorActor, id, ledger.Idem{}, "refunded by the merchant"); err != nil {
						t.Fatal(err)
					}
					if _, err := f.svc.ResolveDispute(ctx, operatorActor, id, ledger.Idem{}, reserves.OutcomeUpheld, "refunded"); err != nil {
						t.Fatal(err)
					}
					want.upheld++
				} else if _, err := f.svc.WithdrawDispute(ctx, f.payer.actor(), id, ledger.Idem{}, "found it"); err != nil {
					t.Fatal(err)
				}
			}
			if active%11 == 5 && i == 0 {
				if _, err := f.svc.OpenDispute(ctx, f.payer.actor(), f.payer.id, ledger.Idem{}, ledger.DisputeRequest{Kind: domain.DisputeComplaint,
					Subject: "statement hard to read"}); err != nil {
					t.Fatal(err)
				}
				want.disputes++
			}
			if lost {
				v, err := f.svc.ReportLossCase(ctx, f.payer.actor(), f.payer.id, ledger.Idem{}, ledger.LossRequest{PaymentIDs: []string{pc.PaymentID}})
				if err != nil {
					t.Fatal(err)
				}
				want.losses++
				want.lossSum = want.lossSum.Add(pc.Amount.Amount)
				lossIDs = append(lossIDs, v.CaseID)
				if v.Refusal != nil {
					want.shortfalls++
					f.topUp(t, "2000.00")
					want.toppedUp = want.toppedUp.Add(d("2000.00"))
					if v, err = f.svc.SettleLoss(ctx, financeActor, v.CaseID, ledger.Idem{}); err != nil || v.Advance != "paid" {
						t.Fatalf("advance after a top-up: %+v %v", v, err)
					}
				}
				want.comps++
				want.compSum = want.compSum.Add(pc.Amount.Amount)
				liable := domain.LiableInstitution
				if len(lossIDs)%2 == 0 {
					liable = domain.LiableCustomer
				}
				if _, err := f.svc.DetermineLiability(ctx, complianceActor, v.CaseID, ledger.Idem{}, reserves.Finding{Liable: liable,
					Reasons: []string{"finding"}, Evidence: []string{"evidence-ref"}}); err != nil {
					t.Fatal(err)
				}
				if liable == domain.LiableCustomer && pc.VerificationLevel != domain.LevelSingleFactor {
					if _, err := f.svc.SettleLoss(ctx, financeActor, v.CaseID, ledger.Idem{}); err != nil {
						t.Fatal(err)
					}
					want.recoveries++
					want.recoveredSum = want.recoveredSum.Add(pc.Amount.Amount)
				}
				if _, err := f.svc.CloseLossCase(ctx, complianceActor, v.CaseID, ledger.Idem{}); err != nil {
					t.Fatal(err)
				}
			}
		}
		f.e.clock.Advance(24 * time.Hour)
		closeDay(day)
	}
	// A payment of the next year is in neither the figures nor the closes.
	f.e.clock.Advance(time.Date(2027, 1, 1, 10, 0, 0, 0, loc).Sub(f.e.clock.Now()))
	f.payer.pay(t, f.svc, f.payee.id, "5.00", domain.LevelSingleFactor)

	rep, err := f.svc.AnnualReport(ctx, staffActor(staffkeys.RoleRegulator), 2026)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Currencies) != 1 {
		t.Fatalf("currencies %+v", rep.Currencies)
	}
	c := rep.Currencies[0]
	fees, volume := decimal.Zero, decimal.Zero
	for _, v := range want.feesByDay {
		fees = fees.Add(v)
	}
	for _, v := range want.volumeByDay {
		volume = volume.Add(v)
	}
	balance := want.provisioned.Add(want.toppedUp).Sub(want.compSum).Add(want.recoveredSum)
	for _, chk := range []struct {
		what      string
		got, want string
	}{
		{"loss count", itoa(c.CustomerLosses.Count), itoa(want.losses)},
		{"loss amount", c.CustomerLosses.Amount, want.lossSum.StringFixed(2)},
		{"compensation count", itoa(c.CompensationPaid.Count), itoa(want.comps)},
		{"compensation amount", c.CompensationPaid.Amount, want.compSum.StringFixed(2)},
		{"reserve used", c.ReserveUsed, want.compSum.StringFixed(2)},
		{"recovered count", itoa(c.Recovered.Count), itoa(want.recoveries)},
		{"recovered amount", c.Recovered.Amount, want.recoveredSum.StringFixed(2)},
		{"provisioned", c.ReserveProvisioned, want.provisioned.StringFixed(2)},
		{"topped up", c.ReserveToppedUp, want.toppedUp.StringFixed(2)},
		{"released", c.ReserveReleased, "0.00"},
		{"balance at year end", c.ReserveBalanceYearEnd, balance.StringFixed(2)},
		{"fee income", c.FeeIncome, fees.StringFixed(2)},
		{"payment volume", c.PaymentVolume, volume.StringFixed(2)},
		{"losses reported", itoa(rep.RiskEvents.ByKind[reserves.RiskLossReported]), itoa(want.losses)},
		{"shortfalls", itoa(rep.RiskEvents.ByKind[reserves.RiskReserveShortage]), itoa(want.shortfalls)},
		{"cases behind the losses", itoa(len(c.CustomerLosses.Cases)), itoa(len(lossIDs))},
		{"disputes opened", itoa(rep.Disputes.Opened), itoa(want.disputes)},
		{"disputes about errors", itoa(rep.Disputes.Errors), itoa(want.errors)},
		{"complaints", itoa(rep.Disputes.Complaints), itoa(want.disputes - want.errors)},
		{"disputes upheld", itoa(rep.Disputes.Resolved[reserves.OutcomeUpheld]), itoa(want.upheld)},
		{"disputes withdrawn", itoa(rep.Disputes.Resolved[reserves.OutcomeWithdrawn]), itoa(want.errors - want.upheld)},
	} {
		if chk.got != chk.want {
			t.Errorf("%s: report %s, test %s", chk.what, chk.got, chk.want)
		}
	}
	if want.shortfalls == 0 || want.recoveries < 2 || want.losses < 8 || want.upheld < 2 || want.disputes-want.errors < 2 {
		t.Fatalf("the year did not exercise everything: %d losses, %d shortfalls, %d recoveries, %d disputes (%d upheld)",
			want.losses, want.shortfalls, want.recoveries, want.disputes, want.upheld)
	}
	if rep.Log.FirstPosition == 0 || rep.Log.LastPosition <= rep.Log.FirstPosition || rep.Log.Through <= rep.Log.LastPosition {
		t.Errorf("log range %+v", rep.Log)
	}
	// The year's Merkle root is the one over its events' hashes in log
	// order, as anyone holding the log computes it.
	var yearHashes []merkle.Hash
	for _, e := range readAll(t, f.e.store) {
		if e.OccurredAt.In(loc).Year() == 2026 {
			yearHashes = append(yearHashes, e.Hash)
		}
	}
	if root := merkle.Root(yearHashes); rep.Log.MerkleRoot != hex.EncodeToString(root[:]) || int64(len(yearHashes)) != rep.Log.Events {
		t.Errorf("merkle root %s of %d events, want %x of %d", rep.Log.MerkleRoot, rep.Log.Events, root, len(yearHashes))
	}

	// The reconciliation of the log against the projection finds nothing.
	if err := f.e.rm.WaitFor(ctx, f.e.head(t)); err != nil {
		t.Fatal(err)
	}
	rows, cp, err := f.e.rm.Accounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	books, err := reserves.FoldLog(ctx, f.e.store, loc, cp, nil)
	if err != nil {
		t.Fatal(err)
	}
	projected := map[string]reserves.AccountTotals{}
	for id, r := range rows {
		projected[id] = reserves.AccountTotals{Currency: r.Currency, Debits: r.Debits, Credits: r.Credits}
	}
	if mm := books.Reconcile(projected, map[string]reserves.Policy{policy.Version: policy}); len(mm) != 0 {
		t.Fatalf("mismatches: %v", mm)
	}
	// One altered row is named.
	payer := projected[f.payer.id]
	payer.Credits = payer.Credits.Add(d("0.01"))
	projected[f.payer.id] = payer
	mm := books.Reconcile(projected, nil)
	if len(mm) == 0 || mm[0].Check != reserves.CheckAccount || mm[0].Subject != f.payer.id {
		t.Fatalf("altered row: %v", mm)
	}
	// An empty year is well formed.
	empty, err := f.svc.AnnualReport(ctx, financeActor, 2024)
	if err != nil || empty.Currencies[0].CustomerLosses.Count != 0 || empty.Currencies[0].ReserveBalanceYearEnd != "0.00" || empty.RiskEvents.Total != 0 ||
		empty.Disputes.Opened != 0 || len(empty.Disputes.Resolved) != 4 {
		t.Fatalf("empty year: %+v %v", empty, err)
	}
}

func itoa(n int) string { return decimal.NewFromInt(int64(n)).String() }
