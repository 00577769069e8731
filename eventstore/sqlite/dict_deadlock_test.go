package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/payledger/payledger/eventstore"
)

// TestColdDictionaryReadsDoNotDeadlock: after a restart no dictionary is
// cached, and many concurrent stream reads each hold a pooled connection
// for their rows while their first segment asks for its dictionary. With
// the dictionaries loaded through the same pool, every connection ended
// up held by a reader waiting for another one, and the reads hung (seen
// as payledger bench stalling with all its goroutines in dictCache.get).
func TestColdDictionaryReadsDoNotDeadlock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	s := mustOpen(t, path, DefaultOptions())
	s.dictTrain, s.dictRetrain = 50, 150
	const streams = 64
	ctx := context.Background()
	for i := range 400 {
		d := event()
		d.Payload = fmt.Appendf(nil, `{"i":%d,"text":"QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"}`, i)
		if _, err := s.Append(ctx, fmt.Sprintf("s%d", i%streams), eventstore.Any, []eventstore.EventData{d}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for round := range 5 {
		s = mustOpen(t, path, DefaultOptions())
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		var wg sync.WaitGroup
		errs := make(chan error, streams)
		start := make(chan struct{})
		for i := range streams {
			wg.Go(func() {
				<-start
				evs, err := s.ReadStream(rctx, fmt.Sprintf("s%d", i), 1, 0)
				if err == nil && len(evs) == 0 {
					err = fmt.Errorf("stream s%d read empty", i)
				}
				if err != nil {
					errs <- err
				}
			})
		}
		close(start)
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatalf("round %d: %d concurrent cold reads still waiting after 30 s", round, streams)
		}
		cancel()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
