package projections

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/eventstore"
	"github.com/payledger/payledger/eventstore/postgres"
	"github.com/payledger/payledger/eventstore/sqlite"
	"github.com/payledger/payledger/internal/pgtest"
)

// caseWorkload is flushWorkload plus a dispute opened, answered and
// resolved and one left open, so the cases table has rows in two states.
func caseWorkload(l *ledger) {
	flushWorkload(l)
	due := l.now.Add(72 * time.Hour)
	for _, id := range []string{"d-1", "d-2"} {
		l.add(domain.DisputeStream(id), domain.DisputeOpened{DisputeID: id, AccountID: "a", Kind: domain.DisputeError,
			Subject: "charged twice", DueBy: due})
	}
	l.add(domain.DisputeStream("d-1"), domain.DisputeResolved{DisputeID: "d-1", Outcome: "upheld", Resolution: "refunded"})
	workload(l, 8)
}

// copyLog appends every event of from to to, one at a time and in log
// order, so to assigns the same positions 1, 2, 3, ...
func copyLog(t *testing.T, from eventstore.Store, to eventstore.Store) {
	t.Helper()
	ctx := context.Background()
	all, err := from.ReadAll(ctx, 0, eventstore.MaxReadBatch)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range all {
		res, err := to.Append(ctx, e.Stream, eventstore.Any, []eventstore.EventData{e.EventData})
		if err != nil {
			t.Fatalf("copy event %d: %v", e.Position, err)
		}
		if got := res.Events[0].Position; got != e.Position {
			t.Fatalf("copied event %d got position %d", e.Position, got)
		}
	}
}

// TestRebuildFromEveryStoreGivesSameRows writes one log into the SQLite
// and the PostgreSQL event store and rebuilds read models into SQLite and
// PostgreSQL from each: all four must hold the same rows (Digest), the
// same balances and the same statement pages. KurrentDB is not opened
// here: the projections cannot import its adapter's dependencies cheaply
// and its conformance suite runs only with KURRENTDB_URL.
func TestRebuildFromEveryStoreGivesSameRows(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	caseWorkload(l)

	lite, err := sqlite.Open(filepath.Join(t.TempDir(), "events.db"), sqlite.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lite.Close() })
	copyLog(t, l.store, lite)

	dsn, schema := pgtest.Schema(t, "events")
	opts := postgres.DefaultOptions()
	opts.Schema = schema
	if _, err := postgres.Migrate(ctx, dsn, opts); err != nil {
		t.Fatal(err)
	}
	pg, err := postgres.Open(ctx, dsn, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pg.Close() })
	copyLog(t, l.store, pg)

	type built struct {
		name string
		r    *ReadModels
	}
	var all []built
	for _, store := range []struct {
		name string
		s    eventstore.Store
	}{{"sqlite-log", lite}, {"postgres-log", pg}} {
		for _, b := range []backend{sqliteBackend, postgresBackend} {
			r := b.newRM(t)
			// Something to throw away first, as a real rebuild has.
			l2 := newLedger(t)
			workload(l2, 5)
			catchUp(t, r, l2.store)
			if err := r.Rebuild(ctx, store.s); err != nil {
				t.Fatalf("%s into %s: %v", store.name, b.name, err)
			}
			all = append(all, built{store.name + " into " + b.name, r})
		}
	}
	ref := all[0]
	want := digest(t, ref.r)
	wantTotals, err := ref.r.Totals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := wantTotals.Check(); err != nil {
		t.Fatal(err)
	}
	wantCases, _, err := ref.r.Cases(ctx, CaseQuery{Kind: domain.CaseDispute})
	if err != nil || len(wantCases) != 2 {
		t.Fatalf("cases %v, %v; want 2", wantCases, err)
	}
	ids := []string{"a", "b", "c", "d", "e", "u", "sink", clearingCNY}
	for _, got := range all[1:] {
		if d := digest(t, got.r); d != want {
			t.Errorf("%s: digest %s, %s: %s", got.name, d, ref.name, want)
		}
		tot, err := got.r.Totals(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(tot) != fmt.Sprint(wantTotals) {
			t.Errorf("%s: totals %v, want %v", got.name, tot, wantTotals)
		}
		for _, id := range ids {
			if g, w := balanceOf(t, got.r, id), balanceOf(t, ref.r, id); fmt.Sprint(g) != fmt.Sprint(w) {
				t.Errorf("%s: balance %+v, want %+v", got.name, g, w)
			}
			q := StatementQuery{AccountID: id, From: t0.Add(10 * time.Minute), Limit: 7}
			for page := 0; page < 3; page++ {
				g, err1 := got.r.Statement(ctx, q)
				w, err2 := ref.r.Statement(ctx, q)
				if err := errors.Join(err1, err2); err != nil {
					t.Fatal(err)
				}
				if fmt.Sprint(g) != fmt.Sprint(w) {
					t.Errorf("%s: statement of %s page %d:\n%+v\nwant\n%+v", got.name, id, page, g, w)
				}
				if w.NextCursor == "" {
					break
				}
				q.Cursor = w.NextCursor
			}
		}
		cases, _, err := got.r.Cases(ctx, CaseQuery{Kind: domain.CaseDispute})
		if err != nil || fmt.Sprint(cases) != fmt.Sprint(wantCases) {
			t.Errorf("%s: cases %v (%v), want %v", got.name, cases, err, wantCases)
		}
	}
}

// TestPostgresOneProjector: a second OpenPostgres of the same schema is
// refused while the first is open, and succeeds once it closed.
func TestPostgresOneProjector(t *testing.T) {
	ctx := context.Background()
	dsn, schema := pgtest.Schema(t, "one")
	r1, err := OpenPostgres(ctx, dsn, schema)
	if err != nil {
		t.Fatal(err)
	}
	defer r1.Close()
	if r2, err := OpenPostgres(ctx, dsn, schema); !errors.Is(err, ErrLocked) {
		if r2 != nil {
			_ = r2.Close()
		}
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
	// Another schema of the same database is another projector's.
	_, other := pgtest.Schema(t, "other")
	r3, err := OpenPostgres(ctx, dsn, other)
	if err != nil {
		t.Fatalf("open another schema: %v", err)
	}
	_ = r3.Close()
	if err := r1.Close(); err != nil {
		t.Fatal(err)
	}
	r2, err := OpenPostgres(ctx, dsn, schema)
	if err != nil {
		t.Fatalf("open after close: %v", err)
	}
	_ = r2.Close()
}

// TestPostgresFenceStopsALostProjector: when the first projector's session
// dies (its connection terminated) and a second one opens the schema, the
// first one's next batch is refused instead of applying every event twice.
func TestPostgresFenceStopsALostProjector(t *testing.T) {
	ctx := context.Background()
	dsn, schema := pgtest.Schema(t, "fence")
	l := newLedger(t)
	l.open("a", domain.CNY)
	l.deposit("a", "10", domain.CNY)
	r1 := postgresBackend.openRM(t, "fence")
	catchUp(t, r1, l.store)
	var pid int
	if err := r1.writeDB.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.ExecContext(ctx, "SELECT pg_terminate_backend($1)", pid); err != nil {
		t.Fatal(err)
	}
	// The server drops the lock when the backend has exited; bounded wait.
	var r2 *ReadModels
	for i := 0; ; i++ {
		r2, err = OpenPostgres(ctx, dsn, schema)
		if err == nil || !errors.Is(err, ErrLocked) || i == 100 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("second projector: %v", err)
	}
	defer r2.Close()
	l.deposit("a", "5", domain.CNY)
	// r1's first attempt may meet its dead connection; database/sql then
	// replaces it, and the fence refuses the new one.
	for range 3 {
		err = r1.CatchUp(ctx, l.store)
		if errors.Is(err, ErrLocked) {
			break
		}
	}
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("lost projector's batch: %v, want ErrLocked", err)
	}
	catchUp(t, r2, l.store)
	if b, _ := r2.Snapshot("a"); b.String() != "15" {
		t.Fatalf("balance %s after the takeover, want 15", b)
	}
	if !strings.Contains(err.Error(), "another process") {
		t.Errorf("error %q does not say why", err)
	}
}

// TestReadModelsOfAnotherLogAreRefused: read models past the log's head
// were built from another log; catching up refuses them (instead of
// answering for this log with that one's rows), and Rebuild replaces them.
func TestReadModelsOfAnotherLogAreRefused(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		l := newLedger(t)
		workload(l, 10)
		r := b.newRM(t)
		catchUp(t, r, l.store)
		short := newLedger(t)
		short.open("z", domain.CNY)
		short.deposit("z", "1", domain.CNY)
		if err := r.CatchUp(ctx, short.store); !errors.Is(err, ErrAheadOfLog) {
			t.Fatalf("catch up from a shorter log: %v, want ErrAheadOfLog", err)
		}
		if err := r.Rebuild(ctx, short.store); err != nil {
			t.Fatal(err)
		}
		fresh := b.newRM(t)
		catchUp(t, fresh, short.store)
		if digest(t, r) != digest(t, fresh) || r.Checkpoint() != short.head() {
			t.Fatalf("rebuilt at %d, want the fresh build at %d", r.Checkpoint(), short.head())
		}
	})
}
