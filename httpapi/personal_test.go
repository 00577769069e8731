package httpapi_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/ledger/staffkeys"
)

// TestOpenAPIPersonalData walks R20 through the API, every request and
// reply checked against the document: the holder exports their data; no
// one else but compliance reads it; compliance erases it only once the
// account is closed and its operations' five years are over, once; and
// afterwards the data reads "[erased]" while amounts, balances, the
// statement and the log's hashes are what they were.
func TestOpenAPIPersonalData(t *testing.T) {
	ctx := context.Background()
	clk := &clock{now: time.Date(2026, 3, 2, 1, 0, 5, 0, time.UTC)}
	st := newStack(t, clk)
	a := newAPI(t, st.URL)
	operator, funding := st.key(t, staffkeys.RoleOperator), st.key(t, staffkeys.RoleFunding)
	finance, compliance := st.key(t, staffkeys.RoleFinance), st.key(t, staffkeys.RoleCompliance)
	auditor, regulator := st.key(t, staffkeys.RoleAuditor), st.key(t, staffkeys.RoleRegulator)
	const password = "correct horse battery staple"
	const name, description = "Ouyang Xiaoming", "dumplings for Xiaoming's birthday"

	open := func(name string) (id, pw, tok string) {
		t.Helper()
		r := a.do(call{method: "POST", path: "/v1/accounts", token: operator, status: 201,
			body: obj{"holder_name": name, "currency": "CNY", "identity_check": checked, "factor": obj{"method": "password", "password": password}}})
		id, pw = r.str("id"), r.obj("first_factor")["factor_id"].(string)
		tok = a.do(call{method: "POST", path: "/v1/accounts/" + id + "/sessions", status: 201,
			body: obj{"device_id": "laptop-1", "proofs": []any{obj{"factor_id": pw, "password": password}}}}).str("token")
		return id, pw, tok
	}
	alice, alicePW, aliceTok := open(name)
	bob, _, bobTok := open("Wang Fang")
	acct := "/v1/accounts/" + alice
	a.do(call{method: "POST", path: acct + "/deposits", token: funding, status: 201, body: obj{"amount": "12.50", "reference": "bank-transfer-1"}})
	pid := a.do(call{method: "POST", path: acct + "/payments", token: aliceTok, status: 201,
		body: obj{"payee_account_id": bob, "amount": "12.50", "currency": "CNY", "channel": "app", "terminal": "desktop", "device_id": "laptop-1",
			"description": description}}).str("payment_id")
	a.do(call{method: "POST", path: acct + "/payments/" + pid + "/confirm", token: aliceTok, status: 200,
		body: obj{"device_id": "laptop-1", "proofs": []any{obj{"factor_id": alicePW, "password": password}}}})

	// The log holds the name and the description sealed, never in clear.
	evs, err := st.store.ReadStream(ctx, domain.AccountStream(alice), 1, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if bytes.Contains(e.Payload, []byte(name)) || bytes.Contains(e.Payload, []byte("Xiaoming")) {
			t.Fatalf("%s holds personal data in clear: %s", e.Type, e.Payload)
		}
	}

	// The holder's export: the name, and every event with personal data.
	x := a.do(call{method: "GET", path: acct + "/personal-data", token: aliceTok, status: 200})
	want(t, "exported name", x.str("holder_name"), name)
	want(t, "erased before", x.body["erased"], any(false))
	found := map[string]string{}
	for _, r := range x.list("records") {
		rec := r.(map[string]any)
		for k, v := range rec["fields"].(map[string]any) {
			found[rec["type"].(string)+"."+k] = v.(string)
		}
	}
	want(t, "opening's name", found["AccountOpened.holder_name"], name)
	want(t, "payment's description", found["PaymentInitiated.description"], description)
	want(t, "confirmation's description", found["PaymentConfirmed.description"], description)
	// Who else may read it: compliance (recorded), nobody else.
	a.problem(call{method: "GET", path: acct + "/personal-data", status: 401, docRejects: true}, "unauthenticated", nil)
	a.problem(call{method: "GET", path: acct + "/personal-data", token: bobTok, status: 403}, "forbidden", nil)
	for _, k := range []string{operator, funding, finance, auditor, regulator} {
		a.problem(call{method: "GET", path: acct + "/personal-data", token: k, status: 403}, "forbidden", nil)
	}
	before := st.head(t)
	want(t, "compliance's export", a.do(call{method: "GET", path: acct + "/personal-data", token: compliance, status: 200}).str("holder_name"), name)
	if st.head(t) != before+1 {
		t.Errorf("compliance's export was not recorded: head %d, was %d", st.head(t), before)
	}

	// Erasure: compliance only, and not while the account is open.
	erase := call{method: "POST", path: acct + "/erasure", token: compliance, key: "erase-1", status: 200, body: obj{"reference": "dsr-2031-0077"}}
	a.problem(call{method: "POST", path: acct + "/erasure", status: 401, docRejects: true, body: erase.body}, "unauthenticated", nil)
	a.problem(call{method: "POST", path: acct + "/erasure", token: aliceTok, status: 403, docRejects: true, body: erase.body}, "forbidden", nil)
	a.problem(call{method: "POST", path: acct + "/erasure", token: bobTok, status: 403, docRejects: true, body: erase.body}, "forbidden", nil)
	for _, k := range []string{operator, funding, finance, auditor, regulator} {
		a.problem(call{method: "POST", path: acct + "/erasure", token: k, status: 403, body: erase.body}, "forbidden", nil)
	}
	a.problem(call{method: "POST", path: acct + "/erasure", token: compliance, status: 409, body: erase.body}, "personal_data_retained", nil)
	a.problem(call{method: "POST", path: acct + "/erasure", token: compliance, status: 400, docRejects: true,
		body: obj{"reference": "request of " + name}}, "invalid_request", obj{"field": "reference"})
	a.do(call{method: "POST", path: acct + "/close", token: aliceTok, status: 200, body: obj{}})
	closedAt := clk.Peek()
	head := st.head(t)
	r := a.problem(call{method: "POST", path: acct + "/erasure", token: compliance, status: 409, body: erase.body}, "personal_data_retained", nil)
	until, err := time.Parse(time.RFC3339, r.str("retained_until"))
	if err != nil || until.Before(closedAt.AddDate(5, 0, -1)) || until.After(closedAt.AddDate(5, 0, 1)) {
		t.Errorf("retained_until %q (%v), want five years after the close at %s", r.str("retained_until"), err, closedAt)
	}
	if st.head(t) != head {
		t.Errorf("a refused erasure moved the log from %d to %d", head, st.head(t))
	}
	hashes := func() []string {
		var out []string
		ops := a.do(call{method: "GET", path: acct + "/operations", token: compliance, status: 200})
		for _, o := range ops.list("operations") {
			out = append(out, o.(map[string]any)["hash"].(string))
		}
		return out
	}
	before5y := hashes()

	// Five years and a day later the data may go.
	clk.Advance(5*365*24*time.Hour + 3*24*time.Hour)
	e := a.do(erase)
	want(t, "erased", e.body["erased"], any(true))
	want(t, "reference", e.str("reference"), "dsr-2031-0077")
	replay := a.do(erase)
	want(t, "replayed erasure", replay.header.Get("Idempotent-Replayed"), "true")
	a.problem(call{method: "POST", path: acct + "/erasure", token: compliance, key: "erase-2", status: 409, body: erase.body}, "personal_data_erased", nil)
	// Another compliance key's request with the same Idempotency-Key is
	// its own request, not a replay of the first.
	compliance2 := st.key(t, staffkeys.RoleCompliance)
	a.problem(call{method: "POST", path: acct + "/erasure", token: compliance2, key: "erase-1", status: 409, body: erase.body}, "personal_data_erased", nil)

	// The log is unchanged but for the erasure's event, which carries no
	// personal data.
	after := hashes()
	if len(after) != len(before5y)+1 || strings.Join(after[:len(before5y)], ",") != strings.Join(before5y, ",") {
		t.Fatalf("hashes before the erasure %v, after %v", before5y, after)
	}
	ops := a.do(call{method: "GET", path: acct + "/operations", token: compliance, status: 200}).list("operations")
	last := ops[len(ops)-1].(map[string]any)
	want(t, "last event", last["type"], any(domain.TypePersonalDataErased))
	for _, o := range ops {
		p := o.(map[string]any)["payload"].(map[string]any)
		for _, k := range []string{"holder_name", "description"} {
			if v, ok := p[k]; ok && v != domain.ErasedText {
				t.Errorf("%s.%s reads %v after the erasure", o.(map[string]any)["type"], k, v)
			}
		}
	}

	// Reads show the data erased; amounts are what they were.
	x = a.do(call{method: "GET", path: acct + "/personal-data", token: compliance, status: 200})
	want(t, "erased after", x.body["erased"], any(true))
	want(t, "exported name after", x.str("holder_name"), domain.ErasedText)
	for _, r := range x.list("records") {
		for k, v := range r.(map[string]any)["fields"].(map[string]any) {
			if v != domain.ErasedText {
				t.Errorf("export after erasure: %s = %v", k, v)
			}
		}
	}
	want(t, "account's name", a.do(call{method: "GET", path: acct, token: compliance, status: 200}).str("holder_name"), domain.ErasedText)
	since := "?from=" + closedAt.AddDate(-1, 0, 0).Format(time.RFC3339)
	stmt := a.do(call{method: "GET", path: "/v1/accounts/" + bob + "/statement" + since, token: compliance, status: 200}).list("entries")
	if len(stmt) != 1 {
		t.Fatalf("bob's statement: %v", stmt)
	}
	entry := stmt[0].(map[string]any)
	want(t, "received amount", entry["amount"], any("12.50"))
	want(t, "payer's description", entry["description"], any(domain.ErasedText))
	want(t, "bob's balance", a.do(call{method: "GET", path: "/v1/accounts/" + bob + "/balance", token: compliance, status: 200}).str("available"), "12.50")
	want(t, "alice's balance", a.do(call{method: "GET", path: acct + "/balance", token: compliance, status: 200}).str("available"), "0.00")
	aliceStmt := a.do(call{method: "GET", path: acct + "/statement" + since, token: compliance, status: 200}).list("entries")
	if len(aliceStmt) != 2 {
		t.Fatalf("alice's statement: %v", aliceStmt)
	}

}
