package kurrent

import (
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
	"github.com/oklog/ulid/v2"

	"github.com/payledger/payledger/eventstore"
)

// namespaceRE is what a namespace may be: it starts every stream name the
// store writes, so it must not start with '$' (KurrentDB's system streams)
// and holds no '-' (the separator of the names below).
var namespaceRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,39}$`)

// names are the KurrentDB streams of one namespace.
type names struct{ ns string }

// log is the stream whose revision r holds the event at position r+1.
func (n names) log() string { return n.ns + "-log" }

// stream is the index of a port stream: link events to the log, one per
// version, in version order.
func (n names) stream(s string) string { return n.ns + "-stream-" + s }

// id is the index of one event id: a single link event to the log.
func (n names) id(id string) string { return n.ns + "-id-" + id }

// snapshot holds a port stream's snapshots (only the latest is kept).
func (n names) snapshot(s string) string { return n.ns + "-snapshot-" + s }

// schemes maps the URL schemes payledger accepts to the client's.
var schemes = map[string]string{
	"kurrentdb": "esdb", "kurrentdb+discover": "esdb+discover",
	"kdb": "esdb", "kdb+discover": "esdb+discover",
	"esdb": "esdb", "esdb+discover": "esdb+discover",
}

// ParseURL reads a store URL such as
// kurrentdb://user:pass@host:2113?tls=false&namespace=payledger into the
// client's configuration and the namespace (empty when the URL names
// none). The client's v4 parser knows only the esdb schemes, so the
// KurrentDB ones are translated; the namespace parameter is payledger's
// and is removed before the client sees the query.
func ParseURL(raw string) (*esdb.Configuration, string, error) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return nil, "", fmt.Errorf("kurrent store: %s is not a kurrentdb:// URL", Redact(raw))
	}
	to, ok := schemes[strings.ToLower(scheme)]
	if !ok {
		return nil, "", fmt.Errorf("kurrent store: scheme %q is not kurrentdb://, kurrentdb+discover:// or esdb://", scheme)
	}
	ns := ""
	if base, query, hasQuery := strings.Cut(rest, "?"); hasQuery {
		q, err := url.ParseQuery(query)
		if err != nil {
			return nil, "", fmt.Errorf("kurrent store: the query of %s: %w", Redact(raw), err)
		}
		ns = q.Get("namespace")
		q.Del("namespace")
		rest = base
		if len(q) > 0 {
			rest += "?" + q.Encode()
		}
	}
	if ns != "" && !namespaceRE.MatchString(ns) {
		return nil, "", fmt.Errorf("kurrent store: namespace %q must match %s", ns, namespaceRE)
	}
	translated := to + "://" + rest
	cfg, err := esdb.ParseConnectionString(translated)
	if err != nil {
		// The client's messages may quote the URL it was given (a bad
		// port does), password and all: both forms are redacted, and a
		// message that still holds the password is not shown.
		msg := strings.ReplaceAll(strings.ReplaceAll(err.Error(), translated, Redact(translated)), raw, Redact(raw))
		if pw := password(raw); pw != "" && strings.Contains(msg, pw) {
			msg = "the client cannot read it"
		}
		return nil, "", fmt.Errorf("kurrent store: %s: %s", Redact(raw), msg)
	}
	// The client logs to the standard logger by default; the store
	// returns every failure instead.
	cfg.Logger = esdb.NoopLogging()
	return cfg, ns, nil
}

// password returns the password of a store URL, "" when it has none.
func password(raw string) string {
	_, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return ""
	}
	at := strings.LastIndex(strings.SplitN(rest, "/", 2)[0], "@")
	if at < 0 {
		return ""
	}
	_, pw, _ := strings.Cut(rest[:at], ":")
	return pw
}

// Redact returns a store URL without its password, for messages.
func Redact(raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return "the store URL"
	}
	at := strings.LastIndex(strings.SplitN(rest, "/", 2)[0], "@")
	if at < 0 {
		return raw
	}
	user, _, _ := strings.Cut(rest[:at], ":")
	return scheme + "://" + user + ":xxxxx" + rest[at:]
}

// uuidNamespace derives event ids for ids that are not canonical ULIDs.
var uuidNamespace = uuid.MustParse("6b0d5e4c-2a61-4c1e-9f2b-7f1c0d3e8a55")

// eventUUID is the KurrentDB event id of a port event id: the ULID's own
// 128 bits when id is a canonical (upper-case) ULID, so that the server's
// id and the ledger's are the same number; otherwise a name-based UUID
// (version 5) of the id. Both are deterministic, so a retried append
// sends the same ids and the server can answer it idempotently.
func eventUUID(id string) uuid.UUID {
	if u, err := ulid.ParseStrict(id); err == nil && u.String() == id {
		return uuid.UUID(u)
	}
	return uuid.NewHash(sha1.New(), uuidNamespace, []byte(id), 5)
}

// envelope is the JSON metadata of a log event: everything of
// eventstore.Event but the type (the KurrentDB event type), the payload
// (its data) and the position (its revision). Numbers are strings because
// KurrentDB documents event metadata as an object of string values.
type envelope struct {
	ID             string `json:"id"`
	Stream         string `json:"stream"`
	Version        string `json:"version"`
	BatchFirst     string `json:"batch_first"` // position of the first event of the same Append
	SchemaVersion  string `json:"schema_version"`
	OccurredAt     string `json:"occurred_at"`
	CausationID    string `json:"causation_id,omitempty"`
	CorrelationID  string `json:"correlation_id,omitempty"`
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	PrevHash       string `json:"prev_hash"`
	Hash           string `json:"hash"`
}

// encodeEvent builds the log event of e, the first event of whose Append
// has position batchFirst.
func encodeEvent(e eventstore.Event, batchFirst int64) (esdb.EventData, error) {
	meta, err := json.Marshal(envelope{
		ID: e.ID, Stream: e.Stream, Version: strconv.FormatInt(e.Version, 10),
		BatchFirst:    strconv.FormatInt(batchFirst, 10),
		SchemaVersion: strconv.Itoa(e.SchemaVersion),
		OccurredAt:    e.OccurredAt.UTC().Format(time.RFC3339Nano),
		CausationID:   e.CausationID, CorrelationID: e.CorrelationID, IdempotencyKey: e.IdempotencyKey,
		PrevHash: hex.EncodeToString(e.PrevHash[:]), Hash: hex.EncodeToString(e.Hash[:]),
	})
	if err != nil {
		return esdb.EventData{}, err
	}
	ct := esdb.ContentTypeBinary
	if json.Valid(e.Payload) {
		ct = esdb.ContentTypeJson
	}
	return esdb.EventData{EventID: eventUUID(e.ID), EventType: e.Type, ContentType: ct, Data: e.Payload, Metadata: meta}, nil
}

// errCorrupt marks a log or index event the adapter did not write as it
// reads it: something else wrote to its streams.
var errCorrupt = errors.New("kurrent store: malformed event")

// decodeEvent reads a log event back; the position is its revision + 1.
// It also returns the position of the first event of its Append.
func decodeEvent(r *esdb.RecordedEvent) (eventstore.Event, int64, error) {
	var env envelope
	if err := json.Unmarshal(r.UserMetadata, &env); err != nil {
		return eventstore.Event{}, 0, fmt.Errorf("%w: %s revision %d: %v", errCorrupt, r.StreamID, r.EventNumber, err)
	}
	e := eventstore.Event{Stream: env.Stream, Position: int64(r.EventNumber) + 1}
	e.ID, e.Type, e.Payload = env.ID, r.EventType, r.Data
	e.CausationID, e.CorrelationID, e.IdempotencyKey = env.CausationID, env.CorrelationID, env.IdempotencyKey
	var err error
	bad := func(what string, cause error) (eventstore.Event, int64, error) {
		return eventstore.Event{}, 0, fmt.Errorf("%w: %s revision %d: %s: %v", errCorrupt, r.StreamID, r.EventNumber, what, cause)
	}
	if e.Version, err = strconv.ParseInt(env.Version, 10, 64); err != nil || e.Version < 1 {
		return bad("version", err)
	}
	first, err := strconv.ParseInt(env.BatchFirst, 10, 64)
	if err != nil || first < 1 || first > e.Position {
		return bad("batch_first", err)
	}
	if e.SchemaVersion, err = strconv.Atoi(env.SchemaVersion); err != nil {
		return bad("schema_version", err)
	}
	at, err := time.Parse(time.RFC3339Nano, env.OccurredAt)
	if err != nil {
		return bad("occurred_at", err)
	}
	e.OccurredAt = at.UTC()
	if e.PrevHash, err = hash32(env.PrevHash); err != nil {
		return bad("prev_hash", err)
	}
	if e.Hash, err = hash32(env.Hash); err != nil {
		return bad("hash", err)
	}
	if e.ID == "" || e.Stream == "" {
		return bad("id and stream", errors.New("missing"))
	}
	return e, first, nil
}

func hash32(s string) ([32]byte, error) {
	var h [32]byte
	b, err := hex.DecodeString(s)
	if err != nil {
		return h, err
	}
	if len(b) != len(h) {
		return h, fmt.Errorf("%d bytes, want %d", len(b), len(h))
	}
	copy(h[:], b)
	return h, nil
}

// linkType is KurrentDB's link event type: its data "N@stream" points at
// revision N of stream, and a read with ResolveLinkTos returns that event.
const linkType = "$>"

// linkTo returns a link event, with the given id, to revision rev of stream.
func linkTo(id uuid.UUID, rev uint64, stream string) esdb.EventData {
	return esdb.EventData{EventID: id, EventType: linkType, ContentType: esdb.ContentTypeBinary,
		Data: []byte(strconv.FormatUint(rev, 10) + "@" + stream)}
}

// parseLink returns the revision and stream a link event's data points at.
func parseLink(data []byte) (uint64, string, error) {
	n, stream, ok := strings.Cut(string(data), "@")
	if !ok || stream == "" {
		return 0, "", fmt.Errorf("%w: link %q", errCorrupt, data)
	}
	rev, err := strconv.ParseUint(n, 10, 64)
	if err != nil {
		return 0, "", fmt.Errorf("%w: link %q", errCorrupt, data)
	}
	return rev, stream, nil
}

// snapshotMeta is the JSON metadata of a snapshot event; its data is the
// payload.
type snapshotMeta struct {
	Stream    string `json:"stream"`
	Version   string `json:"version"`
	EventHash string `json:"event_hash"`
	Schema    string `json:"schema"`
}

func encodeSnapshot(s eventstore.Snapshot) (esdb.EventData, error) {
	meta, err := json.Marshal(snapshotMeta{Stream: s.Stream, Version: strconv.FormatInt(s.Version, 10),
		EventHash: hex.EncodeToString(s.EventHash[:]), Schema: strconv.Itoa(s.Schema)})
	if err != nil {
		return esdb.EventData{}, err
	}
	// The id follows from the stream and version, so a retried save is
	// the same event to the server.
	id := uuid.NewHash(sha1.New(), uuidNamespace, []byte("snapshot/"+strconv.FormatInt(s.Version, 10)+"/"+s.Stream), 5)
	return esdb.EventData{EventID: id, EventType: "PayledgerSnapshot", ContentType: esdb.ContentTypeBinary,
		Data: s.Payload, Metadata: meta}, nil
}

func decodeSnapshot(r *esdb.RecordedEvent) (eventstore.Snapshot, error) {
	var m snapshotMeta
	if err := json.Unmarshal(r.UserMetadata, &m); err != nil {
		return eventstore.Snapshot{}, fmt.Errorf("%w: snapshot in %s: %v", errCorrupt, r.StreamID, err)
	}
	s := eventstore.Snapshot{Stream: m.Stream, Payload: r.Data}
	var err error
	if s.Version, err = strconv.ParseInt(m.Version, 10, 64); err != nil {
		return s, fmt.Errorf("%w: snapshot in %s: version: %v", errCorrupt, r.StreamID, err)
	}
	if s.Schema, err = strconv.Atoi(m.Schema); err != nil {
		return s, fmt.Errorf("%w: snapshot in %s: schema: %v", errCorrupt, r.StreamID, err)
	}
	if s.EventHash, err = hash32(m.EventHash); err != nil {
		return s, fmt.Errorf("%w: snapshot in %s: event hash: %v", errCorrupt, r.StreamID, err)
	}
	return s, nil
}
