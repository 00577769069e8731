package httpapi_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/payledger/payledger/ledger/staffkeys"
)

// TestPersonalDataExportWithholdsStaffReasons: the operations log shows a
// holder "[withheld]" for the reason of an action a staff key made (it may
// name an investigation the holder must not be tipped off about); the
// holder's export of their personal data must not show it either.
func TestPersonalDataExportWithholdsStaffReasons(t *testing.T) {
	clk := &clock{now: time.Date(2026, 3, 2, 1, 0, 5, 0, time.UTC)}
	st := newStack(t, clk)
	a := newAPI(t, st.URL)
	operator, compliance := st.key(t, staffkeys.RoleOperator), st.key(t, staffkeys.RoleCompliance)
	const password = "correct horse battery staple"
	const secret = "suspected mule account, STR-2026-0117 filed"
	r := a.do(call{method: "POST", path: "/v1/accounts", token: operator, status: 201,
		body: obj{"holder_name": "Li Wei", "currency": "CNY", "identity_check": checked, "factor": obj{"method": "password", "password": password}}})
	id, pw := r.str("id"), r.obj("first_factor")["factor_id"].(string)
	tok := a.do(call{method: "POST", path: "/v1/accounts/" + id + "/sessions", status: 201,
		body: obj{"device_id": "laptop-1", "proofs": []any{obj{"factor_id": pw, "password": password}}}}).str("token")
	a.do(call{method: "POST", path: "/v1/accounts/" + id + "/suspend", token: operator, status: 200, body: obj{"reason": secret}})

	ops := a.do(call{method: "GET", path: "/v1/accounts/" + id + "/operations", token: tok, status: 200})
	if strings.Contains(dump(ops), secret) {
		t.Fatalf("the operations log shows the holder the operator's reason")
	}
	if x := a.do(call{method: "GET", path: "/v1/accounts/" + id + "/personal-data", token: tok, status: 200}); strings.Contains(dump(x), secret) {
		t.Errorf("the holder's export shows the operator's reason %q, which the operations log withholds", secret)
	}
	if x := a.do(call{method: "GET", path: "/v1/accounts/" + id + "/personal-data", token: compliance, status: 200}); !strings.Contains(dump(x), secret) {
		t.Errorf("compliance's export lost the operator's reason: %s", dump(x))
	}
	// The operator's identity check (sealed, R20) is staff-only too.
	if strings.Contains(dump(ops), checked) {
		t.Errorf("the operations log shows the holder the identity check %q", checked)
	}
	if x := a.do(call{method: "GET", path: "/v1/accounts/" + id + "/personal-data", token: tok, status: 200}); strings.Contains(dump(x), "identity_check") {
		t.Errorf("the holder's export shows the operator's identity check: %s", dump(x))
	}
	if x := a.do(call{method: "GET", path: "/v1/accounts/" + id + "/personal-data", token: compliance, status: 200}); !strings.Contains(dump(x), `"identity_check":"`+checked+`"`) {
		t.Errorf("compliance's export does not show the identity check opened: %s", dump(x))
	}
}

func dump(r reply) string {
	b, _ := json.Marshal(r.body)
	return string(b)
}
