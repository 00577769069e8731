// Package tests holds the end-to-end tests: they build the real binary, run
// it as a user would and talk to it only over HTTP.
package tests

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/internal/apiclient"
	"github.com/payledger/payledger/internal/demo"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "payledger-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "payledger")
	build := exec.Command("go", "build", "-o", binary, "../cmd/payledger")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build payledger:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// server is one running `payledger serve`.
type server struct {
	cmd    *exec.Cmd
	url    string
	stderr *logBuffer
}

// logBuffer collects the server's log. os/exec copies into it from its own
// goroutine while tests read it, so it is guarded by a mutex (under -race
// a plain bytes.Buffer was a data race).
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was logged so far.
func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var servingLine = regexp.MustCompile(`serving (https?://\S+)`)

// start runs `payledger serve --addr 127.0.0.1:0 --data dir` and waits for
// the line that names its address.
func start(t *testing.T, dir string, extra ...string) *server {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"serve", "--addr", "127.0.0.1:0", "--data", dir}, extra...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s := &server{cmd: cmd, stderr: &logBuffer{}}
	cmd.Stderr = s.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := servingLine.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
			}
		}
		close(found)
	}()
	select {
	case u, ok := <-found:
		if !ok {
			cmd.Wait()
			t.Fatalf("server exited before serving: %s", s.stderr)
		}
		s.url = u
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("server did not start within 30s: %s", s.stderr)
	}
	t.Cleanup(func() {
		if s.cmd.ProcessState == nil {
			s.cmd.Process.Kill()
			s.cmd.Wait()
		}
	})
	return s
}

// stop ends the server with sig and waits for it.
func (s *server) stop(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case err := <-done:
		if sig == syscall.SIGTERM && err != nil {
			t.Fatalf("server did not shut down cleanly: %v: %s", err, s.stderr)
		}
	case <-time.After(20 * time.Second):
		s.cmd.Process.Kill()
		t.Fatal("server did not stop within 20s")
	}
}

func runCmd(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(binary, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("payledger %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

var tokenLine = regexp.MustCompile(`(?m)^(plk_\S+)$`)

// staffKey creates a staff API key of role with `payledger keys create`
// and returns its token.
func staffKey(t *testing.T, dir, role string) string {
	t.Helper()
	out := runCmd(t, "keys", "create", "--role", role, "--label", "e2e "+role, "--data", dir)
	m := tokenLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("keys create printed no token: %s", out)
	}
	return m[1]
}

// login opens a session with a password and returns a client acting with it.
func login(t *testing.T, ctx context.Context, c *apiclient.Client, accountID, factorID, password string) *apiclient.Client {
	t.Helper()
	r, err := c.As("").Expect(ctx, http.StatusCreated, "POST", "/v1/accounts/"+accountID+"/sessions",
		map[string]any{"device_id": "laptop-1", "proofs": []any{map[string]any{"factor_id": factorID, "password": password}}}, "")
	if err != nil {
		t.Fatal(err)
	}
	return c.As(r.Str("token"))
}

// openAccount opens an account as the operator, after an identity check,
// with a password as its first factor; it returns the id and factor id.
func openAccount(t *testing.T, ctx context.Context, operator *apiclient.Client, name, kind, password string) (string, string) {
	t.Helper()
	r, err := operator.Expect(ctx, http.StatusCreated, "POST", "/v1/accounts", map[string]any{"holder_name": name, "currency": "CNY",
		"kind": kind, "identity_check": "e2e-check", "factor": map[string]any{"method": "password", "password": password}}, "")
	if err != nil {
		t.Fatal(err)
	}
	f, _ := r.Obj("first_factor")["factor_id"].(string)
	return r.Str("id"), f
}

func checkBalances(t *testing.T, ctx context.Context, c *apiclient.Client, want map[string]string) {
	t.Helper()
	for id, amount := range want {
		b, err := c.Expect(ctx, http.StatusOK, "GET", "/v1/accounts/"+id+"/balance", nil, "")
		if err != nil {
			t.Fatal(err)
		}
		if b.Str("available") != amount {
			t.Errorf("balance of %s = %s, want %s", id, b.Str("available"), amount)
		}
	}
}

func TestServeDemoScenarioSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	srv := start(t, dir)
	// Keys created beside the running server, as an operator would.
	opKey, fundKey := staffKey(t, dir, "operator"), staffKey(t, dir, "funding")
	anon := apiclient.New(srv.url)

	res, err := demo.Run(ctx, anon, demo.Staff{Operator: opKey, Funding: fundKey}, io.Discard, time.Now, nil)
	if err != nil {
		t.Fatal(err)
	}
	payer := "/v1/accounts/" + res.Payer
	// Reads as the holder append nothing; the funding desk posts deposits.
	c := login(t, ctx, anon, res.Payer, res.PayerFactor, demo.PayerPassword)
	funding := anon.As(fundKey)
	operator := anon.As(opKey)

	t.Run("ForbiddenFieldsAreRefusedAndNeverStored", func(t *testing.T) {
		before, err := c.Expect(ctx, http.StatusOK, "GET", payer+"/operations?limit=100", nil, "")
		if err != nil {
			t.Fatal(err)
		}
		cases := []struct {
			name  string
			body  map[string]any
			field string
		}{
			{"CVVAtTop", map[string]any{"amount": "1.00", "currency": "CNY", "cvv": "98765"}, "cvv"},
			{"PINInArray", map[string]any{"amount": "1.00", "currency": "CNY", "extra": []any{map[string]any{"PIN": "98765"}}}, "extra[0].PIN"},
			{"CardExpiry", map[string]any{"amount": "1.00", "currency": "CNY", "card": map[string]any{"expiry_date": "98/765"}}, "card.expiry_date"},
			{"BankPassword", map[string]any{"amount": "1.00", "currency": "CNY", "bank_account_password": "98765"}, "bank_account_password"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				r, err := funding.Expect(ctx, http.StatusBadRequest, "POST", payer+"/deposits", tc.body, "forbidden-"+tc.name)
				if err != nil {
					t.Fatal(err)
				}
				if r.Str("code") != "forbidden_field" || r.Str("field") != tc.field {
					t.Fatalf("got %s", r.Raw)
				}
				if ct := r.Header.Get("Content-Type"); ct != "application/problem+json" {
					t.Fatalf("content type %q", ct)
				}
				if bytes.Contains(r.Raw, []byte("98765")) || bytes.Contains(r.Raw, []byte("98/765")) {
					t.Fatalf("the refusal echoes the forbidden value: %s", r.Raw)
				}
			})
		}
		after, err := c.Expect(ctx, http.StatusOK, "GET", payer+"/operations?limit=100", nil, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(after.List("operations")) != len(before.List("operations")) {
			t.Fatalf("a refused request appended events: %d -> %d", len(before.List("operations")), len(after.List("operations")))
		}
		for _, f := range []string{"events.db", "events.db-wal", "readmodels.db", "readmodels.db-wal"} {
			b, err := os.ReadFile(filepath.Join(dir, f))
			if err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
			if bytes.Contains(b, []byte("98765")) {
				t.Fatalf("%s contains a forbidden value", f)
			}
		}
		logs := srv.stderr.String()
		if strings.Contains(logs, "98765") {
			t.Fatalf("the server log contains a forbidden value")
		}
	})

	t.Run("LogsNameRoutesNotPeople", func(t *testing.T) {
		// One structured line per request: the route, the status and the
		// kind of caller; no credential, account id, name or password.
		logs := srv.stderr.String()
		if !strings.Contains(logs, `msg=request route="POST /v1/accounts/{id}/payments/{pid}/confirm" status=200`) {
			t.Fatalf("no request line for a confirmed payment in the log:\n%s", logs)
		}
		for _, leak := range []string{"pls_", opKey, fundKey, res.Payer, "Li Wei", demo.PayerPassword} {
			if strings.Contains(logs, leak) {
				t.Errorf("the server log contains %q", leak)
			}
		}
	})

	t.Run("IdempotentReplay", func(t *testing.T) {
		body := map[string]any{"amount": "1.00", "currency": "CNY", "reference": "e2e"}
		first, err := funding.Expect(ctx, http.StatusCreated, "POST", payer+"/deposits", body, "e2e-deposit-1")
		if err != nil {
			t.Fatal(err)
		}
		again, err := funding.Expect(ctx, http.StatusCreated, "POST", payer+"/deposits", body, "e2e-deposit-1")
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(first.Raw, again.Raw) || again.Header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("replay differs:\n%s\n%s", first.Raw, again.Raw)
		}
		other, err := funding.Expect(ctx, http.StatusConflict, "POST", payer+"/deposits", map[string]any{"amount": "2.00", "currency": "CNY", "reference": "e2e-2"}, "e2e-deposit-1")
		if err != nil {
			t.Fatal(err)
		}
		if other.Str("code") != "idempotency_key_reused" {
			t.Fatalf("got %s", other.Raw)
		}
		res.Balances[res.Payer] = "2698.50"
		checkBalances(t, ctx, operator, map[string]string{res.Payer: "2698.50"})
	})

	t.Run("BadInputChangesNothing", func(t *testing.T) {
		for name, body := range map[string]map[string]any{
			"TooManyDecimals": {"amount": "1.001", "currency": "CNY", "reference": "bad-1"},
			"Negative":        {"amount": "-1.00", "currency": "CNY", "reference": "bad-2"},
			"Zero":            {"amount": "0.00", "currency": "CNY", "reference": "bad-3"},
			"UnknownCurrency": {"amount": "1.00", "currency": "XXX", "reference": "bad-4"},
			"UnknownField":    {"amount": "1.00", "currency": "CNY", "reference": "bad-5", "amout": "1"},
			"NoReference":     {"amount": "1.00", "currency": "CNY"},
		} {
			r, err := funding.Expect(ctx, http.StatusBadRequest, "POST", payer+"/deposits", body, "")
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if r.Str("code") != "invalid_request" || r.Str("field") == "" {
				t.Fatalf("%s: got %s", name, r.Raw)
			}
		}
		checkBalances(t, ctx, operator, res.Balances)
	})

	// Acknowledged writes are durable: kill the server without warning and
	// every balance is still there after a restart.
	srv.stop(t, syscall.SIGKILL)
	srv = start(t, dir)
	operator = apiclient.New(srv.url).As(opKey)
	checkBalances(t, ctx, operator, res.Balances)

	// A graceful stop and restart, then the maintenance commands.
	srv.stop(t, syscall.SIGTERM)
	out := runCmd(t, "verify", "--data", dir)
	if !strings.Contains(out, "every hash chain intact") {
		t.Fatalf("verify: %s", out)
	}
	out = runCmd(t, "rebuild", "--data", dir)
	if !strings.Contains(out, "identical read models") {
		t.Fatalf("rebuild: %s", out)
	}
	srv = start(t, dir)
	operator = apiclient.New(srv.url).As(opKey)
	checkBalances(t, ctx, operator, res.Balances)
	st, err := operator.Expect(ctx, http.StatusOK, "GET", payer+"/statement", nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(st.List("entries")); n != 6 {
		t.Fatalf("statement after restart has %d entries, want 6: %s", n, st.Raw)
	}
	srv.stop(t, syscall.SIGTERM)
}

func TestLockoutOverHTTP(t *testing.T) {
	ctx := context.Background()
	// A short lock, configured on the command line, so the test can see it
	// expire.
	const lockFor = 2 * time.Second
	dir := t.TempDir()
	srv := start(t, dir, "--lock-for", lockFor.String())
	c := apiclient.New(srv.url)
	operator := c.As(staffKey(t, dir, "operator"))
	// Opened online by the holder: no credentials, the first factor inside.
	acct, err := c.Expect(ctx, http.StatusCreated, "POST", "/v1/accounts", map[string]any{"holder_name": "Wang Fang", "currency": "CNY",
		"factor": map[string]any{"method": "password", "password": "a long passphrase"}}, "")
	if err != nil {
		t.Fatal(err)
	}
	base := "/v1/accounts/" + acct.Str("id")
	f := apiclient.Response{Body: acct.Obj("first_factor")}
	wrong := map[string]any{"device_id": "d1", "proofs": []any{map[string]any{"factor_id": f.Str("factor_id"), "password": "not it at all"}}}
	for i := 1; i <= 4; i++ {
		r, err := c.Expect(ctx, http.StatusUnauthorized, "POST", base+"/sessions", wrong, "")
		if err != nil {
			t.Fatal(err)
		}
		if r.Body["attempts_remaining"] != float64(5-i) {
			t.Fatalf("attempt %d: %s", i, r.Raw)
		}
	}
	r, err := c.Expect(ctx, http.StatusLocked, "POST", base+"/sessions", wrong, "")
	if err != nil {
		t.Fatal(err)
	}
	if r.Str("code") != "access_locked" || r.Str("locked_until") == "" {
		t.Fatalf("fifth failure: %s", r.Raw)
	}
	right := map[string]any{"device_id": "d1", "proofs": []any{map[string]any{"factor_id": f.Str("factor_id"), "password": "a long passphrase"}}}
	if _, err := c.Expect(ctx, http.StatusLocked, "POST", base+"/sessions", right, ""); err != nil {
		t.Fatalf("a correct password during the lock must be refused: %v", err)
	}
	types := holderOps(t, ctx, operator, base)
	want := "AccountOpened FactorEnrolled LoginFailed LoginFailed LoginFailed LoginFailed LoginFailed AccessLocked LoginFailed"
	if got := strings.Join(types, " "); got != want {
		t.Fatalf("operations:\n got %s\nwant %s", got, want)
	}
	until, err := time.Parse(time.RFC3339Nano, r.Str("locked_until"))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(until) + 100*time.Millisecond) // bounded: lockFor
	if _, err := c.Expect(ctx, http.StatusCreated, "POST", base+"/sessions", right, ""); err != nil {
		t.Fatalf("login after the lock expired: %v", err)
	}
	types = holderOps(t, ctx, operator, base)
	if tail := strings.Join(types[len(types)-2:], " "); tail != "AccessUnlocked LoginSucceeded" {
		t.Fatalf("after expiry: %s", tail)
	}
	srv.stop(t, syscall.SIGTERM)
}

// holderOps lists the types of an account's operations as staff read them
// (a staff read is recorded in the key's stream, not among them).
func holderOps(t *testing.T, ctx context.Context, staff *apiclient.Client, base string) []string {
	t.Helper()
	ops, err := staff.Expect(ctx, http.StatusOK, "GET", base+"/operations?limit=100", nil, "")
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, o := range ops.List("operations") {
		types = append(types, o["type"].(string))
	}
	return types
}

// TestRefusalsAreRecordedOverHTTP drives the binary through refusals that
// must leave a trace or spend a code: a withdrawal refused after its proofs
// verified is an event and its replay answers the same (R1, R9); a TOTP
// code that verified beside a wrong password is spent (R7); a suspended
// payee takes no payments (R14).
func TestRefusalsAreRecordedOverHTTP(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	srv := start(t, dir)
	anon := apiclient.New(srv.url)
	operator, funding := anon.As(staffKey(t, dir, "operator")), anon.As(staffKey(t, dir, "funding"))
	var c *apiclient.Client
	expect := func(status int, method, path string, body any) apiclient.Response {
		t.Helper()
		r, err := c.Expect(ctx, status, method, path, body, "")
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	const password = "a long passphrase"
	payerID, pw := openAccount(t, ctx, operator, "Li Wei", "personal", password)
	payer := "/v1/accounts/" + payerID
	payee, _ := openAccount(t, ctx, operator, "Harbour Coffee", "merchant", password)
	c = operator
	totp := expect(http.StatusCreated, "POST", payer+"/factors", map[string]any{"identity_check": "e2e-check",
		"factor": map[string]any{"method": "totp", "device_id": "token-1"}})
	c = funding
	expect(http.StatusCreated, "POST", payer+"/deposits", map[string]any{"amount": "100.00", "currency": "CNY", "reference": "bank-1"})
	c = operator
	expect(http.StatusOK, "POST", "/v1/accounts/"+payee+"/suspend", map[string]any{"reason": "holiday"})
	// The holder's session, opened before the failures the steps count.
	c = login(t, ctx, anon, payerID, pw, password)
	pwProof := map[string]any{"factor_id": pw, "password": password}
	now := domain.TOTPStepAt(time.Now())
	earlier, err := domain.TOTPCode(totp.Str("totp_secret"), now-1)
	if err != nil {
		t.Fatal(err)
	}
	// Binding the bank account is a step-up: the password and a code of
	// the step before, so the current step's code is left for the steps.
	// The TOTP counts as the second factor only from a registered device
	// that signs the binding (R6).
	lap := registerLaptop(t, ctx, c, payerID, "laptop-1")
	expect(http.StatusCreated, "POST", payer+"/bank-account", lap.sign(map[string]any{"bank_account_number": "6222020200112233445", "holder_name": "Li Wei",
		"proofs": []any{pwProof, map[string]any{"factor_id": totp.Str("factor_id"), "code": earlier}}}, domain.ChangeKindBankAccount, "6222020200112233445"))
	code, err := domain.TOTPCode(totp.Str("totp_secret"), now)
	if err != nil {
		t.Fatal(err)
	}
	codeProof := map[string]any{"factor_id": totp.Str("factor_id"), "code": code}
	tooMuch := map[string]any{"amount": "1000.00", "currency": "CNY", "device_id": "laptop-1", "proofs": []any{pwProof}}

	steps := []struct {
		name   string
		path   string
		body   map[string]any
		key    string
		status int
		code   string
		fields map[string]any
		// replayed: the reply must be a replay; op: the event type the
		// step must append ("" for none).
		replayed bool
		op       string
	}{
		{name: "WithdrawalOverBalance", path: payer + "/withdrawals", body: tooMuch, key: "too-much", status: http.StatusUnprocessableEntity,
			code: "insufficient_funds", fields: map[string]any{"available": "100.00", "required": "1000.00"}, op: "WithdrawalRejected"},
		{name: "WithdrawalOverBalanceReplayed", path: payer + "/withdrawals", body: tooMuch, key: "too-much", status: http.StatusUnprocessableEntity,
			code: "insufficient_funds", fields: map[string]any{"available": "100.00", "required": "1000.00"}, replayed: true},
		{name: "CodeBesideWrongPassword", path: payer + "/sessions", status: http.StatusUnauthorized, code: "authentication_failed",
			body:   map[string]any{"device_id": "laptop-1", "proofs": []any{codeProof, map[string]any{"factor_id": pw, "password": "not it at all"}}},
			fields: map[string]any{"attempts_remaining": float64(4)}, op: "LoginFailed"},
		{name: "SpentCodeWithRightPassword", path: payer + "/sessions", status: http.StatusUnauthorized, code: "authentication_failed",
			body:   map[string]any{"device_id": "laptop-1", "proofs": []any{pwProof, codeProof}},
			fields: map[string]any{"attempts_remaining": float64(3)}, op: "LoginFailed"},
		{name: "PaymentToSuspendedPayee", path: payer + "/payments", status: http.StatusConflict, code: "payee_unavailable",
			body:   map[string]any{"payee_account_id": payee, "amount": "10.00", "currency": "CNY", "channel": "app", "terminal": "desktop", "device_id": "laptop-1"},
			fields: map[string]any{"field": "payee_account_id", "payee_status": "suspended"}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			before := expect(http.StatusOK, "GET", payer+"/operations?limit=100", nil).List("operations")
			r, err := c.Expect(ctx, s.status, "POST", s.path, s.body, s.key)
			if err != nil {
				t.Fatal(err)
			}
			if r.Str("code") != s.code {
				t.Fatalf("code %q, want %q: %s", r.Str("code"), s.code, r.Raw)
			}
			for k, v := range s.fields {
				if r.Body[k] != v {
					t.Errorf("%s = %v, want %v: %s", k, r.Body[k], v, r.Raw)
				}
			}
			if got := r.Header.Get("Idempotent-Replayed") == "true"; got != s.replayed {
				t.Errorf("replayed %v, want %v", got, s.replayed)
			}
			after := expect(http.StatusOK, "GET", payer+"/operations?limit=100", nil).List("operations")
			var added []string
			for _, o := range after[len(before):] {
				added = append(added, o["type"].(string))
			}
			want := []string{}
			if s.op != "" {
				want = []string{s.op}
			}
			if strings.Join(added, " ") != strings.Join(want, " ") {
				t.Errorf("appended %v, want %v", added, want)
			}
		})
	}
	checkBalances(t, ctx, operator, map[string]string{payerID: "100.00", payee: "0.00"})
	srv.stop(t, syscall.SIGTERM)
}

// laptop is a holder's registered device: its key signs instructions.
type laptop struct {
	account, id string
	priv        ed25519.PrivateKey
}

// registerLaptop registers device id on the account through the holder's
// session c, as its first device (no step-up).
func registerLaptop(t *testing.T, ctx context.Context, c *apiclient.Client, accountID, id string) laptop {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	pub := base64.StdEncoding.EncodeToString(priv.Public().(ed25519.PublicKey))
	at := time.Now().UTC()
	sig := ed25519.Sign(priv, domain.DeviceChallenge(domain.ChangeKindDevice, accountID, id, at, pub))
	if _, err := c.Expect(ctx, http.StatusCreated, "POST", "/v1/accounts/"+accountID+"/devices", map[string]any{"device": map[string]any{
		"device_id": id, "public_key": pub, "signed_at": at.Format(time.RFC3339Nano), "signature": base64.StdEncoding.EncodeToString(sig)}}, ""); err != nil {
		t.Fatal(err)
	}
	return laptop{account: accountID, id: id, priv: priv}
}

// sign adds the device's signature over an instruction to body.
func (l laptop) sign(body map[string]any, purpose, subject string) map[string]any {
	at := time.Now().UTC()
	body["device_id"] = l.id
	body["signed_at"] = at.Format(time.RFC3339Nano)
	body["device_signature"] = base64.StdEncoding.EncodeToString(ed25519.Sign(l.priv, domain.DeviceChallenge(purpose, l.account, l.id, at, subject)))
	return body
}
