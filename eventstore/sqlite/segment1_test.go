package sqlite

import (
	"encoding/binary"

	"github.com/payledger/payledger/eventstore"
)

// The format-1 encoder, which wrote the segments of logs before format 2:
// kept to write such segments in tests (a log of both formats must read
// and verify as one).

// segment1Bytes encodes events, consecutive in position, as a format-1
// segment.
func segment1Bytes(events []eventstore.Event) []byte {
	var recs []byte
	offs := make([]uint32, 0, len(events))
	for i := range events {
		offs = append(offs, uint32(len(recs)))
		recs = appendRecord1(recs, &events[i])
	}
	dst := []byte{segmentFormat1}
	dst = binary.AppendUvarint(dst, uint64(len(offs)))
	for _, o := range offs {
		dst = binary.LittleEndian.AppendUint32(dst, o)
	}
	return append(dst, recs...)
}

// appendRecord1 encodes one event's format-1 record.
func appendRecord1(b []byte, e *eventstore.Event) []byte {
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

// segment1MaxBytes bounded a format-1 segment's encoding, as
// segmentMaxEvents bounded its events: three such segments fit one 16 KiB
// page.
const segment1MaxBytes = 5300

// segment1Fits reports whether the format-1 writer would have added e to a
// segment holding events.
func segment1Fits(events []eventstore.Event, recsLen int, e *eventstore.Event) bool {
	n := len(events)
	if n == 0 {
		return true
	}
	size := 1 + uvarintLen(uint64(n+1)) + 4*(n+1) + recsLen + len(appendRecord1(nil, e))
	return n < segmentMaxEvents && size <= segment1MaxBytes
}
