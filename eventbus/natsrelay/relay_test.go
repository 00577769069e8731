package natsrelay

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/payledger/payledger/eventstore"
	"github.com/payledger/payledger/eventstore/postgres"
	"github.com/payledger/payledger/eventstore/sqlite"
	"github.com/payledger/payledger/internal/pgtest"
)

// externalURL is the NATS server the tests use besides the embedded one;
// .ci/run starts it and sets PAYLEDGER_REQUIRE_NATS=1.
const externalURL = "nats://127.0.0.1:4222"

// bound is how long a test waits for the relay to reach a position: a
// bound on a hang, not a measure of speed.
const bound = 60 * time.Second

// bus is a NATS server for one test: connect opens a connection; restart,
// when set, stops and starts the server on the same storage.
type bus struct {
	connect func(t *testing.T) *nats.Conn
	restart func(t *testing.T)
}

func external(t *testing.T) bus {
	t.Helper()
	nc, err := nats.Connect(externalURL, nats.Timeout(2*time.Second), nats.MaxReconnects(0))
	if err != nil {
		if os.Getenv("PAYLEDGER_REQUIRE_NATS") != "" {
			t.Fatalf("NATS is not reachable at %s (%v); .ci/run starts it", externalURL, err)
		}
		t.Skipf("SKIPPED: NATS with JetStream is not reachable at %s (%v); start nats-server -js, or set PAYLEDGER_REQUIRE_NATS=1 to make this a failure", externalURL, err)
	}
	nc.Close()
	return bus{connect: func(t *testing.T) *nats.Conn {
		t.Helper()
		nc, err := nats.Connect(externalURL, nats.Timeout(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}}
}

func embedded(t *testing.T) bus {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "nats")
	var srv *Embedded
	start := func(t *testing.T) {
		t.Helper()
		var err error
		if srv, err = StartEmbedded(dir, ""); err != nil {
			t.Fatal(err)
		}
	}
	start(t)
	t.Cleanup(func() { srv.Shutdown() })
	return bus{
		connect: func(t *testing.T) *nats.Conn {
			t.Helper()
			nc, err := srv.Connect()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(nc.Close)
			return nc
		},
		restart: func(t *testing.T) { srv.Shutdown(); start(t) },
	}
}

// names are a stream and subject prefix of the test's own, so that runs
// on the shared server do not see each other; the stream is deleted after
// the test.
func names(t *testing.T, nc *nats.Conn) (stream, prefix string) {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	tag := hex.EncodeToString(b)
	stream, prefix = "PLTEST_"+strings.ToUpper(tag), "pltest."+tag+".events"
	t.Cleanup(func() {
		if nc.IsClosed() {
			return
		}
		js, err := jetstream.New(nc)
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = js.DeleteStream(ctx, stream) // already gone with an embedded server's directory
		}
	})
	return stream, prefix
}

// testLog is an event log and the number of events appended to it.
type testLog struct {
	store eventstore.Store
	n     int
}

func openLog(t testing.TB) *testLog {
	t.Helper()
	s, err := sqlite.Open(filepath.Join(t.TempDir(), "events.db"), sqlite.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return &testLog{store: s}
}

var types = []string{"AccountOpened", "FactorEnrolled", "FundsDeposited", "PaymentConfirmed"}

// appendEvents appends n events, one per append, over three streams and
// four types; FactorEnrolled carries a password hash the relay omits.
func (l *testLog) appendEvents(t testing.TB, n int) {
	t.Helper()
	for range n {
		i := l.n
		l.n++
		if _, err := l.store.Append(context.Background(), fmt.Sprintf("account-%d", i%3), eventstore.Any, []eventstore.EventData{event(i)}); err != nil {
			t.Fatal(err)
		}
	}
}

// appendEventsBatched appends n events in appends of 500 to one stream.
func (l *testLog) appendEventsBatched(t testing.TB, n int) {
	t.Helper()
	for n > 0 {
		batch := make([]eventstore.EventData, 0, 500)
		for ; n > 0 && len(batch) < cap(batch); n-- {
			batch = append(batch, event(l.n))
			l.n++
		}
		if _, err := l.store.Append(context.Background(), fmt.Sprintf("account-%d", l.n%3), eventstore.Any, batch); err != nil {
			t.Fatal(err)
		}
	}
}

// event is the test log's event number i.
func event(i int) eventstore.EventData {
	base := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	typ := types[i%len(types)]
	payload := fmt.Sprintf(`{"n":%d,"amount":"%d.50"}`, i, i)
	if typ == "FactorEnrolled" {
		payload = fmt.Sprintf(`{"n":%d,"password_hash":"$argon2id$v=19$secret-%d","method":"password"}`, i, i)
	}
	return eventstore.EventData{ID: fmt.Sprintf("01J%023d", i), Type: typ, SchemaVersion: 1,
		OccurredAt: base.Add(time.Duration(i) * time.Second), CorrelationID: fmt.Sprintf("corr-%d", i/2),
		Payload: []byte(payload)}
}

func (l *testLog) all(t *testing.T) []eventstore.Event {
	t.Helper()
	var out []eventstore.Event
	for {
		batch, err := l.store.ReadAll(context.Background(), int64(len(out)), eventstore.MaxReadBatch)
		if err != nil {
			t.Fatal(err)
		}
		if len(batch) == 0 {
			return out
		}
		out = append(out, batch...)
	}
}

// running is a relay running in the background.
type running struct {
	r    *Relay
	stop context.CancelFunc
	done chan error
}

func newRelay(t *testing.T, l *testLog, nc *nats.Conn, stream, prefix, checkpoint string) *Relay {
	t.Helper()
	r, err := New(Config{Store: l.store, Conn: nc, Stream: stream, SubjectPrefix: prefix,
		CheckpointFile: checkpoint, MaxBatch: 64, MaxAttempts: 3, OmitFields: []string{"password_hash", "sealed_secret"}})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func start(t *testing.T, r *Relay) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	run := &running{r: r, stop: cancel, done: make(chan error, 1)}
	go func() { run.done <- r.Run(ctx) }()
	t.Cleanup(func() { run.halt(t) })
	return run
}

// halt stops the relay (it drains) and checks it ended cleanly.
func (run *running) halt(t *testing.T) {
	t.Helper()
	if run.stop == nil {
		return
	}
	run.stop()
	run.stop = nil
	if err := <-run.done; err != nil {
		t.Errorf("relay: %v", err)
	}
}

// waitFor waits until the relay's checkpoint reaches pos.
func (run *running) waitFor(t *testing.T, pos int64) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for run.r.Stats().Checkpoint < pos {
		select {
		case err := <-run.done:
			t.Fatalf("relay stopped at %d of %d: %v", run.r.Stats().Checkpoint, pos, err)
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("relay at %d, not %d, after %s", run.r.Stats().Checkpoint, pos, bound)
		}
	}
}

// consume reads the whole stream from its start with an ordered consumer,
// as a downstream subscriber would, and checks that it holds exactly the
// log, in log order, with the right subjects, headers and payloads.
func consume(t *testing.T, nc *nats.Conn, stream, prefix string, log []eventstore.Event) {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	info, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.CachedInfo().State.Msgs; got != uint64(len(log)) {
		t.Errorf("stream holds %d messages, the log %d events", got, len(log))
	}
	c, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var got []jetstream.Msg
	for len(got) < len(log) && ctx.Err() == nil {
		batch, err := c.Fetch(len(log)-len(got), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			got = append(got, m)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			t.Fatal(err)
		}
	}
	if len(got) != len(log) {
		t.Fatalf("subscriber received %d messages, want %d", len(got), len(log))
	}
	for i, m := range got {
		e := log[i]
		h := m.Headers()
		meta, err := m.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		if meta.Sequence.Stream != uint64(i+1) {
			t.Fatalf("message %d has stream sequence %d", i, meta.Sequence.Stream)
		}
		want := map[string]string{
			jetstream.MsgIDHeader: e.ID,
			HeaderStream:          e.Stream,
			HeaderVersion:         strconv.FormatInt(e.Version, 10),
			HeaderPosition:        strconv.FormatInt(e.Position, 10),
			HeaderHash:            hex.EncodeToString(e.Hash[:]),
			HeaderSchemaVersion:   "1",
			HeaderOccurredAt:      e.OccurredAt.UTC().Format(time.RFC3339Nano),
			HeaderCorrelationID:   e.CorrelationID,
		}
		for k, v := range want {
			if h.Get(k) != v {
				t.Fatalf("message %d: header %s = %q, want %q (event at position %d)", i, k, h.Get(k), v, e.Position)
			}
		}
		if m.Subject() != prefix+"."+e.Type {
			t.Fatalf("message %d: subject %s, want %s.%s", i, m.Subject(), prefix, e.Type)
		}
		body := m.Data()
		if e.Type == "FactorEnrolled" {
			if bytes.Contains(body, []byte("argon2id")) || h.Get(HeaderOmitted) != "password_hash,sealed_secret" {
				t.Fatalf("message %d published the password hash: %s (omitted %q)", i, body, h.Get(HeaderOmitted))
			}
			var p map[string]any
			if err := json.Unmarshal(body, &p); err != nil || p["method"] != "password" {
				t.Fatalf("message %d: payload %s", i, body)
			}
		} else if !bytes.Equal(body, e.Payload) || h.Get(HeaderOmitted) != "" {
			t.Fatalf("message %d: payload %s, want %s", i, body, e.Payload)
		}
	}
}

func TestRelayExternal(t *testing.T) { testRelay(t, external(t), openLog(t)) }
func TestRelayEmbedded(t *testing.T) { testRelay(t, embedded(t), openLog(t)) }

// TestRelayPostgres: the relay reads the log through the port, so it
// publishes a PostgreSQL log the same way.
func TestRelayPostgres(t *testing.T) {
	ctx := context.Background()
	dsn, schema := pgtest.Schema(t, t.Name())
	opts := postgres.DefaultOptions()
	opts.Schema = schema
	if _, err := postgres.Migrate(ctx, dsn, opts); err != nil {
		t.Fatal(err)
	}
	s, err := postgres.Open(ctx, dsn, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	testRelay(t, embedded(t), &testLog{store: s})
}

// testRelay publishes a log in three rounds: a relay catches up with a
// stored log and follows it live; a second relay resumes from a checkpoint
// older than the stream, as after a crash between a publish's ack and the
// checkpoint's write (and, embedded, after the server restarted); the
// subscriber sees every event once, in log order.
func testRelay(t *testing.T, b bus, l *testLog) {
	nc := b.connect(t)
	stream, prefix := names(t, nc)
	cpFile := filepath.Join(t.TempDir(), "relay.checkpoint")

	l.appendEvents(t, 300) // stored before the relay starts: catch-up
	a := start(t, newRelay(t, l, nc, stream, prefix, cpFile))
	a.waitFor(t, 300)
	l.appendEvents(t, 200) // while it runs: live
	a.waitFor(t, 500)
	a.halt(t)
	if s := a.r.Stats(); s.Published != 500 || s.Duplicates != 0 || s.Checkpoint != 500 {
		t.Fatalf("first relay: %+v", s)
	}
	cp, err := readCheckpoint(cpFile, stream)
	if err != nil || cp.Position != 500 || cp.EventID != fmt.Sprintf("01J%023d", 499) {
		t.Fatalf("checkpoint after a graceful stop: %+v, %v", cp, err)
	}

	// The checkpoint as if the relay had died after the ack of position 500
	// but before writing more than position 120.
	log := l.all(t)
	old, err := json.Marshal(checkpointFile{Stream: stream, Position: 120, EventID: log[119].ID})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cpFile, old, 0o600); err != nil {
		t.Fatal(err)
	}
	if b.restart != nil {
		nc.Close()
		b.restart(t)
		nc = b.connect(t)
	}
	l.appendEvents(t, 100)
	r := newRelay(t, l, nc, stream, prefix, cpFile)
	if got := r.Stats().Checkpoint; got != 120 {
		t.Fatalf("second relay starts from checkpoint %d, want 120", got)
	}
	second := start(t, r)
	second.waitFor(t, 600)
	second.halt(t)
	if s := r.Stats(); s.Published != 100 || s.Duplicates != 0 {
		t.Fatalf("second relay re-sent events the stream held: %+v", s)
	}
	consume(t, nc, stream, prefix, l.all(t))
}

// TestRelayDuplicatesDropped: events the stream holds, published again by
// the relay (as after a lost ack, directly after the stream's last message)
// are acknowledged as duplicates by Nats-Msg-Id and stored no second time;
// so is a manual re-send without an expected sequence.
func TestRelayDuplicatesDropped(t *testing.T) {
	b := embedded(t)
	l := openLog(t)
	nc := b.connect(t)
	stream, prefix := names(t, nc)
	l.appendEvents(t, 50)
	run := start(t, newRelay(t, l, nc, stream, prefix, filepath.Join(t.TempDir(), "cp")))
	run.waitFor(t, 50)
	run.halt(t)

	log := l.all(t)
	for _, e := range log[40:50] {
		seq, err := run.r.publish([]eventstore.Event{e}, 50)
		if err != nil || seq != 50 {
			t.Fatalf("re-publishing position %d: last sequence %d, %v", e.Position, seq, err)
		}
	}
	if s := run.r.Stats(); s.Duplicates != 10 || s.Published != 50 {
		t.Fatalf("re-publishing 10 held events: %+v", s)
	}
	msg, err := run.r.message(log[3])
	if err != nil {
		t.Fatal(err)
	}
	ack, err := run.r.js.PublishMsg(context.Background(), msg, jetstream.WithMsgID(log[3].ID))
	if err != nil || !ack.Duplicate || ack.Sequence != 4 {
		t.Fatalf("manual re-send of position 4: %+v, %v", ack, err)
	}
	consume(t, nc, stream, prefix, log)
}

// TestRelayNewStream: a stream deleted (or a new NATS) gets the whole log
// again, whatever the checkpoint says; events are never skipped.
func TestRelayNewStream(t *testing.T) {
	b := embedded(t)
	l := openLog(t)
	nc := b.connect(t)
	stream, prefix := names(t, nc)
	cpFile := filepath.Join(t.TempDir(), "cp")
	l.appendEvents(t, 40)
	run := start(t, newRelay(t, l, nc, stream, prefix, cpFile))
	run.waitFor(t, 40)
	run.halt(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteStream(context.Background(), stream); err != nil {
		t.Fatal(err)
	}
	l.appendEvents(t, 5)
	r := newRelay(t, l, nc, stream, prefix, cpFile)
	if r.Stats().Checkpoint != 40 {
		t.Fatalf("checkpoint %d, want 40", r.Stats().Checkpoint)
	}
	again := start(t, r)
	again.waitFor(t, 45)
	again.halt(t)
	if s := r.Stats(); s.Published != 45 {
		t.Fatalf("the new stream got %d events, want the whole log (45)", s.Published)
	}
	consume(t, nc, stream, prefix, l.all(t))
}

// TestRelayForeignStream: a stream that ends with an event this log does
// not hold at that position (another ledger's, or the log is older than
// the stream) is not extended.
func TestRelayForeignStream(t *testing.T) {
	b := embedded(t)
	nc := b.connect(t)
	stream, prefix := names(t, nc)
	first := openLog(t)
	first.appendEvents(t, 30)
	run := start(t, newRelay(t, first, nc, stream, prefix, filepath.Join(t.TempDir(), "cp")))
	run.waitFor(t, 30)
	run.halt(t)

	other := openLog(t) // a log with only 10 events: position 30 is not in it
	other.appendEvents(t, 10)
	r := newRelay(t, other, nc, stream, prefix, filepath.Join(t.TempDir(), "cp"))
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	err := r.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "this log does not hold") {
		t.Fatalf("relay over another log: %v", err)
	}
	if s := r.Stats(); s.Published != 0 {
		t.Fatalf("published %d events into another log's stream", s.Published)
	}
	consume(t, nc, stream, prefix, first.all(t))
}

// TestRelayTwoRelays: two relays (two nodes) publish one log to one stream
// at once while it grows; the stream still holds every event once, in log
// order, because each publish expects its predecessor's sequence.
func TestRelayTwoRelays(t *testing.T) {
	b := embedded(t)
	l := openLog(t)
	nc := b.connect(t)
	stream, prefix := names(t, nc)
	l.appendEvents(t, 100)
	var runs []*running
	for i := range 2 {
		r := newRelay(t, l, b.connect(t), stream, prefix, filepath.Join(t.TempDir(), fmt.Sprintf("cp%d", i)))
		runs = append(runs, start(t, r))
	}
	l.appendEvents(t, 200)
	for _, run := range runs {
		run.waitFor(t, 300)
	}
	for _, run := range runs {
		run.halt(t)
	}
	s0, s1 := runs[0].r.Stats(), runs[1].r.Stats()
	if s0.Published+s1.Published != 300 {
		t.Errorf("the relays stored %d + %d events, want 300 in all", s0.Published, s1.Published)
	}
	consume(t, nc, stream, prefix, l.all(t))
}

// TestEmbeddedListensOnLoopbackOnly: the embedded server takes TCP clients
// only on a loopback address; a client there sees what the relay
// published.
func TestEmbeddedListensOnLoopbackOnly(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:4223", "192.0.2.1:4223", ":4223", "127.0.0.1", "127.0.0.1:http"} {
		if srv, err := StartEmbedded(t.TempDir(), addr); err == nil {
			srv.Shutdown()
			t.Errorf("embedded NATS started listening on %q", addr)
		}
	}
	srv, err := StartEmbedded(filepath.Join(t.TempDir(), "nats"), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	if !strings.HasPrefix(srv.URL, "nats://127.0.0.1:") || srv.URL == "nats://127.0.0.1:4222" {
		t.Fatalf("embedded NATS URL %q", srv.URL)
	}
	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	l := openLog(t)
	l.appendEvents(t, 12)
	stream, prefix := names(t, nc)
	run := start(t, newRelay(t, l, nc, stream, prefix, filepath.Join(t.TempDir(), "cp")))
	run.waitFor(t, 12)
	run.halt(t)
	tcp, err := nats.Connect(srv.URL, nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	consume(t, tcp, stream, prefix, l.all(t))
}
