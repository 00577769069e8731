package personaldata

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// DefaultSchema is the PostgreSQL schema of the key store when
// PostgresOptions.Schema is empty.
const DefaultSchema = "payledger_personaldata"

// erasureChannel is the NOTIFY channel of erasures, "schema:owner": one
// per database, since a channel does not belong to a schema.
const erasureChannel = "payledger_personaldata_erased"

// PostgresOptions tunes OpenPostgres.
type PostgresOptions struct {
	// Schema holds the key store's tables (DefaultSchema when empty); it is
	// created when missing. Tests give each store its own.
	Schema string
	// Exclusive opens the store as its only user, for rotating the master
	// key (Rewrap): it is refused with ErrLocked while any other process
	// has the store open, and the others are refused while it is open.
	Exclusive bool
}

// pgSide is a PostgreSQL store's own connection, which listens for the
// other processes' erasures and holds the session advisory lock (shared,
// or exclusive for a rotation), and its goroutine.
type pgSide struct {
	cfg       *pgx.ConnConfig
	schema    string
	exclusive bool
	lockName  string

	stop context.CancelFunc
	done chan struct{}

	mu   sync.Mutex
	conn *pgx.Conn // owned by the listener goroutine once it runs
}

// The listener's bounds: how long it waits for a notification before it
// checks its connection, how long that check may take, and the pause
// between reconnection attempts. Together they bound how long a dead
// connection goes unnoticed (the erasure window in docs/architecture.md).
const (
	listenIdle     = 5 * time.Second
	listenPing     = 5 * time.Second
	reconnectFirst = 100 * time.Millisecond
	reconnectMax   = 5 * time.Second
)

// pgMigrations is the key store's schema on PostgreSQL, one step per
// version, applied in order and recorded in schema_migrations.
var pgMigrations = []string{
	// 1: the tables of the SQLite file at its version 2. wrapped is NULL
	// once erased. Autovacuum visits data_keys after every erasure's
	// update, so the erased key's dead row version goes soon.
	`CREATE TABLE meta (name text PRIMARY KEY, value bytea NOT NULL);
	CREATE TABLE data_keys (
		owner      text PRIMARY KEY,
		wrapped    bytea,
		created_at text NOT NULL,
		erased_at  text
	) WITH (autovacuum_vacuum_threshold = 0, autovacuum_vacuum_scale_factor = 0);
	CREATE TABLE pending_erasures (owner text PRIMARY KEY, since text NOT NULL);`,
}

// OpenPostgres opens (or creates) the key store in a schema of the
// PostgreSQL database at dsn, with the master key; several processes open
// it at once under the same master key, and one made under another master
// key is refused (ErrWrongMasterKey). Each process caches the keys it
// unwraps and drops one when another process erases it (LISTEN/NOTIFY),
// and every one when its listening connection was lost.
func OpenPostgres(ctx context.Context, dsn string, opts PostgresOptions, master []byte, clock func() time.Time, rnd io.Reader) (*Store, error) {
	aead, err := checkArgs(master, clock, rnd)
	if err != nil {
		return nil, err
	}
	schema := opts.Schema
	if schema == "" {
		schema = DefaultSchema
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("personaldata: parse the PostgreSQL connection string: %w", err)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	if err := createSchema(ctx, cfg, schema); err != nil {
		return nil, err
	}
	cfg.RuntimeParams["search_path"] = schema
	db := stdlib.OpenDB(*cfg.Copy())
	db.SetMaxOpenConns(4)
	db.SetMaxIdleConns(2)
	name := "PostgreSQL schema " + schema
	s := newStore(db, postgresDialect, name, aead, clock, rnd)
	s.pg = &pgSide{cfg: cfg, schema: schema, exclusive: opts.Exclusive, lockName: "payledger/personaldata/" + schema}
	// Locked and listening before the check value is read: from then on
	// no rotation starts, and every erasure is heard.
	conn, err := s.pg.connect(ctx)
	if err != nil {
		return nil, errors.Join(err, db.Close())
	}
	if err := s.initPostgres(ctx); err != nil {
		return nil, errors.Join(err, conn.Close(context.Background()), db.Close())
	}
	s.caching.Store(true)
	lctx, stop := context.WithCancel(context.Background())
	s.pg.stop, s.pg.done, s.pg.conn = stop, make(chan struct{}), conn
	go s.listen(lctx)
	return s, nil
}

// PostgresExists reports whether the database at dsn holds a key store in
// schema (its master key check), for a caller about to make a new master
// key: a store that exists needs the one it was made under.
func PostgresExists(ctx context.Context, dsn, schema string) (bool, error) {
	if schema == "" {
		schema = DefaultSchema
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return false, fmt.Errorf("personaldata: parse the PostgreSQL connection string: %w", err)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return false, fmt.Errorf("personaldata: connect: %w", err)
	}
	defer conn.Close(context.Background())
	meta := pgx.Identifier{schema, "meta"}.Sanitize()
	var has bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", meta).Scan(&has); err != nil || !has {
		return false, err
	}
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM "+meta+" WHERE name = 'check')").Scan(&has); err != nil {
		return false, fmt.Errorf("personaldata: read schema %s: %w", schema, err)
	}
	return has, nil
}

// createSchema creates the key store's schema when it is missing. It looks
// first, since even CREATE SCHEMA IF NOT EXISTS needs the right to create
// schemas, which a role given a schema made for it lacks.
func createSchema(ctx context.Context, cfg *pgx.ConnConfig, schema string) error {
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("personaldata: connect: %w", err)
	}
	defer conn.Close(context.Background())
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schema).Scan(&exists); err != nil {
		return fmt.Errorf("personaldata: look for schema %s: %w", schema, err)
	}
	if exists {
		return nil
	}
	if _, err := conn.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{schema}.Sanitize()); err != nil {
		return fmt.Errorf("personaldata: create schema %s: %w", schema, err)
	}
	return nil
}

// connect opens the listening connection and takes the advisory lock on
// it: shared, or exclusive for a rotation; ErrLocked when it is held the
// other way.
func (p *pgSide) connect(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, p.cfg)
	if err != nil {
		return nil, fmt.Errorf("personaldata: connect: %w", err)
	}
	fn := "pg_try_advisory_lock_shared"
	if p.exclusive {
		fn = "pg_try_advisory_lock"
	}
	var ok bool
	err = conn.QueryRow(ctx, "SELECT "+fn+"(hashtextextended($1, 0))", p.lockName).Scan(&ok)
	if err == nil && !ok {
		if p.exclusive {
			err = fmt.Errorf("%w: other processes have the key store in PostgreSQL schema %s open: stop every server first", ErrLocked, p.schema)
		} else {
			err = fmt.Errorf("%w: the master key of the key store in PostgreSQL schema %s is being rotated", ErrLocked, p.schema)
		}
	}
	if err == nil {
		_, err = conn.Exec(ctx, "LISTEN "+pgx.Identifier{erasureChannel}.Sanitize())
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("personaldata: %w", err), conn.Close(context.Background()))
	}
	return conn, nil
}

// initPostgres applies the migrations this schema lacks and creates or
// verifies the check value, in one transaction under an advisory lock, so
// that two processes opening a new store at once create it once.
func (s *Store) initPostgres(ctx context.Context) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("personaldata: open %s: %w", s.path, err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", "payledger/personaldata/migrate/"+s.pg.schema); err != nil {
		return fmt.Errorf("personaldata: open %s: %w", s.path, err)
	}
	// Looked for first, for a role that may not create tables once the
	// schema is current (deployment.md's payledger_app).
	var have bool
	if err := tx.QueryRowContext(ctx, "SELECT to_regclass('schema_migrations') IS NOT NULL").Scan(&have); err != nil {
		return fmt.Errorf("personaldata: open %s: %w", s.path, err)
	}
	if !have {
		if _, err := tx.ExecContext(ctx, `CREATE TABLE schema_migrations (
			version    integer     PRIMARY KEY,
			applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
			return fmt.Errorf("personaldata: open %s: %w", s.path, err)
		}
	}
	var cur int
	if err := tx.QueryRowContext(ctx, "SELECT coalesce(max(version), 0) FROM schema_migrations").Scan(&cur); err != nil {
		return fmt.Errorf("personaldata: open %s: %w", s.path, err)
	}
	if cur > len(pgMigrations) {
		return fmt.Errorf("personaldata: open %s: schema version %d is newer than this program's %d", s.path, cur, len(pgMigrations))
	}
	for i := cur; i < len(pgMigrations); i++ {
		if _, err := tx.ExecContext(ctx, pgMigrations[i]); err != nil {
			return fmt.Errorf("personaldata: open %s: migration %d: %w", s.path, i+1, err)
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO schema_migrations (version) VALUES ($1)", i+1); err != nil {
			return fmt.Errorf("personaldata: open %s: migration %d: %w", s.path, i+1, err)
		}
	}
	fresh, err := s.sealWith(s.master, []byte(checkText), []byte(checkText))
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO meta (name, value) VALUES ('check', $1) ON CONFLICT (name) DO NOTHING", fresh); err != nil {
		return fmt.Errorf("personaldata: open %s: %w", s.path, err)
	}
	var check []byte
	if err := tx.QueryRowContext(ctx, "SELECT value FROM meta WHERE name = 'check'").Scan(&check); err != nil {
		return fmt.Errorf("personaldata: open %s: read the master key check: %w", s.path, err)
	}
	if err := s.verifyCheck(check); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("personaldata: open %s: %w", s.path, err)
	}
	return nil
}

// listen drops a cached key when another process erases it, until ctx
// ends. When the connection fails it stops caching and drops every cached
// key (an erasure may have gone unheard), and caches again once a new
// connection listens and holds the lock.
func (s *Store) listen(ctx context.Context) {
	defer close(s.pg.done)
	conn := s.pg.conn
	prefix := s.pg.schema + ":"
	pause := reconnectFirst
	for ctx.Err() == nil {
		if conn == nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(pause):
			}
			pause = min(2*pause, reconnectMax)
			c, err := s.pg.connect(ctx)
			if err != nil {
				continue
			}
			conn = c
			s.pg.setConn(conn)
			// Read from the database, not heard of: erasures made while
			// nobody listened are in it. Cache again from now on.
			s.forget("")
			s.caching.Store(true)
			pause = reconnectFirst
		}
		wctx, cancel := context.WithTimeout(ctx, listenIdle)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if err == nil {
			if owner, ok := strings.CutPrefix(n.Payload, prefix); ok {
				s.forget(owner)
			}
			continue
		}
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, context.DeadlineExceeded) && !conn.IsClosed() {
			pctx, cancel := context.WithTimeout(ctx, listenPing)
			err = conn.Ping(pctx)
			cancel()
			if err == nil {
				continue
			}
		}
		s.caching.Store(false)
		s.forget("")
		_ = conn.Close(context.Background())
		conn = nil
		s.pg.setConn(nil)
	}
}

func (p *pgSide) setConn(c *pgx.Conn) {
	p.mu.Lock()
	p.conn = c
	p.mu.Unlock()
}

// close stops the listener and closes its connection, which releases the
// advisory lock.
func (p *pgSide) close() error {
	p.stop()
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn == nil {
		return nil
	}
	// Unlocked before the connection goes: the server releases a closed
	// session's locks only when its backend exits, after Close returns,
	// and a rotation started right after must find the lock free.
	// A failure means the connection is gone, and its locks with it.
	ctx, cancel := context.WithTimeout(context.Background(), listenPing)
	_, _ = p.conn.Exec(ctx, "SELECT pg_advisory_unlock_all()")
	cancel()
	err := p.conn.Close(context.Background())
	p.conn = nil
	return err
}

// ListenerPID returns the server process of the listening connection (0
// while there is none), for tests that cut it.
func (s *Store) ListenerPID() uint32 {
	if s.pg == nil {
		return 0
	}
	s.pg.mu.Lock()
	defer s.pg.mu.Unlock()
	if s.pg.conn == nil {
		return 0
	}
	return s.pg.conn.PgConn().PID()
}

// Imported counts what Import did.
type Imported struct {
	// Keys is the number of live keys added; Erased of erasures added or
	// applied to a key the store had; Known of rows it already had as they
	// were (the same key, or an erasure); Pending of pending erasures.
	Keys, Erased, Known, Pending int
}

// ErrImportConflict: the store to import into holds another key for an
// owner of the source; nothing was imported.
var ErrImportConflict = errors.New("personaldata: the two key stores hold different keys for one owner")

// importBatch bounds the rows one query of Import reads from the source.
const importBatch = 1000

// Import copies every row of from (a SQLite file's store) into s, in one
// transaction of s: a live key is unwrapped with from's master key and
// wrapped with s's, an erasure is kept (and wins over a live key s has),
// and the pending erasures are added. An owner with a different live key
// in each fails the whole import with ErrImportConflict: no key is lost.
func (s *Store) Import(from *Store) (Imported, error) {
	var res Imported
	s.dbMu.Lock()
	defer s.dbMu.Unlock()
	ctx := context.Background()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return res, fmt.Errorf("personaldata: import: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	after := ""
	for {
		batch, err := from.keyRows(ctx, after)
		if err != nil {
			return res, err
		}
		for _, r := range batch {
			if err := s.importRow(ctx, tx, from, r, &res); err != nil {
				return res, err
			}
		}
		if len(batch) < importBatch {
			break
		}
		after = batch[len(batch)-1].owner
	}
	pending, err := from.PendingErasures(maxCached + 1)
	if err != nil {
		return res, err
	}
	if len(pending) > maxCached {
		return res, fmt.Errorf("personaldata: import: %s has more than %d pending erasures; complete them first (serve does at start)", from.path, maxCached)
	}
	for _, o := range pending {
		r, err := tx.ExecContext(ctx, s.d.q("INSERT INTO pending_erasures (owner, since) VALUES (?, ?) ON CONFLICT (owner) DO NOTHING"),
			o, s.clock().UTC().Format(time.RFC3339Nano))
		if err != nil {
			return res, fmt.Errorf("personaldata: import the pending erasure of %s: %w", o, err)
		}
		if n, _ := r.RowsAffected(); n > 0 {
			res.Pending++
		}
	}
	if err := tx.Commit(); err != nil {
		return res, fmt.Errorf("personaldata: import: %w", err)
	}
	s.forget("")
	return res, nil
}

// keyRow is one row of data_keys.
type keyRow struct {
	owner, created string
	wrapped        []byte
	erasedAt       sql.NullString
}

// keyRows reads up to importBatch rows after the owner after.
func (s *Store) keyRows(ctx context.Context, after string) ([]keyRow, error) {
	rows, err := s.db.QueryContext(ctx, s.d.q("SELECT owner, wrapped, created_at, erased_at FROM data_keys WHERE owner > ? ORDER BY owner LIMIT ?"), after, importBatch)
	if err != nil {
		return nil, fmt.Errorf("personaldata: import: read %s: %w", s.path, err)
	}
	defer rows.Close()
	var out []keyRow
	for rows.Next() {
		var r keyRow
		if err := rows.Scan(&r.owner, &r.wrapped, &r.created, &r.erasedAt); err != nil {
			return nil, fmt.Errorf("personaldata: import: read %s: %w", s.path, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("personaldata: import: read %s: %w", s.path, err)
	}
	return out, nil
}

// importRow adds one source row to s in tx.
func (s *Store) importRow(ctx context.Context, tx *sql.Tx, from *Store, r keyRow, res *Imported) error {
	var raw []byte
	if !r.erasedAt.Valid {
		var err error
		if raw, err = from.openWith(from.masterKey(), r.wrapped, wrapAD(r.owner)); err != nil {
			return fmt.Errorf("personaldata: import: unwrap the data key of %s in %s: %w", r.owner, from.path, err)
		}
	}
	cur, curErased, err := s.readKey(ctx, tx, r.owner)
	switch {
	case errors.Is(err, sql.ErrNoRows) && r.erasedAt.Valid:
		if err := s.eraseIn(ctx, tx, r.owner, r.erasedAt.String); err != nil {
			return fmt.Errorf("personaldata: import the erasure of %s: %w", r.owner, err)
		}
		res.Erased++
		return nil
	case errors.Is(err, sql.ErrNoRows):
		w, err := s.sealWith(s.masterKey(), raw, wrapAD(r.owner))
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, s.d.q("INSERT INTO data_keys (owner, wrapped, created_at) VALUES (?, ?, ?)"), r.owner, w, r.created); err != nil {
			return fmt.Errorf("personaldata: import the data key of %s: %w", r.owner, err)
		}
		res.Keys++
		return nil
	case err != nil:
		return err
	case curErased.Valid:
		res.Known++ // erased here: the erasure stands
		return nil
	case r.erasedAt.Valid:
		if err := s.eraseIn(ctx, tx, r.owner, r.erasedAt.String); err != nil {
			return fmt.Errorf("personaldata: import the erasure of %s: %w", r.owner, err)
		}
		res.Erased++
		return nil
	}
	mine, err := s.openWith(s.masterKey(), cur, wrapAD(r.owner))
	if err != nil {
		return fmt.Errorf("personaldata: import: unwrap the data key of %s in %s: %w", r.owner, s.path, err)
	}
	if !bytes.Equal(mine, raw) {
		return fmt.Errorf("%w: %s (in %s and in %s); nothing was imported", ErrImportConflict, r.owner, from.path, s.path)
	}
	res.Known++
	return nil
}
