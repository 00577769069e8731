package sqlite

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/payledger/payledger/eventstore"
)

// randomEvent builds an event with every field set from r, including empty
// and non-ASCII strings, no payload, and payloads past segmentMaxRaw.
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
		e.Payload = make([]byte, segmentMaxRaw+r.IntN(5000))
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

// randomPayload adds, at random, JSON strings of base64 (the payload coding
// stores them decoded) and near misses: unpadded, non-canonical, too short,
// unterminated.
func randomPayload(r *rand.Rand, p []byte) []byte {
	if r.IntN(2) == 0 {
		return p
	}
	var b []byte
	for range 1 + r.IntN(4) {
		raw := make([]byte, r.IntN(60))
		for i := range raw {
			raw[i] = byte(r.IntN(256))
		}
		s := base64.StdEncoding.EncodeToString(raw)
		switch r.IntN(6) {
		case 0:
			s = strings.TrimRight(s, "=")
		case 1:
			if n := len(s); n > 2 && s[n-1] == '=' && s[n-2] != '=' {
				s = s[:n-2] + "B=" // non-canonical trailing bits
			}
		case 2:
			s = s[:len(s)/2]
		}
		b = append(b, `{"k":"`...)
		b = append(b, s...)
		if r.IntN(8) > 0 {
			b = append(b, '"')
		}
		b = append(b, p[:min(len(p), r.IntN(20))]...)
	}
	return b
}

// decodeAll decodes every event of a stored segment.
func decodeAll(first int64, blob []byte, dicts *dictCache) ([]eventstore.Event, error) {
	seg, err := parseSegment(first, blob, dicts)
	if err != nil {
		return nil, err
	}
	out := make([]eventstore.Event, 0, seg.n)
	for i := range seg.n {
		e, err := seg.at(i)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// testDicts is a dictionary cache holding the given dictionaries, with no
// database behind it.
func testDicts(ds ...*segDict) *dictCache {
	c := newDictCache(nil)
	for _, d := range ds {
		c.m[d.id] = d.data
	}
	return c
}

// TestSegmentRoundTrip encodes random runs of events into segments of
// formats 2 and 3, closing each as the writer does, and decodes every event
// back equal, with and without a dictionary; some events continue the
// stream of an earlier one of their segment (a previous-hash reference).
func TestSegmentRoundTrip(t *testing.T) {
	for _, format := range []byte{segmentFormat2, segmentFormat3} {
		t.Run(fmt.Sprintf("format %d", format), func(t *testing.T) { testSegmentRoundTrip(t, format) })
	}
}

// hashed returns e with the hash its fields give (format 3 checks it).
func hashed(e eventstore.Event) eventstore.Event {
	e.Hash = eventstore.ComputeHash(e.PrevHash, e.Stream, e.Version, e.EventData)
	return e
}

func testSegmentRoundTrip(t *testing.T, format byte) {
	r := rand.New(rand.NewPCG(1, 2))
	var warm []eventstore.Event
	for i := range 50 {
		e := randomEvent(r, int64(i+1))
		e.Payload = randomPayload(r, e.Payload)
		warm = append(warm, e)
	}
	dict := &segDict{id: 7, data: trainDict(warm)}
	if len(dict.data) == 0 || len(dict.data) > dictMaxBytes {
		t.Fatalf("dictionary of %d bytes", len(dict.data))
	}
	dicts := testDicts(dict)
	b := segmentBuilder{format: format}
	hashLen := 32
	if format == segmentFormat3 {
		hashLen = hashCheckLen
	}
	var buf []byte
	pos := int64(1)
	segments, refs := 0, 0
	check := func(want []eventstore.Event, d *segDict) {
		t.Helper()
		buf = b.bytes(buf, d)
		if buf[0] != format {
			t.Fatalf("segment of format %d, want %d", buf[0], format)
		}
		if len(want) > 1 && len(b.raw) > segmentMaxRaw {
			t.Fatalf("segment of %d events has %d bytes of records, over %d", len(want), len(b.raw), segmentMaxRaw)
		}
		got, err := decodeAll(b.first, buf, dicts)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("segment holds %d events, want %d", len(got), len(want))
		}
		for i, w := range want {
			if !reflect.DeepEqual(got[i], w) {
				t.Fatalf("event %d:\n got %+v\nwant %+v", i, got[i], w)
			}
		}
		segments++
		b.reset()
	}
	for k := range 200 {
		d := dict
		if k%3 == 0 {
			d = nil
		}
		var want []eventstore.Event
		for range 1 + r.IntN(150) {
			e := randomEvent(r, pos)
			e.Payload = randomPayload(r, e.Payload)
			switch r.IntN(4) {
			case 0:
				e.PrevHash = [32]byte{}
			case 1:
				if len(want) > 0 {
					e.PrevHash = want[r.IntN(len(want))].Hash
				}
			}
			e = hashed(e)
			pos++
			if !b.fits(&e) {
				check(want, d)
				want = nil
			}
			before := len(b.recs)
			b.add(&e)
			if n := len(b.recs) - before; n > recordLen(&e) {
				t.Fatalf("record of %d bytes, recordLen says at most %d", n, recordLen(&e))
			}
			if c := b.recs[len(b.recs)-hashLen-1]; c >= 2 {
				refs++
			}
			want = append(want, e)
		}
		check(want, d)
	}
	if segments < 300 || refs < 100 {
		t.Fatalf("only %d segments, %d previous-hash references: the bounds were not exercised", segments, refs)
	}
}

// TestPayloadCoding: payloads with base64 strings, near misses and
// arbitrary bytes come back byte for byte, empty ones as nil.
func TestPayloadCoding(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	cases := [][]byte{nil, {}, []byte(`"`), []byte(`""`), []byte(`"QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"`),
		[]byte(`{"c":"cGF5bGVkZ2VyL3BheW1lbnQvdjEKMDFRM0RHQVRTMVRCMkhSQjJSN0M1NUQ1RzAK==","d":"x"}`),
		[]byte(`"QUJDREVGR0hJSktMTU5PUFFSU1RVVldY""QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"`)}
	for range 2000 {
		p := make([]byte, r.IntN(40))
		for i := range p {
			p[i] = "\"\"=AQ+/x"[r.IntN(8)]
		}
		cases = append(cases, randomPayload(r, p))
	}
	decoded := 0
	for _, p := range cases {
		enc := appendPayload(nil, p)
		if len(enc) > uvarintLen(uint64(len(p)+1))+len(p)+3 {
			t.Fatalf("payload of %d bytes coded in %d", len(p), len(enc))
		}
		d := recordDecoder{b: enc}
		got := d.payload()
		if d.bad || len(d.b) != 0 || !bytes.Equal(got, p) || (len(p) == 0) != (got == nil) {
			t.Fatalf("payload %q came back as %q (bad %v)", p, got, d.bad)
		}
		if len(enc) < len(p) {
			decoded++
		}
	}
	if decoded < 100 {
		t.Fatalf("only %d payloads had base64 decoded", decoded)
	}
}

// TestSegmentCorruption truncates and flips bytes of segments of the three
// formats: every damaged copy must fail to decode with errSegment or
// decode to events (which the hash chain then refuses, unless they are the
// same), and never panic or allocate past the bounds. A format-3 record
// whose event no longer gives its hash check fails to decode.
func TestSegmentCorruption(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var want []eventstore.Event
	for i := range 5 {
		e := randomEvent(r, int64(10+i))
		e.Payload = e.Payload[:min(len(e.Payload), 100)]
		if i == 3 {
			e.PrevHash = want[1].Hash // a previous-hash reference
		}
		want = append(want, hashed(e))
	}
	dict := &segDict{id: 1, data: trainDict(want)}
	dicts := testDicts(dict)
	b2, b3 := segmentBuilder{format: segmentFormat2}, segmentBuilder{}
	for i := range want {
		b2.add(&want[i])
		b3.add(&want[i])
	}
	v2, v3 := b2.bytes(nil, dict), b3.bytes(nil, dict)
	v1 := segment1Bytes(want)
	if v3[0] != segmentFormat3 {
		t.Fatalf("the writer's segment is of format %d", v3[0])
	}
	for _, good := range [][]byte{v1, v2, v3} {
		if got, err := decodeAll(10, good, dicts); err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("intact segment of format %d: %v", good[0], err)
		}
		for n := range len(good) {
			if _, err := decodeAll(10, good[:n], dicts); !errors.Is(err, errSegment) {
				t.Fatalf("segment of format %d cut to %d of %d bytes: %v", good[0], n, len(good), err)
			}
		}
		same, decoded := 0, 0
		for i := range len(good) {
			bad := bytes.Clone(good)
			bad[i] ^= 0x5a
			got, err := decodeAll(10, bad, dicts)
			if err == nil {
				decoded++
				if reflect.DeepEqual(got, want) {
					same++
				}
			}
		}
		// DEFLATE ignores the padding bits of its last byte, zstd some bits
		// of its frame header; nothing else may decode to the same events.
		if same > 1 || good[0] == segmentFormat1 && same > 0 {
			t.Fatalf("format %d: %d flipped bytes decode to the same events", good[0], same)
		}
		if good[0] == segmentFormat3 && decoded > same {
			t.Fatalf("format 3: %d flipped bytes decode to other events than their hash checks", decoded-same)
		}
	}
	// Records stored as they are, one byte of an event changed: format 3
	// refuses the event by its hash check.
	b3.reset()
	for i := range want {
		b3.add(&want[i])
	}
	raw := bytes.Clone(b3.bytes(nil, nil))
	if raw[len(raw)-len(b3.raw)-1] != methodStored {
		// Random payloads of 100 bytes do not compress.
		t.Fatal("the records were compressed")
	}
	i := bytes.Index(raw, []byte(want[2].ID))
	raw[i] ^= 1
	if _, err := decodeAll(10, raw, dicts); !errors.Is(err, errSegment) || !strings.Contains(err.Error(), "altered") {
		t.Fatalf("an event changed in place: %v", err)
	}
	// A header claiming more records than the bounds allow is refused
	// before anything is allocated for them.
	for _, f := range []struct{ format, method byte }{{segmentFormat2, methodDeflate}, {segmentFormat3, methodZstd}} {
		for _, size := range []uint64{segmentMaxRaw + 1, 1 << 40} {
			blob := []byte{f.format, 2, 0}
			blob = binary.AppendUvarint(blob, size)
			blob = append(blob, f.method, 0x03, 0x00)
			if _, err := parseSegment(1, blob, dicts); !errors.Is(err, errSegment) {
				t.Fatalf("format %d: records of %d bytes claimed: %v", f.format, size, err)
			}
		}
		one := []byte{f.format, 1, 0}
		one = binary.AppendUvarint(one, 1<<30) // one event: bounded by the stored bytes
		one = append(one, f.method, 0x03, 0x00)
		if _, err := parseSegment(1, one, dicts); !errors.Is(err, errSegment) {
			t.Fatalf("format %d: 1 GiB of records claimed from 3 bytes: %v", f.format, err)
		}
	}
	// Each format has its own compression.
	for _, blob := range [][]byte{v2, v3} {
		other := bytes.Clone(blob)
		other[0] = segmentFormat2 + segmentFormat3 - blob[0]
		if _, err := parseSegment(1, other, dicts); !errors.Is(err, errSegment) {
			t.Fatalf("format %d segment read as format %d: %v", blob[0], other[0], err)
		}
	}
	for _, blob := range [][]byte{v2, v3} {
		unknown := bytes.Clone(blob)
		unknown[2] = 9 // dictionary 9
		if _, err := parseSegment(1, unknown, dicts); !errors.Is(err, errSegment) {
			t.Fatalf("format %d, unknown dictionary: %v", blob[0], err)
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
	if segments < 80*700/segmentMaxRaw {
		t.Fatalf("%d segments for 56 KB of payloads: the request was not split", segments)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, path, DefaultOptions())
	defer s.Close()
	check(s)
}
