package httpapi_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/payledger/payledger/httpapi"
	"github.com/payledger/payledger/ledger/staffkeys"
)

// raw sends body as is with the given Content-Type.
func raw(t *testing.T, base, method, path, token, contentType, body string) (int, http.Header, string) {
	t.Helper()
	return send(t, base, method, path, token, contentType, "", body)
}

// send sends body as is with the given Content-Type and Idempotency-Key
// ("" for none) and returns the status, headers and reply.
func send(t *testing.T, base, method, path, token, contentType, key, body string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

// TestRequestHardening: bodies must be JSON, valid UTF-8, with no key
// twice (also when the two differ only in case); free text may not carry a
// card number; a 400 names the field by its JSON path; a known path with
// another method is 405 with Allow. Each refusal changes nothing.
func TestRequestHardening(t *testing.T) {
	f := newFixture(t)
	funding := f.st.key(t, staffkeys.RoleFunding)
	deposits := "/v1/accounts/" + f.a + "/deposits"
	head := f.st.head(t)
	for _, c := range []struct {
		name, contentType, body string
		status                  int
		want                    string // in the reply
	}{
		{"TextPlain", "text/plain", `{"amount":"1.00","currency":"CNY","reference":"r1"}`, 415, `"code":"unsupported_media_type"`},
		{"NoContentType", "", `{"amount":"1.00","currency":"CNY","reference":"r1"}`, 415, `"code":"unsupported_media_type"`},
		{"FormEncoded", "application/x-www-form-urlencoded", `amount=1.00`, 415, `"code":"unsupported_media_type"`},
		{"InvalidUTF8", "application/json", "{\"amount\":\"1.00\",\"currency\":\"CNY\",\"reference\":\"r\xff\"}", 400, `"field":"body"`},
		{"DuplicateKey", "application/json", `{"amount":"1.00","currency":"CNY","reference":"r1","amount":"9000.00"}`, 400, `"field":"amount"`},
		{"DuplicateKeyOtherCase", "application/json", `{"amount":"1.00","currency":"CNY","reference":"r1","AMOUNT":"9000.00"}`, 400, `"field":"AMOUNT"`},
		{"CardInReference", "application/json", `{"amount":"1.00","currency":"CNY","reference":"card 4111 1111 1111 1111 refund"}`, 400, `"code":"forbidden_field","detail"`},
		{"CardWithDashes", "application/json", `{"amount":"1.00","currency":"CNY","reference":"4111-1111-1111-1111"}`, 400, `"field":"reference"`},
		{"WrongType", "application/json", `{"amount":1.00,"currency":"CNY","reference":"r1"}`, 400, `"field":"amount"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, _, body := raw(t, f.st.URL, "POST", deposits, funding, c.contentType, c.body)
			if status != c.status || !strings.Contains(body, c.want) {
				t.Errorf("%d %s, want %d with %s", status, body, c.status, c.want)
			}
			if strings.Contains(body, "4111") {
				t.Errorf("the refusal echoes the card number: %s", body)
			}
		})
	}
	if h := f.st.head(t); h != head {
		t.Fatalf("refused requests appended %d events", h-head)
	}
	// A 16-digit reference that is not a card number (Luhn fails) is fine,
	// and so is a charset parameter.
	if status, _, body := raw(t, f.st.URL, "POST", deposits, funding, "application/json; charset=utf-8",
		`{"amount":"1.00","currency":"CNY","reference":"4111 1111 1111 1112"}`); status != http.StatusCreated {
		t.Fatalf("a non-card 16-digit reference: %d %s", status, body)
	}
	// The field of an embedded part of a request is named by its JSON path.
	tok := f.login(t, f.a, f.pwA)
	if status, _, body := raw(t, f.st.URL, "PUT", "/v1/accounts/"+f.a+"/phone", tok, "application/json",
		`{"phone":"+8613800138000","device_id":"x","version":"7","proofs":[]}`); status != http.StatusBadRequest || !strings.Contains(body, `"field":"version"`) {
		t.Fatalf("wrong type in an embedded field: %d %s", status, body)
	}
	// A card number in a list of free text (a liability's reasons, its
	// evidence) is refused by its path too, before the case is looked up.
	compliance := f.st.key(t, staffkeys.RoleCompliance)
	for _, body := range []string{
		`{"liable":"customer","reasons":["paid with 4111 1111 1111 1111"],"evidence":["e"]}`,
		`{"liable":"customer","reasons":["r"],"evidence":["x","4111-1111-1111-1111"]}`,
	} {
		status, _, reply := raw(t, f.st.URL, "POST", "/v1/loss-cases/01J00000000000000000000000/liability", compliance, "application/json", body)
		if status != http.StatusBadRequest || !strings.Contains(reply, `"code":"forbidden_field"`) || strings.Contains(reply, "4111") ||
			!(strings.Contains(reply, `"field":"reasons[0]"`) || strings.Contains(reply, `"field":"evidence[1]"`)) {
			t.Errorf("a card number in a list of free text: %d %s", status, reply)
		}
	}
	// A known path with another method.
	status, header, body := raw(t, f.st.URL, "GET", "/v1/accounts", "", "", "")
	if status != http.StatusMethodNotAllowed || header.Get("Allow") != "POST" || !strings.Contains(body, `"code":"method_not_allowed"`) {
		t.Fatalf("GET /v1/accounts: %d Allow %q %s", status, header.Get("Allow"), body)
	}
}

// TestCardNumbersInFreeText: what counts as a card number in free text,
// however it is typed, and what does not.
func TestCardNumbersInFreeText(t *testing.T) {
	f := newFixture(t)
	funding := f.st.key(t, staffkeys.RoleFunding)
	deposits := "/v1/accounts/" + f.a + "/deposits"
	for i, c := range []struct {
		reference string
		card      bool
	}{
		{"4111111111111111", true},
		{"4111  1111 1111 1111", true},
		{"4111.1111.1111.1111", true},
		{"4111/1111/1111/1111", true},
		{"4111\u00a01111\u00a01111\u00a01111", true},
		{"4111\u200b1111\u200b1111\u200b1111", true},
		{"\uff14\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11", true},
		{"refund to 378282246310005 please", true},
		{"4111 1111 1111 1112", false},
		{"transfer 2026-03-02 no. 88120", false},
		{"123456789012", false},
	} {
		body := `{"amount":"1.00","currency":"CNY","reference":` + strconvQuote(c.reference) + `}`
		status, _, reply := raw(t, f.st.URL, "POST", deposits, funding, "application/json", body)
		if c.card && (status != http.StatusBadRequest || !strings.Contains(reply, `"code":"forbidden_field"`)) {
			t.Errorf("%d %q: %d %s, want forbidden_field", i, c.reference, status, reply)
		}
		if !c.card && status != http.StatusCreated {
			t.Errorf("%d %q: %d %s, want accepted", i, c.reference, status, reply)
		}
	}
	// A key Go's decoder would fold onto an ASCII one ("ſ" onto "s").
	status, _, reply := raw(t, f.st.URL, "POST", deposits, funding, "application/json",
		`{"amount":"1.00","currency":"CNY","reference":"r-9","referen\u017fe":"4111111111111111"}`)
	if status != http.StatusBadRequest || !strings.Contains(reply, `"code":"invalid_request"`) {
		t.Errorf("a non-ASCII key: %d %s", status, reply)
	}
}

func strconvQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestCardNumbersInOtherScripts: digits of other scripts, the nine
// included, and their dashes and dots count as the card number they spell.
func TestCardNumbersInOtherScripts(t *testing.T) {
	for _, s := range []string{
		"\uff14\uff19\uff19\uff19\uff19\uff19\uff19\uff19\uff19\uff19\uff19\uff19\uff19\uff19\uff19\uff16",                   // fullwidth 4999999999999996
		"\u0664\u0669\u0669\u0669\u0669\u0669\u0669\u0669\u0669\u0669\u0669\u0669\u0669\u0669\u0669\u0666",                   // Arabic-Indic
		"\uff14\uff11\uff11\uff11\uff0d\uff11\uff11\uff11\uff11\uff0d\uff11\uff11\uff11\uff11\uff0d\uff11\uff11\uff11\uff11", // fullwidth dashes
		"4111\u20141111\u20141111\u20141111", // em dashes
	} {
		if !httpapi.HasCardNumber(s) {
			t.Errorf("%q is a card number", s)
		}
	}
	if httpapi.HasCardNumber("\uff14\uff19\uff19\uff19\uff19\uff19\uff19\uff19\uff19\uff19\uff19\uff19\uff19\uff19\uff19\uff17") {
		t.Error("a fullwidth number failing Luhn counted as a card")
	}
}
