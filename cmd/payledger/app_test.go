package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/ledger"
)

// TestSyncMetric: once appends went through, GET /metrics shows the event
// log's sync histogram with an observation per committed transaction.
func TestSyncMetric(t *testing.T) {
	ctx := context.Background()
	m := &Main{Config: Config{Addr: "127.0.0.1:0", MetricsPublic: true, DataDir: t.TempDir(), TimeZone: "Asia/Shanghai",
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}}
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
	c := regexp.MustCompile(`(?m)^payledger_log_sync_seconds_count (\d+)$`).FindSubmatch(body)
	if c == nil {
		t.Fatalf("no payledger_log_sync_seconds_count in\n%s", body)
	}
	if n, _ := strconv.Atoi(string(c[1])); n < 1 {
		t.Fatalf("%d syncs observed after %d transactions", n, storeStats(m.Store).Transactions)
	}
	for _, name := range []string{"payledger_snapshots_saved_total", "payledger_snapshots_loaded_total", "payledger_snapshots_rejected_total"} {
		if !regexp.MustCompile(`(?m)^` + name + ` \d+$`).Match(body) {
			t.Errorf("no %s in /metrics", name)
		}
	}
}

// TestDataDirModes: a data directory that existed with wide modes ends up
// 0700 with every file 0600 (those the stores create included), and a
// server key readable by others is refused.
func TestDataDirModes(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	m := &Main{Config: Config{DataDir: dir, TimeZone: "Asia/Shanghai", Log: slog.New(slog.NewTextHandler(io.Discard, nil))}}
	if err := m.Open(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := benchSetupOne(ctx, m.Service, 0); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("data directory mode %v %v", st.Mode().Perm(), err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if e.Type().IsRegular() && info.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %04o", e.Name(), info.Mode().Perm())
		}
	}
	if err := os.Chmod(filepath.Join(dir, "server.key"), 0o644); err != nil {
		t.Fatal(err)
	}
	m = &Main{Config: Config{DataDir: dir, TimeZone: "Asia/Shanghai", Log: slog.New(slog.NewTextHandler(io.Discard, nil))}}
	if err := m.Open(ctx); err == nil || !strings.Contains(err.Error(), "readable by others") {
		t.Fatalf("a server key readable by others: %v", err)
	}
}

// TestCloseSavesSnapshots: a clean close saves the snapshot of an account
// served since its last one, sealed as serve seals it, and the restarted
// ledger loads it (no rejection) with the state the closed one held.
func TestCloseSavesSnapshots(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	open := func() *Main {
		t.Helper()
		m := &Main{Config: Config{DataDir: dir, TimeZone: "Asia/Shanghai", Log: slog.New(slog.NewTextHandler(io.Discard, nil))}}
		if err := m.Open(ctx); err != nil {
			t.Fatal(err)
		}
		return m
	}
	m := open()
	a, err := benchSetupOne(ctx, m.Service, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, err := m.Service.Deposit(ctx, benchFunding, a.id, ledger.Idem{}, "1.00", benchCurrency, fmt.Sprintf("close-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	holder := ledger.Actor{AccountID: a.id, SessionID: "test"}
	before, err := m.Service.Account(ctx, holder, a.id)
	if err != nil {
		t.Fatal(err)
	}
	stream := domain.AccountStream(a.id)
	if _, ok, err := m.Store.LoadSnapshot(ctx, stream); err != nil || ok {
		t.Fatalf("a snapshot before the close: %v %v", ok, err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}

	m = open()
	defer m.Close()
	snap, ok, err := m.Store.LoadSnapshot(ctx, stream)
	if err != nil || !ok || snap.Version != before.Version {
		t.Fatalf("snapshot at %d (%v %v), want the account's version %d", snap.Version, ok, err, before.Version)
	}
	after, err := m.Service.Account(ctx, holder, a.id)
	if err != nil {
		t.Fatal(err)
	}
	if st := m.Service.SnapshotStats(); st.Loaded != 1 || st.Rejected != 0 {
		t.Fatalf("stats %+v", st)
	}
	// The balance is read from the projection: the restarted one may
	// still be catching up.
	after.Available, before.Available = domain.Money{}, domain.Money{}
	want, errB := json.Marshal(before)
	got, errA := json.Marshal(after)
	if errB != nil || errA != nil || string(got) != string(want) {
		t.Fatalf("after the restart\n%s\nwant\n%s (%v %v)", got, want, errA, errB)
	}
}
