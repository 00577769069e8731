package reserves

import (
	"bytes"
	"encoding/csv"
	"strings"
	"testing"
	"time"

	"github.com/payledger/payledger/domain"
)

func TestRenderings(t *testing.T) {
	loc := time.FixedZone("CST", 8*3600)
	b := NewBooks(loc, nil)
	at := time.Date(2026, 5, 1, 12, 0, 0, 0, loc)
	evs := []domain.Event{
		domain.ReserveAdjusted{AdjustmentID: "ADJ1", Kind: domain.AdjustTopUp, DebitAccount: domain.OwnFundsAccountID(domain.CNY),
			CreditAccount: domain.ReserveAccountID(domain.CNY), Amount: cny("500.00"), Reason: "x"},
		domain.LossReported{CaseID: "CASE1", AccountID: "HOLDER-SECRET-ID", Loss: cny("80.00"), Description: "Li Wei's phone"},
		domain.CompensationPaid{CaseID: "CASE1", Kind: domain.CompensationAdvance, DebitAccount: domain.ReserveAccountID(domain.CNY),
			CreditAccount: "HOLDER-SECRET-ID", Amount: cny("80.00")},
	}
	for i, e := range evs {
		if err := b.Add(Recorded{Event: e, Position: int64(i + 1), OccurredAt: at}); err != nil {
			t.Fatal(err)
		}
	}
	r := b.Annual(2026)
	var c bytes.Buffer
	if err := WriteCSV(&c, r); err != nil {
		t.Fatal(err)
	}
	csvText := c.String()
	rows, err := csv.NewReader(strings.NewReader(csvText)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string][]string{}
	for _, row := range rows {
		found[row[2]] = row
	}
	if got := found["compensation_paid"]; got[3] != "1" || got[4] != "80.00" || got[5] != "CASE1" {
		t.Errorf("compensation row %v", got)
	}
	if got := found["reserve_balance_year_end"]; got[4] != "420.00" {
		t.Errorf("balance row %v", got)
	}
	var staff, public bytes.Buffer
	if err := WriteHTML(&staff, r, HTMLOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := WriteHTML(&public, r, HTMLOptions{Public: true, Published: "2027-01-15"}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`data-figure="compensation_amount">80.00<`, `data-figure="reserve_balance">420.00<`, `<svg`} {
		if !strings.Contains(public.String(), s) {
			t.Errorf("public page lacks %s", s)
		}
	}
	if !strings.Contains(staff.String(), "CASE1") || strings.Contains(public.String(), "CASE1") {
		t.Errorf("cases: staff page has them %v, public page %v", strings.Contains(staff.String(), "CASE1"), strings.Contains(public.String(), "CASE1"))
	}
	for _, secret := range []string{"HOLDER-SECRET-ID", "Li Wei"} {
		if strings.Contains(staff.String()+public.String()+csvText, secret) {
			t.Errorf("a report carries %q", secret)
		}
	}
}
