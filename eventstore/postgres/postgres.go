// Package postgres is the event-log adapter for PostgreSQL, through
// github.com/jackc/pgx/v5: one row per event in an events table with
// unique (stream, version) and unique id, for teams that run the log on a
// database server they already operate.
//
// Positions are gap-free and become visible in commit order: one writer
// goroutine per Store gathers concurrent appends into one transaction
// (group commit) and assigns positions after taking a transaction-scoped
// advisory lock, which it holds until the commit has made the rows
// visible. So every writer, in this process or another, assigns positions
// only after every earlier position has committed, and a reader that sees
// position N sees every position below it: a subscriber never jumps over
// an event that commits late (writer.go).
//
// The retention rule (R2) is enforced in the database as well: a trigger
// refuses every UPDATE, DELETE and TRUNCATE on events. The schema comes
// from embedded, versioned migrations (migrate.go) that Migrate applies and
// Open checks. Subscribers are woken by LISTEN/NOTIFY, so appends made
// through another process wake them too.
//
// It implements the eventstore port and must never import the domain, the
// ledger or the projections.
package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/payledger/payledger/eventstore"
)

// Compile-time proof that *Store satisfies the port.
var _ eventstore.Store = (*Store)(nil)

// Options tunes the store. Start from DefaultOptions so that fields added
// later get sensible values.
type Options struct {
	// Schema, when set, is the PostgreSQL schema the tables live in (the
	// connections' search_path); empty uses the DSN's or the server's
	// default. Tests give each store its own.
	Schema string
	// MaxBatchEvents is the upper bound of events in one transaction
	// (default 2000). A request that would take a transaction past it waits
	// for the next one; a single larger request still commits, alone.
	MaxBatchEvents int
	// MaxBatchRequests bounds the appends gathered into one transaction
	// (default 4096).
	MaxBatchRequests int
	// QueueSize bounds the pending-append queue (default 4096), so that a
	// burst of writers waits, respecting their contexts.
	QueueSize int
	// MaxConns bounds the connection pool (default 8): the writer uses one
	// at a time, readers the others. The LISTEN connection is apart.
	MaxConns int32
	// CommitTimeout bounds one write transaction, from its first statement
	// to its commit (default 30 s).
	CommitTimeout time.Duration
	// Exclusive makes this Store the log's only writer, for a process
	// whose caches assume that no one else appends (payledger serve): Open
	// fails with ErrLocked while another exclusive Store holds the log,
	// and otherwise takes the writer's lease (writer_lease), which fences
	// off any earlier holder: once its lock has gone with its connection
	// and this Store has opened, its appends fail. Stores that are not
	// exclusive neither take nor check the lease, unless Shared.
	Exclusive bool
	// Shared makes this Store one of several writers that each know the
	// others exist (payledger serve --shared-log): it holds the writer's
	// lock shared, so Open fails with ErrLocked while an exclusive writer
	// holds the log and an exclusive Open fails while it is open, and its
	// appends fail once an exclusive writer has taken the lease since; the
	// first shared writer after an exclusive one fences that one, as an
	// exclusive Open would.
	Shared bool
	// ObserveSync, when set, is told once per committed transaction how
	// long its COMMIT took (the server's flush of its WAL, and a synchronous
	// replica's, when one is configured); it runs on the write path and must
	// be quick.
	ObserveSync func(time.Duration)
}

// DefaultOptions returns the production settings.
func DefaultOptions() Options {
	return Options{MaxBatchEvents: 2000, MaxBatchRequests: 4096, QueueSize: 4096, MaxConns: 8, CommitTimeout: 30 * time.Second}
}

// Stats counts the writer's work, as the SQLite store's do.
type Stats struct {
	// Transactions is the number of committed write transactions.
	Transactions int64
	// Appends is the number of Append calls that stored new events.
	Appends int64
	// Events is the number of events stored.
	Events int64
	// ListenErrors counts the times the LISTEN connection failed and was
	// opened again.
	ListenErrors int64
}

// ErrLocked is returned by Open with Options.Exclusive when another
// Store, exclusive or shared, in this process or another, holds the log,
// and with Options.Shared when an exclusive one does.
var ErrLocked = errors.New("postgres store: the log's writer lock is held (by an exclusive writer, or by shared writers when this one is exclusive)")

// errFenced fails the appends of an exclusive Store whose lease another
// Store has taken.
var errFenced = errors.New("postgres store: another exclusive writer took this log's lease; this process no longer writes it")

// retentionCode is the SQLSTATE the retention trigger raises.
const retentionCode = "PL002"

// eventCols are the columns every event read selects, in scanEvent's order.
const eventCols = `position, stream, version, id, type, schema_version, occurred_at, occurred_ns,
	causation_id, correlation_id, idempotency_key, payload, prev_hash, hash`

// subscribeBatch is how many events Subscribe reads per query.
const subscribeBatch = 1000

// Store is the PostgreSQL event store. Create it with Open; it is safe for
// concurrent use and must be closed with Close.
type Store struct {
	opts     Options
	pool     *pgxpool.Pool
	listenTo *pgx.ConnConfig // the LISTEN connection's settings
	schema   string          // current_schema() of the connections
	lockKey  int64           // the advisory lock around position assignment
	channel  string          // the NOTIFY channel of this schema's log
	instance string          // this Store's name in its notifications
	leaseKey int64           // the session advisory lock of the exclusive writer
	lockConn *pgx.Conn       // holds leaseKey, with Exclusive
	epoch    int64           // the lease this Store took (Exclusive) or found (Shared)
	fenced   bool            // the writer checks epoch in every transaction

	reqs       chan *appendReq
	sendMu     sync.RWMutex // held (read) while sending on reqs; Close takes it to close reqs
	closed     bool
	closeOnce  sync.Once
	writerDone chan struct{}
	done       chan struct{} // closed once the writer stopped: readers and subscribers end
	stopListen context.CancelFunc
	listenDone chan struct{}

	notifyMu sync.Mutex
	notify   chan struct{} // closed and replaced when the log may have grown

	transactions, appends, events, listenErrors atomic.Int64
	listenPID                                   atomic.Uint32 // the LISTEN connection's server process, for tests

	// beforeCommit, set only by tests, runs in the writer after a
	// transaction's rows are written and before it commits.
	beforeCommit func()
}

// defaultConnectTimeout bounds a connection attempt when the DSN sets no
// connect_timeout, so that an unreachable server fails Open, the LISTEN
// connection's retries and Migrate instead of hanging them.
const defaultConnectTimeout = 10 * time.Second

// connConfig parses dsn and points its search_path at schema when set.
func connConfig(dsn, schema string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres store: parse %s: %w", redact(dsn), err)
	}
	if schema != "" {
		cfg.RuntimeParams["search_path"] = schema
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = defaultConnectTimeout
	}
	return cfg, nil
}

// redact drops the password from a connection string for messages.
func redact(dsn string) string {
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return "the connection string"
	}
	return fmt.Sprintf("postgres://%s@%s:%d/%s", cfg.User, cfg.Host, cfg.Port, cfg.Database)
}

// Open connects to the database at dsn (a postgres:// URL or key=value
// string, as pgx parses it), checks that its schema is this build's (run
// Migrate first), and starts the writer and the LISTEN connection.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	def := DefaultOptions()
	if opts.MaxBatchEvents <= 0 {
		opts.MaxBatchEvents = def.MaxBatchEvents
	}
	if opts.MaxBatchRequests <= 0 {
		opts.MaxBatchRequests = def.MaxBatchRequests
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = def.QueueSize
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = def.MaxConns
	}
	if opts.CommitTimeout <= 0 {
		opts.CommitTimeout = def.CommitTimeout
	}
	pcfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres store: parse %s: %w", redact(dsn), err)
	}
	if opts.Schema != "" {
		pcfg.ConnConfig.RuntimeParams["search_path"] = opts.Schema
	}
	pcfg.MaxConns = opts.MaxConns
	if pcfg.ConnConfig.ConnectTimeout == 0 {
		pcfg.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	listenTo, err := connConfig(dsn, opts.Schema)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("postgres store: connect to %s: %w", redact(dsn), err)
	}
	s := &Store{opts: opts, pool: pool, listenTo: listenTo,
		reqs: make(chan *appendReq, opts.QueueSize), writerDone: make(chan struct{}), done: make(chan struct{}),
		listenDone: make(chan struct{}), notify: make(chan struct{})}
	if err := s.init(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres store at %s: %w", redact(dsn), err)
	}
	if opts.Exclusive && opts.Shared {
		pool.Close()
		return nil, errors.New("postgres store: Exclusive and Shared exclude each other")
	}
	if opts.Exclusive || opts.Shared {
		if err := s.takeLease(ctx); err != nil {
			pool.Close()
			return nil, fmt.Errorf("postgres store at %s: %w", redact(dsn), err)
		}
	}
	lctx, cancel := context.WithCancel(context.Background())
	s.stopListen = cancel
	ready := make(chan struct{})
	go s.listen(lctx, ready)
	select {
	case <-ready:
	case <-ctx.Done():
	}
	go s.run()
	return s, nil
}

// init checks the schema and learns the names the writer and the
// notifications use.
func (s *Store) init(ctx context.Context) error {
	if err := checkSchema(ctx, s.pool); err != nil {
		return err
	}
	var schema *string
	if err := s.pool.QueryRow(ctx, `SELECT current_schema(), hashtextextended('payledger/events/' || current_schema(), 0),
		hashtextextended('payledger/writer/' || current_schema(), 0)`).
		Scan(&schema, &s.lockKey, &s.leaseKey); err != nil {
		return fmt.Errorf("read the current schema: %w", err)
	}
	if schema == nil {
		return errors.New("no current schema: the search_path names no existing schema")
	}
	s.schema = *schema
	s.channel = fmt.Sprintf("payledger_events_%016x", uint64(s.lockKey))
	var nonce [16]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return err
	}
	s.instance = hex.EncodeToString(nonce[:])
	return nil
}

// takeLease makes this Store the exclusive writer: it takes the session
// lock on a connection of its own (kept until Close) and raises the
// lease's epoch under the position lock, so that no transaction of an
// earlier holder that checked the old epoch is still uncommitted. A
// Shared Store takes the lock shared and keeps the epoch it finds, unless
// an exclusive writer took it last (see sharedHolder).
func (s *Store) takeLease(ctx context.Context) error {
	conn, err := pgx.ConnectConfig(ctx, s.listenTo)
	if err != nil {
		return fmt.Errorf("connect for the writer's lock: %w", err)
	}
	take := `SELECT pg_try_advisory_lock($1)`
	if s.opts.Shared {
		take = `SELECT pg_try_advisory_lock_shared($1)`
	}
	var got bool
	if err := conn.QueryRow(ctx, take, s.leaseKey).Scan(&got); err != nil {
		_ = conn.Close(context.Background())
		return fmt.Errorf("take the writer's lock: %w", err)
	}
	if !got {
		_ = conn.Close(context.Background())
		return ErrLocked
	}
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, s.lockKey); err != nil {
			return err
		}
		if s.opts.Shared {
			// The first shared writer after an exclusive one raises the
			// epoch, fencing that writer should it still run with its lock
			// lost; later shared writers keep the epoch they find.
			return tx.QueryRow(ctx, `UPDATE writer_lease SET epoch = epoch + (holder <> $1)::int, holder = $1,
				taken_at = CASE WHEN holder = $1 THEN taken_at ELSE now() END RETURNING epoch`, sharedHolder).Scan(&s.epoch)
		}
		return tx.QueryRow(ctx, `UPDATE writer_lease SET epoch = epoch + 1, holder = $1, taken_at = now() RETURNING epoch`,
			s.instance).Scan(&s.epoch)
	})
	if err != nil {
		_ = conn.Close(context.Background())
		return fmt.Errorf("take the writer's lease: %w", err)
	}
	s.lockConn = conn
	s.fenced = true
	return nil
}

// sharedHolder is writer_lease.holder while shared writers hold the log;
// an exclusive writer records its instance, 32 hex digits.
const sharedHolder = "shared"

// Schema returns the PostgreSQL schema the store's tables are in.
func (s *Store) Schema() string { return s.schema }

// Stats returns the writer's counters.
func (s *Store) Stats() Stats {
	return Stats{Transactions: s.transactions.Load(), Appends: s.appends.Load(), Events: s.events.Load(),
		ListenErrors: s.listenErrors.Load()}
}

// MapRetentionError turns the failure raised by the retention trigger (an
// UPDATE, DELETE or TRUNCATE on events) into an error wrapping
// eventstore.ErrDeleteForbidden; other errors are returned unchanged.
func MapRetentionError(err error) error {
	if err == nil || errors.Is(err, eventstore.ErrDeleteForbidden) {
		return err
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == retentionCode {
		return fmt.Errorf("%w: %w", eventstore.ErrDeleteForbidden, err)
	}
	return err
}

// isClosed reports whether Close has stopped the writer.
func (s *Store) isClosed() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// readErr wraps a read failure, reporting ErrClosed when the store was
// closed underneath the read.
func (s *Store) readErr(op string, err error) error {
	if s.isClosed() {
		return fmt.Errorf("%s: %w", op, eventstore.ErrClosed)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// scanEvent reads one row of eventCols.
func scanEvent(rows pgx.Rows) (eventstore.Event, error) {
	var e eventstore.Event
	var at time.Time
	var ns int16
	var prev, hash []byte
	if err := rows.Scan(&e.Position, &e.Stream, &e.Version, &e.ID, &e.Type, &e.SchemaVersion, &at, &ns,
		&e.CausationID, &e.CorrelationID, &e.IdempotencyKey, &e.Payload, &prev, &hash); err != nil {
		return e, err
	}
	if len(prev) != 32 || len(hash) != 32 {
		return e, fmt.Errorf("event at position %d: hashes of %d and %d bytes", e.Position, len(prev), len(hash))
	}
	e.OccurredAt = at.UTC().Add(time.Duration(ns))
	if len(e.Payload) == 0 {
		e.Payload = nil
	}
	copy(e.PrevHash[:], prev)
	copy(e.Hash[:], hash)
	return e, nil
}

// query runs a read of eventCols and collects at most limit events.
func (s *Store) query(ctx context.Context, op string, limit int, sql string, args ...any) ([]eventstore.Event, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("%s: %w", op, eventstore.ErrClosed)
	}
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, s.readErr(op, err)
	}
	defer rows.Close()
	out := make([]eventstore.Event, 0, min(limit, 64))
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, s.readErr(op, err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, s.readErr(op, err)
	}
	return out, nil
}

// ReadStream implements eventstore.Store.
func (s *Store) ReadStream(ctx context.Context, stream string, from int64, limit int) ([]eventstore.Event, error) {
	limit = eventstore.ClampLimit(limit)
	return s.query(ctx, "read stream "+stream, limit,
		`SELECT `+eventCols+` FROM events WHERE stream = $1 AND version >= $2 ORDER BY version LIMIT $3`, stream, from, limit)
}

// ReadStreamBackward implements eventstore.Store.
func (s *Store) ReadStreamBackward(ctx context.Context, stream string, from int64, limit int) ([]eventstore.Event, error) {
	limit = eventstore.ClampLimit(limit)
	if from < 1 {
		from = 1<<63 - 1
	}
	return s.query(ctx, "read stream "+stream+" backward", limit,
		`SELECT `+eventCols+` FROM events WHERE stream = $1 AND version <= $2 ORDER BY version DESC LIMIT $3`, stream, from, limit)
}

// ReadAll implements eventstore.Store. Positions commit in order (see the
// package comment), so the rows visible after `after` are a gap-free run.
func (s *Store) ReadAll(ctx context.Context, after int64, limit int) ([]eventstore.Event, error) {
	limit = eventstore.ClampLimit(limit)
	return s.query(ctx, "read all", limit,
		`SELECT `+eventCols+` FROM events WHERE position > $1 ORDER BY position LIMIT $2`, after, limit)
}

// Head implements eventstore.Store.
func (s *Store) Head(ctx context.Context) (int64, error) {
	if s.isClosed() {
		return 0, fmt.Errorf("head: %w", eventstore.ErrClosed)
	}
	var head int64
	if err := s.pool.QueryRow(ctx, `SELECT coalesce(max(position), 0) FROM events`).Scan(&head); err != nil {
		return 0, s.readErr("head", err)
	}
	return head, nil
}

// StreamVersion implements eventstore.Store.
func (s *Store) StreamVersion(ctx context.Context, stream string) (int64, error) {
	if s.isClosed() {
		return 0, fmt.Errorf("stream version of %s: %w", stream, eventstore.ErrClosed)
	}
	var v int64
	if err := s.pool.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM events WHERE stream = $1`, stream).Scan(&v); err != nil {
		return 0, s.readErr("stream version of "+stream, err)
	}
	return v, nil
}

// SaveSnapshot implements eventstore.Store: it keeps snap unless a later
// one of its stream is kept.
func (s *Store) SaveSnapshot(ctx context.Context, snap eventstore.Snapshot) error {
	if err := eventstore.ValidateSnapshot(snap); err != nil {
		return err
	}
	if s.isClosed() {
		return fmt.Errorf("save snapshot of %s: %w", snap.Stream, eventstore.ErrClosed)
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO snapshots (stream, version, event_hash, schema, payload) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (stream) DO UPDATE SET version = excluded.version, event_hash = excluded.event_hash,
			schema = excluded.schema, payload = excluded.payload
		WHERE excluded.version >= snapshots.version`,
		snap.Stream, snap.Version, snap.EventHash[:], snap.Schema, snap.Payload)
	if err != nil {
		return s.readErr("save snapshot of "+snap.Stream, err)
	}
	return nil
}

// LoadSnapshot implements eventstore.Store.
func (s *Store) LoadSnapshot(ctx context.Context, stream string) (eventstore.Snapshot, bool, error) {
	if s.isClosed() {
		return eventstore.Snapshot{}, false, fmt.Errorf("load snapshot of %s: %w", stream, eventstore.ErrClosed)
	}
	snap := eventstore.Snapshot{Stream: stream}
	var hash []byte
	err := s.pool.QueryRow(ctx, `SELECT version, event_hash, schema, payload FROM snapshots WHERE stream = $1`, stream).
		Scan(&snap.Version, &hash, &snap.Schema, &snap.Payload)
	if errors.Is(err, pgx.ErrNoRows) {
		return eventstore.Snapshot{}, false, nil
	}
	if err != nil {
		return eventstore.Snapshot{}, false, s.readErr("load snapshot of "+stream, err)
	}
	if len(hash) != len(snap.EventHash) {
		return eventstore.Snapshot{}, false, fmt.Errorf("load snapshot of %s: event hash of %d bytes", stream, len(hash))
	}
	copy(snap.EventHash[:], hash)
	return snap, true, nil
}

// publish wakes every waiting subscriber: the log may have grown.
func (s *Store) publish() {
	s.notifyMu.Lock()
	close(s.notify)
	s.notify = make(chan struct{})
	s.notifyMu.Unlock()
}

// headChanged returns the channel the next publish closes.
func (s *Store) headChanged() <-chan struct{} {
	s.notifyMu.Lock()
	defer s.notifyMu.Unlock()
	return s.notify
}

// Subscribe implements eventstore.Store: it delivers the log in batches
// from after and, once caught up, waits until this store commits or a
// notification says another process did.
func (s *Store) Subscribe(ctx context.Context, after int64, fn func(eventstore.Event) error) error {
	for {
		// Take the wake-up channel before reading, so that a commit landing
		// between the read and the wait still wakes us.
		changed := s.headChanged()
		if err := ctx.Err(); err != nil {
			return err
		}
		if s.isClosed() {
			return fmt.Errorf("subscribe: %w", eventstore.ErrClosed)
		}
		events, err := s.ReadAll(ctx, after, subscribeBatch)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("subscribe after %d: %w", after, err)
		}
		for _, e := range events {
			if err := fn(e); err != nil {
				return err
			}
			after = e.Position
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if len(events) > 0 {
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.done:
			return fmt.Errorf("subscribe: %w", eventstore.ErrClosed)
		case <-changed:
		}
	}
}

// listenBackoff bounds the wait before the LISTEN connection is opened
// again after a failure.
const (
	listenBackoffMin = 50 * time.Millisecond
	listenBackoffMax = 5 * time.Second
)

// listen keeps a connection LISTENing on the log's channel and wakes the
// subscribers for every commit another Store announces. Each time the
// connection is (re)established it wakes them too, since a commit may
// have gone unannounced while it was down. ready is closed after the
// first attempt.
func (s *Store) listen(ctx context.Context, ready chan struct{}) {
	defer close(s.listenDone)
	backoff := listenBackoffMin
	for {
		err := s.listenOnce(ctx, ready)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			s.listenErrors.Add(1)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, listenBackoffMax)
	}
}

// listenOnce runs one LISTEN connection until it fails or ctx ends.
func (s *Store) listenOnce(ctx context.Context, ready chan struct{}) error {
	defer func() {
		select {
		case <-ready:
		default:
			close(ready)
		}
	}()
	conn, err := pgx.ConnectConfig(ctx, s.listenTo)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{s.channel}.Sanitize()); err != nil {
		return err
	}
	s.listenPID.Store(conn.PgConn().PID())
	s.publish()
	select {
	case <-ready:
	default:
		close(ready)
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		if from, _, _ := strings.Cut(n.Payload, " "); from != s.instance {
			s.publish()
		}
	}
}

// Close implements eventstore.Store: it stops accepting appends, lets the
// writer commit everything already queued, wakes subscribers (they return
// ErrClosed) and closes the connections. Calling it again returns nil.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.sendMu.Lock()
		s.closed = true
		s.sendMu.Unlock()
		close(s.reqs) // no sender holds sendMu, and new ones see closed
		<-s.writerDone
		close(s.done)
		s.stopListen()
		<-s.listenDone
		if s.lockConn != nil {
			// Unlocked first: the server frees a closed session's locks
			// only when its backend exits, after Close returns, and a
			// writer opened right after must find the lock free. A failure
			// means the connection is gone, and its lock with it.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, _ = s.lockConn.Exec(ctx, "SELECT pg_advisory_unlock_all()")
			cancel()
			_ = s.lockConn.Close(context.Background()) // releases the writer's lock
		}
		s.pool.Close()
	})
	return nil
}
