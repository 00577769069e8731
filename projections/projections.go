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
	"time"

	"github.com/shopspring/decimal"
	_ "modernc.org/sqlite" // pure-Go SQLite driver "sqlite", no cgo

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/eventstore"
)

// Limits that bound every loop and batch.
const (
	// MaxBatch is the largest number of events applied in one SQLite
	// transaction (and read per ReadAll). Every batch rewrites the tail
	// page of each account it touches, so larger batches put more entries
	// on each written page: measured on 100k payments over 1,000 accounts,
	// 1,000-event batches wrote 933 MB, 10,000-event batches 153 MB. The
	// bound (eventstore.MaxReadBatch) keeps one transaction well under a
	// second and its memory to a few MB; under light load batches are
	// small and applied within milliseconds.
	MaxBatch = eventstore.MaxReadBatch
	// maxReaders bounds the read connection pool.
	maxReaders = 8
)

// schemaVersion is stored in PRAGMA user_version. A file with another
// version is refused; the cure is deleting it and rebuilding from the log.
const schemaVersion = 2

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
CREATE TABLE IF NOT EXISTS balances (
	account_id    TEXT PRIMARY KEY,
	currency      TEXT NOT NULL,
	balance       TEXT NOT NULL,
	debits        TEXT NOT NULL,
	credits       TEXT NOT NULL,
	entries       INTEGER NOT NULL,
	last_position INTEGER NOT NULL
) WITHOUT ROWID;
-- Rows are stored in log order, so a batch appends to the last pages instead
-- of dirtying one page per account it touches (a batch's dirty pages are
-- what a commit writes). The statement index (R17) is the narrow secondary
-- index below: any page of any period is one range scan over it.
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
	mu         sync.RWMutex
	accounts   map[string]account
	checkpoint int64
	advanced   chan struct{} // closed and replaced whenever checkpoint moves
	closed     chan struct{}
	closeOnce  sync.Once
}

// Open opens (creating if needed) the read-model database at path, for
// example DIR/readmodels.db, and loads balances and checkpoint into memory
// so that a restart resumes where it stopped instead of replaying the log.
func Open(path string) (*ReadModels, error) {
	if path == "" || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("projections: open %q: path must be non-empty and contain no '?' or '#'", path)
	}
	// synchronous=NORMAL, unlike the event log's FULL: in WAL mode a crash
	// can lose the last committed batches but never tears one, and the
	// checkpoint lives in the same transaction as the tables. What a crash
	// loses is therefore a consistent older state, which Run catches up
	// from the log (derived data, position-idempotent). The log itself is
	// what must be durable, and it is fsynced on every commit.
	base := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=synchronous(NORMAL)"
	// The writer: one connection, write lock taken at BEGIN, a 64 MB page
	// cache so a batch's dirty pages are not spilled mid-transaction,
	// temporary data in memory, and a WAL checkpoint every 16k pages so a
	// hot page rewritten by many batches is copied to the database once.
	w, err := sql.Open("sqlite", base+"&_txlock=immediate&_pragma=cache_size(-65536)&_pragma=temp_store(MEMORY)&_pragma=wal_autocheckpoint(16384)")
	if err != nil {
		return nil, fmt.Errorf("projections: open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	r := &ReadModels{
		path:     path,
		writeDB:  w,
		accounts: make(map[string]account),
		advanced: make(chan struct{}),
		closed:   make(chan struct{}),
	}
	if err := r.initSchema(); err != nil {
		_ = w.Close()
		return nil, err
	}
	rd, err := sql.Open("sqlite", base+"&_pragma=query_only(1)")
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
	if v != 0 && v != schemaVersion {
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
	tx, err := r.readDB.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("projections: load %s: %w", r.path, err)
	}
	defer func() { _ = tx.Rollback() }()
	var cp int64
	if err := tx.QueryRowContext(ctx, "SELECT position FROM checkpoint WHERE id = 1").Scan(&cp); err != nil {
		return fmt.Errorf("projections: load checkpoint: %w", err)
	}
	rows, err := tx.QueryContext(ctx, "SELECT account_id, currency, balance, debits, credits, entries, last_position FROM balances")
	if err != nil {
		return fmt.Errorf("projections: load balances: %w", err)
	}
	defer rows.Close()
	accounts := make(map[string]account)
	for rows.Next() {
		var (
			id, cur, bal, deb, cred string
			a                       account
		)
		if err := rows.Scan(&id, &cur, &bal, &deb, &cred, &a.entries, &a.lastPosition); err != nil {
			return fmt.Errorf("projections: load balances: %w", err)
		}
		a.currency = domain.Currency(cur)
		for _, f := range []struct {
			dst *decimal.Decimal
			s   string
		}{{&a.balance, bal}, {&a.debits, deb}, {&a.credits, cred}} {
			d, err := decimal.NewFromString(f.s)
			if err != nil {
				return fmt.Errorf("projections: load balance of %s: amount %q: %w", id, f.s, err)
			}
			*f.dst = d
		}
		accounts[id] = a
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("projections: load balances: %w", err)
	}
	r.mu.Lock()
	r.accounts, r.checkpoint = accounts, cp
	r.mu.Unlock()
	return nil
}

// Close releases the database. Stop Run (cancel its context) first; waiters
// in WaitFor return an error.
func (r *ReadModels) Close() error {
	r.closeOnce.Do(func() { close(r.closed) })
	var errs []error
	if r.readDB != nil {
		errs = append(errs, r.readDB.Close())
	}
	errs = append(errs, r.writeDB.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("projections: close %s: %w", r.path, err)
	}
	return nil
}

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
func (r *ReadModels) WaitFor(ctx context.Context, position int64) error {
	for {
		r.mu.RLock()
		cp, ch := r.checkpoint, r.advanced
		r.mu.RUnlock()
		if cp >= position {
			return nil
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
	r.applyMu.Lock()
	defer r.applyMu.Unlock()
	return r.catchUpLocked(ctx, store)
}

// item is a delivered event with its payload already decoded. Decoding is
// done by the goroutine that reads or receives events, so it overlaps with
// the applier's SQL work; a decode error travels with the event and is
// reported when the applier reaches it, after the events before it.
type item struct {
	e   eventstore.Event
	ev  domain.Event
	err error
}

func decodeItem(e eventstore.Event) item {
	if !relevant[e.Type] && domain.KnownEventType(e.Type, e.SchemaVersion) {
		return item{e: e} // known, and it changes nothing here: skip decoding
	}
	ev, err := domain.DecodeEvent(e.Type, e.SchemaVersion, e.Payload)
	return item{e: e, ev: ev, err: err}
}

// relevant are the event types that change these read models: openings and
// the money events of domain.MovementOf. Half of a payment's events
// (PaymentInitiated) are not, and decoding them was a tenth of the
// projection's CPU.
var relevant = map[string]bool{
	domain.TypeAccountOpened: true, domain.TypeFundsDeposited: true,
	domain.TypePaymentConfirmed: true, domain.TypeFundsWithdrawn: true,
}

// fetched is one batch read and decoded ahead of the applier.
type fetched struct {
	items []item
	err   error
}

func (r *ReadModels) catchUpLocked(ctx context.Context, store eventstore.Store) error {
	head, err := store.Head(ctx)
	if err != nil {
		return fmt.Errorf("projections: catch up: read head: %w", err)
	}
	from := r.Checkpoint()
	if from >= head {
		return nil
	}
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
			events, err := store.ReadAll(ctx, after, MaxBatch)
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

	queue := make(chan item, MaxBatch)
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
func (r *ReadModels) applyLoop(ctx context.Context, queue <-chan item) error {
	batch := make([]item, 0, MaxBatch)
	for {
		select {
		case <-ctx.Done():
			return nil
		case it := <-queue:
			batch = append(batch[:0], it)
		}
	fill:
		for len(batch) < MaxBatch {
			select {
			case it := <-queue:
				batch = append(batch, it)
			default:
				break fill
			}
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

// Rebuild empties the read models and replays the log from position 0 (R4).
// The `payledger rebuild` command runs it with the server stopped; while it
// runs, Snapshot and the queries see the partially rebuilt state.
func (r *ReadModels) Rebuild(ctx context.Context, store eventstore.Store) error {
	r.applyMu.Lock()
	defer r.applyMu.Unlock()
	tx, err := r.writeDB.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("projections: rebuild: begin: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	for _, q := range []string{
		"DELETE FROM entries",
		"DELETE FROM balances",
		"UPDATE checkpoint SET position = 0 WHERE id = 1",
	} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("projections: rebuild: %s: %w", q, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("projections: rebuild: commit reset: %w", err)
	}
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
	r.mu.RLock()
	cp := r.checkpoint
	r.mu.RUnlock()

	staged := make(map[string]account)
	get := func(id string) (account, bool) {
		if a, ok := staged[id]; ok {
			return a, true
		}
		r.mu.RLock()
		a, ok := r.accounts[id]
		r.mu.RUnlock()
		return a, ok
	}
	entries := make([]pendingEntry, 0, 2*len(events))
	newCp := cp
	var applyErr error
	for _, it := range events {
		if it.e.Position <= newCp {
			continue
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
	if err := r.commit(ctx, entries, staged, newCp); err != nil {
		return err
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
	e, ev := it.e, it.ev
	if it.err != nil {
		return fmt.Errorf("projections: event at position %d (id %s, stream %s): %w", e.Position, e.ID, e.Stream, it.err)
	}
	if opened, ok := ev.(domain.AccountOpened); ok {
		// An opened account has a zero balance in its currency, so its
		// balance is found (and its currency known) before any deposit.
		if _, exists := get(opened.AccountID); !exists && opened.AccountID != "" {
			staged[opened.AccountID] = account{
				currency: opened.Currency, balance: decimal.Zero, debits: decimal.Zero,
				credits: decimal.Zero, lastPosition: e.Position,
			}
		}
		return nil
	}
	m, ok := domain.MovementOf(ev)
	if !ok {
		return nil
	}
	fail := func(format string, args ...any) error {
		return fmt.Errorf("projections: %s event at position %d (id %s): %s", e.Type, e.Position, e.ID, fmt.Sprintf(format, args...))
	}
	cur := m.Amount.Currency
	switch {
	case m.Debit == "" || m.Credit == "":
		return fail("missing debit or credit account")
	case cur == "":
		return fail("amount has no currency")
	case !m.Amount.Amount.IsPositive():
		return fail("amount %s is not positive", m.Amount.Amount)
	case e.OccurredAt.Before(minTime) || e.OccurredAt.After(maxTime):
		return fail("occurred_at %s out of range", e.OccurredAt)
	}
	side := func(id string) (account, error) {
		a, ok := get(id)
		if !ok {
			return account{currency: cur, balance: decimal.Zero, debits: decimal.Zero, credits: decimal.Zero}, nil
		}
		if a.currency != cur {
			return a, fail("amount in %s but account %s is in %s", cur, id, a.currency)
		}
		return a, nil
	}
	// Both sides are validated before either is staged, so a failing event
	// leaves no trace in the batch.
	deb, err := side(m.Debit)
	if err != nil {
		return err
	}
	cred := deb
	if m.Credit != m.Debit {
		if cred, err = side(m.Credit); err != nil {
			return err
		}
	}
	amount := m.Amount.Amount
	deb.balance = deb.balance.Sub(amount)
	deb.debits = deb.debits.Add(amount)
	deb.entries++
	deb.lastPosition = e.Position
	if m.Credit == m.Debit {
		// A transfer to the same account: the credit follows the debit.
		cred = deb
	}
	cred.balance = cred.balance.Add(amount)
	cred.credits = cred.credits.Add(amount)
	cred.entries++
	cred.lastPosition = e.Position
	staged[m.Debit] = deb
	staged[m.Credit] = cred

	ts := e.OccurredAt.UnixNano()
	amt := canonical(amount)
	common := pendingEntry{
		timeNs: ts, position: e.Position, eventID: e.ID, typ: e.Type, amount: amt,
		currency: string(cur), description: m.Description, ref: m.Ref,
	}
	d, c := common, common
	d.accountID, d.seq, d.counterparty, d.balanceAfter = m.Debit, seqDebit, m.Credit, canonical(deb.balance)
	c.accountID, c.seq, c.counterparty, c.balanceAfter = m.Credit, seqCredit, m.Debit, canonical(cred.balance)
	*entries = append(*entries, d, c)
	return nil
}

// commit writes one batch: statement rows, the touched balances and the
// checkpoint, in one transaction.
func (r *ReadModels) commit(ctx context.Context, entries []pendingEntry, staged map[string]account, cp int64) error {
	tx, err := r.writeDB.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("projections: apply up to position %d: begin: %w", cp, err)
	}
	defer func() { _ = tx.Rollback() }()
	// Inserting in key (log) order appends to the table's last page.
	slices.SortFunc(entries, func(a, b pendingEntry) int {
		return cmp.Or(cmp.Compare(a.position, b.position), cmp.Compare(a.seq, b.seq))
	})
	if err := insertEntries(ctx, tx, entries); err != nil {
		return fmt.Errorf("projections: apply up to position %d: %w", cp, err)
	}
	if len(staged) > 0 {
		up, err := tx.PrepareContext(ctx, `INSERT INTO balances (account_id, currency, balance, debits, credits, entries, last_position)
			VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (account_id) DO UPDATE SET currency = excluded.currency, balance = excluded.balance,
				debits = excluded.debits, credits = excluded.credits, entries = excluded.entries,
				last_position = excluded.last_position`)
		if err != nil {
			return fmt.Errorf("projections: apply up to position %d: prepare balances: %w", cp, err)
		}
		defer up.Close()
		for id, a := range staged {
			if _, err := up.ExecContext(ctx, id, string(a.currency), canonical(a.balance), canonical(a.debits),
				canonical(a.credits), a.entries, a.lastPosition); err != nil {
				return fmt.Errorf("projections: apply up to position %d: balance of %s: %w", cp, id, err)
			}
		}
	}
	if _, err := tx.ExecContext(ctx, "UPDATE checkpoint SET position = ? WHERE id = 1", cp); err != nil {
		return fmt.Errorf("projections: apply up to position %d: checkpoint: %w", cp, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("projections: apply up to position %d: commit: %w", cp, err)
	}
	return nil
}

// entryCols is the column count of one entries row.
const entryCols = 12

// entriesPerInsert rows go into one multi-row INSERT: fewer statement
// executions per batch, well under SQLite's 32766 bound variables.
const entriesPerInsert = 64

func insertEntries(ctx context.Context, tx *sql.Tx, entries []pendingEntry) error {
	var full *sql.Stmt
	args := make([]any, 0, entriesPerInsert*entryCols)
	for len(entries) > 0 {
		n := min(len(entries), entriesPerInsert)
		args = args[:0]
		for _, e := range entries[:n] {
			args = append(args, e.accountID, e.timeNs, e.position, e.seq, e.eventID, e.typ, e.amount,
				e.currency, e.counterparty, e.balanceAfter, e.description, e.ref)
		}
		var err error
		if n == entriesPerInsert {
			if full == nil {
				full, err = tx.PrepareContext(ctx, insertSQL(entriesPerInsert))
				if err != nil {
					return fmt.Errorf("prepare entries insert: %w", err)
				}
				defer full.Close()
			}
			_, err = full.ExecContext(ctx, args...)
		} else {
			_, err = tx.ExecContext(ctx, insertSQL(n), args...)
		}
		if err != nil {
			return fmt.Errorf("insert statement entries at position %d: %w", entries[0].position, err)
		}
		entries = entries[n:]
	}
	return nil
}

// insertSQL builds a multi-row insert. OR ROLLBACK: a duplicate key can only
// be a bug (the checkpoint already filters redelivery) and must fail the
// whole batch anyway; unlike the default ABORT it also spares SQLite a
// statement journal for every multi-row statement.
func insertSQL(rows int) string {
	var b strings.Builder
	b.WriteString(`INSERT OR ROLLBACK INTO entries (account_id, time_ns, position, seq, event_id, type, amount, currency,
		counterparty, balance_after, description, ref) VALUES `)
	for i := range rows {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?,?,?,?,?,?,?,?,?,?,?,?)")
	}
	return b.String()
}

// canonical renders d exactly, without exponent and without trailing
// zeros, independent of shopspring/decimal's package-level formatting
// switches, so stored amounts and Digest are stable across processes.
func canonical(d decimal.Decimal) string {
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
