package kurrent

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/oklog/ulid/v2"

	"github.com/payledger/payledger/eventstore"
	"github.com/payledger/payledger/eventstore/storetest"
)

// serverURL returns KURRENTDB_URL, or skips t saying why and how to run
// it: there is no KurrentDB server in CI.
func serverURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("KURRENTDB_URL")
	if u == "" {
		t.Skip("SKIPPED: KURRENTDB_URL is unset, so there is no KurrentDB server to run this against. " +
			"Start an insecure single node with `docker run --rm -p 2113:2113 kurrentplatform/kurrentdb:26.1.1 --insecure` " +
			"and run `KURRENTDB_URL='kurrentdb://127.0.0.1:2113?tls=false' go test ./eventstore/kurrent/`")
	}
	return u
}

// runNonce keeps this run's namespaces apart from earlier runs' on the
// same server.
var runNonce = func() string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}()

// namespaceFor names the log of a test directory, the same for every
// open of it in this run.
func namespaceFor(key string) string {
	sum := sha256.Sum256([]byte(runNonce + "/" + key))
	return "t" + hex.EncodeToString(sum[:12])
}

func openNS(t testing.TB, url, ns string) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Open(ctx, url, Options{Namespace: ns})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	url := serverURL(t)
	opts := storetest.Options{}
	if tamperURL := os.Getenv("KURRENTDB_TAMPER_URL"); tamperURL != "" {
		opts.Tamper = func(t testing.TB, s eventstore.Store) error { return tamper(t, tamperURL, s.(*Store)) }
	}
	storetest.RunWithOptions(t, func(t testing.TB, dir string) eventstore.Store {
		return openNS(t, url, namespaceFor(dir))
	}, opts)
}

// tamper tries, as KURRENTDB_TAMPER_URL's user (payledger's, on a node
// whose ACLs are set as docs/architecture.md says), to delete, tombstone
// and truncate the log; each must be denied.
func tamper(t testing.TB, url string, s *Store) error {
	cfg, _, err := ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c, err := esdb.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var tb esdb.StreamMetadata
	tb.SetTruncateBefore(2)
	var maxCount esdb.StreamMetadata
	maxCount.SetMaxCount(1)
	attempts := map[string]func() error{
		"delete": func() error {
			_, err := c.DeleteStream(ctx, s.names.log(), esdb.DeleteStreamOptions{ExpectedRevision: esdb.Any{}})
			return err
		},
		"tombstone": func() error {
			_, err := c.TombstoneStream(ctx, s.names.log(), esdb.TombstoneStreamOptions{ExpectedRevision: esdb.Any{}})
			return err
		},
		"$tb": func() error {
			_, err := c.SetStreamMetadata(ctx, s.names.log(), esdb.AppendToStreamOptions{ExpectedRevision: esdb.Any{}}, tb)
			return err
		},
		"$maxCount": func() error {
			_, err := c.SetStreamMetadata(ctx, s.names.log(), esdb.AppendToStreamOptions{ExpectedRevision: esdb.Any{}}, maxCount)
			return err
		},
	}
	var last error
	for name, try := range attempts {
		err := try()
		if err == nil {
			return fmt.Errorf("%s of the log succeeded", name)
		}
		if last = MapRetentionError(err); !errors.Is(last, eventstore.ErrDeleteForbidden) {
			return fmt.Errorf("%s: %w", name, last)
		}
	}
	return last
}

// TestTwoWriters: two stores on one log (two processes) append to the same
// streams at once; the log stays gap-free, every stream's versions and
// chain hold, and each store reads the same streams.
func TestTwoWriters(t *testing.T) {
	url := serverURL(t)
	ns := namespaceFor(t.Name())
	stores := []*Store{openNS(t, url, ns), openNS(t, url, ns)}
	for _, s := range stores {
		t.Cleanup(func() { _ = s.Close() })
	}
	const perWriter, streams, tries = 40, 3, 200
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 2*len(stores))
	for w, s := range stores {
		for g := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range perWriter {
					stream := fmt.Sprintf("acc-%d", (i+g)%streams)
					id := ulid.Make().String()
					d := []eventstore.EventData{{ID: id, Type: "T", SchemaVersion: 1, OccurredAt: time.Unix(int64(i), 0),
						Payload: fmt.Appendf(nil, `{"writer":%d,"id":%q}`, w, id)}}
					var err error
					for range tries {
						var v int64
						if v, err = s.StreamVersion(ctx, stream); err != nil {
							break
						}
						if _, err = s.Append(ctx, stream, v, d); !errors.Is(err, eventstore.ErrVersionConflict) {
							break
						}
					}
					if err != nil {
						errs <- fmt.Errorf("writer %d: %w", w, err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	total := 2 * 2 * perWriter
	var all []eventstore.Event
	for range total {
		page, err := stores[1].ReadAll(ctx, int64(len(all)), 500)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		all = append(all, page...)
	}
	if len(all) != total {
		t.Fatalf("the log has %d events, want %d", len(all), total)
	}
	seen := map[string]bool{}
	for i, e := range all {
		if e.Position != int64(i+1) || seen[e.ID] {
			t.Fatalf("event %d: position %d, id seen before %v", i, e.Position, seen[e.ID])
		}
		seen[e.ID] = true
	}
	for i := range streams {
		stream := fmt.Sprintf("acc-%d", i)
		a, err := stores[0].ReadStream(ctx, stream, 1, 0)
		if err != nil {
			t.Fatal(err)
		}
		b, err := stores[1].ReadStream(ctx, stream, 1, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(a) != len(b) || len(a) == 0 {
			t.Fatalf("%s: %d and %d events through the two stores", stream, len(a), len(b))
		}
		for j := range a {
			if a[j].Version != int64(j+1) || a[j].ID != b[j].ID || a[j].Position != b[j].Position {
				t.Fatalf("%s: event %d differs between the stores or is out of order", stream, j)
			}
		}
		if _, err := eventstore.VerifyChain([32]byte{}, a); err != nil {
			t.Fatalf("%s: %v", stream, err)
		}
	}
}

// TestTwoNodesConditions races suspensions appended through one store
// with payments conditioned on them through another of the same log (two
// processes): no payment commits after the suspension it was conditioned
// against.
func TestTwoNodesConditions(t *testing.T) {
	url := serverURL(t)
	ns := namespaceFor(t.Name())
	a, b := openNS(t, url, ns), openNS(t, url, ns)
	t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
	storetest.ConditionRace(t, a, b)
}

// TestRecoverUnindexedAppend: a writer that died between committing to
// the log and indexing leaves an event only in the log; the next Open
// indexes it, so the stream reads it, its id answers a retry, and the
// next append chains to it.
func TestRecoverUnindexedAppend(t *testing.T) {
	url := serverURL(t)
	ns := namespaceFor(t.Name())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := openNS(t, url, ns)
	first, err := s.Append(ctx, "acc-1", eventstore.NoStream, []eventstore.EventData{{ID: ulid.Make().String(), Type: "T", SchemaVersion: 1, OccurredAt: time.Unix(1, 0), Payload: []byte("{}")}})
	if err != nil {
		t.Fatal(err)
	}
	// The dead writer's commit: the log only.
	d := eventstore.EventData{ID: ulid.Make().String(), Type: "T", SchemaVersion: 1, OccurredAt: time.Unix(2, 0).UTC(), Payload: []byte(`{"lost":false}`)}
	orphan := eventstore.Event{EventData: d, Stream: "acc-1", Version: 2, Position: 2, PrevHash: first.Events[0].Hash}
	orphan.Hash = eventstore.ComputeHash(orphan.PrevHash, orphan.Stream, orphan.Version, d)
	data, err := encodeEvent(orphan, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.appendTo(ctx, s.names.log(), esdb.Revision(0), data); err != nil {
		t.Fatal(err)
	}
	if v, err := s.StreamVersion(ctx, "acc-1"); err != nil || v != 1 {
		t.Fatalf("before recovery the index has version %d (%v), want 1", v, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openNS(t, url, ns)
	defer func() { _ = s.Close() }()
	events, err := s.ReadStream(ctx, "acc-1", 1, 10)
	if err != nil || len(events) != 2 || events[1].ID != d.ID || events[1].Hash != orphan.Hash {
		t.Fatalf("after recovery: %d events (%v), want the orphan at version 2", len(events), err)
	}
	again, err := s.Append(ctx, "acc-1", 1, []eventstore.EventData{d})
	if err != nil || len(again.Events) != 1 || again.Events[0].Position != 2 {
		t.Fatalf("retry of the orphan: %+v %v, want it answered from the log", again, err)
	}
	next, err := s.Append(ctx, "acc-1", 2, []eventstore.EventData{{ID: ulid.Make().String(), Type: "T", SchemaVersion: 1, OccurredAt: time.Unix(3, 0), Payload: []byte("{}")}})
	if err != nil || next.Events[0].Position != 3 || next.Events[0].PrevHash != orphan.Hash {
		t.Fatalf("next append: %+v %v, want position 3 chained to the orphan", next, err)
	}
}

// TestOpenUnreachable needs no server: a node that does not answer fails
// Open with an error that names the redacted URL, never the password.
func TestOpenUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Open(ctx, "kurrentdb://payledger:hunter2@127.0.0.1:1?tls=false&maxDiscoverAttempts=1", Options{CallTimeout: 2 * time.Second})
	if err == nil {
		_ = s.Close()
		t.Fatal("opened a store on a port nothing listens on")
	}
	if strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "payledger:xxxxx@127.0.0.1:1") {
		t.Fatalf("error %q: want the redacted URL and no password", err)
	}
}

// TestServerDown needs no server: with nothing listening, an Append is
// ErrUnavailable, reads fail rather than look empty, and after Close every
// method is ErrClosed.
func TestServerDown(t *testing.T) {
	cfg, _, err := ParseURL("kurrentdb://127.0.0.1:1?tls=false&maxDiscoverAttempts=1")
	if err != nil {
		t.Fatal(err)
	}
	opts := DefaultOptions()
	opts.CallTimeout = 2 * time.Second
	s := newStore(cfg, opts)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d := []eventstore.EventData{{ID: ulid.Make().String(), Type: "T", SchemaVersion: 1, OccurredAt: time.Unix(1, 0), Payload: []byte("{}")}}
	if _, err := s.Append(ctx, "acc-1", eventstore.NoStream, d); !errors.Is(err, eventstore.ErrUnavailable) {
		t.Errorf("append with the server down: %v, want ErrUnavailable", err)
	}
	// Conditions are checked before the server is asked, and a valid
	// conditional append meets the same unavailable server.
	if _, err := s.AppendIf(ctx, "acc-1", eventstore.NoStream, d, []eventstore.Condition{{Stream: "acc-1", Version: 0}}); !errors.Is(err, eventstore.ErrInvalidAppend) {
		t.Errorf("append conditioned on its own stream: %v, want ErrInvalidAppend", err)
	}
	if _, err := s.AppendIf(ctx, "acc-1", eventstore.NoStream, d, []eventstore.Condition{{Stream: "acc-2", Version: 1}}); !errors.Is(err, eventstore.ErrUnavailable) {
		t.Errorf("conditional append with the server down: %v, want ErrUnavailable", err)
	}
	if got, err := s.ReadStream(ctx, "acc-1", 1, 10); err == nil {
		t.Errorf("read with the server down: %d events and no error", len(got))
	}
	if _, err := s.Head(ctx); err == nil {
		t.Error("head with the server down: no error")
	}
	if _, err := s.StreamVersion(ctx, "acc-1"); err == nil {
		t.Error("stream version with the server down: no error")
	}
	if _, _, err := s.LoadSnapshot(ctx, "acc-1"); err == nil {
		t.Error("load snapshot with the server down: no error")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, "acc-1", eventstore.NoStream, d); !errors.Is(err, eventstore.ErrClosed) {
		t.Errorf("append after close: %v", err)
	}
	if _, err := s.AppendIf(ctx, "acc-1", eventstore.NoStream, d, []eventstore.Condition{{Stream: "acc-2", Version: 1}}); !errors.Is(err, eventstore.ErrClosed) {
		t.Errorf("conditional append after close: %v", err)
	}
	if _, err := s.ReadAll(ctx, 0, 10); !errors.Is(err, eventstore.ErrClosed) {
		t.Errorf("read after close: %v", err)
	}
	if err := s.Subscribe(ctx, 0, func(eventstore.Event) error { return nil }); !errors.Is(err, eventstore.ErrClosed) {
		t.Errorf("subscribe after close: %v", err)
	}
	if err := s.SaveSnapshot(ctx, eventstore.Snapshot{Stream: "acc-1", Version: 1, Payload: []byte("{}")}); !errors.Is(err, eventstore.ErrClosed) {
		t.Errorf("save snapshot after close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
}
