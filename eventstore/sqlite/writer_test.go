package sqlite

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/payledger/payledger/eventstore"
)

// TestNothingVisibleBeforeFsync holds a commit's fsync and checks that no
// read shows its event (head, global log, stream, version) until the fsync
// returned, and that the writer meanwhile keeps applying the next append.
func TestNothingVisibleBeforeFsync(t *testing.T) {
	s := openTest(t, DefaultOptions())
	ctx := context.Background()
	first := appendOne(t, s, "a")
	entered, release := make(chan struct{}, 8), make(chan struct{})
	released := false
	t.Cleanup(func() { // a failed check must not leave Close waiting for the held fsync
		if !released {
			close(release)
		}
	})
	s.syncHook = func(sync func() error) error {
		entered <- struct{}{}
		<-release
		return sync()
	}
	done := make(chan error, 2)
	go func() {
		_, err := s.Append(ctx, "a", 1, []eventstore.EventData{event()})
		done <- err
	}()
	<-entered // the second event is committed, its fsync held
	go func() {
		_, err := s.Append(ctx, "b", eventstore.NoStream, []eventstore.EventData{event()})
		done <- err
	}()
	time.Sleep(50 * time.Millisecond) // let the writer take b's append meanwhile
	if h, _ := s.Head(ctx); h != first.Position {
		t.Fatalf("head %d before the fsync, want %d", h, first.Position)
	}
	if all, err := s.ReadAll(ctx, 0, 0); err != nil || len(all) != 1 {
		t.Fatalf("read all before the fsync: %d events, %v", len(all), err)
	}
	if evs, err := s.ReadStream(ctx, "a", 1, 0); err != nil || len(evs) != 1 {
		t.Fatalf("read stream before the fsync: %d events, %v", len(evs), err)
	}
	if v, _ := s.StreamVersion(ctx, "a"); v != 1 {
		t.Fatalf("stream version %d before the fsync, want 1", v)
	}
	select {
	case err := <-done:
		t.Fatalf("an append returned before its fsync: %v", err)
	default:
	}
	close(release)
	released = true
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if h, _ := s.Head(ctx); h != 3 {
		t.Fatalf("head %d after the fsyncs, want 3", h)
	}
	if evs, err := s.ReadStream(ctx, "a", 1, 0); err != nil || len(evs) != 2 {
		t.Fatalf("read stream after the fsync: %d events, %v", len(evs), err)
	}
}

// TestFailedFsyncStopsWriting fails a commit's fsync: its append fails, as
// does every later one, and nothing of it is published.
func TestFailedFsyncStopsWriting(t *testing.T) {
	s := openTest(t, DefaultOptions())
	ctx := context.Background()
	appendOne(t, s, "a")
	s.syncHook = func(func() error) error { return errors.New("EIO") }
	_, err := s.Append(ctx, "a", 1, []eventstore.EventData{event()})
	if err == nil || !strings.Contains(err.Error(), "EIO") {
		t.Fatalf("append with a failed fsync: %v", err)
	}
	if h, _ := s.Head(ctx); h != 1 {
		t.Fatalf("head %d after a failed fsync, want 1", h)
	}
	_, err = s.Append(ctx, "b", eventstore.NoStream, []eventstore.EventData{event()})
	if err == nil || !strings.Contains(err.Error(), "durability is unknown") {
		t.Fatalf("append after a failed fsync: %v", err)
	}
}

// TestFailedFsyncFailsOpenTransaction fails an fsync while the next
// transaction is already open with an append in it: that append must fail
// too, not be committed after the failure.
func TestFailedFsyncFailsOpenTransaction(t *testing.T) {
	s := openTest(t, DefaultOptions())
	ctx := context.Background()
	appendOne(t, s, "a")
	entered, release := make(chan struct{}, 8), make(chan struct{})
	released := false
	t.Cleanup(func() {
		if !released {
			close(release)
		}
	})
	failed := false // only the first fsync fails (the syncer is one goroutine)
	s.syncHook = func(sync func() error) error {
		if failed {
			return sync()
		}
		failed = true
		entered <- struct{}{}
		<-release
		return errors.New("EIO")
	}
	done := make(chan error, 2)
	go func() {
		_, err := s.Append(ctx, "a", 1, []eventstore.EventData{event()})
		done <- err
	}()
	<-entered
	go func() {
		_, err := s.Append(ctx, "b", eventstore.NoStream, []eventstore.EventData{event()})
		done <- err
	}()
	time.Sleep(50 * time.Millisecond) // b's append joins the open transaction
	close(release)
	released = true
	for range 2 {
		if err := <-done; err == nil {
			t.Fatal("an append succeeded after a failed fsync")
		}
	}
	if v, _ := s.StreamVersion(ctx, "b"); v != 0 {
		t.Fatalf("stream b at version %d after the failed fsync", v)
	}
}

// TestMaxBatchEventsExact: a request that would take the open transaction
// past MaxBatchEvents waits for the next one, so with three-event requests
// and a bound of four every transaction holds exactly one request.
func TestMaxBatchEventsExact(t *testing.T) {
	opts := DefaultOptions()
	opts.MaxBatchEvents = 4
	s := openTest(t, opts)
	ctx := context.Background()
	const n = 30
	errs := make(chan error, n)
	for i := range n {
		go func() {
			_, err := s.Append(ctx, fmt.Sprintf("s-%d", i), eventstore.NoStream,
				[]eventstore.EventData{event(), event(), event()})
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if st := s.Stats(); st.Transactions != n || st.Events != 3*n {
		t.Fatalf("stats %+v, want %d transactions of 3 events", st, n)
	}
}

// TestObserveSync: with group commit and without, every committed
// transaction reports once how long it took to become durable, and an
// append that returned has been reported.
func TestObserveSync(t *testing.T) {
	for _, group := range []bool{true, false} {
		t.Run(fmt.Sprintf("group=%v", group), func(t *testing.T) {
			var mu sync.Mutex
			var calls int64
			var total time.Duration
			opts := DefaultOptions()
			opts.GroupCommit = group
			opts.ObserveSync = func(d time.Duration) {
				mu.Lock()
				calls++
				total += d
				mu.Unlock()
			}
			s := openTest(t, opts)
			for i := range 5 {
				appendOne(t, s, fmt.Sprintf("s-%d", i))
				mu.Lock()
				n := calls
				mu.Unlock()
				if n < int64(i+1) {
					t.Fatalf("%d syncs reported after %d appends returned", n, i+1)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if tx := s.Stats().Transactions; calls != tx || total <= 0 {
				t.Fatalf("%d syncs reported (%s in all) for %d transactions", calls, total, tx)
			}
		})
	}
}
