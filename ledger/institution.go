package ledger

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/eventstore"
	"github.com/payledger/payledger/reserves"
)

// stream is the write side of one institution stream (a reserve or a loss
// case): the folded aggregate's version and the idempotency keys its
// events recorded. apply folds one event into the aggregate.
type stream struct {
	name    string
	version int64
	keys    keyBook
	apply   func(domain.Event, domain.Recorded)
	// owner is the account a case's stream is about (domain.CaseOwner of
	// its first event), whose data key seals its text; "" for a reserve.
	owner string
}

func newStream(name string, apply func(domain.Event, domain.Recorded)) *stream {
	return &stream{name: name, apply: apply}
}

// catchUp folds the events appended after the stream's version.
func (s *Service) catchUp(ctx context.Context, st *stream) error {
	from := st.version + 1
	for batch := 0; batch < maxLoadBatches; batch++ {
		evs, err := s.cfg.Store.ReadStream(ctx, st.name, from, loadBatch)
		if err != nil {
			return fmt.Errorf("load %s: %w", st.name, err)
		}
		for _, e := range evs {
			if err := s.fold(st, e); err != nil {
				return err
			}
		}
		if len(evs) < loadBatch {
			return nil
		}
		from = evs[len(evs)-1].Version + 1
	}
	return fmt.Errorf("load %s: more than %d events", st.name, maxLoadBatches*loadBatch)
}

// fold applies one event of st, its personal data opened with the key of
// the account the stream is about.
func (s *Service) fold(st *stream, e eventstore.Event) error {
	d, err := domain.DecodeEvent(e.Type, e.SchemaVersion, e.Payload)
	if err != nil {
		return fmt.Errorf("load %s at position %d: %w", st.name, e.Position, err)
	}
	if owner, ok := domain.CaseOwner(d); ok && st.owner == "" {
		st.owner = owner
	}
	if d, err = s.openPersonal(st.owner, e.ID, d); err != nil {
		return fmt.Errorf("load %s at position %d: %w", st.name, e.Position, err)
	}
	st.apply(d, domain.Recorded{Version: e.Version, Position: e.Position, OccurredAt: e.OccurredAt})
	st.version = e.Version
	st.keys.record(e)
	return nil
}

// replay answers a repeated Idempotency-Key from what its first request
// recorded; ok is false when the key is new.
func (s *Service) replay(ctx context.Context, st *stream, idem Idem) (Outcome, bool, error) {
	if idem.Key == "" {
		return Outcome{}, false, nil
	}
	rec, ok := st.keys.keys[idem.Key]
	if !ok {
		return Outcome{}, false, nil
	}
	if rec.bodyHash != idem.BodyHash {
		return Outcome{}, true, domain.Errorf(domain.CodeIdempotencyReused, "Idempotency-Key %q was used with a different request", idem.Key)
	}
	evs, err := s.recorded(ctx, st.name, rec)
	if err != nil {
		return Outcome{}, true, err
	}
	out, err := s.outcomeOf(st.name, st.owner, evs)
	out.Replayed = true
	return out, true, err
}

// appendTo appends events decided on st at its version. retry is true on
// a version conflict: another writer appended, so the caller reloads and
// decides again.
func (s *Service) appendTo(ctx context.Context, st *stream, idem Idem, now time.Time, events []domain.Event, refusal error, conds ...eventstore.Condition) (Outcome, bool, error) {
	owner := st.owner
	for _, e := range events {
		if o, ok := domain.CaseOwner(e); ok && owner == "" {
			owner = o
		}
	}
	data, err := s.encode(events, now, idem, owner)
	if err != nil {
		return Outcome{}, false, err
	}
	res, err := s.append(ctx, st.name, st.version, data, conds)
	switch {
	case errors.Is(err, eventstore.ErrConditionFailed):
		return Outcome{}, false, err // the caller reads the other stream again
	case errors.Is(err, eventstore.ErrVersionConflict):
		return Outcome{}, true, err
	case errors.Is(err, eventstore.ErrUnavailable):
		s.storage.failed(err)
		return Outcome{}, false, domain.Errorf(domain.CodeStorageUnavailable,
			"the event log cannot be written now (its storage is full, read-only or failing); the request was not acknowledged: retry later")
	case err != nil:
		return Outcome{}, false, fmt.Errorf("append to %s: %w", st.name, err)
	}
	s.storage.succeeded()
	for _, e := range res.Events {
		if err := s.fold(st, e); err != nil {
			return Outcome{}, false, err
		}
	}
	return Outcome{Events: res.Events, Decoded: events, Refusal: refusal}, false, nil
}

// reserveEntry is the cached reserve of one currency; mu serialises this
// process's commands on it.
type reserveEntry struct {
	mu      sync.Mutex
	reserve *reserves.Reserve
	st      *stream
}

// reserveBook holds the reserve entries by currency.
type reserveBook struct {
	mu      sync.Mutex
	entries map[domain.Currency]*reserveEntry
}

func (b *reserveBook) lock(c domain.Currency) *reserveEntry {
	b.mu.Lock()
	if b.entries == nil {
		b.entries = map[domain.Currency]*reserveEntry{}
	}
	e := b.entries[c]
	if e == nil {
		e = &reserveEntry{}
		b.entries[c] = e
	}
	b.mu.Unlock()
	e.mu.Lock()
	return e
}

func (e *reserveEntry) reset(c domain.Currency) {
	e.reserve = reserves.NewReserve(c)
	e.st = newStream(domain.ReserveStream(c), e.reserve.Apply)
}

// ReserveDecision decides a command on a currency's reserve given its
// balance; it runs under the reserve's lock, once per attempt.
type ReserveDecision func(r *reserves.Reserve, balance domain.Money, now time.Time) ([]domain.Event, error)

// executeReserve runs a decision on the reserve of currency c and appends
// its events. A decision that returns events and an error records them
// and reports the error as the outcome's refusal (a shortfall).
func (s *Service) executeReserve(ctx context.Context, c domain.Currency, idem Idem, decide ReserveDecision, conds ...eventstore.Condition) (Outcome, error) {
	var lastErr error
	for attempt := 0; attempt < s.cfg.MaxRetries; attempt++ {
		out, retry, err := s.attemptReserve(ctx, c, idem, decide, conds)
		if !retry {
			return out, err
		}
		lastErr = err
	}
	return Outcome{}, domain.Errorf(domain.CodeVersionConflict, "the %s reserve changed concurrently %d times; retry the request (%v)",
		c, s.cfg.MaxRetries, lastErr)
}

// lockReserve locks the reserve of c and brings it up to date; the
// caller unlocks ent.mu.
func (s *Service) lockReserve(ctx context.Context, c domain.Currency) (*reserveEntry, error) {
	ent := s.reserves.lock(c)
	if ent.reserve == nil {
		ent.reset(c)
	}
	if err := s.catchUp(ctx, ent.st); err != nil {
		ent.reset(c)
		ent.mu.Unlock()
		return nil, err
	}
	return ent, nil
}

func (s *Service) attemptReserve(ctx context.Context, c domain.Currency, idem Idem, decide ReserveDecision, conds []eventstore.Condition) (Outcome, bool, error) {
	ent, err := s.lockReserve(ctx, c)
	if err != nil {
		return Outcome{}, false, err
	}
	defer ent.mu.Unlock()
	if out, ok, err := s.replay(ctx, ent.st, idem); ok {
		return out, false, err
	}
	now := s.cfg.Clock()
	proj, cp := s.cfg.Balances.Snapshot(domain.ReserveAccountID(c))
	bal := ent.reserve.Available(proj, cp)
	ent.reserve.Forget(cp)
	events, refusal := decide(ent.reserve, bal, now)
	if len(events) == 0 {
		return Outcome{}, false, refusal
	}
	out, retry, err := s.appendTo(ctx, ent.st, idem, now, events, refusal, conds...)
	if err != nil {
		ent.reset(c) // the append may or may not have landed: reload next time
	}
	return out, retry, err
}

// ReserveState returns a copy of what the reserve of c holds now: its
// balance and its closes.
func (s *Service) reserveState(ctx context.Context, c domain.Currency) (domain.Money, []domain.DayClosed, error) {
	ent, err := s.lockReserve(ctx, c)
	if err != nil {
		return domain.Money{}, nil, err
	}
	defer ent.mu.Unlock()
	proj, cp := s.cfg.Balances.Snapshot(domain.ReserveAccountID(c))
	return ent.reserve.Available(proj, cp), ent.reserve.Closes(), nil
}

// loadCase folds a loss case's stream.
func (s *Service) loadCase(ctx context.Context, caseID string) (*reserves.LossCase, *stream, error) {
	c := &reserves.LossCase{}
	st := newStream(domain.LossCaseStream(caseID), c.Apply)
	if err := s.catchUp(ctx, st); err != nil {
		return nil, nil, err
	}
	return c, st, nil
}

// CaseDecision decides a step of a loss case.
type CaseDecision func(c *reserves.LossCase, now time.Time) ([]domain.Event, error)

// executeCase runs a decision on a loss case's stream.
func (s *Service) executeCase(ctx context.Context, caseID string, idem Idem, decide CaseDecision) (Outcome, error) {
	return s.executeOn(ctx, "loss case "+caseID, idem, func() (*stream, func(time.Time) ([]domain.Event, error), error) {
		c, st, err := s.loadCase(ctx, caseID)
		if err != nil {
			return nil, nil, err
		}
		return st, func(now time.Time) ([]domain.Event, error) { return decide(c, now) }, nil
	})
}

// executeOn runs a decision on a short institution stream (a loss case, a
// dispute), reloading it from the log for every attempt: load folds the
// stream and returns the decision over the folded state.
func (s *Service) executeOn(ctx context.Context, what string, idem Idem,
	load func() (*stream, func(time.Time) ([]domain.Event, error), error)) (Outcome, error) {
	var lastErr error
	for attempt := 0; attempt < s.cfg.MaxRetries; attempt++ {
		st, decide, err := load()
		if err != nil {
			return Outcome{}, err
		}
		if out, ok, err := s.replay(ctx, st, idem); ok {
			return out, err
		}
		now := s.cfg.Clock()
		events, refusal := decide(now)
		if len(events) == 0 {
			return Outcome{}, refusal
		}
		out, retry, err := s.appendTo(ctx, st, idem, now, events, refusal)
		if !retry {
			return out, err
		}
		lastErr = err
	}
	return Outcome{}, domain.Errorf(domain.CodeVersionConflict, "%s changed concurrently %d times; retry the request (%v)",
		what, s.cfg.MaxRetries, lastErr)
}
