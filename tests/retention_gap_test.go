package tests

import (
	"context"
	"database/sql"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/payledger/payledger/eventstore"
	"github.com/payledger/payledger/eventstore/sqlite"
)

// TestRetentionCheckSeesAGap: an insider drops the no-delete trigger,
// deletes a segment from the middle of the log and puts the trigger back;
// retention check fails and names the missing positions.
func TestRetentionCheckSeesAGap(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := sqlite.Open(filepath.Join(dir, "events.db"), sqlite.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)
	for i := 0; i < 3000; i++ {
		e := eventstore.EventData{ID: fmt.Sprintf("evt-%05d", i), Type: "Noted", SchemaVersion: 1, OccurredAt: at.Add(time.Duration(i) * time.Minute),
			Payload: []byte(fmt.Sprintf(`{"n":%d}`, i))}
		if _, err := s.Append(ctx, fmt.Sprint("stream-", i%7), eventstore.Any, []eventstore.EventData{e}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", filepath.Join(dir, "events.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var trigger string
	if err := db.QueryRowContext(ctx, "SELECT sql FROM sqlite_master WHERE name = 'segments_no_delete'").Scan(&trigger); err != nil {
		t.Fatal(err)
	}
	var first, last, n int64
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM segments").Scan(&n); err != nil || n < 3 {
		t.Fatalf("want 3 segments or more, got %d (%v)", n, err)
	}
	if err := db.QueryRowContext(ctx, "SELECT first_position, last_position FROM segments ORDER BY first_position LIMIT 1 OFFSET 1").Scan(&first, &last); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, "DROP TRIGGER segments_no_delete; DELETE FROM segments WHERE first_position = ?; "+trigger, first); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(binary, "retention", "check", "--data", dir).CombinedOutput()
	if err == nil {
		t.Errorf("retention check passes with events %d to %d deleted:\n%s", first, last, out)
	} else if want := fmt.Sprintf("positions %d to %d are gone", first, last); !strings.Contains(string(out), want) {
		t.Errorf("%v\n%s", err, out)
	}
}
