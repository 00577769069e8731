// Package sqlite is the embedded default event-log adapter: SQLite through
// the pure-Go driver modernc.org/sqlite (no cgo), in WAL mode. An append is
// acknowledged only once the WAL holding it has been fsynced, so it
// survives a power cut: the writer commits at synchronous=NORMAL and a
// syncer goroutine fsyncs each commit before it is acknowledged or visible
// (see writer.go).
//
// Throughput comes from group commit, not from weaker durability: one writer
// goroutine owns the only write connection, takes the queued append requests
// and commits as many as it can gather in ONE transaction (one fsync), while
// still checking each request's expected version on its own. Readers use a
// separate connection pool and, thanks to WAL, never block the writer.
//
// Events are stored packed, a few dozen consecutive ones per row of the
// segments table (see segment.go), and found by stream and by id through
// two indexes that the writer maintains in memory and writes out in sorted
// batches (see streamindex.go). The writer alone decides stream versions and
// id uniqueness, so only one Store may write a file: Open takes an exclusive
// lock on it (ErrLocked).
//
// Live subscribers do not read back what the writer has just committed:
// after every successful commit the writer copies the new events into a
// bounded in-memory tail of the log (see liveBuffer and Options.LiveBuffer),
// from which a subscriber whose next position is still held there takes its
// events. A subscriber that falls behind the tail, or catches up from older
// positions, reads SQLite as before.
//
// It implements the eventstore port and must never import the domain, the
// ledger or any other package above the port.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/payledger/payledger/eventstore"
	"github.com/payledger/payledger/internal/filelock"
	"github.com/payledger/payledger/internal/sqlitedsn"
	"github.com/payledger/payledger/internal/sqlrows"
)

// ErrLocked is returned by Open when another Store, in this process or
// another, has the database file open (see lockFile; unix builds only).
var ErrLocked = errors.New("the event store is open elsewhere (one writer per file)")

// Compile-time proof that *Store satisfies the port.
var _ eventstore.Store = (*Store)(nil)

const (
	// schemaVersion is the layout version recorded in the meta table, so a
	// later release can tell which migrations an existing file needs.
	schemaVersion = "5"
	// retentionMarker is part of the message the retention triggers raise;
	// MapRetentionError recognises the failure by it.
	retentionMarker = "events are retained"
	// subscribeBatch is how many events Subscribe reads per round trip.
	subscribeBatch = 1000
	// defaultLiveBuffer is the default Options.LiveBuffer: the number of
	// most recent events kept in memory for live subscribers.
	defaultLiveBuffer = 16384
	// writerCacheKiB is the writer connection's page cache, as a negative
	// cache_size (KiB): 64 MiB instead of SQLite's 2 MiB, so the pages a
	// growing log keeps touching (the right edges of the segments table and
	// of id_index, the stream index pages a flush writes) stay in memory.
	writerCacheKiB = -65536
	// readerMmapBytes is each reader connection's mmap_size: pages of the
	// database file are read through a memory map instead of one read call
	// each (the WAL is still read with read calls), which makes reading a
	// stream scattered over the log faster (BenchmarkReadStreamScattered).
	// It reserves address space, not memory.
	readerMmapBytes = 256 << 20
	// defaultIndexBatch is the default Options.IndexBatch.
	defaultIndexBatch = 65536
	// indexChunk bounds the stream_index rows (and as many id_index rows)
	// one group-commit transaction writes for a flush (a few ms of the
	// writer's time); a transaction writes fewer unless it appends at least
	// half as many events itself (see flushIndex).
	indexChunk = 1024
	// minIndexChunk is the smallest chunk a transaction writes for a flush,
	// however few events it appends itself.
	minIndexChunk = 64
	// liveBufferBytes bounds the variable-size data (payloads and strings)
	// the live buffer holds, whatever its event count.
	liveBufferBytes = 16 << 20
	// maxCachedStreams bounds the writer's stream-state cache; when it grows
	// past this the cache is dropped and refilled from the database on use.
	maxCachedStreams = 1 << 16
	// maxBatchRequests bounds the number of requests in one transaction,
	// independently of their event count.
	maxBatchRequests = 4096
	// pageSize is the page size of a new event log (SQLite keeps the size
	// a file was created with). 16 KiB rather than SQLite's 4 KiB: a
	// commit writes each dirty page to the WAL as its own frame (two write
	// calls each), and a group-commit transaction appends tens of rows to
	// the right edge of the log, so larger pages mean a quarter of the
	// frames and calls for the same bytes, for more payments/s and less CPU
	// per payment in alternating runs of payledger bench.
	pageSize = 16384
	// walAutoCheckpoint is the writer's wal_autocheckpoint, in pages:
	// SQLite's default count, which at a new log's 16 KiB page (pageSize)
	// is 16 MiB of WAL rather than the 4 MiB it is at SQLite's 4 KiB page.
	// The automatic checkpoint runs inside the commit on the writer
	// goroutine, and the pages a busy log rewrites (the rightmost leaves
	// and the index pages many streams share) are copied into the database
	// once per checkpoint, however often they were committed since:
	// checkpointing less often cuts the writer's time per transaction
	// (payledger bench). Durability is unchanged (every commit is fsynced
	// before it is acknowledged, writer.go); the cost is a larger WAL file
	// and a longer replay after a crash.
	walAutoCheckpoint = 1000
)

var schemaSQL = `
CREATE TABLE IF NOT EXISTS meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS segments (
	first_position INTEGER PRIMARY KEY CHECK (first_position >= 1),
	last_position  INTEGER NOT NULL CHECK (last_position >= first_position),
	events         BLOB    NOT NULL
);
CREATE TABLE IF NOT EXISTS streams (
	id   INTEGER PRIMARY KEY,
	name TEXT    NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS stream_index (
	stream   INTEGER NOT NULL, -- streams.id
	version  INTEGER NOT NULL,
	position INTEGER NOT NULL,
	PRIMARY KEY (stream, version)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS id_index (
	key      INTEGER NOT NULL, -- idKey(id)
	position INTEGER NOT NULL,
	PRIMARY KEY (key, position)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dictionaries (
	id         INTEGER PRIMARY KEY,
	trained_at INTEGER NOT NULL,
	dict       BLOB    NOT NULL
);
` + retentionTriggers("segments") + retentionTriggers("stream_index") + retentionTriggers("id_index") +
	retentionTriggers("dictionaries") + retentionTriggers("streams") + `
INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', '` + schemaVersion + `');
INSERT OR IGNORE INTO meta (key, value) VALUES ('indexed_upto', '0');
`

// retentionTriggers forbids deleting or rewriting the rows of table (R2).
func retentionTriggers(table string) string {
	return "CREATE TRIGGER IF NOT EXISTS " + table + "_no_delete BEFORE DELETE ON " + table + `
BEGIN
	SELECT RAISE(ABORT, '` + retentionMarker + ` (R2): delete forbidden');
END;
CREATE TRIGGER IF NOT EXISTS ` + table + "_no_update BEFORE UPDATE ON " + table + `
BEGIN
	SELECT RAISE(ABORT, '` + retentionMarker + ` (R2): update forbidden');
END;
`
}

const (
	sqlInsertSegment = `INSERT INTO segments (first_position, last_position, events) VALUES (?, ?, ?)`
	// sqlSegmentAt selects the segment holding a position (if it is stored).
	sqlSegmentAt = `SELECT first_position, events FROM segments WHERE first_position <= ?
	ORDER BY first_position DESC LIMIT 1`
	// sqlSegmentsFrom selects up to ?2 segments from the one holding
	// position ?1 on, in log order.
	sqlSegmentsFrom = `SELECT first_position, events FROM segments
	WHERE first_position >= COALESCE((SELECT MAX(first_position) FROM segments WHERE first_position <= ?1), 0)
	ORDER BY first_position LIMIT ?2`
	sqlHead  = `SELECT COALESCE((SELECT last_position FROM segments ORDER BY first_position DESC LIMIT 1), 0)`
	sqlIDGet = `SELECT position FROM id_index WHERE key = ?`
	// sqlIDAt finds one id_index row (CheckIndexes, checkIndexRows).
	sqlIDAt  = `SELECT position FROM id_index WHERE key = ? AND position = ?`
	sqlMaxID = `SELECT MAX(key) FROM id_index`
	// sqlStreamID is a stream's number in stream_index; the queries below
	// take the stream's name and look its number up the same way.
	sqlStreamID  = `SELECT id FROM streams WHERE name = ?`
	sqlNewStream = `INSERT INTO streams (name) VALUES (?)`
	sqlIndexTail = `SELECT version, position FROM stream_index WHERE stream = (` + sqlStreamID + `) ORDER BY version DESC LIMIT 1`
	// sqlForward and sqlBackward select a stream's indexed events with the
	// segment holding each (the newest segment starting at or before it).
	sqlForward = `SELECT i.position, s.first_position, s.events FROM stream_index i
	JOIN segments s ON s.first_position = (SELECT MAX(first_position) FROM segments WHERE first_position <= i.position)
	WHERE i.stream = (` + sqlStreamID + `) AND i.version >= ? AND i.position <= ? ORDER BY i.version LIMIT ?`
	sqlBackward = `SELECT i.position, s.first_position, s.events FROM stream_index i
	JOIN segments s ON s.first_position = (SELECT MAX(first_position) FROM segments WHERE first_position <= i.position)
	WHERE i.stream = (` + sqlStreamID + `) AND i.version <= ? AND i.position <= ? ORDER BY i.version DESC LIMIT ?`
	sqlVersion = `SELECT COALESCE(MAX(version), 0) FROM stream_index WHERE stream = (` + sqlStreamID + `) AND position <= ?`
	// sqlIdxGet finds a row by the stream's number (the writer's flush),
	// sqlIdxGetByName by its name (CheckIndexes).
	sqlIdxGet       = `SELECT position FROM stream_index WHERE stream = ? AND version = ?`
	sqlIdxGetByName = `SELECT position FROM stream_index WHERE stream = (` + sqlStreamID + `) AND version = ?`
	sqlGetUpto      = `SELECT value FROM meta WHERE key = 'indexed_upto'`
	sqlSetUpto      = `UPDATE meta SET value = ? WHERE key = 'indexed_upto'`
)

// Options tunes the writer. Start from DefaultOptions so that fields added
// later get sensible values.
type Options struct {
	// GroupCommit gathers concurrent appends into one transaction and
	// pipelines the fsync (writer.go) (default true via DefaultOptions()).
	// Turning it off commits every Append on its own at synchronous=FULL,
	// which is only useful as a benchmark baseline.
	GroupCommit bool
	// MaxBatchEvents is the upper bound of events in one transaction
	// (default 2000); it caps the latency one commit adds to its requests.
	// A request that would take a transaction past it waits for the next
	// one; a single request larger than this still commits, alone.
	MaxBatchEvents int
	// QueueSize bounds the pending-append queue (default 4096), so that a
	// burst of writers waits (respecting their contexts) instead of growing
	// memory without limit.
	QueueSize int
	// LiveBuffer is how many of the most recently committed events are kept
	// in memory (default 16384, and at most 16 MiB of payloads and strings)
	// so that live subscribers get them without a query. A negative value
	// disables the buffer: every subscriber then reads SQLite.
	LiveBuffer int
	// IndexBatch is how many committed events may wait in memory before
	// they are written to the stream index in one sorted pass (default
	// 65536; see streamindex.go). Larger batches write fewer index pages
	// per event, which shows as payments/s in long runs of payledger bench
	// (--duration 60s); the tail is rebuilt by a scan of up to that many
	// events on Open, and costs about 100 bytes of memory an event.
	IndexBatch int
	// ObserveSync, when set, is told once per committed transaction how
	// long making it durable took (the syncer's fsync of the WAL with group
	// commit, the commit with its fsync without), so that an operator can
	// see a slow disk; it runs on the write path and must be quick, like a
	// histogram's Observe.
	ObserveSync func(time.Duration)
	// MigrateProgress, when set, is told while Open migrates a log of an
	// older schema how many of its events are packed (schemas 1 and 2) or
	// their ids indexed again (schemas 3 and 4), done of total, so that a
	// command can show how far a long migration is.
	MigrateProgress func(done, total int64)
}

// DefaultOptions returns the production settings: group commit on, 2000
// events per transaction at most, 4096 queued requests at most, the last
// 16384 events kept in memory for live subscribers, the stream index written
// every 65536 events.
func DefaultOptions() Options {
	return Options{GroupCommit: true, MaxBatchEvents: 2000, QueueSize: 4096, LiveBuffer: defaultLiveBuffer,
		IndexBatch: defaultIndexBatch}
}

// Stats counts the writer's work so that tests and operators can see how
// well group commit is batching (Appends or Events per Transaction).
type Stats struct {
	// Transactions is the number of committed write transactions.
	Transactions int64
	// Appends is the number of Append calls that stored new events.
	Appends int64
	// Events is the number of events stored.
	Events int64
	// ReadAllQueries is the number of ReadAll queries run against SQLite,
	// including those Subscribe runs when it is not served from the live
	// buffer.
	ReadAllQueries int64
	// IndexFlushes is the number of times the unindexed tail was written to
	// the stream index.
	IndexFlushes int64
}

// streamState is what the writer needs to append to a stream without
// reading it: its current version and the hash of its last event.
type streamState struct {
	version int64
	hash    [32]byte
}

// appendReq is one Append call travelling to the writer goroutine.
type appendReq struct {
	ctx      context.Context
	stream   string
	expected int64
	events   []eventstore.EventData
	conds    []eventstore.Condition

	// Set by the writer before it closes done.
	skipped bool // the caller's ctx was done before the writer started it
	res     eventstore.AppendResult
	err     error
	done    chan struct{}
}

// Store is the SQLite event store. Create it with Open; it is safe for
// concurrent use and must be closed with Close.
type Store struct {
	path string
	opts Options

	wdb *sql.DB // writer: exactly one connection, used only by run
	rdb *sql.DB // readers: a bounded pool
	// ddb loads the dictionaries, on a connection of its own: a reader
	// that holds one of rdb's for its rows while its segment asks for a
	// dictionary must not wait for another of rdb's, which the other
	// readers may all hold the same way.
	ddb *sql.DB
	sdb *sql.DB // the snapshots' database (snapshots.go)

	// prepared on wdb
	segInsStmt, segAtWStmt, segFromWStmt, headStmt, idGetStmt, idAtStmt, indexTailStmt, idxGetStmt *sql.Stmt
	streamIDStmt, newStreamStmt                                                                    *sql.Stmt
	// idxIns and idIns insert rows into stream_index and id_index
	// (indexRows)
	idxIns, idIns sqlrows.Statements
	// prepared on rdb
	fwdStmt, bwdStmt, segFromStmt, versionStmt, segAtStmt *sql.Stmt

	unlock func() error // releases the file lock taken by Open

	sendMu sync.RWMutex // guards closed against sends on reqs
	closed bool
	reqs   chan *appendReq

	writerDone chan struct{} // closed when run returns
	done       chan struct{} // closed by Close once the writer has stopped

	head     atomic.Int64 // last committed (and published) position
	notifyMu sync.Mutex
	notify   chan struct{} // closed and replaced after every commit
	live     *liveBuffer   // the last committed events, for live subscribers
	tail     *streamTail   // the stream index of the events not yet in stream_index

	// Writer-owned state, touched only by run.
	streams map[string]streamState
	stale   bool  // streams/head must be reloaded before the next batch
	maxKey  int64 // the largest key in id_index: an id of a larger key is not in it
	// streamIDs caches stream numbers committed to the streams table.
	streamIDs map[string]int64
	flying    *flight // the committed transaction waiting for its fsync
	broken    error   // set by a failed fsync: every later append fails
	seg       segmentBuilder
	dict      *segDict // the dictionary new segments are compressed with (dict.go)

	// dicts caches the dictionaries segments name, read through rdb.
	dicts *dictCache
	// dictTrain and dictRetrain are dictTrainEvents and
	// dictRetrainEvents; tests lower them before the first append.
	dictTrain, dictRetrain int64

	// The syncer (writer.go): flights to fsync, and its exit.
	syncs      chan *flight
	syncerDone chan struct{}
	// syncHook, when set (by tests), runs each fsync in its place: it may
	// call sync, delay it or fail.
	syncHook func(sync func() error) error

	// beforeCommit, when set (by tests), runs before each commit; an error
	// fails the transaction as a database failure would.
	beforeCommit func() error
	// noCloseFlush (tests) leaves the unindexed tail on Close, as a crash
	// would.
	noCloseFlush bool
	// indexChunk is indexChunk; tests lower it before the first append.
	indexChunk int

	transactions, appends, events, readAllQueries, indexFlushes atomic.Int64

	closeFlushErr error // the writer's last flush of the stream index

	closeOnce sync.Once
	closeErr  error
}

// dsn builds the modernc DSN for path. The pragmas are set on every new
// connection: WAL so readers never block the writer, the synchronous level
// (FULL: a commit is on disk before it returns; the pipelined writer uses
// NORMAL and fsyncs the WAL itself, see writer.go), and a busy timeout so
// another connection to the same file waits instead of failing. The writer
// also checkpoints less often than SQLite's default (see walAutoCheckpoint).
func dsn(path string, readOnly bool, synchronous string) string {
	d := sqlitedsn.File(path).BusyTimeout(10 * time.Second).JournalMode("WAL").Synchronous(synchronous)
	if readOnly {
		d = d.QueryOnly().MmapSize(readerMmapBytes)
	} else {
		d = d.TxLockImmediate().WALAutocheckpoint(walAutoCheckpoint).CacheSize(writerCacheKiB)
	}
	return d.String()
}

// Open opens (creating if needed) the event database at path, for example
// DIR/events.db, and starts the writer goroutine.
func Open(path string, opts Options) (*Store, error) {
	def := DefaultOptions()
	if opts.MaxBatchEvents <= 0 {
		opts.MaxBatchEvents = def.MaxBatchEvents
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = def.QueueSize
	}
	if opts.IndexBatch <= 0 {
		opts.IndexBatch = def.IndexBatch
	}
	switch {
	case opts.LiveBuffer == 0:
		opts.LiveBuffer = defaultLiveBuffer
	case opts.LiveBuffer < 0:
		opts.LiveBuffer = 0
	}
	s := &Store{
		path:        path,
		opts:        opts,
		reqs:        make(chan *appendReq, opts.QueueSize),
		writerDone:  make(chan struct{}),
		done:        make(chan struct{}),
		notify:      make(chan struct{}),
		streams:     make(map[string]streamState),
		streamIDs:   make(map[string]int64),
		live:        newLiveBuffer(opts.LiveBuffer, liveBufferBytes),
		tail:        newStreamTail(),
		indexChunk:  indexChunk,
		dictTrain:   dictTrainEvents,
		dictRetrain: dictRetrainEvents,
	}
	// The writer caches every stream's version and part of the stream
	// index, so a second writer on the file could append a version twice.
	unlock, err := filelock.Exclusive(path)
	if errors.Is(err, filelock.ErrHeld) {
		err = fmt.Errorf("%w: %s.lock is held", ErrLocked, path)
	}
	if err != nil {
		return nil, fmt.Errorf("open event store %s: %w", path, err)
	}
	s.unlock = unlock
	if err := s.openDBs(); err != nil {
		s.closeDBs()
		_ = unlock()
		return nil, fmt.Errorf("open event store %s: %w", path, err)
	}
	if opts.GroupCommit {
		s.syncs = make(chan *flight, 1)
		s.syncerDone = make(chan struct{})
		go s.syncer()
	}
	go s.run()
	return s, nil
}

// createFile gives a new (missing or empty) log file its page size. The
// size must be set before the file switches to WAL, which the driver does
// before any other pragma of the DSN, so a separate connection sets both in
// order; WAL mode is then stored in the file. An existing file is left as
// it is.
func createFile(ctx context.Context, path string) error {
	if fi, err := os.Stat(path); err == nil && fi.Size() > 0 {
		return nil
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("stat %s: %w", path, err)
	}
	db, err := sql.Open("sqlite", sqlitedsn.File(path).PageSize(pageSize).String())
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	var mode string
	err = db.QueryRowContext(ctx, "PRAGMA journal_mode = WAL").Scan(&mode)
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	return nil
}

// openDBs opens both pools, creates the schema and prepares the statements.
func (s *Store) openDBs() error {
	ctx := context.Background()
	if err := createFile(ctx, s.path); err != nil {
		return err
	}
	if err := s.openWriter(); err != nil {
		return err
	}
	if err := s.initSchema(ctx); err != nil {
		return err
	}
	if err := s.prepareWriter(ctx); err != nil {
		return err
	}
	// The readers first: loading the head decodes segments, whose
	// dictionaries are read through them.
	if err := s.openReaders(ctx); err != nil {
		return err
	}
	if err := s.loadHead(ctx); err != nil {
		return err
	}
	return s.openSnapshots(ctx)
}

// openWriter opens the writer's pool of one connection.
func (s *Store) openWriter() error {
	sync := "FULL"
	if s.opts.GroupCommit {
		sync = "NORMAL" // the syncer makes every commit durable (writer.go)
	}
	var err error
	if s.wdb, err = sql.Open("sqlite", dsn(s.path, false, sync)); err != nil {
		return err
	}
	// One connection: SQLite has one writer anyway, and prepared statements
	// then stay prepared on it for every transaction.
	s.wdb.SetMaxOpenConns(1)
	s.wdb.SetMaxIdleConns(1)
	s.wdb.SetConnMaxLifetime(0)
	s.wdb.SetConnMaxIdleTime(0)
	return nil
}

// initSchema checks that the file is in WAL mode, creates the schema if it
// is missing and migrates an older one, refusing a version it does not
// know.
func (s *Store) initSchema(ctx context.Context) error {
	var mode string
	if err := s.wdb.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("query journal mode: %w", err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("journal mode is %q, want wal", mode)
	}
	if _, err := s.wdb.ExecContext(ctx, schemaSQL); err != nil {
		return fmt.Errorf("create schema: %w", err)
	}
	var v string
	if err := s.wdb.QueryRowContext(ctx, "SELECT value FROM meta WHERE key = 'schema_version'").Scan(&v); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	switch v {
	case "1", "2", "3", "4":
		// Schema 3 is 4 without the dictionaries table (created above) and
		// its format-2 segments; 5 numbers the streams in stream_index and
		// keys id_index by idKey. Segments stay as they are.
		if err := s.migrate(ctx, v); err != nil {
			return fmt.Errorf("migrate schema %s to %s: %w", v, schemaVersion, err)
		}
		v = schemaVersion
	}
	if v != schemaVersion {
		return fmt.Errorf("schema version %s, this build understands %s", v, schemaVersion)
	}
	return nil
}

// stmt is a query to prepare and where its statement goes.
type stmt struct {
	dst **sql.Stmt
	q   string
}

// prepareAll prepares each query on db, stopping at the first failure.
func prepareAll(ctx context.Context, db *sql.DB, stmts ...stmt) error {
	for _, st := range stmts {
		var err error
		if *st.dst, err = db.PrepareContext(ctx, st.q); err != nil {
			return err
		}
	}
	return nil
}

// prepareWriter prepares the writer's statements.
func (s *Store) prepareWriter(ctx context.Context) error {
	err := prepareAll(ctx, s.wdb,
		stmt{&s.segInsStmt, sqlInsertSegment},
		stmt{&s.segAtWStmt, sqlSegmentAt},
		stmt{&s.segFromWStmt, sqlSegmentsFrom},
		stmt{&s.headStmt, sqlHead},
		stmt{&s.idGetStmt, sqlIDGet},
		stmt{&s.idAtStmt, sqlIDAt},
		stmt{&s.streamIDStmt, sqlStreamID},
		stmt{&s.newStreamStmt, sqlNewStream},
		stmt{&s.indexTailStmt, sqlIndexTail},
		stmt{&s.idxGetStmt, sqlIdxGet})
	if err == nil {
		s.idxIns, err = sqlrows.Prepare(ctx, s.wdb, streamRow.insertSQL)
	}
	if err == nil {
		s.idIns, err = sqlrows.Prepare(ctx, s.wdb, idRow.insertSQL)
	}
	if err != nil {
		return fmt.Errorf("prepare writer statements: %w", err)
	}
	return nil
}

// loadHead reads the committed head and rebuilds the index tail of the
// events after indexed_upto.
func (s *Store) loadHead(ctx context.Context) error {
	var head int64
	if err := s.headStmt.QueryRowContext(ctx).Scan(&head); err != nil {
		return fmt.Errorf("read head: %w", err)
	}
	s.head.Store(head)
	if err := s.loadDict(ctx); err != nil {
		return err
	}
	return s.loadTail(ctx)
}

// openReaders opens the readers' pool and prepares their statements.
func (s *Store) openReaders(ctx context.Context) error {
	var err error
	if s.rdb, err = sql.Open("sqlite", dsn(s.path, true, "FULL")); err != nil {
		return err
	}
	n := max(4, 2*runtime.GOMAXPROCS(0))
	s.rdb.SetMaxOpenConns(n)
	s.rdb.SetMaxIdleConns(n)
	if s.ddb, err = sql.Open("sqlite", dsn(s.path, true, "FULL")); err != nil {
		return err
	}
	s.ddb.SetMaxOpenConns(1)
	s.dicts = newDictCache(s.ddb)
	if err := prepareAll(ctx, s.rdb,
		stmt{&s.fwdStmt, sqlForward},
		stmt{&s.bwdStmt, sqlBackward},
		stmt{&s.segFromStmt, sqlSegmentsFrom},
		stmt{&s.versionStmt, sqlVersion},
		stmt{&s.segAtStmt, sqlSegmentAt}); err != nil {
		return fmt.Errorf("prepare reader statements: %w", err)
	}
	return nil
}

// closeDBs closes whatever openDBs managed to open.
func (s *Store) closeDBs() error {
	var errs []error
	for _, st := range []*sql.Stmt{s.segInsStmt, s.segAtWStmt, s.segFromWStmt, s.headStmt, s.idGetStmt, s.idAtStmt,
		s.streamIDStmt, s.newStreamStmt, s.indexTailStmt,
		s.idxGetStmt, s.fwdStmt, s.bwdStmt, s.segFromStmt, s.versionStmt, s.segAtStmt} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	errs = append(errs, s.idxIns.Close(), s.idIns.Close())
	if s.rdb != nil {
		errs = append(errs, s.rdb.Close())
	}
	if s.ddb != nil {
		errs = append(errs, s.ddb.Close())
	}
	if s.wdb != nil {
		errs = append(errs, s.wdb.Close())
	}
	if s.sdb != nil {
		errs = append(errs, s.sdb.Close())
	}
	return errors.Join(errs...)
}

// Path returns the database file, so that tools and tests can open it
// directly (for example to prove the retention triggers work).
func (s *Store) Path() string { return s.path }

// Stats returns the writer's counters.
func (s *Store) Stats() Stats {
	return Stats{
		Transactions:   s.transactions.Load(),
		Appends:        s.appends.Load(),
		Events:         s.events.Load(),
		ReadAllQueries: s.readAllQueries.Load(),
		IndexFlushes:   s.indexFlushes.Load(),
	}
}

// MapRetentionError turns the failure raised by the retention triggers
// (a DELETE or UPDATE on events) into an error wrapping
// eventstore.ErrDeleteForbidden, so callers can test for it with errors.Is
// whatever connection hit the trigger. Other errors are returned unchanged.
func MapRetentionError(err error) error {
	if err == nil || errors.Is(err, eventstore.ErrDeleteForbidden) {
		return err
	}
	if strings.Contains(err.Error(), retentionMarker) {
		return fmt.Errorf("%w: %w", eventstore.ErrDeleteForbidden, err)
	}
	return err
}

// checkTimes refuses OccurredAt values that RFC 3339 cannot represent, since
// the hash covers that text.
func checkTimes(events []eventstore.EventData) error {
	for i, e := range events {
		if y := e.OccurredAt.UTC().Year(); y < 0 || y > 9999 {
			return fmt.Errorf("%w: event %d occurred in year %d (want 0..9999)", eventstore.ErrInvalidAppend, i, y)
		}
	}
	return nil
}

// Append implements eventstore.Store. The request is validated, queued for
// the writer (waiting for room while ctx allows) and then awaited: once
// queued, Append returns only with the writer's answer, so an acknowledged
// append is committed and durable. The caller must not modify events until
// Append returns.
func (s *Store) Append(ctx context.Context, stream string, expected int64, events []eventstore.EventData) (eventstore.AppendResult, error) {
	return s.AppendIf(ctx, stream, expected, events, nil)
}

// AppendIf implements eventstore.ConditionalStore; the writer checks the
// conditions in the transaction, after the requests batched before.
func (s *Store) AppendIf(ctx context.Context, stream string, expected int64, events []eventstore.EventData, conds []eventstore.Condition) (eventstore.AppendResult, error) {
	if err := eventstore.ValidateAppend(stream, expected, events); err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("append %s: %w", stream, err)
	}
	if err := eventstore.ValidateConditions(stream, conds); err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("append %s: %w", stream, err)
	}
	if err := checkTimes(events); err != nil {
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

// txn is the state of one write transaction: the transaction-bound
// statements and the effects of the requests applied so far, which later
// requests of the same batch must see.
type txn struct {
	tx        *sql.Tx
	segIns    *sql.Stmt
	segAt     *sql.Stmt
	idGet     *sql.Stmt
	indexTail *sql.Stmt
	overlay   map[string]streamState      // streams changed in this transaction
	ids       map[string]eventstore.Event // events appended in this transaction, by id
	head      int64                       // last position written in this transaction
	appends   int64
	events    int64
	fresh     [][]eventstore.Event // the events appended, per request, in position order
	seg       *segmentBuilder      // the segment being filled
	dict      *segDict             // the dictionary its segments are compressed with
	// flushWritten is the number of index entries this transaction wrote,
	// flushMaxKey the largest id key among them (math.MinInt64 for none),
	// and flushedUpto the new indexed_upto when they finished a flush, else
	// 0. newStreams are the stream numbers it assigned.
	flushWritten int
	flushMaxKey  int64
	flushedUpto  int64
	newStreams   map[string]int64
}

// writeSegment stores the segment being filled, if any, and empties it.
func (t *txn) writeSegment(ctx context.Context) error {
	return t.seg.store(ctx, t.segIns.ExecContext, t.dict)
}

// reload drops the cached stream states and re-reads the head, after a
// failed transaction left them possibly ahead of the database.
func (s *Store) reload(ctx context.Context) error {
	s.streams = make(map[string]streamState)
	var head int64
	if err := s.headStmt.QueryRowContext(ctx).Scan(&head); err != nil {
		return err
	}
	s.head.Store(head)
	if err := s.loadDict(ctx); err != nil {
		return err
	}
	if err := s.loadTail(ctx); err != nil {
		return err
	}
	s.stale = false
	return nil
}

// publish makes head visible and wakes every waiting subscriber.
func (s *Store) publish(head int64) {
	s.head.Store(head)
	s.notifyMu.Lock()
	close(s.notify)
	s.notify = make(chan struct{})
	s.notifyMu.Unlock()
}

// headChanged returns the channel the next commit will close.
func (s *Store) headChanged() <-chan struct{} {
	s.notifyMu.Lock()
	defer s.notifyMu.Unlock()
	return s.notify
}

// state returns the stream's version and last hash as this transaction sees
// them: changed in this batch, cached, or read from the database.
func (s *Store) state(ctx context.Context, t *txn, stream string) (streamState, error) {
	if st, ok := t.overlay[stream]; ok {
		return st, nil
	}
	if st, ok := s.streams[stream]; ok {
		return st, nil
	}
	st, err := s.streamHead(ctx, t, stream)
	if err != nil {
		return st, err
	}
	// Not in the overlay, so nothing of this stream is pending: the row read
	// is committed state and safe to cache.
	s.streams[stream] = st
	return st, nil
}

// apply writes one request inside t. It sets r.res or r.err for outcomes
// that concern only r and returns an error only when the whole transaction
// must be abandoned. Every check is made before the request's first event
// joins the segment being filled, so a refused request leaves nothing.
func (s *Store) apply(ctx context.Context, t *txn, r *appendReq) error {
	cur, err := s.state(ctx, t, r.stream)
	if err != nil {
		return err
	}
	if r.expected != eventstore.Any && r.expected != cur.version {
		return s.answerByIDs(ctx, t, r, func() error {
			r.err = fmt.Errorf("%w: stream is at version %d, expected %d",
				eventstore.ErrVersionConflict, cur.version, r.expected)
			return nil
		})
	}
	for _, c := range r.conds {
		st, err := s.state(ctx, t, c.Stream)
		if err != nil {
			return err
		}
		if st.version != c.Version {
			return s.answerByIDs(ctx, t, r, func() error {
				r.err = fmt.Errorf("%w: stream %s is at version %d, the append required %d",
					eventstore.ErrConditionFailed, c.Stream, st.version, c.Version)
				return nil
			})
		}
	}
	for _, d := range r.events {
		_, known, err := s.findID(ctx, t, d.ID)
		if err != nil {
			return err
		}
		if known {
			return s.answerByIDs(ctx, t, r, func() error {
				return fmt.Errorf("event %s: found by id, then not stored", d.ID)
			})
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
		if !t.seg.fits(&e) {
			if err := t.writeSegment(ctx); err != nil {
				return err
			}
		}
		t.seg.add(&e)
		t.head = e.Position
		t.ids[d.ID] = e
		out[i] = e
		prev = e.Hash
	}
	t.overlay[r.stream] = streamState{version: out[len(out)-1].Version, hash: prev}
	t.appends++
	t.events += int64(len(out))
	t.fresh = append(t.fresh, out)
	r.res = eventstore.AppendResult{Events: out}
	return nil
}

// findID looks an event up by id as the writer sees it: appended in t or
// in the flight, committed but not yet in id_index (the tail), or in
// id_index. A stored event is returned in full. The id_index probe is
// skipped for an id whose key is larger than every key in it, as most new
// ids' are (keys grow with time as ULIDs do).
func (s *Store) findID(ctx context.Context, t *txn, id string) (eventstore.Event, bool, error) {
	if e, ok := t.ids[id]; ok {
		return e, true, nil
	}
	if s.flying != nil {
		if e, ok := s.flying.t.ids[id]; ok {
			return e, true, nil
		}
	}
	if pos, ok := s.tail.byID[id]; ok {
		e, same, err := s.eventWithID(ctx, t, id, pos)
		if err == nil && !same {
			err = fmt.Errorf("look up event %s: position %d holds %s", id, pos, e.ID)
		}
		return e, err == nil, err
	}
	key := idKey(id)
	if key > s.maxKey {
		return eventstore.Event{}, false, nil
	}
	// Rows of colliding keys name other ids: read them all first, then
	// the events (one statement at a time on the writer's connection).
	var positions []int64
	rows, err := t.idGet.QueryContext(ctx, key)
	if err != nil {
		return eventstore.Event{}, false, fmt.Errorf("look up event %s: %w", id, err)
	}
	for rows.Next() {
		var pos int64
		if err := rows.Scan(&pos); err != nil {
			rows.Close()
			return eventstore.Event{}, false, fmt.Errorf("look up event %s: %w", id, err)
		}
		positions = append(positions, pos)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return eventstore.Event{}, false, fmt.Errorf("look up event %s: %w", id, err)
	}
	for _, pos := range positions {
		if e, ok, err := s.eventWithID(ctx, t, id, pos); ok || err != nil {
			return e, ok, err
		}
	}
	return eventstore.Event{}, false, nil
}

// eventWithID reads the event at pos, which ok says has the given id.
func (s *Store) eventWithID(ctx context.Context, t *txn, id string, pos int64) (e eventstore.Event, ok bool, err error) {
	e, err = loadEvent(ctx, t.segAt, s.dicts, pos)
	if err != nil {
		return eventstore.Event{}, false, fmt.Errorf("look up event %s: %w", id, err)
	}
	return e, e.ID == id, nil
}

// answerByIDs answers r from the ids it carries, when it cannot be appended
// as it stands: with the stored events if it is an exact re-append of them,
// with the id-reuse error if some id is stored otherwise, and else with
// whatever notStored decides. An error return abandons the transaction.
func (s *Store) answerByIDs(ctx context.Context, t *txn, r *appendReq, notStored func() error) error {
	stored, reqErr, err := s.classify(ctx, t, r)
	switch {
	case err != nil:
		return err
	case reqErr != nil:
		r.err = reqErr
	case stored != nil:
		r.res = eventstore.AppendResult{Events: stored}
	default:
		return notStored()
	}
	return nil
}

// classify looks the request's ids up (seeing this transaction's pending
// rows). It returns the stored events when the request is an exact
// re-append of them (same stream, consecutive versions at the expected
// place, same content), an error wrapping ErrIDReused when some id is
// stored anywhere else or with other content, and nothing when no id is
// stored. fatal is a database failure.
func (s *Store) classify(ctx context.Context, t *txn, r *appendReq) (stored []eventstore.Event, reqErr, fatal error) {
	found := make([]eventstore.Event, len(r.events))
	n := 0
	var missing string
	for i, d := range r.events {
		e, ok, err := s.findID(ctx, t, d.ID)
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			missing = d.ID
			continue
		}
		found[i] = e
		n++
	}
	if n == 0 {
		return nil, nil, nil
	}
	if n < len(r.events) {
		return nil, fmt.Errorf("%w: some ids of the batch are stored, %s is not", eventstore.ErrIDReused, missing), nil
	}
	first := found[0].Version
	for i, e := range found {
		d := r.events[i]
		switch {
		case e.Stream != r.stream:
			return nil, fmt.Errorf("%w: %s is stored in stream %s", eventstore.ErrIDReused, d.ID, e.Stream), nil
		case e.Version != first+int64(i):
			return nil, fmt.Errorf("%w: the batch's ids are not stored consecutively", eventstore.ErrIDReused), nil
		case r.expected != eventstore.Any && first != r.expected+1:
			return nil, fmt.Errorf("%w: the batch is stored after version %d, not %d", eventstore.ErrIDReused, first-1, r.expected), nil
		case eventstore.ComputeHash(e.PrevHash, e.Stream, e.Version, d) != e.Hash:
			return nil, fmt.Errorf("%w: %s is stored with other content", eventstore.ErrIDReused, d.ID), nil
		}
	}
	return found, nil, nil
}

// isClosed reports whether Close has finished stopping the writer.
func (s *Store) isClosed() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// readErr wraps a read failure, reporting ErrClosed when the failure is the
// store being closed underneath the read.
func (s *Store) readErr(op string, err error) error {
	if s.isClosed() {
		return fmt.Errorf("%s: %w", op, eventstore.ErrClosed)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// readIndexed reads the events a stream_index query (sqlForward,
// sqlBackward) names, in its order, decoding each from its segment.
func (s *Store) readIndexed(ctx context.Context, op string, out []eventstore.Event, st *sql.Stmt, limit int, args ...any) ([]eventstore.Event, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("%s: %w", op, eventstore.ErrClosed)
	}
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return nil, s.readErr(op, err)
	}
	defer rows.Close()
	if out == nil {
		out = make([]eventstore.Event, 0, min(limit, 8))
	}
	for rows.Next() {
		var pos, first int64
		var blob sql.RawBytes // decoded (and copied) before the next row
		if err := rows.Scan(&pos, &first, &blob); err != nil {
			return nil, s.readErr(op, err)
		}
		seg, err := parseSegmentHolding(first, blob, s.dicts, pos)
		var e eventstore.Event
		if err == nil {
			e, err = seg.at(int(pos - first))
		}
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

// ReadStream implements eventstore.Store. A limit below 1 or above
// eventstore.MaxReadBatch reads MaxReadBatch events.
func (s *Store) ReadStream(ctx context.Context, stream string, from int64, limit int) ([]eventstore.Event, error) {
	limit = eventstore.ClampLimit(limit)
	op := "read stream " + stream
	upto, tail := s.tail.lookup(stream)
	var out []eventstore.Event
	if len(tail) == 0 || from < tail[0].version {
		var err error
		if out, err = s.readIndexed(ctx, op, nil, s.fwdStmt, limit, stream, from, upto, limit); err != nil {
			return nil, err
		}
	}
	return s.readTail(ctx, op, out, tail, limit, func(te tailEntry) bool { return te.version >= from })
}

// ReadStreamBackward implements eventstore.Store. A limit below 1 or above
// eventstore.MaxReadBatch reads MaxReadBatch events.
func (s *Store) ReadStreamBackward(ctx context.Context, stream string, from int64, limit int) ([]eventstore.Event, error) {
	limit = eventstore.ClampLimit(limit)
	if from < 1 {
		from = 1<<63 - 1
	}
	op := "read stream backward " + stream
	if s.isClosed() {
		return nil, fmt.Errorf("%s: %w", op, eventstore.ErrClosed)
	}
	upto, tail := s.tail.lookup(stream)
	slices.Reverse(tail)
	out, err := s.readTail(ctx, op, nil, tail, limit, func(te tailEntry) bool { return te.version <= from })
	if err != nil || len(out) >= limit {
		return out, err
	}
	return s.readIndexed(ctx, op, out, s.bwdStmt, limit-len(out), stream, from, upto, limit-len(out))
}

// ReadAll implements eventstore.Store. A limit below 1 or above
// eventstore.MaxReadBatch reads MaxReadBatch events.
func (s *Store) ReadAll(ctx context.Context, after int64, limit int) ([]eventstore.Event, error) {
	limit = eventstore.ClampLimit(limit)
	s.readAllQueries.Add(1)
	if s.isClosed() {
		return nil, fmt.Errorf("read all: %w", eventstore.ErrClosed)
	}
	// Bounded by the published head: a commit still waiting for its fsync
	// is not part of the log yet (writer.go).
	out, err := readSegments(ctx, s.segFromStmt, s.dicts, after, s.head.Load(), limit)
	if err != nil {
		return nil, s.readErr("read all", err)
	}
	return out, nil
}

// Head implements eventstore.Store from the writer's published head, which
// advances only after a commit.
func (s *Store) Head(ctx context.Context) (int64, error) {
	if s.isClosed() {
		return 0, fmt.Errorf("head: %w", eventstore.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("head: %w", err)
	}
	return s.head.Load(), nil
}

// StreamVersion implements eventstore.Store.
func (s *Store) StreamVersion(ctx context.Context, stream string) (int64, error) {
	if s.isClosed() {
		return 0, fmt.Errorf("stream version %s: %w", stream, eventstore.ErrClosed)
	}
	upto, tail := s.tail.lookup(stream)
	if len(tail) > 0 {
		return tail[len(tail)-1].version, nil
	}
	var v int64
	if err := s.versionStmt.QueryRowContext(ctx, stream, upto).Scan(&v); err != nil {
		return 0, s.readErr("stream version "+stream, err)
	}
	return v, nil
}

// Subscribe implements eventstore.Store: it delivers the log in batches
// from after and, once caught up, sleeps until the writer publishes a
// commit. Batches come from the live buffer when it still holds the next
// position and from SQLite otherwise (catching up, or lagging behind the
// buffer). Events taken from the live buffer share their Payload with other
// subscribers: fn must not modify e.Payload (copy it first).
func (s *Store) Subscribe(ctx context.Context, after int64, fn func(eventstore.Event) error) error {
	var buf []eventstore.Event // reused for batches copied from the live buffer
	for {
		// Take the wake-up channel before reading so that a commit landing
		// between the read and the wait still wakes us.
		changed := s.headChanged()
		if err := ctx.Err(); err != nil {
			return err
		}
		if s.isClosed() {
			return fmt.Errorf("subscribe: %w", eventstore.ErrClosed)
		}
		events, ok := s.live.read(after, buf[:0], subscribeBatch)
		if ok {
			buf = events
		} else {
			var err error
			events, err = s.ReadAll(ctx, after, subscribeBatch)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("subscribe after %d: %w", after, err)
			}
		}
		for i := range events {
			e := events[i]
			events[i] = eventstore.Event{} // let delivered events go
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

// liveBuffer is the in-memory tail of the global log: the most recently
// committed events, gap-free and in position order, in a ring of at most
// capacity events and about maxBytes of variable-size data. Only the writer
// pushes, after a successful commit and before publishing the new head;
// subscribers copy events out under the read lock and call their handlers
// without it.
//
// The buffer holds its own copies of the payloads (strings are immutable
// and shared), so neither an appender changing its AppendResult nor
// anything else outside the store can alter what subscribers receive.
type liveBuffer struct {
	capacity int // 0 disables the buffer
	maxBytes int

	mu    sync.RWMutex
	ring  []eventstore.Event // grows up to capacity; slot (start+i)%len(ring) holds position first+i
	start int
	n     int
	first int64 // position of the oldest buffered event, when n > 0
	bytes int   // variable-size data of the buffered events
}

func newLiveBuffer(capacity, maxBytes int) *liveBuffer {
	return &liveBuffer{capacity: capacity, maxBytes: maxBytes}
}

// eventBytes approximates the variable-size data e keeps alive.
func eventBytes(e *eventstore.Event) int {
	return len(e.Payload) + len(e.ID) + len(e.Type) + len(e.Stream) +
		len(e.CausationID) + len(e.CorrelationID) + len(e.IdempotencyKey)
}

// push appends the events of one commit, given per request in position
// order. Their payloads are copied (into one allocation) before the lock is
// taken. An event that does not directly follow the buffered ones (another
// writer committed in between, or a failed commit left the writer's view
// behind) empties the buffer first, so it never holds a gap.
func (b *liveBuffer) push(batches [][]eventstore.Event) {
	if b.capacity == 0 || len(batches) == 0 {
		return
	}
	size := 0
	for _, evs := range batches {
		for i := range evs {
			size += len(evs[i].Payload)
		}
	}
	arena := make([]byte, 0, size)

	b.mu.Lock()
	defer b.mu.Unlock()
	for _, evs := range batches {
		for i := range evs {
			e := evs[i]
			if e.Payload != nil {
				off := len(arena)
				arena = append(arena, e.Payload...)
				e.Payload = arena[off:len(arena):len(arena)]
			}
			if b.n > 0 && e.Position != b.first+int64(b.n) {
				b.reset()
			}
			if b.n == b.capacity {
				b.evict()
			}
			if b.n == len(b.ring) {
				b.grow()
			}
			if b.n == 0 {
				b.first = e.Position
			}
			b.ring[(b.start+b.n)%len(b.ring)] = e
			b.n++
			b.bytes += eventBytes(&e)
			for b.bytes > b.maxBytes && b.n > 1 {
				b.evict()
			}
		}
	}
}

// evict drops the oldest event.
func (b *liveBuffer) evict() {
	b.bytes -= eventBytes(&b.ring[b.start])
	b.ring[b.start] = eventstore.Event{}
	b.start = (b.start + 1) % len(b.ring)
	b.first++
	b.n--
}

// reset drops every event.
func (b *liveBuffer) reset() {
	clear(b.ring)
	b.start, b.n, b.bytes = 0, 0, 0
}

// grow enlarges the full ring (doubling, up to capacity), so that a store
// that commits little never allocates the whole ring.
func (b *liveBuffer) grow() {
	ring := make([]eventstore.Event, min(max(2*len(b.ring), 64), b.capacity))
	copy(ring, b.ring[b.start:])
	copy(ring[len(b.ring)-b.start:], b.ring[:b.start])
	b.ring, b.start = ring, 0
}

// read appends to dst up to limit buffered events with Position > after.
// ok is false when the buffer cannot tell (it is empty, or position after+1
// was evicted or never buffered): the caller must read SQLite. An empty
// result with ok means nothing after after has been published yet.
func (b *liveBuffer) read(after int64, dst []eventstore.Event, limit int) (events []eventstore.Event, ok bool) {
	if b.capacity == 0 {
		return dst, false
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.n == 0 || after+1 < b.first {
		return dst, false
	}
	from := after + 1 - b.first // index of the first wanted event
	if from >= int64(b.n) {
		return dst, true
	}
	k := min(b.n-int(from), limit)
	i := (b.start + int(from)) % len(b.ring)
	if end := i + k; end <= len(b.ring) {
		return append(dst, b.ring[i:end]...), true
	}
	dst = append(dst, b.ring[i:]...)
	return append(dst, b.ring[:k-(len(b.ring)-i)]...), true
}

// Close implements eventstore.Store: it stops accepting appends, lets the
// writer commit everything already queued, wakes subscribers (they return
// ErrClosed) and closes the databases. Calling it again returns nil.
func (s *Store) Close() error {
	first := false
	s.closeOnce.Do(func() {
		first = true
		s.sendMu.Lock()
		s.closed = true
		s.sendMu.Unlock()
		close(s.reqs) // no sender holds sendMu, and new ones see closed
		<-s.writerDone
		if s.syncs != nil {
			close(s.syncs)
			<-s.syncerDone
		}
		close(s.done)
		s.closeErr = errors.Join(s.closeFlushErr, s.closeDBs(), s.unlock())
		if s.closeErr != nil {
			s.closeErr = fmt.Errorf("close event store %s: %w", s.path, s.closeErr)
		}
	})
	if !first {
		return nil
	}
	return s.closeErr
}
