package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/payledger/payledger/eventbus/natsrelay"
	"github.com/payledger/payledger/eventstore"
	"github.com/prometheus/client_golang/prometheus"
)

// Names in the data directory of the relay's checkpoint and the embedded
// NATS server's JetStream storage.
const (
	relayCheckpointFile = "relay.checkpoint"
	embeddedNATSDir     = "nats"
)

// relayOmitFields are payload fields the bus never carries: credential
// material (an argon2id hash, a sealed TOTP seed, a session token's hash)
// is of no use to consumers and would be one more copy to protect.
var relayOmitFields = []string{"password_hash", "sealed_secret", "token_hash"}

// bus is the event relay with its NATS connection and, when embedded, the
// server.
type bus struct {
	relay    *natsrelay.Relay
	conn     *nats.Conn
	embedded *natsrelay.Embedded
	// where says where it publishes, without credentials, for the log.
	where string
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// openBus starts the embedded NATS server or connects to the configured
// one, and builds the relay; nil when the relay is off. An external server
// that is down does not stop the start: the connection keeps retrying and
// the relay resumes when it is back.
func openBus(c *Config, store eventstore.Store) (*bus, error) {
	mode, arg, err := parseNATS(c.NATS)
	if err != nil || mode == "off" {
		return nil, err
	}
	b := &bus{}
	handlers := []nats.Option{
		nats.Name("payledger"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(2 * time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				c.Log.Warn("NATS disconnected; reconnecting", slog.String("nats", b.where), slog.Any("error", err))
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) { c.Log.Info("NATS reconnected", slog.String("nats", b.where)) }),
	}
	if mode == "embedded" {
		if b.embedded, err = natsrelay.StartEmbedded(filepath.Join(c.DataDir, embeddedNATSDir), arg); err != nil {
			return nil, fmt.Errorf("--nats %s: %w", c.NATS, err)
		}
		b.where = "embedded"
		if b.embedded.URL != "" {
			b.where = "embedded, listening on " + b.embedded.URL
		}
		b.conn, err = b.embedded.Connect(handlers...)
	} else {
		b.where = arg
		b.conn, err = nats.Connect(strings.TrimSpace(c.NATS), append(handlers, nats.RetryOnFailedConnect(true))...)
	}
	if err != nil {
		b.close()
		return nil, fmt.Errorf("connect to NATS (%s): %w", b.where, err)
	}
	b.relay, err = natsrelay.New(natsrelay.Config{Store: store, Conn: b.conn, Stream: c.NATSStream, SubjectPrefix: c.NATSSubject,
		CheckpointFile: filepath.Join(c.DataDir, relayCheckpointFile), OmitFields: relayOmitFields, Log: c.Log})
	if err != nil {
		b.close()
		return nil, err
	}
	c.Log.Info("event relay on", slog.String("nats", b.where), slog.Int64("checkpoint", b.relay.Stats().Checkpoint))
	return b, nil
}

// parseNATS reads --nats: mode "off", "embedded" (arg: the loopback
// address to listen on, or "" for none) or "external" (arg: the servers'
// scheme://host list, for the log: user names, passwords and tokens in the
// URLs are never logged).
func parseNATS(spec string) (mode, arg string, err error) {
	spec = strings.TrimSpace(spec)
	switch {
	case spec == "" || spec == "off":
		return "off", "", nil
	case spec == "embedded":
		return "embedded", "", nil
	case strings.HasPrefix(spec, "embedded:"):
		listen := strings.TrimPrefix(spec, "embedded:")
		host, _, err := net.SplitHostPort(listen)
		if ip := net.ParseIP(host); err != nil || (host != "localhost" && (ip == nil || !ip.IsLoopback())) {
			return "", "", fmt.Errorf("--nats embedded:HOST:PORT listens on a loopback address only, not %q", listen)
		}
		return "embedded", listen, nil
	}
	var hosts []string
	for u := range strings.SplitSeq(spec, ",") {
		p, err := url.Parse(strings.TrimSpace(u))
		if err != nil || (p.Scheme != "nats" && p.Scheme != "tls") || p.Host == "" {
			return "", "", errors.New("--nats must be off, embedded, embedded:HOST:PORT or nats://HOST:PORT (tls:// for TLS; comma-separated for a cluster)")
		}
		hosts = append(hosts, p.Scheme+"://"+p.Host)
	}
	return "external", strings.Join(hosts, ","), nil
}

// relayEvents runs the relay until ctx ends (it then drains). A relay that
// gave up (NATS down longer than its retries) is logged and started again
// after a pause: the ledger keeps serving without its bus, and the relay
// resumes where the stream ends.
func (m *Main) relayEvents(ctx context.Context) {
	defer m.wg.Done()
	for {
		err := m.bus.relay.Run(ctx)
		if ctx.Err() != nil {
			if err != nil {
				m.Config.Log.Error("event relay: checkpoint not saved at shutdown", slog.Any("error", err))
			}
			return
		}
		m.Config.Log.Error("event relay stopped; restarting in 5s", slog.String("nats", m.bus.where), slog.Any("error", err))
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Second):
		}
	}
}

// closeBus closes the NATS connection and stops the embedded server.
func (m *Main) closeBus() {
	if m.bus != nil {
		m.bus.close()
		m.bus = nil
	}
}

func (b *bus) close() {
	if b.conn != nil {
		b.conn.Close()
	}
	if b.embedded != nil {
		b.embedded.Shutdown()
	}
}

// relayMetrics: events published and dropped as duplicates, resumptions,
// and the relay's lag behind the log in events.
func relayMetrics(r *natsrelay.Relay, store eventstore.Store) []prometheus.Collector {
	counter := func(name, help string, read func(natsrelay.Stats) int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(read(r.Stats())) })
	}
	return []prometheus.Collector{
		counter("payledger_relay_published_total", "Events the relay published that the JetStream stream stored.",
			func(s natsrelay.Stats) int64 { return s.Published }),
		counter("payledger_relay_duplicates_total", "Events the relay published that the stream already held (dropped by Nats-Msg-Id).",
			func(s natsrelay.Stats) int64 { return s.Duplicates }),
		counter("payledger_relay_resyncs_total", "Times the relay resumed from the stream's last message after a NATS error.",
			func(s natsrelay.Stats) int64 { return s.Resyncs }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "payledger_relay_lag_events",
			Help: "Events committed to the log and not yet in the JetStream stream."}, func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			head, err := store.Head(ctx)
			if err != nil {
				return math.NaN() // unknown, rather than a lag that looks real
			}
			return float64(max(head-r.Stats().Checkpoint, 0))
		}),
	}
}
