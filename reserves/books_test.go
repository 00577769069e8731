package reserves

import (
	"testing"
	"time"

	"github.com/payledger/payledger/domain"
)

// TestReconcileCases: the books name a case paid more than its loss, one
// that recovered more than it paid, and an advance after liability was
// determined; a sound case gives nothing.
func TestReconcileCases(t *testing.T) {
	loc := time.FixedZone("CST", 8*3600)
	at := time.Date(2026, 5, 1, 12, 0, 0, 0, loc)
	reserve := domain.ReserveAccountID(domain.CNY)
	paid := func(id, kind, amount string) domain.Event {
		return domain.CompensationPaid{CaseID: id, Kind: kind, DebitAccount: reserve, CreditAccount: "H", Amount: cny(amount)}
	}
	evs := []domain.Event{
		domain.ReserveAdjusted{AdjustmentID: "A", Kind: domain.AdjustTopUp, DebitAccount: domain.OwnFundsAccountID(domain.CNY), CreditAccount: reserve, Amount: cny("1000.00"), Reason: "x"},
		domain.LossReported{CaseID: "OVERPAID", Loss: cny("100.00")},
		paid("OVERPAID", domain.CompensationAdvance, "100.00"),
		paid("OVERPAID", domain.CompensationSettlement, "50.00"),
		domain.LossReported{CaseID: "LATE", Loss: cny("30.00")},
		domain.LiabilityDetermined{CaseID: "LATE", Liable: domain.LiableCustomer},
		paid("LATE", domain.CompensationAdvance, "30.00"),
		domain.LossReported{CaseID: "RECOVERED", Loss: cny("20.00")},
		paid("RECOVERED", domain.CompensationAdvance, "20.00"),
		domain.CompensationRecovered{CaseID: "RECOVERED", DebitAccount: "H", CreditAccount: reserve, Amount: cny("20.00")},
		domain.CompensationRecovered{CaseID: "RECOVERED", DebitAccount: "H", CreditAccount: reserve, Amount: cny("0.01")},
		domain.LossReported{CaseID: "SOUND", Loss: cny("10.00")},
		paid("SOUND", domain.CompensationAdvance, "10.00"),
		domain.LiabilityDetermined{CaseID: "SOUND", Liable: domain.LiableInstitution},
	}
	b := NewBooks(loc, nil)
	for i, e := range evs {
		if err := b.Add(Recorded{Event: e, Position: int64(i + 1), OccurredAt: at}); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]string{}
	for _, m := range b.reconcileCases() {
		got[m.Subject] = m.Detail
	}
	want := map[string]string{
		"OVERPAID":  "the case was paid more than its loss",
		"LATE":      "an advance was paid after liability was determined",
		"RECOVERED": "more was recovered from the holder than the case paid",
	}
	if len(got) != len(want) {
		t.Fatalf("mismatches %v, want %v", got, want)
	}
	for id, d := range want {
		if got[id] != d {
			t.Errorf("%s: %q, want %q", id, got[id], d)
		}
	}
}
