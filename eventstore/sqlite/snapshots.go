package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/payledger/payledger/eventstore"
	"github.com/payledger/payledger/internal/sqlitedsn"
)

// Snapshots live in a database file of their own beside the log
// (events.db's are in events.snapshots.db): derived data that the log's
// writer never waits on, and that verify and rebuild never read.

// snapshotPath is the snapshots' file for the log at path.
func snapshotPath(path string) string {
	return strings.TrimSuffix(path, ".db") + ".snapshots.db"
}

const snapshotSchema = `
CREATE TABLE IF NOT EXISTS snapshots (
	stream     TEXT PRIMARY KEY,
	version    INTEGER NOT NULL,
	event_hash BLOB NOT NULL,
	schema     INTEGER NOT NULL,
	payload    BLOB NOT NULL
) WITHOUT ROWID;`

// openSnapshots opens (creating if needed) the snapshots' database. A lost
// last commit costs only a longer load, so it commits at NORMAL. A
// replaced snapshot's bytes are overwritten (secure_delete), since an
// aggregate's state is personal data.
func (s *Store) openSnapshots(ctx context.Context) error {
	db, err := sql.Open("sqlite", sqlitedsn.File(snapshotPath(s.path)).BusyTimeout(10*time.Second).
		JournalMode("WAL").Synchronous("NORMAL").Pragma("secure_delete", "ON").String())
	if err != nil {
		return fmt.Errorf("open snapshots: %w", err)
	}
	db.SetMaxOpenConns(4)
	if _, err := db.ExecContext(ctx, snapshotSchema); err != nil {
		_ = db.Close()
		return fmt.Errorf("open snapshots of %s: %w", s.path, err)
	}
	s.sdb = db
	return nil
}

// SaveSnapshot keeps snap unless a later one of its stream is kept.
func (s *Store) SaveSnapshot(ctx context.Context, snap eventstore.Snapshot) error {
	if err := eventstore.ValidateSnapshot(snap); err != nil {
		return err
	}
	if s.isClosed() {
		return fmt.Errorf("save snapshot of %s: %w", snap.Stream, eventstore.ErrClosed)
	}
	_, err := s.sdb.ExecContext(ctx, `INSERT INTO snapshots (stream, version, event_hash, schema, payload) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (stream) DO UPDATE SET version = excluded.version, event_hash = excluded.event_hash,
			schema = excluded.schema, payload = excluded.payload
		WHERE excluded.version >= snapshots.version`,
		snap.Stream, snap.Version, snap.EventHash[:], snap.Schema, snap.Payload)
	if err != nil {
		return s.readErr("save snapshot of "+snap.Stream, err)
	}
	return nil
}

// LoadSnapshot returns the stream's latest snapshot.
func (s *Store) LoadSnapshot(ctx context.Context, stream string) (eventstore.Snapshot, bool, error) {
	if s.isClosed() {
		return eventstore.Snapshot{}, false, fmt.Errorf("load snapshot of %s: %w", stream, eventstore.ErrClosed)
	}
	snap := eventstore.Snapshot{Stream: stream}
	var hash []byte
	err := s.sdb.QueryRowContext(ctx, `SELECT version, event_hash, schema, payload FROM snapshots WHERE stream = ?`, stream).
		Scan(&snap.Version, &hash, &snap.Schema, &snap.Payload)
	if errors.Is(err, sql.ErrNoRows) {
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
