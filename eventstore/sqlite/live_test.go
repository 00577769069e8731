package sqlite

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/payledger/payledger/eventstore"
	"github.com/payledger/payledger/eventstore/storetest"
)

// TestConformanceTinyLiveBuffer runs the suite with a live buffer so small
// that subscribers keep moving between it and the SQL fallback.
func TestConformanceTinyLiveBuffer(t *testing.T) {
	opts := DefaultOptions()
	opts.LiveBuffer = 2
	storetest.RunWithOptions(t, factory(opts), storetest.Options{Tamper: tamper})
}

// TestConformanceNoLiveBuffer runs the suite with every subscriber on SQL.
func TestConformanceNoLiveBuffer(t *testing.T) {
	opts := DefaultOptions()
	opts.LiveBuffer = -1
	storetest.RunWithOptions(t, factory(opts), storetest.Options{Tamper: tamper})
}

// startSubscription runs Subscribe until the test ends and checks that it
// ended because of the cancellation.
func startSubscription(t *testing.T, s *Store, after int64, fn func(eventstore.Event) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Subscribe(ctx, after, fn) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != context.Canceled {
			t.Errorf("Subscribe ended with %v, want context.Canceled", err)
		}
	})
}

// requireLog fails unless got is exactly the global log from position
// from+1 on, field for field.
func requireLog(t *testing.T, s *Store, got []eventstore.Event, from int64) {
	t.Helper()
	want, err := s.ReadAll(context.Background(), from, eventstore.MaxReadBatch)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("delivered %d events, the log has %d after %d", len(got), len(want), from)
	}
	for i := range got {
		if got[i].Position != from+int64(i)+1 {
			t.Fatalf("delivery %d has position %d, want %d", i, got[i].Position, from+int64(i)+1)
		}
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Fatalf("delivery %d differs from the stored event:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
}

// appendConcurrently appends n events from writers goroutines, in requests
// of one to three events, and returns the AppendResults.
func appendConcurrently(t *testing.T, s *Store, writers, n int) []eventstore.AppendResult {
	t.Helper()
	var mu sync.Mutex
	var results []eventstore.AppendResult
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += writers {
				batch := make([]eventstore.EventData, 1+i%3)
				for j := range batch {
					batch[j] = event()
					batch[j].Payload = fmt.Appendf(nil, `{"w":%d,"i":%d,"j":%d}`, w, i, j)
				}
				r, err := s.Append(context.Background(), fmt.Sprintf("s-%d", w), eventstore.Any, batch)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				results = append(results, r)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return results
}

// TestLiveSubscriberSkipsSQL: a subscriber that keeps up is served from the
// live buffer, not by queries, and gets exactly the stored events.
func TestLiveSubscriberSkipsSQL(t *testing.T) {
	s := openTest(t, DefaultOptions())
	ctx := context.Background()
	// Event shapes whose fields must survive the buffer as SQL returns them.
	odd := []eventstore.EventData{event(), event(), event()}
	odd[0].Payload = nil
	odd[1].Payload = []byte{}
	odd[2].OccurredAt = time.Date(2031, 7, 14, 23, 59, 58, 123456789, time.FixedZone("x", 19800))
	odd[2].CausationID, odd[2].CorrelationID, odd[2].IdempotencyKey = "c", "r", "k"

	c := storetest.NewCollector()
	startSubscription(t, s, 0, c.Fn)
	time.Sleep(20 * time.Millisecond) // let it reach the live wait
	before := s.Stats().ReadAllQueries

	if _, err := s.Append(ctx, "odd", eventstore.NoStream, odd); err != nil {
		t.Fatal(err)
	}
	results := appendConcurrently(t, s, 16, 3000)
	// Appenders own their results: changing them must not reach subscribers.
	for _, r := range results {
		for _, e := range r.Events {
			for i := range e.Payload {
				e.Payload[i] = 'X'
			}
		}
	}
	n := int(s.Stats().Events)
	got := c.WaitFor(t, n)
	after := s.Stats().ReadAllQueries
	if after != before {
		t.Errorf("%d ReadAll queries while %d events were delivered live, want none", after-before, n)
	}
	if before > 1 {
		t.Errorf("%d ReadAll queries for an empty store's catch-up, want at most 1", before)
	}
	requireLog(t, s, got, 0)
	t.Logf("%d events delivered live, %d queries in all", n, s.Stats().ReadAllQueries)
}

// TestLaggingSubscriberFallsBackToSQL: a subscriber that falls behind the
// live buffer, or starts behind it, still gets every event once and in
// order, from SQL, and is served from the buffer again once it caught up.
func TestLaggingSubscriberFallsBackToSQL(t *testing.T) {
	opts := DefaultOptions()
	opts.LiveBuffer = 8
	s := openTest(t, opts)
	ctx := context.Background()
	appendConcurrently(t, s, 1, 5)

	// A subscriber stuck in its handler while the log moves far ahead.
	release := make(chan struct{})
	var released sync.Once
	unblock := func() { released.Do(func() { close(release) }) }
	c := storetest.NewCollector()
	var once sync.Once
	startSubscription(t, s, 0, func(e eventstore.Event) error {
		once.Do(func() { <-release })
		return c.Fn(e)
	})
	t.Cleanup(unblock) // runs before the subscription's cleanup
	appendConcurrently(t, s, 4, 300)
	q := s.Stats().ReadAllQueries
	unblock()
	n := int(s.Stats().Events)
	got := c.WaitFor(t, n)
	if s.Stats().ReadAllQueries == q {
		t.Error("the lagging subscriber caught up without querying SQL")
	}
	requireLog(t, s, got, 0)

	// A subscriber starting far behind the buffer.
	late := storetest.NewCollector()
	startSubscription(t, s, 3, late.Fn)
	requireLog(t, s, late.WaitFor(t, n-3), 3)

	// Both are live again: single appends reach them without queries.
	q = s.Stats().ReadAllQueries
	for i := range 20 {
		if _, err := s.Append(ctx, "tail", eventstore.Any, []eventstore.EventData{event()}); err != nil {
			t.Fatal(err)
		}
		c.WaitFor(t, n+i+1)
		late.WaitFor(t, n-3+i+1)
	}
	if d := s.Stats().ReadAllQueries - q; d != 0 {
		t.Errorf("%d ReadAll queries for subscribers that kept up, want none", d)
	}
	requireLog(t, s, c.Snapshot(), 0)
	requireLog(t, s, late.Snapshot(), 3)
}

// TestFailedCommitNotBuffered: events of a failed transaction never reach
// the live buffer, and the subscriber sees only the committed log.
func TestFailedCommitNotBuffered(t *testing.T) {
	s := openTest(t, DefaultOptions())
	ctx := context.Background()
	if _, err := s.Append(ctx, "x", eventstore.NoStream, []eventstore.EventData{event()}); err != nil {
		t.Fatal(err)
	}
	c := storetest.NewCollector()
	startSubscription(t, s, 0, c.Fn)
	c.WaitFor(t, 1)

	s.beforeCommit = func() error { return errors.New("disk full") } // the appends below fail
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, r := range []struct {
		stream   string
		expected int64
		n        int
	}{{"y", 0, 2}, {"x", 1, 1}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			events := make([]eventstore.EventData, r.n)
			for j := range events {
				events[j] = event()
			}
			_, errs[i] = s.Append(ctx, r.stream, r.expected, events)
		}()
	}
	wg.Wait()
	if errs[0] == nil || errs[1] == nil {
		t.Fatalf("the poisoned appends succeeded: %v", errs)
	}
	// The failures' answers order the hook's change after the writer's
	// reads of it.
	s.beforeCommit = nil
	if got, ok := s.live.read(0, nil, 100); !ok || len(got) != 1 || got[0].Stream != "x" {
		t.Fatalf("live buffer after a failed commit: %d events (ok=%v), want only x's first", len(got), ok)
	}
	if _, err := s.Append(ctx, "y", eventstore.NoStream, []eventstore.EventData{event()}); err != nil {
		t.Fatal(err)
	}
	got := c.WaitFor(t, 2)
	time.Sleep(20 * time.Millisecond) // give a phantom delivery a moment
	requireLog(t, s, c.Snapshot(), 0)
	if len(got) != 2 || got[1].Position != 2 {
		t.Fatalf("delivered %d events, want positions 1 and 2", len(got))
	}
}

func bufEvent(pos int64, payload string) eventstore.Event {
	return eventstore.Event{EventData: eventstore.EventData{ID: fmt.Sprint(pos), Payload: []byte(payload)}, Position: pos}
}

func positions(events []eventstore.Event) []int64 {
	var out []int64
	for _, e := range events {
		out = append(out, e.Position)
	}
	return out
}

func TestLiveBufferRing(t *testing.T) {
	b := newLiveBuffer(100, 1<<20)
	if _, ok := b.read(0, nil, 10); ok {
		t.Fatal("empty buffer answered a read")
	}
	var batch []eventstore.Event
	for p := int64(1); p <= 250; p++ {
		batch = append(batch, bufEvent(p, "{}"))
		if p%7 == 0 || p == 250 {
			b.push([][]eventstore.Event{batch[:len(batch)/2], batch[len(batch)/2:]})
			batch = nil
		}
	}
	if b.n != 100 || b.first != 151 {
		t.Fatalf("buffer holds %d events from %d, want 100 from 151", b.n, b.first)
	}
	if _, ok := b.read(149, nil, 10); ok {
		t.Fatal("read behind the buffer answered")
	}
	got, ok := b.read(150, nil, 1000)
	if !ok || len(got) != 100 || got[0].Position != 151 || got[99].Position != 250 {
		t.Fatalf("read(150): ok=%v %v", ok, positions(got))
	}
	for i, e := range got {
		if e.Position != 151+int64(i) {
			t.Fatalf("read(150) out of order: %v", positions(got))
		}
	}
	got, ok = b.read(240, got[:0], 3)
	if !ok || !reflect.DeepEqual(positions(got), []int64{241, 242, 243}) {
		t.Fatalf("read(240, limit 3): ok=%v %v", ok, positions(got))
	}
	for _, after := range []int64{250, 400} {
		if got, ok := b.read(after, nil, 10); !ok || len(got) != 0 {
			t.Fatalf("read(%d) at or past the end: ok=%v %v", after, ok, positions(got))
		}
	}

	// A gap (another writer's commit) empties the buffer.
	b.push([][]eventstore.Event{{bufEvent(260, "{}"), bufEvent(261, "{}")}})
	if _, ok := b.read(250, nil, 10); ok {
		t.Fatal("read across a gap answered")
	}
	if got, ok := b.read(259, nil, 10); !ok || !reflect.DeepEqual(positions(got), []int64{260, 261}) {
		t.Fatalf("read(259) after the gap: ok=%v %v", ok, positions(got))
	}

	// The buffer owns its payloads.
	src := bufEvent(262, "abc")
	b.push([][]eventstore.Event{{src}})
	src.Payload[0] = 'X'
	if got, _ := b.read(261, nil, 10); string(got[0].Payload) != "abc" {
		t.Fatalf("buffered payload %q changed with the pushed event's", got[0].Payload)
	}
}

func TestLiveBufferByteBound(t *testing.T) {
	b := newLiveBuffer(1000, 1000)
	for p := int64(1); p <= 100; p++ {
		b.push([][]eventstore.Event{{bufEvent(p, string(make([]byte, 99)))}})
	}
	if b.bytes > 1000 || b.n == 0 {
		t.Fatalf("buffer holds %d events, %d bytes; want at most 1000 bytes", b.n, b.bytes)
	}
	if got, ok := b.read(b.first-1, nil, 1000); !ok || got[len(got)-1].Position != 100 {
		t.Fatalf("read from the oldest: ok=%v %v", ok, positions(got))
	}
	// One event larger than the bound is still kept, alone.
	b.push([][]eventstore.Event{{bufEvent(101, string(make([]byte, 5000)))}})
	if b.n != 1 || b.first != 101 {
		t.Fatalf("after a huge event: %d events from %d, want 1 from 101", b.n, b.first)
	}

	off := newLiveBuffer(0, 1000)
	off.push([][]eventstore.Event{{bufEvent(1, "{}")}})
	if _, ok := off.read(0, nil, 10); ok {
		t.Fatal("a disabled buffer answered a read")
	}
}
