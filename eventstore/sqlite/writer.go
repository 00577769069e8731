package sqlite

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/payledger/payledger/eventstore"
)

// The writer pipeline.
//
// With group commit on, the writer connection runs at synchronous=NORMAL
// and the writer makes each commit durable itself: a committed transaction
// becomes a flight, which the syncer goroutine fsyncs (the WAL file) while
// the writer already applies the requests that keep arriving into the next
// transaction. That next transaction commits once the flight has landed, so
// at most one commit is ever waiting for its fsync, and the writer's time
// per cycle is the larger of its own work and one fsync instead of their
// sum (before, in payledger bench the writer spent a large share of its
// time blocked in fsync; the figure is in docs/performance.md).
//
// Nothing of a flight is visible before its fsync returns: the head, the
// live buffer, the in-memory index tail (and so every stream read) and the
// answers to its requests all move in land, after the fsync. Reads through
// SQL are bounded by the published head (readSegments' upto). Only the
// writer itself sees a flight early, as it must to decide the next
// transaction: its streams cache (versions and hashes) and the flight's ids
// (findID).
//
// A failed fsync leaves the log's durability unknown, so the store stops
// writing: the flight's requests and every later append fail with the
// error (as PostgreSQL does), and reopening the store recovers whatever
// SQLite finds durable.
//
// Without group commit (the bench's baseline) the connection runs at
// synchronous=FULL and every commit lands at once: one transaction and one
// fsync per append.

// open is the transaction being filled: its requests, applied in order.
type open struct {
	t      *txn
	batch  []*appendReq
	events int
}

// flight is a committed transaction waiting for its fsync.
type flight struct {
	t     *txn
	batch []*appendReq
	done  chan error // the syncer's result
}

// run is the writer goroutine. It returns once Close has closed the queue
// and every request taken has been answered.
func (s *Store) run() {
	defer close(s.writerDone)
	reqs := s.reqs
	var cur *open
	var fl *flight
	var carry *appendReq // taken, but too large for the open transaction
	for {
		if cur != nil && fl == nil {
			fl = s.commit(cur)
			cur = nil
			continue
		}
		if carry != nil && cur == nil && (fl == nil || !s.stale) {
			cur, carry = s.take(nil, carry), nil
			continue
		}
		if reqs == nil && cur == nil && fl == nil {
			s.closeFlushErr = s.flushOnClose()
			return
		}
		in := reqs
		switch {
		case carry != nil:
			in = nil // the carried request goes first, into the next transaction
		case cur != nil && (cur.events >= s.opts.MaxBatchEvents || len(cur.batch) >= maxBatchRequests):
			in = nil // full: wait for the flight, then commit
		case cur == nil && fl != nil && s.stale:
			in = nil // reload only once the flight has landed
		}
		var landed chan error
		if fl != nil {
			landed = fl.done
		}
		select {
		case r, ok := <-in:
			if !ok {
				reqs = nil
				continue
			}
			if cur != nil && cur.events+len(r.events) > s.opts.MaxBatchEvents {
				carry = r
				continue
			}
			cur = s.take(cur, r)
			if !s.opts.GroupCommit && cur != nil {
				fl = s.commit(cur) // lands at once: synchronous=FULL
				cur = nil
			}
		case err := <-landed:
			s.land(fl, err)
			fl = nil
		}
	}
}

// take applies r to the open transaction, beginning one if needed, and
// returns it (nil when r was answered without one, or the transaction
// failed).
func (s *Store) take(cur *open, r *appendReq) *open {
	if err := r.ctx.Err(); err != nil {
		r.err, r.skipped = err, true // the caller left before anything was written
		if cur == nil {
			close(r.done)
			return nil
		}
		cur.batch = append(cur.batch, r)
		return cur
	}
	if s.broken != nil {
		r.err = s.broken
		close(r.done)
		return cur
	}
	ctx := context.Background() // a caller leaving must not abort the others' transaction
	if cur == nil {
		t, err := s.begin(ctx)
		if err != nil {
			r.err = mapStorageError(err)
			close(r.done)
			return nil
		}
		cur = &open{t: t, batch: make([]*appendReq, 0, 64)}
	}
	cur.batch = append(cur.batch, r)
	cur.events += len(r.events)
	if err := s.apply(ctx, cur.t, r); err != nil {
		s.abandon(cur.t, cur.batch, err)
		return nil
	}
	return cur
}

// begin opens a write transaction, reloading the writer's state first if a
// failure left it stale.
func (s *Store) begin(ctx context.Context) (*txn, error) {
	if s.stale {
		if err := s.reload(ctx); err != nil {
			return nil, fmt.Errorf("reload writer state: %w", err)
		}
	}
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		s.stale = true
		return nil, fmt.Errorf("begin: %w", err)
	}
	s.seg.reset()
	head := s.head.Load()
	if s.flying != nil {
		head = s.flying.t.head // committed, not yet published
	}
	t := &txn{
		tx:          tx,
		segIns:      tx.StmtContext(ctx, s.segInsStmt),
		segAt:       tx.StmtContext(ctx, s.segAtWStmt),
		idGet:       tx.StmtContext(ctx, s.idGetStmt),
		indexTail:   tx.StmtContext(ctx, s.indexTailStmt),
		overlay:     make(map[string]streamState),
		flushMaxKey: math.MinInt64,
		ids:         make(map[string]eventstore.Event),
		head:        head,
		seg:         &s.seg,
	}
	if t.dict, err = s.txDict(ctx, t); err != nil {
		_ = tx.Rollback()
		s.stale = true
		return nil, err
	}
	return t, nil
}

// abandon rolls t back and fails every request of batch not answered yet:
// the transaction itself failed, so the writer's cached state may be ahead
// of the file and is reloaded before the next one.
func (s *Store) abandon(t *txn, batch []*appendReq, err error) {
	_ = t.tx.Rollback()
	s.stale = true
	err = mapStorageError(MapRetentionError(err))
	for _, r := range batch {
		if !r.skipped {
			r.res, r.err = eventstore.AppendResult{}, err
		}
		close(r.done)
	}
}

// commit writes the open transaction's last segment and its share of an
// index flush, and commits it. It returns the flight to wait for, or nil
// when there is none (nothing to commit, or the commit failed; the
// requests are then answered). Without group commit the flight has landed
// already and nil is returned.
func (s *Store) commit(cur *open) *flight {
	t := cur.t
	ctx := context.Background()
	if s.broken != nil { // an fsync failed while this transaction was open
		s.abandon(t, cur.batch, s.broken)
		return nil
	}
	if err := s.flushIndex(ctx, t, false); err != nil {
		s.abandon(t, cur.batch, err)
		return nil
	}
	if err := t.writeSegment(ctx); err != nil {
		s.abandon(t, cur.batch, err)
		return nil
	}
	if t.appends == 0 && t.flushWritten == 0 {
		// Only conflicts and idempotent re-appends of committed events:
		// nothing to make durable.
		_ = t.tx.Rollback()
		for _, r := range cur.batch {
			close(r.done)
		}
		return nil
	}
	if s.beforeCommit != nil {
		if err := s.beforeCommit(); err != nil {
			s.abandon(t, cur.batch, fmt.Errorf("commit: %w", err))
			return nil
		}
	}
	var start time.Time
	observe := !s.opts.GroupCommit && s.opts.ObserveSync != nil // the commit fsyncs (synchronous=FULL)
	if observe {
		start = time.Now()
	}
	if err := t.tx.Commit(); err != nil {
		s.abandon(t, cur.batch, fmt.Errorf("commit: %w", err))
		return nil
	}
	if observe {
		s.opts.ObserveSync(time.Since(start))
	}
	for stream, st := range t.overlay {
		s.streams[stream] = st
	}
	s.dict = t.dict
	fl := &flight{t: t, batch: cur.batch, done: make(chan error, 1)}
	if !s.opts.GroupCommit {
		s.land(fl, nil)
		return nil
	}
	s.flying = fl
	s.syncs <- fl
	return fl
}

// land makes a flight visible and answers its requests once its fsync
// returned err.
func (s *Store) land(fl *flight, err error) {
	s.flying = nil
	t := fl.t
	defer func() {
		for _, r := range fl.batch {
			close(r.done)
		}
	}()
	if err != nil {
		s.broken = fmt.Errorf("%w: the log's durability is unknown after a failed fsync; restart the server once the disk is healthy: %w", eventstore.ErrUnavailable, err)
		for _, r := range fl.batch {
			if !r.skipped && r.err == nil {
				r.res, r.err = eventstore.AppendResult{}, s.broken
			}
		}
		return
	}
	if len(s.streams) > maxCachedStreams {
		s.streams = make(map[string]streamState)
	}
	s.transactions.Add(1)
	s.appends.Add(t.appends)
	s.events.Add(t.events)
	s.tail.commit(t.flushWritten, t.flushedUpto, t.fresh)
	s.maxKey = max(s.maxKey, t.flushMaxKey)
	for name, id := range t.newStreams {
		if len(s.streamIDs) >= maxCachedStreams {
			clear(s.streamIDs)
		}
		s.streamIDs[name] = id
	}
	if t.appends == 0 {
		return // only the index was written
	}
	s.live.push(t.fresh)
	s.publish(t.head)
}

// syncer fsyncs the WAL file for each flight the writer sends, until the
// channel is closed.
func (s *Store) syncer() {
	defer close(s.syncerDone)
	var w walFile
	defer w.close()
	wal := s.path + "-wal"
	sync := func() error { return w.sync(wal) }
	observe := s.opts.ObserveSync
	for fl := range s.syncs {
		var start time.Time
		if observe != nil {
			start = time.Now()
		}
		var err error
		if s.syncHook != nil {
			err = s.syncHook(sync)
		} else {
			err = sync()
		}
		if observe != nil {
			// Before the flight lands, so that an acknowledged append has
			// been counted.
			observe(time.Since(start))
		}
		fl.done <- err
	}
}

// walFile is the syncer's handle on the WAL file. SQLite deletes and
// recreates the file when the last connection to the database closes, so
// every sync first checks that the handle still names the file at path and
// reopens it (and syncs the directory, which holds the new name) if not.
type walFile struct {
	f  *os.File
	fi os.FileInfo
}

func (w *walFile) sync(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if w.f == nil || !os.SameFile(fi, w.fi) {
		w.close()
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("sync %s: %w", path, err)
		}
		w.f, w.fi = f, fi
		if err := syncDir(filepath.Dir(path)); err != nil {
			return fmt.Errorf("sync the directory of %s: %w", path, err)
		}
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return nil
}

func (w *walFile) close() {
	if w.f != nil {
		_ = w.f.Close()
		w.f = nil
	}
}

// mapStorageError marks an error of the storage as eventstore.ErrUnavailable.
func mapStorageError(err error) error { return eventstore.MarkStorageError(err) }
