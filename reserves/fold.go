package reserves

import (
	"context"
	"fmt"
	"time"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/eventstore"
)

// FoldLog reads the log up to through (the head when through is 0) into
// books: first every reserve stream's closes, then every event in order.
// progress, when not nil, is told the position reached after each batch.
func FoldLog(ctx context.Context, store eventstore.Store, loc *time.Location, through int64, progress func(int64)) (*Books, error) {
	if through <= 0 {
		head, err := store.Head(ctx)
		if err != nil {
			return nil, fmt.Errorf("reserves: read the log's head: %w", err)
		}
		through = head
	}
	var closes []domain.DayClosed
	for _, c := range domain.Currencies() {
		for from := int64(1); ; {
			evs, err := store.ReadStream(ctx, domain.ReserveStream(c), from, eventstore.MaxReadBatch)
			if err != nil {
				return nil, fmt.Errorf("reserves: read %s: %w", domain.ReserveStream(c), err)
			}
			for _, e := range evs {
				if e.Type != domain.TypeDayClosed || e.Position > through {
					continue
				}
				d, err := domain.DecodeEvent(e.Type, e.SchemaVersion, e.Payload)
				if err != nil {
					return nil, fmt.Errorf("reserves: %s at position %d: %w", e.Stream, e.Position, err)
				}
				closes = append(closes, d.(domain.DayClosed))
			}
			if len(evs) < eventstore.MaxReadBatch {
				break
			}
			from = evs[len(evs)-1].Version + 1
		}
	}
	books := NewBooks(loc, closes)
	for after := int64(0); after < through; {
		evs, err := store.ReadAll(ctx, after, eventstore.MaxReadBatch)
		if err != nil {
			return nil, fmt.Errorf("reserves: read the log after %d: %w", after, err)
		}
		if len(evs) == 0 {
			return nil, fmt.Errorf("reserves: the log ends at %d, before %d", after, through)
		}
		for _, e := range evs {
			if e.Position > through {
				break
			}
			d, err := domain.DecodeEvent(e.Type, e.SchemaVersion, e.Payload)
			if err != nil {
				return nil, fmt.Errorf("reserves: event at position %d: %w", e.Position, err)
			}
			if err := books.Add(Recorded{Event: d, Stream: e.Stream, Position: e.Position, OccurredAt: e.OccurredAt}); err != nil {
				return nil, err
			}
			after = e.Position
		}
		if progress != nil {
			progress(after)
		}
	}
	return books, nil
}
