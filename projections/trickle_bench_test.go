//go:build unix

package projections

import (
	"context"
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/eventstore"
)

// BenchmarkRunTrickle models the live path under a busy write path: the
// store commits a small group every 10 ms (50 payments between 2,000
// accounts, each a PaymentInitiated the read models skip and a
// PaymentConfirmed they apply), and Run applies them as they come. It
// reports the process's CPU time per payment (user+system, from
// getrusage), which is what the projection takes from the write path;
// wall time is set by the append pace.
func BenchmarkRunTrickle(b *testing.B) {
	const (
		accounts = 2000
		groups   = 200
		perGroup = 50
		pace     = 10 * time.Millisecond
	)
	enc := func(ev domain.Event, at time.Time) eventstore.EventData {
		typ, v, p, err := domain.EncodeEvent(ev)
		if err != nil {
			b.Fatal(err)
		}
		return eventstore.EventData{ID: newID(), Type: typ, SchemaVersion: v, OccurredAt: at, Payload: p}
	}
	acct := func(i int) string { return fmt.Sprintf("acct-%04d", i%accounts) }
	var setup []eventstore.EventData
	for i := range accounts {
		setup = append(setup, enc(depositEvent(acct(i), "1000000", domain.CNY), t0))
	}
	trickle := make([][]eventstore.EventData, groups)
	for g := range trickle {
		for i := range perGroup {
			n := g*perGroup + i
			at := t0.Add(time.Duration(n) * time.Millisecond)
			pay := payEvent(acct(n*13), acct(n*7+3), "0.01", domain.CNY)
			trickle[g] = append(trickle[g], enc(domain.PaymentInitiated{PaymentID: pay.PaymentID, Payer: pay.DebitAccount,
				Payee: pay.CreditAccount, Amount: pay.Amount, Fee: pay.Fee, Channel: "app", DeviceID: "d",
				Description: pay.Description, Challenge: []byte("challenge"), ExpiresAt: at.Add(5 * time.Minute)}, at),
				enc(pay, at))
		}
	}
	dir := b.TempDir()
	var cpu time.Duration
	n := 0
	for b.Loop() {
		b.StopTimer()
		r, err := Open(filepath.Join(dir, fmt.Sprintf("trickle-%d.db", n)))
		if err != nil {
			b.Fatal(err)
		}
		s := newMemStore()
		ctx, cancel := context.WithCancel(context.Background())
		for i := 0; i < len(setup); i += eventstore.MaxAppendBatch {
			if _, err := s.Append(ctx, "setup", eventstore.Any, setup[i:min(i+eventstore.MaxAppendBatch, len(setup))]); err != nil {
				b.Fatal(err)
			}
		}
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx, s) }()
		if err := r.WaitFor(ctx, int64(len(setup))); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		before := cpuTime(b)
		next := time.Now()
		for _, g := range trickle {
			if _, err := s.Append(ctx, "trickle", eventstore.Any, g); err != nil {
				b.Fatal(err)
			}
			next = next.Add(pace)
			time.Sleep(time.Until(next))
		}
		head, _ := s.Head(ctx)
		for r.Checkpoint() < head { // poll: WaitFor would stop coalescing
			time.Sleep(time.Millisecond)
		}
		cpu += cpuTime(b) - before
		b.StopTimer()
		cancel()
		<-done
		_ = r.Close()
		n++
		b.StartTimer()
	}
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(n*groups*perGroup), "cpu-ns/payment")
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
