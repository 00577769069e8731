package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/payledger/payledger/eventstore"
)

// appendOne appends one event to stream and returns it as stored.
func appendOne(t *testing.T, s *Store, stream string) eventstore.Event {
	t.Helper()
	r, err := s.Append(context.Background(), stream, eventstore.Any, []eventstore.EventData{event()})
	if err != nil {
		t.Fatalf("append %s: %v", stream, err)
	}
	return r.Events[0]
}

// checkReads compares every forward and backward read of stream, from each
// version and with each limit, with the expected events. Past
// exhaustiveLimits events it still reads from each version, but with the
// limits around the edges only: every limit of an 80-event stream was
// 13,000 reads, two minutes under the race detector.
func checkReads(t *testing.T, s *Store, stream string, want []eventstore.Event) {
	t.Helper()
	const exhaustiveLimits = 8
	ctx := context.Background()
	ids := func(es []eventstore.Event) []string {
		out := make([]string, len(es))
		for i, e := range es {
			out[i] = fmt.Sprintf("%d:%s", e.Version, e.ID)
		}
		return out
	}
	n := int64(len(want))
	var limits []int
	for limit := 1; limit <= len(want)+1; limit++ {
		if len(want) <= exhaustiveLimits || limit <= 3 || limit >= len(want)-1 || limit == len(want)/2 {
			limits = append(limits, limit)
		}
	}
	for from := int64(0); from <= n+1; from++ {
		for _, limit := range limits {
			got, err := s.ReadStream(ctx, stream, from, limit)
			if err != nil {
				t.Fatal(err)
			}
			lo := min(max(from, 1)-1, n)
			exp := want[lo:min(lo+int64(limit), n)]
			if !slices.Equal(ids(got), ids(exp)) {
				t.Fatalf("ReadStream(%s, from %d, limit %d) = %v, want %v", stream, from, limit, ids(got), ids(exp))
			}
			got, err = s.ReadStreamBackward(ctx, stream, from, limit)
			if err != nil {
				t.Fatal(err)
			}
			hi := n // from < 1 means from the end
			if from >= 1 {
				hi = min(from, n)
			}
			var back []eventstore.Event
			for i := hi - 1; i >= 0 && len(back) < limit; i-- {
				back = append(back, want[i])
			}
			if !slices.Equal(ids(got), ids(back)) {
				t.Fatalf("ReadStreamBackward(%s, from %d, limit %d) = %v, want %v", stream, from, limit, ids(got), ids(back))
			}
		}
	}
	v, err := s.StreamVersion(ctx, stream)
	if err != nil || v != n {
		t.Fatalf("StreamVersion(%s) = %d, %v; want %d", stream, v, err, n)
	}
	if n > 0 {
		if _, err := eventstore.VerifyChain([32]byte{}, want); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReadsAcrossIndexFlushes reads streams whose events are split between
// stream_index and the in-memory tail, at every split point.
func TestReadsAcrossIndexFlushes(t *testing.T) {
	opts := DefaultOptions()
	opts.IndexBatch = 4
	s := openTest(t, opts)
	var a, b []eventstore.Event
	for i := range 11 {
		a = append(a, appendOne(t, s, "a"))
		if i%3 == 0 {
			b = append(b, appendOne(t, s, "b"))
		}
		checkReads(t, s, "a", a)
		checkReads(t, s, "b", b)
		checkReads(t, s, "none", nil)
	}
	if st := s.Stats(); st.IndexFlushes < 2 {
		t.Fatalf("%d index flushes, want several", st.IndexFlushes)
	}
	upto, tail := s.tail.lookup("a")
	if upto == 0 || upto >= s.head.Load() && len(tail) > 0 {
		t.Fatalf("indexed_upto %d, head %d, %d tail entries", upto, s.head.Load(), len(tail))
	}
}

// TestTailRebuiltAfterCrash leaves events unindexed, as a crash would, and
// finds them readable and appendable after reopening.
func TestTailRebuiltAfterCrash(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	opts := DefaultOptions()
	opts.IndexBatch = 5
	s := mustOpen(t, path, opts)
	// A flush sorts on another goroutine and is written by the appends
	// after it, so append until one has finished (bounded), then two more
	// that stay in the tail.
	var want []eventstore.Event
	for s.indexFlushes.Load() == 0 {
		if len(want) == 200 {
			t.Fatal("no index flush after 200 appends")
		}
		want = append(want, appendOne(t, s, "a"))
	}
	for range 2 {
		want = append(want, appendOne(t, s, "a"))
	}
	s.noCloseFlush = true
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// The events after the last flush must still be unindexed on disk.
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	var indexed int
	if err := db.QueryRow("SELECT COUNT(*) FROM stream_index").Scan(&indexed); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
	if indexed == 0 || indexed >= len(want) {
		t.Fatalf("%d of %d events indexed on disk, want some but not all", indexed, len(want))
	}

	s = mustOpen(t, path, opts)
	defer s.Close()
	checkReads(t, s, "a", want)
	r, err := s.Append(context.Background(), "a", int64(len(want)), []eventstore.EventData{event()})
	if err != nil || r.LastVersion() != int64(len(want))+1 {
		t.Fatalf("append after reopen: %v %+v", err, r)
	}
	// A stale expected version is still refused, whether the version is in
	// the tail or in the index.
	for _, exp := range []int64{1, int64(indexed), int64(len(want))} {
		if _, err := s.Append(context.Background(), "a", exp, []eventstore.EventData{event()}); !errors.Is(err, eventstore.ErrVersionConflict) {
			t.Fatalf("append at stale version %d: %v", exp, err)
		}
	}
}

// TestCloseFlushesIndex: a clean Close leaves nothing to scan on Open.
func TestCloseFlushesIndex(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	s := mustOpen(t, path, DefaultOptions())
	for range 3 {
		appendOne(t, s, "a")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, path, DefaultOptions())
	defer s.Close()
	if upto, tail := s.tail.lookup("a"); upto != 3 || len(tail) != 0 || s.tail.size() != 0 {
		t.Fatalf("after a clean close: indexed_upto %d, %d tail entries", upto, len(tail))
	}
}

// TestOneWriterPerFile: a second Open of the same file fails with ErrLocked
// until the first Store is closed.
func TestOneWriterPerFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	s := mustOpen(t, path, DefaultOptions())
	if s2, err := Open(path, DefaultOptions()); !errors.Is(err, ErrLocked) {
		if s2 != nil {
			_ = s2.Close()
		}
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, path, DefaultOptions())
	_ = s.Close()
}

// schema1 is the layout of schema version 1, with the stream index inside
// the events table.
const schema1 = `
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE events (
	position INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, stream TEXT NOT NULL,
	version INTEGER NOT NULL CHECK (version >= 1), type TEXT NOT NULL, schema_version INTEGER NOT NULL,
	occurred_at TEXT NOT NULL, causation_id TEXT NOT NULL DEFAULT '', correlation_id TEXT NOT NULL DEFAULT '',
	idempotency_key TEXT NOT NULL DEFAULT '', payload BLOB NOT NULL,
	prev_hash BLOB NOT NULL CHECK (length(prev_hash) = 32), hash BLOB NOT NULL CHECK (length(hash) = 32),
	UNIQUE (stream, version));
INSERT INTO meta (key, value) VALUES ('schema_version', '1');`

// schema2 is the layout of schema version 2: one row per event, the stream
// index beside it (here flushed up to position 2, with one row of a flush
// cut short after it).
const schema2 = `
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
` + legacyEventsTable + `;
CREATE TABLE stream_index (stream TEXT NOT NULL, version INTEGER NOT NULL, position INTEGER NOT NULL,
	PRIMARY KEY (stream, version)) WITHOUT ROWID;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events are retained (R2): delete forbidden'); END;
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events are retained (R2): update forbidden'); END;
INSERT INTO meta (key, value) VALUES ('schema_version', '2'), ('indexed_upto', '2');
INSERT INTO stream_index (stream, version, position) VALUES ('a', 1, 1), ('b', 1, 2), ('a', 2, 3);`

// TestMigrateLegacy opens files written in schemas 1 and 2 and finds their
// events packed into segments, indexed, readable, verifiable and
// appendable, with the id index refusing a stored id, and the events table
// gone.
func TestMigrateLegacy(t *testing.T) {
	for _, tc := range []struct{ name, schema string }{{"schema 1", schema1}, {"schema 2", schema2}} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "events.db")
			db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := db.Exec(tc.schema); err != nil {
				t.Fatal(err)
			}
			want := map[string][]eventstore.Event{}
			prev := map[string][32]byte{}
			at := time.Date(2026, 11, 25, 8, 0, 0, 123456789, time.UTC)
			for pos, stream := range []string{"a", "b", "a", "a"} {
				d := event()
				d.OccurredAt = at
				v := int64(len(want[stream]) + 1)
				e := eventstore.Event{EventData: d, Stream: stream, Version: v, Position: int64(pos + 1), PrevHash: prev[stream]}
				e.Hash = eventstore.ComputeHash(e.PrevHash, stream, v, d)
				if _, err := db.Exec(`INSERT INTO events (position, id, stream, version, type, schema_version, occurred_at, payload, prev_hash, hash)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, e.Position, d.ID, stream, v, d.Type, d.SchemaVersion, at.Format(time.RFC3339Nano),
					d.Payload, e.PrevHash[:], e.Hash[:]); err != nil {
					t.Fatal(err)
				}
				want[stream] = append(want[stream], e)
				prev[stream] = e.Hash
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			s := mustOpen(t, path, DefaultOptions())
			checkReads(t, s, "a", want["a"])
			checkReads(t, s, "b", want["b"])
			if upto, _ := s.tail.lookup("a"); upto != 4 {
				t.Fatalf("indexed_upto %d after migration, want 4", upto)
			}
			ctx := context.Background()
			var tables int
			if err := s.rdb.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_schema WHERE name LIKE 'events%'`).Scan(&tables); err != nil || tables != 0 {
				t.Fatalf("%d tables or triggers named events* left, %v", tables, err)
			}
			reuse := want["b"][0].EventData
			if _, err := s.Append(ctx, "c", eventstore.Any, []eventstore.EventData{reuse}); !errors.Is(err, eventstore.ErrIDReused) {
				t.Fatalf("migrated id appended again: %v", err)
			}
			if r, err := s.Append(ctx, "a", 3, []eventstore.EventData{event()}); err != nil || r.LastVersion() != 4 {
				t.Fatalf("append after migration: %v", err)
			}
			if _, err := s.Append(ctx, "a", 2, []eventstore.EventData{event()}); !errors.Is(err, eventstore.ErrVersionConflict) {
				t.Fatalf("stale append after migration: %v", err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if n := checkIndexes(t, path); n != 5 {
				t.Fatalf("check after migration: %d indexed, want 5", n)
			}
		})
	}
}

// TestChunkedFlush spreads each flush over several transactions and reads
// every stream after every append, while a flush is half written too.
func TestChunkedFlush(t *testing.T) {
	opts := DefaultOptions()
	opts.IndexBatch = 6
	s := openTest(t, opts)
	s.indexChunk = 2
	want := map[string][]eventstore.Event{}
	midFlush := 0
	for i := range 40 {
		stream := []string{"a", "b", "c"}[i%3]
		want[stream] = append(want[stream], appendOne(t, s, stream))
		if s.tail.written > 0 {
			midFlush++
		}
		for _, st := range []string{"a", "b", "c"} {
			checkReads(t, s, st, want[st])
		}
	}
	if midFlush == 0 || s.Stats().IndexFlushes < 2 {
		t.Fatalf("%d appends saw a flush half written, %d flushes finished; want both", midFlush, s.Stats().IndexFlushes)
	}
}

// TestFlushChunksFollowTransactions: a flush is sorted off the writer and
// then written by ordinary transactions, each of one event writing at most
// minIndexChunk rows, until indexed_upto moves; reads stay whole
// throughout. (With fixed 1,024-row chunks one transaction wrote all 300.)
func TestFlushChunksFollowTransactions(t *testing.T) {
	opts := DefaultOptions()
	opts.IndexBatch = 300
	s := openTest(t, opts)
	var want []eventstore.Event
	for range 300 {
		want = append(want, appendOne(t, s, "a"))
	}
	flushes := s.Stats().IndexFlushes
	prev, steps := s.tail.written, 0
	for s.Stats().IndexFlushes == flushes && steps < 200 {
		want = append(want, appendOne(t, s, "a"))
		steps++
		if w := s.tail.written; w-prev > minIndexChunk {
			t.Fatalf("a one-event transaction wrote %d index rows, want at most %d", w-prev, minIndexChunk)
		}
		prev = s.tail.written
	}
	if s.Stats().IndexFlushes == flushes {
		t.Fatalf("no flush finished in %d appends", steps)
	}
	if min := (300 + minIndexChunk - 1) / minIndexChunk; steps < min {
		t.Errorf("the flush finished in %d transactions, want at least %d", steps, min)
	}
	got, err := s.ReadStream(context.Background(), "a", 1, len(want)+1)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) || got[0].ID != want[0].ID || got[len(got)-1].ID != want[len(want)-1].ID {
		t.Fatalf("read %d events, want %d", len(got), len(want))
	}
	if _, err := eventstore.VerifyChain([32]byte{}, got); err != nil {
		t.Fatal(err)
	}
}

// TestFailedTransactionDuringFlush fails a transaction while a flush is
// being sorted off the writer (or has just started writing): the writer
// reloads its tail, drops that flush, starts it again and finishes it, and
// the log, its reads and its indexes stay whole.
func TestFailedTransactionDuringFlush(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	opts := DefaultOptions()
	// More than one chunk, so the commit that starts the flush cannot also
	// finish it, however soon the sort is done (with 50, it sometimes did).
	batch := minIndexChunk + 36
	opts.IndexBatch = batch
	s := mustOpen(t, path, opts)
	want := map[string][]eventstore.Event{}
	add := func(i int) {
		stream := []string{"a", "b"}[i%2]
		want[stream] = append(want[stream], appendOne(t, s, stream))
	}
	for i := range batch + 1 { // the last commit finds batch events in the tail: the flush starts
		add(i)
	}
	// The append has returned, so the writer's commit is ordered before
	// these reads (and the next write to them comes after the next send).
	if s.tail.sorting == nil && len(s.tail.flushing) == 0 {
		t.Fatal("no flush started")
	}
	if n := s.Stats().IndexFlushes; n != 0 {
		t.Fatalf("%d flushes finished before the failure, want 0", n)
	}
	s.beforeCommit = func() error { return errors.New("disk full") }
	if _, err := s.Append(context.Background(), "a", eventstore.Any, []eventstore.EventData{event()}); err == nil {
		t.Fatal("append succeeded with its commit failing")
	}
	s.beforeCommit = nil
	flushes := s.Stats().IndexFlushes
	for i := 0; s.Stats().IndexFlushes == flushes; i++ {
		if i == 200 {
			t.Fatal("no flush finished in 200 appends after the failure")
		}
		add(i)
	}
	for _, stream := range []string{"a", "b"} {
		got, err := s.ReadStream(context.Background(), stream, 1, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want[stream]) {
			t.Fatalf("stream %s: read %d events, want %d", stream, len(got), len(want[stream]))
		}
		if _, err := eventstore.VerifyChain([32]byte{}, got); err != nil {
			t.Fatal(err)
		}
	}
	s.noCloseFlush = true // check what the flushes wrote, not a final one
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n := checkIndexes(t, path); n < int64(batch)+1 {
		t.Fatalf("indexes after the failure: %d indexed, want at least %d", n, batch+1)
	}
}

// checkIndexes runs verify's index check on the closed log at path and
// returns how many events the indexes hold.
func checkIndexes(t *testing.T, path string) int64 {
	t.Helper()
	r, err := OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	n, err := r.CheckIndexes(context.Background())
	if err != nil {
		t.Fatalf("index check: %v", err)
	}
	return n
}

// TestCrashMidFlush reopens a store whose last flush was cut short: the
// rows it wrote are recognised, and the reads and appends are unaffected.
func TestCrashMidFlush(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	opts := DefaultOptions()
	opts.IndexBatch = 8
	s := mustOpen(t, path, opts)
	s.indexChunk = 3
	var want []eventstore.Event
	for len(want) < 100 && !(s.tail.written > 0 && len(want) > 8) {
		want = append(want, appendOne(t, s, "a"))
	}
	if s.tail.written == 0 {
		t.Fatal("no flush was half written")
	}
	s.noCloseFlush = true
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, path, opts)
	defer s.Close()
	flushes := s.Stats().IndexFlushes
	for range 12 {
		want = append(want, appendOne(t, s, "a"))
	}
	if s.Stats().IndexFlushes == flushes {
		t.Fatal("no flush finished after reopening")
	}
	checkReads(t, s, "a", want)
}

// TestFlushRefusesDuplicateVersion: an index row for a stream version
// that points at another event (the log holding a version twice) stops the
// flush instead of being skipped. The flush is sorted on another goroutine
// and written by the first transaction after the sort is done, so the
// appends go on (up to a bound far above what a sort of four entries
// needs) until one fails.
func TestFlushRefusesDuplicateVersion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	opts := DefaultOptions()
	opts.IndexBatch = 4
	s := mustOpen(t, path, opts)
	defer s.Close()
	appendOne(t, s, "a")
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`INSERT INTO streams (name) VALUES ('a');
		INSERT INTO stream_index (stream, version, position) VALUES ((SELECT id FROM streams WHERE name = 'a'), 1, 999)`); err != nil {
		t.Fatal(err)
	}
	var lastErr error
	for range 1000 {
		if _, err := s.Append(context.Background(), "b", eventstore.Any, []eventstore.EventData{event()}); err != nil {
			lastErr = err
			break
		}
	}
	if lastErr == nil || !strings.Contains(lastErr.Error(), "holds this version twice") {
		t.Fatalf("append after a conflicting index row: %v", lastErr)
	}
}

// TestIndexRowsInStatements writes index rows through the multi-row
// inserts (100 rows: statements of 64, 32 and 4), some of them already
// there from a flush cut short; then a run of rows of which one names
// another position, which must fail and name that row.
func TestIndexRowsInStatements(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	s := mustOpen(t, path, DefaultOptions())
	defer s.Close()
	ctx := context.Background()
	entries := make([]pendingEntry, 100)
	for i := range entries {
		id := fmt.Sprintf("id-%03d", i)
		entries[i] = pendingEntry{stream: fmt.Sprintf("s-%03d", i), id: id, key: idKey(id), version: 1, position: int64(i + 1)}
	}
	write := func(entries []pendingEntry) error {
		tx, err := s.wdb.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		tr := &txn{tx: tx, flushMaxKey: math.MinInt64}
		err = s.streamNumbers(ctx, tr, entries)
		if err == nil {
			err = indexRows(ctx, tr, &s.idxIns, s.idxGetStmt, entries, streamRow)
		}
		if err == nil {
			err = indexRows(ctx, tr, &s.idIns, s.idAtStmt, entries, idRow)
		}
		if err != nil {
			_ = tx.Rollback()
			return err
		}
		return tx.Commit()
	}
	// Every third row is there already, as a cut-short flush leaves it.
	var some []pendingEntry
	for i := 0; i < len(entries); i += 3 {
		some = append(some, entries[i])
	}
	if err := write(some); err != nil {
		t.Fatal(err)
	}
	if err := write(entries); err != nil {
		t.Fatalf("rows partly there: %v", err)
	}
	for _, q := range []string{"SELECT COUNT(*), COALESCE(SUM(position), 0) FROM stream_index",
		"SELECT COUNT(*), COALESCE(SUM(position), 0) FROM id_index"} {
		var n, sum int64
		if err := s.wdb.QueryRowContext(ctx, q).Scan(&n, &sum); err != nil {
			t.Fatal(err)
		}
		if n != 100 || sum != 100*101/2 {
			t.Errorf("%s: %d rows, positions sum to %d; want 100 and 5050", q, n, sum)
		}
	}
	// Row 70 (in the second statement) now names another position.
	dup := slices.Clone(entries)
	for i := range dup {
		dup[i].position += 1000
		dup[i].version = 2
	}
	dup[70].version = 1
	if err := write(dup); err == nil || !strings.Contains(err.Error(), "stream s-070 version 1: the log holds this version twice (positions 71 and 1071)") {
		t.Fatalf("a row naming another position: %v", err)
	}
}

// mustOpen opens the store at path or fails the test; the caller closes it
// (these tests close and reopen on purpose).
func mustOpen(t *testing.T, path string, opts Options) *Store {
	t.Helper()
	s, err := Open(path, opts)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	return s
}

// TestIDKeyCollision appends two events whose ids share their id_index key
// (same millisecond, same last 16 bits of randomness), each after the
// index holds the other: both are stored, a re-append of either is
// answered with its own event, and its id in another stream is refused.
func TestIDKeyCollision(t *testing.T) {
	var a, b ulid.ULID
	if err := a.SetTime(ulid.Timestamp(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))); err != nil {
		t.Fatal(err)
	}
	b = a
	a[6], b[6] = 1, 2
	a[14], a[15], b[14], b[15] = 7, 9, 7, 9
	if a.String() == b.String() || idKey(a.String()) != idKey(b.String()) {
		t.Fatalf("ids %s and %s, keys %d and %d: want two ids of one key", a, b, idKey(a.String()), idKey(b.String()))
	}
	if idKey("not-a-ulid") == idKey("not-a-ulid2") || idKey(strings.ToLower(a.String())) == idKey(a.String()) {
		t.Fatal("other ids do not hash apart")
	}
	path := filepath.Join(t.TempDir(), "events.db")
	opts := DefaultOptions()
	opts.IndexBatch = 1 // every event reaches id_index at the next commit
	s := mustOpen(t, path, opts)
	defer s.Close()
	ctx := context.Background()
	stored := map[string]eventstore.Event{}
	for i, id := range []string{a.String(), b.String()} {
		d := event()
		d.ID = id
		res, err := s.Append(ctx, fmt.Sprintf("s%d", i), eventstore.NoStream, []eventstore.EventData{d})
		if err != nil {
			t.Fatalf("append %s: %v", id, err)
		}
		stored[id] = res.Events[0]
		// Commits until one has written the event's id_index row (the
		// flush's sort runs on another goroutine).
		for n := 0; ; n++ {
			var rows int
			if err := s.rdb.QueryRowContext(ctx, `SELECT COUNT(*) FROM id_index WHERE position = ?`, res.Events[0].Position).Scan(&rows); err != nil {
				t.Fatal(err)
			}
			if rows == 1 {
				break
			}
			if n == 1000 {
				t.Fatalf("%s not in id_index after %d commits", id, n)
			}
			appendOne(t, s, "pad")
		}
	}
	var rows int
	if err := s.rdb.QueryRowContext(ctx, `SELECT COUNT(*) FROM id_index WHERE key = ?`, idKey(a.String())).Scan(&rows); err != nil || rows != 2 {
		t.Fatalf("%d id_index rows of the key (%v), want 2", rows, err)
	}
	for id, e := range stored {
		res, err := s.Append(ctx, e.Stream, eventstore.NoStream, []eventstore.EventData{e.EventData})
		if err != nil || len(res.Events) != 1 || !reflect.DeepEqual(res.Events[0], e) {
			t.Fatalf("re-append of %s: %+v %v", id, res.Events, err)
		}
		if _, err := s.Append(ctx, "elsewhere", eventstore.Any, []eventstore.EventData{e.EventData}); !errors.Is(err, eventstore.ErrIDReused) {
			t.Fatalf("%s in another stream: %v", id, err)
		}
	}
}
