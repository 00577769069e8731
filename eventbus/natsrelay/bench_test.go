package natsrelay

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// BenchmarkRelay publishes a stored log of 20,000 events into a new
// stream per iteration, from the catch-up to the last ack (events/s), on
// the embedded server (in-process connection) and on the NATS at
// 127.0.0.1:4222 (TCP), with 64 and 256 (the default) messages awaiting
// their acks at most.
func BenchmarkRelay(b *testing.B) {
	const events = 20000
	for _, where := range []string{"embedded", "external"} {
		for _, batch := range []int{64, 256} {
			b.Run(fmt.Sprintf("%s/batch%d", where, batch), func(b *testing.B) {
				var nc *nats.Conn
				var err error
				if where == "embedded" {
					srv, err := StartEmbedded(filepath.Join(b.TempDir(), "nats"), "")
					if err != nil {
						b.Fatal(err)
					}
					defer srv.Shutdown()
					nc, err = srv.Connect()
					if err != nil {
						b.Fatal(err)
					}
				} else if nc, err = nats.Connect(externalURL, nats.Timeout(2*time.Second)); err != nil {
					b.Skipf("NATS is not reachable at %s: %v", externalURL, err)
				}
				defer nc.Close()
				js, err := jetstream.New(nc)
				if err != nil {
					b.Fatal(err)
				}
				l := openLog(b)
				l.appendEventsBatched(b, events)
				var total time.Duration
				b.ResetTimer()
				for i := range b.N {
					b.StopTimer()
					stream, prefix := fmt.Sprintf("PLBENCH_%d_%d", time.Now().UnixNano(), i), fmt.Sprintf("plbench.%d.events", time.Now().UnixNano())
					r, err := New(Config{Store: l.store, Conn: nc, Stream: stream, SubjectPrefix: prefix,
						CheckpointFile: filepath.Join(b.TempDir(), "cp"), MaxBatch: batch})
					if err != nil {
						b.Fatal(err)
					}
					ctx, cancel := context.WithCancel(context.Background())
					done := make(chan error, 1)
					b.StartTimer()
					start := time.Now()
					go func() { done <- r.Run(ctx) }()
					for r.Stats().Checkpoint < events {
						time.Sleep(time.Millisecond)
					}
					total += time.Since(start)
					b.StopTimer()
					cancel()
					if err := <-done; err != nil {
						b.Fatal(err)
					}
					if err := js.DeleteStream(context.Background(), stream); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
				b.ReportMetric(float64(events*b.N)/total.Seconds(), "events/s")
			})
		}
	}
}
