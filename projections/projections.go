// Package projections keeps the ledger's read models (balances and
// per-account statements) in SQLite, fed from the global event log.
//
// The read models are derived data: they can always be rebuilt from the log
// (R4), and a rebuild must give byte-identical content, which Digest checks.
// They live in SQLite rather than only in memory so that a restart resumes
// from the stored checkpoint instead of replaying five years of log.
//
// Every batch of events is applied in one SQLite transaction together with
// the checkpoint, so the tables and the checkpoint can never disagree, and
// events at or below the checkpoint are ignored, so redelivery (after a
// crash, a reconnect or a rebuild racing a live subscription) cannot count
// money twice.
//
// It reads events through the eventstore port and decodes them with the
// domain; it must never import the ledger, httpapi or a store adapter.
package projections

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shopspring/decimal"
	_ "modernc.org/sqlite" // pure-Go SQLite driver "sqlite", no cgo

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/eventstore"
	"github.com/payledger/payledger/internal/sqlitedsn"
	"github.com/payledger/payledger/internal/sqlrows"
)

// Limits that bound every loop and batch.
const (
	// MaxBatch is the largest number of events applied in one SQLite
	// transaction. Every batch rewrites the tail page of each account it
	// touches, so larger batches put more entries on each written page and
	// write far fewer bytes in all. The bound is high enough that under
	// payledger bench's load the busy window (busyCoalesceWindow), not the
	// bound, ends a batch, which gave more payments/s than a 10,000-event
	// bound in alternating runs of payledger bench. A batch this size holds
	// about 16 MB and takes a few hundred ms to apply; under light load
	// batches are small and applied within milliseconds, and the batch
	// grows only as far as events arrive. Catch-up reads the log
	// eventstore.MaxReadBatch events at a time.
	MaxBatch = 40000
	// queueSize bounds the events waiting between the subscription and the
	// applier. The applier drains it at least every drainEvery while it
	// collects a batch, so it need not hold a whole one (a queue of
	// MaxBatch items would take 16 MB from the start).
	queueSize  = eventstore.MaxReadBatch
	drainEvery = 50 * time.Millisecond
	// maxReaders bounds the read connection pool.
	maxReaders = 8
	// coalesceWindow bounds how long the live applier collects one batch
	// under light load (see applyLoop). It is also how much longer than
	// before the balances behind Snapshot can lag the log when nobody
	// waits in WaitFor.
	coalesceWindow = 20 * time.Millisecond
	// busyEvents events collected within coalesceWindow (6,400 events/s
	// or more) mark the projection as busy: the applier then keeps
	// collecting until busyCoalesceWindow has passed since the batch's
	// first event. Under that load the projection's CPU is taken from the
	// write path, and larger batches cost less per event (fewer commits,
	// several entries per dirtied index page), the more so the longer the
	// ledger runs (the statement index grows, so each batch's dirtied pages
	// cost more). BenchmarkApplyBatch measures the CPU per payment by batch
	// size, BenchmarkRunTrickle by window, and payledger bench --duration
	// 30s the payments/s by window.
	busyEvents = 128
	// busyCoalesceWindow bounds a busy batch's collection, and so how long
	// Snapshot can lag the log under load when nobody waits in WaitFor:
	// this window plus the time to apply the batch. The lag is safe (the
	// write path adds an account's own events after the checkpoint to the
	// balance Snapshot gives, so money received recently is only counted
	// late, never money spent twice) and WaitFor still cuts it short.
	busyCoalesceWindow = 300 * time.Millisecond
	// balancesFlushEvents bounds how many positions the stored balances
	// rows may lag the checkpoint (see schemaSQL), and so the entries that
	// Open, Totals and Digest fold into them: at most two per position.
	balancesFlushEvents = 2 * MaxBatch
)

// writeMode is the writer connection's synchronous level and WAL
// checkpoint interval (in 4 KiB pages). A checkpoint copies pages into the
// database and fsyncs them there, and, at synchronous=NORMAL, first the
// WAL frames that every commit since the last one left unsynced: all in
// one burst, on the disk the event log fsyncs every few milliseconds.
// Under load the log's fsyncs queued behind it and every payment in that
// window was late: at NORMAL and 16k pages, payledger bench --rate 5000
// showed a tail latency far above its median. Live batches therefore
// commit at FULL, which syncs each batch's WAL frames as it commits, and
// checkpoint every 4k pages, so each burst is small; each step lowered
// the tail latency at payledger bench --rate 3000 or --rate 5000 in
// alternating pairs, and FULL left the closed loop's payments/s within the
// noise. A crash at FULL loses no committed batch (at NORMAL it could lose
// the last few, which Run re-applied from the log). Catch-up, where no
// payment waits, keeps NORMAL and 16k pages: fewer, larger checkpoints
// copy a page that many batches rewrite (an account's index leaf) once,
// and both 4k pages and FULL lower BenchmarkCatchUp100k's events/s.
type writeMode struct {
	synchronous     string
	checkpointPages int
}

var (
	liveMode    = writeMode{synchronous: "FULL", checkpointPages: 4096}
	catchUpMode = writeMode{synchronous: "NORMAL", checkpointPages: 16384}
)

// schemaVersion is stored in PRAGMA user_version. A file with another
// version is refused; the cure is deleting it and rebuilding from the log.
// Older versions are upgraded in place: version 2 files (whose balances
// rows are all current) by adding balances_flushed at their checkpoint,
// versions 2 and 3 by adding the empty cases table (their logs hold no
// case: the binaries that wrote them knew no case events), versions 2 to
// 4, which kept every statement row in entries, by moving those up to
// balances_flushed into entries_archive (archiveSQL).
const schemaVersion = 5

// upgradable are the versions Open upgrades.
var upgradable = []int{2, 3, 4}

// unarchived are the versions without entries_archive.
var unarchived = []int{2, 3, 4}

// Entry directions.
const (
	// DirectionDebit marks the entry on the debited account (money out).
	DirectionDebit = "debit"
	// DirectionCredit marks the entry on the credited account (money in).
	DirectionCredit = "credit"
)

// seq values order the two entries of one event; the debit side comes first
// so that a (pathological) transfer to the same account still has a stable,
// rebuild-identical order.
const (
	seqDebit  = 0
	seqCredit = 1
)

const schemaSQL = `
CREATE TABLE IF NOT EXISTS checkpoint (
	id       INTEGER PRIMARY KEY CHECK (id = 1),
	position INTEGER NOT NULL
);
INSERT OR IGNORE INTO checkpoint (id, position) VALUES (1, 0);
-- A balances row is not rewritten by every batch that touches the account
-- (that rewrote most of the table's pages in every commit) but only when
-- the account is new or balances are flushed, every balancesFlushEvents
-- positions. A row is exact as of its last_position, and the entries of
-- its account after that position complete it; all such entries lie after
-- balances_flushed.position, so completing every row is one range scan of
-- the log-ordered entries (storedBalances).
CREATE TABLE IF NOT EXISTS balances (
	account_id    TEXT PRIMARY KEY,
	currency      TEXT NOT NULL,
	balance       TEXT NOT NULL,
	debits        TEXT NOT NULL,
	credits       TEXT NOT NULL,
	entries       INTEGER NOT NULL,
	last_position INTEGER NOT NULL
) WITHOUT ROWID;
-- The statement rows (R17) live in two tables, split at
-- balances_flushed.position. Those after it are in entries, in log order,
-- so a batch appends to its last pages, with the narrow statement index
-- entries_by_account; it is small (at most balancesFlushEvents positions)
-- and what storedBalances completes the balances rows from. Every flush
-- moves them into entries_archive, clustered by account and time, so
-- that a page of any older period is one range of adjacent leaf pages
-- instead of a table page per row: in log order, five years of entries
-- put each row of a page on a page of its own. The move appends each
-- account's rows of the last flush interval to its range once, where
-- clustering every batch's rows rewrote each account's last leaf in
-- every batch. The batch that flushes, and so every batch of a catch-up,
-- writes its own rows straight into the archive. A statement page reads
-- both tables.
CREATE TABLE IF NOT EXISTS entries (
	account_id    TEXT NOT NULL,
	time_ns       INTEGER NOT NULL,
	position      INTEGER NOT NULL,
	seq           INTEGER NOT NULL,
	event_id      TEXT NOT NULL,
	type          TEXT NOT NULL,
	amount        TEXT NOT NULL,
	currency      TEXT NOT NULL,
	counterparty  TEXT NOT NULL,
	balance_after TEXT NOT NULL,
	description   TEXT NOT NULL,
	ref           TEXT NOT NULL,
	PRIMARY KEY (position, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entries_by_account ON entries (account_id, time_ns, position, seq);
CREATE TABLE IF NOT EXISTS entries_archive (
	account_id    TEXT NOT NULL,
	time_ns       INTEGER NOT NULL,
	position      INTEGER NOT NULL,
	seq           INTEGER NOT NULL,
	event_id      TEXT NOT NULL,
	type          TEXT NOT NULL,
	amount        TEXT NOT NULL,
	currency      TEXT NOT NULL,
	counterparty  TEXT NOT NULL,
	balance_after TEXT NOT NULL,
	description   TEXT NOT NULL,
	ref           TEXT NOT NULL,
	PRIMARY KEY (account_id, time_ns, position, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS balances_flushed (
	id       INTEGER PRIMARY KEY CHECK (id = 1),
	position INTEGER NOT NULL
);
-- A new file starts at 0; a version 2 file, whose rows are all current, at
-- its checkpoint.
INSERT OR IGNORE INTO balances_flushed (id, position) SELECT 1, position FROM checkpoint;
-- Loss cases and disputes as staff list them: status after the last event,
-- when the answer is due (0 for none) and when the case ended (0 while
-- open). The open ones, most overdue first, are one range of the index.
CREATE TABLE IF NOT EXISTS cases (
	case_id       TEXT PRIMARY KEY,
	kind          TEXT NOT NULL,
	account_id    TEXT NOT NULL,
	status        TEXT NOT NULL,
	opened_ns     INTEGER NOT NULL,
	due_ns        INTEGER NOT NULL,
	ended_ns      INTEGER NOT NULL,
	last_position INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS cases_open ON cases (kind, ended_ns, due_ns, case_id);
`

// account is the in-memory state of one account's balance. Values are
// replaced, never mutated in place, so a copy handed out stays valid.
type account struct {
	currency     domain.Currency
	balance      decimal.Decimal
	debits       decimal.Decimal
	credits      decimal.Decimal
	entries      int64
	lastPosition int64
}

// ReadModels is the SQLite-backed set of read models. All methods are safe
// for concurrent use. One process should own a file at a time.
type ReadModels struct {
	path    string
	writeDB *sql.DB // one connection, BEGIN IMMEDIATE
	readDB  *sql.DB // query_only pool

	// applyMu serialises everything that writes (apply, rebuild), so
	// concurrent Run/CatchUp/Rebuild calls cannot interleave batches.
	applyMu sync.Mutex

	// mu guards the in-memory balances and checkpoint, which change
	// together, only after the SQL transaction holding them committed.
	// They are written with applyMu held too, so code holding applyMu
	// reads them without mu.
	mu         sync.RWMutex
	accounts   map[string]account
	checkpoint int64
	advanced   chan struct{} // closed and replaced whenever checkpoint moves
	closed     chan struct{}
	closeOnce  sync.Once

	// waiters counts WaitFor calls not yet satisfied; waiterArrived wakes
	// a coalescing applier when one starts (capacity 1, sent without
	// blocking). See applyLoop.
	waiters       atomic.Int64
	waiterArrived chan struct{}
	// coalesce is how long the live applier keeps collecting a batch,
	// busyCoalesce how long when it has busyEvents events by then
	// (coalesceWindow, busyCoalesceWindow, busyEvents; tests change them
	// before Run).
	coalesce     time.Duration
	busyCoalesce time.Duration
	busyEvents   int

	// balancesFlushed is the position of the last flush of balances rows
	// and stale the accounts whose rows changed since, so the next flush
	// rewrites them (see schemaSQL); flushEvery is balancesFlushEvents
	// (tests change it before use). Guarded by applyMu.
	balancesFlushed int64
	stale           map[string]struct{}
	flushEvery      int64

	// flushEachBatch is set while catching up: every batch flushes the
	// balances rows and writes its statement rows straight into the
	// archive, where a later move would write them again. Guarded by
	// applyMu.
	flushEachBatch bool

	// live and catchUp are liveMode and catchUpMode (tests change them
	// before use); guarded by applyMu.
	live, catchUp writeMode

	// stmts are the writer's prepared statements, guarded by applyMu.
	// Closing writeDB closes them with its connection.
	stmts writerStmts

	// dialect is what differs between SQLite and PostgreSQL: placeholders,
	// a few statements, transaction options and the writer's fence.
	dialect dialect
}

// Open opens (creating if needed) the read-model database at path, for
// example DIR/readmodels.db, and loads balances and checkpoint into memory
// so that a restart resumes where it stopped instead of replaying the log.
func Open(path string) (*ReadModels, error) {
	if path == "" || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("projections: open %q: path must be non-empty and contain no '?' or '#'", path)
	}
	// The checkpoint lives in the same transaction as the tables, so
	// whatever a crash loses (only at catch-up's synchronous=NORMAL: the
	// last committed batches, never part of one) is a consistent older
	// state, which Run catches up from the log (derived data,
	// position-idempotent).
	base := sqlitedsn.File(path).BusyTimeout(10 * time.Second)
	// The writer: one connection, write lock taken at BEGIN, a 64 MB page
	// cache so a batch's dirty pages are not spilled mid-transaction,
	// temporary data in memory, and the live write mode (catch-up changes
	// it for its duration, see writeMode).
	w, err := sql.Open("sqlite", base.TxLockImmediate().CacheSize(-65536).TempStore("MEMORY").
		Synchronous(liveMode.synchronous).WALAutocheckpoint(liveMode.checkpointPages).String())
	if err != nil {
		return nil, fmt.Errorf("projections: open %s: %w", path, err)
	}
	r := newReadModels(path, w, sqliteDialect{})
	if err := r.initSchema(); err != nil {
		_ = w.Close()
		return nil, err
	}
	if err := r.stmts.prepare(w, r.dialect); err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("projections: open %s: %w", path, err)
	}
	rd, err := sql.Open("sqlite", base.QueryOnly().String())
	if err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("projections: open %s for reading: %w", path, err)
	}
	rd.SetMaxOpenConns(maxReaders)
	rd.SetMaxIdleConns(maxReaders)
	r.readDB = rd
	if err := r.load(); err != nil {
		_ = r.Close()
		return nil, err
	}
	return r, nil
}

// newReadModels is the state shared by both backends around the writer's
// database w, which it limits to one connection: one writer, whose batches
// are serialised anyway, and on PostgreSQL the session that holds the
// projector's lock.
func newReadModels(name string, w *sql.DB, d dialect) *ReadModels {
	if w != nil {
		w.SetMaxOpenConns(1)
		w.SetMaxIdleConns(1)
		w.SetConnMaxLifetime(0)
		w.SetConnMaxIdleTime(0)
	}
	return &ReadModels{
		path:     name,
		writeDB:  w,
		accounts: make(map[string]account),
		advanced: make(chan struct{}),
		closed:   make(chan struct{}),

		waiterArrived: make(chan struct{}, 1),
		coalesce:      coalesceWindow,
		busyCoalesce:  busyCoalesceWindow,
		busyEvents:    busyEvents,
		stale:         make(map[string]struct{}),
		flushEvery:    balancesFlushEvents,

		live:    liveMode,
		catchUp: catchUpMode,
		dialect: d,
	}
}

func (r *ReadModels) initSchema() error {
	ctx := context.Background()
	// WAL lets queries read while a batch is written; it is persistent, so
	// setting it once here covers the read pool too.
	var mode string
	if err := r.writeDB.QueryRowContext(ctx, "PRAGMA journal_mode = WAL").Scan(&mode); err != nil {
		return fmt.Errorf("projections: open %s: set WAL mode: %w", r.path, err)
	}
	if mode != "wal" {
		return fmt.Errorf("projections: open %s: journal mode is %q, want wal", r.path, mode)
	}
	var v int
	if err := r.writeDB.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return fmt.Errorf("projections: open %s: read schema version: %w", r.path, err)
	}
	if v != 0 && v != schemaVersion && !slices.Contains(upgradable, v) {
		return fmt.Errorf("projections: open %s: schema version %d, want %d: delete the file and rebuild from the log", r.path, v, schemaVersion)
	}
	tx, err := r.writeDB.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("projections: open %s: begin schema: %w", r.path, err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, schemaSQL); err != nil {
		return fmt.Errorf("projections: open %s: create schema: %w", r.path, err)
	}
	if slices.Contains(unarchived, v) {
		// The rows up to the flush go where a flush would have put them,
		// as if every flush since the file was made had moved its rows.
		var flushed int64
		if err := tx.QueryRowContext(ctx, "SELECT position FROM balances_flushed WHERE id = 1").Scan(&flushed); err != nil {
			return fmt.Errorf("projections: open %s: upgrade from version %d: balances flush position: %w", r.path, v, err)
		}
		if err := archive(ctx, tx, r.dialect, flushed, false); err != nil {
			return fmt.Errorf("projections: open %s: upgrade from version %d: %w", r.path, v, err)
		}
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", schemaVersion)); err != nil {
		return fmt.Errorf("projections: open %s: set schema version: %w", r.path, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("projections: open %s: commit schema: %w", r.path, err)
	}
	return nil
}

// load reads balances and checkpoint in one transaction, so the in-memory
// pair starts consistent.
func (r *ReadModels) load() error {
	ctx := context.Background()
	tx, err := r.readTx(ctx)
	if err != nil {
		return fmt.Errorf("projections: load %s: %w", r.path, err)
	}
	defer func() { _ = tx.Rollback() }()
	st, err := storedBalances(ctx, tx, r.dialect)
	if err != nil {
		return fmt.Errorf("projections: load %s: %w", r.path, err)
	}
	r.applyMu.Lock()
	defer r.applyMu.Unlock()
	r.balancesFlushed, r.stale = st.flushed, st.stale
	r.mu.Lock()
	r.accounts, r.checkpoint = st.accounts, st.checkpoint
	r.mu.Unlock()
	return nil
}

// stored is the read models' balances state as of one transaction.
type stored struct {
	accounts   map[string]account
	checkpoint int64
	// flushed is balances_flushed.position; stale are the accounts whose
	// rows needed entries after it.
	flushed int64
	stale   map[string]struct{}
}

// storedBalances reads every account's balance as of the checkpoint: the
// stored rows, each completed by its account's entries after the row's
// last_position (see schemaSQL).
func storedBalances(ctx context.Context, tx *sql.Tx, d dialect) (stored, error) {
	st := stored{accounts: make(map[string]account), stale: make(map[string]struct{})}
	if err := tx.QueryRowContext(ctx, "SELECT position FROM checkpoint WHERE id = 1").Scan(&st.checkpoint); err != nil {
		return stored{}, fmt.Errorf("checkpoint: %w", err)
	}
	if err := tx.QueryRowContext(ctx, "SELECT position FROM balances_flushed WHERE id = 1").Scan(&st.flushed); err != nil {
		return stored{}, fmt.Errorf("balances flush position: %w", err)
	}
	if err := readBalanceRows(ctx, tx, st.accounts); err != nil {
		return stored{}, err
	}
	if err := completeBalanceRows(ctx, tx, d, &st); err != nil {
		return stored{}, err
	}
	return st, nil
}

// readBalanceRows reads the balances rows as stored into accounts.
func readBalanceRows(ctx context.Context, tx *sql.Tx, accounts map[string]account) error {
	rows, err := tx.QueryContext(ctx, "SELECT account_id, currency, balance, debits, credits, entries, last_position FROM balances")
	if err != nil {
		return fmt.Errorf("balances: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id, cur, bal, deb, cred string
			a                       account
		)
		if err := rows.Scan(&id, &cur, &bal, &deb, &cred, &a.entries, &a.lastPosition); err != nil {
			return fmt.Errorf("balances: %w", err)
		}
		a.currency = domain.Currency(cur)
		for _, f := range []struct {
			dst *decimal.Decimal
			s   string
		}{{&a.balance, bal}, {&a.debits, deb}, {&a.credits, cred}} {
			d, err := decimal.NewFromString(f.s)
			if err != nil {
				return fmt.Errorf("balance of %s: amount %q: %w", id, f.s, err)
			}
			*f.dst = d
		}
		accounts[id] = a
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("balances: %w", err)
	}
	return nil
}

// completeBalanceRows adds to st's accounts the entries after
// balances_flushed that their rows do not hold yet, marking those accounts
// stale. A row's own last_position, not the running one, decides: a
// transfer to the same account has two entries at one position.
func completeBalanceRows(ctx context.Context, tx *sql.Tx, d dialect, st *stored) error {
	rowLast := make(map[string]int64)
	erows, err := tx.QueryContext(ctx, d.rebind(`SELECT account_id, position, seq, amount FROM entries
		WHERE position > ? ORDER BY position, seq`), st.flushed)
	if err != nil {
		return fmt.Errorf("entries after position %d: %w", st.flushed, err)
	}
	defer erows.Close()
	for erows.Next() {
		var (
			id, amt       string
			position, seq int64
		)
		if err := erows.Scan(&id, &position, &seq, &amt); err != nil {
			return fmt.Errorf("entries after position %d: %w", st.flushed, err)
		}
		a, ok := st.accounts[id]
		if !ok {
			return fmt.Errorf("entry at position %d: account %s has no balances row", position, id)
		}
		last, seen := rowLast[id]
		if !seen {
			last = a.lastPosition
			rowLast[id] = last
		}
		if position <= last {
			continue // already in the row
		}
		d, err := decimal.NewFromString(amt)
		if err != nil {
			return fmt.Errorf("entry at position %d: amount %q: %w", position, amt, err)
		}
		if seq == seqDebit {
			a.balance, a.debits = a.balance.Sub(d), a.debits.Add(d)
		} else {
			a.balance, a.credits = a.balance.Add(d), a.credits.Add(d)
		}
		a.entries++
		a.lastPosition = position
		st.accounts[id] = a
		st.stale[id] = struct{}{}
	}
	if err := erows.Err(); err != nil {
		return fmt.Errorf("entries after position %d: %w", st.flushed, err)
	}
	return nil
}

// Close releases the database. Stop Run (cancel its context) first; waiters
// in WaitFor return an error.
func (r *ReadModels) Close() error {
	r.closeOnce.Do(func() { close(r.closed) })
	var errs []error
	if r.writeDB != nil {
		errs = append(errs, r.dialect.release(r.writeDB))
	}
	if r.readDB != nil {
		errs = append(errs, r.readDB.Close())
	}
	if r.writeDB != nil {
		errs = append(errs, r.writeDB.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("projections: close %s: %w", r.path, err)
	}
	return nil
}

// ErrAheadOfLog is returned by CatchUp and Run when the read models hold
// positions the log does not have.
var ErrAheadOfLog = errors.New("projections: the read models are past the log's head: they were built from another log")

// errReadOnly is returned by the methods that write, on read models opened
// for reading only (OpenPostgresReader).
var errReadOnly = errors.New("projections: these read models are open for reading only")

// Checkpoint returns the global position up to which every event has been
// applied and committed.
func (r *ReadModels) Checkpoint() int64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.checkpoint
}

// Snapshot returns the balance of accountID and the checkpoint it is valid
// at, read atomically under one lock. The write path calls it on every
// payment decision and then folds in only the account's events after the
// checkpoint, so it is in memory and never touches SQL. An unknown account
// has a zero balance.
func (r *ReadModels) Snapshot(accountID string) (balance decimal.Decimal, checkpoint int64) {
	r.mu.RLock()
	a, ok := r.accounts[accountID]
	cp := r.checkpoint
	r.mu.RUnlock()
	if !ok {
		return decimal.Zero, cp
	}
	return a.balance, cp
}

// WaitFor blocks until Checkpoint() >= position, ctx is done or the read
// models are closed. The HTTP API uses it for read-your-writes: after an
// append it waits for the append's position before answering a query.
//
// While a WaitFor is pending the live applier commits what it has instead
// of coalescing a larger batch, so waiting adds no coalescing delay.
func (r *ReadModels) WaitFor(ctx context.Context, position int64) error {
	registered := false
	defer func() {
		if registered {
			r.waiters.Add(-1)
		}
	}()
	for {
		r.mu.RLock()
		cp, ch := r.checkpoint, r.advanced
		r.mu.RUnlock()
		if cp >= position {
			return nil
		}
		if !registered {
			// Count first, then signal: an applier that drained the
			// signal either sees the count or receives this signal.
			registered = true
			r.waiters.Add(1)
			select {
			case r.waiterArrived <- struct{}{}:
			default: // a signal is already pending
			}
		}
		select {
		case <-ch:
		case <-r.closed:
			return fmt.Errorf("projections: waiting for position %d (at %d): read models closed", position, cp)
		case <-ctx.Done():
			return fmt.Errorf("projections: waiting for position %d (at %d): %w", position, cp, ctx.Err())
		}
	}
}

// CatchUp applies every event up to the store's current head and returns.
// It is what rebuild, tests and CLI commands use; Run uses it before going
// live.
func (r *ReadModels) CatchUp(ctx context.Context, store eventstore.Store) error {
	if r.writeDB == nil {
		return errReadOnly
	}
	r.applyMu.Lock()
	defer r.applyMu.Unlock()
	return r.catchUpLocked(ctx, store)
}

// item is a delivered event with what the read models take from it
// already decoded. Decoding is done by the goroutine that reads or receives
// events, so it overlaps with the applier's SQL work; a decode error
// travels with the event and is reported when the applier reaches it,
// after the events before it.
type item struct {
	e     eventstore.Event
	facts domain.LedgerFacts
	// cf is set for the events of loss cases and disputes.
	cf  *domain.CaseFact
	err error
}

// decodeItem decodes what the read models need of e. The money events and
// openings go through domain.DecodeLedgerFacts, which reads only the
// fields the read models use from the usual payloads (and gives exactly
// what the full decoder gives on any payload); decoding PaymentConfirmed
// in full was a tenth of the projection's CPU. Every other known event
// (half of a payment's, PaymentInitiated) changes nothing here and is not
// decoded.
func decodeItem(e eventstore.Event) item {
	if domain.MovesCase(e.Type) {
		d, err := domain.DecodeEvent(e.Type, e.SchemaVersion, e.Payload)
		if err != nil {
			return item{e: e, err: err}
		}
		cf, _ := domain.CaseFactOf(d)
		return item{e: e, cf: &cf}
	}
	if e.Type != domain.TypeAccountOpened && !domain.MovesMoney(e.Type) && domain.KnownEventType(e.Type, e.SchemaVersion) {
		return item{e: e} // known, and it changes nothing here: skip decoding
	}
	f, err := domain.DecodeLedgerFacts(e.Type, e.SchemaVersion, e.Payload)
	return item{e: e, facts: f, err: err}
}

// fetched is one batch read and decoded ahead of the applier.
type fetched struct {
	items []item
	err   error
}

func (r *ReadModels) catchUpLocked(ctx context.Context, store eventstore.Store) (err error) {
	head, err := store.Head(ctx)
	if err != nil {
		return fmt.Errorf("projections: catch up: read head: %w", err)
	}
	from := r.Checkpoint()
	if from > head {
		// They hold events this log does not have: another log's read
		// models (a wrong --data or --read-models), which would silently
		// answer for it.
		return fmt.Errorf("%w: at position %d, the log's head is %d: rebuild them from this log", ErrAheadOfLog, from, head)
	}
	if from == head {
		return nil
	}
	if err := r.setWriteMode(ctx, r.catchUp); err != nil {
		return err
	}
	r.flushEachBatch = true
	defer func() {
		r.flushEachBatch = false
		// Back to the live mode whatever happened, even with ctx done.
		err = errors.Join(err, r.setWriteMode(context.WithoutCancel(ctx), r.live))
	}()
	ctx, cancel := context.WithCancel(ctx)
	batches := make(chan fetched, 1)
	defer func() {
		cancel()
		for range batches { // wait for the reader to stop
		}
	}()

	// A reader goroutine fetches and decodes the next batch while this one
	// applies the previous; the channel holds one batch, so at most three
	// batches (being read, waiting, being applied) are in memory.
	go func() {
		defer close(batches)
		send := func(f fetched) bool {
			select {
			case batches <- f:
				return true
			case <-ctx.Done():
				return false
			}
		}
		// Every iteration advances after or ends, and after cannot pass
		// head without ending, so the loop is bounded by head.
		for after := from; after < head; {
			events, err := store.ReadAll(ctx, after, eventstore.MaxReadBatch)
			if err != nil {
				send(fetched{err: fmt.Errorf("projections: catch up: read after position %d: %w", after, err)})
				return
			}
			if len(events) == 0 {
				return // nothing more to read, though head said so; stop rather than spin
			}
			last := events[len(events)-1].Position
			if last <= after {
				send(fetched{err: fmt.Errorf("projections: catch up: store returned events up to position %d after position %d", last, after)})
				return
			}
			after = last
			items := make([]item, len(events))
			for i, e := range events {
				items[i] = decodeItem(e)
			}
			if !send(fetched{items: items}) {
				return
			}
		}
	}()
	for f := range batches {
		if f.err != nil {
			return f.err
		}
		if err := r.applyLocked(ctx, f.items); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("projections: catch up at position %d of %d: %w", r.Checkpoint(), head, err)
	}
	return nil
}

// Run keeps the read models up to date: it catches up from the checkpoint,
// then subscribes to the store and applies events as they commit, until ctx
// is done (returning ctx's error) or applying fails (returning that error).
//
// The subscription callback decodes each event and hands it through a
// bounded channel to one applier goroutine, which takes everything waiting
// (up to MaxBatch) into one transaction: the busier the write path, the
// larger the batches and the cheaper each event.
func (r *ReadModels) Run(ctx context.Context, store eventstore.Store) error {
	if err := r.CatchUp(ctx, store); err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	queue := make(chan item, queueSize)
	applied := make(chan error, 1)
	go func() {
		err := r.applyLoop(ctx, queue)
		if err != nil {
			cancel(err)
		}
		applied <- err
	}()

	subErr := store.Subscribe(ctx, r.Checkpoint(), func(e eventstore.Event) error {
		select {
		case queue <- decodeItem(e):
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	})
	cancel(subErr)
	if applyErr := <-applied; applyErr != nil {
		return applyErr
	}
	if subErr == nil {
		subErr = context.Cause(ctx)
	}
	return fmt.Errorf("projections: subscription after position %d: %w", r.Checkpoint(), subErr)
}

// applyLoop drains queue in batches until ctx is done. Events still queued
// at shutdown are simply not applied; the checkpoint says where to resume.
//
// A batch is coalesced: after its first event the applier keeps taking
// events until it has MaxBatch of them, the window has passed since the
// first, ctx is done, or, with the queue empty, someone waits in WaitFor.
// The window is r.coalesce, extended to r.busyCoalesce when the batch has
// r.busyEvents events by the end of r.coalesce (see busyEvents). Under
// live load the store commits every few milliseconds and each commit would
// otherwise become a transaction of its own, paying again for the pages it
// dirties (the index pages of every account it touches) and the commit
// itself, so even a short window cuts the CPU per event
// (BenchmarkRunTrickle). WaitFor cuts a window short, so read-your-writes
// waits no longer than without coalescing.
func (r *ReadModels) applyLoop(ctx context.Context, queue <-chan item) error {
	var batch []item // grows with the load, and is reused
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case it := <-queue:
			batch = append(batch[:0], it)
		}
		start := time.Now()
		deadline, busy := start.Add(r.coalesce), false
		for {
			drain(queue, &batch)
			// Consume a pending signal; the count decides. A WaitFor that
			// starts after this either is counted below or signals again.
			select {
			case <-r.waiterArrived:
			default:
			}
			wait := time.Until(deadline)
			if wait <= 0 && !busy && len(batch) >= r.busyEvents {
				// Busy: extend the window once, to its longer bound.
				busy = true
				deadline = start.Add(r.busyCoalesce)
				wait = time.Until(deadline)
			}
			if len(batch) >= MaxBatch || wait <= 0 || r.waiters.Load() > 0 || ctx.Err() != nil {
				break
			}
			// Sleep instead of waking for every event, but drain the
			// queue every drainEvery so the subscription keeps
			// delivering.
			timer.Reset(min(wait, drainEvery))
			select {
			case <-r.waiterArrived: // the count above decides
			case <-timer.C:
			case <-ctx.Done():
			}
			timer.Stop()
		}
		r.applyMu.Lock()
		// The batch is bounded; finishing it on shutdown is cheaper than
		// rolling it back, so it ignores cancellation.
		err := r.applyLocked(context.WithoutCancel(ctx), batch)
		r.applyMu.Unlock()
		if err != nil {
			return err
		}
	}
}

// drain appends queued items to batch without blocking, up to MaxBatch.
func drain(queue <-chan item, batch *[]item) {
	for len(*batch) < MaxBatch {
		select {
		case it := <-queue:
			*batch = append(*batch, it)
		default:
			return
		}
	}
}

// Rebuild empties the read models and replays the log from position 0 (R4).
// The `payledger rebuild` command runs it with the server stopped; while it
// runs, Snapshot and the queries see the partially rebuilt state.
func (r *ReadModels) Rebuild(ctx context.Context, store eventstore.Store) error {
	if r.writeDB == nil {
		return errReadOnly
	}
	r.applyMu.Lock()
	defer r.applyMu.Unlock()
	tx, err := r.writeDB.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("projections: rebuild: begin: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if err := r.dialect.fence(ctx, tx); err != nil {
		return fmt.Errorf("projections: rebuild: %w", err)
	}
	for _, q := range r.dialect.resetStatements() {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("projections: rebuild: %s: %w", q, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return withCause(ctx, fmt.Errorf("projections: rebuild: commit reset: %w", err))
	}
	r.balancesFlushed, r.stale = 0, make(map[string]struct{})
	r.mu.Lock()
	r.accounts, r.checkpoint = make(map[string]account), 0
	r.mu.Unlock()
	return r.catchUpLocked(ctx, store)
}

// pendingEntry is one statement row waiting for the batch transaction.
type pendingEntry struct {
	accountID    string
	timeNs       int64
	position     int64
	seq          int
	eventID      string
	typ          string
	amount       string
	currency     string
	counterparty string
	balanceAfter string
	description  string
	ref          string
}

// Valid range of int64 nanoseconds since the Unix epoch.
var (
	minTime = time.Unix(0, -1<<63).UTC()
	maxTime = time.Unix(0, 1<<63-1).UTC()
)

// applyLocked applies events in one transaction. Events at or below the
// checkpoint are skipped. If an event cannot be applied, the events before
// it are still committed (so the checkpoint points right before the bad
// event) and the error names its position. The caller holds applyMu.
func (r *ReadModels) applyLocked(ctx context.Context, events []item) error {
	if len(events) > MaxBatch {
		for len(events) > 0 {
			n := min(len(events), MaxBatch)
			if err := r.applyLocked(ctx, events[:n]); err != nil {
				return err
			}
			events = events[n:]
		}
		return nil
	}
	cp := r.checkpoint // applyMu held: no need for mu to read

	staged := make(map[string]account)
	get := func(id string) (account, bool) {
		if a, ok := staged[id]; ok {
			return a, true
		}
		a, ok := r.accounts[id]
		return a, ok
	}
	entries := make([]pendingEntry, 0, 2*len(events))
	var cases []caseChange
	newCp := cp
	var applyErr error
	for _, it := range events {
		if it.e.Position <= newCp {
			continue
		}
		if it.cf != nil && it.err == nil {
			cases = append(cases, caseChange{fact: *it.cf, position: it.e.Position, timeNs: it.e.OccurredAt.UnixNano()})
		}
		if err := r.stage(it, get, staged, &entries); err != nil {
			applyErr = err
			break
		}
		newCp = it.e.Position
	}
	if newCp == cp {
		return applyErr
	}
	flushed, err := r.commit(ctx, entries, cases, staged, newCp)
	if err != nil {
		return err
	}
	if flushed {
		r.balancesFlushed, r.stale = newCp, make(map[string]struct{})
	} else {
		for id := range staged {
			if _, ok := r.accounts[id]; ok { // stored before, not rewritten
				r.stale[id] = struct{}{}
			}
		}
	}
	r.mu.Lock()
	for id, a := range staged {
		r.accounts[id] = a
	}
	r.checkpoint = newCp
	close(r.advanced)
	r.advanced = make(chan struct{})
	r.mu.Unlock()
	return applyErr
}

// stage computes the effect of one event on the staged balances and the
// statement rows it produces.
func (r *ReadModels) stage(it item, get func(string) (account, bool), staged map[string]account, entries *[]pendingEntry) error {
	e, f := it.e, it.facts
	if it.err != nil {
		return fmt.Errorf("projections: event at position %d (id %s, stream %s): %w", e.Position, e.ID, e.Stream, it.err)
	}
	if f.Opened {
		stageOpened(e.Position, f, get, staged)
		return nil
	}
	if !f.Moves {
		return nil
	}
	m := f.Movement
	if err := checkMovement(e, m); err != nil {
		return err
	}
	// Both sides are validated before either is staged, so a failing event
	// leaves no trace in the batch.
	deb, cred, err := movementSides(e, m, get)
	if err != nil {
		return err
	}
	deb, cred = post(m, e.Position, deb, cred)
	staged[m.Debit] = deb
	staged[m.Credit] = cred
	d, c := movementEntries(e, m, deb, cred)
	*entries = append(*entries, d, c)
	return nil
}

// stageOpened stages an opened account with a zero balance in its
// currency, so its balance is found (and its currency known) before any
// deposit.
func stageOpened(position int64, f domain.LedgerFacts, get func(string) (account, bool), staged map[string]account) {
	if _, exists := get(f.AccountID); !exists && f.AccountID != "" {
		staged[f.AccountID] = account{
			currency: f.Currency, balance: decimal.Zero, debits: decimal.Zero,
			credits: decimal.Zero, lastPosition: position,
		}
	}
}

// movementError is the error of a money event the read models cannot apply.
func movementError(e eventstore.Event, format string, args ...any) error {
	return fmt.Errorf("projections: %s event at position %d (id %s): %s", e.Type, e.Position, e.ID, fmt.Sprintf(format, args...))
}

// checkMovement refuses a movement that names no account on a side, has no
// currency or no positive amount, or a time a statement row cannot hold.
func checkMovement(e eventstore.Event, m domain.Movement) error {
	switch {
	case m.Debit == "" || m.Credit == "":
		return movementError(e, "missing debit or credit account")
	case m.Amount.Currency == "":
		return movementError(e, "amount has no currency")
	case !m.Amount.Amount.IsPositive():
		return movementError(e, "amount %s is not positive", m.Amount.Amount)
	case e.OccurredAt.Before(minTime) || e.OccurredAt.After(maxTime):
		return movementError(e, "occurred_at %s out of range", e.OccurredAt)
	}
	return nil
}

// movementSides returns the current state of the debited and the credited
// account (the same one twice for a transfer to itself), refusing a side
// in another currency; an account not seen yet starts at zero.
func movementSides(e eventstore.Event, m domain.Movement, get func(string) (account, bool)) (deb, cred account, err error) {
	cur := m.Amount.Currency
	side := func(id string) (account, error) {
		a, ok := get(id)
		if !ok {
			return account{currency: cur, balance: decimal.Zero, debits: decimal.Zero, credits: decimal.Zero}, nil
		}
		if a.currency != cur {
			return a, movementError(e, "amount in %s but account %s is in %s", cur, id, a.currency)
		}
		return a, nil
	}
	if deb, err = side(m.Debit); err != nil {
		return deb, cred, err
	}
	cred = deb
	if m.Credit != m.Debit {
		if cred, err = side(m.Credit); err != nil {
			return deb, cred, err
		}
	}
	return deb, cred, nil
}

// post moves the amount from deb to cred at position.
func post(m domain.Movement, position int64, deb, cred account) (account, account) {
	amount := m.Amount.Amount
	deb.balance = deb.balance.Sub(amount)
	deb.debits = deb.debits.Add(amount)
	deb.entries++
	deb.lastPosition = position
	if m.Credit == m.Debit {
		// A transfer to the same account: the credit follows the debit.
		cred = deb
	}
	cred.balance = cred.balance.Add(amount)
	cred.credits = cred.credits.Add(amount)
	cred.entries++
	cred.lastPosition = position
	return deb, cred
}

// movementEntries are the statement rows of a movement, debit side first,
// each with the balance its account had after it.
func movementEntries(e eventstore.Event, m domain.Movement, deb, cred account) (debit, credit pendingEntry) {
	common := pendingEntry{
		timeNs: e.OccurredAt.UnixNano(), position: e.Position, eventID: e.ID, typ: e.Type, amount: canonical(m.Amount.Amount),
		currency: string(m.Amount.Currency), description: m.Description, ref: m.Ref,
	}
	d, c := common, common
	d.accountID, d.seq, d.counterparty, d.balanceAfter = m.Debit, seqDebit, m.Credit, canonical(deb.balance)
	c.accountID, c.seq, c.counterparty, c.balanceAfter = m.Credit, seqCredit, m.Debit, canonical(cred.balance)
	return d, c
}

// commit writes one batch: statement rows, the balances rows due and the
// checkpoint, in one transaction. The rows due are those of new accounts,
// and, when a flush is due (flushEvery positions since the last), those of
// every account changed since the last flush; flushed reports the latter.
func (r *ReadModels) commit(ctx context.Context, entries []pendingEntry, cases []caseChange, staged map[string]account, cp int64) (flushed bool, err error) {
	defer func() { err = withCause(ctx, err) }()
	tx, err := r.writeDB.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("projections: apply up to position %d: begin: %w", cp, err)
	}
	defer func() { _ = tx.Rollback() }()
	if err := r.dialect.fence(ctx, tx); err != nil {
		return false, fmt.Errorf("projections: apply up to position %d: %w", cp, err)
	}
	flush := cp-r.balancesFlushed >= r.flushEvery || r.flushEachBatch
	if flush {
		// The rows before this batch (all at or before the last
		// checkpoint) move to the archive, and this batch's go there
		// directly, in its key order, so no row is written twice.
		if err := archive(ctx, tx, r.dialect, r.checkpoint, true); err != nil {
			return false, fmt.Errorf("projections: apply up to position %d: %w", cp, err)
		}
		slices.SortFunc(entries, func(a, b pendingEntry) int {
			return cmp.Or(strings.Compare(a.accountID, b.accountID), cmp.Compare(a.timeNs, b.timeNs),
				cmp.Compare(a.position, b.position), cmp.Compare(a.seq, b.seq))
		})
		if err := r.stmts.archiveInserts.insert(ctx, tx, entries); err != nil {
			return false, fmt.Errorf("projections: apply up to position %d: %w", cp, err)
		}
	} else {
		// Inserting in key (log) order appends to the table's last page.
		slices.SortFunc(entries, func(a, b pendingEntry) int {
			return cmp.Or(cmp.Compare(a.position, b.position), cmp.Compare(a.seq, b.seq))
		})
		if err := r.stmts.inserts.insert(ctx, tx, entries); err != nil {
			return false, fmt.Errorf("projections: apply up to position %d: %w", cp, err)
		}
	}
	if err := writeCases(ctx, tx, r.dialect, cases); err != nil {
		return false, fmt.Errorf("projections: apply up to position %d: %w", cp, err)
	}
	due := make([]balanceRow, 0, len(staged))
	for id, a := range staged {
		if _, ok := r.accounts[id]; !ok || flush {
			due = append(due, balanceRow{id, a})
		}
	}
	if flush {
		for id := range r.stale {
			if _, ok := staged[id]; !ok {
				due = append(due, balanceRow{id, r.accounts[id]})
			}
		}
	}
	if err := r.stmts.writeBalances(ctx, tx, due); err != nil {
		return false, fmt.Errorf("projections: apply up to position %d: %w", cp, err)
	}
	if flush {
		if _, err := tx.StmtContext(ctx, r.stmts.flushed).ExecContext(ctx, cp); err != nil {
			return false, fmt.Errorf("projections: apply up to position %d: balances flush position: %w", cp, err)
		}
	}
	if _, err := tx.StmtContext(ctx, r.stmts.checkpoint).ExecContext(ctx, cp); err != nil {
		return false, fmt.Errorf("projections: apply up to position %d: checkpoint: %w", cp, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("projections: apply up to position %d: commit: %w", cp, err)
	}
	return flush, nil
}

// caseChange is what one event of a loss case or dispute does to its row.
type caseChange struct {
	fact     domain.CaseFact
	position int64
	timeNs   int64
}

// writeCases applies the batch's case events in log order: an opening
// inserts the row (once: a redelivered opening changes nothing), every
// later event sets the status. Case events are rare, so one statement
// each is cheap.
func writeCases(ctx context.Context, tx *sql.Tx, d dialect, cases []caseChange) error {
	for _, c := range cases {
		f := c.fact
		var err error
		switch {
		case f.Opens:
			due := int64(0)
			if !f.DueBy.IsZero() {
				due = f.DueBy.UnixNano()
			}
			_, err = tx.ExecContext(ctx, d.rebind(`INSERT INTO cases (case_id, kind, account_id, status, opened_ns, due_ns, ended_ns, last_position)
				VALUES (?, ?, ?, ?, ?, ?, 0, ?) ON CONFLICT (case_id) DO NOTHING`), f.CaseID, f.Kind, f.AccountID, f.Status, c.timeNs, due, c.position)
		default:
			ended := int64(0)
			if f.Ends {
				ended = c.timeNs
			}
			_, err = tx.ExecContext(ctx, d.rebind(`UPDATE cases SET status = ?, ended_ns = ?, last_position = ? WHERE case_id = ?`),
				f.Status, ended, c.position, f.CaseID)
		}
		if err != nil {
			return fmt.Errorf("case %s at position %d: %w", f.CaseID, c.position, err)
		}
	}
	return nil
}

// withCause adds ctx's error to err once ctx has ended. database/sql rolls
// a transaction back when its context ends and then reports only
// sql.ErrTxDone, which a caller (Run's, on shutdown) could not tell from a
// failure.
func withCause(ctx context.Context, err error) error {
	if cerr := ctx.Err(); err != nil && cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("%w (%w)", err, cerr)
	}
	return err
}

// archiveSQL moves the statement rows up to a position from entries into
// entries_archive (see schemaSQL). It inserts them in the archive's key
// order, which entries_by_account gives without a sort, so each account's
// rows are appended to its range in one pass.
const archiveSQL = `INSERT INTO entries_archive (account_id, time_ns, position, seq, event_id, type, amount, currency,
		counterparty, balance_after, description, ref)
	SELECT account_id, time_ns, position, seq, event_id, type, amount, currency,
		counterparty, balance_after, description, ref
	FROM entries WHERE position <= ? ORDER BY account_id, time_ns, position, seq`

// archive moves the statement rows at or before position into
// entries_archive, in tx. With all (position is the checkpoint, as at a
// flush) every row of entries goes, and SQLite empties the table and its
// index page by page instead of deleting row by row.
func archive(ctx context.Context, tx *sql.Tx, d dialect, position int64, all bool) error {
	if _, err := tx.ExecContext(ctx, d.rebind(archiveSQL), position); err != nil {
		return fmt.Errorf("archive the statement rows up to position %d: %w", position, err)
	}
	del, args := "DELETE FROM entries", []any{}
	if !all {
		del, args = d.rebind("DELETE FROM entries WHERE position <= ?"), []any{position}
	}
	if _, err := tx.ExecContext(ctx, del, args...); err != nil {
		return fmt.Errorf("remove the archived statement rows up to position %d: %w", position, err)
	}
	return nil
}

// balanceRow is one balances row to write.
type balanceRow struct {
	id string
	a  account
}

// writeBalances upserts rows, up to sqlrows.MaxRows per statement: the
// per-statement overhead, not SQLite's work, was most of the cost of
// writing them one by one.
func (w *writerStmts) writeBalances(ctx context.Context, tx *sql.Tx, rows []balanceRow) error {
	return w.upserts.Exec(ctx, tx, len(rows), func(args []any, i int) []any {
		b := rows[i]
		return append(args, b.id, string(b.a.currency), canonical(b.a.balance), canonical(b.a.debits),
			canonical(b.a.credits), b.a.entries, b.a.lastPosition)
	}, sqlrows.Wrap(func(first, count int) string {
		return fmt.Sprintf("balances of %s and %d more", rows[first].id, count-1)
	}))
}

// balanceCols is the column count of one balances row.
const balanceCols = 7

// upsertSQL builds a multi-row upsert of balances rows.
func upsertSQL(rows int) string {
	return `INSERT INTO balances (account_id, currency, balance, debits, credits, entries, last_position) VALUES ` +
		sqlrows.Values(rows, balanceCols) +
		` ON CONFLICT (account_id) DO UPDATE SET currency = excluded.currency, balance = excluded.balance,
		debits = excluded.debits, credits = excluded.credits, entries = excluded.entries,
		last_position = excluded.last_position`
}

// entryCols is the column count of one entries row.
const entryCols = 12

// writerStmts are prepared once, on the writer's only connection, and used
// by every batch through Tx.StmtContext, which finds them already prepared
// on the transaction's connection (database/sql prepares them again by
// itself should the connection ever be replaced). Preparing the multi-row
// inserts anew for every live batch was a seventh of the projection's CPU.
type writerStmts struct {
	inserts        entryInserts       // entries rows
	archiveInserts entryInserts       // entries_archive rows
	upserts        sqlrows.Statements // balances rows
	flushed        *sql.Stmt
	checkpoint     *sql.Stmt
}

// entryInserts are the multi-row inserts of statement rows into one table.
type entryInserts struct {
	table string
	stmts sqlrows.Statements
}

func (w *writerStmts) prepare(db *sql.DB, d dialect) error {
	ctx := context.Background()
	var err error
	w.inserts.table, w.archiveInserts.table = "entries", "entries_archive"
	for _, ins := range []*entryInserts{&w.inserts, &w.archiveInserts} {
		table := ins.table
		insert := func(rows int) string { return d.rebind(d.insertEntriesVerb() + insertSQL(table, rows)) }
		if ins.stmts, err = sqlrows.Prepare(ctx, db, insert); err != nil {
			return fmt.Errorf("prepare %s insert: %w", ins.table, err)
		}
	}
	if w.upserts, err = sqlrows.Prepare(ctx, db, func(rows int) string { return d.rebind(upsertSQL(rows)) }); err != nil {
		return fmt.Errorf("prepare balances upsert: %w", err)
	}
	if w.flushed, err = db.PrepareContext(ctx, d.rebind("UPDATE balances_flushed SET position = ? WHERE id = 1")); err != nil {
		return fmt.Errorf("prepare balances flush update: %w", err)
	}
	if w.checkpoint, err = db.PrepareContext(ctx, d.rebind("UPDATE checkpoint SET position = ? WHERE id = 1")); err != nil {
		return fmt.Errorf("prepare checkpoint update: %w", err)
	}
	return nil
}

func (ins *entryInserts) insert(ctx context.Context, tx *sql.Tx, entries []pendingEntry) error {
	return ins.stmts.Exec(ctx, tx, len(entries), func(args []any, i int) []any {
		e := &entries[i]
		return append(args, e.accountID, e.timeNs, e.position, e.seq, e.eventID, e.typ, e.amount,
			e.currency, e.counterparty, e.balanceAfter, e.description, e.ref)
	}, sqlrows.Wrap(func(first, _ int) string {
		return fmt.Sprintf("insert statement entries into %s at position %d", ins.table, entries[first].position)
	}))
}

// insertSQL builds a multi-row insert after the dialect's verb
// (insertEntriesVerb).
func insertSQL(table string, rows int) string {
	return ` INTO ` + table + ` (account_id, time_ns, position, seq, event_id, type, amount, currency,
		counterparty, balance_after, description, ref) VALUES ` + sqlrows.Values(rows, entryCols)
}

// canonical renders d exactly, without exponent and without trailing
// zeros, independent of shopspring/decimal's package-level formatting
// switches, so stored amounts and Digest are stable across processes.
func canonical(d decimal.Decimal) string {
	// Fast path, for every amount a ledger sees: a coefficient of at most
	// 18 digits (so it fits an int64) and at most 18 places.
	if exp := d.Exponent(); exp <= 0 && exp >= -18 && d.NumDigits() <= 18 {
		return canonicalInt64(d.CoefficientInt64(), int(-exp))
	}
	return canonicalGeneral(d)
}

// canonicalGeneral is canonical for any decimal, through its string form.
func canonicalGeneral(d decimal.Decimal) string {
	places := max(0, -d.Exponent())
	s := d.StringFixed(places)
	if strings.IndexByte(s, '.') >= 0 {
		s = strings.TrimRight(s, "0")
		s = strings.TrimSuffix(s, ".")
	}
	if s == "-0" {
		s = "0"
	}
	return s
}

// canonicalInt64 renders coef × 10^-places like canonical: no exponent, no
// trailing fractional zeros, no "-0".
func canonicalInt64(coef int64, places int) string {
	if coef == 0 {
		return "0"
	}
	neg := coef < 0
	u := uint64(coef)
	if neg {
		u = -u
	}
	// Drop trailing zeros of the fraction.
	for places > 0 && u%10 == 0 {
		u /= 10
		places--
	}
	var buf [48]byte // sign, 19 digits, point, up to 18 leading zeros
	i := len(buf)
	for digits := 0; u > 0 || digits <= places; digits++ {
		if digits == places && places > 0 {
			i--
			buf[i] = '.'
		}
		i--
		buf[i] = byte('0' + u%10)
		u /= 10
	}
	if neg {
		i--
		buf[i] = '-'
	}
	return string(buf[i:])
}

// setWriteMode sets the writer connection's write mode (SQLite only).
func (r *ReadModels) setWriteMode(ctx context.Context, m writeMode) error {
	return r.dialect.setWriteMode(ctx, r.writeDB, m)
}

// readTx begins a read-only transaction that sees one state of every
// table, whatever the backend.
func (r *ReadModels) readTx(ctx context.Context) (*sql.Tx, error) {
	return r.readDB.BeginTx(ctx, r.dialect.readTxOptions())
}
