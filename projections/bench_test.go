package projections

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/eventstore"
)

const benchEvents = 100_000

// benchStore holds benchEvents money events over 1,000 accounts: a deposit
// for every account, then payments between them (two statement rows each).
func benchStore(b *testing.B) *memStore {
	b.Helper()
	s := newMemStore()
	ctx := context.Background()
	const accounts = 1000
	batch := make([]eventstore.EventData, 0, eventstore.MaxAppendBatch)
	flush := func() {
		if len(batch) == 0 {
			return
		}
		if _, err := s.Append(ctx, "bench", eventstore.Any, batch); err != nil {
			b.Fatal(err)
		}
		batch = batch[:0]
	}
	for i := range benchEvents {
		var ev domain.Event
		if i < accounts {
			ev = depositEvent(fmt.Sprintf("acct-%04d", i), "1000000", domain.CNY)
		} else {
			ev = payEvent(fmt.Sprintf("acct-%04d", i%accounts), fmt.Sprintf("acct-%04d", (i*7+3)%accounts), "1.23", domain.CNY)
		}
		typ, v, p, err := domain.EncodeEvent(ev)
		if err != nil {
			b.Fatal(err)
		}
		batch = append(batch, eventstore.EventData{ID: newID(), Type: typ, SchemaVersion: v,
			OccurredAt: t0.Add(time.Duration(i) * time.Millisecond), Payload: p})
		if len(batch) == cap(batch) {
			flush()
		}
	}
	flush()
	return s
}

// BenchmarkCatchUp100k measures applying 100k money events (200k statement
// rows) into a fresh database with CatchUp, i.e. rebuild throughput.
func BenchmarkCatchUp100k(b *testing.B) { benchCatchUp(b, sqliteBackend) }

// BenchmarkCatchUp100kPostgres is BenchmarkCatchUp100k into PostgreSQL
// read models on the test server.
func BenchmarkCatchUp100kPostgres(b *testing.B) { benchCatchUp(b, postgresBackend) }

func benchCatchUp(b *testing.B, be backend) {
	s := benchStore(b)
	dir := b.TempDir()
	var total time.Duration
	n := 0
	for b.Loop() {
		b.StopTimer()
		r := be.open(b, filepath.Join(dir, fmt.Sprintf("rm-%d.db", n)))
		b.StartTimer()
		start := time.Now()
		if err := r.CatchUp(context.Background(), s); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
		b.StopTimer()
		if r.Checkpoint() != benchEvents {
			b.Fatalf("checkpoint %d", r.Checkpoint())
		}
		_ = r.Close()
		n++
		b.StartTimer()
	}
	b.ReportMetric(float64(benchEvents*n)/total.Seconds(), "events/s")
}

// BenchmarkRunLive100k measures the live path: events appended in
// 1,000-event batches while Run is subscribed, until all are applied.
func BenchmarkRunLive100k(b *testing.B) {
	src := benchStore(b)
	all, err := src.ReadAll(context.Background(), 0, benchEvents)
	if err != nil {
		b.Fatal(err)
	}
	for len(all) < benchEvents {
		more, _ := src.ReadAll(context.Background(), int64(len(all)), benchEvents)
		all = append(all, more...)
	}
	dir := b.TempDir()
	var total time.Duration
	n := 0
	for b.Loop() {
		b.StopTimer()
		r, err := Open(filepath.Join(dir, fmt.Sprintf("live-%d.db", n)))
		if err != nil {
			b.Fatal(err)
		}
		s := newMemStore()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx, s) }()
		b.StartTimer()
		start := time.Now()
		for i := 0; i < len(all); i += eventstore.MaxAppendBatch {
			batch := make([]eventstore.EventData, 0, eventstore.MaxAppendBatch)
			for _, e := range all[i:min(i+eventstore.MaxAppendBatch, len(all))] {
				batch = append(batch, e.EventData)
			}
			if _, err := s.Append(ctx, "bench", eventstore.Any, batch); err != nil {
				b.Fatal(err)
			}
		}
		if err := r.WaitFor(ctx, benchEvents); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
		b.StopTimer()
		cancel()
		<-done
		_ = r.Close()
		n++
		b.StartTimer()
	}
	b.ReportMetric(float64(benchEvents*n)/total.Seconds(), "events/s")
}

// BenchmarkSnapshot measures the write path's per-decision balance read.
func BenchmarkSnapshot(b *testing.B) {
	l := newLedger(b)
	for i := range 100 {
		l.deposit(fmt.Sprintf("acct-%d", i), "10", domain.CNY)
	}
	r := newRM(b)
	catchUp(b, r, l.store)
	ids := make([]string, 100)
	for i := range ids {
		ids[i] = fmt.Sprintf("acct-%d", i)
	}
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			r.Snapshot(ids[i%len(ids)])
			i++
		}
	})
}
