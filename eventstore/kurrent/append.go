package kurrent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/payledger/payledger/eventstore"
)

// maxCatchUpPages bounds one catch-up: a log growing faster than this
// store can read it is an error rather than an endless loop.
const maxCatchUpPages = 100000

// expectedRevision is the client's expected revision of a stream that
// must hold exactly n events.
func expectedRevision(n int64) esdb.ExpectedRevision {
	if n == 0 {
		return esdb.NoStream{}
	}
	return esdb.Revision(uint64(n - 1))
}

// Append appends events to stream if it holds expected events (or
// expected is eventstore.Any); see the package comment for how.
func (s *Store) Append(ctx context.Context, stream string, expected int64, events []eventstore.EventData) (eventstore.AppendResult, error) {
	return s.AppendIf(ctx, stream, expected, events, nil)
}

// AppendIf implements eventstore.ConditionalStore. Each condition's stream
// version is read from its index in the same attempt as the appended
// stream's, and checked the same way: the append to the log expects the
// revision this store has indexed up to, so when it commits nothing came
// between the reads and the commit point; and a condition not met is a
// refusal only if the log has not moved past that view, else the attempt
// reads what it missed and decides again.
func (s *Store) AppendIf(ctx context.Context, stream string, expected int64, events []eventstore.EventData, conds []eventstore.Condition) (_ eventstore.AppendResult, err error) {
	// A server or connection failure at any step is the storage being
	// unavailable to the caller, whichever request met it.
	defer func() {
		if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			// The server did not answer within CallTimeout.
			err = fmt.Errorf("%w: %w", eventstore.ErrUnavailable, err)
		}
		err = unavailable(err)
	}()
	if err := eventstore.ValidateAppend(stream, expected, events); err != nil {
		return eventstore.AppendResult{}, err
	}
	if err := eventstore.ValidateConditions(stream, conds); err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("kurrent store: append to %s: %w", stream, err)
	}
	if s.isClosed() {
		return eventstore.AppendResult{}, eventstore.ErrClosed
	}
	select {
	case s.writer <- struct{}{}:
	case <-ctx.Done():
		return eventstore.AppendResult{}, ctx.Err()
	}
	defer func() { <-s.writer }()
	for range s.opts.MaxAttempts {
		if s.isClosed() {
			return eventstore.AppendResult{}, eventstore.ErrClosed
		}
		if s.stale {
			if err := s.catchUp(ctx); err != nil {
				return eventstore.AppendResult{}, fmt.Errorf("kurrent store: append to %s: %w", stream, err)
			}
		}
		res, done, err := s.tryAppend(ctx, stream, expected, events, conds)
		if done {
			return res, err
		}
		s.stale = true
		s.retries.Add(1)
	}
	return eventstore.AppendResult{}, fmt.Errorf("%w: kurrent store: append to %s: other writers appended to the log %d times in a row",
		eventstore.ErrVersionConflict, stream, s.opts.MaxAttempts)
}

// tryAppend makes one attempt against the writer's view of the log. done
// is false when the log had moved past that view, so that nothing was
// decided: the caller catches up and tries again.
func (s *Store) tryAppend(ctx context.Context, stream string, expected int64, events []eventstore.EventData, conds []eventstore.Condition) (res eventstore.AppendResult, done bool, err error) {
	// The stream's last event and the conditions' versions (at most
	// eventstore.MaxConditions) are read while the ids are looked up: they
	// are independent, and an Append waits for the slowest.
	var last []eventstore.Event
	var lastErr error
	versions := make([]int64, len(conds))
	lastRead := make(chan struct{})
	go func() {
		defer close(lastRead)
		lastErr = parallel(1+len(conds), 1+len(conds), func(i int) error {
			var err error
			if i == 0 {
				last, err = s.ReadStreamBackward(ctx, stream, 0, 1)
			} else {
				versions[i-1], err = s.StreamVersion(ctx, conds[i-1].Stream)
			}
			return err
		})
	}()
	found, err := s.lookupIDs(ctx, events)
	<-lastRead
	if err != nil {
		return res, true, fmt.Errorf("kurrent store: append to %s: look the ids up: %w", stream, err)
	}
	stored, refusal := classify(stream, expected, events, found)
	if refusal == nil && stored != nil {
		return eventstore.AppendResult{Events: stored}, true, nil
	}
	var version int64
	var prev [32]byte
	if refusal == nil {
		if lastErr != nil {
			return res, true, fmt.Errorf("kurrent store: append to %s: %w", stream, lastErr)
		}
		if len(last) == 1 {
			version, prev = last[0].Version, last[0].Hash
		}
		if expected != eventstore.Any && expected != version {
			refusal = fmt.Errorf("%w: %s is at version %d, not %d", eventstore.ErrVersionConflict, stream, version, expected)
		}
	}
	for i, c := range conds {
		if refusal != nil {
			break
		}
		if versions[i] != c.Version {
			refusal = fmt.Errorf("%w: stream %s is at version %d, the append required %d",
				eventstore.ErrConditionFailed, c.Stream, versions[i], c.Version)
		}
	}
	if refusal != nil {
		// A refusal rests on what is not indexed (yet): it stands only if
		// nothing was appended past this store's view.
		head, err := s.Head(ctx)
		if err != nil {
			return res, true, fmt.Errorf("kurrent store: append to %s: %w", stream, err)
		}
		switch {
		case head < s.indexed:
			return res, true, fmt.Errorf("%w: the log ends at position %d, before %d which this store has read", errCorrupt, head, s.indexed)
		case head > s.indexed:
			return res, false, nil
		}
		return res, true, refusal
	}

	first := s.indexed + 1
	out := make([]eventstore.Event, len(events))
	data := make([]esdb.EventData, len(events))
	for i, d := range events {
		d.OccurredAt = d.OccurredAt.UTC()
		e := eventstore.Event{EventData: d, Stream: stream, Version: version + 1 + int64(i), Position: first + int64(i), PrevHash: prev}
		e.Hash = eventstore.ComputeHash(prev, stream, e.Version, d)
		prev = e.Hash
		out[i] = e
		if data[i], err = encodeEvent(e, first); err != nil {
			return res, true, fmt.Errorf("kurrent store: append to %s: %w", stream, err)
		}
	}
	// From here the request may commit, so the caller's cancellation no
	// longer withdraws it (the port's rule): the append and its indexing
	// run to their own timeouts.
	wctx := context.WithoutCancel(ctx)
	cctx, cancel := s.call(wctx)
	var wrote *esdb.WriteResult
	err = s.do(cctx, func(c *esdb.Client) error {
		var err error
		wrote, err = c.AppendToStream(cctx, s.names.log(), esdb.AppendToStreamOptions{ExpectedRevision: expectedRevision(s.indexed)}, data...)
		return err
	})
	cancel()
	lastPos := out[len(out)-1].Position
	switch {
	case codeOf(err) == esdb.ErrorCodeWrongExpectedVersion:
		return res, false, nil
	case err != nil:
		// The append may have committed without its answer reaching us.
		s.stale = true
		return res, true, fmt.Errorf("kurrent store: append to %s: %w", stream, s.readErr(err))
	case wrote.NextExpectedVersion != uint64(lastPos-1):
		// Not where this store put them: the server answered an earlier
		// identical append, or the log was deleted and written again
		// (its revisions then go on from where they stopped). Reading the
		// log again tells which: the ids are found, or the positions jump
		// (errCorrupt).
		return res, false, nil
	}
	s.appends.Add(1)
	s.events.Add(int64(len(out)))
	if err := s.index(wctx, out); err != nil {
		s.stale = true
		return res, true, fmt.Errorf("kurrent store: %s: positions %d..%d committed but not indexed (a retry with the same ids is answered from the log): %w",
			stream, first, lastPos, err)
	}
	s.indexed = lastPos
	return eventstore.AppendResult{Events: out}, true, nil
}

// classify decides an append from the stored events of its ids (nil where
// an id is not stored), as the other adapters do: the stored events when
// the request is an exact re-append of them (same stream, consecutive
// versions at the expected place, same content), a refusal wrapping
// ErrIDReused when some id is stored anywhere else or with other content,
// and neither when no id is stored.
func classify(stream string, expected int64, events []eventstore.EventData, found []*eventstore.Event) ([]eventstore.Event, error) {
	n, missing := 0, ""
	for i, f := range found {
		if f != nil {
			n++
		} else if missing == "" {
			missing = events[i].ID
		}
	}
	if n == 0 {
		return nil, nil
	}
	if n < len(events) {
		return nil, fmt.Errorf("%w: some ids of the batch are stored, %s is not", eventstore.ErrIDReused, missing)
	}
	first := found[0].Version
	out := make([]eventstore.Event, len(found))
	for i, e := range found {
		d := events[i]
		switch {
		case e.Stream != stream:
			return nil, fmt.Errorf("%w: %s is stored in stream %s", eventstore.ErrIDReused, d.ID, e.Stream)
		case e.Version != first+int64(i):
			return nil, fmt.Errorf("%w: the batch's ids are not stored consecutively", eventstore.ErrIDReused)
		case expected != eventstore.Any && first != expected+1:
			return nil, fmt.Errorf("%w: the batch is stored after version %d, not %d", eventstore.ErrIDReused, first-1, expected)
		case eventstore.ComputeHash(e.PrevHash, e.Stream, e.Version, d) != e.Hash:
			return nil, fmt.Errorf("%w: %s is stored with other content", eventstore.ErrIDReused, d.ID)
		}
		out[i] = *e
	}
	return out, nil
}

// parallel runs fn for 0..n-1, at most limit at once, and returns the
// first error.
func parallel(n, limit int, fn func(i int) error) error {
	sem := make(chan struct{}, limit)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			errs[i] = fn(i)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// lookupIDs returns the stored event of each id, nil where it is not
// stored (or not indexed yet).
func (s *Store) lookupIDs(ctx context.Context, events []eventstore.EventData) ([]*eventstore.Event, error) {
	found := make([]*eventstore.Event, len(events))
	err := parallel(len(events), s.opts.IndexParallelism, func(i int) error {
		rs, err := s.read(ctx, s.names.id(events[i].ID), esdb.ReadStreamOptions{Direction: esdb.Forwards, From: esdb.Start{}, ResolveLinkTos: true}, 1)
		if err != nil || len(rs) == 0 {
			return err
		}
		got, err := fromLog(rs)
		if err != nil {
			return err
		}
		if got[0].ID != events[i].ID {
			return fmt.Errorf("%w: the index of id %s points at %s", errCorrupt, events[i].ID, got[0].ID)
		}
		found[i] = &got[0]
		return nil
	})
	return found, err
}

// catchUp reads the log after s.indexed and indexes every event of it,
// then clears stale.
func (s *Store) catchUp(ctx context.Context) error {
	for range maxCatchUpPages {
		page, err := s.ReadAll(ctx, s.indexed, readPage)
		if err != nil {
			return err
		}
		if len(page) == 0 {
			s.stale = false
			return nil
		}
		for i, e := range page {
			if e.Position != s.indexed+1+int64(i) {
				return fmt.Errorf("%w: the log has position %d where %d belongs", errCorrupt, e.Position, s.indexed+1+int64(i))
			}
		}
		// An Append's events are consecutive and of one stream: index
		// each run of one stream's events together.
		for start := 0; start < len(page); {
			end := start + 1
			for end < len(page) && page[end].Stream == page[start].Stream && page[end].Version == page[end-1].Version+1 {
				end++
			}
			if err := s.index(ctx, page[start:end]); err != nil {
				return err
			}
			start = end
		}
		s.indexed = page[len(page)-1].Position
	}
	return fmt.Errorf("the log grew for %d pages of reading", maxCatchUpPages)
}

// index writes the index entries of consecutive events of one stream:
// their links in the stream's index at their versions, and each id's
// link. Entries already written (by a retry, or by another writer) are
// checked to point at the same log events, and left.
func (s *Store) index(ctx context.Context, events []eventstore.Event) error {
	stream := events[0].Stream
	links := make([]esdb.EventData, len(events))
	for i, e := range events {
		links[i] = linkTo(eventUUID(e.ID), uint64(e.Position-1), s.names.log())
	}
	cctx, cancel := s.call(ctx)
	err := s.appendTo(cctx, s.names.stream(stream), expectedRevision(events[0].Version-1), links...)
	cancel()
	if codeOf(err) == esdb.ErrorCodeWrongExpectedVersion {
		err = s.checkLinks(ctx, s.names.stream(stream), events[0].Version-1, links)
	}
	if err != nil {
		return fmt.Errorf("index %s at versions %d..%d: %w", stream, events[0].Version, events[len(events)-1].Version, err)
	}
	return parallel(len(events), s.opts.IndexParallelism, func(i int) error {
		cctx, cancel := s.call(ctx)
		defer cancel()
		id := s.names.id(events[i].ID)
		err := s.appendTo(cctx, id, esdb.NoStream{}, links[i])
		if codeOf(err) == esdb.ErrorCodeWrongExpectedVersion {
			err = s.checkLinks(ctx, id, 0, links[i:i+1])
		}
		if err != nil {
			return fmt.Errorf("index id %s: %w", events[i].ID, err)
		}
		return nil
	})
}

// checkLinks verifies that stream holds links (the same targets) from
// revision from on, which a refused index write found written already.
func (s *Store) checkLinks(ctx context.Context, stream string, from int64, links []esdb.EventData) error {
	rs, err := s.read(ctx, stream, esdb.ReadStreamOptions{Direction: esdb.Forwards, From: esdb.Revision(uint64(from))}, len(links))
	if err != nil {
		return err
	}
	if len(rs) < len(links) {
		return fmt.Errorf("%w: %s holds %d entries from revision %d, and refused %d more there", errCorrupt, stream, len(rs), from, len(links))
	}
	for i, r := range rs {
		if r.Event.EventType != linkType || !bytes.Equal(r.Event.Data, links[i].Data) {
			return fmt.Errorf("%w: %s at revision %d is %q, not %q", errCorrupt, stream, from+int64(i), r.Event.Data, links[i].Data)
		}
	}
	return nil
}

// appendTo appends events to stream with the expected revision.
func (s *Store) appendTo(ctx context.Context, stream string, expected esdb.ExpectedRevision, events ...esdb.EventData) error {
	return s.do(ctx, func(c *esdb.Client) error {
		_, err := c.AppendToStream(ctx, stream, esdb.AppendToStreamOptions{ExpectedRevision: expected}, events...)
		return err
	})
}
