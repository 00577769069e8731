package sqlite

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/payledger/payledger/eventstore"
)

// randomEvent builds an event with every field set from r, including empty
// and non-ASCII strings, no payload, and payloads past segmentMaxBytes.
func randomEvent(r *rand.Rand, pos int64) eventstore.Event {
	str := func() string {
		const alphabet = "abcXYZ019-_:/ é€\x00\"\\"
		var b strings.Builder
		for range r.IntN(40) {
			b.WriteString(string([]rune(alphabet)[r.IntN(len([]rune(alphabet)))]))
		}
		return b.String()
	}
	e := eventstore.Event{
		EventData: eventstore.EventData{
			ID: str() + "id", Type: str() + "T", SchemaVersion: 1 + r.IntN(5),
			OccurredAt:  time.Unix(r.Int64N(1<<38)-1<<37, r.Int64N(1e9)).UTC(),
			CausationID: str(), CorrelationID: str(), IdempotencyKey: str(),
		},
		Stream: "s" + str(), Version: 1 + r.Int64N(1<<40), Position: pos,
	}
	switch r.IntN(4) {
	case 0: // no payload
	case 1:
		e.Payload = make([]byte, segmentMaxBytes+r.IntN(5000))
	default:
		e.Payload = make([]byte, 1+r.IntN(600))
	}
	for i := range e.Payload {
		e.Payload[i] = byte(r.IntN(256))
	}
	for i := range 32 {
		e.PrevHash[i], e.Hash[i] = byte(r.IntN(256)), byte(r.IntN(256))
	}
	return e
}

// TestSegmentRoundTrip encodes random runs of events into segments, closing
// each as the writer does, and decodes every event back equal.
func TestSegmentRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var b segmentBuilder
	var buf []byte
	pos := int64(1)
	segments := 0
	check := func(want []eventstore.Event) {
		t.Helper()
		buf = b.bytes(buf)
		if len(buf) > segmentMaxBytes && len(want) > 1 {
			t.Fatalf("segment of %d events has %d bytes, over %d", len(want), len(buf), segmentMaxBytes)
		}
		seg, err := parseSegment(b.first, buf)
		if err != nil {
			t.Fatal(err)
		}
		if seg.n != len(want) || seg.last() != want[len(want)-1].Position {
			t.Fatalf("segment holds %d events up to %d, want %d up to %d", seg.n, seg.last(), len(want), want[len(want)-1].Position)
		}
		for i, w := range want {
			got, err := seg.at(i)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, w) {
				t.Fatalf("event %d:\n got %+v\nwant %+v", i, got, w)
			}
		}
		segments++
		b.reset()
	}
	for range 200 {
		var want []eventstore.Event
		for range 1 + r.IntN(150) {
			e := randomEvent(r, pos)
			pos++
			if n, wrote := recordLen(&e), len(appendRecord(nil, &e)); n != wrote {
				t.Fatalf("recordLen %d, appendRecord wrote %d bytes", n, wrote)
			}
			if !b.fits(&e) {
				check(want)
				want = nil
			}
			b.add(&e)
			want = append(want, e)
		}
		check(want)
	}
	if segments < 300 {
		t.Fatalf("only %d segments: the bounds were not exercised", segments)
	}
}

// TestSegmentCorruption truncates and flips bytes of a segment: every
// damaged copy must fail to decode with errSegment or decode to different
// events, and never panic.
func TestSegmentCorruption(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var b segmentBuilder
	var want []eventstore.Event
	for i := range 5 {
		e := randomEvent(r, int64(10+i))
		e.Payload = e.Payload[:min(len(e.Payload), 100)]
		b.add(&e)
		want = append(want, e)
	}
	good := b.bytes(nil)
	decode := func(blob []byte) ([]eventstore.Event, error) {
		seg, err := parseSegment(10, blob)
		if err != nil {
			return nil, err
		}
		var out []eventstore.Event
		for i := range seg.n {
			e, err := seg.at(i)
			if err != nil {
				return nil, err
			}
			out = append(out, e)
		}
		return out, nil
	}
	if got, err := decode(good); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("intact segment: %v", err)
	}
	for n := range len(good) {
		if _, err := decode(good[:n]); !errors.Is(err, errSegment) {
			// A cut inside the last record's hash can still leave every
			// length field readable only if nothing is missing.
			t.Fatalf("segment cut to %d of %d bytes: %v", n, len(good), err)
		}
	}
	for i := range len(good) {
		bad := bytes.Clone(good)
		bad[i] ^= 0x5a
		got, err := decode(bad)
		if err == nil && reflect.DeepEqual(got, want) {
			t.Fatalf("byte %d flipped, same events decoded", i)
		}
	}
}

// TestLargeAppendSpansSegments appends one request far larger than a
// segment and many small ones, and reads everything back across segment
// boundaries, before and after a reopen.
func TestLargeAppendSpansSegments(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	s := mustOpen(t, path, DefaultOptions())
	ctx := context.Background()
	var big []eventstore.EventData
	for range 80 {
		d := event()
		d.Payload = bytes.Repeat([]byte("x"), 700)
		big = append(big, d)
	}
	res, err := s.Append(ctx, "big", eventstore.NoStream, big)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]eventstore.Event{"big": res.Events}
	for range 40 {
		want["small"] = append(want["small"], appendOne(t, s, "small"))
	}
	check := func(s *Store) {
		t.Helper()
		checkReads(t, s, "big", want["big"])
		checkReads(t, s, "small", want["small"])
		all, err := s.ReadAll(ctx, 0, 0)
		if err != nil || len(all) != 120 {
			t.Fatalf("read all: %d events, %v", len(all), err)
		}
		for i, e := range all {
			if e.Position != int64(i+1) {
				t.Fatalf("read all: event %d at position %d", i, e.Position)
			}
		}
	}
	check(s)
	var segments int
	if err := s.rdb.QueryRowContext(ctx, "SELECT COUNT(*) FROM segments").Scan(&segments); err != nil {
		t.Fatal(err)
	}
	if segments < 80*700/segmentMaxBytes {
		t.Fatalf("%d segments for 56 KB of payloads: the request was not split", segments)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, path, DefaultOptions())
	defer s.Close()
	check(s)
}
