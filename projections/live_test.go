package projections

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/eventstore"
)

// runRM starts Run in the background and returns a stop function that
// cancels it and waits (bounded) for it to return.
func runRM(t *testing.T, r *ReadModels, s eventstore.Store) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, s) }()
	stopped := false
	stop = func() {
		t.Helper()
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Run returned %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not stop")
		}
	}
	t.Cleanup(stop)
	return stop
}

// waitCheckpoint polls until the checkpoint reaches pos, without WaitFor
// (which would stop coalescing), bounded.
func waitCheckpoint(t *testing.T, r *ReadModels, pos int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for r.Checkpoint() < pos {
		if time.Now().After(deadline) {
			t.Fatalf("checkpoint %d, want %d", r.Checkpoint(), pos)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestCoalescedLiveApplyMatchesCatchUp appends in many small commits while
// Run coalesces them into batches, with nobody in WaitFor, and checks that
// everything is applied and the content equals a CatchUp of the same log.
func TestCoalescedLiveApplyMatchesCatchUp(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		l := newLedger(t)
		r := b.newRM(t)
		r.coalesce = 50 * time.Millisecond
		runRM(t, r, l.store)
		const accounts = 20
		for i := range accounts {
			l.open(fmt.Sprintf("acct-%02d", i), domain.CNY)
			l.deposit(fmt.Sprintf("acct-%02d", i), "100", domain.CNY)
		}
		for i := range 400 {
			l.pay(fmt.Sprintf("acct-%02d", i%accounts), fmt.Sprintf("acct-%02d", (i*7+3)%accounts), "0.01", domain.CNY)
			if i%50 == 0 {
				time.Sleep(2 * time.Millisecond) // spread appends over several windows
			}
		}
		waitCheckpoint(t, r, l.head())

		fresh := b.newRM(t)
		catchUp(t, fresh, l.store)
		if got, want := digest(t, r), digest(t, fresh); got != want {
			t.Fatalf("live digest %s, catch-up digest %s", got, want)
		}
	})
}

// TestWaitForCutsCoalescingShort sets a coalescing window far longer than
// the test's bound: WaitFor must still return, because a waiter makes the
// applier commit what it has.
func TestWaitForCutsCoalescingShort(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		l := newLedger(t)
		l.open("alice", domain.CNY)
		r := b.newRM(t)
		r.coalesce = time.Hour
		runRM(t, r, l.store)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := r.WaitFor(ctx, 1); err != nil { // caught up before going live
			t.Fatal(err)
		}
		for i := range 5 {
			// Each append opens a window of an hour; only the waiter ends it.
			e := l.deposit("alice", "1", domain.CNY)
			if err := r.WaitFor(ctx, e.Position); err != nil {
				t.Fatalf("deposit %d: %v", i, err)
			}
			if b := balanceOf(t, r, "alice"); b.Available.Amount.IntPart() != int64(i+1) {
				t.Fatalf("deposit %d: balance %s", i, b.Available)
			}
		}
		if n := r.waiters.Load(); n != 0 {
			t.Fatalf("%d waiters counted after all returned", n)
		}
	})
}

// TestWaitForDuringWindow starts waiting while the applier already sleeps
// in a long window (the signal path, not the count checked before
// sleeping), and checks that a cancelled waiter is uncounted.
func TestWaitForDuringWindow(t *testing.T) {
	l := newLedger(t)
	l.open("alice", domain.CNY)
	r := newRM(t)
	r.coalesce = time.Hour
	runRM(t, r, l.store)
	// A waiter that gives up leaves no trace in the count.
	short, scancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	defer scancel()
	if err := r.WaitFor(short, 1_000_000); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitFor beyond head: %v", err)
	}
	if n := r.waiters.Load(); n != 0 {
		t.Fatalf("%d waiters counted after a cancelled WaitFor", n)
	}
	e := l.deposit("alice", "1", domain.CNY)
	time.Sleep(20 * time.Millisecond) // let the applier take it and sleep
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.WaitFor(ctx, e.Position); err != nil {
		t.Fatal(err)
	}
}

// TestRunStopsDuringWindow checks that cancelling Run ends a long window.
func TestRunStopsDuringWindow(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		l := newLedger(t)
		l.open("alice", domain.CNY)
		r := b.newRM(t)
		r.coalesce = time.Hour
		stop := runRM(t, r, l.store)
		waitCheckpoint(t, r, 1)
		l.deposit("alice", "1", domain.CNY)
		time.Sleep(10 * time.Millisecond)
		stop() // bounded: fails the test if Run does not return
		// Whatever was applied is consistent with the checkpoint; a restart
		// continues from it.
		r2 := b.newRM(t)
		catchUp(t, r2, l.store)
		catchUp(t, r, l.store)
		if digest(t, r) != digest(t, r2) {
			t.Fatal("digest after stop and catch-up differs from a fresh catch-up")
		}
	})
}

func TestCanonicalFastPathMatches(t *testing.T) {
	for _, s := range []string{
		"0", "0.00", "-0.00", "1", "-1", "10", "100.00", "0.5", "-0.05", "1000000.00", "999999.43",
		"123456789012345678", "-123456789012345678", "0.000000000000000001", "12345678.9012345678",
		"1234567890123456789", "99999999999999999999.99", "1e3", "-2.5e2", "1.000000000000000000001",
	} {
		d := decimal.RequireFromString(s)
		if got, want := canonical(d), canonicalGeneral(d); got != want {
			t.Errorf("canonical(%s) = %q, want %q", s, got, want)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		d := decimal.New(rng.Int64N(2_000_000_000_000)-1_000_000_000_000, -rng.Int32N(20))
		if rng.IntN(4) == 0 {
			d = decimal.New(rng.Int64()>>rng.IntN(64), -rng.Int32N(22))
		}
		if got, want := canonical(d), canonicalGeneral(d); got != want {
			t.Fatalf("canonical(%s) = %q, want %q", d, got, want)
		}
	}
}

// TestBusyWindowExtends checks the two windows of applyLoop: a batch with
// fewer than busyEvents events is committed when the short window ends; one
// with busyEvents or more keeps collecting for the long window, which a
// WaitFor still cuts short.
func TestBusyWindowExtends(t *testing.T) {
	l := newLedger(t)
	l.open("alice", domain.CNY)
	r := newRM(t)
	r.coalesce = 10 * time.Millisecond
	r.busyCoalesce = time.Hour
	r.busyEvents = 20
	runRM(t, r, l.store)
	waitCheckpoint(t, r, 1)

	// Light: five events are applied after the short window, without a
	// waiter (waitCheckpoint gives up after 10 s, not an hour).
	for range 5 {
		l.deposit("alice", "1", domain.CNY)
	}
	waitCheckpoint(t, r, l.head())

	// Busy: twenty events in one commit extend the window to an hour.
	before := r.Checkpoint()
	batch := make([]eventstore.EventData, 20)
	for i := range batch {
		typ, v, p, err := domain.EncodeEvent(depositEvent("alice", "1", domain.CNY))
		if err != nil {
			t.Fatal(err)
		}
		batch[i] = eventstore.EventData{ID: newID(), Type: typ, SchemaVersion: v, OccurredAt: t0, Payload: p}
	}
	res, err := l.store.Append(context.Background(), domain.AccountStream("alice"), eventstore.Any, batch)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // twenty short windows
	if cp := r.Checkpoint(); cp != before {
		t.Fatalf("checkpoint moved from %d to %d within the busy window", before, cp)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	last := res.Events[len(res.Events)-1].Position
	if err := r.WaitFor(ctx, last); err != nil {
		t.Fatal(err)
	}
	if b := balanceOf(t, r, "alice"); b.Available.Amount.IntPart() != 25 {
		t.Fatalf("balance %s, want 25", b.Available)
	}
}

// TestWriteModeFollowsCatchUp: CatchUp commits in its own write mode and
// Run's live batches in theirs. With catch-up never checkpointing and live
// checkpointing after every commit, the database file stays as it was
// through a catch-up (everything is still in the WAL) and grows once a
// live batch has been applied; the synchronous level is the live one
// whenever no catch-up runs.
func TestWriteModeFollowsCatchUp(t *testing.T) {
	l := newLedger(t)
	r := newRM(t)
	r.catchUp = writeMode{synchronous: "OFF", checkpointPages: 1 << 30}
	r.live = writeMode{synchronous: "FULL", checkpointPages: 1}
	r.coalesce = time.Millisecond
	// PRAGMA synchronous answers 0 for OFF, 1 NORMAL, 2 FULL.
	checkSync := func(when string, want int) {
		t.Helper()
		var got int
		if err := r.writeDB.QueryRow("PRAGMA synchronous").Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("%s: synchronous = %d, want %d", when, got, want)
		}
	}
	checkSync("after Open", 2)
	if err := r.setWriteMode(context.Background(), r.catchUp); err != nil {
		t.Fatal(err)
	}
	checkSync("in the catch-up mode", 0)
	if err := r.setWriteMode(context.Background(), r.live); err != nil {
		t.Fatal(err)
	}
	size := func() int64 {
		t.Helper()
		fi, err := os.Stat(r.path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	const accounts = 50
	pay := func(n int) {
		for i := range n {
			l.pay(fmt.Sprintf("acct-%02d", i%accounts), fmt.Sprintf("acct-%02d", (i*7+3)%accounts), "0.01", domain.CNY)
		}
	}
	for i := range accounts {
		l.open(fmt.Sprintf("acct-%02d", i), domain.CNY)
		l.deposit(fmt.Sprintf("acct-%02d", i), "100", domain.CNY)
	}
	pay(2000)
	before := size()
	catchUp(t, r, l.store)
	if r.Checkpoint() != l.head() {
		t.Fatalf("caught up to %d, head %d", r.Checkpoint(), l.head())
	}
	if after := size(); after != before {
		t.Fatalf("the database file went from %d to %d bytes during catch-up: it was checkpointed at the live interval", before, after)
	}
	checkSync("after a catch-up", 2)
	runRM(t, r, l.store)
	// Run catches up first (what it finds is applied as catch-up), so pay
	// until a payment arrives live; each one is then a live batch.
	for i := 0; size() == before; i++ {
		if i == 100 {
			t.Fatalf("the database file is still %d bytes after %d live payments: the live interval was not restored", before, i)
		}
		pay(1)
		waitCheckpoint(t, r, l.head())
	}
}
