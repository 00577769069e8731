package sqlitedsn

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"testing"
	"time"

	_ "modernc.org/sqlite"
)

// TestStrings: the builder spells exactly the strings the stores were
// opened with before it existed, so moving to it changed no setting.
func TestStrings(t *testing.T) {
	const p = "/data/events.db"
	base := File(p).BusyTimeout(10 * time.Second)
	for _, c := range []struct{ name, got, want string }{
		{"event log writer", base.JournalMode("WAL").Synchronous("NORMAL").TxLockImmediate().WALAutocheckpoint(1000).CacheSize(-65536).String(),
			"file:/data/events.db?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_txlock=immediate&_pragma=wal_autocheckpoint(1000)&_pragma=cache_size(-65536)"},
		{"event log reader", base.JournalMode("WAL").Synchronous("FULL").QueryOnly().MmapSize(256 << 20).String(),
			"file:/data/events.db?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=query_only(1)&_pragma=mmap_size(268435456)"},
		{"event log creation", File(p).PageSize(16384).String(),
			"file:/data/events.db?_pragma=page_size(16384)"},
		{"read models writer", base.TxLockImmediate().CacheSize(-65536).TempStore("MEMORY").Synchronous("FULL").WALAutocheckpoint(4096).String(),
			"file:/data/events.db?_pragma=busy_timeout(10000)&_txlock=immediate&_pragma=cache_size(-65536)&_pragma=temp_store(MEMORY)&_pragma=synchronous(FULL)&_pragma=wal_autocheckpoint(4096)"},
		{"read models reader", base.QueryOnly().String(),
			"file:/data/events.db?_pragma=busy_timeout(10000)&_pragma=query_only(1)"},
		{"staff keys", base.JournalMode("WAL").Synchronous("FULL").TxLockImmediate().String(),
			"file:/data/events.db?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate"},
		{"bare file", File(p).String(), "file:/data/events.db"},
		{"escaped path", File("/d/a%b?c#d e.db").String(), "file:/d/a%25b%3fc%23d e.db"},
	} {
		if c.got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.name, c.got, c.want)
		}
	}
}

// TestAwkwardPathOpensThatFile: a path holding the characters a URI
// reserves ('?', '#', '%', and a "%41" that would decode to "A") and
// spaces opens the file of that exact name, with the settings applied.
func TestAwkwardPathOpensThatFile(t *testing.T) {
	dir := t.TempDir()
	name := "a b?c#d%e %41.db"
	path := filepath.Join(dir, name)
	ctx := context.Background()
	db, err := sql.Open("sqlite", File(path).BusyTimeout(10*time.Second).JournalMode("WAL").String())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "CREATE TABLE t (x INTEGER)"); err != nil {
		t.Fatal(err)
	}
	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal mode %q, %v; want wal", mode, err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range entries {
		switch e.Name() {
		case name:
			found = true
		case name + "-wal", name + "-shm":
		default:
			t.Errorf("unexpected file %q in %s", e.Name(), dir)
		}
	}
	if !found {
		t.Fatalf("no file %q in %s", name, dir)
	}
	ro, err := sql.Open("sqlite", File(path).QueryOnly().String())
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	var n int
	if err := ro.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master WHERE name = 't'").Scan(&n); err != nil || n != 1 {
		t.Fatalf("table t seen %d times (%v) when reopening %q", n, err, path)
	}
	if _, err := ro.ExecContext(ctx, "INSERT INTO t VALUES (1)"); err == nil {
		t.Fatal("a query_only connection wrote")
	}
}
