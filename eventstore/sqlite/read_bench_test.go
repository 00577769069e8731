package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

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

// BenchmarkReadStreamScattered reads a whole 300-event stream whose events
// are spread over the log (an aggregate loaded cold); ns/op is per stream.
func BenchmarkReadStreamScattered(b *testing.B) {
	s := readBenchLog(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		evs, err := s.ReadStream(ctx, fmt.Sprintf("account-%02d", i%64), 1, 1000)
		if err != nil || len(evs) != 300 {
			b.Fatalf("%d events, %v", len(evs), err)
		}
	}
}

// BenchmarkReadAll reads the whole 19,200-event log in pages of 1,000 (a
// projection catching up or a rebuild); ns/op is per log.
func BenchmarkReadAll(b *testing.B) {
	s := readBenchLog(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
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
}
