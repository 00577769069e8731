package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"strconv"
	"sync"

	"github.com/oklog/ulid/v2"

	"github.com/payledger/payledger/eventstore"
	"github.com/payledger/payledger/internal/sqlrows"
)

// The stream index.
//
// Reading a stream needs an index by (stream, version). Kept as a SQLite
// index on the events table of schema 1, it was the writer's largest cost:
// every event inserts into the B-tree page that holds its stream's range,
// so a commit of N events over N accounts dirties N index pages, each
// written to the WAL in full (4 KiB) and again at the checkpoint. The
// log's events/s with the index inline and without it showed the cost
// (docs/performance.md; BenchmarkAppendGroupCommit measures the log's
// events/s).
//
// So the index is kept in two parts. The table stream_index holds (stream,
// version, position) for every event at or below the position recorded in
// meta as indexed_upto. The events after it, the unindexed tail, are indexed
// in memory (streamTail). Once the tail holds Options.IndexBatch events, they
// are sorted by (stream, version) on another goroutine, and the writer then
// inserts them into stream_index in that order, a chunk inside each
// following group-commit transaction, sized to that transaction's own
// events (see flushIndex); the transaction that writes the last chunk also
// moves indexed_upto. A stream with several events in the tail then costs
// one page instead of one per event, and since each chunk is a contiguous
// key range of the sorted set, chunking keeps that locality while no
// transaction carries more than a small multiple of its own work (a whole
// flush in one transaction held it long enough to show as tail latency in
// payledger bench --rate). Until indexed_upto moves, readers ignore the
// rows already written (they read stream_index only at or below
// indexed_upto) and use the in-memory tail. Nothing is lost in a crash:
// the tail is rebuilt on Open by scanning the events after indexed_upto,
// and rows a half-finished flush wrote are recognised when the flush runs
// again.
//
// The id index (id_index: idKey(id) -> position, which idempotent
// re-appends and the refusal of a reused id need) is kept the same way: the
// tail's ids are in memory (streamTail.byID), and each flush also writes
// the same prefix sorted by key into id_index, as many rows per
// transaction. Keys grow with time as ULIDs do, so those rows land at the
// right edge of the table; and an id whose key is larger than every key in
// id_index (the writer keeps the largest, maxKey) cannot be in it, so the
// writer only probes the table for older ids.
//
// Both indexes store integers, not the names: stream_index a stream's
// number (a row of the streams table, assigned when the stream's first
// events are flushed) and id_index a 64-bit key of the id. Schema 4 stored
// the stream name and the id text, which took three fifths of a payment's
// bytes outside its segments (docs/performance.md).
//
// Uniqueness of (stream, version) is decided by the writer, which knows
// each stream's version (it is the only writer: Open takes an exclusive
// lock on the file, see lockFile), and is checked again by the index's
// primary key when the tail is flushed. Uniqueness of ids is decided by the
// writer alone (it looks every new id up), since keys may collide.

// tailEntry locates one event of the unindexed tail of a stream.
type tailEntry struct {
	version, position int64
}

// pendingEntry is one event of the unindexed tail, in log order.
type pendingEntry struct {
	stream, id        string
	version, position int64
	// Set for the rows a flush writes: key is idKey(id) (the sort does
	// it), sid the stream's number (streamNumbers).
	key, sid int64
}

// streamTail is the in-memory part of the stream index: the events after
// upto, per stream in version order. Only the writer goroutine changes it,
// under mu, after a commit; readers copy what they need under the read lock,
// so a reader sees upto and the tail of one instant together.
type streamTail struct {
	mu       sync.RWMutex
	upto     int64 // every event at or below upto is in stream_index
	byStream map[string][]tailEntry
	pending  []pendingEntry // the same entries, in position order
	// byID locates the same events by id. Only the writer reads or changes
	// it (id lookups are the writer's), so it needs no lock.
	byID map[string]int64

	// The flush in progress (writer only, no lock): a prefix of pending
	// sorted by (stream, version) and the same prefix sorted by id, of
	// which the first written entries are committed to stream_index and
	// id_index.
	flushing, flushingIDs []pendingEntry
	written               int
	// sorting, while not nil, delivers the next flush, sorted on another
	// goroutine (writer only, no lock).
	sorting chan sortedFlush
}

// sortedFlush is a prefix of pending sorted for both indexes.
type sortedFlush struct {
	byStream, byID []pendingEntry
}

// sortFlush sorts a copy of entries (a prefix of pending) by (stream,
// version) and by id on another goroutine. In the writer, the two sorts
// of a flush held one transaction long enough to show as a latency spike
// under an open-loop load (payledger bench --rate).
func sortFlush(entries []pendingEntry) chan sortedFlush {
	done := make(chan sortedFlush, 1)
	go func() {
		byID := slices.Clone(entries)
		slices.SortFunc(entries, func(a, b pendingEntry) int {
			return cmp.Or(cmp.Compare(a.stream, b.stream), cmp.Compare(a.version, b.version))
		})
		for i := range byID {
			byID[i].key = idKey(byID[i].id)
		}
		slices.SortFunc(byID, func(a, b pendingEntry) int {
			return cmp.Or(cmp.Compare(a.key, b.key), cmp.Compare(a.position, b.position))
		})
		done <- sortedFlush{byStream: entries, byID: byID}
	}()
	return done
}

func newStreamTail() *streamTail {
	return &streamTail{byStream: make(map[string][]tailEntry), byID: make(map[string]int64)}
}

// lookup returns upto and a copy of the stream's tail, consistent with each
// other: the stream's events at or below upto are in stream_index and those
// after it are in the returned entries.
func (t *streamTail) lookup(stream string) (upto int64, entries []tailEntry) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.upto, slices.Clone(t.byStream[stream])
}

// last returns the stream's newest tail entry. Only the writer calls it, and
// the writer is the only goroutine that changes t, so it needs no lock.
func (t *streamTail) last(stream string) (tailEntry, bool) {
	es := t.byStream[stream]
	if len(es) == 0 {
		return tailEntry{}, false
	}
	return es[len(es)-1], true
}

// commit records a committed transaction: the chunk of the flush it wrote
// (written rows), and, if that finished the flush (flushedUpto > 0), that
// every event up to flushedUpto is now in stream_index; then the
// transaction's own events join the tail.
func (t *streamTail) commit(written int, flushedUpto int64, fresh [][]eventstore.Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.written += written
	if flushedUpto > 0 {
		t.upto = flushedUpto
		t.flushing, t.flushingIDs, t.written = nil, nil, 0
		k, _ := slices.BinarySearchFunc(t.pending, flushedUpto+1, func(e pendingEntry, pos int64) int {
			return cmp.Compare(e.position, pos)
		})
		rest := t.pending[k:]
		t.pending = make([]pendingEntry, 0, max(len(rest), 64))
		t.byStream = make(map[string][]tailEntry, len(t.byStream))
		t.byID = make(map[string]int64, len(rest))
		for _, e := range rest {
			t.add(e)
		}
	}
	for _, events := range fresh {
		for _, e := range events {
			t.add(pendingEntry{stream: e.Stream, id: e.ID, version: e.Version, position: e.Position})
		}
	}
}

// reset replaces the whole tail, as read from the database.
func (t *streamTail) reset(upto int64, entries []pendingEntry) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.upto = upto
	t.pending = t.pending[:0]
	t.byStream = make(map[string][]tailEntry)
	t.byID = make(map[string]int64, len(entries))
	t.flushing, t.flushingIDs, t.written = nil, nil, 0
	t.sorting = nil // its result is of the tail replaced; the goroutine ends alone
	for _, e := range entries {
		t.add(e)
	}
}

// add appends one entry; t.mu must be held.
func (t *streamTail) add(e pendingEntry) {
	t.pending = append(t.pending, e)
	t.byStream[e.stream] = append(t.byStream[e.stream], tailEntry{version: e.version, position: e.position})
	t.byID[e.id] = e.position
}

// size is the number of unindexed events; writer only.
func (t *streamTail) size() int { return len(t.pending) }

// loadTail reads indexed_upto, the events after it (which it makes the
// tail) and the largest indexed id. It runs on Open and after a failed
// transaction.
func (s *Store) loadTail(ctx context.Context) error {
	var v string
	if err := s.wdb.QueryRowContext(ctx, sqlGetUpto).Scan(&v); err != nil {
		return fmt.Errorf("read indexed_upto: %w", err)
	}
	upto, err := strconv.ParseInt(v, 10, 64)
	if err != nil || upto < 0 {
		return fmt.Errorf("read indexed_upto: bad value %q", v)
	}
	var maxKey sql.NullInt64
	if err := s.wdb.QueryRowContext(ctx, sqlMaxID).Scan(&maxKey); err != nil {
		return fmt.Errorf("read the largest indexed id: %w", err)
	}
	s.maxKey = math.MinInt64
	if maxKey.Valid {
		s.maxKey = maxKey.Int64
	}
	st, err := s.wdb.PrepareContext(ctx, sqlSegmentsFrom)
	if err != nil {
		return fmt.Errorf("scan unindexed events: %w", err)
	}
	defer st.Close()
	var entries []pendingEntry
	for after := upto; ; {
		events, err := readSegments(ctx, st, s.dicts, after, math.MaxInt64, eventstore.MaxReadBatch)
		if err != nil {
			return fmt.Errorf("scan unindexed events: %w", err)
		}
		if len(events) == 0 {
			break
		}
		for _, e := range events {
			entries = append(entries, pendingEntry{stream: e.Stream, id: e.ID, version: e.Version, position: e.Position})
		}
		after = events[len(events)-1].Position
	}
	s.tail.reset(upto, entries)
	return nil
}

// flushIndex writes the next chunk of the flush in progress within t. A
// flush starts when the tail has reached IndexBatch events (or, with all,
// when it holds any): its entries are sorted on another goroutine, and the
// transactions that follow write chunks once they are (with all, t waits
// for them). A chunk is at most twice the events t appends itself (at
// least 64, at most indexChunk rows; all of them with all), so a flush
// keeps ahead of the tail while no transaction carries more than a small
// multiple of its own work. With the sort in the writer and fixed
// indexChunk-row chunks, a flush stalled the writer and then made a run of
// transactions slower each, which raised the tail latency under an open
// load (payledger bench --rate 20000); sorting elsewhere and sizing chunks
// to t lowered it for a slightly higher median. The transaction that writes
// the last chunk also moves indexed_upto. The in-memory tail changes only
// once t commits (streamTail.commit).
func (s *Store) flushIndex(ctx context.Context, t *txn, all bool) error {
	tl := s.tail
	if len(tl.flushing) == 0 {
		if tl.sorting == nil {
			if len(tl.pending) == 0 || (!all && len(tl.pending) < s.opts.IndexBatch) {
				return nil
			}
			tl.sorting = sortFlush(slices.Clone(tl.pending))
		}
		var sorted sortedFlush
		if all {
			sorted = <-tl.sorting
		} else {
			select {
			case sorted = <-tl.sorting:
			default:
				return nil // still sorting
			}
		}
		tl.sorting = nil
		tl.flushing, tl.flushingIDs, tl.written = sorted.byStream, sorted.byID, 0
	}
	chunk := tl.flushing[tl.written:]
	if n := min(s.indexChunk, max(minIndexChunk, 2*int(t.events))); !all && len(chunk) > n {
		chunk = chunk[:n]
	}
	ids := tl.flushingIDs[tl.written : tl.written+len(chunk)]
	if err := indexRows(ctx, t, &s.idIns, s.idAtStmt, ids, idRow); err != nil {
		return err
	}
	if len(ids) > 0 {
		t.flushMaxKey = max(t.flushMaxKey, ids[len(ids)-1].key)
	}
	if err := s.streamNumbers(ctx, t, chunk); err != nil {
		return err
	}
	if err := indexRows(ctx, t, &s.idxIns, s.idxGetStmt, chunk, streamRow); err != nil {
		return err
	}
	t.flushWritten = len(chunk)
	if tl.written+len(chunk) < len(tl.flushing) {
		return nil
	}
	upto := tl.pending[len(tl.flushing)-1].position // flushing is a sorted copy of this prefix
	if _, err := t.tx.ExecContext(ctx, sqlSetUpto, strconv.FormatInt(upto, 10)); err != nil {
		return fmt.Errorf("record indexed_upto: %w", err)
	}
	t.flushedUpto = upto
	s.indexFlushes.Add(1)
	return nil
}

// indexRow is how one index stores an event: its table, columns and key
// columns (a prefix of them), its row's values, and, for an error, the
// event's name under that index and what the key is.
type indexRow struct {
	table, cols, key string // comma separated
	nCols, keyCols   int
	values           func(args []any, e pendingEntry) []any // appends the row's values to args
	name             func(e pendingEntry) string
	unit             string
}

var (
	streamRow = indexRow{
		table: "stream_index", cols: "stream, version, position", key: "stream, version", nCols: 3, keyCols: 2,
		values: func(args []any, e pendingEntry) []any { return append(args, e.sid, e.version, e.position) },
		name:   func(e pendingEntry) string { return fmt.Sprintf("stream %s version %d", e.stream, e.version) },
		unit:   "version",
	}
	// idRow's key is the whole row: ids whose keys collide each have a row.
	idRow = indexRow{
		table: "id_index", cols: "key, position", key: "key, position", nCols: 2, keyCols: 2,
		values: func(args []any, e pendingEntry) []any { return append(args, e.key, e.position) },
		name:   func(e pendingEntry) string { return "event id " + e.id },
		unit:   "id",
	}
)

// insertSQL is the insert of rows index rows that does nothing for a row
// whose key is already there. OR ROLLBACK: any other failure fails the
// whole transaction, as a failed flush does anyway (the writer abandons
// it); unlike the default ABORT it spares SQLite a statement journal for
// every multi-row statement (in long payledger bench runs that journal
// spilled to a temporary file).
func (row indexRow) insertSQL(rows int) string {
	return "INSERT OR ROLLBACK INTO " + row.table + " (" + row.cols + ") VALUES " +
		sqlrows.Values(rows, row.nCols) + " ON CONFLICT (" + row.key + ") DO NOTHING"
}

// idKey is an event id's key in id_index: for a ULID (as ids are), its 48
// bits of milliseconds and the last 16 bits of its randomness (which
// differ between the ids a monotonic source makes in one millisecond), so
// that keys grow with time as ids do; for any other id, a hash. Keys may
// collide: a lookup reads every row of a key and compares the events' ids.
func idKey(id string) int64 {
	if len(id) == ulid.EncodedSize {
		if u, err := ulid.ParseStrict(id); err == nil && u.String() == id {
			return int64(u.Time())<<16 | int64(binary.BigEndian.Uint16(u[14:]))
		}
	}
	h := fnv.New64a()
	h.Write([]byte(id))
	return int64(h.Sum64())
}

// streamNumbers sets each entry's stream number (sid), from the writer's
// cache, the streams table, or a new row of it inserted in t (cached once
// t commits).
func (s *Store) streamNumbers(ctx context.Context, t *txn, entries []pendingEntry) error {
	var get, ins *sql.Stmt
	defer func() {
		for _, st := range []*sql.Stmt{get, ins} {
			if st != nil {
				_ = st.Close()
			}
		}
	}()
	for i := range entries {
		e := &entries[i]
		if i > 0 && entries[i-1].stream == e.stream { // sorted by stream
			e.sid = entries[i-1].sid
			continue
		}
		if id, ok := s.streamIDs[e.stream]; ok {
			e.sid = id
			continue
		}
		if id, ok := t.newStreams[e.stream]; ok {
			e.sid = id
			continue
		}
		if get == nil {
			get, ins = t.tx.StmtContext(ctx, s.streamIDStmt), t.tx.StmtContext(ctx, s.newStreamStmt)
		}
		err := get.QueryRowContext(ctx, e.stream).Scan(&e.sid)
		switch {
		case err == nil:
			if len(s.streamIDs) >= maxCachedStreams {
				clear(s.streamIDs)
			}
			s.streamIDs[e.stream] = e.sid // committed before t began
		case errors.Is(err, sql.ErrNoRows):
			res, err := ins.ExecContext(ctx, e.stream)
			if err == nil {
				e.sid, err = res.LastInsertId()
			}
			if err != nil {
				return fmt.Errorf("number stream %s: %w", e.stream, err)
			}
			if t.newStreams == nil {
				t.newStreams = make(map[string]int64)
			}
			t.newStreams[e.stream] = e.sid
		default:
			return fmt.Errorf("number stream %s: %w", e.stream, err)
		}
	}
	return nil
}

// indexRows writes one index row per entry within t, through ins (the
// row's inserts, see sqlrows). A row that is already there must name the
// same position (get reads it by key): it was written by a flush that a
// crash or a failed transaction cut short; one naming another position
// means the log holds the key twice, and stops the flush. The rows of a
// statement that inserted fewer rows than it was given are checked one by
// one.
func indexRows(ctx context.Context, t *txn, ins *sqlrows.Statements, get *sql.Stmt, entries []pendingEntry, row indexRow) error {
	return ins.Exec(ctx, t.tx, len(entries), func(args []any, i int) []any {
		return row.values(args, entries[i])
	}, func(first, count int, res sql.Result, err error) error {
		var n int64
		if err == nil {
			n, err = res.RowsAffected()
		}
		if err != nil {
			return fmt.Errorf("index %s (and %d after it): %w", row.name(entries[first]), count-1, err)
		}
		if int(n) == count {
			return nil
		}
		return checkIndexRows(ctx, t, get, entries[first:first+count], row)
	})
}

// checkIndexRows checks that each entry's index row names its position
// (get takes the row's key columns).
func checkIndexRows(ctx context.Context, t *txn, get *sql.Stmt, entries []pendingEntry, row indexRow) error {
	get = t.tx.StmtContext(ctx, get)
	defer get.Close()
	var key []any
	for _, e := range entries {
		key = row.values(key[:0], e)
		var pos int64
		err := get.QueryRowContext(ctx, key[:row.keyCols]...).Scan(&pos)
		if err == nil && pos != e.position {
			err = fmt.Errorf("the log holds this %s twice (positions %d and %d)", row.unit, pos, e.position)
		}
		if err != nil {
			return fmt.Errorf("index %s: %w", row.name(e), err)
		}
	}
	return nil
}

// flushOnClose indexes whatever is left in the tail when the writer stops,
// so that the next Open has nothing to scan: the rest of a flush in
// progress, then the events after it.
func (s *Store) flushOnClose() error {
	for range 2 {
		if s.stale || s.noCloseFlush || s.tail.size() == 0 {
			return nil
		}
		ctx := context.Background()
		tx, err := s.wdb.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("flush stream index: begin: %w", err)
		}
		t := &txn{tx: tx, flushMaxKey: math.MinInt64}
		if err := s.flushIndex(ctx, t, true); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("flush stream index: %w", err)
		}
		if err := tx.Commit(); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("flush stream index: commit: %w", err)
		}
		s.tail.commit(t.flushWritten, t.flushedUpto, nil)
	}
	return nil
}

// streamHead is the writer's view of a stream's last event when it is not
// cached: the newest tail entry, else the newest indexed one.
func (s *Store) streamHead(ctx context.Context, t *txn, stream string) (streamState, error) {
	var st streamState
	var pos int64
	if last, ok := s.tail.last(stream); ok {
		st.version, pos = last.version, last.position
	} else {
		err := t.indexTail.QueryRowContext(ctx, stream).Scan(&st.version, &pos)
		if errors.Is(err, sql.ErrNoRows) {
			return streamState{}, nil
		}
		if err != nil {
			return st, fmt.Errorf("load stream %s: %w", stream, err)
		}
	}
	e, err := loadEvent(ctx, t.segAt, s.dicts, pos)
	if err != nil {
		return st, fmt.Errorf("load stream %s: %w", stream, err)
	}
	if e.Stream != stream || e.Version != st.version {
		return st, fmt.Errorf("load stream %s: position %d holds %s version %d, not version %d",
			stream, pos, e.Stream, e.Version, st.version)
	}
	st.hash = e.Hash
	return st, nil
}

// readTail reads the events of tail entries by position, in the given order,
// keeping those keep accepts, until out holds limit events.
func (s *Store) readTail(ctx context.Context, op string, out []eventstore.Event, entries []tailEntry, limit int, keep func(tailEntry) bool) ([]eventstore.Event, error) {
	var pos []int64
	for _, te := range entries {
		if len(out)+len(pos) >= limit {
			break
		}
		if keep(te) {
			pos = append(pos, te.position)
		}
	}
	if len(pos) == 0 {
		return out, nil
	}
	out, err := loadEvents(ctx, s.segAtStmt, s.dicts, pos, out)
	if err != nil {
		return nil, s.readErr(op, err)
	}
	return out, nil
}
