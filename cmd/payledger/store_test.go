package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/payledger/payledger/eventstore/postgres"
	"github.com/payledger/payledger/internal/pgtest"
)

// pgStoreURL returns a --store URL of a fresh, empty schema on the test
// server (dropped after the test), migrated when migrate is true.
func pgStoreURL(t *testing.T, migrate bool) string {
	t.Helper()
	dsn, schema := pgtest.Schema(t, t.Name())
	// serve keeps the data keys beside the log (personalDataSchema).
	t.Cleanup(func() { pgtest.Drop(t, dsn, personalDataSchema("", schema)) })
	// demo --store keeps those keys' master key in a temporary directory,
	// since they outlive it: inside the test's, which goes at its end.
	t.Setenv("TMPDIR", t.TempDir())
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	if migrate {
		if _, err := postgres.Migrate(context.Background(), dsn, postgres.Options{Schema: schema}); err != nil {
			t.Fatal(err)
		}
	}
	return u.String()
}

func TestParseStore(t *testing.T) {
	for _, c := range []struct {
		in, path, dsn, kurrent string
	}{
		{"", "d/events.db", "", ""},
		{"sqlite:/var/lib/log.db", "/var/lib/log.db", "", ""},
		{"postgres://u@h/db", "", "postgres://u@h/db", ""},
		{"postgresql://u@h/db", "", "postgresql://u@h/db", ""},
		{"kurrentdb://h:2113", "", "", "kurrentdb://h:2113"},
		{"kurrentdb+discover://u:pw@n1:2113,n2:2113?tls=false&namespace=eu", "", "", "kurrentdb+discover://u:pw@n1:2113,n2:2113?tls=false&namespace=eu"},
		{"esdb://127.0.0.1:2113?tls=false", "", "", "esdb://127.0.0.1:2113?tls=false"},
	} {
		s, err := parseStore(c.in, "d")
		if err != nil || s.sqlitePath != c.path || s.postgresDSN != c.dsn || s.kurrentURL != c.kurrent {
			t.Errorf("parseStore(%q) = %+v, %v", c.in, s, err)
		}
	}
	if s, err := parseStore("kurrentdb://payledger:secret@h:2113?tls=false", "d"); err != nil || strings.Contains(s.String(), "secret") ||
		!strings.Contains(s.String(), "payledger:xxxxx@h:2113") {
		t.Errorf("a KurrentDB store names itself %q (%v), want the URL without its password", s, err)
	}
	for _, bad := range []string{"sqlite:", "mysql://u:secret@h/db", "kurrentdb://", "kurrentdb://u:secret@h:notaport?tls=false",
		"esdb://u:secret@h:2113/path", "kurrentdb://u:secret@h:2113?namespace=Bad-NS", "kurrentdb://u:secret@h:2113?tls=maybe"} {
		_, err := parseStore(bad, "d")
		if err == nil {
			t.Errorf("parseStore(%q) accepted", bad)
		} else if strings.Contains(err.Error(), "secret") {
			t.Errorf("parseStore(%q): the error shows the password: %v", bad, err)
		}
	}
	if got := redactStore("postgres://u:secret@h:5432/db"); strings.Contains(got, "secret") {
		t.Errorf("redactStore kept the password: %s", got)
	}
}

// TestMigrateCommand: payledger migrate applies the PostgreSQL schema once,
// a second run applies nothing, and serve's Open refuses an unmigrated
// database with the hint to run it.
func TestMigrateCommand(t *testing.T) {
	ctx := context.Background()
	store := pgStoreURL(t, false)
	m := &Main{Config: Config{DataDir: t.TempDir(), TimeZone: "Asia/Shanghai", Store: store}}
	err := m.Open(ctx)
	if err == nil || !strings.Contains(err.Error(), "payledger migrate") {
		t.Fatalf("Open on an unmigrated database: %v, want the hint to migrate", err)
	}
	var out, errOut bytes.Buffer
	if err := run(ctx, []string{"migrate", "--store", store}, &out, &errOut); err != nil {
		t.Fatalf("migrate: %v\n%s", err, errOut.String())
	}
	if !strings.Contains(out.String(), "applied [1 2]") {
		t.Fatalf("first migrate said %q", out.String())
	}
	out.Reset()
	if err := run(ctx, []string{"migrate", "--store", store}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "nothing to apply") {
		t.Fatalf("second migrate said %q", out.String())
	}
	if err := run(ctx, []string{"migrate"}, &out, &errOut); err == nil {
		t.Error("migrate without --store succeeded")
	}
}

// TestServeExclusive: a second process's Main on the same PostgreSQL log
// is refused while the first serves it, and opens once the first closed.
func TestServeExclusive(t *testing.T) {
	ctx := context.Background()
	store := pgStoreURL(t, true)
	firstDir := t.TempDir()
	first := &Main{Config: Config{DataDir: firstDir, TimeZone: "Asia/Shanghai", Store: store,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}}
	if err := first.Open(ctx); err != nil {
		t.Fatal(err)
	}
	// The data keys are in the database too: the same master key.
	second := &Main{Config: Config{DataDir: t.TempDir(), TimeZone: "Asia/Shanghai", Store: store, MasterKey: firstDir + ".master.key",
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}}
	err := second.Open(ctx)
	if !errors.Is(err, postgres.ErrLocked) || !strings.Contains(err.Error(), "another payledger process") {
		second.Close()
		t.Fatalf("a second serve on the log: %v, want ErrLocked", err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if err := second.Open(ctx); err != nil {
		t.Fatalf("after the first closed: %v", err)
	}
	if err := second.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestDemoOnPostgres runs the whole narrated scenario through the real API
// with the event log on PostgreSQL: every step's expectations, the
// checkpoint proofs and the verification of every hash chain must hold.
func TestDemoOnPostgres(t *testing.T) {
	store := pgStoreURL(t, true)
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"demo", "--store", store}, &out, &errOut); err != nil {
		t.Fatalf("demo on PostgreSQL: %v\n%s\n%s", err, out.String(), errOut.String())
	}
	if !strings.HasSuffix(out.String(), "demo: ok\n") {
		t.Fatalf("demo did not end with ok:\n%s", out.String())
	}
	// payledger verify --store reads the same log and gives the digest the
	// demo's own check printed.
	demoDigest := regexp.MustCompile(`event-log digest ([0-9a-f]{64})`).FindStringSubmatch(out.String())
	var vout bytes.Buffer
	if err := run(context.Background(), []string{"verify", "--store", store}, &vout, &errOut); err != nil {
		t.Fatalf("verify --store: %v\n%s", err, errOut.String())
	}
	got := regexp.MustCompile(`verify: event-log digest ([0-9a-f]{64})`).FindStringSubmatch(vout.String())
	if demoDigest == nil || got == nil || got[1] != demoDigest[1] {
		t.Fatalf("verify --store printed %q; the demo's digest is %q", vout.String(), demoDigest)
	}
	if !strings.Contains(vout.String(), "every hash chain intact") {
		t.Fatalf("verify --store: %s", vout.String())
	}
	// payledger retention check --store finds the log whole and its guards
	// in place, then fails once the trigger is disabled.
	var rout bytes.Buffer
	if err := run(context.Background(), []string{"retention", "check", "--data", t.TempDir(), "--store", store}, &rout, &errOut); err != nil {
		t.Fatalf("retention check --store: %v\n%s", err, rout.String())
	}
	if !strings.Contains(rout.String(), "retention: ok ") || !strings.Contains(rout.String(), "the oldest (position 1") {
		t.Fatalf("retention check --store:\n%s", rout.String())
	}
	cfg, err := pgx.ParseConfig(store)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), "ALTER TABLE events DISABLE TRIGGER events_retained"); err != nil {
		t.Fatal(err)
	}
	rout.Reset()
	err = run(context.Background(), []string{"retention", "check", "--data", t.TempDir(), "--store", store}, &rout, &errOut)
	if err == nil || !strings.Contains(err.Error(), "events_retained trigger") {
		t.Fatalf("retention check with the trigger disabled: %v\n%s", err, rout.String())
	}
}

// TestBenchOnPostgres: bench --store runs the embedded store and then
// PostgreSQL (in a schema of its own, dropped afterwards), both verified,
// and prints both rates and their ratio.
func TestBenchOnPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("bench runs two small ledgers")
	}
	dsn := pgtest.DSN(t)
	out := runBench(t, "--duration", "300ms", "--clients", "4", "--accounts", "20", "--store", dsn)
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	re := regexp.MustCompile(`^bench: payments_per_s=(\d+) p50_ms=\d+\.\d{2} p99_ms=\d+\.\d{2} postgres_payments_per_s=(\d+) postgres_p50_ms=\d+\.\d{2} postgres_p99_ms=\d+\.\d{2} postgres_ratio=\d+\.\d{2}$`)
	m := re.FindStringSubmatch(lines[len(lines)-1])
	if m == nil {
		t.Fatalf("last line %q does not match %s", lines[len(lines)-1], re)
	}
	if mustAtoi(t, m[1]) <= 0 || mustAtoi(t, m[2]) <= 0 {
		t.Errorf("rates %s and %s, want both above 0", m[1], m[2])
	}
	runs := regexp.MustCompile(`(?m)^bench: (group-commit|postgres): payments=(\d+) refusals=(\d+) errors=(\d+) `).FindAllStringSubmatch(out, -1)
	if len(runs) != 2 || runs[1][1] != "postgres" {
		t.Fatalf("run summaries %q, want group-commit then postgres", runs)
	}
	for _, r := range runs {
		if r[4] != "0" {
			t.Errorf("%s run reported %s errors", r[1], r[4])
		}
	}
	if got := strings.Count(out, "ledger verified"); got != 2 {
		t.Errorf("%d runs verified the ledger, want 2", got)
	}
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	// The run's schema is named after its directory; other test binaries
	// may be running benches of their own, so only this one is looked for.
	dir := regexp.MustCompile(`(?m)^bench: postgres: set up .* data \S*/(postgres-\d+)$`).FindStringSubmatch(out)
	if dir == nil {
		t.Fatalf("no postgres run directory in\n%s", out)
	}
	var left int
	if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM pg_namespace WHERE nspname = $1`,
		"payledger_bench_"+strings.ReplaceAll(dir[1], "-", "_")).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Errorf("the bench's schema for %s was left behind", dir[1])
	}
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"bench", "--store", "sqlite:x.db"}, &stdout, &stderr); err == nil {
		t.Error("bench --store sqlite: accepted")
	}
}

// TestMetricsOnPostgres: with the log on PostgreSQL, GET /metrics counts
// the writer's transactions and COMMIT times and shows the LISTEN
// connection's failures.
func TestMetricsOnPostgres(t *testing.T) {
	ctx := context.Background()
	m := &Main{Config: Config{Addr: "127.0.0.1:0", MetricsPublic: true, DataDir: t.TempDir(), TimeZone: "Asia/Shanghai",
		Store: pgStoreURL(t, true), Log: slog.New(slog.NewTextHandler(io.Discard, nil))}}
	if err := m.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := benchSetupOne(ctx, m.Service, 0); err != nil { // opens an account and deposits into it
		t.Fatal(err)
	}
	resp, err := http.Get(m.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
	}
	tx := storeStats(m.Store).Transactions
	if tx < 1 {
		t.Fatalf("%d transactions after an account was opened", tx)
	}
	for _, re := range []string{`(?m)^payledger_log_sync_seconds_count [1-9]\d*$`, `(?m)^payledger_log_transactions_total [1-9]\d*$`,
		`(?m)^payledger_log_listen_errors_total 0$`} {
		if !regexp.MustCompile(re).Match(body) {
			t.Errorf("no match for %s in /metrics", re)
		}
	}
}
