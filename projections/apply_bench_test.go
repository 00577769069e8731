//go:build unix

package projections

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/eventstore"
)

// BenchmarkApplyBatch measures the applier alone (staging and the SQLite
// transaction, no decoding) on batches of confirmed payments between 2,000
// accounts with ULID-like ids, on a database already holding 40k
// statement rows, as in a busy live projection. It reports the time per
// payment for several batch sizes: how the cost of a transaction and of
// the index pages it dirties falls as batches grow. CPU time (getrusage)
// is reported too: wall time includes the disk's fsyncs at WAL
// checkpoints; and the bytes passed to write calls (WAL frames and
// checkpoint copies, from /proc/self/io), what the dirtied pages cost the
// disk.
func BenchmarkApplyBatch(b *testing.B) {
	const (
		accounts = 2000
		warm     = 20_000 // payments before measuring
	)
	ids := make([]string, accounts)
	for i := range ids {
		ids[i] = newID()
	}
	pos := int64(0)
	at := t0
	mk := func(ev domain.Event) item {
		pos++
		at = at.Add(time.Millisecond)
		typ, v, p, err := domain.EncodeEvent(ev)
		if err != nil {
			b.Fatal(err)
		}
		return decodeItem(eventstore.Event{EventData: eventstore.EventData{ID: newID(), Type: typ, SchemaVersion: v,
			OccurredAt: at, Payload: p}, Stream: "bench", Position: pos})
	}
	n := 0
	pay := func() item {
		n++
		return mk(payEvent(ids[(n*13)%accounts], ids[(n*7+3)%accounts], "0.01", domain.CNY))
	}
	for _, size := range []int{25, 100, 400, 1600} {
		b.Run(fmt.Sprintf("payments=%d", size), func(b *testing.B) {
			r := newRM(b)
			apply := func(items []item) {
				r.applyMu.Lock()
				defer r.applyMu.Unlock()
				if err := r.applyLocked(context.Background(), items); err != nil {
					b.Fatal(err)
				}
			}
			var setup []item
			for _, id := range ids {
				setup = append(setup, mk(depositEvent(id, "1000000", domain.CNY)))
			}
			apply(setup)
			for range warm / 1000 {
				batch := make([]item, 1000)
				for i := range batch {
					batch[i] = pay()
				}
				apply(batch)
			}
			batches := make([][]item, 0, 64)
			payments := 0
			var cpu time.Duration
			written := int64(0)
			b.ResetTimer()
			for b.Loop() {
				b.StopTimer()
				if len(batches) == 0 {
					for range 64 {
						batch := make([]item, size)
						for i := range batch {
							batch[i] = pay()
						}
						batches = append(batches, batch)
					}
				}
				batch := batches[0]
				batches = batches[1:]
				b.StartTimer()
				before, wbefore := cpuTime(b), procIO(b, "wchar")
				apply(batch)
				cpu += cpuTime(b) - before
				written += procIO(b, "wchar") - wbefore
				payments += size
			}
			if want := pos - int64(len(batches)*size); r.Checkpoint() != want {
				b.Fatalf("checkpoint %d, want %d", r.Checkpoint(), want)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(payments), "ns/payment")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(payments), "cpu-ns/payment")
			b.ReportMetric(float64(written)/float64(payments), "written-B/payment")
		})
	}
}
