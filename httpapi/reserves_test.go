package httpapi_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/payledger/payledger/ledger/staffkeys"
)

// TestReserveMovements: finance reads the reserve's statement (each
// movement with the balance after it); a holder and the regulator cannot.
func TestReserveMovements(t *testing.T) {
	clk := &clock{now: time.Date(2026, 3, 2, 1, 0, 0, 0, time.UTC)}
	st := newStack(t, clk)
	finance := st.key(t, staffkeys.RoleFinance)
	for _, amount := range []string{"300.00", "200.00"} {
		if status, body := hit(t, st.URL, "POST", "/v1/reserve/adjustments", finance,
			map[string]any{"kind": "top_up", "amount": amount, "currency": "CNY", "reason": "opening"}); status != http.StatusCreated {
			t.Fatalf("top up: %d %v", status, body)
		}
	}
	if status, body := hit(t, st.URL, "POST", "/v1/reserve/adjustments", finance,
		map[string]any{"kind": "release", "amount": "50.00", "currency": "CNY", "reason": "surplus"}); status != http.StatusCreated {
		t.Fatalf("release: %d %v", status, body)
	}
	var entries []any
	for i := 0; i < 50; i++ { // the projection applies within milliseconds
		_, body := hit(t, st.URL, "GET", "/v1/reserve/movements?currency=CNY", finance, nil)
		if entries, _ = body["entries"].([]any); len(entries) == 3 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(entries) != 3 {
		t.Fatalf("movements %v", entries)
	}
	want := []struct{ direction, amount, after string }{{"credit", "300.00", "300.00"}, {"credit", "200.00", "500.00"}, {"debit", "50.00", "450.00"}}
	for i, w := range want {
		e := entries[i].(map[string]any)
		if e["type"] != "ReserveAdjusted" || e["direction"] != w.direction || e["amount"] != w.amount || e["balance_after"] != w.after {
			t.Errorf("movement %d: %v, want %+v", i, e, w)
		}
	}
	for _, role := range []staffkeys.Role{staffkeys.RoleRegulator, staffkeys.RoleOperator} {
		if status, _ := hit(t, st.URL, "GET", "/v1/reserve/movements", st.key(t, role), nil); status != http.StatusForbidden {
			t.Errorf("%s reads the movements: %d", role, status)
		}
	}
	if status, body := hit(t, st.URL, "GET", "/v1/reserve/movements?currency=XXX", finance, nil); status != http.StatusBadRequest || body["code"] != "invalid_request" {
		t.Errorf("unknown currency: %d %v", status, body)
	}
}
