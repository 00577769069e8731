package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/payledger/payledger/eventstore"
)

// The writer.
//
// One goroutine per Store takes the queued appends, as many as are waiting
// (bounded by MaxBatchEvents and MaxBatchRequests), into one transaction:
//
//  1. pg_advisory_xact_lock(key): one lock per schema, so every writer of
//     this log, in any process, assigns positions one transaction at a
//     time. It is released only after the commit has made the rows
//     visible, so the next writer's max(position) sees them and no
//     position can become visible before a smaller one.
//  2. The head (max(position)), the versions and last hashes of the
//     batch's streams and the rows of any id the batch carries are read
//     under the lock, so no state is cached between transactions and
//     other processes writing the same log are seen.
//     With Options.Exclusive or Shared, the lease's epoch is read there
//     too, and a Store whose lease another has taken fails the whole batch.
//  3. Each request is checked against its stream's expected version and
//     the stored ids on its own; a refused request is answered alone and
//     adds no row. The others' rows go in by COPY, a NOTIFY carrying the
//     new head is queued (PostgreSQL delivers it at commit), and the
//     transaction commits at the server's synchronous_commit (on by
//     default: the commit is durable before it is acknowledged).
//
// A failed transaction fails the requests that had rows in it; nothing of
// them committed, or (a commit whose answer was lost) a retry with the
// same ids is answered idempotently.

// appendReq is one Append call travelling to the writer goroutine.
type appendReq struct {
	ctx      context.Context
	stream   string
	expected int64
	events   []eventstore.EventData
	conds    []eventstore.Condition

	// Set by the writer before it closes done.
	wrote bool // the answer depends on the transaction committing
	res   eventstore.AppendResult
	err   error
	done  chan struct{}
}

// streamState is a stream's version and last hash as the transaction sees
// them.
type streamState struct {
	version int64
	hash    [32]byte
}

// txn is what one transaction has read and decided so far.
type txn struct {
	head    int64
	streams map[string]streamState      // read under the lock, then moved by the batch's appends
	stored  map[string]eventstore.Event // stored events of the batch's ids
	ids     map[string]eventstore.Event // events appended in this transaction, by id
	rows    [][]any
	events  int64
	appends int64
}

// Append implements eventstore.Store. The request is validated, queued for
// the writer (waiting for room while ctx allows) and then awaited: once
// queued, Append returns only with the writer's answer, so an acknowledged
// append is committed and durable.
func (s *Store) Append(ctx context.Context, stream string, expected int64, events []eventstore.EventData) (eventstore.AppendResult, error) {
	return s.AppendIf(ctx, stream, expected, events, nil)
}

// AppendIf implements eventstore.ConditionalStore: the conditions'
// streams are read under the position lock with the batch's own, so
// every writer of the log, in any process, sees them in commit order.
func (s *Store) AppendIf(ctx context.Context, stream string, expected int64, events []eventstore.EventData, conds []eventstore.Condition) (eventstore.AppendResult, error) {
	if err := eventstore.ValidateAppend(stream, expected, events); err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("append %s: %w", stream, err)
	}
	if err := eventstore.ValidateConditions(stream, conds); err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("append %s: %w", stream, err)
	}
	for _, c := range conds {
		if !utf8.ValidString(c.Stream) || strings.ContainsRune(c.Stream, 0) {
			return eventstore.AppendResult{}, fmt.Errorf("append %s: %w: a condition's stream name is not UTF-8 text without NUL bytes", stream, eventstore.ErrInvalidAppend)
		}
	}
	if err := checkText(stream, events); err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("append %s: %w", stream, err)
	}
	if err := ctx.Err(); err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("append %s: %w", stream, err)
	}
	r := &appendReq{ctx: ctx, stream: stream, expected: expected, events: events, conds: conds, done: make(chan struct{})}
	s.sendMu.RLock()
	if s.closed {
		s.sendMu.RUnlock()
		return eventstore.AppendResult{}, fmt.Errorf("append %s: %w", stream, eventstore.ErrClosed)
	}
	select {
	case s.reqs <- r:
		s.sendMu.RUnlock()
	case <-ctx.Done():
		s.sendMu.RUnlock()
		return eventstore.AppendResult{}, fmt.Errorf("append %s: %w", stream, ctx.Err())
	}
	<-r.done
	if r.err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("append %s: %w", stream, r.err)
	}
	return r.res, nil
}

// checkText refuses text PostgreSQL's text columns cannot hold (invalid
// UTF-8 or a NUL byte), before it reaches the writer: in a COPY it would
// fail the whole transaction, and so the other appends batched with it.
func checkText(stream string, events []eventstore.EventData) error {
	ok := func(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }
	if !ok(stream) {
		return fmt.Errorf("%w: the stream name is not UTF-8 text without NUL bytes", eventstore.ErrInvalidAppend)
	}
	for i, e := range events {
		for _, f := range []string{e.ID, e.Type, e.CausationID, e.CorrelationID, e.IdempotencyKey} {
			if !ok(f) {
				return fmt.Errorf("%w: event %d has a field that is not UTF-8 text without NUL bytes", eventstore.ErrInvalidAppend, i)
			}
		}
	}
	return nil
}

// run is the writer goroutine. It returns once Close has closed the queue
// and every request taken has been answered.
func (s *Store) run() {
	defer close(s.writerDone)
	var carry *appendReq // taken, but too large for the last transaction
	for {
		first := carry
		carry = nil
		if first == nil {
			r, ok := <-s.reqs
			if !ok {
				return
			}
			first = r
		}
		batch := []*appendReq{first}
		n := len(first.events)
	gather:
		for len(batch) < s.opts.MaxBatchRequests {
			select {
			case r, ok := <-s.reqs:
				if !ok {
					break gather // the next receive sees the closed queue
				}
				if n+len(r.events) > s.opts.MaxBatchEvents {
					carry = r
					break gather
				}
				batch = append(batch, r)
				n += len(r.events)
			default:
				break gather
			}
		}
		s.commit(batch)
	}
}

// commit writes batch in one transaction and answers every request in it.
func (s *Store) commit(batch []*appendReq) {
	live := batch[:0:0]
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.err = err // the caller left before anything was written
			close(r.done)
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	// A caller leaving must not abort the others' transaction; the timeout
	// bounds a server that stops answering.
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.CommitTimeout)
	defer cancel()
	t, err := s.write(ctx, live)
	if err != nil {
		err = mapTxError(err)
		for _, r := range live {
			if r.wrote || (r.err == nil && r.res.Events == nil) {
				r.res, r.err = eventstore.AppendResult{}, err
			}
			close(r.done)
		}
		return
	}
	if t.events > 0 {
		s.transactions.Add(1)
		s.appends.Add(t.appends)
		s.events.Add(t.events)
		s.publish()
	}
	for _, r := range live {
		close(r.done)
	}
}

// mapTxError classifies a failed transaction for its requests: a unique
// violation means a writer outside this protocol took the place (answered
// as a conflict, so the caller reloads and retries); anything else is the
// storage failing.
func mapTxError(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return fmt.Errorf("%w: %w", eventstore.ErrVersionConflict, err)
	}
	return fmt.Errorf("%w: %w", eventstore.ErrUnavailable, err)
}

// write runs one transaction for live, setting each request's answer.
func (s *Store) write(ctx context.Context, live []*appendReq) (*txn, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }() // a no-op after Commit
	t, err := s.prefetch(ctx, tx, live)
	if err != nil {
		return nil, err
	}
	for _, r := range live {
		s.apply(t, r)
	}
	if len(t.rows) == 0 {
		return t, tx.Commit(ctx)
	}
	cols := []string{"position", "stream", "version", "id", "type", "schema_version", "occurred_at", "occurred_ns",
		"causation_id", "correlation_id", "idempotency_key", "payload", "prev_hash", "hash"}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"events"}, cols, pgx.CopyFromRows(t.rows)); err != nil {
		return nil, fmt.Errorf("insert %d events: %w", len(t.rows), err)
	}
	if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, s.channel, s.instance+" "+strconv.FormatInt(t.head, 10)); err != nil {
		return nil, fmt.Errorf("notify: %w", err)
	}
	if s.beforeCommit != nil {
		s.beforeCommit()
	}
	start := time.Now()
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	if s.opts.ObserveSync != nil {
		s.opts.ObserveSync(time.Since(start))
	}
	return t, nil
}

// prefetch takes the position lock and reads, in one round trip, the head,
// the batch's streams and the stored events of the batch's ids.
func (s *Store) prefetch(ctx context.Context, tx pgx.Tx, live []*appendReq) (*txn, error) {
	streams := make([]string, 0, len(live))
	seen := make(map[string]bool, len(live))
	var ids []string
	for _, r := range live {
		if !seen[r.stream] {
			seen[r.stream] = true
			streams = append(streams, r.stream)
		}
		for _, c := range r.conds {
			if !seen[c.Stream] {
				seen[c.Stream] = true
				streams = append(streams, c.Stream)
			}
		}
		for _, d := range r.events {
			ids = append(ids, d.ID)
		}
	}
	t := &txn{streams: make(map[string]streamState, len(streams)), stored: make(map[string]eventstore.Event),
		ids: make(map[string]eventstore.Event)}
	b := &pgx.Batch{}
	b.Queue(`SELECT pg_advisory_xact_lock($1)`, s.lockKey)
	if s.fenced {
		b.Queue(`SELECT epoch FROM writer_lease`).QueryRow(func(row pgx.Row) error {
			var epoch int64
			if err := row.Scan(&epoch); err != nil {
				return err
			}
			if epoch != s.epoch {
				return errFenced
			}
			return nil
		})
	}
	b.Queue(`SELECT coalesce(max(position), 0) FROM events`).QueryRow(func(row pgx.Row) error { return row.Scan(&t.head) })
	b.Queue(`SELECT s.stream, e.version, e.hash FROM unnest($1::text[]) AS s(stream)
		JOIN LATERAL (SELECT version, hash FROM events WHERE events.stream = s.stream ORDER BY version DESC LIMIT 1) e ON true`,
		streams).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var name string
			var st streamState
			var hash []byte
			if err := rows.Scan(&name, &st.version, &hash); err != nil {
				return err
			}
			if len(hash) != 32 {
				return fmt.Errorf("stream %s: last hash of %d bytes", name, len(hash))
			}
			copy(st.hash[:], hash)
			t.streams[name] = st
		}
		return rows.Err()
	})
	b.Queue(`SELECT `+eventCols+` FROM events WHERE id = ANY($1::text[])`, ids).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			e, err := scanEvent(rows)
			if err != nil {
				return err
			}
			t.stored[e.ID] = e
		}
		return rows.Err()
	})
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("read the batch's streams: %w", err)
	}
	return t, nil
}

// apply decides one request inside t: a refusal or an idempotent answer
// is set on r alone; otherwise its rows join the transaction.
func (s *Store) apply(t *txn, r *appendReq) {
	cur := t.streams[r.stream]
	if r.expected != eventstore.Any && r.expected != cur.version {
		s.answerByIDs(t, r, func() {
			r.err = fmt.Errorf("%w: stream is at version %d, expected %d",
				eventstore.ErrVersionConflict, cur.version, r.expected)
		})
		return
	}
	for _, c := range r.conds {
		if got := t.streams[c.Stream].version; got != c.Version {
			s.answerByIDs(t, r, func() {
				r.err = fmt.Errorf("%w: stream %s is at version %d, the append required %d",
					eventstore.ErrConditionFailed, c.Stream, got, c.Version)
			})
			return
		}
	}
	for _, d := range r.events {
		if _, known := t.find(d.ID); known {
			s.answerByIDs(t, r, func() {})
			return
		}
	}
	out := make([]eventstore.Event, len(r.events))
	prev := cur.hash
	for i, d := range r.events {
		d.OccurredAt = d.OccurredAt.UTC()
		if len(d.Payload) > 0 {
			d.Payload = append([]byte(nil), d.Payload...)
		} else {
			d.Payload = nil // stored and read back as no bytes
		}
		e := eventstore.Event{EventData: d, Stream: r.stream, Version: cur.version + int64(i) + 1,
			Position: t.head + 1, PrevHash: prev}
		e.Hash = eventstore.ComputeHash(prev, r.stream, e.Version, d)
		at := d.OccurredAt.Truncate(time.Microsecond)
		payload := d.Payload
		if payload == nil {
			payload = []byte{}
		}
		t.rows = append(t.rows, []any{e.Position, e.Stream, e.Version, d.ID, d.Type, int32(d.SchemaVersion),
			at, int16(d.OccurredAt.Sub(at)), d.CausationID, d.CorrelationID, d.IdempotencyKey, payload,
			e.PrevHash[:], e.Hash[:]})
		t.head = e.Position
		t.ids[d.ID] = e
		out[i] = e
		prev = e.Hash
	}
	t.streams[r.stream] = streamState{version: out[len(out)-1].Version, hash: prev}
	t.appends++
	t.events += int64(len(out))
	r.wrote = true
	r.res = eventstore.AppendResult{Events: out}
}

// find looks an event up by id as the transaction sees it.
func (t *txn) find(id string) (eventstore.Event, bool) {
	if e, ok := t.ids[id]; ok {
		return e, true
	}
	e, ok := t.stored[id]
	return e, ok
}

// answerByIDs answers r from the ids it carries, when it cannot be
// appended as it stands: with the stored events if it is an exact
// re-append of them, with the id-reuse error if some id is stored
// otherwise, and else as notStored decides. Stored events of this very
// transaction answer only once it commits.
func (s *Store) answerByIDs(t *txn, r *appendReq, notStored func()) {
	found := make([]eventstore.Event, len(r.events))
	n := 0
	var missing string
	for i, d := range r.events {
		e, ok := t.find(d.ID)
		if !ok {
			missing = d.ID
			continue
		}
		if _, mine := t.ids[d.ID]; mine {
			r.wrote = true
		}
		found[i] = e
		n++
	}
	if n == 0 {
		notStored()
		return
	}
	if n < len(r.events) {
		r.err = fmt.Errorf("%w: some ids of the batch are stored, %s is not", eventstore.ErrIDReused, missing)
		return
	}
	first := found[0].Version
	for i, e := range found {
		d := r.events[i]
		switch {
		case e.Stream != r.stream:
			r.err = fmt.Errorf("%w: %s is stored in stream %s", eventstore.ErrIDReused, d.ID, e.Stream)
		case e.Version != first+int64(i):
			r.err = fmt.Errorf("%w: the batch's ids are not stored consecutively", eventstore.ErrIDReused)
		case r.expected != eventstore.Any && first != r.expected+1:
			r.err = fmt.Errorf("%w: the batch is stored after version %d, not %d", eventstore.ErrIDReused, first-1, r.expected)
		case eventstore.ComputeHash(e.PrevHash, e.Stream, e.Version, d) != e.Hash:
			r.err = fmt.Errorf("%w: %s is stored with other content", eventstore.ErrIDReused, d.ID)
		}
		if r.err != nil {
			return
		}
	}
	r.res = eventstore.AppendResult{Events: found}
}
