package domain

import (
	"encoding/json"
	"fmt"
)

//go:generate go test -run=TestCodecFieldNames -update-codec-fields .

// Codec turns events into their stored form (type name, schema version,
// JSON payload) and back. It is the one seam between the domain's types
// and the bytes in the log, so that another implementation (a generated
// one, say) could replace JSONCodec in one place and be held to the same
// tests (codec_fuzz_test.go) without its callers changing.
type Codec interface {
	// Encode returns the stored form of e, written with
	// CurrentSchemaVersion.
	Encode(e Event) (typ string, schemaVersion int, payload []byte, err error)
	// Decode turns a stored event back into its domain type; an unknown
	// type or version is an error.
	Decode(typ string, schemaVersion int, payload []byte) (Event, error)
	// LedgerFacts returns what Decode followed by LedgerFactsOf returns,
	// errors included, for the projections that read only money and
	// openings.
	LedgerFacts(typ string, schemaVersion int, payload []byte) (LedgerFacts, error)
}

// JSONCodec is the codec of the log: encoding/json's format, with
// hand-written encoders for the payment events (fastencode.go) and a
// hand-written scanner for the ledger facts (fastdecode.go), both taking
// their member names from the table generated from the struct tags
// (codec_fields.go), so a renamed tag cannot leave them behind. It is kept
// over a generated codec because a generated one was neither
// byte-identical to encoding/json nor as fast (docs/performance.md, "Event
// codec: generated vs hand-written"); the bytes must not depend on which
// path wrote an event, since the log keeps them for good.
type JSONCodec struct{}

var _ Codec = JSONCodec{}

// Encode implements Codec: the hand-written encoder when the event has one,
// encoding/json otherwise and for the values the hand-written one declines.
func (JSONCodec) Encode(e Event) (typ string, schemaVersion int, payload []byte, err error) {
	if n := encSize(e); n > 0 {
		if b, ok := encAppendEvent(make([]byte, 0, n), e); ok {
			return e.EventType(), CurrentSchemaVersion, b, nil
		}
	}
	payload, err = json.Marshal(e)
	if err != nil {
		return "", 0, nil, fmt.Errorf("encode %s: %w", e.EventType(), err)
	}
	return e.EventType(), CurrentSchemaVersion, payload, nil
}

// Decode implements Codec with the decoder that decoders registers for the
// type and version.
func (JSONCodec) Decode(typ string, schemaVersion int, payload []byte) (Event, error) {
	dec, ok := decoders[key(typ, schemaVersion)]
	if !ok {
		return nil, fmt.Errorf("unknown event type %s version %d", typ, schemaVersion)
	}
	e, err := dec(payload)
	if err != nil {
		return nil, fmt.Errorf("decode %s v%d: %w", typ, schemaVersion, err)
	}
	return e, nil
}

// LedgerFacts implements Codec: the fast scanner when it is sure of the
// answer, Decode otherwise (see DecodeLedgerFacts).
func (c JSONCodec) LedgerFacts(typ string, schemaVersion int, payload []byte) (LedgerFacts, error) {
	if schemaVersion == 1 {
		if f, ok := fastLedgerFacts(typ, payload); ok {
			return f, nil
		}
	}
	e, err := c.Decode(typ, schemaVersion, payload)
	if err != nil {
		return LedgerFacts{}, err
	}
	return LedgerFactsOf(e), nil
}
