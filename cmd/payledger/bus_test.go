package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/payledger/payledger/eventbus/natsrelay"
	"github.com/payledger/payledger/eventstore"
)

// TestServeRelaysToEmbeddedNATS: serve with --nats embedded publishes every
// event of the log to the in-process JetStream, shows it on /metrics, drains
// at shutdown (the checkpoint file names the log's head), and after a
// restart of the server (and its NATS) goes on without re-sending; the
// stream then holds the log once, in order, without credential material.
func TestServeRelaysToEmbeddedNATS(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	open := func() *Main {
		m := &Main{Config: Config{Addr: "127.0.0.1:0", MetricsPublic: true, DataDir: dir, TimeZone: "Asia/Shanghai",
			NATS: "embedded", Log: slog.New(slog.NewTextHandler(io.Discard, nil))}}
		if err := m.Open(ctx); err != nil {
			t.Fatal(err)
		}
		return m
	}
	m := open()
	for i := range 2 {
		if _, err := benchSetupOne(ctx, m.Service, i); err != nil {
			t.Fatal(err)
		}
	}
	head, err := m.Store.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for m.bus.relay.Stats().Checkpoint < head {
		if time.Now().After(deadline) {
			t.Fatalf("relay at %d of %d after a minute", m.bus.relay.Stats().Checkpoint, head)
		}
		time.Sleep(5 * time.Millisecond)
	}
	metrics := get(t, m.URL+"/metrics")
	for name, want := range map[string]int64{"payledger_relay_published_total": head, "payledger_relay_lag_events": 0, "payledger_relay_duplicates_total": 0} {
		c := regexp.MustCompile(`(?m)^` + name + ` (\d+)$`).FindSubmatch(metrics)
		if c == nil {
			t.Fatalf("no %s on /metrics", name)
		}
		if n, _ := strconv.ParseInt(string(c[1]), 10, 64); n != want {
			t.Errorf("%s = %d, want %d", name, n, want)
		}
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}

	firstHead := head
	m = open()
	if _, err := benchSetupOne(ctx, m.Service, 2); err != nil {
		t.Fatal(err)
	}
	if head, err = m.Store.Head(ctx); err != nil {
		t.Fatal(err)
	}
	log := readLog(t, m.Store)
	relay := m.bus.relay
	// Closed at once: the shutdown drains what the relay has not sent.
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	var cp struct{ Position int64 }
	if b, err := os.ReadFile(filepath.Join(dir, relayCheckpointFile)); err != nil || json.Unmarshal(b, &cp) != nil || cp.Position != head {
		t.Fatalf("checkpoint after shutdown: %+v (%v), want position %d", cp, err, head)
	}
	if s := relay.Stats(); s.Duplicates != 0 || s.Published != head-firstHead {
		t.Fatalf("the restarted relay published %+v, want the %d events after %d", s, head-firstHead, firstHead)
	}

	srv, err := natsrelay.StartEmbedded(filepath.Join(dir, embeddedNATSDir), "")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	c, err := js.OrderedConsumer(cctx, natsrelay.DefaultStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := c.Fetch(len(log)+1, jetstream.FetchMaxWait(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	i := 0
	for msg := range batch.Messages() {
		if i >= len(log) {
			t.Fatalf("the stream holds more than the log's %d events", len(log))
		}
		e := log[i]
		if msg.Headers().Get(jetstream.MsgIDHeader) != e.ID || msg.Subject() != "payledger.events."+e.Type ||
			msg.Headers().Get(natsrelay.HeaderPosition) != strconv.FormatInt(e.Position, 10) {
			t.Fatalf("message %d: %s %v, want event %s (%s) at %d", i, msg.Subject(), msg.Headers(), e.ID, e.Type, e.Position)
		}
		if e.Type == "FactorEnrolled" && (bytes.Contains(msg.Data(), []byte("sealed_secret")) || !bytes.Contains(e.Payload, []byte("sealed_secret"))) {
			t.Fatalf("FactorEnrolled: the log has %s, the bus %s", e.Payload, msg.Data())
		}
		i++
	}
	if i != len(log) {
		t.Fatalf("the stream holds %d of the log's %d events", i, len(log))
	}
}

func readLog(t *testing.T, s eventstore.Store) []eventstore.Event {
	t.Helper()
	var out []eventstore.Event
	for {
		b, err := s.ReadAll(context.Background(), int64(len(out)), eventstore.MaxReadBatch)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) == 0 {
			return out
		}
		out = append(out, b...)
	}
}

func get(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return b
}

// TestNATSFlag: a wrong --nats is refused with the forms it takes, before
// the data directory is created; the servers of a URL are logged without
// their credentials.
func TestNATSFlag(t *testing.T) {
	for _, spec := range []string{"on", "http://127.0.0.1:4222", "nats://", "127.0.0.1:4222", "embedded:0.0.0.0:4222", "embedded:4222",
		"nats://127.0.0.1:4222,bogus"} {
		dir := filepath.Join(t.TempDir(), "data")
		m := &Main{Config: Config{DataDir: dir, TimeZone: "Asia/Shanghai", NATS: spec, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}}
		err := m.Open(context.Background())
		if err == nil {
			m.Close()
			t.Errorf("--nats %s: accepted", spec)
			continue
		}
		if !regexp.MustCompile(`--nats (must be|embedded:HOST:PORT listens on a loopback address only)`).MatchString(err.Error()) {
			t.Errorf("--nats %s: %v", spec, err)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("--nats %s: the data directory was created (%v)", spec, err)
		}
	}
	mode, where, err := parseNATS("nats://alice:s3cret@10.0.0.1:4222, tls://t0ken@n2.example:4222")
	if err != nil || mode != "external" || where != "nats://10.0.0.1:4222,tls://n2.example:4222" {
		t.Fatalf("parseNATS: %s %q %v", mode, where, err)
	}
}
