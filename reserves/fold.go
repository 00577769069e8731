package reserves

import (
	"context"
	"fmt"
	"time"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/eventstore"
)

// LogReader is what FoldLog reads: the global log in order. A reader that
// also reads streams (eventstore.Store) gives the closes without a first
// pass over the log.
type LogReader interface {
	Head(ctx context.Context) (int64, error)
	ReadAll(ctx context.Context, after int64, limit int) ([]eventstore.Event, error)
}

// streamReader is the part of eventstore.Store that reads one stream.
type streamReader interface {
	ReadStream(ctx context.Context, stream string, from int64, limit int) ([]eventstore.Event, error)
}

// FoldLog reads the log up to through (the head when through is 0) into
// books: first every reserve's closes, then every event in order.
// progress, when not nil, is told the position reached after each batch.
func FoldLog(ctx context.Context, log LogReader, loc *time.Location, through int64, progress func(int64)) (*Books, error) {
	if through <= 0 {
		head, err := log.Head(ctx)
		if err != nil {
			return nil, fmt.Errorf("reserves: read the log's head: %w", err)
		}
		through = head
	}
	closes, err := readCloses(ctx, log, through)
	if err != nil {
		return nil, err
	}
	books := NewBooks(loc, closes)
	err = scan(ctx, log, through, func(e eventstore.Event) error {
		d, err := domain.DecodeEvent(e.Type, e.SchemaVersion, e.Payload)
		if err != nil {
			return fmt.Errorf("reserves: event at position %d: %w", e.Position, err)
		}
		return books.Add(Recorded{Event: d, Stream: e.Stream, Position: e.Position, OccurredAt: e.OccurredAt, Hash: e.Hash})
	}, progress)
	return books, err
}

// scan calls fn for every event of the log up to through, in order.
func scan(ctx context.Context, log LogReader, through int64, fn func(eventstore.Event) error, progress func(int64)) error {
	for after := int64(0); after < through; {
		evs, err := log.ReadAll(ctx, after, eventstore.MaxReadBatch)
		if err != nil {
			return fmt.Errorf("reserves: read the log after %d: %w", after, err)
		}
		if len(evs) == 0 {
			return fmt.Errorf("reserves: the log ends at %d, before %d", after, through)
		}
		for _, e := range evs {
			if e.Position > through {
				return nil
			}
			if err := fn(e); err != nil {
				return err
			}
			after = e.Position
		}
		if progress != nil {
			progress(after)
		}
	}
	return nil
}

// readCloses returns every DayClosed up to through: from the reserve
// streams when log reads streams, else from a first pass over the log.
func readCloses(ctx context.Context, log LogReader, through int64) ([]domain.DayClosed, error) {
	var closes []domain.DayClosed
	take := func(e eventstore.Event) error {
		if e.Type != domain.TypeDayClosed || e.Position > through {
			return nil
		}
		d, err := domain.DecodeEvent(e.Type, e.SchemaVersion, e.Payload)
		if err != nil {
			return fmt.Errorf("reserves: %s at position %d: %w", e.Stream, e.Position, err)
		}
		closes = append(closes, d.(domain.DayClosed))
		return nil
	}
	sr, ok := log.(streamReader)
	if !ok {
		return closes, scan(ctx, log, through, take, nil)
	}
	for _, c := range domain.Currencies() {
		for from, n := int64(1), 0; n < maxCloseBatches; n++ {
			evs, err := sr.ReadStream(ctx, domain.ReserveStream(c), from, eventstore.MaxReadBatch)
			if err != nil {
				return nil, fmt.Errorf("reserves: read %s: %w", domain.ReserveStream(c), err)
			}
			for _, e := range evs {
				if err := take(e); err != nil {
					return nil, err
				}
			}
			if len(evs) < eventstore.MaxReadBatch {
				break
			}
			from = evs[len(evs)-1].Version + 1
		}
	}
	return closes, nil
}

// maxCloseBatches bounds the reads of one reserve stream.
const maxCloseBatches = 100000
