package sqlite

import (
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/payledger/payledger/eventstore"
)

// TestMigrateProgress: migrating a schema 1 log of several batches tells
// MigrateProgress where it is, from nothing done to every event packed, and
// never goes back.
func TestMigrateProgress(t *testing.T) {
	const n = 2*migrateBatch + 500
	path := filepath.Join(t.TempDir(), "events.db")
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(schema1); err != nil {
		t.Fatal(err)
	}
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	var prev [32]byte
	for pos := int64(1); pos <= n; pos++ {
		d := event()
		d.OccurredAt = at
		h := eventstore.ComputeHash(prev, "s", pos, d)
		if _, err := tx.Exec(`INSERT INTO events (position, id, stream, version, type, schema_version, occurred_at, payload, prev_hash, hash)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, pos, d.ID, "s", pos, d.Type, d.SchemaVersion, at.Format(time.RFC3339Nano),
			d.Payload, prev[:], h[:]); err != nil {
			t.Fatal(err)
		}
		prev = h
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	var reports []string
	var last int64 = -1
	opts := DefaultOptions()
	opts.MigrateProgress = func(done, total int64) {
		reports = append(reports, fmt.Sprintf("%d/%d", done, total))
		if total != n || done < last || done > total {
			t.Errorf("progress %d of %d after %d, want a total of %d and no step back", done, total, last, n)
		}
		last = done
	}
	s := mustOpen(t, path, opts)
	if len(reports) < 3 || reports[0] != fmt.Sprintf("0/%d", n) || last != n {
		t.Fatalf("progress reports %v, want 0/%d first, %d/%d last and one per batch", reports, n, n, n)
	}
	if h, _ := s.Head(t.Context()); h != n {
		t.Fatalf("head %d after migration, want %d", h, n)
	}
}
