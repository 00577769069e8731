// Package kurrent is the event-log adapter for KurrentDB (formerly
// EventStoreDB), through github.com/EventStore/EventStore-Client-Go/v4,
// for teams that run their event log on a KurrentDB node or cluster.
//
// The port's global log has gap-free positions 1, 2, 3, ... in commit
// order, each stream's events carry the previous event's hash, and an
// append checks its stream's version and the uniqueness of its event ids
// atomically. KurrentDB's $all positions are byte offsets with gaps, and
// an append is atomic over one stream only. So the adapter keeps the
// whole log in one KurrentDB stream, <namespace>-log, whose revision r
// holds the event at position r+1: that one append, with the log's
// expected revision, is the commit point. A writer appends there only
// when it knows every event before the revision it expects, so its checks
// of the stream's version, its previous hash and the ids were made
// against the whole log; when another writer (another process) got there
// first, the append fails with a wrong expected version, the writer reads
// what it missed and decides again. Two writers therefore serialise on the
// log, as they must for gap-free positions. AppendIf's conditions on other
// streams' versions are checked the same way as the appended stream's, so
// a decision that spans streams (a payment to a payee that was not
// suspended) holds at the commit point whichever process made it.
//
// Everything else is an index of the log, written after the commit, with
// deterministic event ids and expected revisions so that writing it twice
// (by a retry or by another writer) changes nothing:
//   - <namespace>-stream-<stream>: a link event per version to its log
//     event, so a stream reads in one request and its version is the index
//     stream's revision + 1;
//   - <namespace>-id-<event id>: one link to the log event, so an id is
//     looked up in one request (KurrentDB has no lookup by event id).
//
// A writer indexes its own append before it returns, and before appending
// it indexes whatever of the log it has not seen; so at any time only the
// last Append of the log can lack its index entries (its writer died
// between the two steps), and Open indexes that one again. The cost: every
// Append of the store, from every process, goes through one stream, one
// at a time per process, and an Append of n events makes n+2 writes (the
// log, the stream's index, n ids) and n+1 reads (the ids and the stream's
// last event, and one per condition, all at once) - about 2n+3 round
// trips. Reads of one stream see an Append
// once it is indexed; ReadAll, Head and Subscribe read the log itself.
//
// Snapshots live in <namespace>-snapshot-<stream> (with $maxCount 1 when
// the user may set it).
// Deleting or truncating payledger's streams is refused by KurrentDB's
// ACLs, which a deployment sets (docs/architecture.md);
// RetentionGuards reports what the adapter can read of them.
//
// It implements the eventstore port and must never import the domain, the
// ledger or the projections.
package kurrent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/payledger/payledger/eventstore"
)

// Compile-time proof that *Store satisfies the port, conditions its
// appends on other streams and reports its guards.
var (
	_ eventstore.Store             = (*Store)(nil)
	_ eventstore.ConditionalStore  = (*Store)(nil)
	_ eventstore.RetentionReporter = (*Store)(nil)
)

// Options tunes the store. Zero fields take the defaults of
// DefaultOptions.
type Options struct {
	// Namespace starts the name of every stream the store writes, so
	// several logs can share a server (default "payledger", or the URL's
	// namespace parameter). Lower-case letters, digits and '_'.
	Namespace string
	// MaxAttempts bounds how often one Append tries the log again after
	// another writer appended first (default 64); past it the Append
	// fails with a version conflict.
	MaxAttempts int
	// IndexParallelism bounds the id lookups and id-index writes in flight
	// for one Append (default 8).
	IndexParallelism int
	// CallTimeout bounds each request to the server (default 10 s).
	CallTimeout time.Duration
}

// DefaultOptions returns the production settings.
func DefaultOptions() Options {
	return Options{Namespace: "payledger", MaxAttempts: 64, IndexParallelism: 8, CallTimeout: 10 * time.Second}
}

// readPage is how many events one read of the log asks for when the
// adapter reads it for itself (catching up, subscribing).
const readPage = 500

// Store is the KurrentDB event store. Create it with Open; it is safe for
// concurrent use and must be closed with Close.
type Store struct {
	opts  Options
	cfg   *esdb.Configuration
	user  string // the URL's user, "" when unauthenticated
	names names

	// writer is held (a one-slot semaphore, so waiting respects contexts)
	// by the Append in progress and guards indexed and stale.
	writer chan struct{}
	// indexed is the position up to which this store has seen the log and
	// made sure every event is indexed; stale means the log may have
	// grown past it through another writer or an append whose outcome is
	// unknown, so the next Append reads the log first.
	indexed int64
	stale   bool

	// The counters of Stats.
	appends, events, retries atomic.Int64

	mu     sync.Mutex
	closed bool
	cur    *conn           // the client new calls use (conn.go); nil until the first
	ctx    context.Context // cancelled by Close: ends subscriptions
	cancel context.CancelFunc
}

// Open connects to the KurrentDB at rawURL (kurrentdb://, kurrentdb+discover://
// or esdb://, with the client's settings such as tls=false; see ParseURL)
// and makes sure the log's last Append is indexed.
func Open(ctx context.Context, rawURL string, opts Options) (*Store, error) {
	cfg, ns, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	def := DefaultOptions()
	if opts.Namespace == "" {
		opts.Namespace = ns
	}
	if opts.Namespace == "" {
		opts.Namespace = def.Namespace
	}
	if !namespaceRE.MatchString(opts.Namespace) {
		return nil, fmt.Errorf("kurrent store: namespace %q must match %s", opts.Namespace, namespaceRE)
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = def.MaxAttempts
	}
	if opts.IndexParallelism <= 0 {
		opts.IndexParallelism = def.IndexParallelism
	}
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = def.CallTimeout
	}
	s := newStore(cfg, opts)
	if err := s.recover(ctx); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("kurrent store %s: %w", Redact(rawURL), err)
	}
	return s, nil
}

// newStore makes a store on cfg's server with complete options, without
// touching the server yet.
func newStore(cfg *esdb.Configuration, opts Options) *Store {
	s := &Store{opts: opts, cfg: cfg, user: cfg.Username, names: names{opts.Namespace}, writer: make(chan struct{}, 1)}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

// recover starts the writer's view at the first event of the log's last
// Append, the only one that may lack its index entries, and indexes from
// there.
func (s *Store) recover(ctx context.Context) error {
	last, err := s.read(ctx, s.names.log(), esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.End{}}, 1)
	if err != nil {
		return fmt.Errorf("read the log's last event: %w", err)
	}
	if len(last) == 0 {
		return nil
	}
	_, first, err := decodeEvent(last[0].Event)
	if err != nil {
		return err
	}
	s.indexed, s.stale = first-1, true
	return s.catchUp(ctx)
}

// Stats are the writer's counters since Open.
type Stats struct {
	// Appends and Events count what this store committed to the log
	// (each Append is one write to the log stream).
	Appends, Events int64
	// Retries counts the attempts that found the log moved past this
	// store's view (another writer appended first) and decided again.
	Retries int64
}

// Stats returns the writer's counters.
func (s *Store) Stats() Stats {
	return Stats{Appends: s.appends.Load(), Events: s.events.Load(), Retries: s.retries.Load()}
}

// IsURL reports whether raw has a scheme that ParseURL accepts, so that a
// caller choosing among stores can tell a KurrentDB URL (possibly a
// malformed one, which ParseURL then explains) from another store's.
func IsURL(raw string) bool {
	scheme, _, ok := strings.Cut(raw, "://")
	_, known := schemes[strings.ToLower(scheme)]
	return ok && known
}

// Namespace returns the prefix of the store's stream names.
func (s *Store) Namespace() string { return s.names.ns }

// isClosed reports whether Close was called.
func (s *Store) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Close ends subscriptions and releases the connection. Appends, reads
// and subscriptions after Close fail with eventstore.ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.cancel()
	if k := s.cur; k != nil {
		s.cur, k.retired = nil, true
		if k.inflight == 0 {
			return k.c.Close()
		}
	}
	return nil
}

// call bounds one request to the server by CallTimeout.
func (s *Store) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.opts.CallTimeout)
}

// codeOf returns the client's error code of err, ErrorCodeUnknown when err
// is not the client's.
func codeOf(err error) esdb.ErrorCode {
	var e *esdb.Error
	if errors.As(err, &e) {
		return e.Code()
	}
	return esdb.ErrorCodeUnknown
}

// unavailable marks the failures of the server or the connection (as
// opposed to the request) as eventstore.ErrUnavailable.
func unavailable(err error) error {
	if errors.Is(err, eventstore.ErrUnavailable) || errors.Is(err, eventstore.ErrClosed) {
		return err
	}
	switch codeOf(err) {
	case esdb.ErrorUnavailable, esdb.ErrorCodeDeadlineExceeded, esdb.ErrorCodeConnectionClosed,
		esdb.ErrorCodeNotLeader, esdb.ErrorAborted:
		return fmt.Errorf("%w: %w", eventstore.ErrUnavailable, err)
	}
	return err
}

// read returns up to count events of stream from the given options; a
// missing stream is no events and no error.
func (s *Store) read(ctx context.Context, stream string, opts esdb.ReadStreamOptions, count int) ([]*esdb.ResolvedEvent, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	var out []*esdb.ResolvedEvent
	err := s.do(ctx, func(c *esdb.Client) error {
		rs, err := c.ReadStream(ctx, stream, opts, uint64(count))
		if err != nil {
			return err
		}
		defer rs.Close()
		out = make([]*esdb.ResolvedEvent, 0, min(count, readPage))
		for range count {
			ev, err := rs.Recv()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return err
			}
			out = append(out, ev)
		}
		return nil
	})
	switch {
	case codeOf(err) == esdb.ErrorCodeResourceNotFound:
		return nil, nil
	case err != nil:
		return nil, s.readErr(err)
	}
	return out, nil
}

// readErr is ErrClosed when the store was closed under a read.
func (s *Store) readErr(err error) error {
	if s.isClosed() {
		return fmt.Errorf("%w: %w", eventstore.ErrClosed, err)
	}
	return err
}

// fromLog decodes events read from the log (or resolved from an index).
func fromLog(rs []*esdb.ResolvedEvent) ([]eventstore.Event, error) {
	out := make([]eventstore.Event, 0, len(rs))
	for _, r := range rs {
		if r.Event == nil {
			return nil, fmt.Errorf("%w: a link whose log event is gone", errCorrupt)
		}
		e, _, err := decodeEvent(r.Event)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// fromIndex decodes a stream's index entries (links resolved to the log)
// and checks that each points at the stream's event of its version.
func (s *Store) fromIndex(stream string, rs []*esdb.ResolvedEvent) ([]eventstore.Event, error) {
	out, err := fromLog(rs)
	if err != nil {
		return nil, err
	}
	for i, e := range out {
		if l := rs[i].Link; l == nil || e.Stream != stream || e.Version != int64(l.EventNumber)+1 ||
			rs[i].Event.StreamID != s.names.log() {
			return nil, fmt.Errorf("%w: the index of %s at version %d points elsewhere", errCorrupt, stream, e.Version)
		}
	}
	return out, nil
}

// ReadStream returns up to limit events of stream from version from on.
func (s *Store) ReadStream(ctx context.Context, stream string, from int64, limit int) ([]eventstore.Event, error) {
	from = max(from, 1)
	rs, err := s.read(ctx, s.names.stream(stream),
		esdb.ReadStreamOptions{Direction: esdb.Forwards, From: esdb.Revision(uint64(from - 1)), ResolveLinkTos: true}, eventstore.ClampLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("kurrent store: read %s: %w", stream, err)
	}
	return s.fromIndex(stream, rs)
}

// ReadStreamBackward returns up to limit events of stream with versions
// at most from, newest first; from < 1 reads from the end.
func (s *Store) ReadStreamBackward(ctx context.Context, stream string, from int64, limit int) ([]eventstore.Event, error) {
	opts := esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.End{}, ResolveLinkTos: true}
	if from >= 1 {
		opts.From = esdb.Revision(uint64(from - 1))
	}
	rs, err := s.read(ctx, s.names.stream(stream), opts, eventstore.ClampLimit(limit))
	if err == nil && len(rs) == 0 && from > 1 {
		// from may lie past the end, which the port reads as "from the
		// end" and the server may answer with nothing.
		opts.From = esdb.End{}
		rs, err = s.read(ctx, s.names.stream(stream), opts, eventstore.ClampLimit(limit))
		for len(rs) > 0 && int64(rs[0].OriginalEvent().EventNumber) >= from {
			rs = rs[1:] // appended between the two reads
		}
	}
	if err != nil {
		return nil, fmt.Errorf("kurrent store: read %s backwards: %w", stream, err)
	}
	return s.fromIndex(stream, rs)
}

// ReadAll returns up to limit events of the log after position after.
func (s *Store) ReadAll(ctx context.Context, after int64, limit int) ([]eventstore.Event, error) {
	rs, err := s.read(ctx, s.names.log(),
		esdb.ReadStreamOptions{Direction: esdb.Forwards, From: esdb.Revision(uint64(max(after, 0)))}, eventstore.ClampLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("kurrent store: read the log after %d: %w", after, err)
	}
	return fromLog(rs)
}

// Head returns the position of the log's last event (0 when empty).
func (s *Store) Head(ctx context.Context) (int64, error) {
	rs, err := s.read(ctx, s.names.log(), esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.End{}}, 1)
	if err != nil {
		return 0, fmt.Errorf("kurrent store: head: %w", err)
	}
	if len(rs) == 0 {
		return 0, nil
	}
	return int64(rs[0].Event.EventNumber) + 1, nil
}

// StreamVersion returns the number of indexed events of stream.
func (s *Store) StreamVersion(ctx context.Context, stream string) (int64, error) {
	rs, err := s.read(ctx, s.names.stream(stream), esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.End{}}, 1)
	if err != nil {
		return 0, fmt.Errorf("kurrent store: version of %s: %w", stream, err)
	}
	if len(rs) == 0 {
		return 0, nil
	}
	return int64(rs[0].OriginalEvent().EventNumber) + 1, nil
}
