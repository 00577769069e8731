package tests

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/payledger/payledger/eventstore"
	"github.com/payledger/payledger/eventstore/sqlite"
)

// notedLog writes a log of n events over seven streams, from 2021-03-04
// 05:06:07 UTC one every step, into a new data directory.
func notedLog(t *testing.T, n int, step time.Duration) string {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	s, err := sqlite.Open(filepath.Join(dir, "events.db"), sqlite.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)
	for i := 0; i < n; i++ {
		e := eventstore.EventData{ID: fmt.Sprintf("evt-%05d", i), Type: "Noted", SchemaVersion: 1, OccurredAt: at.Add(time.Duration(i) * step),
			Payload: []byte(fmt.Sprintf(`{"n":%d}`, i))}
		if _, err := s.Append(ctx, fmt.Sprint("stream-", i%7), eventstore.Any, []eventstore.EventData{e}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestRetentionCheck: retention check reports the oldest event and passes
// on an intact store; it fails, naming the guard, when an insider drops a
// no-delete trigger or neuters a no-update one, and when the log is
// shorter than a signed checkpoint or lost its first events.
func TestRetentionCheck(t *testing.T) {
	ctx := context.Background()
	dir := notedLog(t, 300, time.Hour)
	check := func() (string, error) {
		out, err := exec.Command(binary, "retention", "check", "--data", dir).CombinedOutput()
		return string(out), err
	}
	out, err := check()
	if err != nil || !strings.Contains(out, "the oldest (position 1, stream stream-0) occurred 2021-03-04T05:06:07Z") ||
		!strings.Contains(out, "the oldest until 2026-03-04") || !strings.HasSuffix(out, "retention: ok 300 events, 10 guards\n") {
		t.Fatalf("an intact store: %v\n%s", err, out)
	}

	// A checkpoint of more events than the log holds: it was cut.
	cp := `{"size":301,"root":"00","time":"2026-01-01T00:00:00Z","key_id":"k","signature":"s"}` + "\n"
	if err := os.WriteFile(filepath.Join(dir, "checkpoints.jsonl"), []byte(cp), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := check(); err == nil || !strings.Contains(out, "the log has 300 events, fewer than the 301") {
		t.Fatalf("a log shorter than its checkpoint: %v\n%s", err, out)
	}
	if err := os.Remove(filepath.Join(dir, "checkpoints.jsonl")); err != nil {
		t.Fatal(err)
	}

	db, err := sql.Open("sqlite", filepath.Join(dir, "events.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, attack := range []struct{ sql, guard string }{
		{"DROP TRIGGER segments_no_delete", "segments_no_delete"},
		{"DROP TRIGGER stream_index_no_update; CREATE TRIGGER stream_index_no_update BEFORE UPDATE ON stream_index BEGIN SELECT 1; END", "stream_index_no_update"},
	} {
		if _, err := db.ExecContext(ctx, attack.sql); err != nil {
			t.Fatal(err)
		}
		out, err := check()
		if err == nil || !strings.Contains(out, "retention: guard "+attack.guard+": MISSING") || !strings.Contains(out, "FAILED: ") || !strings.Contains(out, "guard "+attack.guard+" is missing") {
			t.Fatalf("after %q: %v\n%s", attack.sql, err, out)
		}
	}
	// With the guard gone, the oldest segment can be deleted: the check
	// sees the log no longer starts at position 1.
	if _, err := db.ExecContext(ctx, "DELETE FROM segments WHERE first_position = 1"); err != nil {
		t.Fatal(err)
	}
	if out, err := check(); err == nil || !strings.Contains(out, "no position 1") && !strings.Contains(out, "are gone") {
		t.Fatalf("a log without its first events: %v\n%s", err, out)
	}
}

// TestRetentionCheckSeesAGap: an insider drops the no-delete trigger,
// deletes a segment from the middle of the log and puts the trigger back;
// retention check fails and names the missing positions.
func TestRetentionCheckSeesAGap(t *testing.T) {
	ctx := context.Background()
	dir := notedLog(t, 3000, time.Minute)
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
