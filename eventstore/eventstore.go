// Package eventstore defines the Store port every event-log adapter
// implements, the event envelope, and the hash chain (R3) shared by all
// adapters so that a log written by one verifies the same way in another.
//
// The port imports nothing of the project: domain payloads travel as opaque
// JSON bytes, and adapters live in sub-packages (sqlite, later postgres and
// kurrent) that all pass the conformance suite in eventstore/storetest.
package eventstore

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Expected-version sentinels for Append. Any other non-negative value is the
// exact number of events the stream must hold when the append commits, so
// NoStream (0) and "exactly zero events" are the same condition.
const (
	// Any skips the optimistic-concurrency check.
	Any int64 = -1
	// NoStream requires that the stream has no events yet.
	NoStream int64 = 0
)

// Limits that bound every read so that no caller can ask an adapter for an
// unbounded result set.
const (
	// MaxReadBatch is the largest number of events one read returns.
	MaxReadBatch = 10000
	// MaxAppendBatch is the largest number of events one Append may carry.
	MaxAppendBatch = 1000
)

// Errors shared by every adapter. Adapters wrap them with context; callers
// test with errors.Is.
var (
	// ErrVersionConflict means the stream did not have the expected version.
	ErrVersionConflict = errors.New("eventstore: version conflict")
	// ErrDeleteForbidden means something tried to delete or rewrite events,
	// which the retention rule (R2) forbids.
	ErrDeleteForbidden = errors.New("eventstore: events are retained and cannot be deleted or changed")
	// ErrClosed means the store was closed.
	ErrClosed = errors.New("eventstore: store closed")
	// ErrInvalidAppend means the append request itself is malformed (empty,
	// too large, missing ids, duplicate ids, bad stream name).
	ErrInvalidAppend = errors.New("eventstore: invalid append")
	// ErrIDReused means an event id already stored is being appended again
	// with different content or in a different place.
	ErrIDReused = errors.New("eventstore: event id reused with other content")
	// ErrUnavailable: the store cannot write now for a reason of its
	// storage (the disk is full or read-only, an I/O error, a failed
	// fsync); nothing of the append was acknowledged, and an operator can
	// act on it.
	ErrUnavailable = errors.New("eventstore: storage unavailable for writes")
	// ErrConditionFailed means a stream an AppendIf's condition named was
	// not at the required version. It wraps ErrVersionConflict, so a caller
	// that only reloads and retries need not tell the two apart.
	ErrConditionFailed = fmt.Errorf("%w: a condition's stream moved", ErrVersionConflict)
)

// EventData is what a writer hands to Append: everything about an event that
// the writer decides. Stream, version, position and hashes are assigned by
// the store.
type EventData struct {
	// ID is a ULID string (26 characters), unique across the whole log.
	// Re-appending the same ids to the same stream at the same place is
	// idempotent: Append returns the stored events instead of failing.
	ID string
	// Type is an explicit, stable event type name such as "PaymentConfirmed".
	Type string
	// SchemaVersion is the version of Type's payload layout (1, 2, ...).
	SchemaVersion int
	// OccurredAt comes from the writer's injected clock; stored as UTC with
	// nanosecond precision.
	OccurredAt time.Time
	// CausationID and CorrelationID link events to the command or event that
	// caused them. Optional.
	CausationID   string
	CorrelationID string
	// IdempotencyKey is the client key of the command that produced the
	// event. Optional.
	IdempotencyKey string
	// Payload is the JSON body of the event.
	Payload []byte
}

// Event is a committed event as read back from a store.
type Event struct {
	EventData
	// Stream is the stream name, for example "account-01J...".
	Stream string
	// Version is the 1-based position of the event within its stream.
	Version int64
	// Position is the 1-based position in the global log. Positions become
	// visible in commit order, so a subscriber never skips an event.
	Position int64
	// PrevHash is the Hash of the previous event of the same stream, or 32
	// zero bytes for the first event of a stream.
	PrevHash [32]byte
	// Hash is SHA-256 over PrevHash and the canonical bytes of the event.
	Hash [32]byte
}

// AppendResult tells the writer where its events landed.
type AppendResult struct {
	// Events are the committed events, in order, with versions, positions
	// and hashes filled in.
	Events []Event
}

// LastVersion returns the stream version after the append.
func (r AppendResult) LastVersion() int64 {
	if len(r.Events) == 0 {
		return 0
	}
	return r.Events[len(r.Events)-1].Version
}

// LastPosition returns the global position of the last appended event.
func (r AppendResult) LastPosition() int64 {
	if len(r.Events) == 0 {
		return 0
	}
	return r.Events[len(r.Events)-1].Position
}

// Snapshot is an aggregate's state folded from its stream up to Version,
// kept beside the log so that loading the aggregate reads the snapshot and
// the events after it. It never replaces events: a reader that does not
// trust it (verify, rebuild) reads the stream. EventHash is the Hash of
// the stream's event at Version, which the loader checks against the log;
// Schema is the aggregate's snapshot schema, which a rule change raises.
type Snapshot struct {
	Stream    string
	Version   int64
	EventHash [32]byte
	Schema    int
	Payload   []byte
}

// MaxSnapshotBytes bounds one snapshot's payload.
const MaxSnapshotBytes = 16 << 20

// ValidateSnapshot checks a snapshot before an adapter stores it.
func ValidateSnapshot(s Snapshot) error {
	switch {
	case s.Stream == "" || len(s.Stream) > 200:
		return errors.New("eventstore: snapshot stream name must be 1..200 bytes")
	case s.Version < 1:
		return fmt.Errorf("eventstore: snapshot of %s at version %d", s.Stream, s.Version)
	case len(s.Payload) == 0 || len(s.Payload) > MaxSnapshotBytes:
		return fmt.Errorf("eventstore: snapshot of %s is %d bytes (want 1..%d)", s.Stream, len(s.Payload), MaxSnapshotBytes)
	}
	return nil
}

// Store is the event-log port. Every method is safe for concurrent use.
// There is deliberately no Delete: events are retained (R2).
type Store interface {
	// Append atomically appends events to stream if the stream holds exactly
	// expected events (or expected is Any). It returns only after the events
	// are durable. A mismatch returns an error wrapping ErrVersionConflict
	// and appends nothing. Appending events whose ids are already stored at
	// the same place in the same stream returns those stored events; any
	// other reuse of a stored id is ErrIDReused and appends nothing.
	// Cancelling ctx after the request reached the writer does not withdraw
	// it: the append may still commit, and a retry with the same ids is
	// answered idempotently.
	Append(ctx context.Context, stream string, expected int64, events []EventData) (AppendResult, error)
	// ReadStream returns up to limit events of stream with Version >= from,
	// in ascending order. A missing stream yields no events and no error.
	// A limit <= 0 or above MaxReadBatch reads MaxReadBatch events.
	ReadStream(ctx context.Context, stream string, from int64, limit int) ([]Event, error)
	// ReadStreamBackward returns up to limit events of stream with
	// Version <= from, newest first. from < 1 means "from the end".
	ReadStreamBackward(ctx context.Context, stream string, from int64, limit int) ([]Event, error)
	// ReadAll returns up to limit events of the global log with
	// Position > after, in ascending order.
	ReadAll(ctx context.Context, after int64, limit int) ([]Event, error)
	// Head returns the global position of the last committed event (0 when
	// the log is empty).
	Head(ctx context.Context) (int64, error)
	// StreamVersion returns the number of events in stream (0 when missing).
	StreamVersion(ctx context.Context, stream string) (int64, error)
	// Subscribe delivers every event with Position > after to fn, in order:
	// first the stored ones (catch-up), then new ones as they commit (live).
	// It returns when ctx is done (with ctx.Err()), when fn returns an error
	// (with that error), or when the store is closed (ErrClosed).
	Subscribe(ctx context.Context, after int64, fn func(Event) error) error
	// SaveSnapshot keeps s as its stream's snapshot, unless the one kept
	// is at a later version. It is not durable at once: a snapshot lost
	// in a crash only makes the next load read more of the stream.
	SaveSnapshot(ctx context.Context, s Snapshot) error
	// LoadSnapshot returns the stream's latest snapshot; ok is false when
	// it has none.
	LoadSnapshot(ctx context.Context, stream string) (s Snapshot, ok bool, err error)
	// Close releases the store. Appends after Close fail with ErrClosed.
	Close() error
}

// ValidateAppend checks the parts of an append request that do not depend
// on stored state. Adapters call it before touching storage so that every
// adapter refuses the same malformed requests.
func ValidateAppend(stream string, expected int64, events []EventData) error {
	if stream == "" || len(stream) > 200 {
		return fmt.Errorf("%w: stream name must be 1..200 bytes", ErrInvalidAppend)
	}
	if expected < Any {
		return fmt.Errorf("%w: expected version %d", ErrInvalidAppend, expected)
	}
	if len(events) == 0 || len(events) > MaxAppendBatch {
		return fmt.Errorf("%w: %d events (want 1..%d)", ErrInvalidAppend, len(events), MaxAppendBatch)
	}
	seen := make(map[string]struct{}, len(events))
	for i, e := range events {
		if e.ID == "" || e.Type == "" || e.SchemaVersion < 1 {
			return fmt.Errorf("%w: event %d needs an id, a type and a schema version", ErrInvalidAppend, i)
		}
		// The hash covers OccurredAt as RFC 3339, which has four-digit years.
		if y := e.OccurredAt.UTC().Year(); y < 1 || y > 9999 {
			return fmt.Errorf("%w: event %d occurred in year %d (want 1..9999)", ErrInvalidAppend, i, y)
		}
		if _, dup := seen[e.ID]; dup {
			return fmt.Errorf("%w: event id %s appears twice", ErrInvalidAppend, e.ID)
		}
		seen[e.ID] = struct{}{}
	}
	return nil
}

// Condition requires that Stream, another stream than the one appended
// to, holds exactly Version events (0: none) when the append commits.
type Condition struct {
	Stream  string
	Version int64
}

// MaxConditions bounds the conditions of one AppendIf.
const MaxConditions = 8

// ConditionalStore is a Store whose appends can also depend on other
// streams: a decision read from another stream's state (a payment to a
// payee that was not suspended) commits only if that stream has not moved
// since, which several writers of one log need (their locks do not see
// each other). The conditions are checked in the append's transaction,
// under the same order as the positions it assigns.
type ConditionalStore interface {
	Store
	// AppendIf is Append with conditions. A condition not met fails the
	// append with an error wrapping ErrConditionFailed and appends
	// nothing; a re-append of stored ids is answered from the stored
	// events whatever the conditions say, as for Append.
	AppendIf(ctx context.Context, stream string, expected int64, events []EventData, conds []Condition) (AppendResult, error)
}

// ValidateConditions checks an AppendIf's conditions.
func ValidateConditions(stream string, conds []Condition) error {
	if len(conds) > MaxConditions {
		return fmt.Errorf("%w: %d conditions (at most %d)", ErrInvalidAppend, len(conds), MaxConditions)
	}
	for i, c := range conds {
		switch {
		case c.Stream == "" || len(c.Stream) > 200:
			return fmt.Errorf("%w: condition %d: stream name must be 1..200 bytes", ErrInvalidAppend, i)
		case c.Stream == stream:
			return fmt.Errorf("%w: condition %d names the appended stream (its expected version says that)", ErrInvalidAppend, i)
		case c.Version < 0:
			return fmt.Errorf("%w: condition %d: version %d", ErrInvalidAppend, i, c.Version)
		}
	}
	return nil
}

// ComputeHash returns SHA-256 over prev and the canonical bytes of e. The
// field order is fixed and every variable-length field is length-prefixed,
// so no two different events share canonical bytes. The global position is
// not part of the hash: it is assigned at commit and differs between stores
// that hold the same streams.
func ComputeHash(prev [32]byte, stream string, version int64, e EventData) [32]byte {
	bp := hashBufs.Get().(*[]byte)
	b := canonicalBytes((*bp)[:0], prev, stream, version, e)
	sum := sha256.Sum256(b)
	if cap(b) <= maxPooledHashBuf {
		*bp = b
		hashBufs.Put(bp)
	}
	return sum
}

// hashBufs recycles the buffers ComputeHash builds canonical bytes in: the
// writer hashes every event it appends, and building them in place instead
// of feeding a hash.Hash piece by piece saves the copies and allocations
// of each piece. Buffers grown past maxPooledHashBuf (a large payload) are
// left to the collector.
var hashBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

const maxPooledHashBuf = 64 << 10

// canonicalBytes appends the canonical bytes of an event to b: a domain tag,
// prev, then every field in a fixed order, each variable-length field
// prefixed with its length as 8 big-endian bytes and each integer as 8
// big-endian bytes.
func canonicalBytes(b []byte, prev [32]byte, stream string, version int64, e EventData) []byte {
	b = append(b, "payledger/event/v1"...)
	b = append(b, prev[:]...)
	b = appendStr(b, stream)
	b = binary.BigEndian.AppendUint64(b, uint64(version))
	b = appendStr(b, e.ID)
	b = appendStr(b, e.Type)
	b = binary.BigEndian.AppendUint64(b, uint64(int64(e.SchemaVersion)))
	// The time, length-prefixed like the strings: format it after a
	// placeholder prefix and fill the prefix in.
	at := len(b)
	b = binary.BigEndian.AppendUint64(b, 0)
	b = e.OccurredAt.UTC().AppendFormat(b, time.RFC3339Nano)
	binary.BigEndian.PutUint64(b[at:], uint64(len(b)-at-8))
	b = appendStr(b, e.CausationID)
	b = appendStr(b, e.CorrelationID)
	b = appendStr(b, e.IdempotencyKey)
	b = binary.BigEndian.AppendUint64(b, uint64(len(e.Payload)))
	return append(b, e.Payload...)
}

func appendStr(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(len(s)))
	return append(b, s...)
}

// VerifyChain checks that events (consecutive events of one stream starting
// at version 1 or continuing from prev) form an intact hash chain. It
// returns the hash of the last event to continue with.
func VerifyChain(prev [32]byte, events []Event) ([32]byte, error) {
	for _, e := range events {
		if e.PrevHash != prev {
			return prev, fmt.Errorf("stream %s version %d: previous hash %s does not match %s",
				e.Stream, e.Version, hex.EncodeToString(e.PrevHash[:]), hex.EncodeToString(prev[:]))
		}
		want := ComputeHash(prev, e.Stream, e.Version, e.EventData)
		if e.Hash != want {
			return prev, fmt.Errorf("stream %s version %d (position %d): hash mismatch, the event was altered",
				e.Stream, e.Version, e.Position)
		}
		prev = e.Hash
	}
	return prev, nil
}

// storageFailures are the SQLite results (in the messages of the drivers)
// that say the storage, not the request, is at fault.
var storageFailures = []string{"database or disk is full", "attempt to write a readonly database", "disk I/O error"}

// MarkStorageError marks an error of the storage (a disk full, read-only or
// failing) as ErrUnavailable, so that callers can answer it as such and an
// operator be told; other errors are returned unchanged.
func MarkStorageError(err error) error {
	if err == nil || errors.Is(err, ErrUnavailable) {
		return err
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EROFS) || errors.Is(err, syscall.EIO) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	for _, m := range storageFailures {
		if strings.Contains(err.Error(), m) {
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
	}
	return err
}

// Guard is one append-only protection of a store (R2): a trigger,
// privilege or server setting that refuses deleting or rewriting events.
type Guard struct {
	// Name says what is guarded and how, e.g. "segments_no_delete".
	Name    string
	Present bool
}

// RetentionReporter is implemented by stores (and their readers) that can
// list the guards they rely on, so `payledger retention check` can refuse
// a store whose guards were removed.
type RetentionReporter interface {
	RetentionGuards(ctx context.Context) ([]Guard, error)
}

// ClampLimit bounds a read's limit as the Store methods document: a limit
// below 1 or above MaxReadBatch means MaxReadBatch.
func ClampLimit(limit int) int {
	if limit <= 0 || limit > MaxReadBatch {
		return MaxReadBatch
	}
	return limit
}
