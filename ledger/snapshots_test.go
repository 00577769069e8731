package ledger_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/eventstore"
	"github.com/payledger/payledger/ledger"
)

// countingStore counts the account events read by ReadStream.
type countingStore struct {
	eventstore.Store
	mu   sync.Mutex
	read int
}

func (c *countingStore) ReadStream(ctx context.Context, stream string, from int64, limit int) ([]eventstore.Event, error) {
	evs, err := c.Store.ReadStream(ctx, stream, from, limit)
	c.mu.Lock()
	c.read += len(evs)
	c.mu.Unlock()
	return evs, err
}

func (c *countingStore) reads() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.read
}

// waitSnapshot waits until the stream's snapshot is at least at version.
func waitSnapshot(t *testing.T, s eventstore.Store, stream string, version int64) eventstore.Snapshot {
	t.Helper()
	for i := 0; i < 200; i++ {
		snap, ok, err := s.LoadSnapshot(context.Background(), stream)
		if err != nil {
			t.Fatal(err)
		}
		if ok && snap.Version >= version {
			return snap
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no snapshot of %s at %d", stream, version)
	return eventstore.Snapshot{}
}

// TestAccountSnapshots: a node loading a cold account reads its snapshot
// and only the events after it, and holds what a full read gives (its
// balance, its idempotency keys); a snapshot whose hash the log does not
// vouch for, or of another schema, is ignored, reported, and the stream is
// read in full.
func TestAccountSnapshots(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 55)
	stop := e.runProjection(t)
	writer := e.node(t, func(c *ledger.Config) { c.SnapshotEvery = 10 })
	h := openCertAccount(t, ctx, writer, "Snap Holder", 5)
	for i := 0; i < 24; i++ {
		fund(t, writer, h.id, "1.00")
	}
	keyed, err := writer.Deposit(ctx, fundingActor, h.id, idemFor("dep-1", "x"), "2.00", "CNY", "keyed transfer")
	if err != nil {
		t.Fatal(err)
	}
	stream := domain.AccountStream(h.id)
	// Two events at opening, 25 deposits: snapshots at 10, 20 (and later).
	snap := waitSnapshot(t, e.store, stream, 20)
	if snap.Schema != domain.AccountSnapshotSchema {
		t.Fatalf("schema %d", snap.Schema)
	}
	if writer.SnapshotStats().Saved < 2 {
		t.Fatalf("saved %+v", writer.SnapshotStats())
	}
	stop()

	full, err := writer.Account(ctx, h.actor(), h.id)
	if err != nil {
		t.Fatal(err)
	}
	load := func(mod func(*ledger.Config)) (*ledger.Service, *countingStore, ledger.AccountView) {
		t.Helper()
		cs := &countingStore{Store: e.store}
		n := e.node(t, func(c *ledger.Config) {
			c.Store = cs
			c.SnapshotEvery = -1
			if mod != nil {
				mod(c)
			}
		})
		v, err := n.Account(ctx, h.actor(), h.id)
		if err != nil {
			t.Fatal(err)
		}
		return n, cs, v
	}
	cold, cs, v := load(nil)
	if jsonOf(t, v) != jsonOf(t, full) {
		t.Fatalf("account from the snapshot\n%s\nwant\n%s", jsonOf(t, v), jsonOf(t, full))
	}
	if st := cold.SnapshotStats(); st.Loaded != 1 || st.Rejected != 0 {
		t.Fatalf("stats %+v", st)
	}
	if behind := int(full.Version - snap.Version); cs.reads() > behind+1 {
		t.Fatalf("read %d events to load, the snapshot is %d behind", cs.reads(), behind)
	}
	// The key recorded before the snapshot still replays.
	again, err := cold.Deposit(ctx, fundingActor, h.id, idemFor("dep-1", "x"), "2.00", "CNY", "keyed transfer")
	if err != nil || !again.Replayed || again.Events[0].ID != keyed.Events[0].ID {
		t.Fatalf("replay across the snapshot: %+v %v", again, err)
	}

	// A snapshot the log does not vouch for is ignored and reported.
	// Each one is later than the last, so the store keeps it.
	for _, c := range []struct {
		name string
		bad  eventstore.Snapshot
	}{
		{"hash", eventstore.Snapshot{Stream: stream, Version: snap.Version + 1, EventHash: [32]byte{1}, Schema: snap.Schema, Payload: snap.Payload}},
		{"schema", eventstore.Snapshot{Stream: stream, Version: snap.Version + 2, EventHash: hashAt(t, e, stream, snap.Version+2), Schema: snap.Schema + 1, Payload: snap.Payload}},
		{"payload", eventstore.Snapshot{Stream: stream, Version: snap.Version + 3, EventHash: hashAt(t, e, stream, snap.Version+3), Schema: snap.Schema,
			Payload: []byte(`{"account":{"version":"x"}}`)}},
	} {
		name, bad := c.name, c.bad
		if err := e.store.SaveSnapshot(ctx, bad); err != nil {
			t.Fatal(err)
		}
		var reasons []string
		n, cs, v := load(func(c *ledger.Config) {
			c.OnSnapshotRejected = func(stream, reason string) { reasons = append(reasons, reason) }
		})
		if jsonOf(t, v) != jsonOf(t, full) {
			t.Fatalf("%s: account after a rejected snapshot differs", name)
		}
		if st := n.SnapshotStats(); st.Rejected != 1 || st.Loaded != 0 || len(reasons) != 1 {
			t.Fatalf("%s: stats %+v, reasons %v", name, st, reasons)
		}
		if cs.reads() < int(full.Version) {
			t.Fatalf("%s: read %d events, want the whole stream of %d", name, cs.reads(), full.Version)
		}
		if name == "hash" && !strings.Contains(reasons[0], "hash") {
			t.Errorf("reason %q", reasons[0])
		}
	}
}

// hashAt returns the hash of a stream's event at version.
func hashAt(t *testing.T, e *env, stream string, version int64) [32]byte {
	t.Helper()
	evs, err := e.store.ReadStream(context.Background(), stream, version, 1)
	if err != nil || len(evs) != 1 {
		t.Fatalf("event %d of %s: %v", version, stream, err)
	}
	return evs[0].Hash
}
