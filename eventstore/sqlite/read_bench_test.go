package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/payledger/payledger/eventstore"
)

// readBenchLog writes 64 streams of 300 events each, interleaved (one event
// per stream in turn, in appends of one event, as accounts are written), so
// consecutive events of a stream are far apart in the log, then closes and
// reopens it so reads start cold and come from the file.
func readBenchLog(b *testing.B) *Store {
	b.Helper()
	path := filepath.Join(b.TempDir(), "events.db")
	s, err := Open(path, DefaultOptions())
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for range 300 {
		for k := range 64 {
			d := event()
			d.Payload = []byte(`{"payment_id":"01JABCDEFGHJKMNPQRSTVWXYZ0","amount":"12.34","currency":"CNY","payee":"account-01JABCDEFGHJKMNPQRSTVWXYZ1"}`)
			if _, err := s.Append(ctx, fmt.Sprintf("account-%02d", k), eventstore.Any, []eventstore.EventData{d}); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	if s, err = Open(path, DefaultOptions()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

// cpuTime is the process's CPU time (user and system) so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the CPU time per op since start as cpu-ns/op: on the
// shared machine the wall time of a read depends on the other processes
// more than its CPU time does.
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N), "cpu-ns/op")
}

// BenchmarkReadStreamScattered reads a whole 300-event stream whose events
// are spread over the log (an aggregate loaded cold); ns/op is per stream.
func BenchmarkReadStreamScattered(b *testing.B) {
	s := readBenchLog(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	start := cpuTime(b)
	for i := range b.N {
		evs, err := s.ReadStream(ctx, fmt.Sprintf("account-%02d", i%64), 1, 1000)
		if err != nil || len(evs) != 300 {
			b.Fatalf("%d events, %v", len(evs), err)
		}
	}
	reportCPU(b, start)
}

// BenchmarkReadAll reads the whole 19,200-event log in pages of 1,000 (a
// projection catching up or a rebuild); ns/op is per log.
func BenchmarkReadAll(b *testing.B) {
	s := readBenchLog(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	start := cpuTime(b)
	for range b.N {
		var after int64
		n := 0
		for {
			evs, err := s.ReadAll(ctx, after, 1000)
			if err != nil {
				b.Fatal(err)
			}
			if len(evs) == 0 {
				break
			}
			n += len(evs)
			after = evs[len(evs)-1].Position
		}
		if n != 300*64 {
			b.Fatalf("read %d events", n)
		}
	}
	reportCPU(b, start)
}
