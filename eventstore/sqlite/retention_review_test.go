package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/payledger/payledger/eventstore"
)

// TestRetentionGuardsSeeNeuteredTriggers: a no-delete trigger replaced by
// one that keeps its name, its "BEFORE DELETE ON segments" and its
// "RAISE(ABORT" text but never aborts must be reported missing. Each
// attack below is first shown to really let a DELETE through.
func TestRetentionGuardsSeeNeuteredTriggers(t *testing.T) {
	ctx := context.Background()
	for _, attack := range []struct{ name, trigger string }{
		// The RAISE is in a SELECT that returns no row.
		{"where 0", "CREATE TRIGGER segments_no_delete BEFORE DELETE ON segments BEGIN SELECT RAISE(ABORT, 'x') WHERE 0; END"},
		// A WHEN clause after a newline rather than a space.
		{"when after newline", "CREATE TRIGGER segments_no_delete BEFORE DELETE ON segments FOR EACH ROW\nWHEN 0 BEGIN SELECT RAISE(ABORT, 'x'); END"},
		// RAISE(ABORT only in a string.
		{"raise in a string", "CREATE TRIGGER segments_no_delete BEFORE DELETE ON segments BEGIN SELECT 'RAISE(ABORT, x)'; END"},
		// RAISE(ABORT only in a comment.
		{"raise in a comment", "CREATE TRIGGER segments_no_delete BEFORE DELETE ON segments BEGIN SELECT 1; /* RAISE(ABORT */ END"},
	} {
		t.Run(attack.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "events.db")
			s, err := Open(path, DefaultOptions())
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 3; i++ {
				e := eventstore.EventData{ID: "evt-" + string(rune('a'+i)), Type: "Noted", SchemaVersion: 1,
					OccurredAt: time.Date(2021, 1, 1, 0, 0, i, 0, time.UTC), Payload: []byte(`{"n":1}`)}
				if _, err := s.Append(ctx, "stream-1", eventstore.Any, []eventstore.EventData{e}); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			db, err := sql.Open("sqlite", path)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if _, err := db.ExecContext(ctx, "DROP TRIGGER segments_no_delete; "+attack.trigger); err != nil {
				t.Fatal(err)
			}
			// The guard is really gone: a delete goes through (rolled back).
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			res, err := tx.ExecContext(ctx, "DELETE FROM segments")
			if err != nil {
				t.Fatalf("the neutered trigger still aborts: %v", err)
			}
			if n, _ := res.RowsAffected(); n == 0 {
				t.Fatal("nothing deleted")
			}
			_ = tx.Rollback()

			guards, err := retentionGuards(ctx, db)
			if err != nil {
				t.Fatal(err)
			}
			for _, g := range guards {
				if g.Name == "segments_no_delete" && g.Present {
					t.Errorf("segments_no_delete reported present while a DELETE goes through (trigger %q)", attack.trigger)
				}
			}
		})
	}
}
