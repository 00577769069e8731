package sqlite

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/payledger/payledger/eventstore"
)

// Segments.
//
// The log stores events packed into segments: one row of the segments table
// holds up to segmentMaxEvents consecutive events (at most segmentMaxBytes),
// keyed by the position of its first event. A group-commit transaction
// writes a few segment rows instead of one row (and one id-index entry) per
// event, which cuts the writer's insert work per payment (measured with
// payledger bench --cpuprofile; BenchmarkInsertFloor is the
// one-row-per-event floor to compare BenchmarkAppendGroupCommit with).
// Segments are small (three to a 16 KiB page) so that reading one event,
// as a stream read does through the stream index, loads at most a few KiB
// and decodes only that event (the offset table locates it).
//
// Format (version 1), all integers little-endian or varint:
//
//	byte     format version (1)
//	uvarint  n, the number of events (>= 1)
//	n x u32  offset of each record from the end of this table
//	records  one per event, in position order:
//	         str id, str stream, uvarint version, str type,
//	         uvarint schema version, varint unix seconds, uvarint nanoseconds,
//	         str causation id, str correlation id, str idempotency key,
//	         bytes payload, 32 bytes previous hash, 32 bytes hash
//
// where str and bytes are a uvarint length and that many bytes. Event i of
// a segment has position first_position + i. The format is versioned so
// that a later layout can be read beside this one for the five-year
// retention.

const (
	segmentFormat = 1
	// segmentMaxEvents and segmentMaxBytes bound one segment: an event that
	// would take it past either starts the next one (an event larger than
	// segmentMaxBytes gets a segment of its own). Three segments of at
	// most 5,300 bytes fit one 16 KiB page (SQLite keeps rows of up to
	// about 16,300 bytes in the page and adds some 10 bytes of cell header
	// each). Larger segments (up to 12 KiB) took a page each and left the
	// rest of it empty, so the file grew faster than with one row per
	// event (file bytes per event of a payledger bench log).
	segmentMaxEvents = 64
	segmentMaxBytes  = 5300
)

// errSegment reports a segment that does not decode.
var errSegment = errors.New("corrupt segment")

// segmentBuilder collects the events of one segment as they are appended.
type segmentBuilder struct {
	first int64    // position of the first event; 0 when empty
	offs  []uint32 // record offsets
	recs  []byte   // the records
	buf   []byte   // the last encoding (store), reused
}

func (b *segmentBuilder) len() int { return len(b.offs) }

// fits reports whether e can join the segment within its bounds; an empty
// segment takes any event.
func (b *segmentBuilder) fits(e *eventstore.Event) bool {
	n := len(b.offs)
	if n == 0 {
		return true
	}
	size := 1 + uvarintLen(uint64(n+1)) + 4*(n+1) + len(b.recs) + recordLen(e)
	return n < segmentMaxEvents && size <= segmentMaxBytes
}

// uvarintLen is the length of v as a uvarint.
func uvarintLen(v uint64) int {
	n := 1
	for ; v >= 0x80; v >>= 7 {
		n++
	}
	return n
}

// recordLen is the length appendRecord gives e's record.
func recordLen(e *eventstore.Event) int {
	str := func(s string) int { return uvarintLen(uint64(len(s))) + len(s) }
	t := e.OccurredAt
	sec := t.Unix()
	zigzag := uint64(sec<<1) ^ uint64(sec>>63)
	return str(e.ID) + str(e.Stream) + uvarintLen(uint64(e.Version)) + str(e.Type) +
		uvarintLen(uint64(e.SchemaVersion)) + uvarintLen(zigzag) + uvarintLen(uint64(t.Nanosecond())) +
		str(e.CausationID) + str(e.CorrelationID) + str(e.IdempotencyKey) +
		uvarintLen(uint64(len(e.Payload))) + len(e.Payload) + 64
}

// add appends e, whose position must follow the segment's last one.
func (b *segmentBuilder) add(e *eventstore.Event) {
	if len(b.offs) == 0 {
		b.first = e.Position
	}
	b.offs = append(b.offs, uint32(len(b.recs)))
	b.recs = appendRecord(b.recs, e)
}

// bytes encodes the segment into dst (reset first) and returns it.
func (b *segmentBuilder) bytes(dst []byte) []byte {
	dst = append(dst[:0], segmentFormat)
	dst = binary.AppendUvarint(dst, uint64(len(b.offs)))
	for _, o := range b.offs {
		dst = binary.LittleEndian.AppendUint32(dst, o)
	}
	return append(dst, b.recs...)
}

// store inserts the segment, if it holds any event, with insert
// (sqlInsertSegment) and empties the builder.
func (b *segmentBuilder) store(ctx context.Context, insert func(ctx context.Context, args ...any) (sql.Result, error)) error {
	if b.len() == 0 {
		return nil
	}
	b.buf = b.bytes(b.buf)
	last := b.first + int64(b.len()) - 1
	if _, err := insert(ctx, b.first, last, b.buf); err != nil {
		return fmt.Errorf("write segment %d-%d: %w", b.first, last, err)
	}
	b.reset()
	return nil
}

// reset empties the builder, keeping its memory.
func (b *segmentBuilder) reset() {
	b.first, b.offs, b.recs = 0, b.offs[:0], b.recs[:0]
}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendRecord encodes one event's record.
func appendRecord(b []byte, e *eventstore.Event) []byte {
	b = appendStr(b, e.ID)
	b = appendStr(b, e.Stream)
	b = binary.AppendUvarint(b, uint64(e.Version))
	b = appendStr(b, e.Type)
	b = binary.AppendUvarint(b, uint64(e.SchemaVersion))
	t := e.OccurredAt
	b = binary.AppendVarint(b, t.Unix())
	b = binary.AppendUvarint(b, uint64(t.Nanosecond()))
	b = appendStr(b, e.CausationID)
	b = appendStr(b, e.CorrelationID)
	b = appendStr(b, e.IdempotencyKey)
	b = binary.AppendUvarint(b, uint64(len(e.Payload)))
	b = append(b, e.Payload...)
	b = append(b, e.PrevHash[:]...)
	return append(b, e.Hash[:]...)
}

// segment is a decoded segment header over its stored bytes.
type segment struct {
	first int64
	n     int
	table []byte // n u32 offsets
	recs  []byte
}

// parseSegment checks the header of the stored segment at first.
func parseSegment(first int64, blob []byte) (segment, error) {
	if len(blob) < 2 || blob[0] != segmentFormat {
		return segment{}, fmt.Errorf("%w at position %d: unknown format", errSegment, first)
	}
	n, k := binary.Uvarint(blob[1:])
	if k <= 0 || n == 0 || n > uint64(len(blob)) {
		return segment{}, fmt.Errorf("%w at position %d: bad event count", errSegment, first)
	}
	rest := blob[1+k:]
	if uint64(len(rest)) < 4*n {
		return segment{}, fmt.Errorf("%w at position %d: short offset table", errSegment, first)
	}
	return segment{first: first, n: int(n), table: rest[:4*n], recs: rest[4*n:]}, nil
}

// last is the position of the segment's last event.
func (s segment) last() int64 { return s.first + int64(s.n) - 1 }

// at decodes event i of the segment.
func (s segment) at(i int) (eventstore.Event, error) {
	off := binary.LittleEndian.Uint32(s.table[4*i:])
	if uint64(off) > uint64(len(s.recs)) {
		return eventstore.Event{}, fmt.Errorf("%w at position %d: record %d out of range", errSegment, s.first, i)
	}
	d := recordDecoder{b: s.recs[off:]}
	e := eventstore.Event{Position: s.first + int64(i)}
	e.ID = d.str()
	e.Stream = d.str()
	e.Version = int64(d.uvarint())
	e.Type = d.str()
	e.SchemaVersion = int(d.uvarint())
	sec := d.varint()
	nsec := d.uvarint()
	e.CausationID = d.str()
	e.CorrelationID = d.str()
	e.IdempotencyKey = d.str()
	if p := d.bytes(); len(p) > 0 {
		e.Payload = append([]byte(nil), p...)
	}
	copy(e.PrevHash[:], d.take(32))
	copy(e.Hash[:], d.take(32))
	if d.bad || nsec >= 1e9 {
		return eventstore.Event{}, fmt.Errorf("%w: record of position %d does not decode", errSegment, e.Position)
	}
	e.OccurredAt = time.Unix(sec, int64(nsec)).UTC()
	return e, nil
}

// recordDecoder reads a record's fields; a short or malformed record sets
// bad, after which every field reads as zero.
type recordDecoder struct {
	b   []byte
	bad bool
}

// uvarint and varint read a varint; on a short or overlong one the binary
// package returns 0 with k <= 0, and skip marks the record bad.
func (d *recordDecoder) uvarint() uint64 {
	v, k := binary.Uvarint(d.b)
	d.skip(k)
	return v
}

func (d *recordDecoder) varint() int64 {
	v, k := binary.Varint(d.b)
	d.skip(k)
	return v
}

// skip consumes the k bytes a varint took, or, for k <= 0, marks the
// record bad.
func (d *recordDecoder) skip(k int) {
	if k <= 0 {
		d.bad, d.b = true, nil
		return
	}
	d.b = d.b[k:]
}

func (d *recordDecoder) take(n uint64) []byte {
	if d.bad || n > uint64(len(d.b)) {
		d.bad, d.b = true, nil
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *recordDecoder) bytes() []byte { return d.take(d.uvarint()) }

func (d *recordDecoder) str() string { return string(d.bytes()) }

// loadSegment reads the stored segment holding pos with st (sqlSegmentAt).
func loadSegment(ctx context.Context, st *sql.Stmt, pos int64) (segment, error) {
	var first int64
	var blob []byte
	if err := st.QueryRowContext(ctx, pos).Scan(&first, &blob); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return segment{}, fmt.Errorf("position %d is not stored", pos)
		}
		return segment{}, err
	}
	return parseSegmentHolding(first, blob, pos)
}

// parseSegmentHolding parses the stored segment at first, which a query
// found as the one holding pos, and checks that it does.
func parseSegmentHolding(first int64, blob []byte, pos int64) (segment, error) {
	seg, err := parseSegment(first, blob)
	if err != nil {
		return segment{}, err
	}
	if pos < seg.first || pos > seg.last() {
		return segment{}, fmt.Errorf("position %d is not stored", pos)
	}
	return seg, nil
}

// loadEvent reads the event at pos with st (sqlSegmentAt).
func loadEvent(ctx context.Context, st *sql.Stmt, pos int64) (eventstore.Event, error) {
	seg, err := loadSegment(ctx, st, pos)
	if err != nil {
		return eventstore.Event{}, err
	}
	return seg.at(int(pos - seg.first))
}

// loadEvents reads the events at the given positions, in that order, with
// st (sqlSegmentAt), reading each segment once for a run of positions in
// it.
func loadEvents(ctx context.Context, st *sql.Stmt, positions []int64, out []eventstore.Event) ([]eventstore.Event, error) {
	var seg segment
	for _, pos := range positions {
		if seg.n == 0 || pos < seg.first || pos > seg.last() {
			var err error
			if seg, err = loadSegment(ctx, st, pos); err != nil {
				return nil, err
			}
		}
		e, err := seg.at(int(pos - seg.first))
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// readSegments reads up to limit events after position after and at or
// below upto with st (sqlSegmentsFrom), in log order.
func readSegments(ctx context.Context, st *sql.Stmt, after, upto int64, limit int) ([]eventstore.Event, error) {
	rows, err := st.QueryContext(ctx, after+1, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make([]eventstore.Event, 0, min(limit, 64))
	next := after + 1
	for len(out) < limit && next <= upto && rows.Next() {
		var first int64
		var blob []byte
		if err := rows.Scan(&first, &blob); err != nil {
			return nil, err
		}
		seg, err := parseSegment(first, blob)
		if err != nil {
			return nil, err
		}
		if seg.last() < next {
			continue // the segment before the requested position
		}
		if seg.first > next {
			return nil, fmt.Errorf("%w: the log has no position %d (next segment starts at %d)", errSegment, next, seg.first)
		}
		for i := int(next - seg.first); i < seg.n && len(out) < limit && next <= upto; i++ {
			e, err := seg.at(i)
			if err != nil {
				return nil, err
			}
			out = append(out, e)
			next++
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}
