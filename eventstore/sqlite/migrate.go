package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/payledger/payledger/eventstore"
)

// Schemas 1 and 2 kept one row per event in an events table (schema 1 with
// its stream index inside that table, schema 2 beside it in stream_index).
// Open turns such a file into schema 3 in one transaction: the events are
// packed into segments in log order, every event is indexed (stream_index
// and id_index, so indexed_upto becomes the head), and the events table and
// its triggers are dropped. A crash midway leaves the old file as it was.

// legacyColumns is the events table's column list, in scanLegacy order.
const legacyColumns = `position, id, stream, version, type, schema_version, occurred_at,
	causation_id, correlation_id, idempotency_key, payload, prev_hash, hash`

const (
	sqlLegacyBatch  = `SELECT ` + legacyColumns + ` FROM events WHERE position > ? ORDER BY position LIMIT ?`
	sqlMigrateIndex = `INSERT INTO stream_index (stream, version, position)
	SELECT stream, version, position FROM events WHERE true ON CONFLICT (stream, version) DO NOTHING;
INSERT INTO id_index (id, position) SELECT id, position FROM events;
UPDATE meta SET value = (SELECT CAST(COALESCE(MAX(position), 0) AS TEXT) FROM events) WHERE key = 'indexed_upto';`
	sqlMigrateDrop = `DROP TRIGGER IF EXISTS events_no_delete;
DROP TRIGGER IF EXISTS events_no_update;
DROP TABLE events;
UPDATE meta SET value = '` + schemaVersion + `' WHERE key = 'schema_version';`
	// migrateBatch is how many legacy rows the migration reads at a time.
	migrateBatch = 1000
	// sqlLegacyHead is the last legacy position, the migration's total.
	sqlLegacyHead = `SELECT COALESCE(MAX(position), 0) FROM events`
)

// migrate upgrades a schema 1 or 2 file to schema 3 in one transaction.
func (s *Store) migrate(ctx context.Context) error {
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	progress := func(int64, int64) {}
	var total int64
	if s.opts.MigrateProgress != nil {
		progress = s.opts.MigrateProgress
		if err := tx.QueryRowContext(ctx, sqlLegacyHead).Scan(&total); err != nil {
			return fmt.Errorf("read the last position: %w", err)
		}
		progress(0, total) // indexing comes first and reports nothing until packing starts
	}
	if _, err := tx.ExecContext(ctx, sqlMigrateIndex); err != nil {
		return fmt.Errorf("index events: %w", err)
	}
	var b segmentBuilder
	write := func() error {
		return b.store(ctx, func(ctx context.Context, args ...any) (sql.Result, error) {
			return tx.ExecContext(ctx, sqlInsertSegment, args...)
		}, nil)
	}
	var after int64
	for {
		events, err := readLegacy(ctx, tx, after)
		if err != nil {
			return err
		}
		if len(events) == 0 {
			break
		}
		for i := range events {
			e := &events[i]
			// Positions were assigned one after another; a gap (none is
			// expected) starts a new segment, since a segment's events are
			// consecutive.
			if !b.fits(e) || (b.len() > 0 && e.Position != b.first+int64(b.len())) {
				if err := write(); err != nil {
					return err
				}
			}
			b.add(e)
		}
		after = events[len(events)-1].Position
		progress(after, total)
	}
	if err := write(); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, sqlMigrateDrop); err != nil {
		return fmt.Errorf("drop the events table: %w", err)
	}
	return tx.Commit()
}

// readLegacy reads the next batch of rows of the events table.
func readLegacy(ctx context.Context, tx *sql.Tx, after int64) ([]eventstore.Event, error) {
	rows, err := tx.QueryContext(ctx, sqlLegacyBatch, after, migrateBatch)
	if err != nil {
		return nil, fmt.Errorf("read events after %d: %w", after, err)
	}
	defer rows.Close()
	var out []eventstore.Event
	for rows.Next() {
		e, err := scanLegacy(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read events after %d: %w", after, err)
	}
	return out, nil
}

// scanLegacy reads one row of the events table (legacyColumns).
func scanLegacy(row interface{ Scan(...any) error }) (eventstore.Event, error) {
	var e eventstore.Event
	var occurred string
	var prev, hash []byte
	if err := row.Scan(&e.Position, &e.ID, &e.Stream, &e.Version, &e.Type, &e.SchemaVersion, &occurred,
		&e.CausationID, &e.CorrelationID, &e.IdempotencyKey, &e.Payload, &prev, &hash); err != nil {
		return e, err
	}
	t, err := time.Parse(time.RFC3339Nano, occurred)
	if err != nil {
		return e, fmt.Errorf("event %s: occurred_at: %w", e.ID, err)
	}
	e.OccurredAt = t.UTC()
	if len(prev) != 32 || len(hash) != 32 {
		return e, fmt.Errorf("event %s: stored hashes have %d and %d bytes, want 32", e.ID, len(prev), len(hash))
	}
	copy(e.PrevHash[:], prev)
	copy(e.Hash[:], hash)
	return e, nil
}
