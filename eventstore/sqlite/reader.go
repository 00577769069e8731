package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/payledger/payledger/eventstore"
)

// Reader reads the global log of an event database without writing to it
// and without the writer's lock, so that tools such as `payledger verify`
// can run beside a live server. It sees what is committed when each read
// runs.
type Reader struct {
	path          string
	db            *sql.DB
	all, headStmt *sql.Stmt
	schema        string
}

// OpenReader opens an existing event database for reading. It refuses a
// missing file (a typo must not create an empty log that then "verifies")
// and a schema it does not know.
func OpenReader(path string) (*Reader, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("open event log %s: %w", path, err)
	}
	db, err := sql.Open("sqlite", dsn(path, true))
	if err != nil {
		return nil, fmt.Errorf("open event log %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	r := &Reader{path: path, db: db}
	ctx := context.Background()
	var v string
	if err := db.QueryRowContext(ctx, "SELECT value FROM meta WHERE key = 'schema_version'").Scan(&v); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open event log %s: read schema version: %w", path, err)
	}
	// ReadAll reads only the events table, whose layout schema 1 shares.
	if v != schemaVersion && v != "1" {
		_ = db.Close()
		return nil, fmt.Errorf("open event log %s: schema version %s, this build understands %s", path, v, schemaVersion)
	}
	r.schema = v
	if r.all, err = db.PrepareContext(ctx, sqlAll); err == nil {
		r.headStmt, err = db.PrepareContext(ctx, sqlHead)
	}
	if err != nil {
		_ = r.Close()
		return nil, fmt.Errorf("open event log %s: %w", path, err)
	}
	return r, nil
}

// Head returns the last committed position.
func (r *Reader) Head(ctx context.Context) (int64, error) {
	var head int64
	if err := r.headStmt.QueryRowContext(ctx).Scan(&head); err != nil {
		return 0, fmt.Errorf("head: %w", err)
	}
	return head, nil
}

// ReadAll returns up to limit events after position after, in log order (a
// limit below 1 or above eventstore.MaxReadBatch reads MaxReadBatch).
func (r *Reader) ReadAll(ctx context.Context, after int64, limit int) ([]eventstore.Event, error) {
	limit = clampLimit(limit)
	rows, err := r.all.QueryContext(ctx, after, limit)
	if err != nil {
		return nil, fmt.Errorf("read all: %w", err)
	}
	defer rows.Close()
	var out []eventstore.Event
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, fmt.Errorf("read all: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read all: %w", err)
	}
	return out, nil
}

// CheckStreamIndex proves the persisted part of the stream index consistent
// with the log: every event at or below indexed_upto has exactly one index
// row, and every such row names its event's stream and version. Stream
// reads (the write path loading an account) trust this index, so a damaged
// one must not pass verification. It returns the number of indexed events;
// a schema 1 file, which keeps its index inside the events table, has
// nothing to check.
func (r *Reader) CheckStreamIndex(ctx context.Context) (indexed int64, err error) {
	if r.schema == "1" {
		return 0, nil
	}
	tx, err := r.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true}) // one snapshot for all counts
	if err != nil {
		return 0, fmt.Errorf("check stream index: %w", err)
	}
	defer tx.Rollback()
	var v string
	if err := tx.QueryRowContext(ctx, sqlGetUpto).Scan(&v); err != nil {
		return 0, fmt.Errorf("check stream index: read indexed_upto: %w", err)
	}
	upto, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("check stream index: indexed_upto %q: %w", v, err)
	}
	var events, rows, matching int64
	for _, q := range []struct {
		dst   *int64
		query string
	}{
		{&events, `SELECT COUNT(*) FROM events WHERE position <= ?`},
		{&rows, `SELECT COUNT(*) FROM stream_index WHERE position <= ?`},
		{&matching, `SELECT COUNT(*) FROM stream_index i JOIN events e
			ON e.position = i.position AND e.stream = i.stream AND e.version = i.version WHERE i.position <= ?`},
	} {
		if err := tx.QueryRowContext(ctx, q.query, upto).Scan(q.dst); err != nil {
			return 0, fmt.Errorf("check stream index: %w", err)
		}
	}
	switch {
	case rows != events:
		return 0, fmt.Errorf("stream index: %d rows for the %d events up to position %d", rows, events, upto)
	case matching != rows:
		return 0, fmt.Errorf("stream index: %d of %d rows up to position %d do not match their event", rows-matching, rows, upto)
	}
	return events, nil
}

// Close releases the database.
func (r *Reader) Close() error {
	var errs []error
	for _, st := range []*sql.Stmt{r.all, r.headStmt} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	errs = append(errs, r.db.Close())
	return errors.Join(errs...)
}
