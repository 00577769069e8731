package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/oklog/ulid/v2"

	"github.com/payledger/payledger/eventstore"
	"github.com/payledger/payledger/eventstore/storetest"
)

// factory returns a storetest.Factory opening DIR/events.db with opts.
func factory(opts Options) storetest.Factory {
	return func(t testing.TB, dir string) eventstore.Store {
		t.Helper()
		s, err := Open(filepath.Join(dir, "events.db"), opts)
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		return s
	}
}

// tamper opens the database file behind the store's back and tries to
// delete and to rewrite events; both must hit the retention triggers.
func tamper(t testing.TB, s eventstore.Store) error {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+s.(*Store).Path()+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return err
	}
	defer db.Close()
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, "DELETE FROM segments"); err == nil {
		return errors.New("DELETE FROM segments succeeded")
	} else if err = MapRetentionError(err); !errors.Is(err, eventstore.ErrDeleteForbidden) {
		return fmt.Errorf("delete: %w", err)
	}
	// The indexes may still be empty (their tail is in memory); a DELETE
	// that finds rows must fail.
	for _, table := range []string{"stream_index", "id_index"} {
		if res, err := db.ExecContext(ctx, "DELETE FROM "+table); err == nil {
			if n, _ := res.RowsAffected(); n > 0 {
				return fmt.Errorf("DELETE FROM %s deleted %d rows", table, n)
			}
		} else if err = MapRetentionError(err); !errors.Is(err, eventstore.ErrDeleteForbidden) {
			return fmt.Errorf("delete %s: %w", table, err)
		}
	}
	_, err = db.ExecContext(ctx, "UPDATE segments SET events = x'01017b7d' WHERE first_position = 1")
	if err == nil {
		return errors.New("UPDATE segments succeeded")
	}
	return MapRetentionError(err)
}

func TestConformance(t *testing.T) {
	storetest.RunWithOptions(t, factory(DefaultOptions()), storetest.Options{Tamper: tamper})
}

func TestConformanceNoGroupCommit(t *testing.T) {
	opts := DefaultOptions()
	opts.GroupCommit = false
	storetest.RunWithOptions(t, factory(opts), storetest.Options{Tamper: tamper})
}

// TestConformanceTinyBatches forces many small transactions and a request
// larger than MaxBatchEvents, to exercise the batch boundaries.
func TestConformanceTinyBatches(t *testing.T) {
	opts := DefaultOptions()
	opts.MaxBatchEvents = 3
	opts.QueueSize = 2
	storetest.Run(t, factory(opts))
}

// TestConformanceTinyIndexBatch flushes the stream index every few events,
// two rows per transaction, so every case reads streams split between
// stream_index, a half-written flush and the tail.
func TestConformanceTinyIndexBatch(t *testing.T) {
	opts := DefaultOptions()
	opts.IndexBatch = 5
	open := factory(opts)
	chunked := func(t testing.TB, dir string) eventstore.Store {
		s := open(t, dir)
		s.(*Store).indexChunk = 2 // flushes span several transactions
		return s
	}
	storetest.RunWithOptions(t, chunked, storetest.Options{Tamper: tamper})
}

// TestConformanceDictionaries trains a dictionary after a few events and
// a new one every few more, so every case reads segments compressed with
// several dictionaries, and with none.
func TestConformanceDictionaries(t *testing.T) {
	open := factory(DefaultOptions())
	storetest.RunWithOptions(t, func(t testing.TB, dir string) eventstore.Store {
		s := open(t, dir)
		s.(*Store).dictTrain, s.(*Store).dictRetrain = 3, 7
		return s
	}, storetest.Options{Tamper: tamper})
}

func openTest(t *testing.T, opts Options) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "events.db"), opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func event() eventstore.EventData {
	return eventstore.EventData{ID: ulid.Make().String(), Type: "T", SchemaVersion: 1, Payload: []byte(`{}`)}
}

// TestPragmas checks each connection's settings: the pipelined writer
// (group commit) commits at synchronous=NORMAL and fsyncs the WAL itself,
// the baseline writer commits at FULL.
func TestPragmas(t *testing.T) {
	s := openTest(t, DefaultOptions())
	ctx := context.Background()
	noGroup := DefaultOptions()
	noGroup.GroupCommit = false
	baseline := openTest(t, noGroup)
	for name, c := range map[string]struct {
		db   *sql.DB
		sync int
	}{"writer": {s.wdb, 1}, "reader": {s.rdb, 2}, "baseline writer": {baseline.wdb, 2}} {
		db := c.db
		var mode string
		var sync, busy int
		if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
			t.Fatal(err)
		}
		if err := db.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&sync); err != nil {
			t.Fatal(err)
		}
		if err := db.QueryRowContext(ctx, "PRAGMA busy_timeout").Scan(&busy); err != nil {
			t.Fatal(err)
		}
		if mode != "wal" || sync != c.sync || busy != 10000 {
			t.Errorf("%s: journal_mode=%s synchronous=%d busy_timeout=%d, want wal, %d, 10000", name, mode, sync, busy, c.sync)
		}
	}
	if n := s.wdb.Stats().MaxOpenConnections; n != 1 {
		t.Errorf("writer pool allows %d connections, want 1", n)
	}
	var ckpt int
	if err := s.wdb.QueryRowContext(ctx, "PRAGMA wal_autocheckpoint").Scan(&ckpt); err != nil {
		t.Fatal(err)
	}
	if ckpt != walAutoCheckpoint {
		t.Errorf("writer wal_autocheckpoint=%d, want %d", ckpt, walAutoCheckpoint)
	}
	var page int
	if err := s.rdb.QueryRowContext(ctx, "PRAGMA page_size").Scan(&page); err != nil {
		t.Fatal(err)
	}
	if page != pageSize {
		t.Errorf("new log page_size=%d, want %d", page, pageSize)
	}
	var mmap int64
	if err := s.rdb.QueryRowContext(ctx, "PRAGMA mmap_size").Scan(&mmap); err != nil {
		t.Fatal(err)
	}
	if mmap != readerMmapBytes {
		t.Errorf("reader mmap_size=%d, want %d", mmap, readerMmapBytes)
	}
	// Readers cannot write.
	if _, err := s.rdb.ExecContext(ctx, "CREATE TABLE x (y)"); err == nil {
		t.Error("reader pool accepted a write")
	}
}

func TestRetentionErrorMapping(t *testing.T) {
	s := openTest(t, DefaultOptions())
	if _, err := s.Append(context.Background(), "a", eventstore.NoStream, []eventstore.EventData{event()}); err != nil {
		t.Fatal(err)
	}
	if err := tamper(t, s); !errors.Is(err, eventstore.ErrDeleteForbidden) {
		t.Fatalf("tamper: %v", err)
	}
	if MapRetentionError(nil) != nil {
		t.Error("MapRetentionError(nil) != nil")
	}
	other := errors.New("disk full")
	if MapRetentionError(other) != other {
		t.Error("MapRetentionError changed an unrelated error")
	}
}

// TestGroupCommitBatches shows that concurrent appends share transactions
// while each still gets its own version check.
func TestGroupCommitBatches(t *testing.T) {
	const writers, perWriter = 32, 20
	for _, group := range []bool{true, false} {
		t.Run(fmt.Sprintf("GroupCommit=%v", group), func(t *testing.T) {
			opts := DefaultOptions()
			opts.GroupCommit = group
			s := openTest(t, opts)
			var wg sync.WaitGroup
			for w := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					stream := fmt.Sprintf("s-%d", w)
					for i := range perWriter {
						if _, err := s.Append(context.Background(), stream, int64(i), []eventstore.EventData{event()}); err != nil {
							t.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			st := s.Stats()
			t.Logf("%+v", st)
			if st.Appends != writers*perWriter || st.Events != writers*perWriter {
				t.Fatalf("stats %+v, want %d appends and events", st, writers*perWriter)
			}
			if group && st.Transactions*4 > st.Appends {
				t.Errorf("group commit used %d transactions for %d appends, want at most a quarter", st.Transactions, st.Appends)
			}
			if !group && st.Transactions != st.Appends {
				t.Errorf("without group commit %d transactions for %d appends, want one each", st.Transactions, st.Appends)
			}
		})
	}
}

// TestBatchIsolation puts conflicting, idempotent and fresh requests for
// the same stream in one transaction: each must be judged after the ones
// before it, and a conflict must not fail the others.
func TestBatchIsolation(t *testing.T) {
	s := openTest(t, DefaultOptions())
	a, b, c := event(), event(), event()
	reqs := []*appendReq{
		{stream: "x", expected: 0, events: []eventstore.EventData{a}},
		{stream: "x", expected: 0, events: []eventstore.EventData{event()}}, // conflict
		{stream: "x", expected: 0, events: []eventstore.EventData{a}},       // idempotent, pending
		{stream: "x", expected: 1, events: []eventstore.EventData{b, c}},
		{stream: "y", expected: eventstore.Any, events: []eventstore.EventData{b}}, // id reused
	}
	for _, r := range reqs {
		r.ctx = context.Background()
		r.done = make(chan struct{})
	}
	s.commitBatch(reqs)
	if reqs[0].err != nil || reqs[0].res.LastVersion() != 1 {
		t.Fatalf("first: %v %+v", reqs[0].err, reqs[0].res)
	}
	if !errors.Is(reqs[1].err, eventstore.ErrVersionConflict) {
		t.Fatalf("second: %v", reqs[1].err)
	}
	if reqs[2].err != nil || reqs[2].res.Events[0].Position != reqs[0].res.Events[0].Position {
		t.Fatalf("third: %v %+v", reqs[2].err, reqs[2].res)
	}
	if reqs[3].err != nil || reqs[3].res.LastVersion() != 3 || reqs[3].res.Events[0].PrevHash != reqs[0].res.Events[0].Hash {
		t.Fatalf("fourth: %v %+v", reqs[3].err, reqs[3].res)
	}
	if !errors.Is(reqs[4].err, eventstore.ErrIDReused) {
		t.Fatalf("fifth: %v", reqs[4].err)
	}
	if st := s.Stats(); st.Transactions != 1 || st.Events != 3 {
		t.Fatalf("stats %+v, want 1 transaction and 3 events", st)
	}
	if h, _ := s.Head(context.Background()); h != 3 {
		t.Fatalf("head %d, want 3", h)
	}
}

// TestCanceledBeforeWrite: a request whose caller left before the writer got
// to it is not written.
func TestCanceledBeforeWrite(t *testing.T) {
	s := openTest(t, DefaultOptions())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := &appendReq{ctx: ctx, stream: "x", expected: eventstore.Any, events: []eventstore.EventData{event()}, done: make(chan struct{})}
	s.commitBatch([]*appendReq{r})
	if !errors.Is(r.err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", r.err)
	}
	if v, _ := s.StreamVersion(context.Background(), "x"); v != 0 {
		t.Fatalf("stream version %d, want 0", v)
	}
	if _, err := s.Append(ctx, "x", eventstore.Any, []eventstore.EventData{event()}); !errors.Is(err, context.Canceled) {
		t.Fatalf("append with canceled ctx: %v", err)
	}
}

// TestFailedTransactionResetsState makes a batch fail after a request was
// applied, and checks no phantom version survives in the writer's cache.
func TestFailedTransactionResetsState(t *testing.T) {
	s := openTest(t, DefaultOptions())
	ctx := context.Background()
	if _, err := s.Append(ctx, "x", eventstore.NoStream, []eventstore.EventData{event()}); err != nil {
		t.Fatal(err)
	}
	// Fail the commit as a full disk would, after both requests were
	// applied inside the transaction.
	s.beforeCommit = func() error { return errors.New("disk full") }
	reqs := []*appendReq{
		{stream: "y", expected: 0, events: []eventstore.EventData{event()}},
		{stream: "x", expected: 1, events: []eventstore.EventData{event()}},
	}
	for _, r := range reqs {
		r.ctx = ctx
		r.done = make(chan struct{})
	}
	s.commitBatch(reqs)
	for i, r := range reqs {
		if r.err == nil {
			t.Fatalf("request %d succeeded in a failed batch", i)
		}
	}
	if !s.stale {
		t.Fatal("writer state not marked stale")
	}
	s.beforeCommit = nil
	// y's append was rolled back: it must start at version 1 again, and x
	// continues at 2.
	r, err := s.Append(ctx, "y", eventstore.NoStream, []eventstore.EventData{event()})
	if err != nil || r.LastVersion() != 1 || r.LastPosition() != 2 {
		t.Fatalf("y after failed batch: %v %+v", err, r)
	}
	r, err = s.Append(ctx, "x", 1, []eventstore.EventData{event()})
	if err != nil || r.LastVersion() != 2 || r.LastPosition() != 3 {
		t.Fatalf("x after failed batch: %v %+v", err, r)
	}
	events, err := s.ReadStream(ctx, "x", 1, 10)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := eventstore.VerifyChain([32]byte{}, events); err != nil {
		t.Fatal(err)
	}
}

// TestCloseDrainsQueue: appends queued when Close starts are still
// committed (or refused with ErrClosed), never lost after an ack.
func TestCloseDrainsQueue(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	s, err := Open(path, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	const n = 64
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := map[string]bool{}
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e := event()
			_, err := s.Append(context.Background(), fmt.Sprintf("s-%d", i), eventstore.NoStream, []eventstore.EventData{e})
			switch {
			case err == nil:
				mu.Lock()
				acked[e.ID] = true
				mu.Unlock()
			case !errors.Is(err, eventstore.ErrClosed):
				t.Errorf("append: %v", err)
			}
		}()
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	s, err = Open(path, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	events, err := s.ReadAll(context.Background(), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]bool{}
	for _, e := range events {
		stored[e.ID] = true
	}
	for id := range acked {
		if !stored[id] {
			t.Errorf("acknowledged event %s lost", id)
		}
	}
	if len(stored) != len(acked) {
		t.Errorf("%d events stored, %d acknowledged", len(stored), len(acked))
	}
}

func TestOpenRejectsBadPath(t *testing.T) {
	if _, err := Open(filepath.Join(t.TempDir(), "missing-dir", "events.db"), DefaultOptions()); err == nil {
		t.Fatal("open in a missing directory succeeded")
	}
}

// commitBatch applies reqs in one transaction and lands it, as the writer
// would, from the test goroutine while the writer goroutine is idle.
func (s *Store) commitBatch(reqs []*appendReq) {
	var cur *open
	for _, r := range reqs {
		cur = s.take(cur, r)
	}
	if cur == nil {
		return
	}
	if fl := s.commit(cur); fl != nil {
		s.land(fl, <-fl.done)
	}
}
