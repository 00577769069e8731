package personaldata_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/payledger/payledger/internal/pgtest"
	"github.com/payledger/payledger/ledger/personaldata"
)

// openPG opens the key store in the test's schema named by name (a fresh
// one per test and name, dropped at its end); a second call with the same
// name opens the same store, as a second process would.
func openPG(t *testing.T, name string, master []byte, seed byte, exclusive bool) (*personaldata.Store, error) {
	t.Helper()
	dsn, schema := pgtest.Schema(t, t.Name()+"/"+name)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return personaldata.OpenPostgres(ctx, dsn, personaldata.PostgresOptions{Schema: schema, Exclusive: exclusive},
		master, clock, &lockedRand{r: rand.NewChaCha8([32]byte{seed})})
}

// node opens one more process's store on the test's schema name.
func node(t *testing.T, name string, seed byte) *personaldata.Store {
	t.Helper()
	s, err := openPG(t, name, master, seed, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// sqlOn connects to the test's schema name behind the stores' backs.
func sqlOn(t *testing.T, name string) *pgx.Conn {
	t.Helper()
	dsn, schema := pgtest.Schema(t, t.Name()+"/"+name)
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["search_path"] = schema
	conn, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// waitFor polls cond until it holds, failing the test after a minute: a
// bound on a broken build, not an assertion on speed.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestTwoNodes: a key made on one process opens on another; after one
// erases it, the other, which had it cached, refuses the owner's fields;
// the erased key's wrapped bytes are gone from the table.
func TestTwoNodes(t *testing.T) {
	a, b := node(t, "pd", 1), node(t, "pd", 2)
	sealed, err := a.Seal("ACC1", "EV1", "Li Wei")
	if err != nil {
		t.Fatal(err)
	}
	if plain, err := b.Open("ACC1", "EV1", sealed); err != nil || plain != "Li Wei" {
		t.Fatalf("the other node opens: %q %v", plain, err)
	}
	other, err := b.Seal("ACC2", "EV2", "keep me")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Erase("ACC1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the other node refuses the erased owner's field", func() bool {
		_, err := b.Open("ACC1", "EV1", sealed)
		return errors.Is(err, personaldata.ErrErased)
	})
	if _, err := b.Seal("ACC1", "EV3", "new"); !errors.Is(err, personaldata.ErrErased) {
		t.Fatalf("seal after the other node's erasure: %v", err)
	}
	if plain, err := a.Open("ACC2", "EV2", other); err != nil || plain != "keep me" {
		t.Fatalf("another owner's field: %q %v", plain, err)
	}
	var wrapped []byte
	var erasedAt *string
	if err := sqlOn(t, "pd").QueryRow(context.Background(), "SELECT wrapped, erased_at FROM data_keys WHERE owner = 'ACC1'").Scan(&wrapped, &erasedAt); err != nil {
		t.Fatal(err)
	}
	if wrapped != nil || erasedAt == nil {
		t.Fatalf("the erased row: wrapped %x, erased_at %v", wrapped, erasedAt)
	}
}

// TestLostListenerDropsTheCache: an erasure no notification announced (it
// happened while the listening connection was down) is seen once the
// connection is back, because a lost connection drops every cached key.
func TestLostListenerDropsTheCache(t *testing.T) {
	a := node(t, "pd", 1)
	sealed, err := a.Seal("ACC1", "EV1", "Li Wei")
	if err != nil {
		t.Fatal(err)
	}
	conn := sqlOn(t, "pd")
	ctx := context.Background()
	// Erased behind the store's back, with no NOTIFY: the key stays cached.
	if _, err := conn.Exec(ctx, "UPDATE data_keys SET wrapped = NULL, erased_at = 'x' WHERE owner = 'ACC1'"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Open("ACC1", "EV1", sealed); err != nil {
		t.Fatalf("the cached key before the connection is lost: %v", err)
	}
	pid := a.ListenerPID()
	var killed bool
	if err := conn.QueryRow(ctx, "SELECT pg_terminate_backend($1)", int32(pid)).Scan(&killed); err != nil || !killed {
		t.Fatalf("terminate the listener: %v %v", killed, err)
	}
	waitFor(t, "the store drops its cache after losing the listener", func() bool {
		_, err := a.Open("ACC1", "EV1", sealed)
		return errors.Is(err, personaldata.ErrErased)
	})
	waitFor(t, "the store listens again", func() bool { p := a.ListenerPID(); return p != 0 && p != pid })
}

// TestConcurrentFirstSeal: two processes sealing for new owners at once
// end with one key per owner, which opens every field on both.
func TestConcurrentFirstSeal(t *testing.T) {
	nodes := []*personaldata.Store{node(t, "pd", 1), node(t, "pd", 2)}
	const owners, perNode = 20, 4
	type sealedField struct{ owner, event, field string }
	var mu sync.Mutex
	var fields []sealedField
	var wg sync.WaitGroup
	errs := make(chan error, owners*perNode*len(nodes))
	for o := range owners {
		for n, s := range nodes {
			for i := range perNode {
				wg.Add(1)
				go func() {
					defer wg.Done()
					owner, ev := fmt.Sprintf("ACC%d", o), fmt.Sprintf("EV%d-%d-%d", o, n, i)
					f, err := s.Seal(owner, ev, "text "+ev)
					if err != nil {
						errs <- err
						return
					}
					mu.Lock()
					fields = append(fields, sealedField{owner, ev, f})
					mu.Unlock()
				}()
			}
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, f := range fields {
		for n, s := range nodes {
			if plain, err := s.Open(f.owner, f.event, f.field); err != nil || plain != "text "+f.event {
				t.Fatalf("node %d opens %s's field of %s: %q %v", n, f.owner, f.event, plain, err)
			}
		}
	}
	var rows, distinct int
	if err := sqlOn(t, "pd").QueryRow(context.Background(), "SELECT count(*), count(DISTINCT owner) FROM data_keys").Scan(&rows, &distinct); err != nil {
		t.Fatal(err)
	}
	if rows != owners || distinct != owners {
		t.Fatalf("%d key rows for %d owners, want %d", rows, distinct, owners)
	}
}

// TestRewrapExclusive: rotating the master key needs the store opened
// exclusively, which is refused while another process has it open and
// keeps the others out while it is; afterwards only the new master key
// opens the store, and every key still opens its fields.
func TestRewrapExclusive(t *testing.T) {
	a, err := openPG(t, "pd", master, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := a.Seal("ACC1", "EV1", "Li Wei")
	if err != nil {
		t.Fatal(err)
	}
	next := bytes.Repeat([]byte{9}, personaldata.KeySize)
	if _, err := a.Rewrap(next); !errors.Is(err, personaldata.ErrLocked) {
		t.Fatalf("rewrap on a shared store: %v, want ErrLocked", err)
	}
	if x, err := openPG(t, "pd", master, 2, true); !errors.Is(err, personaldata.ErrLocked) {
		if x != nil {
			x.Close()
		}
		t.Fatalf("an exclusive open beside a server: %v, want ErrLocked", err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	x, err := openPG(t, "pd", master, 3, true)
	if err != nil {
		t.Fatalf("an exclusive open with no server: %v", err)
	}
	if s, err := openPG(t, "pd", master, 4, false); !errors.Is(err, personaldata.ErrLocked) {
		if s != nil {
			s.Close()
		}
		t.Fatalf("a server's open during a rotation: %v, want ErrLocked", err)
	}
	if n, err := x.Rewrap(next); err != nil || n != 1 {
		t.Fatalf("rewrap: %d %v", n, err)
	}
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err := openPG(t, "pd", master, 5, false); !errors.Is(err, personaldata.ErrWrongMasterKey) {
		if s != nil {
			s.Close()
		}
		t.Fatalf("the old master key after the rotation: %v, want ErrWrongMasterKey", err)
	}
	s, err := openPG(t, "pd", next, 6, false)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if plain, err := s.Open("ACC1", "EV1", sealed); err != nil || plain != "Li Wei" {
		t.Fatalf("open after the rotation: %q %v", plain, err)
	}
}

// TestRotatedAwayMasterKeyAddsNoKey: a process whose master key was
// rotated away (its check value replaced) refuses to add a key the others
// could not unwrap.
func TestRotatedAwayMasterKeyAddsNoKey(t *testing.T) {
	a := node(t, "pd", 1)
	if _, err := sqlOn(t, "pd").Exec(context.Background(), "UPDATE meta SET value = '\\x00'::bytea WHERE name = 'check'"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Seal("ACC1", "EV1", "Li Wei"); !errors.Is(err, personaldata.ErrRotated) {
		t.Fatalf("a new key under a rotated-away master key: %v, want ErrRotated", err)
	}
	var n int
	if err := sqlOn(t, "pd").QueryRow(context.Background(), "SELECT count(*) FROM data_keys").Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d keys stored, %v", n, err)
	}
}

// TestImport: a SQLite file's keys, erasures and pending erasures move
// into PostgreSQL; an erasure wins over a live key; an owner with another
// key in each store fails the whole import.
func TestImport(t *testing.T) {
	file := func(t *testing.T) (*personaldata.Store, map[string]string) {
		src := open(t, filepath.Join(t.TempDir(), "personaldata.db"), master)
		t.Cleanup(func() { _ = src.Close() })
		fields := map[string]string{}
		for _, o := range []string{"ACC1", "ACC2", "ACC3"} {
			f, err := src.Seal(o, "EV-"+o, "text of "+o)
			if err != nil {
				t.Fatal(err)
			}
			fields[o] = f
		}
		if err := src.Erase("ACC2"); err != nil {
			t.Fatal(err)
		}
		if err := src.MarkErasing("ACC3"); err != nil {
			t.Fatal(err)
		}
		return src, fields
	}
	t.Run("Merge", func(t *testing.T) {
		src, fields := file(t)
		dst := node(t, "pd", 5)
		if err := dst.Erase("ACC3"); err != nil { // erased here, live in the file
			t.Fatal(err)
		}
		kept, err := dst.Seal("ACC4", "EV4", "already here")
		if err != nil {
			t.Fatal(err)
		}
		got, err := dst.Import(src)
		if err != nil {
			t.Fatal(err)
		}
		if want := (personaldata.Imported{Keys: 1, Erased: 1, Known: 1, Pending: 1}); got != want {
			t.Errorf("imported %+v, want %+v", got, want)
		}
		other := node(t, "pd", 6)
		if plain, err := other.Open("ACC1", "EV-ACC1", fields["ACC1"]); err != nil || plain != "text of ACC1" {
			t.Errorf("an imported key: %q %v", plain, err)
		}
		for _, o := range []string{"ACC2", "ACC3"} {
			if _, err := other.Open(o, "EV-"+o, fields[o]); !errors.Is(err, personaldata.ErrErased) {
				t.Errorf("%s: %v, want ErrErased", o, err)
			}
		}
		if plain, err := other.Open("ACC4", "EV4", kept); err != nil || plain != "already here" {
			t.Errorf("a key the store had: %q %v", plain, err)
		}
		if p, err := other.PendingErasures(10); err != nil || len(p) != 1 || p[0] != "ACC3" {
			t.Errorf("pending: %v %v", p, err)
		}
		if again, err := dst.Import(src); err != nil || again != (personaldata.Imported{Known: 3}) {
			t.Errorf("a second import: %+v %v", again, err)
		}
	})
	t.Run("Conflict", func(t *testing.T) {
		src, _ := file(t)
		dst := node(t, "pd", 7)
		if _, err := dst.Seal("ACC1", "EV9", "another key"); err != nil {
			t.Fatal(err)
		}
		if _, err := dst.Import(src); !errors.Is(err, personaldata.ErrImportConflict) {
			t.Fatalf("import over another key: %v, want ErrImportConflict", err)
		}
		if st, err := dst.StateOf("ACC2"); err != nil || st != personaldata.NoKey {
			t.Errorf("after a failed import ACC2 is %v (%v), want no key", st, err)
		}
	})
}

// benchOwners numbers the owners BenchmarkFirstSeal makes keys for, so
// that no run of it finds one already made.
var benchOwners atomic.Int64

// BenchmarkFirstSeal measures sealing for an owner with no key yet (the
// key made, wrapped and stored: an account opening's cost) and looking up
// a key that is not cached (one read of the table), on both backends.
func BenchmarkFirstSeal(b *testing.B) {
	for _, be := range []string{"sqlite", "postgres"} {
		b.Run(be, func(b *testing.B) {
			var s *personaldata.Store
			var err error
			rnd := &lockedRand{r: rand.NewChaCha8([32]byte{5})}
			if be == "sqlite" {
				s, err = personaldata.Open(filepath.Join(b.TempDir(), "personaldata.db"), master, clock, rnd)
			} else {
				dsn, schema := pgtest.Schema(b, b.Name())
				s, err = personaldata.OpenPostgres(context.Background(), dsn, personaldata.PostgresOptions{Schema: schema}, master, clock, rnd)
			}
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			b.Run("seal", func(b *testing.B) {
				for b.Loop() {
					if _, err := s.Seal(fmt.Sprintf("S%d", benchOwners.Add(1)), "EV", "Li Wei"); err != nil {
						b.Fatal(err)
					}
				}
			})
			// A key not cached: one read of the table (an owner with no key
			// is never cached).
			b.Run("lookup-uncached", func(b *testing.B) {
				for b.Loop() {
					if _, err := s.StateOf("missing"); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
