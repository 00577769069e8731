// Package natsrelay publishes every committed event of the log, in log
// order, to a NATS JetStream stream: subject <prefix>.<EventType>, the
// event's place in the log in headers, and Nats-Msg-Id = the event id.
//
// The relay reads the log through the eventstore port only, so it runs the
// same over every adapter. Where to resume is decided from the JetStream
// stream itself (the position header of its last message), not only from
// the relay's own checkpoint file: a crash between a publish's ack and the
// checkpoint's write then re-sends nothing, however long the relay was
// down. Every publish carries the stream's expected last sequence, so a
// message lands only directly after its predecessor: no gap when one of
// the pipelined messages fails, no second copy of a message that arrives
// late, and no interleaving when a second relay (another node) publishes
// the same log. Nats-Msg-Id is the second line: within the stream's
// duplicate window JetStream drops a message whose id it holds, and
// consumers can dedupe on it.
package natsrelay

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/payledger/payledger/eventstore"
)

// Defaults of Config.
const (
	DefaultStream        = "PAYLEDGER_EVENTS"
	DefaultSubjectPrefix = "payledger.events"
	// DefaultDuplicates is the duplicate window of a stream the relay
	// creates: it drops an event sent again after the stream's last
	// message within it. The relay's resume does not rely on it (see
	// resume); JetStream's default is two minutes, ten also cover a
	// re-send after an outage of several minutes, should anything resume
	// before the stream's end.
	DefaultDuplicates  = 10 * time.Minute
	DefaultMaxBatch    = 256
	DefaultAckTimeout  = 10 * time.Second
	DefaultMaxAttempts = 8
	DefaultDrain       = 5 * time.Second
)

// Headers of every published message, besides Nats-Msg-Id (the event id).
const (
	HeaderStream        = "Payledger-Stream"
	HeaderVersion       = "Payledger-Version"
	HeaderPosition      = "Payledger-Position"
	HeaderHash          = "Payledger-Event-Hash"
	HeaderSchemaVersion = "Payledger-Schema-Version"
	HeaderOccurredAt    = "Payledger-Occurred-At"
	HeaderCorrelationID = "Payledger-Correlation-Id"
	HeaderCausationID   = "Payledger-Causation-Id"
	// HeaderOmitted lists the payload fields the relay left out
	// (Config.OmitFields), so a consumer knows the payload is not the
	// log's and Payledger-Event-Hash cannot be recomputed from it.
	HeaderOmitted = "Payledger-Omitted"
)

// Config is what a Relay needs.
type Config struct {
	// Store is the log the relay publishes.
	Store eventstore.Store
	// Conn is a connection to a NATS server with JetStream; the relay does
	// not close it.
	Conn *nats.Conn
	// Stream and SubjectPrefix name the JetStream stream and its subjects
	// (SubjectPrefix + ".>"); defaults DefaultStream and
	// DefaultSubjectPrefix.
	Stream        string
	SubjectPrefix string
	// Replicas of the stream when the relay creates it (1 by default; 3 on
	// a NATS cluster).
	Replicas int
	// Duplicates is the duplicate window of a stream the relay creates
	// (DefaultDuplicates).
	Duplicates time.Duration
	// CheckpointFile keeps the position of the last event published and
	// acknowledged (written durably after each acknowledged batch).
	CheckpointFile string
	// MaxBatch bounds the messages published and not yet acknowledged
	// (and the events one read of the shutdown's drain takes).
	MaxBatch int
	// AckTimeout bounds the wait for a message's ack.
	AckTimeout time.Duration
	// MaxAttempts bounds how many times in a row Run resumes after a NATS
	// error (with exponential backoff) before it returns the error.
	MaxAttempts int
	// Drain bounds how long Run keeps publishing, after its context ends,
	// the events already committed (graceful shutdown).
	Drain time.Duration
	// OmitFields are top-level payload fields never published (credential
	// material the bus's consumers have no use for).
	OmitFields []string
	Log        *slog.Logger
}

// Stats are the relay's counters since New.
type Stats struct {
	// Published counts events the stream acknowledged as stored.
	Published int64
	// Duplicates counts events the stream acknowledged as already held
	// (dropped by Nats-Msg-Id).
	Duplicates int64
	// Resyncs counts resumptions after a NATS error or a conflicting
	// publisher.
	Resyncs int64
	// Checkpoint is the position of the last event known to be in the
	// stream.
	Checkpoint int64
}

// Relay publishes the log to JetStream. Run it in one goroutine.
type Relay struct {
	cfg Config
	js  jetstream.JetStream
	log *slog.Logger

	checkpoint atomic.Int64
	published  atomic.Int64
	duplicates atomic.Int64
	resyncs    atomic.Int64
	// omitted is the Payledger-Omitted header's value.
	omitted string

	// mu guards the position acknowledged last and the one written.
	mu        sync.Mutex
	ackedPos  int64
	ackedID   string
	savedPos  int64
	savedAt   time.Time
	savedOnce bool
}

// checkpointEvery bounds how often the checkpoint file is written while
// events keep coming (it is written at once when the relay has caught
// up): its fsyncs took 1 to 18 ms a batch on the shared test VM, more than
// the batch's publishing, and a checkpoint that lags the stream costs
// nothing, because the relay resumes from the stream.
const checkpointEvery = 200 * time.Millisecond

// New checks cfg, fills in defaults and loads the checkpoint.
func New(cfg Config) (*Relay, error) {
	if cfg.Store == nil || cfg.Conn == nil {
		return nil, errors.New("natsrelay: a store and a NATS connection are required")
	}
	if cfg.CheckpointFile == "" {
		return nil, errors.New("natsrelay: a checkpoint file is required")
	}
	if cfg.Stream == "" {
		cfg.Stream = DefaultStream
	}
	if cfg.SubjectPrefix == "" {
		cfg.SubjectPrefix = DefaultSubjectPrefix
	}
	if strings.ContainsAny(cfg.Stream, ". *>\t\r\n") {
		return nil, fmt.Errorf("natsrelay: stream name %q: no dots, spaces or wildcards", cfg.Stream)
	}
	if !validSubject(cfg.SubjectPrefix) {
		return nil, fmt.Errorf("natsrelay: subject prefix %q: dot-separated tokens without wildcards", cfg.SubjectPrefix)
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.Duplicates <= 0 {
		cfg.Duplicates = DefaultDuplicates
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = DefaultMaxBatch
	}
	if cfg.AckTimeout <= 0 {
		cfg.AckTimeout = DefaultAckTimeout
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.Drain <= 0 {
		cfg.Drain = DefaultDrain
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	js, err := jetstream.New(cfg.Conn,
		jetstream.WithPublishAsyncTimeout(cfg.AckTimeout),
		// A batch has at most MaxBatch publishes pending; room for as many
		// of a failed batch still timing out.
		jetstream.WithPublishAsyncMaxPending(2*cfg.MaxBatch))
	if err != nil {
		return nil, fmt.Errorf("natsrelay: %w", err)
	}
	r := &Relay{cfg: cfg, js: js, log: cfg.Log, omitted: strings.Join(cfg.OmitFields, ",")}
	cp, err := readCheckpoint(cfg.CheckpointFile, cfg.Stream)
	if err != nil {
		return nil, err
	}
	r.checkpoint.Store(cp.Position)
	return r, nil
}

// Stats returns the relay's counters.
func (r *Relay) Stats() Stats {
	return Stats{Published: r.published.Load(), Duplicates: r.duplicates.Load(),
		Resyncs: r.resyncs.Load(), Checkpoint: r.checkpoint.Load()}
}

// Subject is the subject an event of type t is published on.
func (r *Relay) Subject(eventType string) string { return r.cfg.SubjectPrefix + "." + eventType }

// Run publishes the log until ctx ends, then drains (publishes what is
// committed, for at most Config.Drain) and returns the error of the last
// checkpoint write, if any. After a NATS error it resumes from the
// stream's last message with exponential backoff; when MaxAttempts
// attempts in a row did not move the stream on (neither this relay nor
// another), it returns the last error. Events are never skipped: an event
// that cannot be published stops the relay there.
func (r *Relay) Run(ctx context.Context) error {
	failures := 0
	for {
		before := r.checkpoint.Load()
		err := r.runOnce(ctx)
		if ctx.Err() != nil {
			return r.drain()
		}
		if r.checkpoint.Load() != before {
			failures = 0
		}
		failures++
		r.resyncs.Add(1)
		if failures >= r.cfg.MaxAttempts {
			return fmt.Errorf("natsrelay: giving up after %d attempts: %w", failures, err)
		}
		wait := backoff(failures)
		r.log.Warn("event relay: resuming from the stream's last message", slog.Any("error", err),
			slog.Int64("checkpoint", r.checkpoint.Load()), slog.Duration("after", wait))
		select {
		case <-ctx.Done():
			return r.drain()
		case <-time.After(wait):
		}
	}
}

// backoff is 100 ms doubled per failure, at most 10 s.
func backoff(failures int) time.Duration {
	d := 100 * time.Millisecond
	for i := 1; i < failures && d < 10*time.Second; i++ {
		d *= 2
	}
	return min(d, 10*time.Second)
}

// runOnce ensures the stream, resumes from it and publishes the log as it
// commits, until ctx ends (nil) or an error.
func (r *Relay) runOnce(ctx context.Context) error {
	after, lastSeq, err := r.resume(ctx)
	if err != nil {
		return err
	}
	subCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	queue := make(chan eventstore.Event, r.cfg.MaxBatch)
	subDone := make(chan error, 1)
	subFinished := make(chan struct{}) // subDone may be read by stream
	go func() {
		defer close(subFinished)
		subDone <- r.cfg.Store.Subscribe(subCtx, after, func(e eventstore.Event) error {
			select {
			case queue <- e:
				return nil
			case <-subCtx.Done():
				return context.Cause(subCtx)
			}
		})
	}()
	err = r.stream(ctx, queue, subDone, lastSeq)
	cancel(err)
	<-subFinished
	return errors.Join(err, r.saveCheckpoint())
}

// inFlight is an event published and not acknowledged yet.
type inFlight struct {
	e eventstore.Event
	f jetstream.PubAckFuture
}

// stream publishes the events from queue as they come, each expecting its
// predecessor's stream sequence (lastSeq for the first), with at most
// MaxBatch awaiting their acks, and records the acks in order. It returns
// when ctx ends (nil) or after an error, once every message sent has been
// acknowledged or has failed (the async publisher's timeout bounds that).
func (r *Relay) stream(ctx context.Context, queue <-chan eventstore.Event, subDone <-chan error, lastSeq uint64) error {
	pending := make([]inFlight, 0, r.cfg.MaxBatch)
	next := lastSeq
	var stop error // why no more is sent
	for {
		if stop != nil && len(pending) == 0 {
			if errors.Is(stop, context.Canceled) && ctx.Err() != nil {
				return nil
			}
			return stop
		}
		var in <-chan eventstore.Event
		if stop == nil && len(pending) < r.cfg.MaxBatch {
			in = queue
		}
		var acked <-chan *jetstream.PubAck
		var failed <-chan error
		if len(pending) > 0 {
			acked, failed = pending[0].f.Ok(), pending[0].f.Err()
		}
		done := ctx.Done()
		if stop != nil {
			done = nil
		}
		select {
		case <-done:
			stop = ctx.Err()
		case err := <-subDone:
			subDone = nil
			if stop == nil {
				stop = fmt.Errorf("read the log after %d: %w", r.checkpoint.Load(), err)
			}
		case e := <-in:
			msg, err := r.message(e)
			var f jetstream.PubAckFuture
			if err == nil {
				f, err = r.js.PublishMsgAsync(msg, jetstream.WithMsgID(e.ID), jetstream.WithExpectStream(r.cfg.Stream),
					jetstream.WithExpectLastSequence(next))
			}
			if err != nil {
				stop = fmt.Errorf("publish position %d: %w", e.Position, err)
				break
			}
			pending = append(pending, inFlight{e: e, f: f})
			next++
		case ack := <-acked:
			r.count(ack)
			// Acknowledged after its predecessor's sequence: the stream
			// holds the log up to here, whatever failed before it.
			r.ackedTo(pending[0].e.Position, pending[0].e.ID)
			pending = pending[1:]
		case err := <-failed:
			if stop == nil {
				stop = fmt.Errorf("publish position %d: %w", pending[0].e.Position, err)
			}
			pending = pending[1:]
		}
		if len(pending) == 0 && len(queue) == 0 || r.sinceSave() >= checkpointEvery {
			if err := r.saveCheckpoint(); err != nil && stop == nil {
				stop = err
			}
		}
	}
}

// count counts an ack as a stored or a duplicate message.
func (r *Relay) count(ack *jetstream.PubAck) {
	if ack.Duplicate {
		// Already held at an earlier sequence: the stream did not grow, so
		// the messages after it expect one too many and fail, and the
		// relay resumes from the stream.
		r.duplicates.Add(1)
	} else {
		r.published.Add(1)
	}
}

func (r *Relay) sinceSave() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return time.Since(r.savedAt)
}

// drain publishes what the log holds beyond the checkpoint, for at most
// Config.Drain, so that a graceful shutdown leaves nothing committed
// unpublished; what it cannot publish in time the next start does.
func (r *Relay) drain() error {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.Drain)
	defer cancel()
	if err := r.publishCommitted(ctx); err != nil {
		r.log.Warn("event relay: not drained at shutdown; the next start publishes the rest", slog.Any("error", err),
			slog.Int64("checkpoint", r.checkpoint.Load()))
	}
	return r.saveCheckpoint()
}

// publishCommitted publishes the log from the stream's end to the log's
// head, until ctx ends.
func (r *Relay) publishCommitted(ctx context.Context) error {
	after, lastSeq, err := r.resume(ctx)
	for err == nil {
		var events []eventstore.Event
		if events, err = r.cfg.Store.ReadAll(ctx, after, r.cfg.MaxBatch); err != nil || len(events) == 0 {
			break
		}
		lastSeq, err = r.publish(events, lastSeq)
		after = events[len(events)-1].Position
	}
	return err
}

// resume makes sure the stream exists and decides where publishing goes
// on: after the event of the stream's last message (checked against the
// log), whatever the checkpoint says. The checkpoint lags it when the
// relay stopped between an ack and the checkpoint's write: those events
// are in the stream and are not sent again, however long ago that was
// (beyond the duplicate window too). The stream lags the checkpoint when
// the NATS server lost acknowledged messages (a file store syncs to disk
// every two minutes by default): they are sent again, never skipped. Only
// a stream whose messages were all removed (limits, a purge) leaves the
// checkpoint as the only record; a stream that never held a message gets
// the whole log. It returns the position to publish after and the stream's
// last sequence.
func (r *Relay) resume(ctx context.Context) (after int64, lastSeq uint64, err error) {
	st, err := r.ensureStream(ctx)
	if err != nil {
		return 0, 0, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("stream %s: %w", r.cfg.Stream, err)
	}
	state := info.State
	cp := r.checkpoint.Load()
	switch {
	case state.LastSeq == 0:
		if cp > 0 {
			r.log.Warn("event relay: the stream is new; publishing the whole log to it",
				slog.String("stream", r.cfg.Stream), slog.Int64("checkpoint", cp))
		}
		r.ackedTo(0, "")
		return 0, 0, r.saveCheckpoint()
	case state.Msgs == 0:
		r.log.Warn("event relay: the stream holds no messages; resuming after the checkpoint",
			slog.String("stream", r.cfg.Stream), slog.Int64("checkpoint", cp))
		return cp, state.LastSeq, nil
	}
	msg, err := st.GetMsg(ctx, state.LastSeq)
	if err != nil {
		return 0, 0, fmt.Errorf("stream %s: last message %d: %w", r.cfg.Stream, state.LastSeq, err)
	}
	pos, err := strconv.ParseInt(msg.Header.Get(HeaderPosition), 10, 64)
	id := msg.Header.Get(jetstream.MsgIDHeader)
	if err != nil || pos < 1 || id == "" {
		return 0, 0, fmt.Errorf("stream %s: message %d is not the relay's (no position or id header)", r.cfg.Stream, state.LastSeq)
	}
	// The stream must hold this log: another ledger's stream, or a log
	// restored from a backup older than the stream, would be extended with
	// events that do not follow.
	at, err := r.cfg.Store.ReadAll(ctx, pos-1, 1)
	if err != nil {
		return 0, 0, fmt.Errorf("read the log at %d: %w", pos, err)
	}
	if len(at) == 0 || at[0].Position != pos || at[0].ID != id {
		return 0, 0, fmt.Errorf("stream %s ends with event %s at position %d, which this log does not hold there: "+
			"another ledger's stream, or a log older than the stream", r.cfg.Stream, id, pos)
	}
	if pos < cp {
		r.log.Warn("event relay: the stream lost acknowledged messages; publishing them again",
			slog.String("stream", r.cfg.Stream), slog.Int64("stream_position", pos), slog.Int64("checkpoint", cp))
	}
	r.ackedTo(pos, id)
	if err := r.saveCheckpoint(); err != nil {
		return 0, 0, err
	}
	return pos, state.LastSeq, nil
}

// ensureStream returns the stream, creating it (file storage, limits
// retention without limits, deletes and purges refused) when missing; an
// existing stream must take the relay's subjects.
func (r *Relay) ensureStream(ctx context.Context) (jetstream.Stream, error) {
	subjects := r.cfg.SubjectPrefix + ".>"
	st, err := r.js.Stream(ctx, r.cfg.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		st, err = r.js.CreateStream(ctx, jetstream.StreamConfig{
			Name:        r.cfg.Stream,
			Description: "payledger's event log, in log order (written by its relay only)",
			Subjects:    []string{subjects},
			Storage:     jetstream.FileStorage,
			Retention:   jetstream.LimitsPolicy,
			Replicas:    r.cfg.Replicas,
			Duplicates:  r.cfg.Duplicates,
			DenyDelete:  true,
			DenyPurge:   true,
		})
		if err == nil {
			r.log.Info("event relay: stream created", slog.String("stream", r.cfg.Stream), slog.String("subjects", subjects))
		}
	}
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", r.cfg.Stream, err)
	}
	info := st.CachedInfo()
	for _, s := range info.Config.Subjects {
		if s == subjects {
			return st, nil
		}
	}
	return nil, fmt.Errorf("stream %s exists with subjects %v, not %s", r.cfg.Stream, info.Config.Subjects, subjects)
}

// publish sends events (consecutive in the log, the first directly after
// the stream's last message at lastSeq) without waiting for each ack, then
// awaits the acks in order and saves the checkpoint after the last one
// acknowledged. Each message expects its predecessor's sequence, so none
// lands after a failed one. It returns the stream's new last sequence.
func (r *Relay) publish(events []eventstore.Event, lastSeq uint64) (uint64, error) {
	futures := make([]jetstream.PubAckFuture, 0, len(events))
	var sendErr error
	for i, e := range events {
		msg, err := r.message(e)
		if err != nil {
			sendErr = err
			break
		}
		f, err := r.js.PublishMsgAsync(msg, jetstream.WithMsgID(e.ID), jetstream.WithExpectStream(r.cfg.Stream),
			jetstream.WithExpectLastSequence(lastSeq+uint64(i)))
		if err != nil {
			sendErr = fmt.Errorf("publish position %d: %w", e.Position, err)
			break
		}
		futures = append(futures, f)
	}
	// Every ack is awaited, also after an error: a later message may still
	// be stored (it expected the sequence another relay's message took),
	// and an acknowledged message means all before it are in the stream,
	// because each expected its predecessor.
	timeout := time.NewTimer(r.cfg.AckTimeout)
	defer timeout.Stop()
	done, seq := 0, lastSeq
	var ackErr error
wait:
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			r.count(ack)
			if !ack.Duplicate {
				seq = ack.Sequence
			}
			done = i + 1
		case err := <-f.Err():
			if ackErr == nil {
				ackErr = fmt.Errorf("publish position %d: %w", events[i].Position, err)
			}
		case <-timeout.C:
			ackErr = errors.Join(ackErr, fmt.Errorf("publish position %d: no ack in %s", events[i].Position, r.cfg.AckTimeout))
			break wait
		}
	}
	if done > 0 {
		r.ackedTo(events[done-1].Position, events[done-1].ID)
	}
	return seq, errors.Join(ackErr, sendErr)
}

// message is the NATS message of e: the payload (less OmitFields) as the
// body, the event's place in the log in headers.
func (r *Relay) message(e eventstore.Event) (*nats.Msg, error) {
	if !validToken(e.Type) {
		return nil, fmt.Errorf("event %s at position %d: type %q is not a subject token", e.ID, e.Position, e.Type)
	}
	body, omitted, err := omit(e.Payload, r.cfg.OmitFields)
	if err != nil {
		return nil, fmt.Errorf("event %s at position %d: %w", e.ID, e.Position, err)
	}
	m := nats.NewMsg(r.Subject(e.Type))
	m.Data = body
	m.Header.Set(HeaderStream, e.Stream)
	m.Header.Set(HeaderVersion, strconv.FormatInt(e.Version, 10))
	m.Header.Set(HeaderPosition, strconv.FormatInt(e.Position, 10))
	m.Header.Set(HeaderHash, hex.EncodeToString(e.Hash[:]))
	m.Header.Set(HeaderSchemaVersion, strconv.Itoa(e.SchemaVersion))
	m.Header.Set(HeaderOccurredAt, e.OccurredAt.UTC().Format(time.RFC3339Nano))
	if e.CorrelationID != "" {
		m.Header.Set(HeaderCorrelationID, e.CorrelationID)
	}
	if e.CausationID != "" {
		m.Header.Set(HeaderCausationID, e.CausationID)
	}
	if omitted {
		m.Header.Set(HeaderOmitted, r.omitted)
	}
	return m, nil
}

// omit returns payload without the top-level fields named; it is payload
// itself (not a copy) when it has none of them.
func omit(payload []byte, fields []string) ([]byte, bool, error) {
	found := false
	for _, f := range fields {
		if bytes.Contains(payload, []byte(`"`+f+`"`)) {
			found = true
			break
		}
	}
	if !found {
		return payload, false, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(payload, &obj); err != nil {
		return nil, false, fmt.Errorf("payload is not a JSON object: %w", err)
	}
	removed := false
	for _, f := range fields {
		if _, ok := obj[f]; ok {
			delete(obj, f)
			removed = true
		}
	}
	if !removed {
		return payload, false, nil
	}
	b, err := json.Marshal(obj)
	return b, true, err
}

// validToken reports whether s is one subject token: not empty, no dot,
// wildcard or white space.
func validToken(s string) bool {
	return s != "" && !strings.ContainsAny(s, ".*> \t\r\n")
}

func validSubject(s string) bool {
	for t := range strings.SplitSeq(s, ".") {
		if !validToken(t) {
			return false
		}
	}
	return true
}

// checkpointFile is the checkpoint's content: the last event known to be in
// Stream.
type checkpointFile struct {
	Stream   string `json:"stream"`
	Position int64  `json:"position"`
	EventID  string `json:"event_id,omitempty"`
}

// readCheckpoint reads the checkpoint of stream; a missing file, or one of
// another stream, is position 0.
func readCheckpoint(path, stream string) (checkpointFile, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return checkpointFile{Stream: stream}, nil
	}
	if err != nil {
		return checkpointFile{}, fmt.Errorf("natsrelay: checkpoint: %w", err)
	}
	var cp checkpointFile
	if err := json.Unmarshal(b, &cp); err != nil || cp.Position < 0 {
		return checkpointFile{}, fmt.Errorf("natsrelay: checkpoint %s is damaged (delete it: the relay resumes from the stream)", path)
	}
	if cp.Stream != stream {
		return checkpointFile{Stream: stream}, nil
	}
	return cp, nil
}

// ackedTo records that the stream holds the log up to position pos
// (event id); saveCheckpoint writes it.
func (r *Relay) ackedTo(pos int64, id string) {
	r.mu.Lock()
	r.ackedPos, r.ackedID = pos, id
	r.mu.Unlock()
	r.checkpoint.Store(pos)
}

// saveCheckpoint writes the position acknowledged last, unless written
// already, durably (a synced temporary file renamed over the old one, then
// the directory synced): it never names an event the stream has not
// acknowledged.
func (r *Relay) saveCheckpoint() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.savedOnce && r.savedPos == r.ackedPos {
		return nil
	}
	pos := r.ackedPos
	b, err := json.Marshal(checkpointFile{Stream: r.cfg.Stream, Position: pos, EventID: r.ackedID})
	if err != nil {
		return err
	}
	if err := writeFileSync(r.cfg.CheckpointFile, append(b, '\n')); err != nil {
		return fmt.Errorf("natsrelay: save checkpoint: %w", err)
	}
	r.savedPos, r.savedAt, r.savedOnce = pos, time.Now(), true
	return nil
}

func writeFileSync(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
