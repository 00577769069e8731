package tests

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/payledger/payledger/eventstore"
	"github.com/payledger/payledger/eventstore/sqlite"
	"github.com/payledger/payledger/internal/apiclient"
)

// natsURL is the NATS server with JetStream the relay test publishes to;
// .ci/run starts it and sets PAYLEDGER_REQUIRE_NATS=1.
const natsURL = "nats://127.0.0.1:4222"

// TestServeRelaysToNATS runs the binary with --nats on the real NATS
// server: the accounts and deposits made through the API reach the stream
// as the log holds them; after a graceful stop and a restart, the stream
// holds every event once, in log order, and no credential material.
func TestServeRelaysToNATS(t *testing.T) {
	nc, err := nats.Connect(natsURL, nats.Timeout(2*time.Second), nats.MaxReconnects(0))
	if err != nil {
		if os.Getenv("PAYLEDGER_REQUIRE_NATS") != "" {
			t.Fatalf("NATS is not reachable at %s (%v); .ci/run starts it", natsURL, err)
		}
		t.Skipf("SKIPPED: NATS with JetStream is not reachable at %s (%v); start nats-server -js, or set PAYLEDGER_REQUIRE_NATS=1 to make this a failure", natsURL, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	tag := hex.EncodeToString(b)
	stream, prefix := "PLE2E_"+strings.ToUpper(tag), "ple2e."+tag+".events"
	defer js.DeleteStream(context.Background(), stream)

	ctx := context.Background()
	dir := t.TempDir()
	flags := []string{"--nats", natsURL, "--nats-stream", stream, "--nats-subject", prefix}
	srv := start(t, dir, flags...)
	opKey, fundKey := staffKey(t, dir, "operator"), staffKey(t, dir, "funding")
	anon := apiclient.New(srv.url)
	id, _ := openAccount(t, ctx, anon.As(opKey), "Relay Holder", "personal", "relay passphrase one")
	deposit := func(srv *server, ref string) {
		t.Helper()
		if _, err := apiclient.New(srv.url).As(fundKey).Expect(ctx, http.StatusCreated, "POST", "/v1/accounts/"+id+"/deposits",
			map[string]any{"amount": "25.00", "currency": "CNY", "reference": ref}, ref); err != nil {
			t.Fatal(err)
		}
	}
	deposit(srv, "relay-1")
	srv.stop(t, syscall.SIGTERM)

	srv = start(t, dir, flags...)
	deposit(srv, "relay-2")
	srv.stop(t, syscall.SIGTERM)

	log := readLogFile(t, filepath.Join(dir, "events.db"))
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	c, err := js.OrderedConsumer(cctx, stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var got []jetstream.Msg
	for len(got) <= len(log) && cctx.Err() == nil {
		batch, err := c.Fetch(len(log)+1-len(got), jetstream.FetchMaxWait(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		n := len(got)
		for m := range batch.Messages() {
			got = append(got, m)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			t.Fatal(err)
		}
		if len(got) == n {
			break // nothing more within a second: the stream is read
		}
	}
	if len(got) != len(log) {
		t.Fatalf("the stream holds %d messages, the log %d events", len(got), len(log))
	}
	types := map[string]bool{}
	for i, m := range got {
		e, h := log[i], m.Headers()
		if h.Get(jetstream.MsgIDHeader) != e.ID || m.Subject() != prefix+"."+e.Type || h.Get("Payledger-Stream") != e.Stream ||
			h.Get("Payledger-Position") != strconv.FormatInt(e.Position, 10) || h.Get("Payledger-Version") != strconv.FormatInt(e.Version, 10) {
			t.Fatalf("message %d: %s %v, want event %s %s at %d (%s v%d)", i, m.Subject(), h, e.ID, e.Type, e.Position, e.Stream, e.Version)
		}
		if bytes.Contains(m.Data(), []byte("argon2id")) {
			t.Fatalf("message %d (%s) carries a password hash: %s", i, e.Type, m.Data())
		}
		types[e.Type] = true
	}
	for _, want := range []string{"AccountOpened", "FactorEnrolled", "FundsDeposited"} {
		if !types[want] {
			t.Errorf("no %s in the log: %v", want, types)
		}
	}
}

func readLogFile(t *testing.T, path string) []eventstore.Event {
	t.Helper()
	r, err := sqlite.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var out []eventstore.Event
	for {
		b, err := r.ReadAll(context.Background(), int64(len(out)), eventstore.MaxReadBatch)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) == 0 {
			return out
		}
		out = append(out, b...)
	}
}
