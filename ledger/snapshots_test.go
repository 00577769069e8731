package ledger_test

import (
	"context"
	"fmt"
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
	eventstore.ConditionalStore
	mu   sync.Mutex
	read int
}

func (c *countingStore) ReadStream(ctx context.Context, stream string, from int64, limit int) ([]eventstore.Event, error) {
	evs, err := c.ConditionalStore.ReadStream(ctx, stream, from, limit)
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
		cs := &countingStore{ConditionalStore: e.store}
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

// TestSnapshotsAtClose: SaveSnapshots (what a server's close calls) saves
// the snapshot of a cached account that is a few events past its last, so
// that a restarted node loads it with no tail; an account fewer events
// behind, or past the bound, is left. After a crash (no close) a node loads
// from the older snapshot and the events after it, and holds what the
// writer held.
func TestSnapshotsAtClose(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 56)
	stop := e.runProjection(t)
	defer stop()
	writer := e.node(t, func(c *ledger.Config) { c.SnapshotEvery = 50 })
	h := openCertAccount(t, ctx, writer, "Close Holder", 6)
	few := openCertAccount(t, ctx, writer, "Few Holder", 7)
	for i := 0; i < 20; i++ {
		fund(t, writer, h.id, "1.00")
	}
	fund(t, writer, few.id, "1.00")
	stream := domain.AccountStream(h.id)
	if _, ok, err := e.store.LoadSnapshot(ctx, stream); err != nil || ok {
		t.Fatalf("a snapshot before 50 events: %v %v", ok, err)
	}
	if n, err := writer.SaveSnapshots(ctx, 0); err != nil || n != 0 {
		t.Fatalf("SaveSnapshots with a bound of 0 saved %d: %v", n, err)
	}
	n, err := writer.SaveSnapshots(ctx, 10)
	if err != nil || n != 1 {
		t.Fatalf("SaveSnapshots saved %d, want 1 (the account 3 events behind is left): %v", n, err)
	}
	full, err := writer.Account(ctx, h.actor(), h.id)
	if err != nil {
		t.Fatal(err)
	}
	if snap, ok, err := e.store.LoadSnapshot(ctx, stream); err != nil || !ok || snap.Version != full.Version {
		t.Fatalf("snapshot at %d (%v %v), want the account's version %d", snap.Version, ok, err, full.Version)
	}
	if _, ok, err := e.store.LoadSnapshot(ctx, domain.AccountStream(few.id)); err != nil || ok {
		t.Fatalf("a snapshot of the account 3 events behind: %v %v", ok, err)
	}
	if n, err := writer.SaveSnapshots(ctx, 10); err != nil || n != 0 {
		t.Fatalf("a second SaveSnapshots saved %d: %v", n, err)
	}

	restart := func() (*ledger.Service, *countingStore, ledger.AccountView) {
		t.Helper()
		cs := &countingStore{ConditionalStore: e.store}
		n := e.node(t, func(c *ledger.Config) { c.Store = cs; c.SnapshotEvery = 50 })
		v, err := n.Account(ctx, h.actor(), h.id)
		if err != nil {
			t.Fatal(err)
		}
		return n, cs, v
	}
	cold, cs, v := restart()
	if jsonOf(t, v) != jsonOf(t, full) {
		t.Fatalf("account after the restart\n%s\nwant\n%s", jsonOf(t, v), jsonOf(t, full))
	}
	// One event read: the snapshot's own, to check its hash.
	if st := cold.SnapshotStats(); st.Loaded != 1 || st.Rejected != 0 || cs.reads() != 1 {
		t.Fatalf("stats %+v, %d events read, want the snapshot and 1", st, cs.reads())
	}

	// Five more deposits and a crash: no SaveSnapshots.
	for i := 0; i < 5; i++ {
		fund(t, writer, h.id, "1.00")
	}
	if full, err = writer.Account(ctx, h.actor(), h.id); err != nil {
		t.Fatal(err)
	}
	cold, cs, v = restart()
	if jsonOf(t, v) != jsonOf(t, full) {
		t.Fatalf("account after the crash\n%s\nwant\n%s", jsonOf(t, v), jsonOf(t, full))
	}
	if st := cold.SnapshotStats(); st.Loaded != 1 || st.Rejected != 0 || cs.reads() != 1+5 {
		t.Fatalf("stats %+v, %d events read, want the older snapshot's and the 5 after it", st, cs.reads())
	}
}

// TestSnapshotOnEviction: an aggregate the cache drops to make room, 8 or
// more events past its snapshot, has one saved at its version, and a node
// loading it reads no tail.
func TestSnapshotOnEviction(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 57)
	stop := e.runProjection(t)
	defer stop()
	writer := e.node(t, func(c *ledger.Config) { c.SnapshotEvery = 50; c.CacheSize = 10 })
	var hs []certHolder
	for i := 0; i < 10; i++ {
		h := openCertAccount(t, ctx, writer, fmt.Sprintf("Evicted Holder %d", i), byte(10+i))
		for j := 0; j < 8; j++ {
			fund(t, writer, h.id, "1.00")
		}
		hs = append(hs, h)
	}
	if st := writer.SnapshotStats(); st.Saved != 0 {
		t.Fatalf("saved %d before any eviction", st.Saved)
	}
	// The eleventh account makes room by dropping one of the ten.
	openCertAccount(t, ctx, writer, "Eleventh Holder", 30)
	var snapped []certHolder
	for i := 0; i < 200 && len(snapped) == 0; i++ {
		for _, h := range hs {
			if _, ok, err := e.store.LoadSnapshot(ctx, domain.AccountStream(h.id)); err != nil {
				t.Fatal(err)
			} else if ok {
				snapped = append(snapped, h)
			}
		}
		if len(snapped) == 0 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if len(snapped) != 1 {
		t.Fatalf("%d of the ten accounts have a snapshot, want the 1 evicted", len(snapped))
	}
	h := snapped[0]
	full, err := writer.Account(ctx, h.actor(), h.id)
	if err != nil {
		t.Fatal(err)
	}
	cs := &countingStore{ConditionalStore: e.store}
	n := e.node(t, func(c *ledger.Config) { c.Store = cs })
	v, err := n.Account(ctx, h.actor(), h.id)
	if err != nil {
		t.Fatal(err)
	}
	if jsonOf(t, v) != jsonOf(t, full) {
		t.Fatalf("evicted account from its snapshot\n%s\nwant\n%s", jsonOf(t, v), jsonOf(t, full))
	}
	if st := n.SnapshotStats(); st.Loaded != 1 || cs.reads() != 1 {
		t.Fatalf("stats %+v, %d events read, want the snapshot and 1", st, cs.reads())
	}
}
