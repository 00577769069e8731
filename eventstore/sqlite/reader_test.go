package sqlite

import (
	"context"
	"path/filepath"
	"testing"
)

// TestReaderBesideWriter: a Reader opens a file a Store holds, sees each
// commit, and refuses a missing file instead of creating one.
func TestReaderBesideWriter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	if _, err := OpenReader(path); err == nil {
		t.Fatal("OpenReader created a missing file")
	}
	s, err := Open(path, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
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
