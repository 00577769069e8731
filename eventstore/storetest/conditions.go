package storetest

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/payledger/payledger/eventstore"
)

// conditional returns the store as a ConditionalStore, or skips the case
// for an adapter that has none (several writers of its log cannot then
// make decisions that span streams).
func conditional(t *testing.T, open Factory) eventstore.ConditionalStore {
	t.Helper()
	s := openStore(t, open)
	cs, ok := s.(eventstore.ConditionalStore)
	if !ok {
		t.Skipf("skipped: %T does not implement eventstore.ConditionalStore (appends conditioned on other streams)", s)
	}
	return cs
}

func testAppendIfMet(t *testing.T, open Factory, _ Options) {
	s := conditional(t, open)
	ctx := ctxT(t)
	mustAppend(t, s, "payee", eventstore.NoStream, evs(2))
	res, err := s.AppendIf(ctx, "payer", eventstore.NoStream, evs(1),
		[]eventstore.Condition{{Stream: "payee", Version: 2}, {Stream: "missing", Version: 0}})
	if err != nil {
		t.Fatalf("append with met conditions: %v", err)
	}
	if res.LastVersion() != 1 || res.LastPosition() != 3 {
		t.Fatalf("appended at version %d position %d, want 1 and 3", res.LastVersion(), res.LastPosition())
	}
}

func testAppendIfNotMet(t *testing.T, open Factory, _ Options) {
	s := conditional(t, open)
	ctx := ctxT(t)
	mustAppend(t, s, "payee", eventstore.NoStream, evs(2))
	for _, c := range []eventstore.Condition{{Stream: "payee", Version: 1}, {Stream: "payee", Version: 3}, {Stream: "missing", Version: 1}} {
		_, err := s.AppendIf(ctx, "payer", eventstore.NoStream, evs(1), []eventstore.Condition{c})
		requireErr(t, fmt.Sprintf("condition %+v", c), err, eventstore.ErrConditionFailed)
		requireErr(t, fmt.Sprintf("condition %+v", c), err, eventstore.ErrVersionConflict)
	}
	if v := streamVersion(t, s, "payer"); v != 0 {
		t.Fatalf("refused appends left the stream at version %d", v)
	}
	if h := head(t, s); h != 2 {
		t.Fatalf("refused appends moved the head to %d", h)
	}
}

// A retry of a committed conditional append is answered from the stored
// events even when its condition's stream has moved since.
func testAppendIfIdempotent(t *testing.T, open Factory, _ Options) {
	s := conditional(t, open)
	ctx := ctxT(t)
	mustAppend(t, s, "payee", eventstore.NoStream, evs(1))
	batch := evs(2)
	conds := []eventstore.Condition{{Stream: "payee", Version: 1}}
	first, err := s.AppendIf(ctx, "payer", eventstore.NoStream, batch, conds)
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, "payee", 1, evs(1))
	again, err := s.AppendIf(ctx, "payer", eventstore.NoStream, batch, conds)
	if err != nil {
		t.Fatalf("retry of a committed append: %v", err)
	}
	requireSameEvents(t, "retry", again.Events, first.Events)
	if h := head(t, s); h != 4 {
		t.Fatalf("head %d after the retry, want 4", h)
	}
}

func testAppendIfInvalid(t *testing.T, open Factory, _ Options) {
	s := conditional(t, open)
	ctx := ctxT(t)
	many := make([]eventstore.Condition, eventstore.MaxConditions+1)
	for i := range many {
		many[i] = eventstore.Condition{Stream: fmt.Sprintf("s-%d", i)}
	}
	for name, conds := range map[string][]eventstore.Condition{
		"own stream":       {{Stream: "payer", Version: 0}},
		"negative version": {{Stream: "payee", Version: -1}},
		"empty name":       {{Stream: "", Version: 0}},
		"long name":        {{Stream: strings.Repeat("x", 201), Version: 0}},
		"too many":         many,
	} {
		_, err := s.AppendIf(ctx, "payer", eventstore.NoStream, evs(1), conds)
		requireErr(t, name, err, eventstore.ErrInvalidAppend)
	}
	if h := head(t, s); h != 0 {
		t.Fatalf("invalid appends moved the head to %d", h)
	}
}

// testAppendIfRace races, round after round, an append to one stream (a
// suspension of the payee) with an append to another conditioned on the
// first's version (a payment to it): whatever the interleaving, a payment
// that commits comes before the suspension in the log, and one refused
// would have come after it.
func testAppendIfRace(t *testing.T, open Factory, _ Options) {
	s := conditional(t, open)
	ConditionRace(t, s, s)
}

// ConditionRace is testAppendIfRace with the suspensions appended through
// one store and the payments through another of the same log (two nodes).
func ConditionRace(t *testing.T, suspender eventstore.Store, payer eventstore.ConditionalStore) {
	ctx := ctxT(t)
	const rounds = 40
	paidBefore, refused := 0, 0
	for round := range rounds {
		payee, payerStream := fmt.Sprintf("payee-%d", round), fmt.Sprintf("payer-%d", round)
		mustAppend(t, suspender, payee, eventstore.NoStream, evs(1))
		start := make(chan struct{})
		var wg sync.WaitGroup
		var suspended, paid eventstore.AppendResult
		var suspendErr, payErr error
		wg.Add(2)
		go func() {
			defer wg.Done()
			<-start
			suspended, suspendErr = suspender.Append(ctx, payee, 1, evs(1))
		}()
		go func() {
			defer wg.Done()
			<-start
			paid, payErr = payer.AppendIf(ctx, payerStream, eventstore.NoStream, evs(1), []eventstore.Condition{{Stream: payee, Version: 1}})
		}()
		close(start)
		wg.Wait()
		if suspendErr != nil {
			t.Fatalf("round %d: suspension: %v", round, suspendErr)
		}
		switch {
		case payErr == nil:
			if paid.LastPosition() >= suspended.LastPosition() {
				t.Fatalf("round %d: the payment committed at position %d, after the suspension at %d", round, paid.LastPosition(), suspended.LastPosition())
			}
			paidBefore++
		case errors.Is(payErr, eventstore.ErrConditionFailed):
			if v := streamVersion(t, payer, payerStream); v != 0 {
				t.Fatalf("round %d: a refused payment left its stream at version %d", round, v)
			}
			refused++
		default:
			t.Fatalf("round %d: payment: %v", round, payErr)
		}
	}
	t.Logf("%d rounds: %d payments committed before the suspension, %d refused after it", rounds, paidBefore, refused)
}
