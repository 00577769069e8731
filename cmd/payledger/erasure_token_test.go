package main

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/eventstore/sqlite"
	"github.com/payledger/payledger/internal/apiclient"
	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/staffkeys"
)

// erasedAccount runs a holder through opening (with an operator's identity
// check), a session from a named device, a bank binding and a close, and
// five years later has compliance erase her data; it returns the stopped
// server's data directory and the account id. Whatever it leaves readable
// in dir is what an erasure does not erase.
func erasedAccount(t *testing.T, identityCheck, deviceID, bankNumber string) (string, string) {
	t.Helper()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	clk := &stepClock{now: time.Date(2026, 3, 2, 1, 0, 0, 0, time.UTC)}
	rnd := &lockedRand{r: rand.NewChaCha8([32]byte{'r', 'e', 'v', 'i', 'e', 'w'})}
	m := &Main{Config: Config{Addr: "127.0.0.1:0", DataDir: dir, TimeZone: "Asia/Shanghai", Clock: clk.Now, Rand: rnd,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}}
	if err := m.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	key := func(role staffkeys.Role) *apiclient.Client { return staffClient(t, ctx, m, role) }
	operator, compliance := key(staffkeys.RoleOperator), key(staffkeys.RoleCompliance)
	expect := expecter(t, ctx)
	const name, password = "Ouyang Xiaoming", "a long passphrase"
	r := expect(operator, http.StatusCreated, "POST", "/v1/accounts", map[string]any{"holder_name": name, "currency": "CNY",
		"identity_check": identityCheck, "factor": map[string]any{"method": "password", "password": password}})
	id, pw := r.Str("id"), r.Obj("first_factor")["factor_id"].(string)
	base := "/v1/accounts/" + id
	_, cert, _ := ed25519.GenerateKey(rnd)
	certID := expect(operator, http.StatusCreated, "POST", base+"/factors", map[string]any{"identity_check": identityCheck,
		"factor": map[string]any{"method": "certificate", "public_key": base64.StdEncoding.EncodeToString(cert.Public().(ed25519.PublicKey))}}).Str("factor_id")
	holder := apiclient.New(m.URL).As(expect(apiclient.New(m.URL), http.StatusCreated, "POST", base+"/sessions",
		map[string]any{"device_id": deviceID, "proofs": []any{map[string]any{"factor_id": pw, "password": password}}}).Str("token"))
	version := int64(expect(holder, http.StatusOK, "GET", base, nil).Body["version"].(float64))
	sig := ed25519.Sign(cert, domain.ChangeChallenge(domain.ChangeKindBankAccount, id, version, bankNumber))
	expect(holder, http.StatusCreated, "POST", base+"/bank-account", map[string]any{"device_id": deviceID, "version": version,
		"bank_account_number": bankNumber, "holder_name": name, "proofs": []any{
			map[string]any{"factor_id": pw, "password": password},
			map[string]any{"factor_id": certID, "signature": base64.StdEncoding.EncodeToString(sig)}}})
	expect(holder, http.StatusOK, "POST", base+"/close", map[string]any{})
	clk.Advance(5*365*24*time.Hour + 3*24*time.Hour)
	expect(compliance, http.StatusOK, "POST", base+"/erasure", map[string]any{"reference": "dsr-review-1"})
	if v := expect(compliance, http.StatusOK, "GET", base, nil); v.Str("holder_name") != domain.ErasedText {
		t.Fatalf("not erased: %s", v.Raw)
	}
	return dir, id
}

// TestErasureLeavesBankNumberRecoverable: after the erasure, the
// BankAccountBound event still holds bank_account_token in clear, an
// HMAC of the full bank account number under a key derived from
// server.key, which is in the data directory (and in every backup). With
// the directory alone (no master key), the number is found again by
// trying candidates: bank numbers are a public 6-digit BIN, digits and a
// Luhn check. Here the attacker is given all but 6 digits to keep the
// test short; the rate it prints shows the full search is within reach.
func TestErasureLeavesBankNumberRecoverable(t *testing.T) {
	const bankNumber = "6222020200112233445"
	dir, id := erasedAccount(t, "branch-1", "laptop-1", bankNumber)
	ctx := context.Background()
	log, err := sqlite.OpenReader(filepath.Join(dir, "events.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	evs, err := log.ReadAll(ctx, 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	var token string
	for _, e := range evs {
		if e.Stream == domain.AccountStream(id) && e.Type == domain.TypeBankAccountBound {
			var p struct {
				Token string `json:"bank_account_token"`
			}
			if err := json.Unmarshal(e.Payload, &p); err != nil {
				t.Fatal(err)
			}
			token = p.Token
		}
	}
	if token == "" || strings.HasPrefix(token, "pd1:") {
		return // sealed (its key erased) or gone: nothing to try candidates against
	}
	serverKey, err := os.ReadFile(filepath.Join(dir, "server.key"))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := ledger.NewKeys(serverKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	prefix := bankNumber[:len(bankNumber)-6]
	start := time.Now()
	for i := 0; i < 1_000_000; i++ {
		candidate := fmt.Sprintf("%s%06d", prefix, i)
		if keys.BankToken(candidate) == token {
			el := time.Since(start)
			t.Errorf("after the erasure, the bank account number %s is recovered from bank_account_token and the data directory's server.key (%d candidates in %v, %.0f/s on one core)",
				candidate, i+1, el, float64(i+1)/el.Seconds())
			return
		}
	}
	t.Fatalf("token %s not matched", token)
}
