package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/payledger/payledger/eventstore"
)

// writeFormat1Log writes, at path, a schema 3 log as the build before
// format 2 left it: the events of streams s0..s2 (100 each, interleaved)
// in format-1 segments of up to seven events, indexed up to position 200
// (the rest is a tail that Open rebuilds by scanning the segments). It
// returns the events in log order. With format2, it writes instead a
// schema 4 log as the build before format 3 left one that it had opened
// half way: positions from 151 on in format-2 segments, compressed with a
// dictionary.
func writeFormat1Log(t *testing.T, path string, format2 bool) []eventstore.Event {
	t.Helper()
	s := mustOpen(t, path, DefaultOptions()) // creates the tables
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(schema4Indexes); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)
	var events []eventstore.Event
	prev := map[string][32]byte{}
	for pos := int64(1); pos <= 300; pos++ {
		stream := fmt.Sprintf("s%d", pos%3)
		d := event()
		d.OccurredAt = at.Add(time.Duration(pos) * time.Millisecond)
		d.CorrelationID = d.ID
		d.Payload = fmt.Appendf(nil, `{"n":%d,"challenge":"cGF5bGVkZ2VyL3BheW1lbnQvdjEKMDFRM0RHQVRTMVRCMkhSQjJSN0M1NUQ1RzAK"}`, pos)
		e := eventstore.Event{EventData: d, Stream: stream, Version: (pos-1)/3 + 1, Position: pos, PrevHash: prev[stream]}
		e.Hash = eventstore.ComputeHash(e.PrevHash, stream, e.Version, d)
		prev[stream] = e.Hash
		events = append(events, e)
		if pos <= 200 {
			if _, err := tx.Exec(`INSERT INTO stream_index (stream, version, position) VALUES (?, ?, ?)`, stream, e.Version, pos); err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(`INSERT INTO id_index (id, position) VALUES (?, ?)`, e.ID, pos); err != nil {
				t.Fatal(err)
			}
		}
	}
	schema := "3"
	var dict *segDict
	if format2 {
		schema = "4"
		dict = &segDict{id: 1, at: 150, data: trainDict(events[:150])}
		if _, err := tx.Exec(sqlDictInsert, dict.at, dict.data); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < len(events); i += 7 {
		seg := events[i:min(i+7, len(events))]
		blob := segment1Bytes(seg)
		if format2 && seg[0].Position > 150 {
			b := segmentBuilder{format: segmentFormat2}
			for j := range seg {
				b.add(&seg[j])
			}
			blob = b.bytes(nil, dict)
		}
		if _, err := tx.Exec(sqlInsertSegment, seg[0].Position, seg[len(seg)-1].Position, blob); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tx.Exec(`UPDATE meta SET value = '200' WHERE key = 'indexed_upto';
		UPDATE meta SET value = ? WHERE key = 'schema_version'`, schema); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	return events
}

// TestFormats opens a schema 3 log of format-1 segments and a schema 4 log
// of format-1 and -2 segments, appends to their streams and to a new one
// (format-3 segments, compressed with several dictionaries), and reads
// everything back identical from the store and the reader: hashes over the
// canonical bytes unchanged, every chain intact, the indexes consistent.
func TestFormats(t *testing.T) {
	for _, format2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("format 2 %v", format2), func(t *testing.T) { testFormats(t, format2) })
	}
}

func testFormats(t *testing.T, format2 bool) {
	path := filepath.Join(t.TempDir(), "events.db")
	want := writeFormat1Log(t, path, format2)
	ctx := context.Background()
	s := mustOpen(t, path, DefaultOptions())
	s.dictTrain, s.dictRetrain = 50, 150
	var v string
	if err := s.wdb.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'schema_version'`).Scan(&v); err != nil || v != schemaVersion {
		t.Fatalf("schema version %q (%v) after open, want %s", v, err, schemaVersion)
	}
	for i := range 100 {
		stream := fmt.Sprintf("s%d", i%4)
		var batch []eventstore.EventData
		for range 1 + i%5 {
			d := event()
			d.OccurredAt = time.Date(2026, 2, 1, 0, 0, i, 1000*i, time.UTC)
			d.Payload = fmt.Appendf(nil, `{"i":%d,"stream":%q,"blob":"QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"}`, i, stream)
			if i%7 == 0 {
				d.Payload = nil
			}
			batch = append(batch, d)
		}
		res, err := s.Append(ctx, stream, eventstore.Any, batch)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, res.Events...)
	}
	check := func(s *Store) {
		t.Helper()
		byStream := map[string][]eventstore.Event{}
		for _, e := range want {
			byStream[e.Stream] = append(byStream[e.Stream], e)
		}
		for stream, evs := range byStream {
			got, err := s.ReadStream(ctx, stream, 1, 0)
			if err != nil || !reflect.DeepEqual(got, evs) {
				t.Fatalf("stream %s: %d events read (%v), not the %d appended", stream, len(got), err, len(evs))
			}
		}
		all, err := s.ReadAll(ctx, 0, 0)
		if err != nil || !reflect.DeepEqual(all, want) {
			t.Fatalf("read all: %d events (%v), want %d", len(all), err, len(want))
		}
	}
	check(s)
	// The migrated id index still finds the old events: a re-append of one
	// that was indexed in the old layout is answered with it, its id in
	// another stream is refused.
	old := want[4]
	if old.Position > 200 || old.Version != 2 {
		t.Fatalf("event %d is not an old indexed one", old.Position)
	}
	res, err := s.Append(ctx, old.Stream, old.Version-1, []eventstore.EventData{old.EventData})
	if err != nil || len(res.Events) != 1 || !reflect.DeepEqual(res.Events[0], old) {
		t.Fatalf("re-append of position %d: %v", old.Position, err)
	}
	if _, err := s.Append(ctx, "other", eventstore.Any, []eventstore.EventData{old.EventData}); !errors.Is(err, eventstore.ErrIDReused) {
		t.Fatalf("an old id in another stream: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, path, DefaultOptions())
	check(s)

	var f1, f2, f3, dicts int
	if err := s.rdb.QueryRowContext(ctx, `SELECT COUNT(*) FILTER (WHERE substr(events, 1, 1) = x'01'),
		COUNT(*) FILTER (WHERE substr(events, 1, 1) = x'02'), COUNT(*) FILTER (WHERE substr(events, 1, 1) = x'03'),
		(SELECT COUNT(*) FROM dictionaries) FROM segments`).Scan(&f1, &f2, &f3, &dicts); err != nil {
		t.Fatal(err)
	}
	if f1 == 0 || (f2 > 0) != format2 || f3 == 0 || dicts < 2 {
		t.Fatalf("%d format-1 segments, %d format-2, %d format-3, %d dictionaries: want the old formats, format 3 and several dictionaries",
			f1, f2, f3, dicts)
	}

	// What payledger verify does, through the reader.
	r, err := OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var all []eventstore.Event
	for after := int64(0); ; {
		batch, err := r.ReadAll(ctx, after, 97)
		if err != nil {
			t.Fatal(err)
		}
		if len(batch) == 0 {
			break
		}
		all = append(all, batch...)
		after = batch[len(batch)-1].Position
	}
	if !reflect.DeepEqual(all, want) {
		t.Fatalf("reader: %d events, not the %d written", len(all), len(want))
	}
	chains := map[string][32]byte{}
	for _, e := range all {
		h, err := eventstore.VerifyChain(chains[e.Stream], []eventstore.Event{e})
		if err != nil {
			t.Fatal(err)
		}
		chains[e.Stream] = h
	}
	if n, err := r.CheckIndexes(ctx); err != nil || n != int64(len(want)) {
		t.Fatalf("check indexes: %d events indexed (%v), want %d", n, err, len(want))
	}
}

// TestVerifyDetectsChangedEvent changes one event of a format-3 log behind
// the store's back, as verify walks it through the reader: an event
// changed with its stored hash check left as it was no longer reads (it
// was altered), and one whose check was recomputed breaks the chain at its
// successor, whose stored previous hash is the old event's full hash.
func TestVerifyDetectsChangedEvent(t *testing.T) {
	for _, tc := range []struct {
		name      string
		newCheck  bool
		wantError string
	}{
		{"check kept", false, "was altered"},
		{"check recomputed", true, "previous hash"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "events.db")
			s := mustOpen(t, path, DefaultOptions())
			for range 3 {
				appendOne(t, s, "a")
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			var blob []byte
			if err := db.QueryRow(`SELECT events FROM segments WHERE first_position = 2 AND last_position = 2`).Scan(&blob); err != nil {
				t.Fatal(err)
			}
			if blob[0] != segmentFormat3 {
				t.Fatalf("segment of format %d", blob[0])
			}
			evs, err := decodeAll(2, blob, newDictCache(db))
			if err != nil {
				t.Fatal(err)
			}
			e := evs[0]
			e.Payload = []byte(`{"changed":true}`)
			if tc.newCheck {
				e = hashed(e)
			}
			var b segmentBuilder
			b.add(&e)
			if _, err := db.Exec(`DROP TRIGGER segments_no_update; UPDATE segments SET events = ? WHERE first_position = 2`, b.bytes(nil, nil)); err != nil {
				t.Fatal(err)
			}
			r, err := OpenReader(path)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			all, err := r.ReadAll(context.Background(), 0, 0)
			if err == nil {
				_, err = eventstore.VerifyChain([32]byte{}, all)
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantError) {
				t.Fatalf("verify of a changed event: %v, want an error saying %q", err, tc.wantError)
			}
		})
	}
}
