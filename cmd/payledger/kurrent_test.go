package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/payledger/payledger/eventstore"
	"github.com/payledger/payledger/eventstore/kurrent"
	"github.com/payledger/payledger/eventstore/postgres"
	"github.com/payledger/payledger/eventstore/sqlite"
	"github.com/payledger/payledger/internal/filelock"
	"github.com/payledger/payledger/ledger"
)

// kurrentStoreURL returns KURRENTDB_URL with a namespace of the test's own
// (a fresh, empty log on that server), or skips t saying why and how to
// run it: there is no KurrentDB server in CI.
func kurrentStoreURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv("KURRENTDB_URL")
	if u == "" {
		t.Skip("SKIPPED: KURRENTDB_URL is unset, so there is no KurrentDB server to run this against. " +
			"Start an insecure single node with `docker run --rm -p 2113:2113 kurrentplatform/kurrentdb:26.1.1 --insecure` " +
			"and run `KURRENTDB_URL='kurrentdb://127.0.0.1:2113?tls=false' go test ./cmd/payledger/ -run Kurrent`")
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	base, query, _ := strings.Cut(u, "?")
	q, err := url.ParseQuery(query)
	if err != nil {
		t.Fatalf("KURRENTDB_URL's query: %v", err)
	}
	q.Set("namespace", "t"+hex.EncodeToString(b[:]))
	return base + "?" + q.Encode()
}

// TestSoleWriter: a Service is the log's sole writer on the embedded log
// and on PostgreSQL without --shared-log, and never on KurrentDB, where no
// lease keeps other processes from appending.
func TestSoleWriter(t *testing.T) {
	for _, c := range []struct {
		name   string
		shared bool
		st     eventstore.Store
		want   bool
	}{
		{"sqlite", false, (*sqlite.Store)(nil), true},
		{"postgres", false, (*postgres.Store)(nil), true},
		{"postgres --shared-log", true, (*postgres.Store)(nil), false},
		{"kurrent", false, (*kurrent.Store)(nil), false},
		{"kurrent --shared-log", true, (*kurrent.Store)(nil), false},
	} {
		if got := soleWriter(c.shared, c.st); got != c.want {
			t.Errorf("%s: sole writer %v, want %v", c.name, got, c.want)
		}
	}
}

// TestKurrentUnreachable needs no server: with nothing listening on the
// KurrentDB port, serve and migrate fail on their own (well within the
// test's bound) naming the redacted URL, never the password, and serve
// never reports serving; bench refuses a kurrentdb:// --store outright.
func TestKurrentUnreachable(t *testing.T) {
	const store = "kurrentdb://payledger:hunter2@127.0.0.1:1?tls=false"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	err := run(ctx, []string{"serve", "--addr", "127.0.0.1:0", "--data", filepath.Join(t.TempDir(), "data"), "--store", store}, &out, &errOut)
	if ctx.Err() != nil {
		t.Fatalf("serve on an unreachable KurrentDB did not fail within a minute: %v", err)
	}
	all := func() string { return out.String() + errOut.String() }
	if err == nil || !strings.Contains(err.Error(), "open the event log") ||
		!strings.Contains(err.Error(), "kurrentdb://payledger:xxxxx@127.0.0.1:1") {
		t.Fatalf("serve: %v, want the event log's failure naming the redacted URL", err)
	}
	if strings.Contains(err.Error()+all(), "hunter2") || strings.Contains(out.String(), "serving") {
		t.Fatalf("serve: %v\n%s", err, all())
	}

	out.Reset()
	errOut.Reset()
	err = run(ctx, []string{"migrate", "--store", store}, &out, &errOut)
	if ctx.Err() != nil {
		t.Fatalf("migrate on an unreachable KurrentDB did not fail within a minute: %v", err)
	}
	if err == nil || strings.Contains(err.Error()+all(), "hunter2") || !strings.Contains(err.Error(), "payledger:xxxxx@") {
		t.Fatalf("migrate: %v\n%s", err, all())
	}

	err = run(ctx, []string{"bench", "--store", store}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "not supported") || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("bench --store kurrentdb://: %v", err)
	}
}

// TestKurrentRebuildBesideServer needs no server: rebuild on a KurrentDB
// log refuses a data directory a server is using (here a real one, on the
// embedded log) before it asks KurrentDB anything, and runs once that
// server has stopped (failing then only because nothing listens).
func TestKurrentRebuildBesideServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "data")
	m := &Main{Config: Config{DataDir: dir, TimeZone: "Asia/Shanghai", Log: slog.New(slog.NewTextHandler(io.Discard, nil))}}
	if err := m.Open(ctx); err != nil {
		t.Fatal(err)
	}
	const store = "kurrentdb://127.0.0.1:1?tls=false"
	var out, errOut bytes.Buffer
	err := run(ctx, []string{"rebuild", "--data", dir, "--store", store}, &out, &errOut)
	if !errors.Is(err, filelock.ErrHeld) || !strings.Contains(err.Error(), "a server uses the data directory") {
		m.Close()
		t.Fatalf("rebuild beside a server: %v, want the data directory refused", err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	err = run(ctx, []string{"rebuild", "--data", dir, "--store", store}, &out, &errOut)
	if err == nil || errors.Is(err, filelock.ErrHeld) || !strings.Contains(err.Error(), "kurrent store") {
		t.Fatalf("rebuild after the server stopped: %v, want it to reach for KurrentDB", err)
	}
	// A data directory that does not exist has no server to lock out.
	err = run(ctx, []string{"rebuild", "--data", filepath.Join(t.TempDir(), "none"), "--store", store}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "kurrent store") {
		t.Fatalf("rebuild without a data directory: %v, want it to reach for KurrentDB", err)
	}
	// The lock is released after the failure: a server starts again.
	if err := m.Open(ctx); err != nil {
		t.Fatalf("a server after the failed rebuild: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestDemoOnKurrent runs the whole narrated scenario through the real API
// with the event log on KurrentDB, then verify, migrate and rebuild on the
// same log.
func TestDemoOnKurrent(t *testing.T) {
	store := kurrentStoreURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	if err := run(ctx, []string{"demo", "--store", store}, &out, &errOut); err != nil {
		t.Fatalf("demo on KurrentDB: %v\n%s\n%s", err, out.String(), errOut.String())
	}
	if !strings.HasSuffix(out.String(), "demo: ok\n") {
		t.Fatalf("demo did not end with ok:\n%s", out.String())
	}
	demoDigest := regexp.MustCompile(`event-log digest ([0-9a-f]{64})`).FindStringSubmatch(out.String())
	var vout bytes.Buffer
	if err := run(ctx, []string{"verify", "--store", store}, &vout, &errOut); err != nil {
		t.Fatalf("verify --store: %v\n%s", err, errOut.String())
	}
	got := regexp.MustCompile(`verify: event-log digest ([0-9a-f]{64})`).FindStringSubmatch(vout.String())
	if demoDigest == nil || got == nil || got[1] != demoDigest[1] {
		t.Fatalf("verify --store printed %q; the demo's digest is %q", vout.String(), demoDigest)
	}
	var mout bytes.Buffer
	if err := run(ctx, []string{"migrate", "--store", store}, &mout, &errOut); err != nil {
		t.Fatalf("migrate --store: %v", err)
	}
	if !regexp.MustCompile(`needs no schema .* its log holds [1-9]\d* events`).MatchString(mout.String()) {
		t.Fatalf("migrate said %q", mout.String())
	}
	var rout bytes.Buffer
	if err := run(ctx, []string{"rebuild", "--data", t.TempDir(), "--store", store}, &rout, &errOut); err != nil {
		t.Fatalf("rebuild --store: %v\n%s", err, rout.String())
	}
	if !strings.Contains(rout.String(), "rebuild: ok") {
		t.Fatalf("rebuild --store:\n%s", rout.String())
	}
}

// TestServeOnKurrentSeesOtherWriters: two Mains open one KurrentDB log at
// once (no lease refuses the second: a close, a standby started early),
// and a Service reads an account's stream tail before it answers, so a
// deposit made through the other shows at once (a sole writer's cache
// would keep the old version).
func TestServeOnKurrentSeesOtherWriters(t *testing.T) {
	store := kurrentStoreURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var nodes [2]*Main
	for i := range nodes {
		nodes[i] = &Main{Config: Config{DataDir: t.TempDir(), TimeZone: "Asia/Shanghai", Store: store,
			Log: slog.New(slog.NewTextHandler(io.Discard, nil))}}
		if err := nodes[i].Open(ctx); err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		t.Cleanup(func() { _ = nodes[i].Close() })
	}
	a, err := benchSetupOne(ctx, nodes[0].Service, 0) // opens an account and deposits into it
	if err != nil {
		t.Fatal(err)
	}
	before, err := nodes[0].Service.Account(ctx, benchOperator, a.id)
	if err != nil {
		t.Fatal(err)
	}
	out, err := nodes[1].Service.Deposit(ctx, benchFunding, a.id, ledger.Idem{}, "1.00", benchCurrency, "through the other node")
	if err == nil && out.Refusal != nil {
		err = out.Refusal
	}
	if err != nil {
		t.Fatalf("deposit through the second node: %v", err)
	}
	after, err := nodes[0].Service.Account(ctx, benchOperator, a.id)
	if err != nil {
		t.Fatal(err)
	}
	if after.Version != before.Version+1 {
		t.Fatalf("the first node sees version %d after the other node's deposit, want %d", after.Version, before.Version+1)
	}
	if _, _, _, err := verifyLog(ctx, nodes[1].Store, nil); err != nil {
		t.Fatal(err)
	}
	if s := nodes[0].Store.(*kurrent.Store).Stats(); s.Appends == 0 || s.Events < s.Appends {
		t.Fatalf("the first node's log counters: %+v", s)
	}
}
