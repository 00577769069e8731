package sqlite

import (
	"bytes"
	"compress/flate"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/payledger/payledger/eventstore"
)

// Segments.
//
// The log stores events packed into segments: one row of the segments table
// holds up to segmentMaxEvents consecutive events, keyed by the position of
// its first event. A group-commit transaction writes a few segment rows
// instead of one row (and one id-index entry) per event, which cuts the
// writer's insert work per payment (measured with payledger bench
// --cpuprofile; BenchmarkInsertFloor is the one-row-per-event floor to
// compare BenchmarkAppendGroupCommit with).
//
// The writer writes format 3: the records of a segment compressed together
// with zstd and a preset dictionary trained from the log itself (see
// dict.go), each record keeping only the first hashCheckLen bytes of its
// event's hash. Format 2 (DEFLATE, full hashes) and format 1
// (uncompressed) are what older logs hold; they are still read, and one
// log may hold segments of all three. A segment's format is its first
// byte. The hash of an event covers its canonical bytes
// (eventstore.ComputeHash), never the stored ones, so the format is
// invisible to hashes, verify and every reader.
//
// Formats 2 and 3, all integers little-endian or varint:
//
//	byte     format version (2 or 3)
//	uvarint  n, the number of events (>= 1)
//	uvarint  dictionary id (0: none; else a row of the dictionaries table)
//	uvarint  r, the length of the records block once decompressed
//	byte     method: 0 the block follows as it is (r bytes); in format 2,
//	         1 DEFLATE (RFC 1951) with the dictionary preset; in format 3,
//	         2 one zstd frame (RFC 8878) with the dictionary as raw
//	         content, the dictionary id in its header, its content size r
//	bytes    the records block, to the end of the row
//
// and the records block:
//
//	n x uvarint  length of each record
//	varint       base unix seconds
//	records      one per event, in position order:
//	             str id, str stream, uvarint version, str type,
//	             uvarint schema version, varint unix seconds - base,
//	             uvarint time code (microseconds<<1, or nanoseconds<<1|1),
//	             str causation id, str correlation id, str idempotency key,
//	             payload, previous-hash code, then in format 2 the 32 bytes
//	             of the hash, in format 3 its first 8 (the hash check)
//
// The previous-hash code is a byte: 0 for 32 zero bytes (the first event
// of a stream), 1 followed by the 32 bytes, or 2+k for the hash of record
// i-1-k of the same segment (the stream's previous event is in it). The
// payload is a uvarint (length+1, or 0 for none) and then parts until that
// many bytes are rebuilt, each a uvarint tag: length<<1 for that many bytes
// as they are, or length<<1|1 for the standard padded base64 encoding of
// the length bytes that follow (how encoding/json writes a []byte: a JSON
// string of base64 is stored decoded, which the compressor can then match
// against the rest of the segment; the writer checks that re-encoding gives
// the same text).
//
// Format 3 drops 24 of the 64 hash bytes an event took, which do not
// compress: a reader computes each event's hash from its record and
// previous hash (as verify does anyway) and refuses the record, as altered,
// unless the hash begins with the stored check. An event that is not its
// stream's last is also pinned by its successor's full previous hash, so
// verify detects a changed event as before: an unchanged successor no
// longer matches, and a change to the last one must keep the first 64 bits
// of its SHA-256. (A stored hash never stopped someone rewriting the file
// from storing a new one: the signed checkpoints do.)
//
// A reader bounds what a stored segment may make it allocate: r is at most
// segmentMaxRaw for a segment of several events, and for a segment of one
// (large) event at most what the method can expand its stored bytes to.
//
// Format 1:
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
// a segment has position first_position + i.
//
// Sizes: reading one event decompresses its whole segment, so segments stay
// small: at most segmentMaxEvents events and segmentMaxRaw bytes of records
// before compression. Three of those, compressed, fit one 16 KiB page with
// the payment events of payledger bench (SQLite keeps rows of up to about
// 16,300 bytes in the page).

const (
	segmentFormat1 = 1
	segmentFormat2 = 2
	segmentFormat3 = 3
	// The compression methods of formats 2 and 3: methodDeflate is
	// format 2's, methodZstd format 3's.
	methodStored  = 0
	methodDeflate = 1
	methodZstd    = 2
	// hashCheckLen is how many bytes of each event's hash a format-3
	// record keeps.
	hashCheckLen = 8
	// maxZstdRatio bounds what zstd can expand n bytes to (a 4-byte
	// run-length block stands for up to 128 KiB).
	maxZstdRatio = 32800
	// segmentMaxEvents and segmentMaxRaw bound one segment: an event that
	// would take it past either starts the next one (an event larger than
	// segmentMaxRaw gets a segment of its own).
	segmentMaxEvents = 64
	segmentMaxRaw    = 16384
	// segmentLevel is the DEFLATE level the writer compresses at (levels
	// below 2 ignore a preset dictionary).
	segmentLevel = 2
	// maxInflateRatio bounds what DEFLATE can expand n bytes to (1032:1,
	// with some slack).
	maxInflateRatio = 1040
	// maxSegmentRaw bounds the records of any segment (SQLite's largest
	// row is 1e9 bytes by default).
	maxSegmentRaw = 1 << 30
	// minBase64 is the shortest base64 string the payload coding decodes.
	minBase64 = 24
)

// errSegment reports a segment that does not decode.
var errSegment = errors.New("corrupt segment")

// segmentBuilder collects the events of one segment as they are appended
// and encodes them in format 3 (or, for tests, 2).
type segmentBuilder struct {
	// format is the format the builder writes: 0 (the writer's) is
	// segmentFormat3; tests set segmentFormat2 to write old segments.
	format byte
	first  int64      // position of the first event; 0 when empty
	base   int64      // unix seconds of the first event
	lens   []uint32   // record lengths
	hashes [][32]byte // record hashes, for previous-hash references
	recs   []byte     // the records
	raw    []byte     // the records block (bytes), reused
	buf    []byte     // the last encoding (store), reused
	out    bytes.Buffer
	zbuf   []byte
	fw     *flate.Writer // format 2: compressor for fwDict
	fwDict *segDict
	zw     *zstd.Encoder // format 3: compressor for zwDict
	zwDict *segDict
}

func (b *segmentBuilder) len() int { return len(b.lens) }

// fits reports whether e can join the segment within its bounds; an empty
// segment takes any event.
func (b *segmentBuilder) fits(e *eventstore.Event) bool {
	n := len(b.lens)
	if n == 0 {
		return true
	}
	return n < segmentMaxEvents && len(b.recs)+5*(n+1)+10+recordLen(e) <= segmentMaxRaw
}

// uvarintLen is the length of v as a uvarint.
func uvarintLen(v uint64) int {
	n := 1
	for ; v >= 0x80; v >>= 7 {
		n++
	}
	return n
}

// recordLen bounds the length of e's format-2 record: its format-1 length
// and 17 bytes, the most the previous-hash code, the time relative to the
// segment's base and the payload's part tags can add (a base64 part is
// taken only where it saves more than its tags cost).
func recordLen(e *eventstore.Event) int {
	str := func(s string) int { return uvarintLen(uint64(len(s))) + len(s) }
	t := e.OccurredAt
	sec := t.Unix()
	zigzag := uint64(sec<<1) ^ uint64(sec>>63)
	return str(e.ID) + str(e.Stream) + uvarintLen(uint64(e.Version)) + str(e.Type) +
		uvarintLen(uint64(e.SchemaVersion)) + uvarintLen(zigzag) + uvarintLen(uint64(t.Nanosecond())) +
		str(e.CausationID) + str(e.CorrelationID) + str(e.IdempotencyKey) +
		uvarintLen(uint64(len(e.Payload)+1)) + len(e.Payload) + 65 + 16
}

// add appends e, whose position must follow the segment's last one.
func (b *segmentBuilder) add(e *eventstore.Event) {
	if len(b.lens) == 0 {
		b.first = e.Position
		b.base = e.OccurredAt.Unix()
	}
	n := len(b.recs)
	if b.format == segmentFormat2 {
		b.recs = appendRecord2(b.recs, e, b.base, b.hashes)
	} else {
		b.recs = appendRecord3(b.recs, e, b.base, b.hashes)
	}
	b.lens = append(b.lens, uint32(len(b.recs)-n))
	b.hashes = append(b.hashes, e.Hash)
}

// bytes encodes the segment into dst (reset first) and returns it,
// compressing its records with dict (nil: none).
func (b *segmentBuilder) bytes(dst []byte, dict *segDict) []byte {
	raw := b.raw[:0]
	for _, l := range b.lens {
		raw = binary.AppendUvarint(raw, uint64(l))
	}
	raw = binary.AppendVarint(raw, b.base)
	raw = append(raw, b.recs...)
	b.raw = raw
	id := int64(0)
	if dict != nil {
		id = dict.id
	}
	format, method := byte(segmentFormat3), byte(methodZstd)
	if b.format == segmentFormat2 {
		format, method = segmentFormat2, methodDeflate
	}
	dst = append(dst[:0], format)
	dst = binary.AppendUvarint(dst, uint64(len(b.lens)))
	dst = binary.AppendUvarint(dst, uint64(id))
	dst = binary.AppendUvarint(dst, uint64(len(raw)))
	var z []byte
	if format == segmentFormat2 {
		z = b.compress(raw, dict)
	} else {
		z = b.compressZstd(raw, dict)
	}
	if z != nil && len(z) < len(raw) {
		dst = append(dst, method)
		return append(dst, z...)
	}
	dst = append(dst, methodStored)
	return append(dst, raw...)
}

// compressZstd compresses raw with dict preset (format 3), returning nil if
// it cannot.
func (b *segmentBuilder) compressZstd(raw []byte, dict *segDict) []byte {
	if b.zw == nil || b.zwDict != dict {
		opts := []zstd.EOption{zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1),
			zstd.WithEncoderCRC(false), zstd.WithLowerEncoderMem(true)}
		if dict != nil {
			opts = append(opts, zstd.WithEncoderDictRaw(uint32(dict.id), dict.data))
		}
		zw, err := zstd.NewWriter(nil, opts...)
		if err != nil {
			return nil
		}
		b.zw, b.zwDict = zw, dict
	}
	b.zbuf = b.zw.EncodeAll(raw, b.zbuf[:0])
	return b.zbuf
}

// compress deflates raw with dict preset, returning nil if it cannot.
func (b *segmentBuilder) compress(raw []byte, dict *segDict) []byte {
	b.out.Reset()
	if b.fw == nil || b.fwDict != dict {
		var d []byte
		if dict != nil {
			d = dict.data
		}
		fw, err := flate.NewWriterDict(&b.out, segmentLevel, d)
		if err != nil {
			return nil
		}
		b.fw, b.fwDict = fw, dict
	} else {
		b.fw.Reset(&b.out)
	}
	if _, err := b.fw.Write(raw); err != nil {
		return nil
	}
	if err := b.fw.Close(); err != nil {
		return nil
	}
	return b.out.Bytes()
}

// store inserts the segment, if it holds any event, with insert
// (sqlInsertSegment), compressed with dict, and empties the builder.
func (b *segmentBuilder) store(ctx context.Context, insert func(ctx context.Context, args ...any) (sql.Result, error), dict *segDict) error {
	if b.len() == 0 {
		return nil
	}
	b.buf = b.bytes(b.buf, dict)
	last := b.first + int64(b.len()) - 1
	if _, err := insert(ctx, b.first, last, b.buf); err != nil {
		return fmt.Errorf("write segment %d-%d: %w", b.first, last, err)
	}
	b.reset()
	return nil
}

// reset empties the builder, keeping its memory.
func (b *segmentBuilder) reset() {
	b.first, b.base, b.lens, b.hashes, b.recs = 0, 0, b.lens[:0], b.hashes[:0], b.recs[:0]
}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendRecord2 encodes one event's format-2 record; base is the segment's
// base seconds and hashes those of the segment's earlier records.
func appendRecord2(b []byte, e *eventstore.Event, base int64, hashes [][32]byte) []byte {
	b = appendRecordFields(b, e, base)
	b = appendPrevHash(b, e.PrevHash, hashes)
	return append(b, e.Hash[:]...)
}

// appendRecord3 encodes one event's format-3 record: a format-2 record
// whose hash is cut to its first hashCheckLen bytes (a reader computes the
// hash from the record and checks it against them).
func appendRecord3(b []byte, e *eventstore.Event, base int64, hashes [][32]byte) []byte {
	b = appendRecordFields(b, e, base)
	b = appendPrevHash(b, e.PrevHash, hashes)
	return append(b, e.Hash[:hashCheckLen]...)
}

// appendRecordFields appends the fields formats 2 and 3 encode alike: all
// but the hashes.
func appendRecordFields(b []byte, e *eventstore.Event, base int64) []byte {
	b = appendStr(b, e.ID)
	b = appendStr(b, e.Stream)
	b = binary.AppendUvarint(b, uint64(e.Version))
	b = appendStr(b, e.Type)
	b = binary.AppendUvarint(b, uint64(e.SchemaVersion))
	t := e.OccurredAt
	b = binary.AppendVarint(b, t.Unix()-base)
	if ns := uint64(t.Nanosecond()); ns%1000 == 0 {
		b = binary.AppendUvarint(b, (ns/1000)<<1)
	} else {
		b = binary.AppendUvarint(b, ns<<1|1)
	}
	b = appendStr(b, e.CausationID)
	b = appendStr(b, e.CorrelationID)
	b = appendStr(b, e.IdempotencyKey)
	return appendPayload(b, e.Payload)
}

// appendPrevHash appends the previous-hash code of a record preceded in
// its segment by records with the given hashes.
func appendPrevHash(b []byte, prev [32]byte, hashes [][32]byte) []byte {
	if prev == ([32]byte{}) {
		return append(b, 0)
	}
	for k := 0; k < len(hashes) && k < 254; k++ {
		if hashes[len(hashes)-1-k] == prev {
			return append(b, byte(2+k))
		}
	}
	b = append(b, 1)
	return append(b, prev[:]...)
}

// appendPayload appends the payload coding of p.
func appendPayload(b []byte, p []byte) []byte {
	if len(p) == 0 {
		return append(b, 0) // read back as nil, as format 1 is
	}
	b = binary.AppendUvarint(b, uint64(len(p))+1)
	lit := 0 // start of the literal run not yet written
	for i := 0; i < len(p); i++ {
		if p[i] != '"' {
			continue
		}
		j := i + 1
		for j < len(p) && isBase64(p[j]) {
			j++
		}
		k := j
		for k < len(p) && k-j < 2 && p[k] == '=' {
			k++
		}
		s := p[i+1 : k]
		if k >= len(p) || p[k] != '"' || len(s) < minBase64 || len(s)%4 != 0 {
			i = j - 1
			continue
		}
		d, ok := decodeBase64(s)
		if !ok {
			i = j - 1
			continue
		}
		if i+1 > lit {
			b = binary.AppendUvarint(b, uint64(i+1-lit)<<1)
			b = append(b, p[lit:i+1]...)
		}
		b = binary.AppendUvarint(b, uint64(len(d))<<1|1)
		b = append(b, d...)
		lit, i = k, k // the closing quote starts the next literal run
	}
	if lit < len(p) {
		b = binary.AppendUvarint(b, uint64(len(p)-lit)<<1)
		b = append(b, p[lit:]...)
	}
	return b
}

func isBase64(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/'
}

// decodeBase64 decodes s (standard padded base64) if encoding the result
// gives s back.
func decodeBase64(s []byte) ([]byte, bool) {
	d := make([]byte, base64.StdEncoding.DecodedLen(len(s)))
	n, err := base64.StdEncoding.Decode(d, s)
	if err != nil || n == 0 {
		return nil, false
	}
	d = d[:n]
	if base64.StdEncoding.EncodedLen(n) != len(s) {
		return nil, false
	}
	var chk [4]byte
	// Compare group by group without allocating the re-encoding.
	for g := 0; g < n; g += 3 {
		base64.StdEncoding.Encode(chk[:], d[g:min(g+3, n)])
		if !bytes.Equal(chk[:], s[g/3*4:g/3*4+4]) {
			return nil, false
		}
	}
	return d, true
}

// segment is a decoded segment header over its stored bytes (format 1) or
// over its decompressed records (format 2).
type segment struct {
	format byte
	first  int64
	n      int
	table  []byte // format 1: n u32 offsets
	recs   []byte // the records
	// formats 2 and 3
	offs []uint32 // n+1 record boundaries in recs
	base int64
	// format 3: the hashes of the records decoded so far (a record's
	// previous-hash reference names an earlier record's hash, which format
	// 3 does not store in full)
	hashes []segHash
}

// segHash is a record's computed hash, once known.
type segHash struct {
	known bool
	hash  [32]byte
}

// parseSegment checks the header of the stored segment at first and, for
// format 2, decompresses its records with the dictionaries of dicts.
func parseSegment(first int64, blob []byte, dicts *dictCache) (segment, error) {
	if len(blob) < 2 {
		return segment{}, fmt.Errorf("%w at position %d: unknown format", errSegment, first)
	}
	switch blob[0] {
	case segmentFormat1:
		return parseSegment1(first, blob)
	case segmentFormat2, segmentFormat3:
		return parseSegment2(first, blob, dicts)
	}
	return segment{}, fmt.Errorf("%w at position %d: unknown format %d", errSegment, first, blob[0])
}

func parseSegment1(first int64, blob []byte) (segment, error) {
	n, k := binary.Uvarint(blob[1:])
	if k <= 0 || n == 0 || n > uint64(len(blob)) {
		return segment{}, fmt.Errorf("%w at position %d: bad event count", errSegment, first)
	}
	rest := blob[1+k:]
	if uint64(len(rest)) < 4*n {
		return segment{}, fmt.Errorf("%w at position %d: short offset table", errSegment, first)
	}
	return segment{format: segmentFormat1, first: first, n: int(n), table: rest[:4*n], recs: rest[4*n:]}, nil
}

// parseSegment2 parses a segment of format 2 or 3 (blob[0]), which share
// their header and differ in the compression and in the records' hashes.
func parseSegment2(first int64, blob []byte, dicts *dictCache) (segment, error) {
	bad := func(what string) (segment, error) {
		return segment{}, fmt.Errorf("%w at position %d: %s", errSegment, first, what)
	}
	format := blob[0]
	d := recordDecoder{b: blob[1:]}
	n, id, size := d.uvarint(), d.uvarint(), d.uvarint()
	method := d.take(1)
	if d.bad || n == 0 || n > segmentMaxEvents || len(method) != 1 {
		return bad("bad header")
	}
	stored := d.b
	// The records take at least two bytes an event; several events fit
	// segmentMaxRaw, and no block expands past what its compression can
	// expand it to.
	ratio := uint64(maxInflateRatio)
	if format == segmentFormat3 {
		ratio = maxZstdRatio
	}
	if size < 2*n || (n > 1 && size > segmentMaxRaw) || size > ratio*uint64(len(stored))+64 || size > maxSegmentRaw {
		return bad(fmt.Sprintf("records of %d bytes", size))
	}
	var raw []byte
	switch m := method[0]; {
	case m == methodStored:
		if uint64(len(stored)) != size {
			return bad("stored records of the wrong length")
		}
		raw = stored
	case m == methodDeflate && format == segmentFormat2:
		var dict []byte
		if id != 0 {
			var err error
			if dict, err = dicts.get(int64(id)); err != nil {
				return segment{}, fmt.Errorf("segment at position %d: %w", first, err)
			}
		}
		var err error
		if raw, err = inflate(stored, dict, int(size)); err != nil {
			return bad(err.Error())
		}
	case m == methodZstd && format == segmentFormat3:
		dec, err := dicts.zstdDecoder(int64(id))
		if err != nil {
			return segment{}, fmt.Errorf("segment at position %d: %w", first, err)
		}
		if raw, err = unzstd(dec, stored, id, int(size)); err != nil {
			return bad(err.Error())
		}
	default:
		return bad("unknown compression")
	}
	seg := segment{format: format, first: first, n: int(n), offs: make([]uint32, n+1)}
	if format == segmentFormat3 {
		seg.hashes = make([]segHash, n)
	}
	d = recordDecoder{b: raw}
	var end uint64
	for i := range seg.n {
		end += d.uvarint()
		seg.offs[i+1] = uint32(min(end, 1<<32-1))
	}
	seg.base = d.varint()
	if d.bad || end != uint64(len(d.b)) {
		return bad("record lengths do not add up")
	}
	seg.recs = d.b
	return seg, nil
}

// unzstd decompresses the zstd frame z, compressed with dictionary id (0:
// none), into exactly size bytes: the frame must not say it holds another
// size, and dec writes no more than that.
func unzstd(dec *zstd.Decoder, z []byte, id uint64, size int) ([]byte, error) {
	var h zstd.Header
	if err := h.Decode(z); err != nil {
		return nil, fmt.Errorf("records do not decompress: %v", err)
	}
	if h.HasFCS && h.FrameContentSize != uint64(size) || uint64(h.DictionaryID) != id {
		return nil, fmt.Errorf("records do not decompress to %d bytes with dictionary %d", size, id)
	}
	raw, err := dec.DecodeAll(z, make([]byte, 0, size))
	if err != nil || len(raw) != size {
		return nil, fmt.Errorf("records do not decompress to %d bytes: %v", size, err)
	}
	return raw, nil
}

// inflaters recycles DEFLATE readers (a reader holds a 32 KiB window).
var inflaters sync.Pool

// inflate decompresses z, with dict preset, into exactly size bytes.
func inflate(z, dict []byte, size int) ([]byte, error) {
	src := bytes.NewReader(z)
	fr, _ := inflaters.Get().(io.ReadCloser)
	if fr == nil {
		fr = flate.NewReaderDict(src, dict)
	} else if err := fr.(flate.Resetter).Reset(src, dict); err != nil {
		return nil, err
	}
	defer inflaters.Put(fr)
	raw := make([]byte, size)
	if _, err := io.ReadFull(fr, raw); err != nil {
		return nil, fmt.Errorf("records do not decompress to %d bytes: %v", size, err)
	}
	var more [1]byte
	if k, err := fr.Read(more[:]); k != 0 || err != io.EOF {
		return nil, fmt.Errorf("records decompress past %d bytes", size)
	}
	return raw, nil
}

// last is the position of the segment's last event.
func (s segment) last() int64 { return s.first + int64(s.n) - 1 }

// at decodes event i of the segment.
func (s segment) at(i int) (eventstore.Event, error) {
	switch s.format {
	case segmentFormat2:
		return s.at2(i)
	case segmentFormat3:
		return s.at3(i)
	}
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

// at2 decodes event i of a format-2 segment.
func (s segment) at2(i int) (eventstore.Event, error) {
	e, d, sec, ns := s.fields(i)
	switch code := d.take(1); {
	case len(code) == 0:
	case code[0] == 1:
		copy(e.PrevHash[:], d.take(32))
	case code[0] >= 2:
		j := i - 1 - int(code[0]-2)
		if j < 0 || s.offs[j+1]-s.offs[j] < 32 {
			d.bad = true
			break
		}
		copy(e.PrevHash[:], s.recs[s.offs[j+1]-32:s.offs[j+1]])
	}
	copy(e.Hash[:], d.take(32))
	if d.bad || len(d.b) != 0 || ns >= 1e9 {
		return eventstore.Event{}, fmt.Errorf("%w: record of position %d does not decode", errSegment, e.Position)
	}
	e.OccurredAt = time.Unix(sec, int64(ns)).UTC()
	return e, nil
}

// at3 decodes event i of a format-3 segment and computes its hash, which
// must begin with the record's hash check. A previous-hash reference to an
// earlier record of the segment is that record's computed hash.
func (s segment) at3(i int) (eventstore.Event, error) {
	e, d, sec, ns := s.fields(i)
	switch code := d.take(1); {
	case len(code) == 0:
	case code[0] == 1:
		copy(e.PrevHash[:], d.take(32))
	case code[0] >= 2:
		j := i - 1 - int(code[0]-2)
		if j < 0 {
			d.bad = true
			break
		}
		prev, err := s.hashOf(j)
		if err != nil {
			return eventstore.Event{}, err
		}
		e.PrevHash = prev
	}
	check := d.take(hashCheckLen)
	if d.bad || len(d.b) != 0 || ns >= 1e9 {
		return eventstore.Event{}, fmt.Errorf("%w: record of position %d does not decode", errSegment, e.Position)
	}
	e.OccurredAt = time.Unix(sec, int64(ns)).UTC()
	e.Hash = eventstore.ComputeHash(e.PrevHash, e.Stream, e.Version, e.EventData)
	if !bytes.Equal(e.Hash[:hashCheckLen], check) {
		return eventstore.Event{}, fmt.Errorf("%w: the event at position %d (stream %s version %d) does not match its stored hash: it was altered",
			errSegment, e.Position, e.Stream, e.Version)
	}
	s.hashes[i] = segHash{known: true, hash: e.Hash}
	return e, nil
}

// hashOf returns the computed hash of record j of a format-3 segment,
// decoding it if it was not yet.
func (s segment) hashOf(j int) ([32]byte, error) {
	if h := s.hashes[j]; h.known {
		return h.hash, nil
	}
	e, err := s.at3(j)
	return e.Hash, err
}

// fields decodes the fields of record i that formats 2 and 3 encode alike,
// returning the decoder positioned at the hashes and the time's seconds and
// nanoseconds, which the caller checks and sets.
func (s segment) fields(i int) (e eventstore.Event, d *recordDecoder, sec int64, ns uint64) {
	e = eventstore.Event{Position: s.first + int64(i)}
	d = &recordDecoder{b: s.recs[s.offs[i]:s.offs[i+1]]}
	e.ID = d.str()
	e.Stream = d.str()
	e.Version = int64(d.uvarint())
	e.Type = d.str()
	e.SchemaVersion = int(d.uvarint())
	sec = d.varint() + s.base
	ns = d.uvarint()
	if ns&1 == 0 {
		ns = (ns >> 1) * 1000
	} else {
		ns >>= 1
	}
	e.CausationID = d.str()
	e.CorrelationID = d.str()
	e.IdempotencyKey = d.str()
	e.Payload = d.payload()
	return e, d, sec, ns
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

// payload reads a payload coding (appendPayload). The rebuilt payload can
// be at most twice the record's remaining bytes (base64 makes three bytes
// four, and each part has a tag), which bounds its allocation.
func (d *recordDecoder) payload() []byte {
	size := d.uvarint()
	if size == 0 || d.bad {
		return nil
	}
	size--
	if size > 2*uint64(len(d.b)) {
		d.bad, d.b = true, nil
		return nil
	}
	p := make([]byte, 0, size)
	for uint64(len(p)) < size && !d.bad {
		tag := d.uvarint()
		part := d.take(tag >> 1)
		switch {
		case len(part) == 0:
			d.bad = true
		case tag&1 == 0:
			p = append(p, part...)
		case uint64(len(p)+base64.StdEncoding.EncodedLen(len(part))) > size:
			d.bad = true
		default:
			p = base64.StdEncoding.AppendEncode(p, part)
		}
	}
	if d.bad || uint64(len(p)) != size {
		d.bad, d.b = true, nil
		return nil
	}
	return p
}

// loadSegment reads the stored segment holding pos with st (sqlSegmentAt).
func loadSegment(ctx context.Context, st *sql.Stmt, dicts *dictCache, pos int64) (segment, error) {
	var first int64
	var blob []byte
	if err := st.QueryRowContext(ctx, pos).Scan(&first, &blob); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return segment{}, fmt.Errorf("position %d is not stored", pos)
		}
		return segment{}, err
	}
	return parseSegmentHolding(first, blob, dicts, pos)
}

// parseSegmentHolding parses the stored segment at first, which a query
// found as the one holding pos, and checks that it does.
func parseSegmentHolding(first int64, blob []byte, dicts *dictCache, pos int64) (segment, error) {
	seg, err := parseSegment(first, blob, dicts)
	if err != nil {
		return segment{}, err
	}
	if pos < seg.first || pos > seg.last() {
		return segment{}, fmt.Errorf("position %d is not stored", pos)
	}
	return seg, nil
}

// loadEvent reads the event at pos with st (sqlSegmentAt).
func loadEvent(ctx context.Context, st *sql.Stmt, dicts *dictCache, pos int64) (eventstore.Event, error) {
	seg, err := loadSegment(ctx, st, dicts, pos)
	if err != nil {
		return eventstore.Event{}, err
	}
	return seg.at(int(pos - seg.first))
}

// loadEvents reads the events at the given positions, in that order, with
// st (sqlSegmentAt), reading each segment once for a run of positions in
// it.
func loadEvents(ctx context.Context, st *sql.Stmt, dicts *dictCache, positions []int64, out []eventstore.Event) ([]eventstore.Event, error) {
	var seg segment
	for _, pos := range positions {
		if seg.n == 0 || pos < seg.first || pos > seg.last() {
			var err error
			if seg, err = loadSegment(ctx, st, dicts, pos); err != nil {
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
func readSegments(ctx context.Context, st *sql.Stmt, dicts *dictCache, after, upto int64, limit int) ([]eventstore.Event, error) {
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
		seg, err := parseSegment(first, blob, dicts)
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
