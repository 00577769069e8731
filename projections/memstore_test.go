package projections

import (
	"context"
	"fmt"
	"sync"

	"github.com/payledger/payledger/eventstore"
)

// memStore is a minimal in-memory eventstore.Store for these tests, so they
// do not depend on a real adapter.
type memStore struct {
	mu      sync.Mutex
	events  []eventstore.Event
	streams map[string][]int // indexes into events
	wake    chan struct{}    // closed and replaced on every append
	closed  bool
}

var _ eventstore.Store = (*memStore)(nil)

func newMemStore() *memStore {
	return &memStore{streams: map[string][]int{}, wake: make(chan struct{})}
}

func (s *memStore) Append(_ context.Context, stream string, expected int64, events []eventstore.EventData) (eventstore.AppendResult, error) {
	if err := eventstore.ValidateAppend(stream, expected, events); err != nil {
		return eventstore.AppendResult{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return eventstore.AppendResult{}, eventstore.ErrClosed
	}
	idx := s.streams[stream]
	if expected != eventstore.Any && int64(len(idx)) != expected {
		return eventstore.AppendResult{}, fmt.Errorf("%w: stream %s has %d events, expected %d",
			eventstore.ErrVersionConflict, stream, len(idx), expected)
	}
	var prev [32]byte
	if len(idx) > 0 {
		prev = s.events[idx[len(idx)-1]].Hash
	}
	var res eventstore.AppendResult
	for _, d := range events {
		d.OccurredAt = d.OccurredAt.UTC()
		version := int64(len(idx)) + 1
		e := eventstore.Event{
			EventData: d,
			Stream:    stream,
			Version:   version,
			Position:  int64(len(s.events)) + 1,
			PrevHash:  prev,
			Hash:      eventstore.ComputeHash(prev, stream, version, d),
		}
		prev = e.Hash
		idx = append(idx, len(s.events))
		s.events = append(s.events, e)
		res.Events = append(res.Events, e)
	}
	s.streams[stream] = idx
	close(s.wake)
	s.wake = make(chan struct{})
	return res, nil
}

func (s *memStore) ReadStream(_ context.Context, stream string, from int64, limit int) ([]eventstore.Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []eventstore.Event
	for _, i := range s.streams[stream] {
		if e := s.events[i]; e.Version >= from && len(out) < limit {
			out = append(out, e)
		}
	}
	return out, nil
}

func (s *memStore) ReadStreamBackward(_ context.Context, stream string, from int64, limit int) ([]eventstore.Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	idx := s.streams[stream]
	var out []eventstore.Event
	for j := len(idx) - 1; j >= 0 && len(out) < limit; j-- {
		if e := s.events[idx[j]]; from < 1 || e.Version <= from {
			out = append(out, e)
		}
	}
	return out, nil
}

func (s *memStore) ReadAll(_ context.Context, after int64, limit int) ([]eventstore.Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.readAllLocked(after, limit), nil
}

func (s *memStore) readAllLocked(after int64, limit int) []eventstore.Event {
	limit = min(limit, eventstore.MaxReadBatch)
	if after < 0 {
		after = 0
	}
	if after >= int64(len(s.events)) {
		return nil
	}
	end := min(int64(len(s.events)), after+int64(limit))
	return append([]eventstore.Event(nil), s.events[after:end]...)
}

func (s *memStore) Head(context.Context) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return int64(len(s.events)), nil
}

func (s *memStore) StreamVersion(_ context.Context, stream string) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return int64(len(s.streams[stream])), nil
}

func (s *memStore) Subscribe(ctx context.Context, after int64, fn func(eventstore.Event) error) error {
	for {
		s.mu.Lock()
		closed, wake := s.closed, s.wake
		batch := s.readAllLocked(after, 1000)
		s.mu.Unlock()
		if closed {
			return eventstore.ErrClosed
		}
		for _, e := range batch {
			if err := fn(e); err != nil {
				return err
			}
			after = e.Position
		}
		if len(batch) > 0 {
			continue
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (s *memStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.wake)
	}
	return nil
}

// The projections never use snapshots.
func (s *memStore) SaveSnapshot(context.Context, eventstore.Snapshot) error { return nil }

func (s *memStore) LoadSnapshot(context.Context, string) (eventstore.Snapshot, bool, error) {
	return eventstore.Snapshot{}, false, nil
}
