package httpapi_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // the policy's Asia/Shanghai day, on hosts without zoneinfo

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/httpapi"
	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/staffkeys"
)

func init() {
	// The annual report and the disclosure page may be HTML, which the
	// document gives as a string; validate it as text.
	openapi3filter.RegisterBodyDecoder("text/html", openapi3filter.PlainBodyDecoder)
}

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

// api sends requests to the real server and checks each request and

// TestOpenAPIAccessMatchesTable: every operation's x-access is the
// server's access table (ledger.Access of the route's httpapi.Routes
// operation), its security alternatives are the kinds of caller that
// table admits, and it documents the refusals access control can give.
func TestOpenAPIAccessMatchesTable(t *testing.T) {
	doc := loadDoc(t)
	routeOps := map[string]ledger.Op{}
	for pattern, op := range httpapi.Routes {
		routeOps[pathParam.ReplaceAllString(pattern, "{}")] = op
	}
	for _, name := range []string{"session", "staffKey"} {
		s := doc.Components.SecuritySchemes[name]
		if s == nil || s.Value.Type != "http" || s.Value.Scheme != "bearer" {
			t.Fatalf("security scheme %s: want an http bearer scheme", name)
		}
		if p, _ := s.Value.Extensions["x-token-pattern"].(string); p == "" {
			t.Errorf("security scheme %s has no x-token-pattern", name)
		} else if _, err := regexp.Compile(p); err != nil {
			t.Errorf("security scheme %s: x-token-pattern: %v", name, err)
		}
	}
	if got, want := doc.Components.Schemas["Session"].Value.Properties["token"].Value.Pattern,
		doc.Components.SecuritySchemes["session"].Value.Extensions["x-token-pattern"]; got != want {
		t.Errorf("Session.token pattern %q, session scheme's x-token-pattern %v", got, want)
	}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			where := method + " " + path
			ledgerOp, served := routeOps[method+" "+pathParam.ReplaceAllString(path, "{}")]
			if !served {
				t.Errorf("%s: not in httpapi.Routes", where)
				continue
			}
			rule := ledger.Rule{Public: true}
			if ledgerOp != "" {
				var known bool
				if rule, known = ledger.Access(ledgerOp); !known {
					t.Errorf("%s: operation %q has no access rule", where, ledgerOp)
					continue
				}
			}
			x, _ := op.Extensions["x-access"].(map[string]any)
			if x == nil {
				t.Errorf("%s: no x-access", where)
				continue
			}
			var roles, wantRoles []string
			for _, r := range x["roles"].([]any) {
				roles = append(roles, r.(string))
			}
			for _, r := range rule.Roles {
				wantRoles = append(wantRoles, string(r))
			}
			sort.Strings(roles)
			sort.Strings(wantRoles)
			if x["public"] != rule.Public || x["holder"] != rule.Holder || !slices.Equal(roles, wantRoles) {
				t.Errorf("%s: x-access %v, want the access table's %+v", where, x, rule)
			}
			sec := doc.Security
			if op.Security != nil {
				sec = *op.Security
			}
			anonymous, session, staff := false, false, false
			for _, req := range sec {
				if len(req) > 1 {
					t.Errorf("%s: a security requirement combines %v; each alternative is one credential", where, req)
				}
				anonymous = anonymous || len(req) == 0
				_, s := req["session"]
				_, k := req["staffKey"]
				session, staff = session || s, staff || k
			}
			if ledgerOp == "" {
				if len(sec) != 0 {
					t.Errorf("%s: a public document route has security %v, want []", where, sec)
				}
			} else if anonymous != rule.Public || session != rule.Holder || staff != (len(rule.Roles) > 0) {
				t.Errorf("%s: security %v does not match the access table's %+v", where, sec, rule)
			}
			// Any invalid credential is 401, and a caller without valid
			// ones may be throttled, on every route.
			for _, status := range []string{"401", "429"} {
				if op.Responses.Value(status) == nil {
					t.Errorf("%s: no %s response", where, status)
				}
			}
			if ledgerOp != "" && op.Responses.Value("403") == nil {
				t.Errorf("%s: no 403 response", where)
			}
			if !strings.Contains(op.Description, "Access: ") {
				t.Errorf("%s: the description does not say who may call it", where)
			}
		}
	}
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

// newAPI checks requests to the server at base against the document.
func newAPI(t *testing.T, base string) *api {
	t.Helper()
	doc := loadDoc(t)
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &api{t: t, base: base, doc: doc, router: router, client: &http.Client{Timeout: 10 * time.Second}}
}

// bearer is the document's side of authentication, for request
// validation: a security requirement is met by an Authorization: Bearer
// header whose token has the format the scheme documents
// (x-token-pattern). Whether the server accepts the token is the
// server's business.
func bearer(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	s := in.SecurityScheme
	if s.Type != "http" || s.Scheme != "bearer" {
		return fmt.Errorf("security scheme %s is not http bearer", in.SecuritySchemeName)
	}
	tok, found := strings.CutPrefix(in.RequestValidationInput.Request.Header.Get("Authorization"), "Bearer ")
	if !found {
		return in.NewError(errors.New("no Authorization: Bearer header"))
	}
	pattern, _ := s.Extensions["x-token-pattern"].(string)
	re, err := regexp.Compile(pattern)
	if pattern == "" || err != nil {
		return fmt.Errorf("security scheme %s: x-token-pattern %q: %v", in.SecuritySchemeName, pattern, err)
	}
	if !re.MatchString(tok) {
		return in.NewError(fmt.Errorf("the token is not a %s token", in.SecuritySchemeName))
	}
	return nil
}

// call is one request of the scenario.
type call struct {
	method, path string
	token        string // the bearer credential; "" sends none
	body         any    // marshalled; a json.RawMessage is sent as is
	key          string
	status       int
	// docRejects marks a request the document itself forbids (unknown or
	// forbidden fields, out-of-range query, missing or malformed
	// credentials): request validation must fail for it, and the server
	// must refuse it too.
	docRejects bool
}

type reply struct {
	status int
	header http.Header
	body   map[string]any
	// text is the body of a reply that is not JSON (CSV, HTML).
	text string
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

func (a *api) newRequest(c call, payload []byte) *http.Request {
	a.t.Helper()
	var body io.Reader
	if payload != nil {
		body = bytes.NewReader(payload)
	}
	req, err := http.NewRequest(c.method, a.base+c.path, body)
	if err != nil {
		a.t.Fatal(err)
	}
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.key != "" {
		req.Header.Set("Idempotency-Key", c.key)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return req
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
	where := c.method + " " + c.path
	ctx := context.Background()

	vreq := a.newRequest(c, payload)
	route, params, err := a.router.FindRoute(vreq)
	if err != nil {
		a.t.Fatalf("%s: not in the document: %v", where, err)
	}
	in := &openapi3filter.RequestValidationInput{Request: vreq, PathParams: params, Route: route,
		Options: &openapi3filter.Options{MultiError: true, AuthenticationFunc: bearer}}
	err = openapi3filter.ValidateRequest(ctx, in)
	switch {
	case err != nil && !c.docRejects:
		a.t.Fatalf("%s: request does not match the document: %v", where, err)
	case err == nil && c.docRejects:
		a.t.Fatalf("%s: the document accepts a request it should forbid (body %s)", where, payload)
	}

	resp, err := a.client.Do(a.newRequest(c, payload))
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
	if strings.HasPrefix(c.path, "/v1/") && c.path != "/v1/openapi.json" && resp.Header.Get("Cache-Control") != "no-store" {
		a.t.Errorf("%s: Cache-Control %q, want no-store", where, resp.Header.Get("Cache-Control"))
	}
	r := reply{status: resp.StatusCode, header: resp.Header}
	if resp.StatusCode == http.StatusNoContent {
		if len(raw) != 0 {
			a.t.Errorf("%s: 204 with a body: %s", where, raw)
		}
		return r
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); !strings.HasSuffix(mt, "json") {
		r.text = string(raw)
		return r
	}
	if err := json.Unmarshal(raw, &r.body); err != nil {
		a.t.Fatalf("%s: reply is not a JSON object: %v", where, err)
	}
	if resp.StatusCode >= 400 {
		a.checkProblem(where, r)
	}
	return r
}

// checkProblem checks what the schema cannot: the status member and the
// code agree with the HTTP status and with the server's one table, and a
// rate_limited problem's retry_after is its Retry-After.
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
	if code == "rate_limited" {
		if secs, _ := r.body["retry_after"].(float64); r.header.Get("Retry-After") != fmt.Sprint(int(secs)) || secs < 1 {
			a.t.Errorf("%s: retry_after %v with Retry-After %q", where, r.body["retry_after"], r.header.Get("Retry-After"))
		}
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

// undocumented sends a request the document has no operation for (an
// unknown path, or a known path with another method) and checks the
// problem it gets against the Problem schema; allow is the Allow header a
// 405 must carry.
func (a *api) undocumented(method, path, token string, status int, allow string) {
	a.t.Helper()
	req, _ := http.NewRequest(method, a.base+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if _, _, err := a.router.FindRoute(req); err == nil {
		a.t.Fatalf("%s %s unexpectedly documented", method, path)
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
	where := method + " " + path
	want(a.t, where+" status", resp.StatusCode, status)
	want(a.t, where+" content type", resp.Header.Get("Content-Type"), "application/problem+json")
	want(a.t, where+" Allow", resp.Header.Get("Allow"), allow)
	if err := a.doc.Components.Schemas["Problem"].Value.VisitJSON(body); err != nil {
		a.t.Errorf("%s: reply does not match Problem: %v", where, err)
	}
	a.checkProblem(where, reply{status: resp.StatusCode, header: resp.Header, body: body.(map[string]any)})
}

func want[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

type obj = map[string]any

// checked is an operator's identity check reference.
const checked = "branch-0451/passport-check"

// TestOpenAPIUnavailable: with the projection stopped, a close cannot know
// the balance to close on. It answers 503 unavailable with Retry-After,
// validated against the document, and records nothing.
func TestOpenAPIUnavailable(t *testing.T) {
	clk := &clock{now: time.Date(2026, 3, 2, 1, 0, 5, 0, time.UTC)}
	st := newStackWith(t, clk, false, 50*time.Millisecond)
	a := newAPI(t, st.URL)
	operator := st.key(t, staffkeys.RoleOperator)
	id := a.do(call{method: "POST", path: "/v1/accounts", token: operator, status: 201,
		body: obj{"holder_name": "Zhang Min", "currency": "CNY", "identity_check": checked,
			"factor": obj{"method": "password", "password": "correct horse battery staple"}}}).str("id")
	r := a.problem(call{method: "POST", path: "/v1/accounts/" + id + "/close", token: operator, key: "close-1", status: 503,
		body: obj{"reason": "moving"}}, "unavailable", nil)
	want(t, "Retry-After", r.header.Get("Retry-After"), "1")
	var types []string
	for _, op := range a.do(call{method: "GET", path: "/v1/accounts/" + id + "/operations", token: operator, status: 200}).list("operations") {
		types = append(types, op.(map[string]any)["type"].(string))
	}
	want(t, "operations after the refused close", strings.Join(types, " "), "AccountOpened FactorEnrolled")
	want(t, "status after the refused close", a.do(call{method: "GET", path: "/v1/accounts/" + id, token: operator, status: 200}).str("status"), "active")
}

// TestOpenAPIScenario drives the real handlers through a realistic day,
// with real credentials (an operator opens accounts and enrols factors,
// the funding desk deposits, holders act through their sessions, staff
// read), and validates every request and reply against the document,
// refusals of access control included.
func TestOpenAPIScenario(t *testing.T) {
	clk := &clock{now: time.Date(2026, 3, 2, 1, 0, 5, 0, time.UTC)} // 09:00:05 in Shanghai
	st := newStack(t, clk)
	a := newAPI(t, st.URL)
	operator, funding := st.key(t, staffkeys.RoleOperator), st.key(t, staffkeys.RoleFunding)
	finance, compliance := st.key(t, staffkeys.RoleFinance), st.key(t, staffkeys.RoleCompliance)
	auditor, regulator := st.key(t, staffkeys.RoleAuditor), st.key(t, staffkeys.RoleRegulator)
	const password = "correct horse battery staple"

	a.do(call{method: "GET", path: "/v1/openapi.json", status: 200})
	a.do(call{method: "GET", path: "/healthz", status: 200})
	a.do(call{method: "GET", path: "/healthz", token: auditor, status: 200})

	// Accounts: an operator opens them for customers after an identity
	// check, with their first factor; opening is idempotent with a key.
	open := func(name, kind, key string) call {
		return call{method: "POST", path: "/v1/accounts", token: operator, key: key, status: 201,
			body: obj{"holder_name": name, "currency": "CNY", "kind": kind, "identity_check": checked,
				"factor": obj{"method": "password", "password": password}}}
	}
	openAlice := open("Li Wei", "personal", "open-alice")
	opened := a.do(openAlice)
	alice, pw := opened.str("id"), opened.obj("first_factor")["factor_id"].(string)
	want(t, "first factor method", opened.obj("first_factor")["method"], any("password"))
	want(t, "an operator's first factor cools off", opened.obj("first_factor")["usable_from"], nil)
	again := a.do(openAlice)
	want(t, "replayed open id", again.str("id"), alice)
	want(t, "Idempotent-Replayed", again.header.Get("Idempotent-Replayed"), "true")
	bobOpened := a.do(open("Wang Fang", "merchant", ""))
	bob, bobPW := bobOpened.str("id"), bobOpened.obj("first_factor")["factor_id"].(string)
	carolOpened := a.do(open("Zhang Min", "personal", ""))
	carol, carolPW := carolOpened.str("id"), carolOpened.obj("first_factor")["factor_id"].(string)
	noCheck := open("Chen Jie", "personal", "")
	delete(noCheck.body.(obj), "identity_check")
	noCheck.status = 400
	a.problem(noCheck, "invalid_request", obj{"field": "identity_check"})
	wrongRole := open("Chen Jie", "personal", "")
	wrongRole.token, wrongRole.status = funding, 403
	a.problem(wrongRole, "forbidden", nil)
	acct := "/v1/accounts/" + alice

	// Anyone may open an account without credentials; its first factor
	// then cools off, and a TOTP seed is shown once.
	openDave := call{method: "POST", path: "/v1/accounts", key: "open-dave", status: 201,
		body: obj{"holder_name": "Liu Yang", "currency": "CNY", "factor": obj{"method": "totp", "device_id": "phone-d"}}}
	daveOpened := a.do(openDave)
	dave, daveFirst := daveOpened.str("id"), daveOpened.obj("first_factor")
	if daveFirst["totp_secret"] == nil || daveFirst["usable_from"] == nil {
		t.Fatalf("a self-opened account's TOTP factor: %v", daveFirst)
	}
	openDave.status = 409
	want(t, "replayed TOTP opening Idempotent-Replayed", a.problem(openDave, "secret_shown_once", nil).header.Get("Idempotent-Replayed"), "true")

	// Factors enrolled by the operator after an identity check are usable
	// at once: TOTP on the phone, a certificate.
	totpReply := a.do(call{method: "POST", path: acct + "/factors", token: operator, key: "enrol-totp", status: 201,
		body: obj{"factor": obj{"method": "totp", "device_id": "phone-1"}, "identity_check": checked}})
	totp, secret := totpReply.str("factor_id"), totpReply.str("totp_secret")
	want(t, "operator-enrolled usable_from", totpReply.str("usable_from"), "")
	pub, priv, err := ed25519.GenerateKey(bytes.NewReader(bytes.Repeat([]byte{7}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	cert := a.do(call{method: "POST", path: acct + "/factors", token: operator, status: 201,
		body: obj{"factor": obj{"method": "certificate", "public_key": base64.StdEncoding.EncodeToString(pub)}, "identity_check": checked}}).str("factor_id")
	a.problem(call{method: "POST", path: acct + "/factors", token: operator, status: 400,
		body: obj{"factor": obj{"method": "password", "password": "another passphrase"}}}, "invalid_request", obj{"field": "identity_check"})
	code := func() string {
		t.Helper()
		c, err := domain.TOTPCode(secret, domain.TOTPStepAt(clk.Peek()))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	pwProof := obj{"factor_id": pw, "password": password}
	totpProof := func() obj { return obj{"factor_id": totp, "code": code()} }

	// Device signatures (R6), built from the document's x-device-challenge
	// alone: signed has a registered device sign an instruction of
	// operation op on alice's account (params: the other path parameters)
	// as of now.
	dc := deviceChallengesOf(t, a.doc)
	laptop, tablet := newDevice(t, "laptop-1", 11), newDevice(t, "tablet-1", 12)
	signedAt := func() string { return clk.Peek().UTC().Format(time.RFC3339Nano) }
	pathOf := func(params map[string]string) map[string]string {
		out := map[string]string{"id": alice}
		for k, v := range params {
			out[k] = v
		}
		return out
	}
	signed := func(op string, d device, params map[string]string, body obj) obj {
		t.Helper()
		body["signed_at"] = signedAt()
		return dc.sign(t, op, "device_signature", d.priv, pathOf(params), body)
	}

	// Login: a password and a TOTP from a device that is only claimed
	// open a session on one category (R6: the TOTP is no second factor
	// there); then a wrong password.
	claimed := a.do(call{method: "POST", path: acct + "/sessions", status: 201,
		body: obj{"device_id": "laptop-1", "proofs": []any{pwProof, totpProof()}}})
	want(t, "login categories from a claimed device", strings.Join(anyStrings(claimed.list("categories")), " "), "knowledge")
	aliceTok := claimed.str("token")
	a.problem(call{method: "POST", path: acct + "/sessions", status: 401,
		body: obj{"device_id": "laptop-1", "proofs": []any{obj{"factor_id": pw, "password": "not my password"}}}},
		"authentication_failed", obj{"attempts_remaining": 4.0})
	// A certificate proves nothing at login: there is no challenge.
	a.problem(call{method: "POST", path: acct + "/sessions", status: 400,
		body: obj{"device_id": "laptop-1", "proofs": []any{obj{"factor_id": cert, "signature": base64.StdEncoding.EncodeToString(make([]byte, 64))}}}},
		"invalid_request", obj{"field": "proofs"})

	// Devices: the first needs only the session; the new key signs its own
	// registration, which proves the device holds it.
	devices := acct + "/devices"
	newDeviceBody := func(d device, label string) obj {
		t.Helper()
		body := obj{"device": obj{"device_id": d.id, "public_key": d.publicKey(), "label": label, "signed_at": signedAt()}}
		return dc.sign(t, "registerDevice", "device.signature", d.priv, pathOf(nil), body)
	}
	forged := newDeviceBody(tablet, "Li Wei's laptop")
	forged["device"].(obj)["device_id"] = "laptop-1"
	a.problem(call{method: "POST", path: devices, token: aliceTok, status: 400, body: forged}, "invalid_request", obj{"field": "device.signature"})
	a.problem(call{method: "POST", path: devices, token: aliceTok, status: 400, docRejects: true, body: newDeviceBody(laptop, strings.Repeat("x", 101))},
		"invalid_request", obj{"field": "device.label"})
	registerLaptop := call{method: "POST", path: devices, token: aliceTok, key: "register-laptop", status: 201, body: newDeviceBody(laptop, "Li Wei's laptop")}
	reg := a.do(registerLaptop)
	want(t, "registered", reg.str("device_id"), "laptop-1")
	want(t, "first device's categories", len(reg.list("categories")), 0)
	want(t, "registration Idempotent-Replayed", a.do(registerLaptop).header.Get("Idempotent-Replayed"), "true")
	registerLaptop.key, registerLaptop.status = "", 409
	a.problem(registerLaptop, "conflict", nil)

	// Login from the registered laptop, which signs it: the TOTP delivered
	// to phone-1 is a second factor. The token is shown once, and the same
	// signature on another login (a password alone would do) is a replay:
	// only the laptop's key makes it, so it is a client's retry, refused as
	// malformed input (field signed_at) and not counted.
	clk.Advance(domain.TOTPStep)
	loginAlice := call{method: "POST", path: acct + "/sessions", key: "login-alice", status: 201,
		body: signed("login", laptop, nil, obj{"device_id": "laptop-1", "proofs": []any{pwProof, totpProof()}})}
	login := a.do(loginAlice)
	want(t, "login categories", len(login.list("categories")), 2)
	want(t, "idle_timeout_seconds", login.body["idle_timeout_seconds"], any(900.0))
	aliceTok = login.str("token")
	loginAlice.status = 409
	a.problem(loginAlice, "secret_shown_once", nil)
	a.problem(call{method: "POST", path: acct + "/sessions", status: 400, body: replaced(loginAlice.body, "proofs", []any{pwProof})},
		"invalid_request", obj{"field": "signed_at"})
	// A signature from a device that is not registered is a failed proof,
	// answered exactly like a wrong signature from a registered one and
	// counted alike, so that nobody learns which devices the account has.
	unregistered := a.problem(call{method: "POST", path: acct + "/sessions", status: 401,
		body: signed("login", tablet, nil, obj{"device_id": "tablet-1", "proofs": []any{pwProof}})}, "authentication_failed", obj{"attempts_remaining": 4.0})
	wrongSig := a.problem(call{method: "POST", path: acct + "/sessions", status: 401,
		body: signed("login", tablet, nil, obj{"device_id": "laptop-1", "proofs": []any{pwProof}})}, "authentication_failed", obj{"attempts_remaining": 3.0})
	want(t, "an unregistered device's detail", unregistered.str("detail"), wrongSig.str("detail"))
	if _, named := unregistered.body["field"]; named || strings.Contains(unregistered.str("detail"), "tablet-1") {
		t.Errorf("the refusal of an unregistered device names it: %v", unregistered.body)
	}
	// A device id is an identifier of 1 to 64 characters on a login too,
	// not a device's display name.
	a.problem(call{method: "POST", path: acct + "/sessions", status: 400, docRejects: true,
		body: obj{"device_id": strings.Repeat("d", 65), "proofs": []any{pwProof}}}, "invalid_request", obj{"field": "device_id"})
	a.problem(call{method: "POST", path: acct + "/sessions", status: 400, docRejects: true,
		body: obj{"device_id": "Li Wei's iPhone", "proofs": []any{pwProof}}}, "invalid_request", obj{"field": "device_id"})

	// A second device needs a step-up of two categories: none is
	// malformed; a password and a TOTP without a registered device's
	// signature count one (R6); signed by the laptop they count two.
	second := newDeviceBody(tablet, "Li Wei's tablet")
	a.problem(call{method: "POST", path: devices, token: aliceTok, status: 400, body: second}, "invalid_request", obj{"field": "device_id"})
	clk.Advance(domain.TOTPStep)
	second["device_id"], second["proofs"] = "laptop-1", []any{pwProof, totpProof()}
	a.problem(call{method: "POST", path: devices, token: aliceTok, status: 422, body: second},
		"factor_not_independent", obj{"required_categories": 2.0, "verified_categories": 1.0})
	clk.Advance(domain.TOTPStep)
	second["proofs"] = []any{pwProof, totpProof()}
	tab := a.do(call{method: "POST", path: devices, token: aliceTok, status: 201, body: signed("registerDevice", laptop, nil, second)})
	want(t, "second device's categories", strings.Join(anyStrings(tab.list("categories")), " "), "knowledge possession")
	want(t, "second device's label", tab.str("label"), "Li Wei's tablet")
	var registered []string
	for _, d := range a.do(call{method: "GET", path: acct, token: aliceTok, status: 200}).list("devices") {
		registered = append(registered, fmt.Sprint(d.(map[string]any)["device_id"], "/", d.(map[string]any)["label"]))
	}
	sort.Strings(registered)
	want(t, "devices", strings.Join(registered, ", "), "laptop-1/Li Wei's laptop, tablet-1/Li Wei's tablet")

	// Access control: no credentials, a malformed token, another account,
	// a role the route does not admit; 405 names the methods served.
	const nobody = "01JD8X3Q4Z5Y6W7V8T9S0R1P2N"
	a.problem(call{method: "GET", path: acct, status: 401, docRejects: true}, "unauthenticated", nil)
	a.problem(call{method: "GET", path: acct, token: "pls_garbage", status: 401, docRejects: true}, "unauthenticated", nil)
	a.problem(call{method: "GET", path: "/v1/accounts/" + bob, token: aliceTok, status: 403}, "forbidden", nil)
	a.problem(call{method: "GET", path: "/v1/accounts/" + nobody, token: aliceTok, status: 403}, "forbidden", nil)
	a.problem(call{method: "GET", path: acct, token: funding, status: 403}, "forbidden", nil)
	a.problem(call{method: "GET", path: acct + "/balance", token: regulator, status: 403}, "forbidden", nil)
	a.problem(call{method: "GET", path: acct, token: finance, status: 403}, "forbidden", nil)
	// A session where the document admits only staff keys (and the
	// reverse) is a request the document forbids as well.
	for _, tok := range []string{operator, auditor, aliceTok} {
		a.problem(call{method: "POST", path: acct + "/deposits", token: tok, status: 403, docRejects: tok == aliceTok,
			body: obj{"amount": "1.00", "reference": "not-mine-to-credit"}}, "forbidden", nil)
	}
	// The holder may lift a lock early (below), but there is none.
	a.problem(call{method: "POST", path: acct + "/unlock", token: aliceTok, status: 409,
		body: obj{"identity_check": checked}}, "conflict", nil)
	a.undocumented("GET", "/v1/accounts", "", http.StatusMethodNotAllowed, "POST")
	a.undocumented("PUT", "/v1/sessions/current", aliceTok, http.StatusMethodNotAllowed, "DELETE")

	// Bank account (a step-up of two categories) and a deposit by the
	// funding desk, once per bank reference.
	clk.Advance(domain.TOTPStep)
	a.problem(call{method: "POST", path: acct + "/bank-account", token: aliceTok, status: 400, docRejects: true,
		body: obj{"bank_account_number": "6222020200112233445", "holder_name": "Li Wei"}}, "invalid_request", obj{"field": "device_id"})
	bank := a.do(call{method: "POST", path: acct + "/bank-account", token: aliceTok, status: 201,
		body: signed("bindBankAccount", laptop, nil, obj{"bank_account_number": "6222020200112233445", "holder_name": "Li Wei",
			"device_id": "laptop-1", "proofs": []any{pwProof, totpProof()}})})
	want(t, "bank last4", bank.str("bank_account_last4"), "3445")
	deposit := call{method: "POST", path: acct + "/deposits", token: funding, key: "deposit-1", status: 201,
		body: obj{"amount": "10000.00", "currency": "CNY", "reference": "bank-transfer-123"}}
	depositID := a.do(deposit).str("deposit_id")
	afterDeposit := clk.Peek()
	clk.Advance(time.Second)
	a.problem(call{method: "POST", path: acct + "/deposits", token: funding, key: "deposit-again", status: 409,
		body: obj{"amount": "10000.00", "reference": "bank-transfer-123"}}, "bank_reference_used", obj{"deposit_id": depositID, "field": "reference"})
	a.problem(call{method: "POST", path: acct + "/deposits", token: funding, status: 400, docRejects: true,
		body: obj{"amount": "10.00"}}, "invalid_request", obj{"field": "reference"})

	pay := func(amount string) reply {
		t.Helper()
		return a.do(call{method: "POST", path: acct + "/payments", token: aliceTok, status: 201,
			body: obj{"payee_account_id": bob, "amount": amount, "currency": "CNY", "channel": "app",
				"terminal": "desktop", "device_id": "laptop-1", "description": "coffee beans"}})
	}
	confirmPath := func(p reply) string { return acct + "/payments/" + p.str("payment_id") + "/confirm" }

	// Single factor within the 1,000.00 cap. A confirmation's device id
	// is at most 64 characters.
	p1 := pay("500.00")
	want(t, "payment total", p1.obj("details")["total"], any("500.00"))
	a.problem(call{method: "POST", path: confirmPath(p1), token: aliceTok, status: 400, docRejects: true,
		body: obj{"device_id": strings.Repeat("d", 65), "proofs": []any{pwProof}}}, "invalid_request", obj{"field": "device_id"})
	c1 := a.do(call{method: "POST", path: confirmPath(p1), token: aliceTok, status: 200, body: obj{"device_id": "laptop-1", "proofs": []any{pwProof}}})
	want(t, "p1 level", c1.str("verification_level"), "single_factor")
	want(t, "p1 daily_limit", c1.str("daily_limit"), "1000.00")
	want(t, "p1 daily_used", c1.str("daily_used"), "500.00")

	// Single factor past the cap: refused, and the refusal replays.
	p2 := pay("600.00")
	refused := call{method: "POST", path: confirmPath(p2), token: aliceTok, key: "confirm-p2", status: 422,
		body: obj{"device_id": "laptop-1", "proofs": []any{pwProof}}}
	limits := obj{"limit": "1000.00", "used": "500.00", "remaining": "500.00", "cap": "single_factor_daily", "verification_level": "single_factor"}
	a.problem(refused, "daily_limit_exceeded", limits)
	replayed := a.problem(refused, "daily_limit_exceeded", limits)
	want(t, "refusal Idempotent-Replayed", replayed.header.Get("Idempotent-Replayed"), "true")
	a.problem(call{method: "POST", path: confirmPath(p2), token: aliceTok, status: 409, body: obj{"device_id": "laptop-1", "proofs": []any{pwProof}}}, "conflict", nil)

	// R6, the review's attack: the phone the TOTP is delivered to pays
	// past the single-factor cap with the password and its own TOTP,
	// calling itself laptop-9. It cannot sign as a registered device, so
	// its TOTP is no second factor: refused, and the payment rejected.
	clk.Advance(domain.TOTPStep)
	attack := a.do(call{method: "POST", path: acct + "/payments", token: aliceTok, status: 201,
		body: obj{"payee_account_id": bob, "amount": "1500.00", "currency": "CNY", "channel": "app", "terminal": "mobile", "device_id": "laptop-9"}})
	a.problem(call{method: "POST", path: confirmPath(attack), token: aliceTok, status: 422,
		body: obj{"device_id": "laptop-9", "proofs": []any{pwProof, totpProof()}}},
		"factor_not_independent", obj{"verification_level": "single_factor"})
	// The same password and a TOTP delivered to phone-1, from the
	// registered laptop that signs the confirmation: two factors.
	clk.Advance(domain.TOTPStep)
	p5 := pay("1500.00")
	c5 := a.do(call{method: "POST", path: confirmPath(p5), token: aliceTok, status: 200,
		body: signed("confirmPayment", laptop, map[string]string{"payment_id": p5.str("payment_id")},
			obj{"device_id": "laptop-1", "proofs": []any{pwProof, totpProof()}})})
	want(t, "p5 level", c5.str("verification_level"), "two_factor")
	want(t, "p5 daily_limit", c5.str("daily_limit"), "5000.00")
	want(t, "p5 daily_used", c5.str("daily_used"), "2000.00")

	// A wrong password leaves the payment pending; password + certificate
	// signature over the challenge then confirms it at the agreed limit.
	p3 := pay("600.00")
	a.problem(call{method: "POST", path: confirmPath(p3), token: aliceTok, status: 422,
		body: obj{"device_id": "laptop-1", "proofs": []any{obj{"factor_id": pw, "password": "not my password"}}}},
		"proof_invalid", obj{"attempts_remaining": 4.0})
	challenge, err := base64.StdEncoding.DecodeString(p3.str("challenge"))
	if err != nil {
		t.Fatal(err)
	}
	sig := base64.StdEncoding.EncodeToString(ed25519.Sign(priv, challenge))
	c3 := a.do(call{method: "POST", path: confirmPath(p3), token: aliceTok, status: 200,
		body: obj{"device_id": "laptop-1", "proofs": []any{pwProof, obj{"factor_id": cert, "signature": sig}}}})
	want(t, "p3 level", c3.str("verification_level"), "two_factor_certificate")
	want(t, "p3 daily_limit", c3.str("daily_limit"), "50000.00")
	want(t, "p3 daily_used", c3.str("daily_used"), "2600.00")

	// The account's log as token reads it, every page of it.
	opsOf := func(token string) []any {
		t.Helper()
		var ops []any
		for cursor := ""; ; {
			q := ""
			if cursor != "" {
				q = "?cursor=" + cursor
			}
			page := a.do(call{method: "GET", path: acct + "/operations" + q, token: token, status: 200})
			ops = append(ops, page.list("operations")...)
			if cursor = page.str("next_cursor"); cursor == "" {
				break
			}
		}
		if len(ops) == 0 {
			t.Fatal("no operations")
		}
		return ops
	}
	lastOp := func() map[string]any {
		t.Helper()
		ops := opsOf(aliceTok)
		return ops[len(ops)-1].(map[string]any)
	}
	lastTypes := func(n int) string {
		t.Helper()
		var types []string
		for _, op := range opsOf(aliceTok) {
			types = append(types, op.(map[string]any)["type"].(string))
		}
		return strings.Join(types[max(0, len(types)-n):], " ")
	}

	// Withdrawal with password + a fresh TOTP step (the binding used the
	// last one), signed by the laptop; the signature's use is recorded,
	// and the same signature on the same withdrawal with the password
	// alone is a replay: malformed input (field signed_at), recorded and
	// counted as nothing, and it moves no money again. A signature the
	// tablet makes as the laptop is a failed proof. A device id is at most
	// 100 characters.
	clk.Advance(domain.TOTPStep)
	a.problem(call{method: "POST", path: acct + "/withdrawals", token: aliceTok, status: 400, docRejects: true,
		body: obj{"amount": "300.00", "device_id": strings.Repeat("d", 101), "proofs": []any{pwProof}}}, "invalid_request", obj{"field": "device_id"})
	withdrawal := call{method: "POST", path: acct + "/withdrawals", token: aliceTok, status: 201,
		body: signed("withdraw", laptop, nil, obj{"amount": "300.00", "currency": "CNY", "device_id": "laptop-1", "proofs": []any{pwProof, totpProof()}})}
	w := a.do(withdrawal)
	want(t, "withdrawal level", w.str("verification_level"), "two_factor")
	want(t, "a signed withdrawal recorded as", lastTypes(2), "FundsWithdrawn DeviceUsed")
	a.problem(call{method: "POST", path: acct + "/withdrawals", token: aliceTok, status: 400, body: replaced(withdrawal.body, "proofs", []any{pwProof})},
		"invalid_request", obj{"field": "signed_at"})
	want(t, "after a replayed signature, the last operation", lastTypes(2), "FundsWithdrawn DeviceUsed")
	a.problem(call{method: "POST", path: acct + "/withdrawals", token: aliceTok, status: 422,
		body: signed("withdraw", tablet, nil, obj{"amount": "300.00", "device_id": "laptop-1", "proofs": []any{pwProof}})},
		"proof_invalid", obj{"attempts_remaining": 4.0})
	want(t, "a wrong signature recorded as", lastOp()["type"], any("VerificationFailed"))
	// A withdrawal refused after its proofs verified is recorded, and its
	// replay answers the same problem.
	tooMuch := call{method: "POST", path: acct + "/withdrawals", token: aliceTok, key: "withdraw-too-much", status: 422,
		body: obj{"amount": "99999.00", "device_id": "laptop-1", "proofs": []any{pwProof}}}
	funds := obj{"available": "7100.00", "required": "99999.00"}
	a.problem(tooMuch, "insufficient_funds", funds)
	want(t, "withdrawal refusal Idempotent-Replayed", a.problem(tooMuch, "insufficient_funds", funds).header.Get("Idempotent-Replayed"), "true")
	want(t, "refused withdrawal recorded as", lastOp()["type"], any("WithdrawalRejected"))

	// R7: a code that verified beside a wrong password is spent.
	clk.Advance(domain.TOTPStep)
	spent := obj{"factor_id": totp, "code": code()}
	a.problem(call{method: "POST", path: acct + "/sessions", status: 401,
		body: obj{"device_id": "laptop-1", "proofs": []any{spent, obj{"factor_id": pw, "password": "not my password"}}}},
		"authentication_failed", obj{"attempts_remaining": 3.0})
	a.problem(call{method: "POST", path: acct + "/sessions", status: 401,
		body: obj{"device_id": "laptop-1", "proofs": []any{pwProof, spent}}},
		"authentication_failed", obj{"attempts_remaining": 2.0})

	// R14: a suspended payee takes no payments, at confirmation (the
	// payment is rejected, recorded, and the refusal replays) or
	// initiation. An operator's suspension is lifted by an operator only.
	p4 := pay("10.00")
	want(t, "bob suspended", a.do(call{method: "POST", path: "/v1/accounts/" + bob + "/suspend", token: operator, status: 200,
		body: obj{"reason": "risk review"}}).str("status"), "suspended")
	unavailable := obj{"field": "payee_account_id", "payee_status": "suspended"}
	toSuspended := call{method: "POST", path: confirmPath(p4), token: aliceTok, key: "confirm-p4", status: 409, body: obj{"device_id": "laptop-1", "proofs": []any{pwProof}}}
	a.problem(toSuspended, "payee_unavailable", unavailable)
	want(t, "payee refusal Idempotent-Replayed", a.problem(toSuspended, "payee_unavailable", unavailable).header.Get("Idempotent-Replayed"), "true")
	want(t, "rejected payment recorded as", lastOp()["type"], any("PaymentRejected"))
	a.problem(call{method: "POST", path: acct + "/payments", token: aliceTok, status: 409,
		body: obj{"payee_account_id": bob, "amount": "10.00", "channel": "app", "terminal": "desktop", "device_id": "laptop-1"}},
		"payee_unavailable", unavailable)
	bobTok := a.do(call{method: "POST", path: "/v1/accounts/" + bob + "/sessions", status: 201,
		body: obj{"device_id": "till-1", "proofs": []any{obj{"factor_id": bobPW, "password": password}}}}).str("token")
	a.problem(call{method: "POST", path: "/v1/accounts/" + bob + "/reactivate", token: bobTok, status: 403}, "forbidden", nil)
	want(t, "bob reactivated", a.do(call{method: "POST", path: "/v1/accounts/" + bob + "/reactivate", token: operator, status: 200}).str("status"), "active")

	// Cooling-off: the factor of an account its holder opened logs in at
	// once but moves no money for 24 hours.
	daveSecret := daveFirst["totp_secret"].(string)
	daveCode := func() string {
		t.Helper()
		c, err := domain.TOTPCode(daveSecret, domain.TOTPStepAt(clk.Peek()))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	daveProof := func() obj { return obj{"factor_id": daveFirst["factor_id"], "code": daveCode()} }
	daveTok := a.do(call{method: "POST", path: "/v1/accounts/" + dave + "/sessions", status: 201,
		body: obj{"device_id": "laptop-d", "proofs": []any{daveProof()}}}).str("token")
	dp := a.do(call{method: "POST", path: "/v1/accounts/" + dave + "/payments", token: daveTok, status: 201,
		body: obj{"payee_account_id": bob, "amount": "1.00", "channel": "web", "terminal": "desktop", "device_id": "laptop-d"}})
	clk.Advance(domain.TOTPStep)
	a.problem(call{method: "POST", path: "/v1/accounts/" + dave + "/payments/" + dp.str("payment_id") + "/confirm", token: daveTok, status: 422,
		body: obj{"device_id": "laptop-d", "proofs": []any{daveProof()}}},
		"factor_cooling_off", obj{"factor_id": daveFirst["factor_id"], "usable_from": daveFirst["usable_from"], "field": "proofs"})

	// Sensitive changes (R1): a step-up of two categories, verified like a
	// withdrawal's; a password and a TOTP count two when the registered
	// laptop signs the step-up.
	idc := a.do(call{method: "PUT", path: acct + "/identity", token: aliceTok, key: "identity-1", status: 200,
		body: signed("changeIdentity", laptop, nil, obj{"holder_name": "Li Wei", "device_id": "laptop-1", "proofs": []any{pwProof, totpProof()}})})
	want(t, "identity categories", len(idc.list("categories")), 2)
	want(t, "a change is followed by", lastTypes(3), "IdentityChanged HolderNotified DeviceUsed")
	const newPhone = "+8613800138000"
	weakPhone := call{method: "PUT", path: acct + "/phone", token: aliceTok, key: "phone-weak", status: 422,
		body: obj{"phone": newPhone, "device_id": "laptop-1", "proofs": []any{pwProof}}}
	weak := obj{"required_categories": 2.0, "verified_categories": 1.0}
	a.problem(weakPhone, "insufficient_verification", weak)
	want(t, "weak phone change Idempotent-Replayed", a.problem(weakPhone, "insufficient_verification", weak).header.Get("Idempotent-Replayed"), "true")
	want(t, "weak phone change recorded as", lastOp()["type"], any("ChangeRejected"))
	clk.Advance(domain.TOTPStep)
	a.problem(call{method: "PUT", path: acct + "/phone", token: aliceTok, status: 422,
		body: obj{"phone": newPhone, "device_id": "phone-1", "proofs": []any{pwProof, obj{"factor_id": totp, "code": code()}}}},
		"factor_not_independent", weak)
	clk.Advance(domain.TOTPStep)
	ph := a.do(call{method: "PUT", path: acct + "/phone", token: aliceTok, status: 200,
		body: signed("changePhone", laptop, nil, obj{"phone": newPhone, "device_id": "laptop-1", "proofs": []any{pwProof, totpProof()}})})
	want(t, "phone", ph.str("phone"), newPhone)
	want(t, "phone categories", len(ph.list("categories")), 2)
	a.problem(call{method: "PUT", path: acct + "/phone", token: aliceTok, status: 422,
		body: obj{"phone": newPhone, "device_id": "laptop-1", "proofs": []any{obj{"factor_id": pw, "password": "not my password"}}}},
		"proof_invalid", obj{"attempts_remaining": 4.0})
	want(t, "wrong proof on a change recorded as", lastOp()["type"], any("VerificationFailed"))

	// R9: four more wrong proofs lock access. The holder's session lifts
	// the lock early with a step-up of two categories only from a
	// registered device that signs it.
	wrongPhone := call{method: "PUT", path: acct + "/phone", token: aliceTok, status: 422,
		body: obj{"phone": newPhone, "device_id": "laptop-1", "proofs": []any{obj{"factor_id": pw, "password": "not my password"}}}}
	for left := 3.0; left >= 1; left-- {
		a.problem(wrongPhone, "proof_invalid", obj{"attempts_remaining": left})
	}
	wrongPhone.status = 423
	a.problem(wrongPhone, "access_locked", nil)
	clk.Advance(domain.TOTPStep)
	early := obj{"reason": "it was me, typing", "device_id": "laptop-1", "proofs": []any{pwProof, totpProof()}}
	a.problem(call{method: "POST", path: acct + "/unlock", token: aliceTok, status: 400, body: early}, "invalid_request", obj{"field": "device_signature"})
	unlockedEarly := a.do(call{method: "POST", path: acct + "/unlock", token: aliceTok, status: 200, body: signed("unlockAccount", laptop, nil, early)})
	want(t, "unlocked early", unlockedEarly.body["locked"], any(false))
	want(t, "an early unlock recorded as", lastTypes(3), "AccessUnlocked HolderNotified DeviceUsed")
	a.problem(call{method: "PUT", path: acct + "/phone", token: aliceTok, status: 400, docRejects: true,
		body: json.RawMessage(`{"phone":"` + newPhone + `","device_id":"laptop-1","proofs":[{"factor_id":"` + pw + `","password":"x","pin":"1234"}]}`)},
		"forbidden_field", obj{"field": "proofs[0].pin"})

	// Credential resets: never the factor being reset; certificate
	// signatures sign the change's challenge at a version. A reset ends
	// the sessions that logged in with the factor.
	version := func() int64 {
		t.Helper()
		v, _ := a.do(call{method: "GET", path: acct, token: aliceTok, status: 200}).body["version"].(float64)
		return int64(v)
	}
	changeSig := func(kind, subject string, v int64) string {
		return base64.StdEncoding.EncodeToString(ed25519.Sign(priv, domain.ChangeChallenge(kind, alice, v, subject)))
	}
	a.problem(call{method: "POST", path: acct + "/factors/" + pw + "/reset", token: aliceTok, status: 422,
		body: obj{"password": "a brand new passphrase", "device_id": "laptop-1", "proofs": []any{pwProof}}},
		"factor_not_independent", obj{"field": "proofs"})
	resetTOTP := acct + "/factors/" + totp + "/reset"
	v := version()
	certOnly := obj{"device_id": "laptop-1", "version": v,
		"proofs": []any{obj{"factor_id": cert, "signature": changeSig(domain.ChangeKindCredentialReset, totp, v)}}}
	a.problem(call{method: "POST", path: resetTOTP, token: aliceTok, status: 422, body: certOnly}, "insufficient_verification", obj{"required_categories": 2.0, "verified_categories": 1.0})
	a.problem(call{method: "POST", path: resetTOTP, token: aliceTok, status: 409, body: certOnly}, "version_conflict", obj{"current_version": float64(v + 1)})
	delete(certOnly, "version")
	a.problem(call{method: "POST", path: resetTOTP, token: aliceTok, status: 400, body: certOnly}, "invalid_request", obj{"field": "version"})
	v = version()
	resetCall := call{method: "POST", path: resetTOTP, token: aliceTok, key: "reset-totp", status: 200,
		body: obj{"device_id": "laptop-1", "version": v, "proofs": []any{pwProof, obj{"factor_id": cert, "signature": changeSig(domain.ChangeKindCredentialReset, totp, v)}}}}
	rt := a.do(resetCall)
	want(t, "reset method", rt.str("method"), "totp")
	if rt.str("totp_secret") == "" || rt.str("totp_secret") == secret {
		t.Fatalf("TOTP reset returned seed %q", rt.str("totp_secret"))
	}
	secret = rt.str("totp_secret")
	a.problem(call{method: "GET", path: acct, token: aliceTok, status: 401}, "unauthenticated", nil)
	clk.Advance(domain.TOTPStep)
	aliceTok = a.do(call{method: "POST", path: acct + "/sessions", status: 201,
		body: obj{"device_id": "laptop-1", "proofs": []any{pwProof, obj{"factor_id": totp, "code": code()}}}}).str("token")
	// The holder's keys are the account's, whichever session sends them:
	// the reset's replay shows no seed.
	resetCall.token, resetCall.status = aliceTok, 409
	a.problem(resetCall, "secret_shown_once", nil)

	// Limits: a lower limit needs no step-up; a raise does.
	lim := a.do(call{method: "PUT", path: acct + "/limits", token: aliceTok, key: "limit-1", status: 200, body: obj{"agreed_daily_limit": "20000.00"}})
	want(t, "previous limit", lim.str("previous"), "50000.00")
	a.problem(call{method: "PUT", path: acct + "/limits", token: aliceTok, status: 400, body: obj{"agreed_daily_limit": "30000.00"}},
		"invalid_request", obj{"field": "device_id"})
	v = version()
	raised := a.do(call{method: "PUT", path: acct + "/limits", token: aliceTok, status: 200,
		body: obj{"agreed_daily_limit": "30000.00", "device_id": "laptop-1", "version": v,
			"proofs": []any{pwProof, obj{"factor_id": cert, "signature": changeSig(domain.ChangeKindLimit, "30000.00", v)}}}})
	want(t, "raised limit", raised.str("agreed_daily_limit"), "30000.00")

	// Suspension by the holder, lifted by the holder.
	want(t, "suspended", a.do(call{method: "POST", path: acct + "/suspend", token: aliceTok, status: 200, body: obj{"reason": "travelling"}}).str("status"), "suspended")
	a.problem(call{method: "POST", path: acct + "/deposits", token: funding, status: 409, body: obj{"amount": "1.00", "reference": "bank-transfer-456"}}, "account_suspended", nil)
	want(t, "reactivated", a.do(call{method: "POST", path: acct + "/reactivate", token: aliceTok, status: 200}).str("status"), "active")

	// Reads, by the holder and by staff; the auditor sees personal data
	// masked.
	want(t, "balance", a.do(call{method: "GET", path: acct + "/balance", token: aliceTok, status: 200}).str("available"), "7100.00")
	asOf := url.QueryEscape(afterDeposit.Format(time.RFC3339Nano))
	want(t, "balance as_of", a.do(call{method: "GET", path: acct + "/balance?as_of=" + asOf, token: aliceTok, status: 200}).str("available"), "10000.00")
	want(t, "bob balance (finance)", a.do(call{method: "GET", path: "/v1/accounts/" + bob + "/balance", token: finance, status: 200}).str("available"), "2600.00")
	var entries []any
	cursor := ""
	for page := 0; page < 5; page++ {
		q := "?limit=2"
		if cursor != "" {
			q += "&cursor=" + cursor
		}
		sp := a.do(call{method: "GET", path: acct + "/statement" + q, token: aliceTok, status: 200})
		entries = append(entries, sp.list("entries")...)
		if cursor = sp.str("next_cursor"); cursor == "" {
			break
		}
	}
	want(t, "statement entries", len(entries), 5)
	if len(entries) == 5 {
		want(t, "last balance_after", entries[4].(map[string]any)["balance_after"], any("7100.00"))
		want(t, "a payment's description", entries[1].(map[string]any)["description"], any("coffee beans"))
	}
	a.problem(call{method: "GET", path: acct + "/statement?limit=0", token: aliceTok, status: 400, docRejects: true}, "invalid_request", obj{"field": "limit"})
	ops := a.do(call{method: "GET", path: acct + "/operations?limit=5", token: aliceTok, status: 200})
	want(t, "operations page", len(ops.list("operations")), 5)
	want(t, "operations next_cursor", ops.str("next_cursor"), "6")
	a.do(call{method: "GET", path: acct + "/operations?cursor=6", token: aliceTok, status: 200})
	usage := a.do(call{method: "GET", path: acct, token: aliceTok, status: 200}).obj("daily_usage")
	want(t, "usage single_factor", usage["single_factor"], any("500.00"))
	want(t, "usage all", usage["all"], any("2600.00"))
	want(t, "holder name (compliance)", a.do(call{method: "GET", path: acct, token: compliance, status: 200}).str("holder_name"), "Li Wei")
	audited := a.do(call{method: "GET", path: acct, token: auditor, status: 200})
	want(t, "holder name (auditor)", audited.str("holder_name"), "***")
	want(t, "bank digits (auditor)", audited.str("bank_account_last4"), "***")
	for _, f := range audited.list("factors") {
		if d, _ := f.(map[string]any)["device_id"].(string); d != "" && d != "***" {
			t.Errorf("the auditor sees device id %q", d)
		}
	}
	want(t, "devices (auditor)", len(audited.list("devices")), 2)
	for _, d := range audited.list("devices") {
		if d.(map[string]any)["device_id"] != "***" || d.(map[string]any)["label"] != nil {
			t.Errorf("the auditor sees device %v", d)
		}
	}
	for _, e := range a.do(call{method: "GET", path: acct + "/statement", token: auditor, status: 200}).list("entries") {
		want(t, "statement description (auditor)", e.(map[string]any)["description"], any("***"))
	}
	auditedOps := opsOf(auditor)
	for _, op := range auditedOps {
		payload := op.(map[string]any)["payload"].(map[string]any)
		keys := []string{"holder_name", "phone", "device_id", "description", "identity_check", "reason"}
		if op.(map[string]any)["type"] == "FundsDeposited" {
			keys = append(keys, "reference") // the customer's bank transfer
		}
		for _, k := range keys {
			if v, found := payload[k]; found && v != "***" {
				t.Errorf("the auditor sees %s %v in a %v", k, v, op.(map[string]any)["type"])
			}
		}
	}
	for _, op := range auditedOps {
		if op.(map[string]any)["type"] == "StaffRead" {
			t.Errorf("a staff read is among the account's operations: %v", op)
		}
	}

	// Factor loss and revocation: a loss report by the operator after an
	// identity check ends the sessions that used the factor; revoking
	// needs the holder's step-up.
	a.problem(call{method: "POST", path: acct + "/factors/" + totp + "/loss-report", token: operator, status: 400,
		body: obj{"reason": "phone stolen"}}, "invalid_request", obj{"field": "identity_check"})
	a.do(call{method: "POST", path: acct + "/factors/" + totp + "/loss-report", token: operator, status: 200,
		body: obj{"reason": "phone stolen", "identity_check": checked}})
	a.problem(call{method: "GET", path: acct, token: aliceTok, status: 401}, "unauthenticated", nil)
	aliceTok = a.do(call{method: "POST", path: acct + "/sessions", status: 201,
		body: obj{"device_id": "laptop-1", "proofs": []any{pwProof}}}).str("token")
	revokeCert := acct + "/factors/" + cert + "/revoke"
	a.problem(call{method: "POST", path: revokeCert, token: aliceTok, status: 400, docRejects: true, body: obj{"reason": "rotated"}},
		"invalid_request", obj{"field": "device_id"})
	v = version()
	revocation := obj{"reason": "rotated", "device_id": "laptop-1", "version": v,
		"proofs": []any{pwProof, obj{"factor_id": cert, "signature": changeSig(domain.ChangeKindRevocation, cert, v)}}}
	a.do(call{method: "POST", path: revokeCert, token: aliceTok, status: 200, body: revocation})
	a.problem(call{method: "POST", path: revokeCert, token: aliceTok, status: 409, body: revocation}, "conflict", nil)

	// R19 and strict decoding: the document forbids these bodies too.
	a.problem(call{method: "POST", path: acct + "/deposits", token: funding, status: 400, docRejects: true,
		body: json.RawMessage(`{"amount":"1.00","reference":"r","card":{"cvv":"123"}}`)}, "forbidden_field", obj{"field": "card.cvv"})
	a.problem(call{method: "POST", path: acct + "/payments", token: aliceTok, status: 400, docRejects: true,
		body: json.RawMessage(`{"payee_account_id":"` + bob + `","amount":"1.00","channel":"app","terminal":"mobile","device_id":"phone-1","PIN-Code":"1234"}`)},
		"forbidden_field", obj{"field": "PIN-Code"})
	a.problem(call{method: "POST", path: acct + "/deposits", token: funding, status: 400, docRejects: true,
		body: json.RawMessage(`{"amount":"1.00","reference":"r","colour":"red"}`)}, "invalid_request", obj{"field": "colour"})
	// Keys are ASCII: Go's decoder would fold "referenſe" onto "reference".
	a.problem(call{method: "POST", path: acct + "/deposits", token: funding, status: 400, docRejects: true,
		body: json.RawMessage(`{"amount":"1.00","reference":"r","referen\u017fe":"s"}`)}, "invalid_request", obj{"field": "referen\u017fe"})
	// A device id's format admits digits, and a card number must not be
	// stored in one; the document cannot tell, the server does.
	a.problem(call{method: "POST", path: acct + "/sessions", status: 400,
		body: obj{"device_id": "4111111111111111", "proofs": []any{pwProof}}}, "forbidden_field", obj{"field": "device_id"})
	a.problem(call{method: "POST", path: acct + "/deposits", token: funding, key: "bad|key", status: 400, docRejects: true,
		body: obj{"amount": "1.00", "reference": "r"}}, "invalid_request", obj{"field": "Idempotency-Key"})

	// Idempotency: the same key and body replays; another body is refused.
	d := a.do(deposit)
	want(t, "deposit Idempotent-Replayed", d.header.Get("Idempotent-Replayed"), "true")
	a.problem(call{method: "POST", path: acct + "/deposits", token: funding, key: "deposit-1", status: 409,
		body: obj{"amount": "5.00", "reference": "bank-transfer-789"}}, "idempotency_key_reused", nil)

	// Lockout (R9) on carol, lifted by an operator after an identity
	// check; logout; then closing.
	cacct := "/v1/accounts/" + carol
	wrong := call{method: "POST", path: cacct + "/sessions", status: 401,
		body: obj{"device_id": "laptop-2", "proofs": []any{obj{"factor_id": carolPW, "password": "guess guess"}}}}
	for left := 4.0; left >= 1; left-- {
		a.problem(wrong, "authentication_failed", obj{"attempts_remaining": left})
	}
	wrong.status = 423
	if r := a.problem(wrong, "access_locked", nil); r.str("locked_until") == "" {
		t.Error("access_locked without locked_until")
	}
	carolLogin := call{method: "POST", path: cacct + "/sessions", status: 423,
		body: obj{"device_id": "laptop-2", "proofs": []any{obj{"factor_id": carolPW, "password": password}}}}
	a.problem(carolLogin, "access_locked", nil)
	want(t, "locked_until on the account", a.do(call{method: "GET", path: cacct, token: operator, status: 200}).str("locked_until") != "", true)
	a.problem(call{method: "POST", path: cacct + "/unlock", token: operator, status: 400, body: obj{"reason": "called in"}},
		"invalid_request", obj{"field": "identity_check"})
	unlocked := a.do(call{method: "POST", path: cacct + "/unlock", token: operator, key: "unlock-carol", status: 200,
		body: obj{"reason": "called in", "identity_check": checked}})
	want(t, "unlocked", unlocked.body["locked"], any(false))
	a.problem(call{method: "POST", path: cacct + "/unlock", token: operator, status: 409,
		body: obj{"reason": "again", "identity_check": checked}}, "conflict", nil)
	carolLogin.status = 201
	carolTok := a.do(carolLogin).str("token")
	a.do(call{method: "DELETE", path: "/v1/sessions/current", token: carolTok, status: 204})
	a.problem(call{method: "DELETE", path: "/v1/sessions/current", token: carolTok, status: 401}, "unauthenticated", nil)
	a.problem(call{method: "DELETE", path: "/v1/sessions/current", token: operator, status: 403, docRejects: true}, "forbidden", nil)
	want(t, "closed", a.do(call{method: "POST", path: cacct + "/close", token: operator, status: 200, body: obj{"reason": "moving abroad"}}).str("status"), "closed")
	a.problem(call{method: "POST", path: cacct + "/deposits", token: funding, status: 409, body: obj{"amount": "1.00", "reference": "late-transfer"}}, "account_closed", nil)
	a.problem(call{method: "POST", path: "/v1/accounts/" + bob + "/close", token: bobTok, status: 409, body: obj{}}, "conflict", obj{"available": "2600.00"})

	// Not found: staff learn that an account does not exist; a session
	// only that it is not its own.
	a.problem(call{method: "GET", path: "/v1/accounts/" + nobody, token: operator, status: 404}, "not_found", nil)
	a.problem(call{method: "GET", path: "/v1/accounts/" + nobody + "/balance", token: compliance, status: 404}, "not_found", nil)
	a.problem(call{method: "POST", path: acct + "/payments/" + nobody + "/confirm", token: aliceTok, status: 404,
		body: obj{"device_id": "laptop-1", "proofs": []any{pwProof}}}, "not_found", nil)
	a.undocumented("GET", "/v1/nothing-here", "", http.StatusNotFound, "")
}

// TestOpenAPIReserves drives loss cases, the risk reserve and the reports
// through the real handlers with real credentials, and validates every
// request and reply against the document: finance funds the reserve, a
// holder reports payments they did not make and is compensated in
// advance, compliance finds them liable for the two-factor payment,
// finance takes that part back and closes the case; a second case meets a
// shortfall, paid once the reserve is topped up; days are closed, the
// regulator reads the annual report, and the public disclosure appears a
// week after the year ends. Refusals of access control are checked along
// the way.
func TestOpenAPIReserves(t *testing.T) {
	clk := &clock{now: time.Date(2026, 3, 2, 1, 0, 5, 0, time.UTC)} // 09:00:05 in Shanghai
	st := newStack(t, clk)
	a := newAPI(t, st.URL)
	operator, funding := st.key(t, staffkeys.RoleOperator), st.key(t, staffkeys.RoleFunding)
	finance, compliance := st.key(t, staffkeys.RoleFinance), st.key(t, staffkeys.RoleCompliance)
	auditor, regulator := st.key(t, staffkeys.RoleAuditor), st.key(t, staffkeys.RoleRegulator)
	const password = "correct horse battery staple"
	const nobody = "01JD8X3Q4Z5Y6W7V8T9S0R1P2N"

	open := func(name string) (id, pw, tok string) {
		t.Helper()
		r := a.do(call{method: "POST", path: "/v1/accounts", token: operator, status: 201,
			body: obj{"holder_name": name, "currency": "CNY", "identity_check": checked, "factor": obj{"method": "password", "password": password}}})
		id, pw = r.str("id"), r.obj("first_factor")["factor_id"].(string)
		tok = a.do(call{method: "POST", path: "/v1/accounts/" + id + "/sessions", status: 201,
			body: obj{"device_id": "laptop-1", "proofs": []any{obj{"factor_id": pw, "password": password}}}}).str("token")
		return id, pw, tok
	}
	alice, alicePW, aliceTok := open("Li Wei")
	bob, _, _ := open("Wang Fang")
	carol, carolPW, carolTok := open("Zhang Min")
	acct := "/v1/accounts/" + alice
	for i, id := range []string{alice, carol} {
		a.do(call{method: "POST", path: "/v1/accounts/" + id + "/deposits", token: funding, status: 201,
			body: obj{"amount": "1000.00", "reference": fmt.Sprint("bank-transfer-", i)}})
	}

	// The reserve: finance funds it; a top-up replays by its key; a
	// release below the floor (zero by default) is refused; only finance
	// adjusts it.
	topUp := call{method: "POST", path: "/v1/reserve/adjustments", token: finance, key: "top-up-1", status: 201,
		body: obj{"kind": "top_up", "amount": "500.00", "currency": "CNY", "reason": "Q1 funding of the risk reserve"}}
	adj := a.do(topUp)
	want(t, "top-up debit", adj.str("debit_account"), "own-funds-CNY")
	want(t, "top-up credit", adj.str("credit_account"), "risk-reserve-CNY")
	again := a.do(topUp)
	want(t, "top-up Idempotent-Replayed", again.header.Get("Idempotent-Replayed"), "true")
	want(t, "replayed adjustment id", again.str("adjustment_id"), adj.str("adjustment_id"))
	a.problem(call{method: "POST", path: "/v1/reserve/adjustments", token: finance, status: 409,
		body: obj{"kind": "release", "amount": "10000.00", "currency": "CNY", "reason": "too much"}},
		"reserve_floor", obj{"available": "500.00", "floor": "0.00"})
	a.problem(call{method: "POST", path: "/v1/reserve/adjustments", token: finance, status: 400, docRejects: true,
		body: obj{"kind": "withdraw", "amount": "1.00", "currency": "CNY", "reason": "no such kind"}}, "invalid_request", obj{"field": "kind"})
	for _, tok := range []string{operator, auditor, compliance} {
		a.problem(call{method: "POST", path: "/v1/reserve/adjustments", token: tok, status: 403, body: topUp.body}, "forbidden", nil)
	}

	// Payments: one verified with a password alone, one with a password
	// and a certificate signature over its challenge.
	pub, priv, err := ed25519.GenerateKey(bytes.NewReader(bytes.Repeat([]byte{5}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	cert := a.do(call{method: "POST", path: acct + "/factors", token: operator, status: 201,
		body: obj{"factor": obj{"method": "certificate", "public_key": base64.StdEncoding.EncodeToString(pub)}, "identity_check": checked}}).str("factor_id")
	pay := func(account, tok, pw, amount string, withCert bool) string {
		t.Helper()
		p := a.do(call{method: "POST", path: "/v1/accounts/" + account + "/payments", token: tok, status: 201,
			body: obj{"payee_account_id": bob, "amount": amount, "currency": "CNY", "channel": "app", "terminal": "desktop",
				"device_id": "laptop-1", "description": "electronics"}})
		want(t, "fee without a fee schedule", p.obj("details")["fee"], any("0.00"))
		proofs := []any{obj{"factor_id": pw, "password": password}}
		if withCert {
			challenge, err := base64.StdEncoding.DecodeString(p.str("challenge"))
			if err != nil {
				t.Fatal(err)
			}
			proofs = append(proofs, obj{"factor_id": cert, "signature": base64.StdEncoding.EncodeToString(ed25519.Sign(priv, challenge))})
		}
		a.do(call{method: "POST", path: "/v1/accounts/" + account + "/payments/" + p.str("payment_id") + "/confirm", token: tok, status: 200,
			body: obj{"device_id": "laptop-1", "proofs": proofs}})
		return p.str("payment_id")
	}
	p1 := pay(alice, aliceTok, alicePW, "100.00", false)
	p2 := pay(alice, aliceTok, alicePW, "300.00", true)
	pending := a.do(call{method: "POST", path: acct + "/payments", token: aliceTok, status: 201,
		body: obj{"payee_account_id": bob, "amount": "5.00", "channel": "app", "terminal": "desktop", "device_id": "laptop-1"}}).str("payment_id")

	// The holder reports both: a single-factor payment is the
	// institution's, so the loss is paid in advance from the reserve.
	// Only confirmed payments of the account can be named, by its holder.
	a.problem(call{method: "POST", path: acct + "/loss-cases", token: aliceTok, status: 400,
		body: obj{"payment_ids": []any{p1, pending}}}, "invalid_request", obj{"field": "payment_ids"})
	a.problem(call{method: "POST", path: acct + "/loss-cases", token: aliceTok, status: 400,
		body: obj{"payment_ids": []any{nobody}}}, "invalid_request", obj{"field": "payment_ids"})
	a.problem(call{method: "POST", path: acct + "/loss-cases", token: aliceTok, status: 400, docRejects: true,
		body: obj{"payment_ids": []any{}}}, "invalid_request", obj{"field": "payment_ids"})
	a.problem(call{method: "POST", path: acct + "/loss-cases", token: carolTok, status: 403,
		body: obj{"payment_ids": []any{p1}}}, "forbidden", nil)
	a.problem(call{method: "POST", path: acct + "/loss-cases", token: operator, status: 403, docRejects: true,
		body: obj{"payment_ids": []any{p1}}}, "forbidden", nil)
	report := call{method: "POST", path: acct + "/loss-cases", token: aliceTok, key: "loss-1", status: 201,
		body: obj{"payment_ids": []any{p1, p2}, "description": "I did not make these payments; my laptop was stolen."}}
	lc := a.do(report)
	caseID := lc.str("case_id")
	casePath := "/v1/loss-cases/" + caseID
	want(t, "case status", lc.str("status"), "reported")
	want(t, "case loss", lc.str("loss"), "400.00")
	want(t, "advance", lc.str("advance"), "paid")
	want(t, "advance rule", strings.HasPrefix(lc.str("advance_rule"), "single_factor: "), true)
	want(t, "compensated in advance", lc.str("compensated"), "400.00")
	want(t, "case payments", len(lc.list("payments")), 2)
	want(t, "replayed report", a.do(report).str("case_id"), caseID)
	// A payment is claimed in one case only; nothing is left to pay in
	// advance before liability is determined.
	a.problem(call{method: "POST", path: acct + "/loss-cases", token: aliceTok, status: 409,
		body: obj{"payment_ids": []any{p1}}}, "conflict", obj{"case_id": caseID, "payment_id": p1})
	a.problem(call{method: "POST", path: casePath + "/settlement", token: finance, status: 409, body: obj{}}, "conflict", nil)
	want(t, "balance after the advance", a.do(call{method: "GET", path: acct + "/balance", token: aliceTok, status: 200}).str("available"), "1000.00")

	// Reading the case: its holder and finance, compliance, the auditor
	// (who sees no description); another holder, and a case that does not
	// exist, are refused alike for a session; staff learn it does not exist.
	want(t, "holder reads the case", a.do(call{method: "GET", path: casePath, token: aliceTok, status: 200}).str("case_id"), caseID)
	want(t, "finance reads the case", a.do(call{method: "GET", path: casePath, token: finance, status: 200}).str("account_id"), alice)
	want(t, "auditor's description", a.do(call{method: "GET", path: casePath, token: auditor, status: 200}).str("description"), "***")
	a.problem(call{method: "GET", path: casePath, token: carolTok, status: 403}, "forbidden", nil)
	a.problem(call{method: "GET", path: "/v1/loss-cases/" + nobody, token: aliceTok, status: 403}, "forbidden", nil)
	a.problem(call{method: "GET", path: "/v1/loss-cases/" + nobody, token: finance, status: 404}, "not_found", nil)
	a.problem(call{method: "GET", path: casePath, token: operator, status: 403}, "forbidden", nil)
	a.problem(call{method: "GET", path: casePath, token: regulator, status: 403}, "forbidden", nil)
	a.problem(call{method: "GET", path: casePath, status: 401, docRejects: true}, "unauthenticated", nil)

	// A second case meets a shortfall: the reserve holds 100.00, the loss
	// is 150.00. The case opens with its advance due and the refusal; once
	// finance tops the reserve up, the settlement pays it.
	p3 := pay(carol, carolTok, carolPW, "150.00", false)
	short := a.do(call{method: "POST", path: "/v1/accounts/" + carol + "/loss-cases", token: carolTok, status: 201,
		body: obj{"payment_ids": []any{p3}}})
	shortPath := "/v1/loss-cases/" + short.str("case_id")
	want(t, "advance after a shortfall", short.str("advance"), "due")
	want(t, "refusal", short.obj("refusal")["code"], any("reserve_shortfall"))
	want(t, "compensated after a shortfall", short.str("compensated"), "0.00")
	a.do(call{method: "POST", path: "/v1/reserve/adjustments", token: finance, status: 201,
		body: obj{"kind": "top_up", "amount": "100.00", "currency": "CNY", "reason": "cover the shortfall"}})
	paid := a.do(call{method: "POST", path: shortPath + "/settlement", token: finance, status: 200, body: obj{}})
	want(t, "advance once topped up", paid.str("advance"), "paid")
	want(t, "compensated once topped up", paid.str("compensated"), "150.00")
	if _, ok := paid.body["refusal"]; ok {
		t.Errorf("a paid advance still carries a refusal: %v", paid.body)
	}

	// Investigation (compliance only, once); a case is closed only once
	// its liability is determined.
	a.problem(call{method: "POST", path: casePath + "/investigation", token: finance, status: 403, body: obj{"note": "not mine"}}, "forbidden", nil)
	inv := a.do(call{method: "POST", path: casePath + "/investigation", token: compliance, key: "investigate-1", status: 200,
		body: obj{"note": "called the holder; asked for the police report"}})
	want(t, "investigating", inv.str("status"), "investigating")
	a.problem(call{method: "POST", path: casePath + "/investigation", token: compliance, status: 409, body: obj{}}, "case_state", nil)
	a.problem(call{method: "POST", path: casePath + "/close", token: compliance, status: 409, body: obj{}}, "case_state", nil)

	// Liability: compliance only; a finding against the customer needs
	// reasons and evidence; the single-factor payment stays the
	// institution's.
	finding := obj{"liable": "customer", "reasons": []any{"the holder gave the certificate's key to a caller"},
		"evidence": []any{"call-recording/2026-03-02/0451"}}
	a.problem(call{method: "POST", path: casePath + "/liability", token: finance, status: 403, body: finding}, "forbidden", nil)
	a.problem(call{method: "POST", path: casePath + "/liability", token: aliceTok, status: 403, docRejects: true, body: finding}, "forbidden", nil)
	a.problem(call{method: "POST", path: casePath + "/liability", token: compliance, status: 422,
		body: obj{"liable": "customer", "reasons": []any{"the holder gave the key away"}}}, "evidence_required", nil)
	a.problem(call{method: "POST", path: casePath + "/liability", token: compliance, status: 400, docRejects: true,
		body: obj{"liable": "nobody"}}, "invalid_request", obj{"field": "liable"})
	det := a.do(call{method: "POST", path: casePath + "/liability", token: compliance, status: 200, body: finding})
	want(t, "determined", det.str("status"), "determined")
	want(t, "liable", det.obj("liability")["liable"], any("customer"))
	want(t, "liability rule", det.obj("liability")["rule"], any("customer_shown_single_factor_excepted"))
	want(t, "customer share (the single-factor payment excepted)", det.obj("liability")["customer_share"], any("300.00"))
	a.problem(call{method: "POST", path: casePath + "/liability", token: compliance, status: 409, body: finding}, "case_state", nil)
	holderView := a.do(call{method: "GET", path: casePath, token: aliceTok, status: 200}).obj("liability")
	for _, k := range []string{"evidence", "staff_key"} {
		if _, shown := holderView[k]; shown {
			t.Errorf("the holder sees liability.%s: %v", k, holderView)
		}
	}
	staffView := a.do(call{method: "GET", path: casePath, token: finance, status: 200}).obj("liability")
	want(t, "staff see the evidence", len(staffView["evidence"].([]any)), 1)
	want(t, "staff see the key", staffView["staff_key"] != nil, true)

	// Settlement: finance takes back the customer's share of the advance;
	// then nothing is owed. The holder cannot settle.
	a.problem(call{method: "POST", path: casePath + "/settlement", token: aliceTok, status: 403, docRejects: true, body: obj{}}, "forbidden", nil)
	a.problem(call{method: "POST", path: casePath + "/settlement", token: compliance, status: 403, body: obj{}}, "forbidden", nil)
	settled := a.do(call{method: "POST", path: casePath + "/settlement", token: finance, key: "settle-1", status: 200, body: obj{}})
	want(t, "recovered", settled.str("recovered"), "300.00")
	want(t, "compensated", settled.str("compensated"), "400.00")
	a.problem(call{method: "POST", path: casePath + "/settlement", token: finance, status: 409, body: obj{}}, "conflict", nil)
	var recovered bool
	for _, op := range a.do(call{method: "GET", path: acct + "/operations", token: aliceTok, status: 200}).list("operations") {
		recovered = recovered || op.(map[string]any)["type"] == "CompensationRecovered"
	}
	want(t, "the recovery among the holder's operations", recovered, true)
	// The holder's statement shows the compensation and its recovery.
	var moved []string
	for _, e := range a.do(call{method: "GET", path: acct + "/statement", token: aliceTok, status: 200}).list("entries") {
		if m := e.(map[string]any); m["counterparty"] == "risk-reserve-CNY" {
			moved = append(moved, fmt.Sprint(m["type"], " ", m["direction"], " ", m["amount"], " ", m["ref"] == caseID))
		}
	}
	want(t, "the holder's statement with the reserve", strings.Join(moved, ", "),
		"CompensationPaid credit 400.00 true, CompensationRecovered debit 300.00 true")

	// Closing: the customer bore their share.
	closed := a.do(call{method: "POST", path: casePath + "/close", token: finance, status: 200})
	want(t, "closed", closed.str("status"), "closed")
	want(t, "outcome", closed.obj("closing")["outcome"], any("customer_liable"))
	a.problem(call{method: "POST", path: casePath + "/close", token: compliance, status: 409, body: obj{}}, "case_state", nil)
	if _, shown := a.do(call{method: "GET", path: casePath, token: aliceTok, status: 200}).obj("closing")["staff_key"]; shown {
		t.Error("the holder sees the closing's staff key")
	}

	// The second case: the institution is liable, there is nothing left
	// to pay, and compliance closes it.
	inst := a.do(call{method: "POST", path: shortPath + "/liability", token: compliance, status: 200, body: obj{"liable": "institution"}})
	want(t, "institution liable", inst.obj("liability")["liable"], any("institution"))
	a.problem(call{method: "POST", path: shortPath + "/settlement", token: finance, status: 409, body: obj{}}, "conflict", nil)
	want(t, "second case outcome", a.do(call{method: "POST", path: shortPath + "/close", token: compliance, status: 200, body: obj{}}).obj("closing")["outcome"], any("compensated"))

	// The reserve: 600.00 topped up, 550.00 paid out, 300.00 taken back
	// (counted once the balances projection has applied it).
	reserveBalance := func(want string) reply {
		t.Helper()
		var r reply
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			r = a.do(call{method: "GET", path: "/v1/reserve?currency=CNY", token: finance, status: 200})
			if r.str("balance") == want || time.Now().After(deadline) {
				break
			}
		}
		if r.str("balance") != want {
			t.Errorf("reserve balance %s, want %s", r.str("balance"), want)
		}
		return r
	}
	res := reserveBalance("350.00")
	want(t, "reserve account", res.str("account_id"), "risk-reserve-CNY")
	want(t, "closes before any", len(res.list("closes")), 0)
	a.do(call{method: "GET", path: "/v1/reserve", token: auditor, status: 200})
	a.problem(call{method: "GET", path: "/v1/reserve", token: compliance, status: 403}, "forbidden", nil)
	// Sessions read neither the reserve nor the report; the document admits
	// only staff keys there.
	a.problem(call{method: "GET", path: "/v1/reserve", token: aliceTok, status: 403, docRejects: true}, "forbidden", nil)
	a.problem(call{method: "GET", path: "/v1/reports/annual/2026", token: aliceTok, status: 403, docRejects: true}, "forbidden", nil)
	a.problem(call{method: "GET", path: "/v1/reserve?currency=XXX", token: finance, status: 400}, "invalid_request", obj{"field": "currency"})

	// Daily closes: today is not over; tomorrow it is, once; the close
	// provisions 0.05% of the day's volume (550.00).
	closeDay := call{method: "POST", path: "/v1/reserve/closes", token: finance, status: 409, body: obj{"day": "2026-03-02", "currency": "CNY"}}
	a.problem(closeDay, "day_not_over", nil)
	a.problem(call{method: "POST", path: "/v1/reserve/closes", token: finance, status: 400, docRejects: true, body: obj{"day": "2 March"}},
		"invalid_request", obj{"field": "day"})
	a.problem(call{method: "POST", path: "/v1/reserve/closes", token: operator, status: 403, body: closeDay.body}, "forbidden", nil)
	clk.Advance(24 * time.Hour)
	closeDay.status = 200
	cl := a.do(closeDay)
	want(t, "close volume", cl.str("volume"), "550.00")
	want(t, "close fee income", cl.str("fee_income"), "0.00")
	want(t, "close provisioned", cl.str("provisioned"), "0.27")
	want(t, "close policy", cl.str("policy"), "default-1")
	// Closing it again (the currency defaults to CNY) returns the same close.
	want(t, "closing again", a.do(call{method: "POST", path: "/v1/reserve/closes", token: finance, status: 200,
		body: obj{"day": "2026-03-02"}}).body["through_position"], cl.body["through_position"])
	res = reserveBalance("350.27")
	want(t, "closes", len(res.list("closes")), 1)

	// The reserve's statement: every movement with the balance after it.
	mv := a.do(call{method: "GET", path: "/v1/reserve/movements?currency=CNY", token: finance, status: 200})
	want(t, "movements account", mv.str("account_id"), "risk-reserve-CNY")
	var movements []string
	for _, e := range mv.list("entries") {
		m := e.(map[string]any)
		movements = append(movements, fmt.Sprint(m["type"], " ", m["direction"], " ", m["amount"], " ", m["balance_after"]))
	}
	want(t, "reserve movements", strings.Join(movements, ", "), "ReserveAdjusted credit 500.00 500.00, CompensationPaid debit 400.00 100.00, "+
		"ReserveAdjusted credit 100.00 200.00, CompensationPaid debit 150.00 50.00, CompensationRecovered credit 300.00 350.00, "+
		"ReserveProvisioned credit 0.27 350.27")
	if last := mv.list("entries")[len(movements)-1].(map[string]any); last["ref"] != "2026-03-02" {
		t.Errorf("the provision's ref %v, want its day", last["ref"])
	}
	want(t, "auditor's movement description", a.do(call{method: "GET", path: "/v1/reserve/movements?limit=1", token: auditor, status: 200}).list("entries")[0].(map[string]any)["description"], any("***"))
	a.problem(call{method: "GET", path: "/v1/reserve/movements?currency=XXX", token: finance, status: 400}, "invalid_request", obj{"field": "currency"})
	a.problem(call{method: "GET", path: "/v1/reserve/movements", token: regulator, status: 403}, "forbidden", nil)
	a.problem(call{method: "GET", path: "/v1/reserve/movements", token: operator, status: 403}, "forbidden", nil)

	// The annual report, for the regulator (and finance, the auditor), in
	// JSON, CSV and HTML.
	year := "/v1/reports/annual/2026"
	rep := a.do(call{method: "GET", path: year, token: regulator, status: 200})
	want(t, "report year", rep.body["year"], any(2026.0))
	risk := rep.obj("risk_events")["by_kind"].(map[string]any)
	want(t, "losses reported", risk["loss_reported"], any(2.0))
	want(t, "shortfalls", risk["reserve_shortfall"], any(1.0))
	cny := rep.list("currencies")[0].(map[string]any)
	want(t, "customer losses", cny["customer_losses"].(map[string]any)["amount"], any("550.00"))
	want(t, "compensation paid", cny["compensation_paid"].(map[string]any)["amount"], any("550.00"))
	want(t, "recovered", cny["recovered"].(map[string]any)["amount"], any("300.00"))
	want(t, "topped up", cny["reserve_topped_up"], any("600.00"))
	want(t, "provisioned", cny["reserve_provisioned"], any("0.27"))
	want(t, "reserve at year end", cny["reserve_balance_year_end"], any("350.27"))
	a.do(call{method: "GET", path: year + "?format=json", token: finance, status: 200})
	csv := a.do(call{method: "GET", path: year + "?format=csv", token: regulator, status: 200})
	want(t, "CSV content type", csv.header.Get("Content-Type"), "text/csv; charset=utf-8")
	if !strings.HasPrefix(csv.text, "year,currency,figure,count,amount,cases\n") || !strings.Contains(csv.text, "\n2026,CNY,customer_losses,2,550.00,") {
		t.Errorf("CSV report:\n%s", csv.text)
	}
	page := a.do(call{method: "GET", path: year + "?format=html", token: auditor, status: 200})
	want(t, "HTML content type", page.header.Get("Content-Type"), "text/html; charset=utf-8")
	if !strings.Contains(page.text, `data-figure="losses_amount">550.00<`) || !strings.Contains(page.text, caseID) {
		t.Errorf("the HTML report lacks the losses or the cases behind them:\n%s", page.text)
	}
	a.problem(call{method: "GET", path: year + "?format=xml", token: regulator, status: 400, docRejects: true}, "invalid_request", obj{"field": "format"})
	a.problem(call{method: "GET", path: "/v1/reports/annual/1999", token: regulator, status: 400, docRejects: true}, "invalid_request", obj{"field": "year"})
	a.problem(call{method: "GET", path: year, token: operator, status: 403}, "forbidden", nil)
	a.problem(call{method: "GET", path: year, token: compliance, status: 403}, "forbidden", nil)

	// The public disclosure: not before 8 January 2027 in Shanghai; then
	// the year's figures, and nobody's name, account or case.
	disclosure := call{method: "GET", path: "/disclosures/2026", status: 404}
	a.problem(disclosure, "not_found", nil)
	loc, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Date(2027, 1, 8, 0, 0, 0, 0, loc).Sub(clk.Peek()) - time.Minute)
	a.problem(disclosure, "not_found", nil)
	clk.Advance(2 * time.Minute)
	disclosure.status = 200
	pub2026 := a.do(disclosure)
	want(t, "disclosure content type", pub2026.header.Get("Content-Type"), "text/html; charset=utf-8")
	want(t, "disclosure Cache-Control", pub2026.header.Get("Cache-Control"), "public, max-age=3600")
	if !strings.Contains(pub2026.text, `data-figure="losses_amount">550.00<`) || !strings.Contains(pub2026.text, `data-figure="risk_total">3<`) {
		t.Errorf("the disclosure lacks the year's figures:\n%s", pub2026.text)
	}
	for _, secret := range []string{"Li Wei", "Zhang Min", "Wang Fang", alice, bob, carol, caseID, short.str("case_id")} {
		if strings.Contains(pub2026.text, secret) {
			t.Errorf("the public disclosure shows %q", secret)
		}
	}
	a.problem(call{method: "GET", path: "/disclosures/2026", token: "pls_garbage", status: 401}, "unauthenticated", nil)
	a.problem(call{method: "GET", path: "/disclosures/20x6", status: 400, docRejects: true}, "invalid_request", obj{"field": "year"})
}

// TestOpenAPIDisputes drives disputes and complaints (Art. 41), the
// staff's lists of cases and finance's page through the real handlers,
// with real credentials, and validates every request and reply against
// the document: a holder opens a dispute about an error in their payment
// and a complaint; another holder can neither read nor withdraw them;
// staff assign, answer and resolve; the holder sees no staff keys, the
// auditor no words; the lists show what is open, and overdue once the
// service time has passed; the holder withdraws the complaint.
func TestOpenAPIDisputes(t *testing.T) {
	clk := &clock{now: time.Date(2026, 3, 2, 1, 0, 5, 0, time.UTC)} // 09:00:05 in Shanghai
	st := newStack(t, clk)
	a := newAPI(t, st.URL)
	operator, funding := st.key(t, staffkeys.RoleOperator), st.key(t, staffkeys.RoleFunding)
	finance, compliance := st.key(t, staffkeys.RoleFinance), st.key(t, staffkeys.RoleCompliance)
	auditor, regulator := st.key(t, staffkeys.RoleAuditor), st.key(t, staffkeys.RoleRegulator)
	const password = "correct horse battery staple"
	const nobody = "01JD8X3Q4Z5Y6W7V8T9S0R1P2N"

	open := func(name string) (id, pw, tok string) {
		t.Helper()
		r := a.do(call{method: "POST", path: "/v1/accounts", token: operator, status: 201,
			body: obj{"holder_name": name, "currency": "CNY", "identity_check": checked, "factor": obj{"method": "password", "password": password}}})
		id, pw = r.str("id"), r.obj("first_factor")["factor_id"].(string)
		tok = a.do(call{method: "POST", path: "/v1/accounts/" + id + "/sessions", status: 201,
			body: obj{"device_id": "laptop-1", "proofs": []any{obj{"factor_id": pw, "password": password}}}}).str("token")
		return id, pw, tok
	}
	alice, alicePW, aliceTok := open("Li Wei")
	bob, _, _ := open("Wang Fang")
	carol, _, carolTok := open("Zhang Min")
	acct := "/v1/accounts/" + alice
	a.do(call{method: "POST", path: acct + "/deposits", token: funding, status: 201, body: obj{"amount": "100.00", "reference": "bank-transfer-1"}})
	p := a.do(call{method: "POST", path: acct + "/payments", token: aliceTok, status: 201,
		body: obj{"payee_account_id": bob, "amount": "12.50", "currency": "CNY", "channel": "app", "terminal": "desktop", "device_id": "laptop-1", "description": "tea"}})
	pid := p.str("payment_id")
	a.do(call{method: "POST", path: acct + "/payments/" + pid + "/confirm", token: aliceTok, status: 200,
		body: obj{"device_id": "laptop-1", "proofs": []any{obj{"factor_id": alicePW, "password": password}}}})

	// Opening: the holder, on their own account; an error names one of
	// the account's payments; the subject is required, the kind one of
	// two; a card number in the description is refused (R19).
	openError := call{method: "POST", path: acct + "/disputes", token: aliceTok, key: "dispute-1", status: 201,
		body: obj{"kind": "error", "payment_id": pid, "subject": "Charged twice for one order", "description": "The terminal charged me 12.50 twice."}}
	a.problem(call{method: "POST", path: acct + "/disputes", token: aliceTok, status: 400,
		body: obj{"kind": "error", "subject": "Which payment?"}}, "invalid_request", obj{"field": "payment_id"})
	a.problem(call{method: "POST", path: acct + "/disputes", token: aliceTok, status: 400,
		body: obj{"kind": "error", "payment_id": nobody, "subject": "Not mine"}}, "invalid_request", obj{"field": "payment_id"})
	a.problem(call{method: "POST", path: "/v1/accounts/" + carol + "/disputes", token: carolTok, status: 400,
		body: obj{"kind": "error", "payment_id": pid, "subject": "Someone else's payment"}}, "invalid_request", obj{"field": "payment_id"})
	a.problem(call{method: "POST", path: acct + "/disputes", token: aliceTok, status: 400, docRejects: true,
		body: obj{"kind": "refund", "subject": "Money back"}}, "invalid_request", obj{"field": "kind"})
	a.problem(call{method: "POST", path: acct + "/disputes", token: aliceTok, status: 400, docRejects: true,
		body: obj{"kind": "complaint", "subject": strings.Repeat("x", 201)}}, "invalid_request", obj{"field": "subject"})
	a.problem(call{method: "POST", path: acct + "/disputes", token: aliceTok, status: 400, docRejects: true,
		body: obj{"kind": "complaint"}}, "invalid_request", obj{"field": "subject"})
	a.problem(call{method: "POST", path: acct + "/disputes", token: aliceTok, status: 400,
		body: obj{"kind": "complaint", "subject": "Card", "description": "my card 4111 1111 1111 1111 was charged"}}, "forbidden_field", obj{"field": "description"})
	a.problem(call{method: "POST", path: acct + "/disputes", token: carolTok, status: 403, body: openError.body}, "forbidden", nil)
	a.problem(call{method: "POST", path: acct + "/disputes", token: operator, status: 403, docRejects: true, body: openError.body}, "forbidden", nil)
	a.problem(call{method: "POST", path: acct + "/disputes", status: 401, docRejects: true, body: openError.body}, "unauthenticated", nil)

	d := a.do(openError)
	disputeID := d.str("dispute_id")
	dPath := "/v1/disputes/" + disputeID
	want(t, "dispute account", d.str("account_id"), alice)
	want(t, "dispute kind", d.str("kind"), "error")
	want(t, "dispute payment", d.str("payment_id"), pid)
	want(t, "dispute status", d.str("status"), "open")
	want(t, "dispute assignee", d.str("assignee"), "")
	want(t, "dispute overdue", d.body["overdue"], any(false))
	want(t, "dispute answers", len(d.list("answers")), 0)
	opened, _ := time.Parse(time.RFC3339Nano, d.str("opened_at"))
	due, _ := time.Parse(time.RFC3339Nano, d.str("due_by"))
	want(t, "service time", due.Sub(opened), 15*24*time.Hour)
	if _, ok := d.body["resolution"]; ok {
		t.Errorf("an open dispute has a resolution: %v", d.body)
	}
	want(t, "replayed opening", a.do(openError).str("dispute_id"), disputeID)
	reused := openError
	reused.body, reused.status = replaced(openError.body, "subject", "Another subject"), 409
	a.problem(reused, "idempotency_key_reused", nil)

	c := a.do(call{method: "POST", path: acct + "/disputes", token: aliceTok, status: 201,
		body: obj{"kind": "complaint", "subject": "The app logs me out every minute"}})
	complaintID := c.str("dispute_id")
	cPath := "/v1/disputes/" + complaintID
	want(t, "complaint payment", c.str("payment_id"), "")
	want(t, "complaint description", c.str("description"), "")

	// Reading: another holder is refused as for a dispute that does not
	// exist; staff learn it does not exist; the regulator and finance read
	// no dispute.
	want(t, "holder reads the dispute", a.do(call{method: "GET", path: dPath, token: aliceTok, status: 200}).str("subject"), "Charged twice for one order")
	a.problem(call{method: "GET", path: dPath, token: carolTok, status: 403}, "forbidden", nil)
	a.problem(call{method: "GET", path: "/v1/disputes/" + nobody, token: carolTok, status: 403}, "forbidden", nil)
	a.problem(call{method: "GET", path: "/v1/disputes/" + nobody, token: operator, status: 404}, "not_found", nil)
	for _, tok := range []string{finance, regulator} {
		a.problem(call{method: "GET", path: dPath, token: tok, status: 403}, "forbidden", nil)
	}
	a.problem(call{method: "GET", path: dPath, status: 401, docRejects: true}, "unauthenticated", nil)

	// Withdrawing is the dispute's own holder's, and checked before the
	// body is read: another holder is refused even with a body the server
	// would otherwise refuse as malformed.
	a.problem(call{method: "POST", path: dPath + "/withdrawal", token: carolTok, status: 403, body: obj{"reason": "not mine"}}, "forbidden", nil)
	a.problem(call{method: "POST", path: dPath + "/withdrawal", token: carolTok, status: 403, docRejects: true, body: obj{"bogus": true}}, "forbidden", nil)
	a.problem(call{method: "POST", path: "/v1/disputes/" + nobody + "/withdrawal", token: aliceTok, status: 403, body: obj{}}, "forbidden", nil)
	a.problem(call{method: "POST", path: dPath + "/withdrawal", token: operator, status: 403, docRejects: true, body: obj{}}, "forbidden", nil)

	// Handling is the operators' desk's and compliance's: not the holder's,
	// nor finance's or the auditor's.
	a.problem(call{method: "POST", path: dPath + "/answers", token: aliceTok, status: 403, docRejects: true, body: obj{"answer": "I answer myself"}}, "forbidden", nil)
	a.problem(call{method: "POST", path: dPath + "/assignment", token: aliceTok, status: 403, docRejects: true, body: obj{"assignee": "me"}}, "forbidden", nil)
	for _, tok := range []string{finance, auditor} {
		a.problem(call{method: "POST", path: dPath + "/answers", token: tok, status: 403, body: obj{"answer": "not mine to give"}}, "forbidden", nil)
	}
	a.problem(call{method: "POST", path: "/v1/disputes/" + nobody + "/assignment", token: operator, status: 404, body: obj{"assignee": "payments-desk"}}, "not_found", nil)
	a.problem(call{method: "POST", path: dPath + "/assignment", token: operator, status: 400, docRejects: true, body: obj{"assignee": ""}}, "invalid_request", obj{"field": "assignee"})
	assign := call{method: "POST", path: dPath + "/assignment", token: operator, key: "assign-1", status: 200, body: obj{"assignee": "payments-desk/zhao"}}
	as := a.do(assign)
	want(t, "assigned", as.str("status"), "assigned")
	want(t, "assignee", as.str("assignee"), "payments-desk/zhao")
	want(t, "replayed assignment", a.do(assign).str("assignee"), "payments-desk/zhao")

	// Resolving needs an answer first; a holder's outcome is not staff's.
	resolve := call{method: "POST", path: dPath + "/resolution", token: operator, status: 409,
		body: obj{"outcome": "upheld", "resolution": "The duplicate charge of 12.50 was refunded."}}
	a.problem(resolve, "case_state", nil)
	a.problem(call{method: "POST", path: dPath + "/answers", token: operator, status: 400, docRejects: true, body: obj{}}, "invalid_request", obj{"field": "answer"})
	an := a.do(call{method: "POST", path: dPath + "/answers", token: operator, status: 200,
		body: obj{"answer": "We found the second charge and asked for its reversal."}})
	want(t, "answered", an.str("status"), "answered")
	answers := an.list("answers")
	want(t, "answers", len(answers), 1)
	want(t, "staff see who answered", answers[0].(map[string]any)["staff_key"] != nil, true)
	a.problem(call{method: "POST", path: dPath + "/resolution", token: operator, status: 400, docRejects: true,
		body: obj{"outcome": "withdrawn", "resolution": "staff cannot withdraw"}}, "invalid_request", obj{"field": "outcome"})
	resolve.token, resolve.status = compliance, 200
	res := a.do(resolve)
	want(t, "resolved", res.str("status"), "resolved")
	want(t, "outcome", res.obj("resolution")["outcome"], any("upheld"))
	want(t, "staff see who resolved", res.obj("resolution")["staff_key"] != nil, true)
	resolve.status = 409
	a.problem(resolve, "case_state", nil)
	a.problem(call{method: "POST", path: dPath + "/answers", token: operator, status: 409, body: obj{"answer": "one more"}}, "case_state", nil)
	a.problem(call{method: "POST", path: dPath + "/withdrawal", token: aliceTok, status: 409, body: obj{}}, "case_state", nil)

	// The holder's view names no staff key; the auditor's masks the words.
	hv := a.do(call{method: "GET", path: dPath, token: aliceTok, status: 200})
	want(t, "holder sees the answer", hv.list("answers")[0].(map[string]any)["answer"], any("We found the second charge and asked for its reversal."))
	if _, shown := hv.list("answers")[0].(map[string]any)["staff_key"]; shown {
		t.Errorf("the holder sees the answer's staff key: %v", hv.body)
	}
	if _, shown := hv.obj("resolution")["staff_key"]; shown {
		t.Errorf("the holder sees the resolution's staff key: %v", hv.body)
	}
	want(t, "holder sees the resolution", hv.obj("resolution")["resolution"], any("The duplicate charge of 12.50 was refunded."))
	av := a.do(call{method: "GET", path: dPath, token: auditor, status: 200})
	want(t, "auditor's subject", av.str("subject"), "***")
	want(t, "auditor's description", av.str("description"), "***")
	want(t, "auditor's answer", av.list("answers")[0].(map[string]any)["answer"], any("***"))
	want(t, "auditor's resolution", av.obj("resolution")["resolution"], any("***"))
	want(t, "auditor's outcome", av.obj("resolution")["outcome"], any("upheld"))
	want(t, "auditor's payment", av.str("payment_id"), pid)

	// The lists, read from the cases read model, which follows the log:
	// wait until it shows what is asked.
	list := func(path, token string, n int) reply {
		t.Helper()
		var r reply
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			r = a.do(call{method: "GET", path: path, token: token, status: 200})
			if len(r.list("items")) == n || time.Now().After(deadline) {
				break
			}
		}
		if len(r.list("items")) != n {
			t.Fatalf("GET %s: %d items, want %d: %v", path, len(r.list("items")), n, r.body)
		}
		return r
	}
	item := func(r reply, i int) map[string]any { return r.list("items")[i].(map[string]any) }
	openList := list("/v1/disputes", operator, 1)
	want(t, "list kind", openList.str("kind"), "dispute")
	want(t, "open dispute", item(openList, 0)["id"], any(complaintID))
	want(t, "open dispute status", item(openList, 0)["status"], any("open"))
	want(t, "open dispute account", item(openList, 0)["account_id"], any(alice))
	want(t, "last page", openList.str("next_cursor"), "")
	all := list("/v1/disputes?status=all", compliance, 2)
	want(t, "oldest first", item(all, 0)["id"], any(disputeID))
	want(t, "resolved in the list", item(all, 0)["status"], any("resolved"))
	if item(all, 0)["ended_at"] == nil || item(all, 1)["ended_at"] != nil {
		t.Errorf("ended_at: %v", all.body)
	}
	list("/v1/disputes?overdue=true", finance, 0)
	lossList := list("/v1/loss-cases?status=all", auditor, 0)
	want(t, "loss list kind", lossList.str("kind"), "loss")
	a.problem(call{method: "GET", path: "/v1/loss-cases?overdue=true", token: finance, status: 400}, "invalid_request", obj{"field": "overdue"})
	a.problem(call{method: "GET", path: "/v1/disputes?status=closed", token: finance, status: 400, docRejects: true}, "invalid_request", obj{"field": "status"})
	a.problem(call{method: "GET", path: "/v1/disputes?overdue=false", token: finance, status: 400, docRejects: true}, "invalid_request", obj{"field": "overdue"})
	a.problem(call{method: "GET", path: "/v1/disputes?cursor=" + strings.Repeat("Z", 41), token: finance, status: 400, docRejects: true}, "invalid_request", obj{"field": "cursor"})
	a.problem(call{method: "GET", path: "/v1/disputes", token: regulator, status: 403}, "forbidden", nil)
	a.problem(call{method: "GET", path: "/v1/loss-cases", token: funding, status: 403}, "forbidden", nil)
	a.problem(call{method: "GET", path: "/v1/disputes", token: aliceTok, status: 403, docRejects: true}, "forbidden", nil)

	// Past the service time the unanswered complaint is overdue.
	clk.Advance(15*24*time.Hour + time.Minute)
	aliceTok = a.do(call{method: "POST", path: acct + "/sessions", status: 201, // the old session expired
		body: obj{"device_id": "laptop-1", "proofs": []any{obj{"factor_id": alicePW, "password": password}}}}).str("token")
	overdue := list("/v1/disputes?overdue=true", operator, 1)
	want(t, "overdue dispute", item(overdue, 0)["id"], any(complaintID))
	want(t, "overdue flag", item(overdue, 0)["overdue"], any(true))
	want(t, "the complaint read is overdue", a.do(call{method: "GET", path: cPath, token: aliceTok, status: 200}).body["overdue"], any(true))
	want(t, "a resolved dispute is never overdue", a.do(call{method: "GET", path: dPath, token: operator, status: 200}).body["overdue"], any(false))

	// Finance's page: the overdue complaint is counted, the log and the
	// read models agree. Sessions and other roles do not see it.
	page := a.do(call{method: "GET", path: "/v1/finance", token: finance, status: 200})
	want(t, "finance page content type", page.header.Get("Content-Type"), "text/html; charset=utf-8")
	for _, s := range []string{"No mismatch", `id="overdue-disputes">1<`, `id="open-cases">0<`} {
		if !strings.Contains(page.text, s) {
			t.Errorf("finance's page lacks %q:\n%s", s, page.text)
		}
	}
	a.do(call{method: "GET", path: "/v1/finance", token: auditor, status: 200})
	a.problem(call{method: "GET", path: "/v1/finance", token: aliceTok, status: 403, docRejects: true}, "forbidden", nil)
	a.problem(call{method: "GET", path: "/v1/finance", token: operator, status: 403}, "forbidden", nil)

	// The holder withdraws their complaint, with no staff key on it.
	w := a.do(call{method: "POST", path: cPath + "/withdrawal", token: aliceTok, key: "withdraw-1", status: 200, body: obj{"reason": "It works again."}})
	want(t, "withdrawn status", w.str("status"), "resolved")
	want(t, "withdrawn outcome", w.obj("resolution")["outcome"], any("withdrawn"))
	want(t, "withdrawal reason", w.obj("resolution")["resolution"], any("It works again."))
	want(t, "withdrawn is not overdue", w.body["overdue"], any(false))
	if _, shown := w.obj("resolution")["staff_key"]; shown {
		t.Errorf("the holder's withdrawal shows a staff key: %v", w.body)
	}
	if _, shown := a.do(call{method: "GET", path: cPath, token: operator, status: 200}).obj("resolution")["staff_key"]; shown {
		t.Errorf("staff see a staff key on the holder's withdrawal")
	}
	list("/v1/disputes?overdue=true", operator, 0)
	list("/v1/disputes", operator, 0)

	// The annual report counts them: two opened, one upheld, one withdrawn.
	figures := a.do(call{method: "GET", path: "/v1/reports/annual/2026", token: regulator, status: 200}).obj("disputes")
	want(t, "report disputes", fmt.Sprint(figures), "map[complaints:1 errors:1 opened:2 resolved:map[partially_upheld:0 rejected:0 upheld:1 withdrawn:1]]")

	// The disputes' events stay out of the holder's operations: each
	// dispute has its own stream.
	for _, op := range a.do(call{method: "GET", path: acct + "/operations", token: aliceTok, status: 200}).list("operations") {
		if typ := op.(map[string]any)["type"].(string); strings.HasPrefix(typ, "Dispute") {
			t.Errorf("a dispute event among the account's operations: %s", typ)
		}
	}
}

// TestOpenAPIRateLimited: failed authentications use up the budgets of
// the account in the path and of the client address; then requests
// without valid credentials are 429 rate_limited with Retry-After, as the
// document says, while valid credentials still work.
func TestOpenAPIRateLimited(t *testing.T) {
	clk := &clock{now: time.Date(2026, 3, 2, 1, 0, 5, 0, time.UTC)}
	st := newStack(t, clk)
	a := newAPI(t, st.URL)
	operator := st.key(t, staffkeys.RoleOperator)
	const password = "correct horse battery staple"
	openAccount := func(name string) (id, factor string) {
		r := a.do(call{method: "POST", path: "/v1/accounts", token: operator, status: 201,
			body: obj{"holder_name": name, "currency": "CNY", "identity_check": checked, "factor": obj{"method": "password", "password": password}}})
		return r.str("id"), r.obj("first_factor")["factor_id"].(string)
	}
	x, xpw := openAccount("Li Wei")
	y, _ := openAccount("Wang Fang")
	tok := a.do(call{method: "POST", path: "/v1/accounts/" + x + "/sessions", status: 201,
		body: obj{"device_id": "laptop-1", "proofs": []any{obj{"factor_id": xpw, "password": password}}}}).str("token")
	// Well-formed session tokens that name no session: the document
	// accepts them, the server does not.
	forged := func(account string) string {
		return "pls_" + account + "_01JD8X3Q4Z5Y6W7V8T9S0R1P2N_" + strings.Repeat("A", 43)
	}
	// Bad tokens naming an account count against the address only: the
	// holder's logins are not locked out by them.
	for i := 0; i < 5; i++ {
		a.problem(call{method: "GET", path: "/v1/accounts/" + x + "/balance", token: forged(x), status: 401}, "unauthenticated", nil)
	}
	// Failed logins count against the account too: five wrong passwords
	// (then R9's lock), ten failures in all, and its logins are throttled.
	wrong := obj{"device_id": "laptop-1", "proofs": []any{obj{"factor_id": xpw, "password": "not the password"}}}
	for i := 0; i < 10; i++ {
		status, code := 401, "authentication_failed"
		if i >= 4 {
			status, code = 423, "access_locked"
		}
		a.problem(call{method: "POST", path: "/v1/accounts/" + x + "/sessions", status: status, body: wrong}, code, nil)
	}
	a.problem(call{method: "POST", path: "/v1/accounts/" + x + "/sessions", status: 429,
		body: obj{"device_id": "laptop-1", "proofs": []any{obj{"factor_id": xpw, "password": password}}}}, "rate_limited", nil)
	want(t, "the holder's own session while throttled",
		a.do(call{method: "GET", path: "/v1/accounts/" + x + "/balance", token: tok, status: 200}).str("available"), "0.00")
	// The address's budget (20): five more failures against another account.
	for i := 0; i < 5; i++ {
		a.problem(call{method: "GET", path: "/v1/accounts/" + y, token: forged(y), status: 401}, "unauthenticated", nil)
	}
	a.problem(call{method: "POST", path: "/v1/accounts", status: 429,
		body: obj{"holder_name": "Zhang Min", "currency": "CNY", "factor": obj{"method": "password", "password": password}}}, "rate_limited", nil)
	openAccount("Zhang Min") // an operator's key is never throttled
}

// TestOpenAPIPaymentChallenge writes the client side of dynamic linking
// from the document alone: the challenge template of initiatePayment's
// x-payment-challenge, filled from the reply, must match the challenge
// the server issued up to a nonce of the documented form; a certificate
// signature over it confirms the payment, and a signature over the same
// challenge with another amount or payee does not.
func TestOpenAPIPaymentChallenge(t *testing.T) {
	clk := &clock{now: time.Date(2026, 3, 2, 1, 0, 5, 0, time.UTC)}
	st := newStack(t, clk)
	a := newAPI(t, st.URL)
	operator, funding := st.key(t, staffkeys.RoleOperator), st.key(t, staffkeys.RoleFunding)
	const password = "correct horse battery staple"
	openAccount := func(name string) (id, factor string) {
		r := a.do(call{method: "POST", path: "/v1/accounts", token: operator, status: 201,
			body: obj{"holder_name": name, "currency": "CNY", "identity_check": checked, "factor": obj{"method": "password", "password": password}}})
		return r.str("id"), r.obj("first_factor")["factor_id"].(string)
	}
	payer, pw := openAccount("Li Wei")
	payee, _ := openAccount("Wang Fang")
	other, _ := openAccount("Zhang Min")
	acct := "/v1/accounts/" + payer
	pub, priv, err := ed25519.GenerateKey(bytes.NewReader(bytes.Repeat([]byte{9}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	cert := a.do(call{method: "POST", path: acct + "/factors", token: operator, status: 201,
		body: obj{"factor": obj{"method": "certificate", "public_key": base64.StdEncoding.EncodeToString(pub)}, "identity_check": checked}}).str("factor_id")
	tok := a.do(call{method: "POST", path: acct + "/sessions", status: 201,
		body: obj{"device_id": "laptop-1", "proofs": []any{obj{"factor_id": pw, "password": password}}}}).str("token")
	a.do(call{method: "POST", path: acct + "/deposits", token: funding, status: 201, body: obj{"amount": "100.00", "reference": "transfer-1"}})

	// What the document says.
	ext, _ := a.doc.Paths.Find("/v1/accounts/{id}/payments").Post.Extensions["x-payment-challenge"].(map[string]any)
	template, _ := ext["template"].(string)
	nonceRE, err := regexp.Compile(fmt.Sprint(ext["nonce_pattern"]))
	if template == "" || err != nil {
		t.Fatalf("x-payment-challenge: template %q, nonce_pattern: %v", template, err)
	}
	before, found := strings.CutSuffix(template, "{nonce}")
	if !found {
		t.Fatalf("the template %q does not end with {nonce}", template)
	}
	placeholder := regexp.MustCompile(`\{([a-z_.]+)\}`)
	// fill replaces the placeholders of s from the initiation reply, with
	// details overridden by change.
	fill := func(s string, p reply, change map[string]string) string {
		return placeholder.ReplaceAllStringFunc(s, func(m string) string {
			name := m[1 : len(m)-1]
			if v, ok := change[name]; ok {
				return v
			}
			if d, ok := strings.CutPrefix(name, "details."); ok {
				return fmt.Sprint(p.obj("details")[d])
			}
			if v := p.str(name); v != "" {
				return v
			}
			t.Fatalf("placeholder %s of the template is not in the reply %v", m, p.body)
			return ""
		})
	}
	// challengeOf checks the server's challenge against the document and
	// returns what to sign for the payment with change applied.
	challengeOf := func(p reply, change map[string]string) []byte {
		t.Helper()
		issued, err := base64.StdEncoding.DecodeString(p.str("challenge"))
		if err != nil {
			t.Fatal(err)
		}
		prefix := fill(before, p, nil)
		nonce, found := strings.CutPrefix(string(issued), prefix)
		if !found || !nonceRE.MatchString(nonce) {
			t.Fatalf("the challenge %q is not %q and a nonce", issued, prefix)
		}
		if rebuilt := fill(before, p, nil) + nonce; rebuilt != string(issued) {
			t.Fatalf("rebuilt %q, issued %q", rebuilt, issued)
		}
		// The document's template is the domain's encoding.
		raw, err := base64.RawURLEncoding.DecodeString(nonce)
		if err != nil {
			t.Fatal(err)
		}
		d := p.obj("details")
		cur := domain.Currency(d["currency"].(string))
		canonical := domain.PaymentChallenge(p.str("payment_id"), d["payer"].(string), d["payee"].(string),
			domain.MustMoney(d["amount"].(string), cur), domain.MustMoney(d["fee"].(string), cur), raw)
		if !bytes.Equal(canonical, issued) {
			t.Fatalf("domain.PaymentChallenge %q, issued %q", canonical, issued)
		}
		return []byte(fill(before, p, change) + nonce)
	}
	pay := func(amount string) reply {
		return a.do(call{method: "POST", path: acct + "/payments", token: tok, status: 201,
			body: obj{"payee_account_id": payee, "amount": amount, "currency": "CNY", "channel": "app",
				"terminal": "mobile", "device_id": "phone-1", "description": "tea"}})
	}
	confirm := func(p reply, signed []byte, withPassword bool, status int) reply {
		proofs := []any{obj{"factor_id": cert, "signature": base64.StdEncoding.EncodeToString(ed25519.Sign(priv, signed))}}
		if withPassword {
			proofs = append(proofs, obj{"factor_id": pw, "password": password})
		}
		return a.do(call{method: "POST", path: acct + "/payments/" + p.str("payment_id") + "/confirm", token: tok, status: status,
			body: obj{"device_id": "phone-1", "proofs": proofs}})
	}

	p1 := pay("12.50")
	c1 := confirm(p1, challengeOf(p1, nil), true, 200)
	want(t, "level", c1.str("verification_level"), "two_factor_certificate")

	p2 := pay("12.50")
	for i, change := range []map[string]string{{"details.amount": "99.00"}, {"details.payee": other}} {
		r := confirm(p2, challengeOf(p2, change), false, 422)
		want(t, fmt.Sprintf("tampered challenge %v", change), r.str("code"), "proof_invalid")
		want(t, "attempts_remaining", r.body["attempts_remaining"], any(float64(4-i)))
	}
	want(t, "the pending payment, properly signed", confirm(p2, challengeOf(p2, nil), false, 200).str("status"), "completed")
	want(t, "payer balance", a.do(call{method: "GET", path: acct + "/balance", token: tok, status: 200}).str("available"), "75.00")
}

// device is a holder's device with its Ed25519 key pair.
type device struct {
	id   string
	pub  ed25519.PublicKey
	priv ed25519.PrivateKey
}

func newDevice(t *testing.T, id string, seed byte) device {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(bytes.NewReader(bytes.Repeat([]byte{seed}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	return device{id: id, pub: pub, priv: priv}
}

func (d device) publicKey() string { return base64.StdEncoding.EncodeToString(d.pub) }

// deviceChallenges is the client side of device signatures written from
// the document alone: the template of x-device-challenge and, for each
// operation and signature member, what fills it.
type deviceChallenges struct {
	template string
	skew     float64
	entries  []map[string]any
}

var (
	templatePlaceholder = regexp.MustCompile(`\{([a-z_]+)\}`)
	requestPlaceholder  = regexp.MustCompile(`^\{(path|body)\.([a-z_.]+)\}$`)
)

func deviceChallengesOf(t *testing.T, doc *openapi3.T) deviceChallenges {
	t.Helper()
	ext, _ := doc.Extensions["x-device-challenge"].(map[string]any)
	template, _ := ext["template"].(string)
	skew, _ := ext["skew_seconds"].(float64)
	raw, _ := ext["signatures"].([]any)
	if template == "" || skew == 0 || len(raw) == 0 {
		t.Fatalf("x-device-challenge: template %q, skew_seconds %v, %d signatures", template, ext["skew_seconds"], len(raw))
	}
	dc := deviceChallenges{template: template, skew: skew}
	for _, e := range raw {
		m, _ := e.(map[string]any)
		for _, k := range []string{"operation", "purpose", "account_id", "device_id", "signed_at", "subject", "signature"} {
			if _, ok := m[k].(string); !ok {
				t.Fatalf("x-device-challenge entry %v has no %s", e, k)
			}
		}
		dc.entries = append(dc.entries, m)
	}
	return dc
}

// entry is the signature of operation that goes in the member field.
func (dc deviceChallenges) entry(t *testing.T, operation, field string) map[string]any {
	t.Helper()
	for _, e := range dc.entries {
		if e["operation"] == operation && e["signature"] == field {
			return e
		}
	}
	t.Fatalf("x-device-challenge has no %s signature for %s", field, operation)
	return nil
}

// lookup is the string at a dotted JSON path of body.
func lookup(body map[string]any, path string) (string, bool) {
	var v any = body
	for _, k := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return "", false
		}
		v = m[k]
	}
	s, ok := v.(string)
	return s, ok
}

// set puts v at a dotted JSON path of body.
func set(body map[string]any, path string, v string) {
	keys := strings.Split(path, ".")
	for _, k := range keys[:len(keys)-1] {
		body = body[k].(map[string]any)
	}
	body[keys[len(keys)-1]] = v
}

// challenge fills the template for the entry of operation and field from
// the request's path parameters and body, and checks the result against
// domain.DeviceChallenge.
func (dc deviceChallenges) challenge(t *testing.T, operation, field string, params map[string]string, body obj) []byte {
	t.Helper()
	e := dc.entry(t, operation, field)
	value := func(k string) string {
		spec := e[k].(string)
		m := requestPlaceholder.FindStringSubmatch(spec)
		switch {
		case m == nil:
			return spec // literal
		case m[1] == "path":
			if v, ok := params[m[2]]; ok {
				return v
			}
		default:
			if v, ok := lookup(body, m[2]); ok {
				return v
			}
		}
		t.Fatalf("%s %s: %s = %s is not in the request (path %v, body %v)", operation, field, k, spec, params, body)
		return ""
	}
	filled := templatePlaceholder.ReplaceAllStringFunc(dc.template, func(p string) string { return value(p[1 : len(p)-1]) })
	at, err := time.Parse(time.RFC3339Nano, value("signed_at"))
	if err != nil {
		t.Fatalf("%s %s: signed_at: %v", operation, field, err)
	}
	canonical := domain.DeviceChallenge(value("purpose"), value("account_id"), value("device_id"), at, value("subject"))
	if string(canonical) != filled {
		t.Fatalf("%s %s: the document's challenge %q, domain.DeviceChallenge %q", operation, field, filled, canonical)
	}
	return []byte(filled)
}

// sign puts priv's signature over the challenge of operation's field
// signature into body (at field) and returns body.
func (dc deviceChallenges) sign(t *testing.T, operation, field string, priv ed25519.PrivateKey, params map[string]string, body obj) obj {
	t.Helper()
	set(body, field, base64.StdEncoding.EncodeToString(ed25519.Sign(priv, dc.challenge(t, operation, field, params, body))))
	return body
}

// TestOpenAPIDeviceChallenge: x-device-challenge names, for every
// operation that takes a device signature, where each part of the
// challenge comes from, in members and path parameters the operation has;
// its template is domain.DeviceChallenge and its skew domain.DeviceSkew.
func TestOpenAPIDeviceChallenge(t *testing.T) {
	doc := loadDoc(t)
	dc := deviceChallengesOf(t, doc)
	want(t, "skew_seconds", dc.skew, domain.DeviceSkew.Seconds())
	type opInfo struct {
		path string
		op   *openapi3.Operation
		item *openapi3.PathItem
	}
	ops := map[string]opInfo{}
	for path, item := range doc.Paths.Map() {
		for _, op := range item.Operations() {
			ops[op.OperationID] = opInfo{path, op, item}
		}
	}
	// hasMember reports whether the request schema has the dotted member.
	var hasMember func(s *openapi3.SchemaRef, path string) bool
	hasMember = func(s *openapi3.SchemaRef, path string) bool {
		if s == nil || s.Value == nil {
			return false
		}
		for _, sub := range s.Value.AllOf {
			if hasMember(sub, path) {
				return true
			}
		}
		head, rest, nested := strings.Cut(path, ".")
		p := s.Value.Properties[head]
		if !nested {
			return p != nil
		}
		return hasMember(p, rest)
	}
	signed := map[string]bool{}
	for _, e := range dc.entries {
		name, field := e["operation"].(string), e["signature"].(string)
		info, ok := ops[name]
		if !ok {
			t.Errorf("x-device-challenge names operation %s, which the document does not have", name)
			continue
		}
		signed[name+" "+field] = true
		schema := info.op.RequestBody.Value.Content.Get("application/json").Schema
		for _, k := range []string{"account_id", "device_id", "signed_at", "subject", "signature"} {
			spec := e[k].(string)
			if k == "signature" {
				spec = "{body." + spec + "}"
			}
			m := requestPlaceholder.FindStringSubmatch(spec)
			switch {
			case m == nil && strings.ContainsAny(spec, "{}"):
				t.Errorf("%s %s: %s %q is neither literal nor a placeholder", name, field, k, spec)
			case m == nil:
			case m[1] == "path":
				if !strings.Contains(info.path, "{"+m[2]+"}") {
					t.Errorf("%s %s: %s names path parameter %s, not in %s", name, field, k, m[2], info.path)
				}
			default:
				if !hasMember(schema, m[2]) {
					t.Errorf("%s %s: %s names body member %s, which its request does not have", name, field, k, m[2])
				}
			}
		}
	}
	// Every request that takes device_signature says what it signs.
	for name, info := range ops {
		if info.op.RequestBody == nil {
			continue
		}
		if hasMember(info.op.RequestBody.Value.Content.Get("application/json").Schema, "device_signature") && !signed[name+" device_signature"] {
			t.Errorf("%s takes device_signature, but x-device-challenge does not say what it signs", name)
		}
	}
	// The template is the domain's encoding, for a time with a fraction.
	at := time.Date(2026, 3, 2, 1, 0, 5, 250_000_000, time.UTC)
	got := dc.challenge(t, "withdraw", "device_signature", map[string]string{"id": "01JD8X3Q4Z5Y6W7V8T9S0R1P2N"},
		obj{"device_id": "laptop-1", "signed_at": at.Format(time.RFC3339Nano), "amount": "300.00"})
	want(t, "challenge", string(got), "payledger/device/v1\nwithdrawal\n01JD8X3Q4Z5Y6W7V8T9S0R1P2N\nlaptop-1\n2026-03-02T01:00:05.25Z\n300.00")
	// SignedAt's pattern admits exactly the server's rendering.
	re := regexp.MustCompile(doc.Components.Schemas["SignedAt"].Value.Pattern)
	for _, tm := range []time.Time{at, at.Truncate(time.Second), at.Add(123456789), at.Add(-250_000_000 + 1)} {
		if s := tm.UTC().Format(time.RFC3339Nano); !re.MatchString(s) {
			t.Errorf("SignedAt pattern refuses %s", s)
		}
	}
	for _, s := range []string{"2026-03-02T09:00:05+08:00", "2026-03-02T01:00:05.250Z", "2026-03-02T01:00:05.Z", "2026-03-02T01:00:05.0Z"} {
		if re.MatchString(s) {
			t.Errorf("SignedAt pattern admits %s, which the server renders otherwise", s)
		}
	}
}

// anyStrings is a JSON array of strings.
func anyStrings(l []any) []string {
	out := make([]string, 0, len(l))
	for _, v := range l {
		s, _ := v.(string)
		out = append(out, s)
	}
	return out
}

// replaced is a copy of a request body with member k set to v.
func replaced(body any, k string, v any) obj {
	out := obj{}
	for mk, mv := range body.(obj) {
		out[mk] = mv
	}
	out[k] = v
	return out
}
