package httpapi_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
	_ "time/tzdata" // the policy's Asia/Shanghai day, on hosts without zoneinfo

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/eventstore/sqlite"
	"github.com/payledger/payledger/httpapi"
	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/projections"
)

// loadDoc parses the embedded document and validates it as OpenAPI 3.0.
func loadDoc(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(httpapi.OpenAPI)
	if err != nil {
		t.Fatalf("load openapi.json: %v", err)
	}
	if doc.OpenAPI != "3.0.3" {
		t.Fatalf("openapi = %q, want 3.0.3", doc.OpenAPI)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.json is not a valid OpenAPI document: %v", err)
	}
	return doc
}

func TestOpenAPIDocumentValidates(t *testing.T) {
	doc := loadDoc(t)
	ids := map[string]string{}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if op.OperationID == "" || op.Summary == "" || op.Description == "" {
				t.Errorf("%s %s: needs operationId, summary and description", method, path)
			}
			if prev, dup := ids[op.OperationID]; dup {
				t.Errorf("operationId %s used by %s and %s %s", op.OperationID, prev, method, path)
			}
			ids[op.OperationID] = method + " " + path
		}
	}
}

var (
	routePattern = regexp.MustCompile(`m\.HandleFunc\("([A-Z]+) (/[^"]*)"`)
	pathParam    = regexp.MustCompile(`\{[^}]+\}`)
)

// serverRoutes parses the routes registered in server.go, so that a route
// added there without documentation fails TestOpenAPICoversEveryRoute.
func serverRoutes(t *testing.T) []string {
	t.Helper()
	src, err := os.ReadFile("server.go")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range routePattern.FindAllStringSubmatch(string(src), -1) {
		out = append(out, m[1]+" "+pathParam.ReplaceAllString(m[2], "{}"))
	}
	if len(out) < 20 {
		t.Fatalf("parsed only %d routes from server.go; has its registration style changed?", len(out))
	}
	sort.Strings(out)
	return out
}

func TestOpenAPICoversEveryRoute(t *testing.T) {
	doc := loadDoc(t)
	var documented []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented = append(documented, method+" "+pathParam.ReplaceAllString(path, "{}"))
		}
	}
	sort.Strings(documented)
	served := serverRoutes(t)
	for _, r := range served {
		if !slices.Contains(documented, r) {
			t.Errorf("route %s is served but not documented", r)
		}
	}
	for _, r := range documented {
		if !slices.Contains(served, r) {
			t.Errorf("route %s is documented but not served", r)
		}
	}
}

func TestOpenAPIProblemCodes(t *testing.T) {
	doc := loadDoc(t)
	problem := doc.Components.Schemas["Problem"].Value
	enum := map[string]bool{}
	for _, v := range problem.Properties["code"].Value.Enum {
		enum[v.(string)] = true
	}
	statuses := map[int]bool{}
	for _, v := range problem.Properties["status"].Value.Enum {
		statuses[int(v.(float64))] = true
	}
	codes := httpapi.Codes()
	for _, c := range codes {
		if !enum[c] {
			t.Errorf("problem code %q is missing from the Problem code enum", c)
		}
		if !statuses[httpapi.StatusOf(c)] {
			t.Errorf("status %d of code %q is missing from the Problem status enum", httpapi.StatusOf(c), c)
		}
		if !strings.Contains(problem.Properties["code"].Value.Description, "`"+c+"`") {
			t.Errorf("problem code %q is not described", c)
		}
	}
	for c := range enum {
		if !slices.Contains(codes, c) {
			t.Errorf("Problem code enum lists %q, which the server never returns", c)
		}
	}
	// Every documented problem status is one some code maps to, and every
	// operation's problem responses use the Problem schema.
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			for status, resp := range op.Responses.Map() {
				if status[0] == '2' {
					continue
				}
				mt := resp.Value.Content.Get("application/problem+json")
				if mt == nil || mt.Schema.Ref != "#/components/schemas/Problem" {
					t.Errorf("%s %s %s: problem responses must be application/problem+json Problem", method, path, status)
				}
			}
		}
	}
}

// TestOpenAPIOperationTypes: the operation log's type enum lists exactly
// the event types the domain stores.
func TestOpenAPIOperationTypes(t *testing.T) {
	doc := loadDoc(t)
	var listed []string
	for _, v := range doc.Components.Schemas["Operation"].Value.Properties["type"].Value.Enum {
		listed = append(listed, v.(string))
	}
	var stored []string
	for _, tv := range domain.EventTypes() {
		typ, _, _ := strings.Cut(tv, "/")
		if !slices.Contains(stored, typ) {
			stored = append(stored, typ)
		}
	}
	sort.Strings(listed)
	sort.Strings(stored)
	if !slices.Equal(listed, stored) {
		t.Errorf("Operation type enum %v\nwant the domain's event types %v", listed, stored)
	}
}

func TestOpenAPIWritesAreIdempotentAndStrict(t *testing.T) {
	doc := loadDoc(t)
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if method != http.MethodPost && method != http.MethodPut {
				continue
			}
			if op.Parameters.GetByInAndName("header", "Idempotency-Key") == nil {
				t.Errorf("%s %s: no Idempotency-Key header parameter", method, path)
			}
			for status, resp := range op.Responses.Map() {
				if resp.Value.Headers["Idempotent-Replayed"] == nil {
					t.Errorf("%s %s %s: no Idempotent-Replayed header", method, path, status)
				}
			}
			if op.RequestBody == nil {
				t.Errorf("%s %s: no request body documented", method, path)
				continue
			}
			schema := op.RequestBody.Value.Content.Get("application/json").Schema
			checkClosed(t, method+" "+path, schema, 0)
		}
	}
}

// checkClosed requires additionalProperties: false on every object of a
// request body, as the handlers decode with DisallowUnknownFields.
func checkClosed(t *testing.T, where string, ref *openapi3.SchemaRef, depth int) {
	t.Helper()
	if ref == nil || ref.Value == nil || depth > 10 {
		return
	}
	s := ref.Value
	if s.Type.Is("object") {
		if s.AdditionalProperties.Has == nil || *s.AdditionalProperties.Has {
			t.Errorf("%s: request object %s allows additional properties", where, ref.Ref)
		}
		for _, p := range s.Properties {
			checkClosed(t, where, p, depth+1)
		}
	}
	if s.Type.Is("array") {
		checkClosed(t, where, s.Items, depth+1)
	}
}

func TestOpenAPIForbiddenFieldNames(t *testing.T) {
	doc := loadDoc(t)
	raw, _ := doc.Extensions["x-forbidden-field-names"].([]any)
	var listed []string
	for _, v := range raw {
		listed = append(listed, v.(string))
	}
	sort.Strings(listed)
	if want := httpapi.ForbiddenFieldNames(); !slices.Equal(listed, want) {
		t.Errorf("x-forbidden-field-names = %v\nwant the R19 list of request.go: %v", listed, want)
	}
}

// clock is the injected time: fixed at start, then 1 ms later at every
// read, and moved on explicitly for TOTP steps.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(time.Millisecond)
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func (c *clock) Peek() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// lockedRand is a deterministic, concurrency-safe random source.
type lockedRand struct {
	mu sync.Mutex
	r  *rand.ChaCha8
}

func (l *lockedRand) Read(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.Read(p)
}

type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// newStack wires the real store, read models, write path and HTTP API the
// way cmd/payledger's Main.Open does, with an injected clock and entropy.
func newStack(t *testing.T, clk *clock) string {
	t.Helper()
	return newStackWith(t, clk, true, 0)
}

// newStackWith is newStack with the projection running live or not, and
// the write path's CloseWait (0: the default).
func newStackWith(t *testing.T, clk *clock, live bool, closeWait time.Duration) string {
	t.Helper()
	dir := t.TempDir()
	rnd := &lockedRand{r: rand.NewChaCha8([32]byte{'p', 'a', 'y', 'l', 'e', 'd', 'g', 'e', 'r'})}
	loc, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		t.Fatal(err)
	}
	master, err := ledger.LoadOrCreateKey(filepath.Join(dir, "server.key"), rnd)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := ledger.NewKeys(master, rnd)
	if err != nil {
		t.Fatal(err)
	}
	store, err := sqlite.Open(filepath.Join(dir, "events.db"), sqlite.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	rm, err := projections.Open(filepath.Join(dir, "readmodels.db"))
	if err != nil {
		store.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := rm.CatchUp(ctx, store); err != nil {
		t.Fatal(err)
	}
	svc, err := ledger.New(ledger.Config{Store: store, Balances: rm, Policy: domain.DefaultPolicy(loc), Keys: keys,
		Clock: clk.Now, NewID: ledger.NewULIDSource(clk.Now, rnd), Rand: rnd, CloseWait: closeWait})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if live {
			_ = rm.Run(ctx, store)
		}
	}()
	srv := httptest.NewServer(httpapi.New(svc, store, rm, slog.New(slog.NewTextHandler(testLogWriter{t}, nil))))
	t.Cleanup(func() {
		srv.Close()
		cancel()
		<-done
		if err := rm.Close(); err != nil {
			t.Error(err)
		}
		if err := store.Close(); err != nil {
			t.Error(err)
		}
	})
	return srv.URL
}

// api sends requests to the real server and checks each request and
// response against the document.
type api struct {
	t      *testing.T
	base   string
	doc    *openapi3.T
	router routers.Router
	client *http.Client
}

// call is one request of the scenario.
type call struct {
	method, path string
	body         any // marshalled; a json.RawMessage is sent as is
	key          string
	status       int
	// docRejects marks a request the document itself forbids (unknown or
	// forbidden fields, out-of-range query): request validation must fail
	// for it, and the server must refuse it too.
	docRejects bool
}

type reply struct {
	status int
	header http.Header
	body   map[string]any
}

func (r reply) str(key string) string {
	s, _ := r.body[key].(string)
	return s
}

func (r reply) obj(key string) map[string]any {
	m, _ := r.body[key].(map[string]any)
	return m
}

func (r reply) list(key string) []any {
	l, _ := r.body[key].([]any)
	return l
}

func (a *api) do(c call) reply {
	a.t.Helper()
	var payload []byte
	switch b := c.body.(type) {
	case nil:
	case json.RawMessage:
		payload = b
	default:
		var err error
		if payload, err = json.Marshal(b); err != nil {
			a.t.Fatal(err)
		}
	}
	newReq := func() *http.Request {
		req, err := http.NewRequest(c.method, a.base+c.path, bytes.NewReader(payload))
		if err != nil {
			a.t.Fatal(err)
		}
		if payload != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		if c.key != "" {
			req.Header.Set("Idempotency-Key", c.key)
		}
		return req
	}
	where := c.method + " " + c.path
	ctx := context.Background()

	vreq := newReq()
	route, params, err := a.router.FindRoute(vreq)
	if err != nil {
		a.t.Fatalf("%s: not in the document: %v", where, err)
	}
	in := &openapi3filter.RequestValidationInput{Request: vreq, PathParams: params, Route: route,
		Options: &openapi3filter.Options{MultiError: true}}
	err = openapi3filter.ValidateRequest(ctx, in)
	switch {
	case err != nil && !c.docRejects:
		a.t.Fatalf("%s: request does not match the document: %v", where, err)
	case err == nil && c.docRejects:
		a.t.Fatalf("%s: the document accepts a request it should forbid (body %s)", where, payload)
	}

	resp, err := a.client.Do(newReq())
	if err != nil {
		a.t.Fatalf("%s: %v", where, err)
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		a.t.Fatalf("%s: read reply: %v", where, err)
	}
	if resp.StatusCode != c.status {
		a.t.Fatalf("%s: status %d, want %d: %s", where, resp.StatusCode, c.status, raw)
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true}}
	out.SetBodyBytes(raw)
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		a.t.Fatalf("%s: reply %d does not match the document: %v\n%s", where, resp.StatusCode, err, raw)
	}
	r := reply{status: resp.StatusCode, header: resp.Header}
	if err := json.Unmarshal(raw, &r.body); err != nil {
		a.t.Fatalf("%s: reply is not a JSON object: %v", where, err)
	}
	if resp.StatusCode >= 400 {
		a.checkProblem(where, r)
	}
	return r
}

// checkProblem checks what the schema cannot: the status member and the
// code agree with the HTTP status and with the server's one table.
func (a *api) checkProblem(where string, r reply) {
	a.t.Helper()
	code := r.str("code")
	if got, _ := r.body["status"].(float64); int(got) != r.status {
		a.t.Errorf("%s: problem status member %v, HTTP status %d", where, r.body["status"], r.status)
	}
	if httpapi.StatusOf(code) != r.status {
		a.t.Errorf("%s: code %s maps to %d, served with %d", where, code, httpapi.StatusOf(code), r.status)
	}
	if r.str("type") != "/problems/"+code {
		a.t.Errorf("%s: type %q for code %q", where, r.str("type"), code)
	}
}

// problem sends c and checks the problem code and typed members.
func (a *api) problem(c call, code string, members map[string]any) reply {
	a.t.Helper()
	r := a.do(c)
	if r.str("code") != code {
		a.t.Fatalf("%s %s: code %q, want %q: %v", c.method, c.path, r.str("code"), code, r.body)
	}
	for k, want := range members {
		if got := r.body[k]; got != want {
			a.t.Errorf("%s %s: %s = %v, want %v", c.method, c.path, k, got, want)
		}
	}
	return r
}

func want[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

type obj = map[string]any

// TestOpenAPIUnavailable: with the projection stopped, a close cannot know
// the balance to close on. It answers 503 unavailable with Retry-After,
// validated against the document, and records nothing.
func TestOpenAPIUnavailable(t *testing.T) {
	doc := loadDoc(t)
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{now: time.Date(2026, 3, 2, 1, 0, 5, 0, time.UTC)}
	a := &api{t: t, base: newStackWith(t, clk, false, 50*time.Millisecond), doc: doc, router: router,
		client: &http.Client{Timeout: 10 * time.Second}}
	id := a.do(call{method: "POST", path: "/v1/accounts", status: 201,
		body: obj{"holder_name": "Zhang Min", "currency": "CNY"}}).str("id")
	r := a.problem(call{method: "POST", path: "/v1/accounts/" + id + "/close", key: "close-1", status: 503,
		body: obj{"reason": "moving"}}, "unavailable", nil)
	want(t, "Retry-After", r.header.Get("Retry-After"), "1")
	ops := a.do(call{method: "GET", path: "/v1/accounts/" + id + "/operations", status: 200}).list("operations")
	want(t, "operations after the refused close", len(ops), 1)
	want(t, "status after the refused close", a.do(call{method: "GET", path: "/v1/accounts/" + id, status: 200}).str("status"), "active")
}

// TestOpenAPIScenario drives the real handlers through a realistic day and
// validates every request and reply against the document.
func TestOpenAPIScenario(t *testing.T) {
	doc := loadDoc(t)
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{now: time.Date(2026, 3, 2, 1, 0, 5, 0, time.UTC)} // 09:00:05 in Shanghai
	a := &api{t: t, base: newStack(t, clk), doc: doc, router: router, client: &http.Client{Timeout: 10 * time.Second}}
	const password = "correct horse battery staple"

	a.do(call{method: "GET", path: "/v1/openapi.json", status: 200})
	a.do(call{method: "GET", path: "/healthz", status: 200})

	// Accounts; opening is idempotent with a key.
	openAlice := call{method: "POST", path: "/v1/accounts", key: "open-alice", status: 201,
		body: obj{"holder_name": "Li Wei", "currency": "CNY", "kind": "personal"}}
	alice := a.do(openAlice).str("id")
	again := a.do(openAlice)
	want(t, "replayed open id", again.str("id"), alice)
	want(t, "Idempotent-Replayed", again.header.Get("Idempotent-Replayed"), "true")
	bob := a.do(call{method: "POST", path: "/v1/accounts", status: 201,
		body: obj{"holder_name": "Wang Fang", "currency": "CNY", "kind": "merchant"}}).str("id")
	carol := a.do(call{method: "POST", path: "/v1/accounts", status: 201,
		body: obj{"holder_name": "Zhang Min", "currency": "CNY"}}).str("id")
	acct := "/v1/accounts/" + alice
	a.do(call{method: "GET", path: acct, status: 200})

	// Factors: password, TOTP on the phone, certificate.
	pw := a.do(call{method: "POST", path: acct + "/factors", status: 201,
		body: obj{"method": "password", "password": password}}).str("factor_id")
	totpReply := a.do(call{method: "POST", path: acct + "/factors", key: "enrol-totp", status: 201,
		body: obj{"method": "totp", "device_id": "phone-1"}})
	totp, secret := totpReply.str("factor_id"), totpReply.str("totp_secret")
	pub, priv, err := ed25519.GenerateKey(bytes.NewReader(bytes.Repeat([]byte{7}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	cert := a.do(call{method: "POST", path: acct + "/factors", status: 201,
		body: obj{"method": "certificate", "public_key": base64.StdEncoding.EncodeToString(pub)}}).str("factor_id")
	code := func() string {
		t.Helper()
		c, err := domain.TOTPCode(secret, domain.TOTPStepAt(clk.Peek()))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	pwProof := obj{"factor_id": pw, "password": password}

	// Login: password + TOTP from another device; then a wrong password.
	login := a.do(call{method: "POST", path: acct + "/sessions", status: 201,
		body: obj{"device_id": "laptop-1", "proofs": []any{pwProof, obj{"factor_id": totp, "code": code()}}}})
	want(t, "login categories", len(login.list("categories")), 2)
	a.problem(call{method: "POST", path: acct + "/sessions", status: 401,
		body: obj{"device_id": "laptop-1", "proofs": []any{obj{"factor_id": pw, "password": "not my password"}}}},
		"authentication_failed", obj{"attempts_remaining": 4.0})
	// A certificate proves nothing at login: there is no challenge.
	a.problem(call{method: "POST", path: acct + "/sessions", status: 400,
		body: obj{"device_id": "laptop-1", "proofs": []any{obj{"factor_id": cert, "signature": base64.StdEncoding.EncodeToString(make([]byte, 64))}}}},
		"invalid_request", obj{"field": "proofs"})

	// Bank account and deposit.
	bank := a.do(call{method: "POST", path: acct + "/bank-account", status: 201,
		body: obj{"bank_account_number": "6222020200112233445", "holder_name": "Li Wei"}})
	want(t, "bank last4", bank.str("bank_account_last4"), "3445")
	deposit := call{method: "POST", path: acct + "/deposits", key: "deposit-1", status: 201,
		body: obj{"amount": "10000.00", "currency": "CNY", "reference": "bank-transfer-123"}}
	a.do(deposit)
	afterDeposit := clk.Peek()
	clk.Advance(time.Second)

	pay := func(amount string) reply {
		t.Helper()
		return a.do(call{method: "POST", path: acct + "/payments", status: 201,
			body: obj{"payee_account_id": bob, "amount": amount, "currency": "CNY", "channel": "app",
				"terminal": "desktop", "device_id": "laptop-1", "description": "coffee beans"}})
	}
	confirmPath := func(p reply) string { return acct + "/payments/" + p.str("payment_id") + "/confirm" }

	// Single factor within the 1,000.00 cap.
	p1 := pay("500.00")
	want(t, "payment total", p1.obj("details")["total"], any("500.00"))
	c1 := a.do(call{method: "POST", path: confirmPath(p1), status: 200, body: obj{"device_id": "laptop-1", "proofs": []any{pwProof}}})
	want(t, "p1 level", c1.str("verification_level"), "single_factor")
	want(t, "p1 daily_limit", c1.str("daily_limit"), "1000.00")
	want(t, "p1 daily_used", c1.str("daily_used"), "500.00")

	// Single factor past the cap: refused, and the refusal replays.
	p2 := pay("600.00")
	refused := call{method: "POST", path: confirmPath(p2), key: "confirm-p2", status: 422,
		body: obj{"device_id": "laptop-1", "proofs": []any{pwProof}}}
	limits := obj{"limit": "1000.00", "used": "500.00", "remaining": "500.00", "cap": "single_factor_daily", "verification_level": "single_factor"}
	a.problem(refused, "daily_limit_exceeded", limits)
	replayed := a.problem(refused, "daily_limit_exceeded", limits)
	want(t, "refusal Idempotent-Replayed", replayed.header.Get("Idempotent-Replayed"), "true")
	a.problem(call{method: "POST", path: confirmPath(p2), status: 409, body: obj{"device_id": "laptop-1", "proofs": []any{pwProof}}}, "conflict", nil)

	// A wrong password leaves the payment pending; password + certificate
	// signature over the challenge then confirms it at the agreed limit.
	p3 := pay("600.00")
	a.problem(call{method: "POST", path: confirmPath(p3), status: 422,
		body: obj{"device_id": "laptop-1", "proofs": []any{obj{"factor_id": pw, "password": "not my password"}}}},
		"proof_invalid", obj{"attempts_remaining": 4.0})
	challenge, err := base64.StdEncoding.DecodeString(p3.str("challenge"))
	if err != nil {
		t.Fatal(err)
	}
	sig := base64.StdEncoding.EncodeToString(ed25519.Sign(priv, challenge))
	c3 := a.do(call{method: "POST", path: confirmPath(p3), status: 200,
		body: obj{"device_id": "laptop-1", "proofs": []any{pwProof, obj{"factor_id": cert, "signature": sig}}}})
	want(t, "p3 level", c3.str("verification_level"), "two_factor_certificate")
	want(t, "p3 daily_limit", c3.str("daily_limit"), "50000.00")
	want(t, "p3 daily_used", c3.str("daily_used"), "1100.00")

	// Withdrawal with password + a fresh TOTP step (the login used this one).
	clk.Advance(domain.TOTPStep)
	w := a.do(call{method: "POST", path: acct + "/withdrawals", status: 201,
		body: obj{"amount": "300.00", "currency": "CNY", "device_id": "laptop-1", "proofs": []any{pwProof, obj{"factor_id": totp, "code": code()}}}})
	want(t, "withdrawal level", w.str("verification_level"), "two_factor")
	// A withdrawal refused after its proofs verified is recorded, and its
	// replay answers the same problem.
	tooMuch := call{method: "POST", path: acct + "/withdrawals", key: "withdraw-too-much", status: 422,
		body: obj{"amount": "99999.00", "device_id": "laptop-1", "proofs": []any{pwProof}}}
	funds := obj{"available": "8600.00", "required": "99999.00"}
	a.problem(tooMuch, "insufficient_funds", funds)
	want(t, "withdrawal refusal Idempotent-Replayed", a.problem(tooMuch, "insufficient_funds", funds).header.Get("Idempotent-Replayed"), "true")
	lastOp := func() map[string]any {
		t.Helper()
		ops := a.do(call{method: "GET", path: acct + "/operations", status: 200}).list("operations")
		if len(ops) == 0 {
			t.Fatal("no operations")
		}
		return ops[len(ops)-1].(map[string]any)
	}
	want(t, "refused withdrawal recorded as", lastOp()["type"], any("WithdrawalRejected"))

	// R7: a code that verified beside a wrong password is spent.
	clk.Advance(domain.TOTPStep)
	spent := obj{"factor_id": totp, "code": code()}
	a.problem(call{method: "POST", path: acct + "/sessions", status: 401,
		body: obj{"device_id": "laptop-1", "proofs": []any{spent, obj{"factor_id": pw, "password": "not my password"}}}},
		"authentication_failed", obj{"attempts_remaining": 4.0})
	a.problem(call{method: "POST", path: acct + "/sessions", status: 401,
		body: obj{"device_id": "laptop-1", "proofs": []any{pwProof, spent}}},
		"authentication_failed", obj{"attempts_remaining": 3.0})

	// R14: a suspended payee takes no payments, at confirmation (the
	// payment is rejected, recorded, and the refusal replays) or initiation.
	p4 := pay("10.00")
	want(t, "bob suspended", a.do(call{method: "POST", path: "/v1/accounts/" + bob + "/suspend", status: 200, body: obj{}}).str("status"), "suspended")
	unavailable := obj{"field": "payee_account_id", "payee_status": "suspended"}
	toSuspended := call{method: "POST", path: confirmPath(p4), key: "confirm-p4", status: 409, body: obj{"device_id": "laptop-1", "proofs": []any{pwProof}}}
	a.problem(toSuspended, "payee_unavailable", unavailable)
	want(t, "payee refusal Idempotent-Replayed", a.problem(toSuspended, "payee_unavailable", unavailable).header.Get("Idempotent-Replayed"), "true")
	want(t, "rejected payment recorded as", lastOp()["type"], any("PaymentRejected"))
	a.problem(call{method: "POST", path: acct + "/payments", status: 409,
		body: obj{"payee_account_id": bob, "amount": "10.00", "channel": "app", "terminal": "desktop", "device_id": "laptop-1"}},
		"payee_unavailable", unavailable)
	want(t, "bob reactivated", a.do(call{method: "POST", path: "/v1/accounts/" + bob + "/reactivate", status: 200}).str("status"), "active")

	// Sensitive changes (R1): proofs verified like a withdrawal's; an
	// identity change needs one category, a phone change two.
	clk.Advance(domain.TOTPStep)
	idc := a.do(call{method: "PUT", path: acct + "/identity", key: "identity-1", status: 200,
		body: obj{"holder_name": "Li Wei", "device_id": "laptop-1", "proofs": []any{pwProof}}})
	want(t, "identity categories", len(idc.list("categories")), 1)
	const newPhone = "+8613800138000"
	weakPhone := call{method: "PUT", path: acct + "/phone", key: "phone-weak", status: 422,
		body: obj{"phone": newPhone, "device_id": "laptop-1", "proofs": []any{pwProof}}}
	weak := obj{"required_categories": 2.0, "verified_categories": 1.0}
	a.problem(weakPhone, "insufficient_verification", weak)
	want(t, "weak phone change Idempotent-Replayed", a.problem(weakPhone, "insufficient_verification", weak).header.Get("Idempotent-Replayed"), "true")
	want(t, "weak phone change recorded as", lastOp()["type"], any("ChangeRejected"))
	a.problem(call{method: "PUT", path: acct + "/phone", status: 422,
		body: obj{"phone": newPhone, "device_id": "phone-1", "proofs": []any{pwProof, obj{"factor_id": totp, "code": code()}}}},
		"factor_not_independent", weak)
	clk.Advance(domain.TOTPStep)
	ph := a.do(call{method: "PUT", path: acct + "/phone", status: 200,
		body: obj{"phone": newPhone, "device_id": "laptop-1", "proofs": []any{pwProof, obj{"factor_id": totp, "code": code()}}}})
	want(t, "phone", ph.str("phone"), newPhone)
	want(t, "phone categories", len(ph.list("categories")), 2)
	a.problem(call{method: "PUT", path: acct + "/phone", status: 422,
		body: obj{"phone": newPhone, "device_id": "laptop-1", "proofs": []any{obj{"factor_id": pw, "password": "not my password"}}}},
		"proof_invalid", obj{"attempts_remaining": 4.0})
	want(t, "wrong proof on a change recorded as", lastOp()["type"], any("VerificationFailed"))
	a.problem(call{method: "PUT", path: acct + "/phone", status: 400, docRejects: true,
		body: json.RawMessage(`{"phone":"` + newPhone + `","device_id":"laptop-1","proofs":[{"factor_id":"` + pw + `","password":"x","pin":"1234"}]}`)},
		"forbidden_field", obj{"field": "proofs[0].pin"})

	// Credential resets: two categories, never the factor being reset;
	// certificate signatures sign the change's challenge at a version.
	version := func() int64 {
		t.Helper()
		v, _ := a.do(call{method: "GET", path: acct, status: 200}).body["version"].(float64)
		return int64(v)
	}
	changeSig := func(kind, subject string, v int64) string {
		return base64.StdEncoding.EncodeToString(ed25519.Sign(priv, domain.ChangeChallenge(kind, alice, v, subject)))
	}
	resetPW := acct + "/factors/" + pw + "/reset"
	a.problem(call{method: "POST", path: resetPW, status: 422,
		body: obj{"password": "a brand new passphrase", "device_id": "laptop-1", "proofs": []any{pwProof}}},
		"factor_not_independent", obj{"field": "proofs"})
	v := version()
	certOnly := obj{"password": "a brand new passphrase", "device_id": "laptop-1", "version": v,
		"proofs": []any{obj{"factor_id": cert, "signature": changeSig(domain.ChangeKindCredentialReset, pw, v)}}}
	a.problem(call{method: "POST", path: resetPW, status: 422, body: certOnly}, "insufficient_verification", obj{"required_categories": 2.0, "verified_categories": 1.0})
	a.problem(call{method: "POST", path: resetPW, status: 409, body: certOnly}, "version_conflict", obj{"current_version": float64(v + 1)})
	delete(certOnly, "version")
	a.problem(call{method: "POST", path: resetPW, status: 400, body: certOnly}, "invalid_request", obj{"field": "version"})
	v = version()
	rt := a.do(call{method: "POST", path: acct + "/factors/" + totp + "/reset", key: "reset-totp", status: 200,
		body: obj{"device_id": "laptop-1", "version": v, "proofs": []any{pwProof, obj{"factor_id": cert, "signature": changeSig(domain.ChangeKindCredentialReset, totp, v)}}}})
	want(t, "reset method", rt.str("method"), "totp")
	if rt.str("totp_secret") == "" || rt.str("totp_secret") == secret {
		t.Fatalf("TOTP reset returned seed %q", rt.str("totp_secret"))
	}
	secret = rt.str("totp_secret")
	a.do(call{method: "POST", path: acct + "/sessions", status: 201,
		body: obj{"device_id": "laptop-1", "proofs": []any{pwProof, obj{"factor_id": totp, "code": code()}}}})

	// Limits, suspension.
	lim := a.do(call{method: "PUT", path: acct + "/limits", key: "limit-1", status: 200, body: obj{"agreed_daily_limit": "20000.00"}})
	want(t, "previous limit", lim.str("previous"), "50000.00")
	want(t, "suspended", a.do(call{method: "POST", path: acct + "/suspend", status: 200, body: obj{"reason": "travelling"}}).str("status"), "suspended")
	a.problem(call{method: "POST", path: acct + "/deposits", status: 409, body: obj{"amount": "1.00"}}, "account_suspended", nil)
	want(t, "reactivated", a.do(call{method: "POST", path: acct + "/reactivate", status: 200}).str("status"), "active")

	// Reads.
	want(t, "balance", a.do(call{method: "GET", path: acct + "/balance", status: 200}).str("available"), "8600.00")
	asOf := url.QueryEscape(afterDeposit.Format(time.RFC3339Nano))
	want(t, "balance as_of", a.do(call{method: "GET", path: acct + "/balance?as_of=" + asOf, status: 200}).str("available"), "10000.00")
	want(t, "bob balance", a.do(call{method: "GET", path: "/v1/accounts/" + bob + "/balance", status: 200}).str("available"), "1100.00")
	var entries []any
	cursor := ""
	for page := 0; page < 5; page++ {
		q := "?limit=2"
		if cursor != "" {
			q += "&cursor=" + cursor
		}
		st := a.do(call{method: "GET", path: acct + "/statement" + q, status: 200})
		entries = append(entries, st.list("entries")...)
		if cursor = st.str("next_cursor"); cursor == "" {
			break
		}
	}
	want(t, "statement entries", len(entries), 4)
	if len(entries) == 4 {
		want(t, "last balance_after", entries[3].(map[string]any)["balance_after"], any("8600.00"))
	}
	a.problem(call{method: "GET", path: acct + "/statement?limit=0", status: 400, docRejects: true}, "invalid_request", obj{"field": "limit"})
	ops := a.do(call{method: "GET", path: acct + "/operations?limit=5", status: 200})
	want(t, "operations page", len(ops.list("operations")), 5)
	want(t, "operations next_cursor", ops.str("next_cursor"), "6")
	a.do(call{method: "GET", path: acct + "/operations?cursor=6", status: 200})
	usage := a.do(call{method: "GET", path: acct, status: 200}).obj("daily_usage")
	want(t, "usage single_factor", usage["single_factor"], any("500.00"))
	want(t, "usage all", usage["all"], any("1100.00"))

	// Factor loss and revocation.
	a.do(call{method: "POST", path: acct + "/factors/" + totp + "/loss-report", status: 200})
	a.do(call{method: "POST", path: acct + "/factors/" + cert + "/revoke", status: 200, body: obj{"reason": "rotated"}})
	a.problem(call{method: "POST", path: acct + "/factors/" + cert + "/revoke", status: 409, body: obj{}}, "conflict", nil)

	// R19 and strict decoding: the document forbids these bodies too.
	a.problem(call{method: "POST", path: acct + "/deposits", status: 400, docRejects: true,
		body: json.RawMessage(`{"amount":"1.00","card":{"cvv":"123"}}`)}, "forbidden_field", obj{"field": "card.cvv"})
	a.problem(call{method: "POST", path: acct + "/payments", status: 400, docRejects: true,
		body: json.RawMessage(`{"payee_account_id":"` + bob + `","amount":"1.00","channel":"app","terminal":"mobile","device_id":"phone-1","PIN-Code":"1234"}`)},
		"forbidden_field", obj{"field": "PIN-Code"})
	a.problem(call{method: "POST", path: acct + "/deposits", status: 400, docRejects: true,
		body: json.RawMessage(`{"amount":"1.00","colour":"red"}`)}, "invalid_request", obj{"field": "colour"})

	// Idempotency: the same key and body replays; another body is refused.
	d := a.do(deposit)
	want(t, "deposit Idempotent-Replayed", d.header.Get("Idempotent-Replayed"), "true")
	a.problem(call{method: "POST", path: acct + "/deposits", key: "deposit-1", status: 409, body: obj{"amount": "5.00"}}, "idempotency_key_reused", nil)

	// Lockout (R9) on carol, then closing.
	cacct := "/v1/accounts/" + carol
	cpw := a.do(call{method: "POST", path: cacct + "/factors", status: 201, body: obj{"method": "password", "password": password}}).str("factor_id")
	wrong := call{method: "POST", path: cacct + "/sessions", status: 401,
		body: obj{"device_id": "laptop-2", "proofs": []any{obj{"factor_id": cpw, "password": "guess guess"}}}}
	for left := 4.0; left >= 1; left-- {
		a.problem(wrong, "authentication_failed", obj{"attempts_remaining": left})
	}
	wrong.status = 423
	if r := a.problem(wrong, "access_locked", nil); r.str("locked_until") == "" {
		t.Error("access_locked without locked_until")
	}
	a.problem(call{method: "POST", path: cacct + "/sessions", status: 423,
		body: obj{"device_id": "laptop-2", "proofs": []any{obj{"factor_id": cpw, "password": password}}}}, "access_locked", nil)
	want(t, "locked_until on the account", a.do(call{method: "GET", path: cacct, status: 200}).str("locked_until") != "", true)
	want(t, "closed", a.do(call{method: "POST", path: cacct + "/close", status: 200, body: obj{"reason": "moving abroad"}}).str("status"), "closed")
	a.problem(call{method: "POST", path: cacct + "/deposits", status: 409, body: obj{"amount": "1.00"}}, "account_closed", nil)
	a.problem(call{method: "POST", path: "/v1/accounts/" + bob + "/close", status: 409, body: obj{}}, "conflict", obj{"available": "1100.00"})

	// Not found.
	const nobody = "01JD8X3Q4Z5Y6W7V8T9S0R1P2N"
	a.problem(call{method: "GET", path: "/v1/accounts/" + nobody, status: 404}, "not_found", nil)
	a.problem(call{method: "GET", path: "/v1/accounts/" + nobody + "/balance", status: 404}, "not_found", nil)
	a.problem(call{method: "POST", path: acct + "/payments/" + nobody + "/confirm", status: 404,
		body: obj{"device_id": "laptop-1", "proofs": []any{pwProof}}}, "not_found", nil)
	a.unknownRoute("/v1/nothing-here")
}

// unknownRoute checks the catch-all: an undocumented path is a not_found
// problem that still matches the Problem schema.
func (a *api) unknownRoute(path string) {
	a.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, a.base+path, nil)
	if _, _, err := a.router.FindRoute(req); err == nil {
		a.t.Fatalf("%s unexpectedly documented", path)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	var body any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		a.t.Fatal(err)
	}
	want(a.t, "unknown route status", resp.StatusCode, http.StatusNotFound)
	want(a.t, "unknown route content type", resp.Header.Get("Content-Type"), "application/problem+json")
	if err := a.doc.Components.Schemas["Problem"].Value.VisitJSON(body); err != nil {
		a.t.Errorf("unknown route reply does not match Problem: %v", err)
	}
	a.checkProblem("GET "+path, reply{status: resp.StatusCode, body: body.(map[string]any)})
}
