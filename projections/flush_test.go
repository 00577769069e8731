package projections

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/eventstore"
)

// applyChunks applies the whole log in batches of n events, as a live Run
// under light load would.
func applyChunks(t *testing.T, r *ReadModels, s eventstore.Store, n int) {
	t.Helper()
	all, err := s.ReadAll(context.Background(), 0, eventstore.MaxReadBatch)
	if err != nil {
		t.Fatal(err)
	}
	r.applyMu.Lock()
	defer r.applyMu.Unlock()
	for i := 0; i < len(all); i += n {
		items := make([]item, 0, n)
		for _, e := range all[i:min(i+n, len(all))] {
			items = append(items, decodeItem(e))
		}
		if err := r.applyLocked(context.Background(), items); err != nil {
			t.Fatal(err)
		}
	}
}

// rawDigest is Digest as it was before balances rows were flushed lazily:
// every table hashed as stored. With every row current it must equal
// Digest, so digests stay comparable across versions.
func rawDigest(t *testing.T, r *ReadModels) string {
	t.Helper()
	ctx := context.Background()
	tx, err := r.readTx(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	h := sha256.New()
	h.Write([]byte("payledger/readmodels/v1"))
	for _, q := range []struct {
		tag   byte
		query string
		cols  int
	}{
		{'B', "SELECT account_id, currency, balance, debits, credits, entries, last_position FROM balances ORDER BY account_id", 7},
		{'E', `SELECT account_id, time_ns, position, seq, event_id, type, amount, currency, counterparty, balance_after,
			description, ref FROM entries UNION ALL SELECT account_id, time_ns, position, seq, event_id, type, amount,
			currency, counterparty, balance_after, description, ref FROM entries_archive
			ORDER BY account_id, time_ns, position, seq`, entryCols},
		{'C', "SELECT position FROM checkpoint WHERE id = 1", 1},
	} {
		if err := digestRows(ctx, tx, h, q.tag, q.query, q.cols); err != nil {
			t.Fatal(err)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// flushWorkload is workload plus transfers to the same account (two
// entries at one position) and an account that only ever receives.
func flushWorkload(l *ledger) {
	workload(l, 60)
	l.pay("a", "a", "0.5", domain.CNY)
	l.pay("b", "sink", "1", domain.CNY)
	l.pay("a", "a", "0.25", domain.CNY)
	workload(l, 9)
	l.pay("c", "sink", "2", domain.CNY)
	l.pay("sink", "sink", "1", domain.CNY)
}

// TestBalancesFlushIsInvisible applies one log with different batch sizes
// and flush intervals, reopening in between: Digest, Totals, Snapshot and
// the stored-and-completed balances must not depend on when rows were
// flushed.
func TestBalancesFlushIsInvisible(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		l := newLedger(t)
		flushWorkload(l)
		ref := b.newRM(t)
		ref.flushEvery = 1 // every batch flushes: every row always current
		catchUp(t, ref, l.store)
		want := digest(t, ref)
		if raw := rawDigest(t, ref); raw != want {
			t.Fatalf("digest %s of a fully flushed database, raw digest %s", want, raw)
		}
		wantTotals, err := ref.Totals(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if err := wantTotals.Check(); err != nil {
			t.Fatal(err)
		}
		ids := []string{"a", "b", "c", "d", "e", "u", "sink", clearingCNY, domain.ClearingAccountID("USD")}

		for _, every := range []int64{1, 2, 5, 17, 1 << 40} {
			for _, chunk := range []int{1, 3, 50, 10000} {
				t.Run(fmt.Sprintf("every%d/chunk%d", every, chunk), func(t *testing.T) {
					path := filepath.Join(t.TempDir(), "rm.db")
					r := b.openRM(t, path)
					r.flushEvery = every
					applyChunks(t, r, l.store, chunk)
					check := func(stage string, r *ReadModels) {
						t.Helper()
						if got := digest(t, r); got != want {
							t.Errorf("%s: digest %s, want %s", stage, got, want)
						}
						tot, err := r.Totals(context.Background())
						if err != nil {
							t.Fatal(err)
						}
						if fmt.Sprint(tot) != fmt.Sprint(wantTotals) {
							t.Errorf("%s: totals %v, want %v", stage, tot, wantTotals)
						}
						for _, id := range ids {
							got, gcp := r.Snapshot(id)
							exp, ecp := ref.Snapshot(id)
							if !got.Equal(exp) || gcp != ecp {
								t.Errorf("%s: snapshot of %s %s@%d, want %s@%d", stage, id, got, gcp, exp, ecp)
							}
						}
						if got, exp := accountsText(r), accountsText(ref); got != exp {
							t.Errorf("%s: in-memory balances differ:\n%s\nwant\n%s", stage, got, exp)
						}
					}
					check("applied", r)
					if every > l.head() && chunk < int(l.head()) && rawDigest(t, r) == want {
						t.Error("stored rows are all current though no flush was due: the test does not exercise completion")
					}
					if err := r.Close(); err != nil {
						t.Fatal(err)
					}
					r = b.openRM(t, path) // loads rows and completes them
					r.flushEvery = every
					check("reopened", r)
					// Continue after the reopen: stale rows must still be
					// rewritten by the next flush.
					l2 := &ledger{t: t, store: newMemStore(), now: t0, step: l.step}
					all, _ := l.store.ReadAll(context.Background(), 0, eventstore.MaxReadBatch)
					for _, e := range all {
						if _, err := l2.store.Append(context.Background(), e.Stream, eventstore.Any, []eventstore.EventData{e.EventData}); err != nil {
							t.Fatal(err)
						}
					}
					l2.now = l.now
					workload(l2, 30)
					l2.pay("sink", "a", "0.5", domain.CNY)
					applyChunks(t, r, l2.store, chunk)
					fresh := b.newRM(t)
					fresh.flushEvery = 1
					catchUp(t, fresh, l2.store)
					if got, exp := digest(t, r), digest(t, fresh); got != exp {
						t.Errorf("continued: digest %s, fresh build %s", got, exp)
					}
					if err := r.Close(); err != nil {
						t.Fatal(err)
					}
					r = b.openRM(t, path)
					if got, exp := digest(t, r), digest(t, fresh); got != exp {
						t.Errorf("continued and reopened: digest %s, fresh build %s", got, exp)
					}
				})
			}
		}
	})
}

// TestUpgradeFromVersion2 opens a version 2 file (all balances rows
// current, no balances_flushed, no cases) and checks it is upgraded in
// place.
func TestUpgradeFromVersion2(t *testing.T) {
	l := newLedger(t)
	flushWorkload(l)
	path := filepath.Join(t.TempDir(), "rm.db")
	r := openRM(t, path)
	r.flushEvery = 1
	catchUp(t, r, l.store)
	want := digest(t, r)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"DROP TABLE balances_flushed", "DROP TABLE cases", "PRAGMA user_version = 2"} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	r = openRM(t, path)
	if got := digest(t, r); got != want {
		t.Fatalf("digest after upgrade %s, want %s", got, want)
	}
	var v, flushed int64
	if err := r.readDB.QueryRow("PRAGMA user_version").Scan(&v); err != nil || v != schemaVersion {
		t.Fatalf("user_version %d (%v), want %d", v, err, schemaVersion)
	}
	if err := r.readDB.QueryRow("SELECT position FROM balances_flushed").Scan(&flushed); err != nil || flushed != l.head() {
		t.Fatalf("balances_flushed %d (%v), want the checkpoint %d", flushed, err, l.head())
	}
	if _, _, err := r.Cases(context.Background(), CaseQuery{Kind: domain.CaseDispute}); err != nil {
		t.Fatalf("cases after the upgrade: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	// Other versions are refused.
	db, err = sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("PRAGMA user_version = 1"); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
	if _, err := Open(path); err == nil {
		t.Fatal("Open accepted schema version 1")
	}
}

// accountsText renders the in-memory balances canonically, sorted.
func accountsText(r *ReadModels) string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	lines := make([]string, 0, len(r.accounts))
	for id, a := range r.accounts {
		lines = append(lines, fmt.Sprintf("%s %s %s %s %s %d %d", id, a.currency, canonical(a.balance),
			canonical(a.debits), canonical(a.credits), a.entries, a.lastPosition))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}
