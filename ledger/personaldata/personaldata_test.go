package personaldata_test

import (
	"bytes"
	"database/sql"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/payledger/payledger/internal/sqlitedsn"
	"github.com/payledger/payledger/ledger/personaldata"
)

type lockedRand struct {
	mu sync.Mutex
	r  *rand.ChaCha8
}

func (l *lockedRand) Read(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.Read(p)
}

func clock() time.Time { return time.Date(2026, 3, 2, 1, 0, 0, 0, time.UTC) }

func open(t *testing.T, path string, master []byte) *personaldata.Store {
	t.Helper()
	s, err := personaldata.Open(path, master, clock, &lockedRand{r: rand.NewChaCha8([32]byte{1})})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var master = bytes.Repeat([]byte{7}, personaldata.KeySize)

// backend opens a key store by name (a file, or a PostgreSQL schema) with
// a master key; opening a name again reopens the same store.
type backend struct {
	name string
	open func(t *testing.T, name string, master []byte, seed byte) (*personaldata.Store, error)
}

// backends are the two key stores the tests that do not look at a file
// run against.
func backends() []backend {
	return []backend{
		{"sqlite", func(t *testing.T, name string, master []byte, seed byte) (*personaldata.Store, error) {
			return personaldata.Open(filepath.Join(testDir(t), name+".db"), master, clock, &lockedRand{r: rand.NewChaCha8([32]byte{seed})})
		}},
		{"postgres", func(t *testing.T, name string, master []byte, seed byte) (*personaldata.Store, error) {
			return openPG(t, name, master, seed, false)
		}},
	}
}

// testDir is one temporary directory per test, however often it is asked.
func testDir(t *testing.T) string {
	t.Helper()
	dirs.Lock()
	defer dirs.Unlock()
	if dirs.m == nil {
		dirs.m = map[*testing.T]string{}
	}
	if d, ok := dirs.m[t]; ok {
		return d
	}
	d := t.TempDir()
	dirs.m[t] = d
	return d
}

var dirs struct {
	sync.Mutex
	m map[*testing.T]string
}

// mustOpen opens a store of b or fails the test, closing it at the end.
func mustOpen(t *testing.T, b backend, name string, master []byte, seed byte) *personaldata.Store {
	t.Helper()
	s, err := b.open(t, name, master, seed)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSealOpen: a sealed field holds no plain text, opens only in its own
// event for its own owner, and a wrong master key is refused at open.
func TestSealOpen(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) { testSealOpen(t, b) })
	}
}

func testSealOpen(t *testing.T, b backend) {
	s := mustOpen(t, b, "pd", master, 1)
	sealed, err := s.Seal("ACC1", "EV1", "Li Wei")
	if err != nil {
		t.Fatal(err)
	}
	if !personaldata.Sealed(sealed) || strings.Contains(sealed, "Li Wei") || !strings.HasPrefix(sealed, "pd1:ACC1:") {
		t.Fatalf("sealed %q", sealed)
	}
	again, err := s.Seal("ACC1", "EV1", "Li Wei")
	if err != nil || again == sealed {
		t.Fatalf("two seals of one text are equal (a nonce repeated): %v", err)
	}
	if plain, err := s.Open("ACC1", "EV1", sealed); err != nil || plain != "Li Wei" {
		t.Fatalf("open: %q %v", plain, err)
	}
	if _, err := s.Open("ACC1", "EV2", sealed); err == nil {
		t.Error("a field moved to another event opened")
	}
	if _, err := s.Open("ACC2", "EV1", sealed); err == nil {
		t.Error("a field opened as another owner's")
	}
	other, err := s.Seal("ACC2", "EV1", "x")
	if err != nil {
		t.Fatal(err)
	}
	forged := "pd1:ACC1:" + strings.SplitN(other, ":", 3)[2]
	if _, err := s.Open("ACC1", "EV1", forged); err == nil {
		t.Error("another owner's ciphertext opened under ACC1's key")
	}
	if got := s.Resolve([]string{"ACC1"}, "EV1", "paid ****"+sealed+" today", "[erased]", "[unreadable]"); got != "paid ****Li Wei today" {
		t.Errorf("resolve: %q", got)
	}
	if got := s.Resolve([]string{"ACC1"}, "EV2", sealed, "[erased]", "[unreadable]"); got != "[unreadable]" {
		t.Errorf("resolve in another event: %q", got)
	}
	// Only the owners named are opened: another's field reads unreadable,
	// whether its key is live, erased or missing.
	if got := s.Resolve([]string{"ACC2"}, "EV1", sealed, "[erased]", "[unreadable]"); got != "[unreadable]" {
		t.Errorf("resolve for another owner: %q", got)
	}
	if err := s.Erase("ACC2"); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{other, "pd1:ACC2:AAAA", "pd1:ACC7:AAAA"} {
		if got := s.Resolve([]string{"ACC1"}, "EV1", f, "[erased]", "[unreadable]"); got != "[unreadable]" {
			t.Errorf("resolve %q for ACC1 only: %q", f, got)
		}
	}
	if got := s.Resolve([]string{"ACC1", "ACC2"}, "EV1", other, "[erased]", "[unreadable]"); got != "[erased]" {
		t.Errorf("resolve an erased owner's field: %q", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if w, err := b.open(t, "pd", bytes.Repeat([]byte{8}, personaldata.KeySize), 2); !errors.Is(err, personaldata.ErrWrongMasterKey) {
		if w != nil {
			w.Close()
		}
		t.Fatalf("a wrong master key: %v", err)
	}
	s = mustOpen(t, b, "pd", master, 1)
	defer s.Close()
	if plain, err := s.Open("ACC1", "EV1", sealed); err != nil || plain != "Li Wei" {
		t.Fatalf("open after reopening: %q %v", plain, err)
	}
	if _, err := s.Open("ACC9", "EV1", "pd1:ACC9:AAAA"); !errors.Is(err, personaldata.ErrNoKey) {
		t.Errorf("a field of an owner without a key: %v, want ErrNoKey", err)
	}
}

// TestEraseOverwritesTheKey: after Erase the owner's fields read as erased
// (also after reopening), and the wrapped key's bytes are nowhere in the
// file: secure_delete overwrote them and the journal is gone.
func TestEraseOverwritesTheKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "personaldata.db")
	s := open(t, path, master)
	sealed, err := s.Seal("ACC1", "EV1", "13800138000")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Seal("ACC2", "EV2", "keep me"); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", sqlitedsn.File(path).QueryOnly().String())
	if err != nil {
		t.Fatal(err)
	}
	var wrapped []byte
	if err := db.QueryRow("SELECT wrapped FROM data_keys WHERE owner = 'ACC1'").Scan(&wrapped); err != nil || len(wrapped) < 32 {
		t.Fatalf("wrapped key: %x %v", wrapped, err)
	}
	db.Close()
	if err := s.Erase("ACC1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open("ACC1", "EV1", sealed); !errors.Is(err, personaldata.ErrErased) {
		t.Fatalf("open after erase: %v", err)
	}
	if _, err := s.Seal("ACC1", "EV3", "new"); !errors.Is(err, personaldata.ErrErased) {
		t.Fatalf("seal after erase: %v", err)
	}
	if st, err := s.StateOf("ACC2"); err != nil || st != personaldata.Live {
		t.Fatalf("another owner's key: %v %v", st, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, wrapped[:24]) {
			t.Errorf("%s still holds the erased wrapped key", e.Name())
		}
	}
	s = open(t, path, master)
	defer s.Close()
	if st, err := s.StateOf("ACC1"); err != nil || st != personaldata.Erased {
		t.Fatalf("after reopening: %v %v", st, err)
	}
	if err := s.Erase("ACC1"); err != nil {
		t.Fatalf("a second erase: %v", err)
	}
}

// BenchmarkSealOpen measures sealing and opening one payment description
// with a cached data key, the work a described payment adds per event.
func BenchmarkSealOpen(b *testing.B) {
	s, err := personaldata.Open(filepath.Join(b.TempDir(), "personaldata.db"), master, clock, &lockedRand{r: rand.NewChaCha8([32]byte{3})})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const text = "flat white and a croissant"
	if _, err := s.Seal("ACC1", "EV0", text); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		sealed, err := s.Seal("ACC1", "EV1", text)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Open("ACC1", "EV1", sealed); err != nil {
			b.Fatal(err)
		}
	}
}

// TestRewrapOverwritesOldWrapping: after Rewrap the file holds no byte of
// the keys as the old master key wrapped them, and a second Open of a
// store in use is refused.
func TestRewrapOverwritesOldWrapping(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "personaldata.db")
	s := open(t, path, master)
	if _, err := personaldata.Open(path, master, clock, &lockedRand{r: rand.NewChaCha8([32]byte{4})}); !errors.Is(err, personaldata.ErrLocked) {
		t.Fatalf("a second open of a store in use: %v", err)
	}
	sealed, err := s.Seal("ACC1", "EV1", "Li Wei")
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", sqlitedsn.File(path).QueryOnly().String())
	if err != nil {
		t.Fatal(err)
	}
	var wrapped []byte
	if err := db.QueryRow("SELECT wrapped FROM data_keys WHERE owner = 'ACC1'").Scan(&wrapped); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if n, err := s.Rewrap(bytes.Repeat([]byte{9}, personaldata.KeySize)); err != nil || n != 1 {
		t.Fatalf("rewrap: %d %v", n, err)
	}
	if plain, err := s.Open("ACC1", "EV1", sealed); err != nil || plain != "Li Wei" {
		t.Fatalf("open after rewrap: %q %v", plain, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, wrapped[:24]) {
		t.Error("the file still holds the key as the old master key wrapped it")
	}
}

// TestPendingErasures: a marked erasure stays pending, across a reopen,
// until its key is erased or it is unmarked.
func TestPendingErasures(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			s := mustOpen(t, b, "pd", master, 1)
			for _, o := range []string{"ACC1", "ACC2", "ACC1"} {
				if err := s.MarkErasing(o); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = mustOpen(t, b, "pd", master, 1)
			defer s.Close()
			if p, err := s.PendingErasures(10); err != nil || strings.Join(p, ",") != "ACC1,ACC2" {
				t.Fatalf("pending after a reopen: %v %v", p, err)
			}
			if p, err := s.PendingErasures(1); err != nil || len(p) != 1 {
				t.Fatalf("pending, at most 1: %v %v", p, err)
			}
			if err := s.Unmark("ACC2"); err != nil {
				t.Fatal(err)
			}
			if err := s.Erase("ACC1"); err != nil {
				t.Fatal(err)
			}
			if p, err := s.PendingErasures(10); err != nil || len(p) != 0 {
				t.Errorf("pending after the erasure and the unmark: %v %v", p, err)
			}
			if st, err := s.StateOf("ACC1"); err != nil || st != personaldata.Erased {
				t.Errorf("ACC1: %v %v", st, err)
			}
		})
	}
}

// TestSchemaUpgrade: a file of schema 1 (before pending erasures) is
// upgraded at open and keeps its keys.
func TestSchemaUpgrade(t *testing.T) {
	path := filepath.Join(t.TempDir(), "personaldata.db")
	s := open(t, path, master)
	sealed, err := s.Seal("ACC1", "EV1", "Li Wei")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", sqlitedsn.File(path).String())
	if err != nil {
		t.Fatal(err)
	}
	for _, stmt := range []string{"DROP TABLE pending_erasures", "PRAGMA user_version = 1"} {
		if _, err := db.Exec(stmt); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, path, master)
	defer s.Close()
	if plain, err := s.Open("ACC1", "EV1", sealed); err != nil || plain != "Li Wei" {
		t.Fatalf("open after the upgrade: %q %v", plain, err)
	}
	if err := s.MarkErasing("ACC1"); err != nil {
		t.Fatal(err)
	}
	if p, err := s.PendingErasures(10); err != nil || strings.Join(p, ",") != "ACC1" {
		t.Fatalf("pending after the upgrade: %v %v", p, err)
	}
}
