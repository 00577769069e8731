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
// Open turns such a file into the current schema in one transaction: the
// events are packed into segments in log order, every event is indexed
// (stream_index and id_index, so indexed_upto becomes the head), and the
// events table and its triggers are dropped. A crash midway leaves the old
// file as it was.
//
// Schemas 3 and 4 hold segments and keep them; their stream_index is keyed
// by the stream's name and their id_index by the id's text. Open rewrites
// both indexes as schema 5 keys them (migrateIndexes), in the same one
// transaction.

// legacyColumns is the events table's column list, in scanLegacy order.
const legacyColumns = `position, id, stream, version, type, schema_version, occurred_at,
	causation_id, correlation_id, idempotency_key, payload, prev_hash, hash`

const (
	sqlLegacyBatch  = `SELECT ` + legacyColumns + ` FROM events WHERE position > ? ORDER BY position LIMIT ?`
	sqlMigrateIndex = `INSERT OR IGNORE INTO streams (name) SELECT DISTINCT stream FROM events ORDER BY stream;
INSERT INTO stream_index (stream, version, position)
	SELECT st.id, e.version, e.position FROM events e JOIN streams st ON st.name = e.stream WHERE true
	ON CONFLICT (stream, version) DO NOTHING;
UPDATE meta SET value = (SELECT CAST(COALESCE(MAX(position), 0) AS TEXT) FROM events) WHERE key = 'indexed_upto';`
	sqlMigrateID   = `INSERT INTO id_index (key, position) VALUES (?, ?) ON CONFLICT (key, position) DO NOTHING`
	sqlMigrateDrop = `DROP TRIGGER IF EXISTS events_no_delete;
DROP TRIGGER IF EXISTS events_no_update;
DROP TABLE events;`
	sqlSetSchema = `UPDATE meta SET value = '` + schemaVersion + `' WHERE key = 'schema_version'`
	// migrateBatch is how many legacy rows the migration reads at a time.
	migrateBatch = 1000
	// sqlLegacyHead is the last legacy position, the migration's total.
	sqlLegacyHead = `SELECT COALESCE(MAX(position), 0) FROM events`
	// sqlOldLayout tells whether a table has the named column of type
	// TEXT: stream_index's stream and id_index's id before schema 5.
	sqlOldLayout = `SELECT COUNT(*) FROM pragma_table_info(?) WHERE name = ? AND type = 'TEXT'`
	// sqlMigrateStreams numbers the streams of a schema 3 or 4
	// stream_index (renamed old_stream_index) in name order and rewrites
	// its rows, in key order.
	sqlMigrateStreams = `INSERT INTO streams (name) SELECT DISTINCT stream FROM old_stream_index ORDER BY stream;
INSERT INTO stream_index (stream, version, position)
	SELECT st.id, i.version, i.position FROM old_stream_index i JOIN streams st ON st.name = i.stream
	ORDER BY st.id, i.version;
DROP TABLE old_stream_index;`
	sqlOldIDs = `SELECT id, position FROM old_id_index WHERE id > ? ORDER BY id LIMIT ?`
)

// migrate upgrades a schema 1 to 4 file (version v) to the current schema
// in one transaction.
func (s *Store) migrate(ctx context.Context, v string) error {
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := s.migrateIndexes(ctx, tx); err != nil {
		return err
	}
	if v == "1" || v == "2" {
		if err := s.migrateLegacy(ctx, tx); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, sqlSetSchema); err != nil {
		return fmt.Errorf("record the schema version: %w", err)
	}
	return tx.Commit()
}

// migrateIndexes rewrites, within tx, a stream_index keyed by stream names
// and an id_index keyed by id texts as schema 5 keys them. Either may be
// missing (schemas 1 and 2) or already new.
func (s *Store) migrateIndexes(ctx context.Context, tx *sql.Tx) error {
	old := map[string]bool{}
	for _, tc := range [][2]string{{"stream_index", "stream"}, {"id_index", "id"}} {
		var n int
		if err := tx.QueryRowContext(ctx, sqlOldLayout, tc[0], tc[1]).Scan(&n); err != nil {
			return fmt.Errorf("read the layout of %s: %w", tc[0], err)
		}
		if n == 0 {
			continue
		}
		old[tc[0]] = true
		// The triggers go with their table; the new table gets its own.
		q := fmt.Sprintf(`DROP TRIGGER IF EXISTS %[1]s_no_delete; DROP TRIGGER IF EXISTS %[1]s_no_update;
ALTER TABLE %[1]s RENAME TO old_%[1]s;`, tc[0])
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("set the old %s aside: %w", tc[0], err)
		}
	}
	if len(old) == 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, schemaSQL); err != nil {
		return fmt.Errorf("create the new indexes: %w", err)
	}
	if old["stream_index"] {
		if _, err := tx.ExecContext(ctx, sqlMigrateStreams); err != nil {
			return fmt.Errorf("number the streams: %w", err)
		}
	}
	if !old["id_index"] {
		return nil
	}
	sel, err := tx.PrepareContext(ctx, sqlOldIDs)
	if err != nil {
		return fmt.Errorf("rewrite id_index: %w", err)
	}
	defer sel.Close()
	ins, err := tx.PrepareContext(ctx, sqlMigrateID)
	if err != nil {
		return fmt.Errorf("rewrite id_index: %w", err)
	}
	defer ins.Close()
	// The ids are the long part of the rewrite (one key computed and one
	// row inserted each); progress counts them.
	progress := func(int64, int64) {}
	var total, done int64
	if s.opts.MigrateProgress != nil {
		progress = s.opts.MigrateProgress
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM old_id_index`).Scan(&total); err != nil {
			return fmt.Errorf("rewrite id_index: %w", err)
		}
		progress(0, total)
	}
	var batch []pendingEntry
	for after := ""; ; {
		batch, err = oldIDs(ctx, sel, after, batch[:0])
		if err != nil {
			return fmt.Errorf("rewrite id_index: %w", err)
		}
		if len(batch) == 0 {
			break
		}
		after = batch[len(batch)-1].id
		for _, e := range batch {
			if _, err := ins.ExecContext(ctx, idKey(e.id), e.position); err != nil {
				return fmt.Errorf("rewrite id_index: %s: %w", e.id, err)
			}
		}
		done += int64(len(batch))
		progress(done, total)
	}
	if _, err := tx.ExecContext(ctx, `DROP TABLE old_id_index`); err != nil {
		return fmt.Errorf("rewrite id_index: %w", err)
	}
	return nil
}

// oldIDs reads the next batch of an old id_index's rows after id after.
func oldIDs(ctx context.Context, sel *sql.Stmt, after string, out []pendingEntry) ([]pendingEntry, error) {
	rows, err := sel.QueryContext(ctx, after, migrateBatch)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var e pendingEntry
		if err := rows.Scan(&e.id, &e.position); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// migrateLegacy packs the events table of a schema 1 or 2 file into
// segments within tx, indexing every event.
func (s *Store) migrateLegacy(ctx context.Context, tx *sql.Tx) error {
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
	insID, err := tx.PrepareContext(ctx, sqlMigrateID)
	if err != nil {
		return fmt.Errorf("index events: %w", err)
	}
	defer insID.Close()
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
			if _, err := insID.ExecContext(ctx, idKey(e.ID), e.Position); err != nil {
				return fmt.Errorf("index event %s: %w", e.ID, err)
			}
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
	return nil
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
