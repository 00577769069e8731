package httpapi_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/payledger/payledger/checkpoints"
	"github.com/payledger/payledger/ledger/staffkeys"
)

// TestOpenAPIProofs: a holder's event proves to be in the signed log with
// only the public key; a consistency proof links an older checkpoint to
// the latest; the proofs name no account, and bad or uncovered requests
// get typed problems.
func TestOpenAPIProofs(t *testing.T) {
	ctx := context.Background()
	clk := &clock{now: time.Date(2026, 3, 2, 1, 0, 5, 0, time.UTC)}
	st := newStack(t, clk)
	a := newAPI(t, st.URL)
	operator, funding := st.key(t, staffkeys.RoleOperator), st.key(t, staffkeys.RoleFunding)
	const password = "correct horse battery staple"

	// Without a signing key there is nothing to prove against.
	a.problem(call{method: "GET", path: "/v1/proofs/consistency?from=1", status: 404}, "not_found", nil)

	r := a.do(call{method: "POST", path: "/v1/accounts", token: operator, status: 201,
		body: obj{"holder_name": "Li Wei", "currency": "CNY", "identity_check": checked, "factor": obj{"method": "password", "password": password}}})
	id, pw := r.str("id"), r.obj("first_factor")["factor_id"].(string)
	deposit := func(n int) {
		for i := 0; i < n; i++ {
			a.do(call{method: "POST", path: "/v1/accounts/" + id + "/deposits", token: funding, status: 201,
				body: obj{"amount": "10.00", "reference": fmt.Sprintf("bank-%d-%d", clk.Now().UnixNano(), i)}})
		}
	}
	deposit(3)
	_, priv, err := ed25519.GenerateKey(strings.NewReader(strings.Repeat("proof key seed ", 8)))
	if err != nil {
		t.Fatal(err)
	}
	pub := priv.Public().(ed25519.PublicKey)
	signer, err := checkpoints.NewSigner(st.store, priv, t.TempDir(), "", clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	first, err := signer.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	deposit(5)
	latest, err := signer.Checkpoint(ctx)
	if err != nil || latest.Size <= first.Size {
		t.Fatalf("second checkpoint %+v after %+v: %v", latest, first, err)
	}
	st.api.SetCheckpoints(signer)

	tok := a.do(call{method: "POST", path: "/v1/accounts/" + id + "/sessions", status: 201,
		body: obj{"device_id": "laptop-1", "proofs": []any{obj{"factor_id": pw, "password": password}}}}).str("token")
	ops := a.do(call{method: "GET", path: "/v1/accounts/" + id + "/operations", token: tok, status: 200})
	op := ops.list("operations")[1].(map[string]any)
	pos := int64(op["position"].(float64))

	verify := func(r reply) checkpoints.Proof {
		t.Helper()
		raw, err := json.Marshal(r.body)
		if err != nil {
			t.Fatal(err)
		}
		var p checkpoints.Proof
		if err := json.Unmarshal(raw, &p); err != nil {
			t.Fatal(err)
		}
		if err := p.Verify(pub); err != nil {
			t.Fatalf("%s proof: %v", p.Kind, err)
		}
		for _, leak := range []string{id, "Li Wei", "stream", "payload"} {
			if strings.Contains(string(raw), leak) {
				t.Errorf("the proof shows %q: %s", leak, raw)
			}
		}
		return p
	}
	inc := verify(a.do(call{method: "GET", path: fmt.Sprint("/v1/proofs/events/", pos), status: 200}))
	want(t, "event_hash", inc.EventHash, op["hash"].(string))
	want(t, "checkpoint", inc.Checkpoint.Size, latest.Size)
	old := verify(a.do(call{method: "GET", path: fmt.Sprintf("/v1/proofs/events/%d?size=%d", pos, first.Size), token: tok, status: 200}))
	want(t, "older checkpoint", old.Checkpoint.Size, first.Size)
	cons := verify(a.do(call{method: "GET", path: fmt.Sprint("/v1/proofs/consistency?from=", first.Size), status: 200}))
	want(t, "from", cons.From.Size, first.Size)
	want(t, "to", cons.Checkpoint.Size, latest.Size)
	verify(a.do(call{method: "GET", path: fmt.Sprintf("/v1/proofs/consistency?from=%d&to=%d", first.Size, latest.Size), status: 200}))

	// A proof with the hash of another event fails.
	inc.EventHash = op["prev_hash"].(string)
	if inc.Verify(pub) == nil {
		t.Error("a proof verified for another event's hash")
	}

	a.problem(call{method: "GET", path: fmt.Sprint("/v1/proofs/events/", latest.Size+1), status: 404}, "not_found", nil)
	a.problem(call{method: "GET", path: fmt.Sprintf("/v1/proofs/events/%d?size=%d", pos, first.Size+1), status: 404}, "not_found", nil)
	a.problem(call{method: "GET", path: fmt.Sprint("/v1/proofs/consistency?from=", first.Size+1), status: 404}, "not_found", nil)
	a.problem(call{method: "GET", path: fmt.Sprintf("/v1/proofs/consistency?from=%d&to=%d", latest.Size, first.Size), status: 404}, "not_found", nil)
	a.problem(call{method: "GET", path: "/v1/proofs/events/0", status: 400, docRejects: true}, "invalid_request", nil)
	a.problem(call{method: "GET", path: "/v1/proofs/events/first", status: 400, docRejects: true}, "invalid_request", nil)
	a.problem(call{method: "GET", path: "/v1/proofs/consistency", status: 400, docRejects: true}, "invalid_request", nil)
	a.problem(call{method: "GET", path: "/v1/proofs/consistency?from=x", status: 400, docRejects: true}, "invalid_request", nil)
	a.problem(call{method: "GET", path: "/v1/proofs/consistency?from=1", token: "pls_not_a_token", status: 401}, "unauthenticated", nil)
}
