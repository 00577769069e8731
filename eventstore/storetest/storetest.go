// Package storetest is the conformance suite every eventstore.Store adapter
// must pass, so that the embedded, postgres and kurrent adapters are
// interchangeable behind the port.
//
// An adapter's test calls Run (or RunWithOptions) with a Factory:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t testing.TB, dir string) eventstore.Store { ... })
//	}
//
// Decisions the suite pins down where the port leaves room:
//   - Re-appending an id that is already stored with other content, in
//     another stream or at another place fails with an error wrapping
//     eventstore.ErrIDReused (not ErrVersionConflict), and stores nothing.
//   - Positions are gap-free (1, 2, 3, ...): adapters that cannot promise
//     this must relax the suite, not silently skip the check.
//   - Subscribe on a closed store, or a subscription whose store is closed,
//     ends with an error wrapping eventstore.ErrClosed.
//
// It imports only the eventstore port: never an adapter, so that each
// adapter's tests can import it.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/payledger/payledger/eventstore"
)

// Factory opens a store whose files live in dir; opening the same dir again
// must see earlier commits. It should fail t itself when it cannot open.
type Factory func(t testing.TB, dir string) eventstore.Store

// Options holds adapter-specific hooks for cases the port cannot express.
type Options struct {
	// Tamper tries to delete and rewrite stored events behind the port (for
	// example with raw SQL) and returns the error it got. The retention case
	// (R2) requires an error wrapping eventstore.ErrDeleteForbidden and every
	// event intact afterwards. Nil skips the case.
	Tamper func(t testing.TB, s eventstore.Store) error
}

// testCase is one named conformance check.
type testCase struct {
	name string
	run  func(t *testing.T, open Factory, opts Options)
}

// Run executes the whole suite without adapter-specific hooks.
func Run(t *testing.T, open Factory) {
	RunWithOptions(t, open, Options{})
}

// RunWithOptions executes the whole suite; each case gets its own directory.
func RunWithOptions(t *testing.T, open Factory, opts Options) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t, open, opts)
		})
	}
}

var cases = []testCase{
	{"AppendNoStream", testAppendNoStream},
	{"AppendAny", testAppendAny},
	{"AppendExactVersion", testAppendExactVersion},
	{"NoStreamOnExistingConflicts", testNoStreamOnExistingConflicts},
	{"WrongExactVersionConflicts", testWrongExactVersionConflicts},
	{"VersionsAndPositions", testVersionsAndPositions},
	{"HashChain", testHashChain},
	{"IdempotentReappend", testIdempotentReappend},
	{"IDReuseRejected", testIDReuseRejected},
	{"InvalidAppends", testInvalidAppends},
	{"ReadStreamForward", testReadStreamForward},
	{"ReadStreamBackward", testReadStreamBackward},
	{"ReadAll", testReadAll},
	{"SubscribeCatchUpThenLive", testSubscribeCatchUpThenLive},
	{"SubscribeFromMiddle", testSubscribeFromMiddle},
	{"SubscribeHandlerError", testSubscribeHandlerError},
	{"SubscribeCancel", testSubscribeCancel},
	{"SubscribeClose", testSubscribeClose},
	{"ConcurrentAppends", testConcurrentAppends},
	{"ConcurrentSameExpectedVersion", testConcurrentSameExpectedVersion},
	{"Durability", testDurability},
	{"RoundTrip", testRoundTrip},
	{"Closed", testClosed},
	{"Retention", testRetention},
	{"Snapshots", testSnapshots},
	{"AppendIfMet", testAppendIfMet},
	{"AppendIfNotMet", testAppendIfNotMet},
	{"AppendIfIdempotent", testAppendIfIdempotent},
	{"AppendIfInvalid", testAppendIfInvalid},
	{"AppendIfRace", testAppendIfRace},
}

// waitTimeout bounds every wait in the suite so a broken adapter fails
// instead of hanging the test binary.
const waitTimeout = 20 * time.Second

// --- helpers ---

// openStore opens a store in a fresh directory and closes it after the test.
func openStore(t *testing.T, open Factory) eventstore.Store {
	t.Helper()
	s := open(t, t.TempDir())
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// ctxT returns a context bounded by waitTimeout, cancelled after the test.
func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

// ev returns a new event with a fresh ULID and a payload naming it.
func ev(typ string) eventstore.EventData {
	id := ulid.Make().String()
	return eventstore.EventData{
		ID:            id,
		Type:          typ,
		SchemaVersion: 1,
		OccurredAt:    time.Now(),
		Payload:       fmt.Appendf(nil, `{"id":%q}`, id),
	}
}

// evs returns n new events.
func evs(n int) []eventstore.EventData {
	out := make([]eventstore.EventData, n)
	for i := range out {
		out[i] = ev("Tested")
	}
	return out
}

// mustAppend appends and fails the test on error.
func mustAppend(t testing.TB, s eventstore.Store, stream string, expected int64, events []eventstore.EventData) eventstore.AppendResult {
	t.Helper()
	res, err := s.Append(context.Background(), stream, expected, events)
	if err != nil {
		t.Fatalf("append %d events to %s expecting %d: %v", len(events), stream, expected, err)
	}
	if len(res.Events) != len(events) {
		t.Fatalf("append to %s returned %d events, want %d", stream, len(res.Events), len(events))
	}
	for i, e := range res.Events {
		if e.ID != events[i].ID || e.Stream != stream {
			t.Fatalf("append result %d is %s in %s, want %s in %s", i, e.ID, e.Stream, events[i].ID, stream)
		}
	}
	return res
}

// readStream reads a whole stream forwards, in bounded pages.
func readStream(t testing.TB, s eventstore.Store, stream string) []eventstore.Event {
	t.Helper()
	var out []eventstore.Event
	from := int64(1)
	for range 10000 {
		page, err := s.ReadStream(context.Background(), stream, from, 500)
		if err != nil {
			t.Fatalf("read stream %s from %d: %v", stream, from, err)
		}
		if len(page) == 0 {
			return out
		}
		out = append(out, page...)
		from = page[len(page)-1].Version + 1
	}
	t.Fatalf("read stream %s: too many pages", stream)
	return nil
}

// readAll reads the whole global log, in bounded pages.
func readAll(t testing.TB, s eventstore.Store) []eventstore.Event {
	t.Helper()
	var out []eventstore.Event
	after := int64(0)
	for range 10000 {
		page, err := s.ReadAll(context.Background(), after, 500)
		if err != nil {
			t.Fatalf("read all after %d: %v", after, err)
		}
		if len(page) == 0 {
			return out
		}
		out = append(out, page...)
		after = page[len(page)-1].Position
	}
	t.Fatalf("read all: too many pages")
	return nil
}

// head returns Head or fails.
func head(t testing.TB, s eventstore.Store) int64 {
	t.Helper()
	h, err := s.Head(context.Background())
	if err != nil {
		t.Fatalf("head: %v", err)
	}
	return h
}

// streamVersion returns StreamVersion or fails.
func streamVersion(t testing.TB, s eventstore.Store, stream string) int64 {
	t.Helper()
	v, err := s.StreamVersion(context.Background(), stream)
	if err != nil {
		t.Fatalf("stream version %s: %v", stream, err)
	}
	return v
}

// diffEvent describes how two events differ, or returns "" when they are
// identical (OccurredAt compared as an instant and required to be UTC).
func diffEvent(got, want eventstore.Event) string {
	switch {
	case got.ID != want.ID:
		return fmt.Sprintf("id %s, want %s", got.ID, want.ID)
	case got.Stream != want.Stream || got.Version != want.Version || got.Position != want.Position:
		return fmt.Sprintf("%s v%d @%d, want %s v%d @%d", got.Stream, got.Version, got.Position, want.Stream, want.Version, want.Position)
	case got.Type != want.Type || got.SchemaVersion != want.SchemaVersion:
		return fmt.Sprintf("type %s/%d, want %s/%d", got.Type, got.SchemaVersion, want.Type, want.SchemaVersion)
	case !got.OccurredAt.Equal(want.OccurredAt) || got.OccurredAt.Location() != time.UTC:
		return fmt.Sprintf("occurred at %v, want %v in UTC", got.OccurredAt, want.OccurredAt)
	case got.CausationID != want.CausationID || got.CorrelationID != want.CorrelationID || got.IdempotencyKey != want.IdempotencyKey:
		return fmt.Sprintf("causation/correlation/idempotency %q/%q/%q, want %q/%q/%q",
			got.CausationID, got.CorrelationID, got.IdempotencyKey, want.CausationID, want.CorrelationID, want.IdempotencyKey)
	case !bytes.Equal(got.Payload, want.Payload):
		return fmt.Sprintf("payload %q, want %q", got.Payload, want.Payload)
	case got.PrevHash != want.PrevHash || got.Hash != want.Hash:
		return "hashes differ"
	}
	return ""
}

// requireSameEvents fails unless got and want hold identical events.
func requireSameEvents(t testing.TB, what string, got, want []eventstore.Event) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d events, want %d", what, len(got), len(want))
	}
	for i := range got {
		if d := diffEvent(got[i], want[i]); d != "" {
			t.Fatalf("%s: event %d: %s", what, i, d)
		}
	}
}

// requireVersions fails unless events are versions from, from+1, ...
func requireVersions(t testing.TB, what string, events []eventstore.Event, from ...int64) {
	t.Helper()
	want := int64(1)
	if len(from) > 0 {
		want = from[0]
	}
	for i, e := range events {
		if e.Version != want+int64(i) {
			t.Fatalf("%s: event %d has version %d, want %d", what, i, e.Version, want+int64(i))
		}
	}
}

// requireErr fails unless err wraps target.
func requireErr(t testing.TB, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want one wrapping %v", what, err, target)
	}
}

// requireChain fails unless the stream's events form an intact hash chain
// whose hashes are the ones ComputeHash gives.
func requireChain(t testing.TB, events []eventstore.Event) {
	t.Helper()
	var prev [32]byte
	for i, e := range events {
		if e.PrevHash != prev {
			t.Fatalf("%s v%d: PrevHash is not the previous event's Hash", e.Stream, e.Version)
		}
		if i == 0 && e.PrevHash != ([32]byte{}) {
			t.Fatalf("%s v1: PrevHash is not zero", e.Stream)
		}
		if want := eventstore.ComputeHash(e.PrevHash, e.Stream, e.Version, e.EventData); e.Hash != want {
			t.Fatalf("%s v%d: Hash differs from ComputeHash", e.Stream, e.Version)
		}
		prev = e.Hash
	}
	if _, err := eventstore.VerifyChain([32]byte{}, events); err != nil {
		t.Fatalf("VerifyChain: %v", err)
	}
}

// --- append ---

func testAppendNoStream(t *testing.T, open Factory, _ Options) {
	s := openStore(t, open)
	in := evs(2)
	res := mustAppend(t, s, "acc-1", eventstore.NoStream, in)
	requireVersions(t, "result", res.Events)
	if res.LastVersion() != 2 || res.LastPosition() != 2 {
		t.Fatalf("last version/position %d/%d, want 2/2", res.LastVersion(), res.LastPosition())
	}
	requireSameEvents(t, "read back", readStream(t, s, "acc-1"), res.Events)
}

func testAppendAny(t *testing.T, open Factory, _ Options) {
	s := openStore(t, open)
	r1 := mustAppend(t, s, "acc-1", eventstore.Any, evs(2))
	r2 := mustAppend(t, s, "acc-1", eventstore.Any, evs(3))
	requireVersions(t, "first", r1.Events, 1)
	requireVersions(t, "second", r2.Events, 3)
	if v := streamVersion(t, s, "acc-1"); v != 5 {
		t.Fatalf("stream version %d, want 5", v)
	}
}

func testAppendExactVersion(t *testing.T, open Factory, _ Options) {
	s := openStore(t, open)
	mustAppend(t, s, "acc-1", eventstore.NoStream, evs(1))
	r := mustAppend(t, s, "acc-1", 1, evs(2))
	requireVersions(t, "at 1", r.Events, 2)
	r = mustAppend(t, s, "acc-1", 3, evs(1))
	requireVersions(t, "at 3", r.Events, 4)
	requireVersions(t, "stream", readStream(t, s, "acc-1"))
	if v := streamVersion(t, s, "acc-1"); v != 4 {
		t.Fatalf("stream version %d, want 4", v)
	}
}

func testNoStreamOnExistingConflicts(t *testing.T, open Factory, _ Options) {
	s := openStore(t, open)
	mustAppend(t, s, "acc-1", eventstore.NoStream, evs(2))
	in := evs(2)
	_, err := s.Append(ctxT(t), "acc-1", eventstore.NoStream, in)
	requireErr(t, "NoStream on existing stream", err, eventstore.ErrVersionConflict)
	if v := streamVersion(t, s, "acc-1"); v != 2 {
		t.Fatalf("stream version %d after conflict, want 2", v)
	}
	if h := head(t, s); h != 2 {
		t.Fatalf("head %d after conflict, want 2", h)
	}
	for _, e := range readAll(t, s) {
		if e.ID == in[0].ID || e.ID == in[1].ID {
			t.Fatalf("conflicting event %s was stored", e.ID)
		}
	}
}

func testWrongExactVersionConflicts(t *testing.T, open Factory, _ Options) {
	s := openStore(t, open)
	mustAppend(t, s, "acc-1", eventstore.NoStream, evs(2))
	for _, expected := range []int64{1, 3, 10} {
		_, err := s.Append(ctxT(t), "acc-1", expected, evs(1))
		requireErr(t, fmt.Sprintf("expected %d at version 2", expected), err, eventstore.ErrVersionConflict)
	}
	_, err := s.Append(ctxT(t), "missing", 1, evs(1))
	requireErr(t, "expected 1 on missing stream", err, eventstore.ErrVersionConflict)
	if h := head(t, s); h != 2 {
		t.Fatalf("head %d after conflicts, want 2", h)
	}
	if v := streamVersion(t, s, "missing"); v != 0 {
		t.Fatalf("missing stream has version %d", v)
	}
}

func testVersionsAndPositions(t *testing.T, open Factory, _ Options) {
	s := openStore(t, open)
	if h := head(t, s); h != 0 {
		t.Fatalf("head of empty store %d, want 0", h)
	}
	streams := []string{"a", "b", "c"}
	var want []eventstore.Event
	for round := range 4 {
		for _, st := range streams {
			r := mustAppend(t, s, st, eventstore.Any, evs(1+round%2))
			want = append(want, r.Events...)
		}
	}
	all := readAll(t, s)
	requireSameEvents(t, "global log vs append results", all, want)
	for i, e := range all {
		if e.Position != int64(i+1) {
			t.Fatalf("event %d has position %d, want %d (gap-free from 1)", i, e.Position, i+1)
		}
	}
	if h := head(t, s); h != int64(len(all)) {
		t.Fatalf("head %d, want %d", h, len(all))
	}
	for _, st := range streams {
		events := readStream(t, s, st)
		requireVersions(t, st, events)
		if v := streamVersion(t, s, st); v != int64(len(events)) || v != 6 {
			t.Fatalf("stream %s version %d, %d events, want 6", st, v, len(events))
		}
	}
}

func testHashChain(t *testing.T, open Factory, _ Options) {
	s := openStore(t, open)
	var results []eventstore.Event
	for i := range 4 {
		r := mustAppend(t, s, "acc-1", int64(i*(i+1)/2), evs(i+1))
		results = append(results, r.Events...)
		mustAppend(t, s, "other", eventstore.Any, evs(1)) // interleave another stream
	}
	events := readStream(t, s, "acc-1")
	requireSameEvents(t, "read vs append results", events, results)
	requireChain(t, events)
	requireChain(t, readStream(t, s, "other"))

	tampered := append([]eventstore.Event(nil), events...)
	tampered[5].Payload = []byte(`{"amount":"1000000"}`)
	if _, err := eventstore.VerifyChain([32]byte{}, tampered); err == nil {
		t.Fatal("VerifyChain accepted a changed payload")
	}
	if _, err := eventstore.VerifyChain([32]byte{}, events); err != nil {
		t.Fatalf("tampering a copy changed the stored events: %v", err)
	}
}

func testIdempotentReappend(t *testing.T, open Factory, _ Options) {
	s := openStore(t, open)
	ctx := ctxT(t)
	mustAppend(t, s, "other", eventstore.NoStream, evs(1))
	batch := evs(3)
	orig := mustAppend(t, s, "acc-1", eventstore.NoStream, batch)

	again, err := s.Append(ctx, "acc-1", eventstore.NoStream, batch)
	if err != nil {
		t.Fatalf("re-append with the same expected version: %v", err)
	}
	requireSameEvents(t, "re-append result", again.Events, orig.Events)
	again, err = s.Append(ctx, "acc-1", eventstore.Any, batch)
	if err != nil {
		t.Fatalf("re-append with Any: %v", err)
	}
	requireSameEvents(t, "re-append with Any", again.Events, orig.Events)

	// Still idempotent after the stream moved on.
	later := evs(2)
	origLater := mustAppend(t, s, "acc-1", 3, later)
	again, err = s.Append(ctx, "acc-1", eventstore.NoStream, batch)
	if err != nil {
		t.Fatalf("re-append after later appends: %v", err)
	}
	requireSameEvents(t, "re-append after later appends", again.Events, orig.Events)
	again, err = s.Append(ctx, "acc-1", 3, later)
	if err != nil {
		t.Fatalf("re-append of the later batch by exact version: %v", err)
	}
	requireSameEvents(t, "re-append of the later batch", again.Events, origLater.Events)
	if v := streamVersion(t, s, "acc-1"); v != 5 {
		t.Fatalf("stream version %d, want 5 (no duplicates)", v)
	}
	if h := head(t, s); h != 6 {
		t.Fatalf("head %d, want 6 (no duplicates)", h)
	}
	if n := len(readAll(t, s)); n != 6 {
		t.Fatalf("global log has %d events, want 6", n)
	}
}

func testIDReuseRejected(t *testing.T, open Factory, _ Options) {
	s := openStore(t, open)
	ctx := ctxT(t)
	a := ev("Opened")
	mustAppend(t, s, "acc-1", eventstore.NoStream, []eventstore.EventData{a})

	changed := a
	changed.Payload = []byte(`{"changed":true}`)
	_, err := s.Append(ctx, "acc-1", eventstore.NoStream, []eventstore.EventData{changed})
	requireErr(t, "same id, other payload, same place", err, eventstore.ErrIDReused)
	_, err = s.Append(ctx, "acc-1", eventstore.Any, []eventstore.EventData{changed})
	requireErr(t, "same id, other payload, Any", err, eventstore.ErrIDReused)
	_, err = s.Append(ctx, "acc-1", 1, []eventstore.EventData{a})
	requireErr(t, "same event at another version", err, eventstore.ErrIDReused)
	_, err = s.Append(ctx, "acc-2", eventstore.NoStream, []eventstore.EventData{a})
	requireErr(t, "same id in another stream", err, eventstore.ErrIDReused)
	_, err = s.Append(ctx, "acc-2", eventstore.Any, []eventstore.EventData{a})
	requireErr(t, "same id in another stream with Any", err, eventstore.ErrIDReused)
	fresh := ev("Deposited")
	_, err = s.Append(ctx, "acc-1", 1, []eventstore.EventData{fresh, a})
	requireErr(t, "batch mixing a new and a stored id", err, eventstore.ErrIDReused)

	all := readAll(t, s)
	if len(all) != 1 || all[0].ID != a.ID || !bytes.Equal(all[0].Payload, a.Payload) {
		t.Fatalf("log after rejected re-uses: %d events, want only the original", len(all))
	}
	if v := streamVersion(t, s, "acc-2"); v != 0 {
		t.Fatalf("acc-2 has version %d, want 0", v)
	}
}

func testInvalidAppends(t *testing.T, open Factory, _ Options) {
	s := openStore(t, open)
	ctx := ctxT(t)
	dup := ev("Dup")
	noID := ev("NoID")
	noID.ID = ""
	noType := ev("")
	bad := map[string]struct {
		stream   string
		expected int64
		events   []eventstore.EventData
	}{
		"nil batch":      {"acc-1", eventstore.Any, nil},
		"empty batch":    {"acc-1", eventstore.Any, []eventstore.EventData{}},
		"missing id":     {"acc-1", eventstore.Any, []eventstore.EventData{noID}},
		"missing type":   {"acc-1", eventstore.Any, []eventstore.EventData{noType}},
		"duplicate id":   {"acc-1", eventstore.Any, []eventstore.EventData{dup, dup}},
		"empty stream":   {"", eventstore.Any, evs(1)},
		"expected < Any": {"acc-1", -2, evs(1)},
		"too many":       {"acc-1", eventstore.Any, evs(eventstore.MaxAppendBatch + 1)},
	}
	for name, c := range bad {
		_, err := s.Append(ctx, c.stream, c.expected, c.events)
		requireErr(t, name, err, eventstore.ErrInvalidAppend)
	}
	if h := head(t, s); h != 0 {
		t.Fatalf("head %d after invalid appends, want 0", h)
	}
}

// --- reads ---

func testReadStreamForward(t *testing.T, open Factory, _ Options) {
	s := openStore(t, open)
	ctx := ctxT(t)
	mustAppend(t, s, "acc-1", eventstore.NoStream, evs(10))
	mustAppend(t, s, "acc-2", eventstore.NoStream, evs(2))
	check := func(from int64, limit int, wantFrom int64, wantN int) {
		t.Helper()
		got, err := s.ReadStream(ctx, "acc-1", from, limit)
		if err != nil {
			t.Fatalf("ReadStream(from %d, limit %d): %v", from, limit, err)
		}
		if len(got) != wantN {
			t.Fatalf("ReadStream(from %d, limit %d): %d events, want %d", from, limit, len(got), wantN)
		}
		requireVersions(t, fmt.Sprintf("ReadStream(from %d, limit %d)", from, limit), got, wantFrom)
		for _, e := range got {
			if e.Stream != "acc-1" {
				t.Fatalf("ReadStream returned an event of %s", e.Stream)
			}
		}
	}
	check(1, 3, 1, 3)
	check(0, 3, 1, 3)
	check(4, 100, 4, 7)
	check(10, 5, 10, 1)
	check(11, 5, 0, 0)
	got, err := s.ReadStream(ctx, "missing", 1, 10)
	if err != nil || len(got) != 0 {
		t.Fatalf("missing stream: %d events, error %v; want none and no error", len(got), err)
	}
}

func testReadStreamBackward(t *testing.T, open Factory, _ Options) {
	s := openStore(t, open)
	ctx := ctxT(t)
	mustAppend(t, s, "acc-1", eventstore.NoStream, evs(10))
	mustAppend(t, s, "acc-2", eventstore.NoStream, evs(2))
	check := func(from int64, limit int, want ...int64) {
		t.Helper()
		got, err := s.ReadStreamBackward(ctx, "acc-1", from, limit)
		if err != nil {
			t.Fatalf("ReadStreamBackward(from %d, limit %d): %v", from, limit, err)
		}
		if len(got) != len(want) {
			t.Fatalf("ReadStreamBackward(from %d, limit %d): %d events, want %d", from, limit, len(got), len(want))
		}
		for i, e := range got {
			if e.Version != want[i] || e.Stream != "acc-1" {
				t.Fatalf("ReadStreamBackward(from %d, limit %d): event %d is %s v%d, want acc-1 v%d",
					from, limit, i, e.Stream, e.Version, want[i])
			}
		}
	}
	check(0, 3, 10, 9, 8)
	check(-1, 1, 10)
	check(5, 2, 5, 4)
	check(2, 10, 2, 1)
	check(100, 2, 10, 9)
	got, err := s.ReadStreamBackward(ctx, "missing", 0, 10)
	if err != nil || len(got) != 0 {
		t.Fatalf("missing stream: %d events, error %v; want none and no error", len(got), err)
	}
}

func testReadAll(t *testing.T, open Factory, _ Options) {
	s := openStore(t, open)
	ctx := ctxT(t)
	var want []eventstore.Event
	for i := range 5 {
		for _, st := range []string{"x", "y", "z"} {
			want = append(want, mustAppend(t, s, st, eventstore.Any, evs(1+i%2)).Events...)
		}
	}
	total := int64(len(want))
	got, err := s.ReadAll(ctx, 0, 4)
	if err != nil {
		t.Fatalf("ReadAll(0, 4): %v", err)
	}
	requireSameEvents(t, "ReadAll(0, 4)", got, want[:4])
	streams := map[string]bool{}
	for _, e := range got {
		streams[e.Stream] = true
	}
	if len(streams) < 2 {
		t.Fatalf("ReadAll(0, 4) covered %d streams, want the interleaved ones", len(streams))
	}
	got, err = s.ReadAll(ctx, 4, 1000)
	if err != nil {
		t.Fatalf("ReadAll(4, 1000): %v", err)
	}
	requireSameEvents(t, "ReadAll(4, 1000)", got, want[4:])
	got, err = s.ReadAll(ctx, total-2, 1)
	if err != nil || len(got) != 1 || got[0].Position != total-1 {
		t.Fatalf("ReadAll(%d, 1): %d events (%v), want position %d", total-2, len(got), err, total-1)
	}
	got, err = s.ReadAll(ctx, total, 10)
	if err != nil || len(got) != 0 {
		t.Fatalf("ReadAll(head): %d events, error %v; want none", len(got), err)
	}
}

// --- subscribe ---

// Collector gathers the events delivered to a subscription, for this suite
// and for adapters' own subscription tests.
type Collector struct {
	mu     sync.Mutex
	events []eventstore.Event
	notify chan struct{}
}

// NewCollector returns an empty Collector.
func NewCollector() *Collector { return &Collector{notify: make(chan struct{}, 1)} }

// Fn is the subscription callback: it records e and wakes WaitFor.
func (c *Collector) Fn(e eventstore.Event) error {
	c.mu.Lock()
	c.events = append(c.events, e)
	c.mu.Unlock()
	select {
	case c.notify <- struct{}{}:
	default:
	}
	return nil
}

// Snapshot returns a copy of the events delivered so far.
func (c *Collector) Snapshot() []eventstore.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]eventstore.Event(nil), c.events...)
}

// WaitFor waits until at least n events arrived, or fails the test.
func (c *Collector) WaitFor(t testing.TB, n int) []eventstore.Event {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		if got := c.Snapshot(); len(got) >= n {
			return got
		}
		select {
		case <-c.notify:
		case <-deadline:
			t.Fatalf("subscription delivered %d events, want %d", len(c.Snapshot()), n)
		}
	}
}

// subscribe starts Subscribe in a goroutine; the returned channel yields
// its result.
func subscribe(ctx context.Context, s eventstore.Store, after int64, fn func(eventstore.Event) error) <-chan error {
	done := make(chan error, 1)
	go func() { done <- s.Subscribe(ctx, after, fn) }()
	return done
}

// waitResult waits for a subscription to end, or fails.
func waitResult(t testing.TB, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(waitTimeout):
		t.Fatal("Subscribe did not return")
		return nil
	}
}

func testSubscribeCatchUpThenLive(t *testing.T, open Factory, _ Options) {
	s := openStore(t, open)
	for i := range 20 {
		mustAppend(t, s, fmt.Sprintf("s-%d", i%3), eventstore.Any, evs(1+i%3))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := NewCollector()
	done := subscribe(ctx, s, 0, c.Fn)

	// Append more while the subscription catches up and goes live, from
	// several goroutines.
	var wg sync.WaitGroup
	for g := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				if _, err := s.Append(context.Background(), fmt.Sprintf("live-%d", g), eventstore.Any, evs(1+i%2)); err != nil {
					t.Errorf("live append: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	want := readAll(t, s)
	c.WaitFor(t, len(want))
	// Give a duplicate delivery a moment to show up.
	time.Sleep(20 * time.Millisecond)
	got := c.Snapshot()
	requireSameEvents(t, "delivered vs global log", got, want)
	for i, e := range got {
		if e.Position != int64(i+1) {
			t.Fatalf("delivery %d has position %d: not exactly once in order", i, e.Position)
		}
	}
	cancel()
	if err := waitResult(t, done); !errors.Is(err, context.Canceled) {
		t.Fatalf("Subscribe ended with %v, want context.Canceled", err)
	}
}

func testSubscribeFromMiddle(t *testing.T, open Factory, _ Options) {
	s := openStore(t, open)
	mustAppend(t, s, "a", eventstore.NoStream, evs(6))
	mustAppend(t, s, "b", eventstore.NoStream, evs(4))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := NewCollector()
	done := subscribe(ctx, s, 6, c.Fn)
	c.WaitFor(t, 4)
	mustAppend(t, s, "a", 6, evs(2))
	got := c.WaitFor(t, 6)
	requireSameEvents(t, "from the middle", got, readAll(t, s)[6:])
	cancel()
	if err := waitResult(t, done); !errors.Is(err, context.Canceled) {
		t.Fatalf("Subscribe ended with %v, want context.Canceled", err)
	}
}

func testSubscribeHandlerError(t *testing.T, open Factory, _ Options) {
	s := openStore(t, open)
	mustAppend(t, s, "a", eventstore.NoStream, evs(5))
	errStop := errors.New("handler stops")
	calls := 0
	err := waitResult(t, subscribe(ctxT(t), s, 0, func(e eventstore.Event) error {
		calls++
		if calls == 3 {
			return errStop
		}
		return nil
	}))
	if !errors.Is(err, errStop) {
		t.Fatalf("Subscribe ended with %v, want the handler's error", err)
	}
	if calls != 3 {
		t.Fatalf("handler called %d times, want 3", calls)
	}

	// The same from a live wait.
	c := NewCollector()
	done := subscribe(ctxT(t), s, 5, func(e eventstore.Event) error {
		_ = c.Fn(e)
		return errStop
	})
	mustAppend(t, s, "a", 5, evs(1))
	if err := waitResult(t, done); !errors.Is(err, errStop) {
		t.Fatalf("live Subscribe ended with %v, want the handler's error", err)
	}
	if got := c.Snapshot(); len(got) != 1 || got[0].Position != 6 {
		t.Fatalf("live handler saw %d events, want only position 6", len(got))
	}
}

func testSubscribeCancel(t *testing.T, open Factory, _ Options) {
	s := openStore(t, open)
	ctx, cancel := context.WithCancel(context.Background())
	c := NewCollector()
	done := subscribe(ctx, s, 0, c.Fn)
	time.Sleep(20 * time.Millisecond) // let it reach the live wait
	cancel()
	if err := waitResult(t, done); !errors.Is(err, context.Canceled) {
		t.Fatalf("Subscribe ended with %v, want context.Canceled", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if err := waitResult(t, subscribe(ctx, s, 0, c.Fn)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Subscribe ended with %v, want context.DeadlineExceeded", err)
	}
	if n := len(c.Snapshot()); n != 0 {
		t.Fatalf("empty store delivered %d events", n)
	}
}

func testSubscribeClose(t *testing.T, open Factory, _ Options) {
	s := open(t, t.TempDir())
	mustAppend(t, s, "a", eventstore.NoStream, evs(2))
	c := NewCollector()
	done := subscribe(ctxT(t), s, 0, c.Fn)
	c.WaitFor(t, 2)
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := waitResult(t, done); !errors.Is(err, eventstore.ErrClosed) {
		t.Fatalf("Subscribe ended with %v when the store closed, want ErrClosed", err)
	}
	if err := waitResult(t, subscribe(ctxT(t), s, 0, c.Fn)); !errors.Is(err, eventstore.ErrClosed) {
		t.Fatalf("Subscribe on a closed store returned %v, want ErrClosed", err)
	}
}

// --- concurrency ---

func testConcurrentAppends(t *testing.T, open Factory, _ Options) {
	const (
		goroutines = 32
		perG       = 50
		streams    = 20
		maxTries   = 100
	)
	s := openStore(t, open)
	ctx := ctxT(t)
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perG {
				stream := fmt.Sprintf("acc-%02d", (g*perG+i)%streams)
				batch := []eventstore.EventData{ev("Concurrent")}
				var err error
				for range maxTries {
					var v int64
					if v, err = s.StreamVersion(ctx, stream); err != nil {
						break
					}
					if _, err = s.Append(ctx, stream, v, batch); !errors.Is(err, eventstore.ErrVersionConflict) {
						break
					}
				}
				if err != nil {
					errs <- fmt.Errorf("goroutine %d append %d to %s: %w", g, i, stream, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}

	const total = goroutines * perG
	all := readAll(t, s)
	if len(all) != total {
		t.Fatalf("global log has %d events, want %d", len(all), total)
	}
	ids := make(map[string]bool, total)
	for i, e := range all {
		if e.Position != int64(i+1) {
			t.Fatalf("event %d has position %d, want %d", i, e.Position, i+1)
		}
		if ids[e.ID] {
			t.Fatalf("event id %s stored twice", e.ID)
		}
		ids[e.ID] = true
	}
	if h := head(t, s); h != total {
		t.Fatalf("head %d, want %d", h, total)
	}
	sum := 0
	for i := range streams {
		stream := fmt.Sprintf("acc-%02d", i)
		events := readStream(t, s, stream)
		requireVersions(t, stream, events)
		requireChain(t, events)
		if v := streamVersion(t, s, stream); v != int64(len(events)) {
			t.Fatalf("%s: version %d but %d events", stream, v, len(events))
		}
		sum += len(events)
	}
	if sum != total {
		t.Fatalf("streams hold %d events, want %d", sum, total)
	}
}

func testConcurrentSameExpectedVersion(t *testing.T, open Factory, _ Options) {
	const racers = 16
	s := openStore(t, open)
	ctx := ctxT(t)
	for _, expected := range []int64{eventstore.NoStream, 1, 2} {
		start := make(chan struct{})
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins, conflicts := 0, 0
		for range racers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, err := s.Append(ctx, "contended", expected, evs(1))
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					wins++
				case errors.Is(err, eventstore.ErrVersionConflict):
					conflicts++
				default:
					t.Errorf("append expecting %d: %v", expected, err)
				}
			}()
		}
		close(start)
		wg.Wait()
		if wins != 1 || conflicts != racers-1 {
			t.Fatalf("expecting %d: %d wins and %d conflicts, want 1 and %d", expected, wins, conflicts, racers-1)
		}
		if v := streamVersion(t, s, "contended"); v != expected+1 {
			t.Fatalf("stream version %d, want %d", v, expected+1)
		}
	}
	requireChain(t, readStream(t, s, "contended"))
}

// --- durability and fidelity ---

func testDurability(t *testing.T, open Factory, _ Options) {
	dir := t.TempDir()
	s := open(t, dir)
	batch := evs(3)
	mustAppend(t, s, "acc-1", eventstore.NoStream, batch)
	mustAppend(t, s, "acc-2", eventstore.NoStream, evs(2))
	mustAppend(t, s, "acc-1", 3, evs(1))
	before := readAll(t, s)
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	s = open(t, dir)
	t.Cleanup(func() { _ = s.Close() })
	requireSameEvents(t, "after reopen", readAll(t, s), before)
	if h := head(t, s); h != 6 {
		t.Fatalf("head after reopen %d, want 6", h)
	}
	if v := streamVersion(t, s, "acc-1"); v != 4 {
		t.Fatalf("acc-1 version after reopen %d, want 4", v)
	}
	// The writer must know the streams' versions and hashes after reopen.
	again, err := s.Append(ctxT(t), "acc-1", eventstore.NoStream, batch)
	if err != nil {
		t.Fatalf("idempotent re-append after reopen: %v", err)
	}
	requireSameEvents(t, "idempotent re-append after reopen", again.Events, before[:3])
	_, err = s.Append(ctxT(t), "acc-1", 3, evs(1))
	requireErr(t, "stale version after reopen", err, eventstore.ErrVersionConflict)
	r := mustAppend(t, s, "acc-1", 4, evs(2))
	requireVersions(t, "continued", r.Events, 5)
	if r.Events[0].Position != 7 || r.Events[1].Position != 8 {
		t.Fatalf("positions after reopen %d, %d; want 7, 8", r.Events[0].Position, r.Events[1].Position)
	}
	if r.Events[0].PrevHash != before[5].Hash {
		t.Fatal("first event after reopen does not chain to the last stored one")
	}
	requireChain(t, readStream(t, s, "acc-1"))
	r = mustAppend(t, s, "acc-2", 2, evs(1))
	requireChain(t, readStream(t, s, "acc-2"))
	if r.Events[0].Position != 9 {
		t.Fatalf("position %d, want 9", r.Events[0].Position)
	}
}

func testRoundTrip(t *testing.T, open Factory, _ Options) {
	dir := t.TempDir()
	s := open(t, dir)
	zone := time.FixedZone("UTC+5:30", 5*3600+1800)
	in := []eventstore.EventData{
		{
			ID: ulid.Make().String(), Type: "PaymentConfirmed", SchemaVersion: 3,
			OccurredAt:     time.Date(2031, 7, 14, 23, 59, 58, 123456789, zone),
			CausationID:    "cause-" + ulid.Make().String(),
			CorrelationID:  "corr-" + ulid.Make().String(),
			IdempotencyKey: "client-key-42",
			Payload:        []byte(`{"amount":"12.34","currency":"EUR","note":"caf\u00e9 \"q\""}`),
		},
		{
			ID: ulid.Make().String(), Type: "Binary", SchemaVersion: 1,
			OccurredAt: time.Date(1999, 12, 31, 23, 59, 59, 1, time.UTC),
			Payload:    []byte{0, 1, 2, 0xff, 0xfe, '\n', 0, 'x', 0x80},
		},
		{
			ID: ulid.Make().String(), Type: "Whole", SchemaVersion: 1,
			OccurredAt: time.Now().Round(time.Second), // monotonic reading, no fraction
			Payload:    []byte(`{}`),
		},
	}
	res := mustAppend(t, s, "rt", eventstore.NoStream, in)
	check := func(what string, got []eventstore.Event) {
		t.Helper()
		if len(got) != len(in) {
			t.Fatalf("%s: %d events, want %d", what, len(got), len(in))
		}
		for i, e := range got {
			d := in[i]
			switch {
			case !e.OccurredAt.Equal(d.OccurredAt) || e.OccurredAt.Location() != time.UTC ||
				e.OccurredAt.Nanosecond() != d.OccurredAt.Nanosecond():
				t.Fatalf("%s %d: occurred at %v (%v), want %v in UTC", what, i, e.OccurredAt, e.OccurredAt.Location(), d.OccurredAt.UTC())
			case !bytes.Equal(e.Payload, d.Payload):
				t.Fatalf("%s %d: payload %q, want %q", what, i, e.Payload, d.Payload)
			case e.CausationID != d.CausationID || e.CorrelationID != d.CorrelationID || e.IdempotencyKey != d.IdempotencyKey:
				t.Fatalf("%s %d: causation/correlation/idempotency key differ", what, i)
			case e.Type != d.Type || e.SchemaVersion != d.SchemaVersion || e.ID != d.ID:
				t.Fatalf("%s %d: id/type/schema version differ", what, i)
			}
		}
		requireChain(t, got)
	}
	check("append result", res.Events)
	check("read stream", readStream(t, s, "rt"))
	check("read all", readAll(t, s))
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	s = open(t, dir)
	t.Cleanup(func() { _ = s.Close() })
	check("after reopen", readStream(t, s, "rt"))
}

func testClosed(t *testing.T, open Factory, _ Options) {
	s := open(t, t.TempDir())
	mustAppend(t, s, "a", eventstore.NoStream, evs(1))
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	_, err := s.Append(context.Background(), "a", 1, evs(1))
	requireErr(t, "append after close", err, eventstore.ErrClosed)
	if err := s.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

func testRetention(t *testing.T, open Factory, opts Options) {
	if opts.Tamper == nil {
		t.Skip("no Tamper hook: the adapter cannot be attacked behind the port")
	}
	s := openStore(t, open)
	mustAppend(t, s, "acc-1", eventstore.NoStream, evs(3))
	mustAppend(t, s, "acc-2", eventstore.NoStream, evs(2))
	before := readAll(t, s)
	err := opts.Tamper(t, s)
	requireErr(t, "tampering with stored events", err, eventstore.ErrDeleteForbidden)
	requireSameEvents(t, "events after tampering", readAll(t, s), before)
	requireChain(t, readStream(t, s, "acc-1"))
	// The store keeps working.
	mustAppend(t, s, "acc-1", 3, evs(1))
}

// testSnapshots: a stream's latest snapshot comes back as saved, an older
// one never replaces it, a missing one is not an error, an invalid one is
// refused, snapshots survive a reopen, and a closed store refuses both.
func testSnapshots(t *testing.T, open Factory, _ Options) {
	dir := t.TempDir()
	s := open(t, dir)
	ctx := ctxT(t)
	res := mustAppend(t, s, "acc-1", eventstore.NoStream, evs(5))
	snap := func(v int64, payload string) eventstore.Snapshot {
		return eventstore.Snapshot{Stream: "acc-1", Version: v, EventHash: res.Events[v-1].Hash, Schema: 3, Payload: []byte(payload)}
	}
	if _, ok, err := s.LoadSnapshot(ctx, "acc-1"); ok || err != nil {
		t.Fatalf("load before any save: ok %v, err %v", ok, err)
	}
	for _, sv := range []eventstore.Snapshot{snap(3, `{"at":3}`), snap(2, `{"at":2}`)} {
		if err := s.SaveSnapshot(ctx, sv); err != nil {
			t.Fatalf("save at %d: %v", sv.Version, err)
		}
	}
	check := func(what string, s eventstore.Store, want eventstore.Snapshot) {
		t.Helper()
		got, ok, err := s.LoadSnapshot(ctx, "acc-1")
		if err != nil || !ok || got.Version != want.Version || got.EventHash != want.EventHash || got.Schema != want.Schema ||
			!bytes.Equal(got.Payload, want.Payload) || got.Stream != want.Stream {
			t.Fatalf("%s: %+v ok %v err %v, want %+v", what, got, ok, err, want)
		}
	}
	check("the later of two", s, snap(3, `{"at":3}`))
	if err := s.SaveSnapshot(ctx, snap(5, `{"at":5}`)); err != nil {
		t.Fatal(err)
	}
	check("a newer one", s, snap(5, `{"at":5}`))
	for _, bad := range []eventstore.Snapshot{{Version: 1, Payload: []byte("x")}, {Stream: "acc-1", Payload: []byte("x")}, {Stream: "acc-1", Version: 1}} {
		if err := s.SaveSnapshot(ctx, bad); err == nil {
			t.Errorf("saved the invalid snapshot %+v", bad)
		}
	}
	if _, ok, err := s.LoadSnapshot(ctx, "acc-2"); ok || err != nil {
		t.Fatalf("another stream: ok %v, err %v", ok, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.LoadSnapshot(ctx, "acc-1"); !errors.Is(err, eventstore.ErrClosed) {
		t.Errorf("load from a closed store: %v", err)
	}
	if err := s.SaveSnapshot(ctx, snap(5, "x")); !errors.Is(err, eventstore.ErrClosed) {
		t.Errorf("save to a closed store: %v", err)
	}
	again := open(t, dir)
	t.Cleanup(func() { _ = again.Close() })
	check("after reopen", again, snap(5, `{"at":5}`))
}
