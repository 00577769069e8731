package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/payledger/payledger/eventstore"
	"github.com/payledger/payledger/eventstore/postgres"
	"github.com/payledger/payledger/eventstore/storetest"
)

// twoNodes opens two stores on one schema, as two processes would.
func twoNodes(t *testing.T) (a, b *postgres.Store) {
	t.Helper()
	a = openSchema(t, t.Name(), postgres.DefaultOptions())
	t.Cleanup(func() { _ = a.Close() })
	b = openSchema(t, t.Name(), postgres.DefaultOptions())
	t.Cleanup(func() { _ = b.Close() })
	return a, b
}

// waitLockWaiters waits until at least n sessions wait for s's position
// lock, read from pg_locks.
func waitLockWaiters(t *testing.T, s *postgres.Store, n int) {
	t.Helper()
	conn := sqlConn(t, s)
	key := uint64(s.LockKey())
	deadline := time.Now().Add(20 * time.Second)
	for {
		var waiting int
		if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM pg_locks
			WHERE locktype = 'advisory' AND NOT granted AND classid = $1 AND objid = $2 AND objsubid = 1`,
			uint32(key>>32), uint32(key)).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions wait for the position lock, want %d", waiting, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// requireLog fails unless events are the positions 1..n, each once, in order.
func requireLog(t *testing.T, what string, events []eventstore.Event, n int) {
	t.Helper()
	if len(events) != n {
		t.Fatalf("%s: %d events, want %d", what, len(events), n)
	}
	for i, e := range events {
		if e.Position != int64(i+1) {
			t.Fatalf("%s: delivery %d has position %d: a gap or a repeat", what, i, e.Position)
		}
	}
}

// TestLateCommitNeverSkipped holds node B's append transaction open after
// it has written its rows (its positions are assigned) and before it
// commits, while node A's appends arrive from several goroutines. A's
// writer waits for the position lock; no reader on either node sees
// anything of either; once B commits, every subscriber on both nodes
// receives every event exactly once in position order, B's first. With
// positions from a sequence and no lock, A's later positions would become
// visible first and a subscriber would move past B's.
func TestLateCommitNeverSkipped(t *testing.T) {
	a, b := twoNodes(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := a.Append(ctx, "before", eventstore.NoStream, []eventstore.EventData{event(), event()}); err != nil {
		t.Fatal(err)
	}
	subs := []*storetest.Collector{storetest.NewCollector(), storetest.NewCollector()}
	for i, s := range []*postgres.Store{a, b} {
		go func() { _ = s.Subscribe(ctx, 0, subs[i].Fn) }()
		subs[i].WaitFor(t, 2)
	}

	held, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	b.SetBeforeCommit(func() {
		once.Do(func() {
			close(held)
			<-release
		})
	})
	late := make(chan eventstore.AppendResult, 1)
	go func() {
		res, err := b.Append(context.Background(), "late", eventstore.NoStream, []eventstore.EventData{event(), event(), event()})
		if err != nil {
			t.Errorf("late append: %v", err)
		}
		late <- res
	}()
	<-held

	const writers, each = 3, 4
	var wg sync.WaitGroup
	results := make(chan eventstore.AppendResult, writers*each)
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				res, err := a.Append(context.Background(), fmt.Sprintf("early-%d", g), int64(i), []eventstore.EventData{event()})
				if err != nil {
					t.Errorf("append: %v", err)
					return
				}
				results <- res
			}
		}()
	}
	waitLockWaiters(t, a, 1)
	for i, s := range []*postgres.Store{a, b} {
		if h, err := s.Head(ctx); err != nil || h != 2 {
			t.Fatalf("node %d: head %d (%v) while the late transaction is open, want 2", i, h, err)
		}
		if got, err := s.ReadAll(ctx, 2, 100); err != nil || len(got) != 0 {
			t.Fatalf("node %d: read %d events (%v) past the open transaction", i, len(got), err)
		}
		if n := len(subs[i].Snapshot()); n != 2 {
			t.Fatalf("node %d: subscriber got %d events while the late transaction is open", i, n)
		}
	}
	close(release)
	wg.Wait()
	close(results)
	lateRes := <-late
	if t.Failed() {
		return
	}
	total := 2 + 3 + writers*each
	if lateRes.Events[0].Position != 3 || lateRes.LastPosition() != 5 {
		t.Fatalf("the late events hold positions %d..%d, want 3..5", lateRes.Events[0].Position, lateRes.LastPosition())
	}
	for res := range results {
		if p := res.LastPosition(); p <= 5 || p > int64(total) {
			t.Fatalf("an early append landed at %d, want after the late one", p)
		}
	}
	all, err := a.ReadAll(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	requireLog(t, "log", all, total)
	for i := range subs {
		requireLog(t, fmt.Sprintf("node %d's subscriber", i), subs[i].WaitFor(t, total), total)
	}
	time.Sleep(20 * time.Millisecond) // a duplicate delivery would show now
	for i := range subs {
		requireLog(t, fmt.Sprintf("node %d's subscriber", i), subs[i].Snapshot(), total)
	}
}

// TestTwoNodes: two stores on one log append concurrently, with
// conflicting expected versions on shared streams; every subscriber, on
// either node, sees the whole log once in position order (woken by
// NOTIFY for the other node's commits), and every stream's chain holds.
func TestTwoNodes(t *testing.T) {
	a, b := twoNodes(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	subs := []*storetest.Collector{storetest.NewCollector(), storetest.NewCollector()}
	for i, s := range []*postgres.Store{a, b} {
		go func() { _ = s.Subscribe(ctx, 0, subs[i].Fn) }()
	}
	const goroutines, each, streams = 8, 25, 5
	var wg sync.WaitGroup
	for g := range goroutines {
		s := []*postgres.Store{a, b}[g%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				stream := fmt.Sprintf("shared-%d", (g+i)%streams)
				for try := 0; ; try++ {
					v, err := s.StreamVersion(ctx, stream)
					if err != nil {
						t.Error(err)
						return
					}
					if _, err = s.Append(ctx, stream, v, []eventstore.EventData{event()}); err == nil {
						break
					}
					if try > 200 {
						t.Errorf("append to %s: %v", stream, err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	total := goroutines * each
	for i := range subs {
		requireLog(t, fmt.Sprintf("node %d's subscriber", i), subs[i].WaitFor(t, total), total)
	}
	for i := range streams {
		events, err := b.ReadStream(ctx, fmt.Sprintf("shared-%d", i), 1, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := eventstore.VerifyChain([32]byte{}, events); err != nil {
			t.Fatal(err)
		}
		for j, e := range events {
			if e.Version != int64(j+1) {
				t.Fatalf("shared-%d: event %d at version %d", i, j, e.Version)
			}
		}
	}
}

// TestListenReconnects: a subscriber is woken by NOTIFY for the other
// node's commits; when its LISTEN connection is killed, the store opens
// another, and the subscriber still receives what the other node
// appends afterwards, each event once.
func TestListenReconnects(t *testing.T) {
	a, b := twoNodes(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := storetest.NewCollector()
	go func() { _ = a.Subscribe(ctx, 0, c.Fn) }()
	if _, err := b.Append(ctx, "s", eventstore.NoStream, []eventstore.EventData{event()}); err != nil {
		t.Fatal(err)
	}
	c.WaitFor(t, 1)

	old := a.ListenPID()
	conn := sqlConn(t, a)
	var killed bool
	if err := conn.QueryRow(ctx, `SELECT pg_terminate_backend($1)`, int32(old)).Scan(&killed); err != nil || !killed {
		t.Fatalf("terminate the LISTEN connection: %v %v", killed, err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for a.Stats().ListenErrors == 0 || a.ListenPID() == old {
		if time.Now().After(deadline) {
			t.Fatalf("the LISTEN connection was not opened again (errors %d, pid %d)", a.Stats().ListenErrors, a.ListenPID())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := b.Append(ctx, "s", 1, []eventstore.EventData{event(), event()}); err != nil {
		t.Fatal(err)
	}
	requireLog(t, "subscriber after the reconnection", c.WaitFor(t, 3), 3)
	time.Sleep(20 * time.Millisecond) // a duplicate delivery would show now
	requireLog(t, "subscriber after the reconnection", c.Snapshot(), 3)
}

// TestTwoNodesConditions races suspensions appended by one node with
// payments conditioned on them by the other: no payment commits after the
// suspension it was conditioned against.
func TestTwoNodesConditions(t *testing.T) {
	a, b := twoNodes(t)
	storetest.ConditionRace(t, a, b)
}

// TestConditionOnStreamAppendedEarlierInBatch: one transaction carries an
// append to p and, after it, an append to q conditioned on p being empty.
// The condition is checked against p as the batch left it, so the second
// append is refused; queued the other way round, both commit.
func TestConditionOnStreamAppendedEarlierInBatch(t *testing.T) {
	for _, condFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("condition first %v", condFirst), func(t *testing.T) {
			ctx := context.Background()
			s := openSchema(t, t.Name(), postgres.DefaultOptions())
			defer s.Close()
			p, q := "p-"+event().ID, "q-"+event().ID // fresh streams, whatever the schema holds
			entered, release := make(chan struct{}), make(chan struct{})
			var once sync.Once
			s.SetBeforeCommit(func() {
				once.Do(func() {
					close(entered)
					<-release
				})
			})
			blocker := make(chan error, 1)
			go func() {
				_, err := s.Append(ctx, "blocker", eventstore.Any, []eventstore.EventData{event()})
				blocker <- err
			}()
			waitQueued := func(n int) {
				t.Helper()
				for deadline := time.Now().Add(10 * time.Second); s.Queued() < n; time.Sleep(time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatalf("%d appends queued, want %d", s.Queued(), n)
					}
				}
			}
			// While the blocker's transaction waits to commit, what is
			// queued goes into the next transaction together.
			<-entered
			plain, conditioned := make(chan error, 1), make(chan error, 1)
			appendP := func() {
				_, err := s.Append(ctx, p, eventstore.NoStream, []eventstore.EventData{event()})
				plain <- err
			}
			appendQ := func() {
				_, err := s.AppendIf(ctx, q, eventstore.NoStream, []eventstore.EventData{event()},
					[]eventstore.Condition{{Stream: p, Version: 0}})
				conditioned <- err
			}
			first, second := appendP, appendQ
			if condFirst {
				first, second = appendQ, appendP
			}
			go first()
			waitQueued(1)
			go second()
			waitQueued(2)
			close(release)
			if err := <-blocker; err != nil {
				t.Fatal(err)
			}
			if err := <-plain; err != nil {
				t.Fatalf("append to p: %v", err)
			}
			err := <-conditioned
			switch {
			case condFirst && err != nil:
				t.Fatalf("the conditioned append queued first: %v", err)
			case !condFirst && !errors.Is(err, eventstore.ErrConditionFailed):
				t.Fatalf("the conditioned append after p's in its batch: %v, want ErrConditionFailed", err)
			}
		})
	}
}
