package httpapi_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/httpapi"
	"github.com/payledger/payledger/internal/ratelimit"
	"github.com/payledger/payledger/ledger/staffkeys"
)

// hit sends one request with an optional bearer token and returns the
// status and decoded body.
func hit(t *testing.T, base, method, path, token string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	ct := resp.Header.Get("Content-Type")
	if len(bytes.TrimSpace(raw)) > 0 && json.Unmarshal(raw, &out) != nil && !strings.HasPrefix(ct, "text/plain") &&
		!(resp.StatusCode == http.StatusOK && strings.HasPrefix(ct, "text/html")) {
		t.Fatalf("%s %s: reply is not JSON: %s", method, path, raw)
	}
	return resp.StatusCode, out
}

// fixture is a stack with two operator-opened accounts and their holders.
type fixture struct {
	st       *stack
	clk      *clock
	operator string
	a, b     string // account ids
	password string
	pwA, pwB string // first factor ids
}

const testPassword = "correct horse battery staple"

func newFixture(t *testing.T) *fixture {
	t.Helper()
	clk := &clock{now: time.Date(2026, 3, 10, 1, 0, 0, 0, time.UTC)}
	st := newStack(t, clk)
	f := &fixture{st: st, clk: clk, operator: st.key(t, staffkeys.RoleOperator), password: testPassword}
	f.a, f.pwA = f.open(t, "Li Wei")
	f.b, f.pwB = f.open(t, "Zhang Min")
	return f
}

func (f *fixture) open(t *testing.T, name string) (id, factor string) {
	t.Helper()
	status, body := hit(t, f.st.URL, "POST", "/v1/accounts", f.operator, map[string]any{"holder_name": name, "currency": "CNY",
		"identity_check": "branch-" + name, "factor": map[string]any{"method": "password", "password": testPassword}})
	if status != http.StatusCreated {
		t.Fatalf("open %s: %d %v", name, status, body)
	}
	first, _ := body["first_factor"].(map[string]any)
	factor, _ = first["factor_id"].(string)
	id, _ = body["id"].(string)
	return id, factor
}

func (f *fixture) login(t *testing.T, id, factor string) string {
	t.Helper()
	status, body := hit(t, f.st.URL, "POST", "/v1/accounts/"+id+"/sessions", "", map[string]any{"device_id": "laptop-1",
		"proofs": []any{map[string]any{"factor_id": factor, "password": testPassword}}})
	if status != http.StatusCreated {
		t.Fatalf("login %s: %d %v", id, status, body)
	}
	tok, _ := body["token"].(string)
	return tok
}

// Cells of the access matrix: the request passes access control (any
// status but 401 and 403), or is refused with 401 or 403.
const (
	ok   = 0
	u401 = http.StatusUnauthorized
	f403 = http.StatusForbidden
)

// columns of the matrix, in the order the cells of accessMatrix list them.
var columns = []string{"none", "logged_out", "other_holder", "own", "operator", "funding", "finance", "compliance",
	"regulator", "auditor", "revoked_key", "expired"}

// accessMatrix is who may call each route on account A: written out by
// hand from the issue, not derived from the code it checks.
var accessMatrix = map[string][12]int{
	//                                          none logout other own  oper fund fin  comp reg  aud  rkey exp
	"GET /v1/openapi.json":                             {ok, u401, ok, ok, ok, ok, ok, ok, ok, ok, u401, u401},
	"GET /healthz":                                     {ok, u401, ok, ok, ok, ok, ok, ok, ok, ok, u401, u401},
	"GET /metrics":                                     {u401, u401, f403, f403, ok, ok, ok, ok, ok, ok, u401, u401},
	"POST /v1/accounts":                                {ok, u401, f403, f403, ok, f403, f403, f403, f403, f403, u401, u401},
	"GET /v1/accounts/{id}":                            {u401, u401, f403, ok, ok, f403, f403, ok, f403, ok, u401, u401},
	"POST /v1/accounts/{id}/factors":                   {u401, u401, f403, ok, ok, f403, f403, f403, f403, f403, u401, u401},
	"POST /v1/accounts/{id}/factors/{fid}/revoke":      {u401, u401, f403, ok, f403, f403, f403, f403, f403, f403, u401, u401},
	"POST /v1/accounts/{id}/factors/{fid}/loss-report": {u401, u401, f403, ok, ok, f403, f403, f403, f403, f403, u401, u401},
	"POST /v1/accounts/{id}/factors/{fid}/reset":       {u401, u401, f403, ok, f403, f403, f403, f403, f403, f403, u401, u401},
	"POST /v1/accounts/{id}/sessions":                  {ok, u401, f403, ok, f403, f403, f403, f403, f403, f403, u401, u401},
	"DELETE /v1/sessions/current":                      {u401, u401, ok, ok, f403, f403, f403, f403, f403, f403, u401, u401},
	"POST /v1/accounts/{id}/devices":                   {u401, u401, f403, ok, f403, f403, f403, f403, f403, f403, u401, u401},
	"POST /v1/accounts/{id}/devices/{did}/revoke":      {u401, u401, f403, ok, ok, f403, f403, f403, f403, f403, u401, u401},
	"POST /v1/accounts/{id}/unlock":                    {u401, u401, f403, ok, ok, f403, f403, f403, f403, f403, u401, u401},
	"POST /v1/accounts/{id}/bank-account":              {u401, u401, f403, ok, f403, f403, f403, f403, f403, f403, u401, u401},
	"POST /v1/accounts/{id}/deposits":                  {u401, u401, f403, f403, f403, ok, f403, f403, f403, f403, u401, u401},
	"POST /v1/accounts/{id}/payments":                  {u401, u401, f403, ok, f403, f403, f403, f403, f403, f403, u401, u401},
	"POST /v1/accounts/{id}/payments/{pid}/confirm":    {u401, u401, f403, ok, f403, f403, f403, f403, f403, f403, u401, u401},
	"POST /v1/accounts/{id}/withdrawals":               {u401, u401, f403, ok, f403, f403, f403, f403, f403, f403, u401, u401},
	"PUT /v1/accounts/{id}/limits":                     {u401, u401, f403, ok, f403, f403, f403, f403, f403, f403, u401, u401},
	"PUT /v1/accounts/{id}/identity":                   {u401, u401, f403, ok, f403, f403, f403, f403, f403, f403, u401, u401},
	"PUT /v1/accounts/{id}/phone":                      {u401, u401, f403, ok, f403, f403, f403, f403, f403, f403, u401, u401},
	"POST /v1/accounts/{id}/suspend":                   {u401, u401, f403, ok, ok, f403, f403, f403, f403, f403, u401, u401},
	"POST /v1/accounts/{id}/reactivate":                {u401, u401, f403, ok, ok, f403, f403, f403, f403, f403, u401, u401},
	"POST /v1/accounts/{id}/close":                     {u401, u401, f403, ok, ok, f403, f403, f403, f403, f403, u401, u401},
	"GET /v1/accounts/{id}/balance":                    {u401, u401, f403, ok, ok, f403, ok, ok, f403, ok, u401, u401},
	"GET /v1/accounts/{id}/statement":                  {u401, u401, f403, ok, ok, f403, f403, ok, f403, ok, u401, u401},
	"GET /v1/accounts/{id}/operations":                 {u401, u401, f403, ok, ok, f403, f403, ok, f403, ok, u401, u401},
	"POST /v1/accounts/{id}/loss-cases":                {u401, u401, f403, ok, f403, f403, f403, f403, f403, f403, u401, u401},
	// {case} and {dispute} name none of A's: a holder meets them as
	// another's (even to withdraw); ledger.TestLossCaseAccess,
	// ledger.TestDisputeLifecycle and the OpenAPI scenario check a
	// holder's own.
	"GET /v1/loss-cases/{case}":                {u401, u401, f403, f403, f403, f403, ok, ok, f403, ok, u401, u401},
	"POST /v1/loss-cases/{case}/investigation": {u401, u401, f403, f403, f403, f403, f403, ok, f403, f403, u401, u401},
	"POST /v1/loss-cases/{case}/liability":     {u401, u401, f403, f403, f403, f403, f403, ok, f403, f403, u401, u401},
	"POST /v1/loss-cases/{case}/settlement":    {u401, u401, f403, f403, f403, f403, ok, f403, f403, f403, u401, u401},
	"POST /v1/loss-cases/{case}/close":         {u401, u401, f403, f403, f403, f403, ok, ok, f403, f403, u401, u401},
	"GET /v1/reserve":                          {u401, u401, f403, f403, f403, f403, ok, f403, f403, ok, u401, u401},
	"POST /v1/reserve/adjustments":             {u401, u401, f403, f403, f403, f403, ok, f403, f403, f403, u401, u401},
	"POST /v1/reserve/closes":                  {u401, u401, f403, f403, f403, f403, ok, f403, f403, f403, u401, u401},
	"GET /v1/reports/annual/{year}":            {u401, u401, f403, f403, f403, f403, ok, f403, ok, ok, u401, u401},
	"GET /disclosures/{year}":                  {ok, u401, ok, ok, ok, ok, ok, ok, ok, ok, u401, u401},
	"GET /v1/loss-cases":                       {u401, u401, f403, f403, ok, f403, ok, ok, f403, ok, u401, u401},
	"GET /v1/disputes":                         {u401, u401, f403, f403, ok, f403, ok, ok, f403, ok, u401, u401},
	"POST /v1/accounts/{id}/disputes":          {u401, u401, f403, ok, f403, f403, f403, f403, f403, f403, u401, u401},
	"GET /v1/disputes/{dispute}":               {u401, u401, f403, f403, ok, f403, f403, ok, f403, ok, u401, u401},
	"POST /v1/disputes/{dispute}/assignment":   {u401, u401, f403, f403, ok, f403, f403, ok, f403, f403, u401, u401},
	"POST /v1/disputes/{dispute}/answers":      {u401, u401, f403, f403, ok, f403, f403, ok, f403, f403, u401, u401},
	"POST /v1/disputes/{dispute}/resolution":   {u401, u401, f403, f403, ok, f403, f403, ok, f403, f403, u401, u401},
	"POST /v1/disputes/{dispute}/withdrawal":   {u401, u401, f403, f403, f403, f403, f403, f403, f403, f403, u401, u401},
	"GET /v1/reserve/movements":                {u401, u401, f403, f403, f403, f403, ok, f403, f403, ok, u401, u401},
	"GET /v1/proofs/checkpoints/latest":        {ok, u401, ok, ok, ok, ok, ok, ok, ok, ok, u401, u401},
	"GET /v1/proofs/events/{position}":         {ok, u401, ok, ok, ok, ok, ok, ok, ok, ok, u401, u401},
	"GET /v1/proofs/consistency":               {ok, u401, ok, ok, ok, ok, ok, ok, ok, ok, u401, u401},
	"GET /v1/finance":                          {u401, u401, f403, f403, f403, f403, ok, f403, f403, ok, u401, u401},
	"GET /v1/accounts/{id}/personal-data":      {u401, u401, f403, ok, f403, f403, f403, ok, f403, f403, u401, u401},
	"POST /v1/accounts/{id}/erasure":           {u401, u401, f403, f403, f403, f403, f403, ok, f403, f403, u401, u401},
}

// TestAccessMatrix sends every route as every kind of caller and checks
// who gets through; a refused request changes nothing in the log. Allowed
// writes carry a body that is not a JSON object, so they are refused as
// invalid after access control and change nothing either.
func TestAccessMatrix(t *testing.T) {
	served := serverRoutes(t)
	var listed []string
	for route := range accessMatrix {
		listed = append(listed, pathParam.ReplaceAllString(route, "{}"))
		if _, ok := httpapi.Routes[route]; !ok {
			t.Errorf("route %s is in the matrix but not in httpapi.Routes", route)
		}
	}
	sort.Strings(listed)
	if !slices.Equal(listed, served) {
		t.Fatalf("the access matrix lists %v\nbut server.go serves %v: add the new route to accessMatrix", listed, served)
	}
	if len(httpapi.Routes) != len(accessMatrix) {
		t.Fatalf("httpapi.Routes has %d routes, the matrix %d", len(httpapi.Routes), len(accessMatrix))
	}

	f := newFixture(t)
	f.raiseLimits()
	tokens := map[string]string{"none": ""}
	tokens["own"] = f.login(t, f.a, f.pwA)
	tokens["other_holder"] = f.login(t, f.b, f.pwB)
	tokens["logged_out"] = f.login(t, f.a, f.pwA)
	if status, body := hit(t, f.st.URL, "DELETE", "/v1/sessions/current", tokens["logged_out"], nil); status != http.StatusNoContent {
		t.Fatalf("logout: %d %v", status, body)
	}
	for _, role := range staffkeys.Roles() {
		tokens[string(role)] = f.st.key(t, role)
	}
	revoked, k, err := f.st.keys.Create(context.Background(), staffkeys.RoleOperator, "to revoke")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.keys.Revoke(context.Background(), k.ID); err != nil {
		t.Fatal(err)
	}
	tokens["revoked_key"] = revoked
	tokens["expired"] = f.login(t, f.a, f.pwA)

	routes := make([]string, 0, len(accessMatrix))
	for route := range accessMatrix {
		routes = append(routes, route)
	}
	// Logging out ends the session, so it comes last in every column.
	sort.Slice(routes, func(i, j int) bool {
		li, lj := strings.HasPrefix(routes[i], "DELETE"), strings.HasPrefix(routes[j], "DELETE")
		if li != lj {
			return lj
		}
		return routes[i] < routes[j]
	})
	for col, who := range columns {
		if who == "expired" {
			f.clk.Advance(16 * time.Minute) // past the 15-minute idle timeout
		}
		for _, route := range routes {
			want := accessMatrix[route][col]
			method, path, _ := strings.Cut(route, " ")
			path = strings.NewReplacer("{id}", f.a, "{fid}", f.pwA, "{pid}", "01J00000000000000000000000", "{did}", "laptop-1",
				"{case}", "01J00000000000000000000000", "{year}", "2026",
				"{dispute}", "01J00000000000000000000000", "{position}", "1").Replace(path)
			var body any
			if method != "GET" && method != "DELETE" {
				body = "[]"
			}
			before := f.st.head(t)
			status, reply := hit(t, f.st.URL, method, path, tokens[who], body)
			switch {
			case want == ok && (status == u401 || status == f403):
				t.Errorf("%s as %s: %d %v, want access", route, who, status, reply)
			case want != ok && status != want:
				t.Errorf("%s as %s: %d %v, want %d", route, who, status, reply, want)
			case want == ok && strings.HasPrefix(path, "/v1/accounts/") && status == http.StatusNotFound && who != "other_holder":
				t.Errorf("%s as %s: 404 for an account it may see", route, who)
			}
			code, _ := reply["code"].(string)
			if want == u401 && code != "unauthenticated" || want == f403 && code != "forbidden" {
				t.Errorf("%s as %s: code %q", route, who, code)
			}
			if want != ok {
				if after := f.st.head(t); after != before {
					t.Errorf("%s as %s: refused, but the log moved from %d to %d", route, who, before, after)
				}
			}
		}
	}
}

// TestNoSuchAccountLooksForbidden: a holder asking about an account that
// does not exist gets the same answer as for another holder's account.
func TestNoSuchAccountLooksForbidden(t *testing.T) {
	f := newFixture(t)
	tok := f.login(t, f.b, f.pwB)
	s1, b1 := hit(t, f.st.URL, "GET", "/v1/accounts/"+f.a+"/balance", tok, nil)
	s2, b2 := hit(t, f.st.URL, "GET", "/v1/accounts/01J0000000000000000000ZZZZ/balance", tok, nil)
	if s1 != http.StatusForbidden || s2 != s1 || fmt.Sprint(b1) != fmt.Sprint(b2) {
		t.Fatalf("existing: %d %v\nmissing: %d %v", s1, b1, s2, b2)
	}
}

// TestStrangerCannotTakeOver replays the takeover of the issue against a
// victim with money: without the victim's factors nothing about the
// account can be changed, read or paid out.
func TestStrangerCannotTakeOver(t *testing.T) {
	f := newFixture(t)
	funding := f.st.key(t, staffkeys.RoleFunding)
	if s, b := hit(t, f.st.URL, "POST", "/v1/accounts/"+f.a+"/deposits", funding,
		map[string]any{"amount": "20000.00", "currency": "CNY", "reference": "bank-1"}); s != http.StatusCreated {
		t.Fatalf("deposit: %d %v", s, b)
	}
	f.raiseLimits()
	victim := "/v1/accounts/" + f.a
	attacker := f.login(t, f.b, f.pwB) // a holder of the institution, not of this account
	head := f.st.head(t)
	for _, tok := range []string{"", attacker, "pls_" + f.a + "_01J0000000000000000000ZZZZ_" + strings.Repeat("A", 43)} {
		for _, c := range []struct {
			method, path string
			body         any
		}{
			{"GET", victim, nil},
			{"POST", victim + "/factors", map[string]any{"factor": map[string]any{"method": "password", "password": "attacker-password"}}},
			{"PUT", victim + "/limits", map[string]any{"agreed_daily_limit": "1000000000000.00"}},
			{"POST", victim + "/bank-account", map[string]any{"bank_account_number": "6222999900001111", "holder_name": "Li Wei"}},
			{"POST", victim + "/withdrawals", map[string]any{"amount": "8000.00", "currency": "CNY", "device_id": "x", "proofs": []any{}}},
			{"POST", victim + "/factors/" + f.pwA + "/reset", map[string]any{"password": "attacker-password", "device_id": "x", "proofs": []any{}}},
			{"POST", victim + "/factors/" + f.pwA + "/revoke", map[string]any{"reason": "x"}},
			{"POST", victim + "/suspend", map[string]any{"reason": "x"}},
			{"POST", victim + "/close", map[string]any{"reason": "x"}},
			{"POST", victim + "/deposits", map[string]any{"amount": "1000000000000.00", "currency": "CNY", "reference": "fake"}},
			{"GET", victim + "/statement", nil},
		} {
			status, body := hit(t, f.st.URL, c.method, c.path, tok, c.body)
			if status != http.StatusUnauthorized && status != http.StatusForbidden {
				t.Errorf("%s %s with token %.12q: %d %v, want 401 or 403", c.method, c.path, tok, status, body)
			}
		}
	}
	if after := f.st.head(t); after != head {
		t.Errorf("the stranger's requests appended %d events", after-head)
	}
	owner := f.login(t, f.a, f.pwA)
	if s, b := hit(t, f.st.URL, "GET", victim+"/balance", owner, nil); s != http.StatusOK || b["available"] != "20000.00" {
		t.Fatalf("the victim's balance: %d %v", s, b)
	}
}

// TestHolderStepUpAndCoolingOff: with a session alone a holder cannot add
// a factor; with a step-up the new factor waits out the cooling-off before
// it can move money, and an operator's enrolment after an identity check
// does not.
func TestHolderStepUpAndCoolingOff(t *testing.T) {
	f := newFixture(t)
	tok := f.login(t, f.a, f.pwA)
	base := "/v1/accounts/" + f.a
	newFactor := map[string]any{"method": "certificate", "public_key": "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="}
	if s, b := hit(t, f.st.URL, "POST", base+"/factors", tok, map[string]any{"factor": newFactor}); s != http.StatusBadRequest || b["code"] != "invalid_request" {
		t.Fatalf("enrol without a step-up: %d %v", s, b)
	}
	s, b := hit(t, f.st.URL, "POST", base+"/factors", tok, map[string]any{"factor": newFactor, "device_id": "laptop-1",
		"proofs": []any{map[string]any{"factor_id": f.pwA, "password": testPassword}}})
	if s != http.StatusCreated || b["usable_from"] == nil {
		t.Fatalf("enrol with the password (the account's one category): %d %v", s, b)
	}
	if s, b := hit(t, f.st.URL, "POST", base+"/factors", f.operator, map[string]any{"factor": map[string]any{"method": "totp", "device_id": "phone-1"}}); s != http.StatusBadRequest || b["field"] != "identity_check" {
		t.Fatalf("operator enrolment without an identity check: %d %v", s, b)
	}
	s, b = hit(t, f.st.URL, "POST", base+"/factors", f.operator, map[string]any{"identity_check": "branch-2",
		"factor": map[string]any{"method": "totp", "device_id": "phone-1"}})
	if s != http.StatusCreated || b["usable_from"] != nil || b["totp_secret"] == nil {
		t.Fatalf("operator enrolment after an identity check: %d %v", s, b)
	}
	// Now two categories are active, so a further change needs both.
	if s, b := hit(t, f.st.URL, "PUT", base+"/limits", tok, map[string]any{"agreed_daily_limit": "60000.00", "device_id": "laptop-1",
		"proofs": []any{map[string]any{"factor_id": f.pwA, "password": testPassword}}}); s != http.StatusUnprocessableEntity || b["code"] != "insufficient_verification" {
		t.Fatalf("raise the limit with one category: %d %v", s, b)
	}
}

// TestReplayNeverReissuesSecrets: the same login or TOTP enrolment sent
// again with its Idempotency-Key does not show the token or seed again.
func TestReplayNeverReissuesSecrets(t *testing.T) {
	f := newFixture(t)
	login := map[string]any{"device_id": "laptop-1", "proofs": []any{map[string]any{"factor_id": f.pwA, "password": testPassword}}}
	first := post(t, f.st.URL, "/v1/accounts/"+f.a+"/sessions", "", "k1", login)
	if first.status != http.StatusCreated || first.body["token"] == nil {
		t.Fatalf("login: %d %v", first.status, first.body)
	}
	again := post(t, f.st.URL, "/v1/accounts/"+f.a+"/sessions", "", "k1", login)
	if again.status != http.StatusConflict || again.body["code"] != "secret_shown_once" || again.body["token"] != nil {
		t.Fatalf("replayed login: %d %v", again.status, again.body)
	}
	enrol := map[string]any{"identity_check": "branch", "factor": map[string]any{"method": "totp", "device_id": "phone-1"}}
	first = post(t, f.st.URL, "/v1/accounts/"+f.a+"/factors", f.operator, "k2", enrol)
	if first.status != http.StatusCreated || first.body["totp_secret"] == nil {
		t.Fatalf("enrol: %d %v", first.status, first.body)
	}
	again = post(t, f.st.URL, "/v1/accounts/"+f.a+"/factors", f.operator, "k2", enrol)
	if again.status != http.StatusConflict || again.body["totp_secret"] != nil {
		t.Fatalf("replayed enrolment: %d %v", again.status, again.body)
	}
	// Another caller's key of the same name is its own.
	other := post(t, f.st.URL, "/v1/accounts/"+f.a+"/factors", f.st.key(t, staffkeys.RoleOperator), "k2", enrol)
	if other.status != http.StatusCreated || other.body["factor_id"] == first.body["factor_id"] {
		t.Fatalf("another operator's request under the same key: %d %v", other.status, other.body)
	}
}

type result struct {
	status int
	header http.Header
	body   map[string]any
}

func post(t *testing.T, base, path, token, key string, body any) result {
	t.Helper()
	raw, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	status, header, reply := send(t, base, "POST", path, token, "application/json", key, string(raw))
	out := result{status: status, header: header}
	if err := json.Unmarshal([]byte(reply), &out.body); err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	return out
}

// TestFailedLoginsAreThrottled: a stranger guessing passwords is slowed by
// the address's and the account's budgets (429 with Retry-After), while the
// holder's own session keeps working.
func TestFailedLoginsAreThrottled(t *testing.T) {
	f := newFixture(t)
	own := f.login(t, f.a, f.pwA)
	wrong := map[string]any{"device_id": "x", "proofs": []any{map[string]any{"factor_id": f.pwB, "password": "wrong guess!"}}}
	var limited result
	for i := 0; i < 25; i++ {
		r := post(t, f.st.URL, "/v1/accounts/"+f.b+"/sessions", "", fmt.Sprint("g", i), wrong)
		if r.status == http.StatusTooManyRequests {
			limited = r
			break
		}
		if r.status != http.StatusUnauthorized && r.status != http.StatusLocked {
			t.Fatalf("guess %d: %d %v", i, r.status, r.body)
		}
	}
	if limited.status != http.StatusTooManyRequests || limited.header.Get("Retry-After") == "" || limited.body["code"] != "rate_limited" {
		t.Fatalf("25 wrong logins were never throttled: %d %v", limited.status, limited.body)
	}
	if s, b := hit(t, f.st.URL, "GET", "/v1/accounts/"+f.a+"/balance", own, nil); s != http.StatusOK {
		t.Fatalf("the holder's own session while a stranger is throttled: %d %v", s, b)
	}
	// The address's own budget: bad tokens against another account.
	throttled := false
	for i := 0; i < 25 && !throttled; i++ {
		s, b := hit(t, f.st.URL, "GET", "/v1/accounts/"+f.a+"/balance", "pls_garbage", nil)
		switch s {
		case http.StatusTooManyRequests:
			throttled = true
		case http.StatusUnauthorized:
		default:
			t.Fatalf("bad token %d: %d %v", i, s, b)
		}
	}
	if !throttled {
		t.Fatal("25 bad tokens from one address were never throttled")
	}
	if s, b := hit(t, f.st.URL, "GET", "/v1/accounts/"+f.a+"/balance", own, nil); s != http.StatusOK {
		t.Fatalf("the holder's own session from the throttled address: %d %v", s, b)
	}
}

// raiseLimits lets a test make many failures on purpose.
func (f *fixture) raiseLimits() {
	f.st.api.SetFailureLimits(ratelimit.New(10000, time.Second, 100, f.clk.Now), ratelimit.New(10000, time.Second, 100, f.clk.Now))
}

// TestParallelWrongLoginsHaveAMemoryCeiling: 200 concurrent logins with
// wrong passwords (the budgets raised so every one reaches the password
// check) keep the heap under a ceiling, because at most four argon2id
// hashes of 19 MiB run at once, and /healthz keeps answering.
func TestParallelWrongLoginsHaveAMemoryCeiling(t *testing.T) {
	f := newFixture(t)
	f.raiseLimits()
	// Five failures lock an account before its password is checked, so
	// 40 accounts take 200 checks.
	accounts := make([][2]string, 40)
	for i := range accounts {
		id, pw := f.open(t, fmt.Sprint("Holder ", i))
		accounts[i] = [2]string{id, pw}
	}
	const ceiling = 400 << 20 // 200 unbounded hashes would need 3.8 GiB
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var m runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
		}
	}()
	var wg sync.WaitGroup
	var answered, refused atomic.Int64
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			acct := accounts[i%len(accounts)]
			body, _ := json.Marshal(map[string]any{"device_id": "x", "proofs": []any{map[string]any{"factor_id": acct[1], "password": "wrong guess!"}}})
			resp, err := http.Post(f.st.URL+"/v1/accounts/"+acct[0]+"/sessions", "application/json", bytes.NewReader(body))
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			switch resp.StatusCode {
			case http.StatusUnauthorized, http.StatusLocked:
				answered.Add(1)
			case http.StatusTooManyRequests:
				refused.Add(1)
			default:
				t.Errorf("login %d: status %d", i, resp.StatusCode)
			}
		}(i)
	}
	health := make(chan int, 1)
	go func() {
		c := &http.Client{Timeout: 5 * time.Second}
		resp, err := c.Get(f.st.URL + "/healthz")
		if err != nil {
			health <- 0
			return
		}
		resp.Body.Close()
		health <- resp.StatusCode
	}()
	wg.Wait()
	close(stop)
	<-sampled
	if h := <-health; h != http.StatusOK {
		t.Errorf("/healthz during the storm: %d", h)
	}
	grew := int64(peak.Load()) - int64(base.HeapInuse)
	t.Logf("200 wrong logins: %d answered, %d refused as busy; heap in use grew by at most %d MiB", answered.Load(), refused.Load(), grew>>20)
	if grew > ceiling {
		t.Fatalf("heap in use grew by %d MiB, ceiling %d MiB", grew>>20, ceiling>>20)
	}
	if answered.Load() == 0 {
		t.Fatal("no login reached the password check")
	}
}

// TestStolenPasswordAlone: a thief with the holder's password (one factor
// category) can log in, but not change the name, bind a bank account,
// raise the limit or take the money out (the review's first attack).
func TestStolenPasswordAlone(t *testing.T) {
	f := newFixture(t)
	funding := f.st.key(t, staffkeys.RoleFunding)
	if s, b := hit(t, f.st.URL, "POST", "/v1/accounts/"+f.a+"/deposits", funding,
		map[string]any{"amount": "10000.00", "currency": "CNY", "reference": "bank-1"}); s != http.StatusCreated {
		t.Fatalf("deposit: %d %v", s, b)
	}
	thief := f.login(t, f.a, f.pwA)
	base := "/v1/accounts/" + f.a
	pw := []any{map[string]any{"factor_id": f.pwA, "password": testPassword}}
	head := f.st.head(t)
	for _, c := range []struct {
		method, path string
		body         map[string]any
	}{
		{"PUT", base + "/identity", map[string]any{"holder_name": "Mallory Thief", "device_id": "x", "proofs": pw}},
		{"POST", base + "/bank-account", map[string]any{"bank_account_number": "6222999900001111", "holder_name": "Li Wei", "device_id": "x", "proofs": pw}},
		{"PUT", base + "/limits", map[string]any{"agreed_daily_limit": "900000.00", "device_id": "x", "proofs": pw}},
		{"PUT", base + "/phone", map[string]any{"phone": "+8613900000000", "device_id": "x", "proofs": pw}},
		{"POST", base + "/factors/" + f.pwA + "/reset", map[string]any{"password": "mallory owns it now", "device_id": "x", "proofs": pw}},
	} {
		s, b := hit(t, f.st.URL, c.method, c.path, thief, c.body)
		if s != http.StatusUnprocessableEntity || (b["code"] != "insufficient_verification" && b["code"] != "factor_not_independent") {
			t.Errorf("%s %s with the password alone: %d %v", c.method, c.path, s, b)
		}
	}
	if s, b := hit(t, f.st.URL, "POST", base+"/withdrawals", thief, map[string]any{"amount": "10000.00", "currency": "CNY",
		"device_id": "x", "proofs": pw}); s != http.StatusConflict {
		t.Errorf("withdrawal without a bound bank account: %d %v", s, b)
	}
	if h := f.st.head(t); h != head {
		t.Errorf("the thief's refused changes appended %d events", h-head)
	}
	// A second factor the thief adds with the password cools off, and
	// authorises nothing but further enrolments meanwhile.
	s, b := hit(t, f.st.URL, "POST", base+"/factors", thief, map[string]any{"device_id": "x", "proofs": pw,
		"factor": map[string]any{"method": "certificate", "public_key": "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="}})
	if s != http.StatusCreated || b["usable_from"] == nil {
		t.Fatalf("the thief's enrolment: %d %v", s, b)
	}
	if s, b := hit(t, f.st.URL, "GET", base+"/balance", thief, nil); s != http.StatusOK || b["available"] != "10000.00" {
		t.Errorf("balance after the attempts: %d %v", s, b)
	}
}

// TestBadTokensDoNotLockTheHolderOut: invalid tokens naming an account
// count against the sender's address, not against the account's logins
// (the review's fifth finding).
func TestBadTokensDoNotLockTheHolderOut(t *testing.T) {
	f := newFixture(t)
	for i := 0; i < 15; i++ {
		if s, _ := hit(t, f.st.URL, "GET", "/v1/accounts/"+f.a+"/balance", "nope-"+fmt.Sprint(i), nil); s != http.StatusUnauthorized {
			t.Fatalf("bad token %d: %d", i, s)
		}
	}
	// The address has 5 of its 20 failures left; the account's 10 are
	// untouched, so the holder's login goes through (it was 429 when bad
	// tokens counted against the account).
	f.login(t, f.a, f.pwA)
}

// TestHolderDoesNotSeeStaffDetails: the holder's operations omit which
// staff key acted and the reason an operator gave for a suspension.
func TestHolderDoesNotSeeStaffDetails(t *testing.T) {
	f := newFixture(t)
	if s, b := hit(t, f.st.URL, "POST", "/v1/accounts/"+f.a+"/suspend", f.operator, map[string]any{"reason": "AML alert 7781"}); s != http.StatusOK {
		t.Fatalf("suspend: %d %v", s, b)
	}
	tok := f.login(t, f.a, f.pwA)
	s, b := hit(t, f.st.URL, "GET", "/v1/accounts/"+f.a+"/operations", tok, nil)
	if s != http.StatusOK {
		t.Fatalf("operations: %d %v", s, b)
	}
	raw, _ := json.Marshal(b)
	for _, leak := range []string{"AML alert", "staff_key", "identity_check", "branch-"} {
		if strings.Contains(string(raw), leak) {
			t.Errorf("the holder's operations show %q: %s", leak, raw)
		}
	}
	if !strings.Contains(string(raw), "[withheld]") {
		t.Errorf("the suspension's reason is not marked withheld: %s", raw)
	}
	// The operator sees them.
	_, b = hit(t, f.st.URL, "GET", "/v1/accounts/"+f.a+"/operations", f.operator, nil)
	raw, _ = json.Marshal(b)
	if !strings.Contains(string(raw), "AML alert 7781") || !strings.Contains(string(raw), "staff_key") {
		t.Errorf("the operator's view lacks the staff details: %s", raw)
	}
}

// TestAccountIDsAreNotDerivedFromKeys: an account id is random, so nobody
// can open, first, the account a victim's Idempotency-Key would name; a
// retry with the same key and body reaches the same account, and the same
// key from another caller (an operator) opens another one.
func TestAccountIDsAreNotDerivedFromKeys(t *testing.T) {
	f := newFixture(t)
	body := map[string]any{"holder_name": "Wang Fang", "currency": "CNY", "factor": map[string]any{"method": "password", "password": testPassword}}
	first := post(t, f.st.URL, "/v1/accounts", "", "victim-key-1", body)
	again := post(t, f.st.URL, "/v1/accounts", "", "victim-key-1", body)
	if first.status != http.StatusCreated || again.status != http.StatusCreated || again.header.Get("Idempotent-Replayed") != "true" ||
		first.body["id"] != again.body["id"] {
		t.Fatalf("retry: %d %v / %d %v", first.status, first.body["id"], again.status, again.body["id"])
	}
	staffBody := map[string]any{"holder_name": "Wang Fang", "currency": "CNY", "identity_check": "branch-1",
		"factor": map[string]any{"method": "password", "password": testPassword}}
	other := post(t, f.st.URL, "/v1/accounts", f.operator, "victim-key-1", staffBody)
	if other.status != http.StatusCreated || other.body["id"] == first.body["id"] {
		t.Fatalf("another caller's request under the same key: %d %v", other.status, other.body)
	}
	// The old derivation: the first 16 bytes of SHA-256 of the key.
	sum := sha256.Sum256([]byte("payledger/open-account/victim-key-1"))
	var derived ulid.ULID
	copy(derived[:], sum[:16])
	if first.body["id"] == derived.String() || other.body["id"] == derived.String() {
		t.Fatal("the account id is derived from the Idempotency-Key")
	}
}

// TestMetrics: GET /metrics needs a staff key (unless the deployment makes
// it public) and counts requests by route and status, failed
// authentications and lockouts, naming no account or holder.
func TestMetrics(t *testing.T) {
	f := newFixture(t)
	hit(t, f.st.URL, "GET", "/v1/accounts/"+f.a, "not-a-token", nil)
	for range 5 {
		hit(t, f.st.URL, "POST", "/v1/accounts/"+f.a+"/sessions", "", map[string]any{"device_id": "x",
			"proofs": []any{map[string]any{"factor_id": f.pwA, "password": "wrong guess!"}}})
	}
	if s, _ := hit(t, f.st.URL, "GET", "/metrics", "", nil); s != http.StatusUnauthorized {
		t.Fatalf("metrics without credentials: %d", s)
	}
	status, _, body := raw(t, f.st.URL, "GET", "/metrics", f.st.key(t, staffkeys.RoleAuditor), "", "")
	if status != http.StatusOK {
		t.Fatalf("metrics: %d %s", status, body)
	}
	for _, want := range []string{
		`payledger_http_request_duration_seconds_count{route="POST /v1/accounts",status="201"} 2`,
		`payledger_auth_failures_total{kind="credentials"} 1`,
		`payledger_auth_failures_total{kind="login"} 5`,
		`payledger_lockouts_total 1`,
		`payledger_projection_lag_events`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	for _, leak := range []string{f.a, "Li Wei", testPassword} {
		if strings.Contains(body, leak) {
			t.Errorf("metrics name %q", leak)
		}
	}
	f.st.api.SetMetricsPublic(true)
	if s, _, _ := raw(t, f.st.URL, "GET", "/metrics", "", "", ""); s != http.StatusOK {
		t.Fatalf("public metrics: %d", s)
	}
}

// TestRevokeDeviceOverHTTP: an operator revokes a holder's device after an
// identity check (the way back for a holder who lost it); the device's
// signature then proves nothing, and the holder registers a new first
// device with the session alone.
func TestRevokeDeviceOverHTTP(t *testing.T) {
	f := newFixture(t)
	tok := f.login(t, f.a, f.pwA)
	register := func(id string) ed25519.PrivateKey {
		t.Helper()
		_, priv, err := ed25519.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		pub := base64.StdEncoding.EncodeToString(priv.Public().(ed25519.PublicKey))
		at := f.clk.Peek().UTC()
		sig := ed25519.Sign(priv, domain.DeviceChallenge(domain.ChangeKindDevice, f.a, id, at, pub))
		s, b := hit(t, f.st.URL, "POST", "/v1/accounts/"+f.a+"/devices", tok, map[string]any{"device": map[string]any{"device_id": id,
			"public_key": pub, "signed_at": at.Format(time.RFC3339Nano), "signature": base64.StdEncoding.EncodeToString(sig)}})
		if s != http.StatusCreated {
			t.Fatalf("register %s: %d %v", id, s, b)
		}
		return priv
	}
	laptop := register("laptop-1")
	path := "/v1/accounts/" + f.a + "/devices/laptop-1/revoke"
	if s, b := hit(t, f.st.URL, "POST", path, f.operator, map[string]any{"reason": "stolen"}); s != http.StatusBadRequest || b["field"] != "identity_check" {
		t.Fatalf("operator revocation without an identity check: %d %v", s, b)
	}
	// Another holder cannot revoke it, and the refusal changes nothing.
	before := f.st.head(t)
	if s, b := hit(t, f.st.URL, "POST", path, f.login(t, f.b, f.pwB), map[string]any{"device_id": "x", "proofs": []any{}}); s != http.StatusForbidden {
		t.Fatalf("another holder's revocation: %d %v", s, b)
	}
	if f.st.head(t) != before+1 { // the other holder's login only
		t.Fatalf("a refused revocation moved the log from %d to %d", before, f.st.head(t))
	}
	if s, b := hit(t, f.st.URL, "POST", path, f.operator, map[string]any{"reason": "stolen", "identity_check": "branch-7"}); s != http.StatusOK || b["revoked"] != true {
		t.Fatalf("operator revocation: %d %v", s, b)
	}
	// Sent again, the revocation finds nothing left to revoke and appends
	// nothing.
	before = f.st.head(t)
	s2, b2 := hit(t, f.st.URL, "POST", path, f.operator, map[string]any{"reason": "stolen", "identity_check": "branch-7"})
	if s2 < 400 || f.st.head(t) != before {
		t.Fatalf("a second revocation: %d %v, log %d -> %d", s2, b2, before, f.st.head(t))
	}
	at := f.clk.Peek().UTC()
	sig := ed25519.Sign(laptop, domain.DeviceChallenge("login", f.a, "laptop-1", at, ""))
	s, b := hit(t, f.st.URL, "POST", "/v1/accounts/"+f.a+"/sessions", "", map[string]any{"device_id": "laptop-1",
		"signed_at": at.Format(time.RFC3339Nano), "device_signature": base64.StdEncoding.EncodeToString(sig),
		"proofs": []any{map[string]any{"factor_id": f.pwA, "password": testPassword}}})
	if s != http.StatusUnauthorized {
		t.Fatalf("login signed by the revoked laptop: %d %v", s, b)
	}
	register("laptop-2") // no device left: a first one again, with the session alone
}
