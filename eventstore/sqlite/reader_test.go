package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
)

// TestReaderBesideWriter: a Reader opens a file a Store holds, sees each
// commit, and refuses a missing file instead of creating one.
func TestReaderBesideWriter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	if _, err := OpenReader(path); err == nil {
		t.Fatal("OpenReader created a missing file")
	}
	s := mustOpen(t, path, DefaultOptions())
	defer s.Close()
	r, err := OpenReader(path)
	if err != nil {
		t.Fatalf("reader beside the writer: %v", err)
	}
	defer r.Close()
	ctx := context.Background()
	for i := 1; i <= 3; i++ {
		e := appendOne(t, s, "a")
		head, err := r.Head(ctx)
		if err != nil || head != int64(i) {
			t.Fatalf("head %d, %v; want %d", head, err, i)
		}
		got, err := r.ReadAll(ctx, int64(i-1), 10)
		if err != nil || len(got) != 1 || got[0].ID != e.ID || got[0].Hash != e.Hash {
			t.Fatalf("ReadAll after %d: %v %+v", i-1, err, got)
		}
	}
}

// TestCheckIndexes: the check passes on an index the store wrote and
// fails once a row for a version that does not exist is added.
func TestCheckIndexes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	opts := DefaultOptions()
	opts.IndexBatch = 4
	s := mustOpen(t, path, opts)
	for i := range 10 {
		appendOne(t, s, []string{"a", "b"}[i%2])
	}
	if err := s.Close(); err != nil { // flushes the rest
		t.Fatal(err)
	}
	r, err := OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx := context.Background()
	if n, err := r.CheckIndexes(ctx); err != nil || n != 10 {
		t.Fatalf("intact index: %d indexed, %v", n, err)
	}
	// Damage it behind the store's back: the triggers forbid UPDATE and
	// DELETE, so add a row for a version that does not exist, at the
	// position of another event.
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`INSERT INTO stream_index (stream, version, position) VALUES ('a', 99, 3)`); err != nil {
		t.Fatal(err)
	}
	if _, err := r.CheckIndexes(ctx); err == nil || !strings.Contains(err.Error(), "stream index: 11 rows for the 10 events") {
		t.Fatalf("extra row: %v", err)
	}
}

// TestCheckIDIndex damages the id index: a second id at an event's
// position, then (in a fresh log) an event's id missing from the index.
func TestCheckIDIndex(t *testing.T) {
	for _, tc := range []struct {
		name, damage, want string
	}{
		{"extra row", `INSERT INTO id_index (key, position) VALUES (12345, 2)`, "id index: 7 rows for the 6 events"},
		{"row at another position", `INSERT INTO id_index (key, position) SELECT key + 1, position FROM id_index LIMIT 1`, "id index: 7 rows"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "events.db")
			s := mustOpen(t, path, DefaultOptions())
			for i := range 6 {
				appendOne(t, s, []string{"a", "b"}[i%2])
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			db, err := sql.Open("sqlite", "file:"+path)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if _, err := db.Exec(tc.damage); err != nil {
				t.Fatal(err)
			}
			r, err := OpenReader(path)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if _, err := r.CheckIndexes(context.Background()); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
