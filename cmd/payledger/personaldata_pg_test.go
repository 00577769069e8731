package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/internal/apiclient"
	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/personaldata"
	"github.com/payledger/payledger/ledger/staffkeys"
)

// TestPersonalDataOnPostgres: with a PostgreSQL log, serve keeps the data
// keys in the same database, importing the data directory's
// personaldata.db (renamed afterwards, said in the log) so that no key
// made before is lost; another process of that database opens the keys;
// rotate-master-key --store refuses while a server runs and rewraps the
// database's keys once it stopped; a server given no master key is
// refused without one being generated.
func TestPersonalDataOnPostgres(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	dir := filepath.Join(root, "data")
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	m := &Main{Config: Config{DataDir: dir, TimeZone: "Asia/Shanghai", Log: quiet}}
	if err := m.Open(ctx); err != nil {
		t.Fatal(err)
	}
	sealed, err := m.PersonalData.Seal("ACC1", "EV1", "Li Wei")
	if err != nil {
		t.Fatal(err)
	}
	erased, err := m.PersonalData.Seal("ACC2", "EV2", "Zhang Min")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.PersonalData.Erase("ACC2"); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}

	store := pgStoreURL(t, true)
	var logBuf bytes.Buffer
	m = &Main{Config: Config{DataDir: dir, TimeZone: "Asia/Shanghai", Store: store, Log: slog.New(slog.NewTextHandler(&logBuf, nil))}}
	if err := m.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = m.Close() }()
	if _, err := os.Stat(filepath.Join(dir, personalDataFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the imported file is still in place: %v", err)
	}
	if renamed, _ := filepath.Glob(filepath.Join(dir, personalDataFile+".imported-*")); len(renamed) != 1 {
		t.Errorf("the imported file renamed: %v", renamed)
	}
	if !strings.Contains(logBuf.String(), "imported the data keys") || !strings.Contains(logBuf.String(), "keys=1") {
		t.Errorf("the log does not tell of the import:\n%s", logBuf.String())
	}
	if plain, err := m.PersonalData.Open("ACC1", "EV1", sealed); err != nil || plain != "Li Wei" {
		t.Fatalf("an imported key: %q %v", plain, err)
	}
	if _, err := m.PersonalData.Open("ACC2", "EV2", erased); !errors.Is(err, personaldata.ErrErased) {
		t.Fatalf("an imported erasure: %v", err)
	}
	master, err := loadMasterKey(dir+".master.key", dir)
	if err != nil {
		t.Fatal(err)
	}
	other, err := openPostgresKeys(ctx, store, "", t.TempDir(), master, false, time.Now, ledger.CryptoRand, quiet)
	if err != nil {
		t.Fatalf("a second process's key store: %v", err)
	}
	if plain, err := other.Open("ACC1", "EV1", sealed); err != nil || plain != "Li Wei" {
		t.Errorf("the second process opens: %q %v", plain, err)
	}
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}

	newKey := filepath.Join(root, "new.key")
	var out, errOut bytes.Buffer
	if err := run(ctx, []string{"keys", "master-key", "--out", newKey}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	rotate := func() error {
		out.Reset()
		errOut.Reset()
		return run(ctx, []string{"keys", "rotate-master-key", "--data", dir, "--store", store, "--new", newKey}, &out, &errOut)
	}
	if err := rotate(); !errors.Is(err, personaldata.ErrLocked) || !strings.Contains(err.Error(), "stop every server") {
		t.Fatalf("rotation beside a running server: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := rotate(); err != nil || !strings.Contains(out.String(), "1 data keys") {
		t.Fatalf("rotate: %v %s%s", err, out.String(), errOut.String())
	}
	if _, err := openPostgresKeys(ctx, store, "", t.TempDir(), master, false, time.Now, ledger.CryptoRand, quiet); !errors.Is(err, personaldata.ErrWrongMasterKey) {
		t.Fatalf("the old master key after the rotation: %v", err)
	}
	// A server with no master key is refused, rather than given a new key
	// that cannot open the keys in the database.
	bare := filepath.Join(root, "bare")
	m = &Main{Config: Config{DataDir: bare, TimeZone: "Asia/Shanghai", Store: store, Log: quiet}}
	if err := m.Open(ctx); err == nil || !strings.Contains(err.Error(), "no master key is given") {
		_ = m.Close()
		t.Fatalf("a server without the master key: %v", err)
	}
	if _, err := os.Stat(bare + ".master.key"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a master key was generated for a log whose keys exist: %v", err)
	}
	m = &Main{Config: Config{DataDir: dir, TimeZone: "Asia/Shanghai", Store: store, MasterKey: newKey, Log: quiet}}
	if err := m.Open(ctx); err != nil {
		t.Fatal(err)
	}
	if plain, err := m.PersonalData.Open("ACC1", "EV1", sealed); err != nil || plain != "Li Wei" {
		t.Fatalf("after the rotation: %q %v", plain, err)
	}
}

// TestErasureAcrossNodes: two servers of one PostgreSQL log
// (--shared-log): a payer's description sealed on one node opens in the
// payee's statement on the other; once compliance erases the payer on the
// first node, the other, which had the payer's key cached and never
// loads the payer's account for the payee's statement, shows the
// description erased.
func TestErasureAcrossNodes(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	store := pgStoreURL(t, true)
	masterPath := filepath.Join(root, "master.key")
	if err := writeMasterKey(masterPath, ledger.CryptoRand); err != nil {
		t.Fatal(err)
	}
	serverKey := make([]byte, 32)
	if _, err := io.ReadFull(ledger.CryptoRand, serverKey); err != nil {
		t.Fatal(err)
	}
	clk := &stepClock{now: time.Date(2026, 3, 2, 1, 0, 0, 0, time.UTC)}
	node := func(name string) *Main {
		dir := filepath.Join(root, name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "server.key"), serverKey, 0o600); err != nil {
			t.Fatal(err)
		}
		m := &Main{Config: Config{Addr: "127.0.0.1:0", DataDir: dir, TimeZone: "Asia/Shanghai", Clock: clk.Now, Rand: ledger.CryptoRand,
			Store: store, SharedLog: true, MasterKey: masterPath, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}}
		if err := m.Open(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = m.Close() })
		return m
	}
	a, b := node("a"), node("b")
	key := func(m *Main, role staffkeys.Role) *apiclient.Client { return staffClient(t, ctx, m, role) }
	expect := expecter(t, ctx)
	operator, funding := key(a, staffkeys.RoleOperator), key(a, staffkeys.RoleFunding)
	const password, description = "a long passphrase", "birthday dumplings"
	open := func(name string) (string, string) {
		r := expect(operator, http.StatusCreated, "POST", "/v1/accounts", map[string]any{"holder_name": name, "currency": "CNY",
			"identity_check": "branch-1", "factor": map[string]any{"method": "password", "password": password}})
		return r.Str("id"), r.Obj("first_factor")["factor_id"].(string)
	}
	payer, pw := open("Ouyang Xiaoming")
	payee, _ := open("Wang Fang")
	base := "/v1/accounts/" + payer
	holder := apiclient.New(a.URL).As(expect(apiclient.New(a.URL), http.StatusCreated, "POST", base+"/sessions",
		map[string]any{"device_id": "laptop-1", "proofs": []any{map[string]any{"factor_id": pw, "password": password}}}).Str("token"))
	expect(funding, http.StatusCreated, "POST", base+"/deposits", map[string]any{"amount": "30.00", "currency": "CNY", "reference": "bank-1"})
	pay := expect(holder, http.StatusCreated, "POST", base+"/payments", map[string]any{"payee_account_id": payee, "amount": "30.00", "currency": "CNY",
		"channel": "app", "terminal": "desktop", "device_id": "laptop-1", "description": description}).Str("payment_id")
	expect(holder, http.StatusOK, "POST", base+"/payments/"+pay+"/confirm", map[string]any{"device_id": "laptop-1",
		"proofs": []any{map[string]any{"factor_id": pw, "password": password}}})
	expect(holder, http.StatusOK, "POST", base+"/close", map[string]any{})

	complianceB := key(b, staffkeys.RoleCompliance)
	descriptions := func() []string {
		var out []string
		for _, e := range expect(complianceB, http.StatusOK, "GET", "/v1/accounts/"+payee+"/statement?from=2026-01-01T00:00:00Z&to=2027-01-01T00:00:00Z", nil).List("entries") {
			if d, ok := e["description"].(string); ok {
				out = append(out, d)
			}
		}
		return out
	}
	shows := func(want string) func() bool {
		return func() bool {
			for _, d := range descriptions() {
				if strings.Contains(d, want) {
					return true
				}
			}
			return false
		}
	}
	waitUntil(t, "node b's statement of the payee shows the payer's description", shows(description))
	if st, err := b.PersonalData.StateOf(payer); err != nil || st != personaldata.Live {
		t.Fatalf("node b's view of the payer's key: %v %v", st, err)
	}

	clk.Advance(5*365*24*time.Hour + 3*24*time.Hour)
	expect(key(a, staffkeys.RoleCompliance), http.StatusOK, "POST", base+"/erasure", map[string]any{"reference": "dsr-1"})
	waitUntil(t, "node b's statement of the payee shows the description erased", shows(domain.ErasedText))
	if shows(description)() {
		t.Errorf("node b still shows the erased payer's description: %q", descriptions())
	}
}

// waitUntil polls cond until it holds, failing after a minute: a bound on
// a broken build, not an assertion on speed.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting: %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestDataKeysFlag: --data-keys keeps the data keys in a PostgreSQL
// database whatever the log is (here the embedded one in two data
// directories, as two nodes of a KurrentDB log would each have theirs):
// a key made by one process opens in the other, no personaldata.db is
// made, and a --data-keys that is not a postgres:// URL is refused
// without its password.
func TestDataKeysFlag(t *testing.T) {
	ctx := context.Background()
	keys := pgStoreURL(t, false)
	root := t.TempDir()
	master := filepath.Join(root, "master.key")
	var out, errOut bytes.Buffer
	if err := run(ctx, []string{"keys", "master-key", "--out", master}, &out, &errOut); err != nil {
		t.Fatalf("keys master-key: %v: %s", err, errOut.String())
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	open := func(name string) *Main {
		m := &Main{Config: Config{DataDir: filepath.Join(root, name), TimeZone: "Asia/Shanghai", DataKeys: keys, MasterKey: master, Log: quiet}}
		if err := m.Open(ctx); err != nil {
			t.Fatalf("open %s: %v", name, err)
		}
		t.Cleanup(func() { _ = m.Close() })
		return m
	}
	a, b := open("a"), open("b")
	sealed, err := a.PersonalData.Seal("ACC1", "EV1", "Li Wei")
	if err != nil {
		t.Fatal(err)
	}
	if plain, err := b.PersonalData.Open("ACC1", "EV1", sealed); err != nil || plain != "Li Wei" {
		t.Fatalf("the other process opens %q, %v", plain, err)
	}
	for _, n := range []string{"a", "b"} {
		if _, err := os.Stat(filepath.Join(root, n, personalDataFile)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s has a personaldata.db beside --data-keys: %v", n, err)
		}
	}
	m := &Main{Config: Config{DataDir: filepath.Join(root, "c"), TimeZone: "Asia/Shanghai", DataKeys: "mysql://u:hunter2@h/db", MasterKey: master, Log: quiet}}
	err = m.Open(ctx)
	if err == nil {
		_ = m.Close()
		t.Fatal("--data-keys mysql://... accepted")
	}
	if !strings.Contains(err.Error(), "--data-keys") || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("refusal of a bad --data-keys: %v", err)
	}
}
