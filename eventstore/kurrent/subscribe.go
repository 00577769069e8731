package kurrent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/payledger/payledger/eventstore"
)

// maxDrops bounds how often in a row a subscription is dropped by the
// server or the connection without delivering an event before Subscribe
// gives up; redropWait is the pause before subscribing again.
const (
	maxDrops   = 10
	redropWait = 500 * time.Millisecond
)

// Subscribe delivers every event after position after to fn, in order: a
// catch-up subscription to the log stream, which KurrentDB serves from
// the stored events and then live. The client never resubscribes by
// itself, so a dropped subscription is started again after the last
// delivered position.
func (s *Store) Subscribe(ctx context.Context, after int64, fn func(eventstore.Event) error) error {
	if s.isClosed() {
		return eventstore.ErrClosed
	}
	// Close ends the subscription through s.ctx.
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		select {
		case <-s.ctx.Done():
			stop()
		case <-sctx.Done():
		}
	}()
	cursor := max(after, 0)
	drops := 0
	for {
		delivered, err := s.subscribeOnce(sctx, &cursor, fn)
		switch {
		case s.isClosed():
			return eventstore.ErrClosed
		case ctx.Err() != nil:
			return ctx.Err()
		case !errors.Is(err, errDropped):
			return err
		}
		if delivered {
			drops = 0
		}
		if drops++; drops > maxDrops {
			return fmt.Errorf("kurrent store: subscription dropped %d times in a row: %w", maxDrops, err)
		}
		select {
		case <-time.After(redropWait):
		case <-sctx.Done():
		}
	}
}

// errDropped marks a subscription the server or the connection ended.
var errDropped = errors.New("subscription dropped")

// subscribeOnce subscribes after *cursor and delivers until the
// subscription drops (errDropped), fn fails or an event is out of order.
func (s *Store) subscribeOnce(ctx context.Context, cursor *int64, fn func(eventstore.Event) error) (delivered bool, err error) {
	// A subscription from revision r delivers the events after r; the
	// event at revision *cursor-1 is position *cursor, the last delivered.
	opts := esdb.SubscribeToStreamOptions{From: esdb.Start{}}
	if *cursor > 0 {
		opts.From = esdb.Revision(uint64(*cursor - 1))
	}
	// The subscription lives on ctx; only the wait for it to start is
	// bounded by CallTimeout.
	start, cancel := s.call(ctx)
	defer cancel()
	var sub *esdb.Subscription
	err = s.do(start, func(c *esdb.Client) error {
		var err error
		sub, err = c.SubscribeToStream(ctx, s.names.log(), opts)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("%w: %w", errDropped, err)
	}
	defer func() { _ = sub.Close() }()
	for {
		msg := sub.Recv()
		switch {
		case msg.SubscriptionDropped != nil:
			return delivered, fmt.Errorf("%w: %w", errDropped, msg.SubscriptionDropped.Error)
		case msg.EventAppeared == nil || msg.EventAppeared.Event == nil:
			continue // caught up, fell behind, checkpoints: nothing to deliver
		}
		e, _, err := decodeEvent(msg.EventAppeared.Event)
		if err != nil {
			return delivered, err
		}
		switch {
		case e.Position <= *cursor:
			continue // delivered already (should the server start at r itself)
		case e.Position != *cursor+1:
			return delivered, fmt.Errorf("%w: the subscription jumped from position %d to %d", errCorrupt, *cursor, e.Position)
		}
		if err := fn(e); err != nil {
			return delivered, err
		}
		*cursor, delivered = e.Position, true
	}
}
