package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
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
	idxGet, idGet *sql.Stmt
	dicts         *dictCache
	schema4       bool // the indexes are keyed by stream names and id texts
}

// The indexes' point queries on a schema 3 or 4 file.
const (
	sqlIdxGetSchema4 = `SELECT position FROM stream_index WHERE stream = ? AND version = ?`
	sqlIDGetSchema4  = `SELECT position FROM id_index WHERE id = ? AND position = ?`
)

// OpenReader opens an existing event database for reading. It refuses a
// missing file (a typo must not create an empty log that then "verifies")
// and a schema it does not know.
func OpenReader(path string) (*Reader, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("open event log %s: %w", path, err)
	}
	db, err := sql.Open("sqlite", dsn(path, true, "FULL"))
	if err != nil {
		return nil, fmt.Errorf("open event log %s: %w", path, err)
	}
	// Two connections: CheckIndexes holds one for its snapshot while the
	// dictionaries of the segments it reads are loaded through the other.
	db.SetMaxOpenConns(2)
	r := &Reader{path: path, db: db, dicts: newDictCache(db)}
	ctx := context.Background()
	var v string
	if err := db.QueryRowContext(ctx, "SELECT value FROM meta WHERE key = 'schema_version'").Scan(&v); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open event log %s: read schema version: %w", path, err)
	}
	// Older files are migrated by the writer (Open), which a reader must
	// not do. Schemas 3 and 4 (3 is 4 without format-2 segments) hold
	// segments as 5 does, and indexes keyed by the stream's name and the
	// id's text.
	idxGet, idGet := sqlIdxGetByName, sqlIDAt
	switch v {
	case schemaVersion:
	case "3", "4":
		idxGet, idGet = sqlIdxGetSchema4, sqlIDGetSchema4
		r.schema4 = true
	default:
		_ = db.Close()
		return nil, fmt.Errorf("open event log %s: schema version %s, this build reads %s (open the log once with the server, which migrates it)",
			path, v, schemaVersion)
	}
	for _, p := range []struct {
		dst **sql.Stmt
		q   string
	}{{&r.all, sqlSegmentsFrom}, {&r.headStmt, sqlHead}, {&r.idxGet, idxGet}, {&r.idGet, idGet}} {
		if err == nil {
			*p.dst, err = db.PrepareContext(ctx, p.q)
		}
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
	limit = eventstore.ClampLimit(limit)
	out, err := readSegments(ctx, r.all, r.dicts, after, math.MaxInt64, limit)
	if err != nil {
		return nil, fmt.Errorf("read all: %w", err)
	}
	return out, nil
}

// CheckIndexes proves the persisted part of the indexes consistent with
// the log: every event at or below indexed_upto has exactly one stream_index
// row and one id_index row, and each names its event (stream and version,
// or id, at that position). Stream reads (the write path loading an
// account) and id lookups (idempotent re-appends) trust these indexes, so a
// damaged one must not pass verification. It returns the number of indexed
// events. It reads one snapshot, event by event, in bounded memory.
func (r *Reader) CheckIndexes(ctx context.Context) (indexed int64, err error) {
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
	var rows, ids int64
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM stream_index WHERE position <= ?`, upto).Scan(&rows); err != nil {
		return 0, fmt.Errorf("check stream index: %w", err)
	}
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM id_index WHERE position <= ?`, upto).Scan(&ids); err != nil {
		return 0, fmt.Errorf("check id index: %w", err)
	}
	all := tx.StmtContext(ctx, r.all)
	byStream := tx.StmtContext(ctx, r.idxGet)
	byID := tx.StmtContext(ctx, r.idGet)
	var events int64
	for after := int64(0); after < upto; {
		batch, err := readSegments(ctx, all, r.dicts, after, upto, eventstore.MaxReadBatch)
		if err != nil {
			return 0, fmt.Errorf("check stream index: %w", err)
		}
		if len(batch) == 0 {
			return 0, fmt.Errorf("check stream index: indexed_upto is %d, the log ends at %d", upto, after)
		}
		for _, e := range batch { // readSegments stops at upto
			events++
			if err := indexedAt(ctx, byStream, e.Position, e.Stream, e.Version); err != nil {
				return 0, fmt.Errorf("stream index: %s version %d (position %d): %w", e.Stream, e.Version, e.Position, err)
			}
			var idKeyArg any = e.ID
			if !r.schema4 {
				idKeyArg = idKey(e.ID)
			}
			if err := indexedAt(ctx, byID, e.Position, idKeyArg, e.Position); err != nil {
				return 0, fmt.Errorf("id index: %s (position %d): %w", e.ID, e.Position, err)
			}
		}
		after = batch[len(batch)-1].Position
	}
	// Each event found its own rows; equal counts leave no row over.
	switch {
	case rows != events:
		return 0, fmt.Errorf("stream index: %d rows for the %d events up to position %d", rows, events, upto)
	case ids != events:
		return 0, fmt.Errorf("id index: %d rows for the %d events up to position %d", ids, events, upto)
	}
	return events, nil
}

// indexedAt checks that the index row get (sqlIdxGet, sqlIDGet) finds by
// key names position pos.
func indexedAt(ctx context.Context, get *sql.Stmt, pos int64, key ...any) error {
	var got int64
	if err := get.QueryRowContext(ctx, key...).Scan(&got); err != nil {
		return err
	}
	if got != pos {
		return fmt.Errorf("row names position %d", got)
	}
	return nil
}

// Close releases the database.
func (r *Reader) Close() error {
	var errs []error
	for _, st := range []*sql.Stmt{r.all, r.headStmt, r.idxGet, r.idGet} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	errs = append(errs, r.db.Close())
	return errors.Join(errs...)
}
