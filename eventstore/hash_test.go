package eventstore

import (
	"crypto/sha256"
	"encoding/binary"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// referenceHash is the original, piece-by-piece definition of the hash
// (kept here as the specification): ComputeHash must give exactly its
// result, or every stored chain would stop verifying.
func referenceHash(prev [32]byte, stream string, version int64, e EventData) [32]byte {
	h := sha256.New()
	var buf [8]byte
	writeStr := func(s string) {
		binary.BigEndian.PutUint64(buf[:], uint64(len(s)))
		h.Write(buf[:])
		h.Write([]byte(s))
	}
	writeInt := func(v int64) {
		binary.BigEndian.PutUint64(buf[:], uint64(v))
		h.Write(buf[:])
	}
	h.Write([]byte("payledger/event/v1"))
	h.Write(prev[:])
	writeStr(stream)
	writeInt(version)
	writeStr(e.ID)
	writeStr(e.Type)
	writeInt(int64(e.SchemaVersion))
	writeStr(e.OccurredAt.UTC().Format(time.RFC3339Nano))
	writeStr(e.CausationID)
	writeStr(e.CorrelationID)
	writeStr(e.IdempotencyKey)
	writeStr(string(e.Payload))
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

func TestComputeHashMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	str := func() string {
		if r.IntN(4) == 0 {
			return ""
		}
		return strings.Repeat("ab\x00é", r.IntN(20))
	}
	zones := []*time.Location{time.UTC, time.FixedZone("x", 8*3600), time.FixedZone("y", -5*3600-1800)}
	for i := range 5000 {
		var prev [32]byte
		for j := range prev {
			prev[j] = byte(r.IntN(256))
		}
		payload := make([]byte, r.IntN(3)*r.IntN(100_000)) // some past the pooled size
		for j := range payload {
			payload[j] = byte(r.IntN(256))
		}
		if r.IntN(5) == 0 {
			payload = nil
		}
		e := EventData{ID: str(), Type: str(), SchemaVersion: r.IntN(5) - 1,
			OccurredAt:  time.Unix(r.Int64N(1<<40)-1<<39, r.Int64N(1e9)).In(zones[r.IntN(len(zones))]),
			CausationID: str(), CorrelationID: str(), IdempotencyKey: str(), Payload: payload}
		if r.IntN(10) == 0 {
			e.OccurredAt = e.OccurredAt.Truncate(time.Second)
		}
		stream, version := str(), r.Int64N(1<<50)-1
		if got, want := ComputeHash(prev, stream, version, e), referenceHash(prev, stream, version, e); got != want {
			t.Fatalf("case %d: ComputeHash %x, reference %x", i, got, want)
		}
	}
}

func BenchmarkComputeHash(b *testing.B) {
	e := EventData{ID: "01JBCDEFGHJKMNPQRSTVWXYZ00", Type: "PaymentConfirmed", SchemaVersion: 1,
		OccurredAt: time.Now(), CorrelationID: "01JBCDEFGHJKMNPQRSTVWXYZ00", Payload: make([]byte, 500)}
	var prev [32]byte
	b.Run("reference", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			prev = referenceHash(prev, "account-01JBCDEFGHJKMNPQRSTVWXYZ00", 7, e)
		}
	})
	b.Run("ComputeHash", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			prev = ComputeHash(prev, "account-01JBCDEFGHJKMNPQRSTVWXYZ00", 7, e)
		}
	})
}
