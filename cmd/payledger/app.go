package main

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"time"

	"github.com/payledger/payledger/checkpoints"
	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/eventbus/natsrelay"
	"github.com/payledger/payledger/eventstore"
	"github.com/payledger/payledger/eventstore/kurrent"
	"github.com/payledger/payledger/eventstore/postgres"
	"github.com/payledger/payledger/eventstore/sqlite"
	"github.com/payledger/payledger/httpapi"
	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/personaldata"
	"github.com/payledger/payledger/ledger/staffkeys"
	"github.com/payledger/payledger/projections"
	"github.com/prometheus/client_golang/prometheus"
)

// Config is what a Main needs to run; flags fill it.
type Config struct {
	Addr string
	// TLS: a certificate and key file, or a self-signed certificate made
	// at start for local use; plain HTTP is served only on loopback unless
	// InsecureHTTP says otherwise.
	TLSCert, TLSKey string
	TLSSelfSigned   bool
	InsecureHTTP    bool
	// MetricsPublic serves GET /metrics without a staff key.
	MetricsPublic bool
	DataDir       string
	TimeZone      string
	// BiometricKey is the base64 Ed25519 public key of the biometric
	// attestation provider; empty disables biometric proofs.
	BiometricKey string
	// PolicyFile is a JSON file with the fee schedule and the reserve
	// policy (policyfile.go); empty keeps the defaults (no fees).
	PolicyFile string
	// Rules overrides of the policy defaults. Zero keeps the default when
	// the Config is built in code; from flags (fromFlags) every value is
	// explicit and zero is refused.
	fromFlags    bool
	LockAfter    int
	LockFor      time.Duration
	ChallengeTTL time.Duration
	SessionTTL   time.Duration
	SessionIdle  time.Duration
	CoolingOff   time.Duration
	// Clock and Rand default to the real ones; tests and the bench inject.
	Clock     func() time.Time
	Rand      io.Reader
	StoreOpts sqlite.Options
	// Store is where the event log lives (parseStore): empty for the data
	// directory's events.db, sqlite:PATH, postgres://... or
	// kurrentdb://...; PostgresOpts and KurrentOpts tune those adapters
	// (zero: their defaults).
	Store        string
	PostgresOpts postgres.Options
	KurrentOpts  kurrent.Options
	// SharedLog lets several processes serve one PostgreSQL log at once
	// (--shared-log): none takes the writer's lease and each reads an
	// account's stream tail before deciding (ledger.Config.SoleWriter
	// false).
	SharedLog bool
	// DataKeys is the PostgreSQL database of the customers' data keys
	// (--data-keys); empty: the log's when it is on PostgreSQL, else the
	// data directory's personaldata.db.
	DataKeys string
	// ReadModels is where the read models live (parseReadModels): empty
	// for the data directory's readmodels.db, sqlite:PATH, or
	// postgres://...
	ReadModels string
	// Progress, when a terminal, shows how far a long start is (an old
	// event log's migration); nil shows nothing.
	Progress    io.Writer
	Log         *slog.Logger
	ReadTimeout time.Duration
	// CloseCurrencies are the reserves whose days serve closes itself,
	// every CloseEvery (a minute by default); none when empty.
	CloseCurrencies []domain.Currency
	CloseEvery      time.Duration
	// CheckpointKey is the file of the key that signs checkpoints of the
	// log every CheckpointEvery and at shutdown; CheckpointDir, when set,
	// receives a copy of each (storage the server cannot rewrite). No key,
	// no checkpoints.
	CheckpointKey   string
	CheckpointDir   string
	CheckpointEvery time.Duration
	// NATS is where the relay publishes the log (bus.go): "off" or "" (no
	// relay), "embedded" (a NATS server inside the process, storage under
	// the data directory, no port), "embedded:HOST:PORT" (the same,
	// listening on a loopback address), or nats:// and tls:// URLs.
	// NATSStream and NATSSubject name the JetStream stream and the subject
	// prefix (natsrelay's defaults when empty).
	NATS        string
	NATSStream  string
	NATSSubject string
	// MasterKey is the file of the key that wraps the customers' data
	// keys (personaldata.db), MasterKeyB64 the key itself from the
	// environment; with neither, one is generated beside the data
	// directory on its first start (masterkey.go).
	MasterKey    string
	MasterKeyB64 string
	// SnapshotEvery is ledger.Config.SnapshotEvery (0: its default).
	SnapshotEvery int
}

// Main is one running ledger: store, read models, write path and HTTP API.
// End-to-end tests and the demo use it exactly as serve does.
type Main struct {
	Config Config
	// Store is the event log: *sqlite.Store, *postgres.Store or
	// *kurrent.Store.
	Store   eventstore.Store
	RM      *projections.ReadModels
	Service *ledger.Service
	// StaffKeys holds the staff API keys (payledger keys).
	StaffKeys *staffkeys.Store
	// PersonalData holds the customers' data keys (R20).
	PersonalData *personaldata.Store
	// URL is the API's base URL once Open has bound the listener.
	URL string

	// syncSeconds is the event log's histogram of sync durations, filled
	// from the store's ObserveSync and served on /metrics.
	syncSeconds prometheus.Histogram
	// signer signs checkpoints of the log (nil without a key).
	signer *checkpoints.Signer
	// bus is the event relay and its NATS connection (nil when off).
	bus *bus

	srv    *http.Server
	ln     net.Listener
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// addFlags registers the flags shared by the commands that open a data dir.
func (c *Config) addFlags(fs *flag.FlagSet, withAddr bool) {
	if withAddr {
		fs.StringVar(&c.Addr, "addr", "127.0.0.1:8080", "listen address (loopback by default)")
		fs.StringVar(&c.TLSCert, "tls-cert", "", "serve HTTPS with this PEM certificate (with --tls-key)")
		fs.StringVar(&c.TLSKey, "tls-key", "", "PEM private key of --tls-cert")
		fs.BoolVar(&c.TLSSelfSigned, "tls-self-signed", false, "serve HTTPS with a self-signed certificate made at start (local use)")
		fs.BoolVar(&c.InsecureHTTP, "insecure-http", false, "allow plain HTTP on an address that is not loopback")
		fs.BoolVar(&c.MetricsPublic, "metrics-public", false, "serve GET /metrics without a staff key (when the network keeps it private)")
		fs.StringVar(&c.CheckpointKey, "checkpoint-key", os.Getenv("PAYLEDGER_CHECKPOINT_KEY"),
			"file of the key that signs checkpoints of the log (payledger keys signing-key; keep it outside the data directory)")
		fs.StringVar(&c.CheckpointDir, "checkpoint-dir", "", "also write each signed checkpoint here, e.g. a write-once mount")
		fs.DurationVar(&c.CheckpointEvery, "checkpoint-every", time.Minute, "how often to sign a checkpoint of the log (and at shutdown)")
		fs.StringVar(&c.NATS, "nats", envOr("PAYLEDGER_NATS", "off"),
			"publish the log to NATS JetStream: off, embedded (in process, storage in the data directory; embedded:127.0.0.1:PORT to listen), or nats://HOST:4222 (env PAYLEDGER_NATS)")
		fs.StringVar(&c.NATSStream, "nats-stream", envOr("PAYLEDGER_NATS_STREAM", natsrelay.DefaultStream), "the JetStream stream the relay publishes to (created when missing)")
		fs.BoolVar(&c.SharedLog, "shared-log", envOr("PAYLEDGER_SHARED_LOG", "") == "1",
			"serve a postgres:// log together with other payledger processes (multi-node; docs/deployment.md; env PAYLEDGER_SHARED_LOG=1); a kurrentdb:// log is always served so")
		fs.StringVar(&c.NATSSubject, "nats-subject", envOr("PAYLEDGER_NATS_SUBJECT", natsrelay.DefaultSubjectPrefix), "the subject prefix: events go to PREFIX.<EventType>")
	}
	fs.StringVar(&c.Store, "store", os.Getenv("PAYLEDGER_STORE"),
		"the event log: sqlite:PATH, postgres://... (run payledger migrate first) or kurrentdb://... (env PAYLEDGER_STORE); default events.db in --data")
	fs.StringVar(&c.ReadModels, "read-models", os.Getenv(readModelsEnv), readModelsFlagUsage)
	fs.StringVar(&c.DataDir, "data", "./data", "data directory of the embedded store")
	fs.StringVar(&c.DataKeys, "data-keys", os.Getenv("PAYLEDGER_DATA_KEYS"), dataKeysFlagUsage)
	fs.StringVar(&c.MasterKey, "master-key", os.Getenv("PAYLEDGER_MASTER_KEY_FILE"),
		"file of the key that wraps the customers' data keys (payledger keys master-key; mode 0600, outside the data directory); default: $"+masterKeyEnv+", else DATA.master.key beside the data directory, generated on first start")
	c.MasterKeyB64 = os.Getenv(masterKeyEnv)
	fs.StringVar(&c.TimeZone, "tz", "Asia/Shanghai", "time zone of the calendar day for daily limits")
	fs.StringVar(&c.PolicyFile, "policy", "", "JSON file of the fee schedule and the risk-reserve policy (docs/reserves.md); default: no fees, the default reserve policy")
	fs.StringVar(&c.BiometricKey, "biometric-provider-key", os.Getenv("PAYLEDGER_BIOMETRIC_PROVIDER_KEY"),
		"base64 Ed25519 public key of the biometric attestation provider")
	c.fromFlags = true
	fs.IntVar(&c.LockAfter, "lock-after", 5, "consecutive failed logins or verifications that lock access (R9)")
	fs.DurationVar(&c.LockFor, "lock-for", 30*time.Minute, "how long a lock lasts (R9)")
	fs.DurationVar(&c.ChallengeTTL, "challenge-ttl", 5*time.Minute, "how long an initiated payment and its one-time proof stay valid (R7)")
	fs.DurationVar(&c.SessionTTL, "session-ttl", 8*time.Hour, "how long a login session lasts at most (R9)")
	fs.DurationVar(&c.SessionIdle, "session-idle", 15*time.Minute, "how long a login session lasts without a request (R9)")
	fs.DurationVar(&c.CoolingOff, "cooling-off", 24*time.Hour, "how long a factor added without an operator's identity check waits before it can move money")
}

// applyRules puts the configured overrides into the policy, refusing values
// that would switch a protection off.
func (c *Config) applyRules(p *domain.Policy) error {
	if c.LockAfter != 0 || c.fromFlags {
		if c.LockAfter < 1 || c.LockAfter > 100 {
			return errors.New("--lock-after must be 1 to 100")
		}
		p.MaxFailures = c.LockAfter
	}
	for _, o := range []struct {
		name string
		v    time.Duration
		dst  *time.Duration
	}{
		{"--lock-for", c.LockFor, &p.LockDuration},
		{"--challenge-ttl", c.ChallengeTTL, &p.ChallengeTTL},
		{"--session-ttl", c.SessionTTL, &p.SessionTTL},
		{"--session-idle", c.SessionIdle, &p.SessionIdle},
		{"--cooling-off", c.CoolingOff, &p.CoolingOff},
	} {
		if o.v == 0 && !c.fromFlags {
			continue
		}
		if o.v < time.Second || o.v > 7*24*time.Hour {
			return fmt.Errorf("%s must be between 1s and 168h", o.name)
		}
		*o.dst = o.v
	}
	return nil
}

// Open opens the store and read models, catches the read models up, starts
// the projection and, when Addr is set, the HTTP API.
func (m *Main) Open(ctx context.Context) error {
	c := &m.Config
	c.setDefaults()
	policy, err := c.policy()
	if err != nil {
		return err
	}
	reservePolicy, err := loadPolicyFile(c.PolicyFile, &policy)
	if err != nil {
		return err
	}
	// A wrong --nats is refused before anything is opened or created.
	if _, _, err := parseNATS(c.NATS); err != nil {
		return err
	}
	keys, err := c.serverKeys()
	if err != nil {
		return err
	}
	if err := m.openStores(ctx); err != nil {
		return err
	}
	m.Service, err = ledger.New(ledger.Config{Store: m.Store, Balances: m.RM, Policy: policy, Keys: keys,
		Clock: c.Clock, NewID: ledger.NewULIDSource(c.Clock, c.Rand), Rand: c.Rand,
		// The SQLite file has one writing process, and it runs this one
		// Service: its aggregate cache is authoritative. On PostgreSQL
		// the writer's lease makes it so, unless --shared-log (see
		// docs/architecture.md, "Running on PostgreSQL"); on KurrentDB
		// nothing does (soleWriter).
		SoleWriter: soleWriter(c.SharedLog, m.Store), StaffKeys: m.StaffKeys, Reserves: reservePolicy, PersonalData: m.PersonalData,
		SnapshotEvery: c.SnapshotEvery,
		OnSnapshotRejected: func(stream, reason string) {
			c.Log.Warn("snapshot not trusted; the stream is read in full", slog.String("stream", stream), slog.String("reason", reason))
		}})
	if err != nil {
		m.closeStores()
		return err
	}
	// An erasure a stop interrupted is completed before anything is served.
	if _, err := m.Service.CompleteErasures(ctx); err != nil {
		m.closeStores()
		return err
	}
	if err := m.openSigner(ctx); err != nil {
		m.closeStores()
		return err
	}
	if m.bus, err = openBus(c, m.Store); err != nil {
		m.closeStores()
		return err
	}
	// The stores just made their files with the process's umask.
	if err := secureDataDir(c.DataDir); err != nil {
		m.closeBus()
		m.closeStores()
		return err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	m.wg.Add(1)
	go m.project(runCtx)
	if m.signer != nil {
		m.wg.Add(1)
		go m.checkpoint(runCtx)
	}
	if len(c.CloseCurrencies) > 0 {
		m.wg.Add(1)
		go m.closeDays(runCtx)
	}
	if m.bus != nil {
		m.wg.Add(1)
		go m.relayEvents(runCtx)
	}
	if c.Addr == "" {
		return nil
	}
	if err := m.serve(); err != nil {
		m.Close()
		return err
	}
	return nil
}

// setDefaults fills what a Config built in code may leave out.
func (c *Config) setDefaults() {
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Rand == nil {
		c.Rand = ledger.CryptoRand
	}
	if c.Log == nil {
		c.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if reflect.ValueOf(c.StoreOpts).IsZero() { // Options holds funcs, so == cannot tell
		c.StoreOpts = sqlite.DefaultOptions()
	}
}

// policy is the default policy in the configured time zone with the
// configured overrides and biometric provider key.
func (c *Config) policy() (domain.Policy, error) {
	loc, err := time.LoadLocation(c.TimeZone)
	if err != nil {
		return domain.Policy{}, fmt.Errorf("time zone %q: %w", c.TimeZone, err)
	}
	policy := domain.DefaultPolicy(loc)
	if err := c.applyRules(&policy); err != nil {
		return domain.Policy{}, err
	}
	if c.BiometricKey != "" {
		k, err := base64.StdEncoding.DecodeString(c.BiometricKey)
		if err != nil || len(k) != ed25519.PublicKeySize {
			return domain.Policy{}, errors.New("--biometric-provider-key must be a base64 Ed25519 public key")
		}
		policy.BiometricProviderKey = k
	}
	return policy, nil
}

// serverKeys creates the data directory if needed and derives the
// server's keys from its master key there (created on first use).
func (c *Config) serverKeys() (*ledger.Keys, error) {
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	keyPath := filepath.Join(c.DataDir, "server.key")
	if st, err := os.Stat(keyPath); err == nil && st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("server key %s is readable by others (mode %04o): chmod 600 it, and consider it leaked", keyPath, st.Mode().Perm())
	}
	if err := secureDataDir(c.DataDir); err != nil {
		return nil, err
	}
	master, err := ledger.LoadOrCreateKey(keyPath, c.Rand)
	if err != nil {
		return nil, err
	}
	return ledger.NewKeys(master, c.Rand)
}

// openStores opens the staff keys, the event log and the read models, and
// catches the read models up with the log; on failure it closes what it
// opened.
func (m *Main) openStores(ctx context.Context) error {
	c := &m.Config
	var err error
	if m.StaffKeys, err = staffkeys.Open(filepath.Join(c.DataDir, "staffkeys.db"), c.Clock, c.Rand); err != nil {
		return fmt.Errorf("open staff keys: %w", err)
	}
	// The log first: a server refused by the log's lock is told so before
	// its master key is checked against a PostgreSQL log's shared keys.
	if m.Store, err = m.openLog(ctx); err != nil {
		m.closeStores()
		return err
	}
	if err := m.openPersonalData(ctx); err != nil {
		m.closeStores()
		return err
	}
	if m.RM, err = openReadModels(ctx, c.ReadModels, c.DataDir); err != nil {
		m.closeStores()
		return fmt.Errorf("open read models: %w", err)
	}
	if err := m.RM.CatchUp(ctx, m.Store); err != nil {
		m.closeStores()
		return fmt.Errorf("catch up read models: %w", err)
	}
	return nil
}

// storeOptions are the configured store options with the sync histogram
// wired in (after any observer the configuration has).
func (m *Main) storeOptions() sqlite.Options {
	opts := m.Config.StoreOpts
	prev, hist := opts.ObserveSync, m.syncHistogram()
	opts.ObserveSync = func(d time.Duration) {
		if prev != nil {
			prev(d)
		}
		hist.Observe(d.Seconds())
	}
	return opts
}

// syncHistogram is the histogram of the log's sync durations, made on
// first use.
func (m *Main) syncHistogram() prometheus.Histogram {
	if m.syncSeconds == nil {
		m.syncSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "payledger_log_sync_seconds",
			Help: "How long the event log's writer took to make a committed transaction durable (its fsync, or PostgreSQL's COMMIT); one observation per transaction, not per event.",
			// From a fast NVMe's tens of microseconds to a struggling disk's
			// second.
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		})
	}
	return m.syncSeconds
}

// serve binds Addr (with TLS when configured) and serves the HTTP API,
// with the store's metrics, until Close.
func (m *Main) serve() error {
	c := &m.Config
	tlsConf, err := c.tlsConfig()
	if err != nil {
		return err
	}
	if m.ln, err = net.Listen("tcp", c.Addr); err != nil {
		return fmt.Errorf("listen %s: %w", c.Addr, err)
	}
	m.URL = "http://" + m.ln.Addr().String()
	if tlsConf != nil {
		m.ln = tls.NewListener(m.ln, tlsConf)
		m.URL = "https://" + m.ln.Addr().String()
	}
	api := httpapi.New(m.Service, m.Store, m.RM, c.Log)
	api.SetMetricsPublic(c.MetricsPublic)
	if m.signer != nil {
		api.SetCheckpoints(m.signer)
	}
	metrics := append(append(storeMetrics(m.Store), m.syncSeconds), snapshotMetrics(m.Service)...)
	if m.bus != nil {
		metrics = append(metrics, relayMetrics(m.bus.relay, m.Store)...)
	}
	if err := api.Register(metrics...); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	m.srv = &http.Server{Handler: api,
		ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		if err := m.srv.Serve(m.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			c.Log.Error("http server stopped", slog.String("error", err.Error()))
		}
	}()
	return nil
}

// tlsConfig is the TLS configuration of the listener (TLS 1.2 at least),
// or nil for plain HTTP, which only a loopback address gets unless
// --insecure-http says so: tokens and personal data cross the network.
func (c *Config) tlsConfig() (*tls.Config, error) {
	var cert tls.Certificate
	var err error
	switch {
	case c.TLSSelfSigned && (c.TLSCert != "" || c.TLSKey != ""):
		return nil, errors.New("give either --tls-self-signed or --tls-cert and --tls-key, not both")
	case c.TLSSelfSigned:
		if cert, err = selfSigned(c.Clock(), c.Rand); err != nil {
			return nil, fmt.Errorf("make a self-signed certificate: %w", err)
		}
	case c.TLSCert != "" || c.TLSKey != "":
		if c.TLSCert == "" || c.TLSKey == "" {
			return nil, errors.New("--tls-cert and --tls-key go together")
		}
		if cert, err = tls.LoadX509KeyPair(c.TLSCert, c.TLSKey); err != nil {
			return nil, fmt.Errorf("load the TLS certificate: %w", err)
		}
	default:
		if !c.InsecureHTTP && !loopback(c.Addr) {
			return nil, fmt.Errorf("%s is not a loopback address: serve HTTPS (--tls-cert and --tls-key, or --tls-self-signed), or accept plain HTTP with --insecure-http", c.Addr)
		}
		return nil, nil
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}, nil
}

// loopback reports whether addr (host:port) listens on loopback only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// selfSigned makes a certificate for localhost and the loopback addresses,
// valid for 90 days from now.
func selfSigned(now time.Time, rnd io.Reader) (tls.Certificate, error) {
	pub, priv, err := ed25519.GenerateKey(rnd)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial := make([]byte, 16)
	if _, err := io.ReadFull(rnd, serial); err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: new(big.Int).SetBytes(serial),
		Subject:      pkix.Name{CommonName: "payledger (self-signed)"},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(90 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rnd, tmpl, tmpl, pub, priv)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv}, nil
}

// storeMetrics exposes the event log's writer counters: their rates give
// appends, events and transactions per second, and events per
// transaction (the group commit's batch size).
func storeMetrics(st eventstore.Store) []prometheus.Collector {
	counter := func(name, help string, read func(logStats) int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(read(storeStats(st))) })
	}
	out := []prometheus.Collector{
		counter("payledger_log_transactions_total", "Transactions the event log's writer committed (each durable before it is acknowledged).",
			func(s logStats) int64 { return s.Transactions }),
		counter("payledger_log_appends_total", "Appends the event log's writer committed.", func(s logStats) int64 { return s.Appends }),
		counter("payledger_log_events_total", "Events the event log's writer committed.", func(s logStats) int64 { return s.Events }),
	}
	if lite, ok := st.(*sqlite.Store); ok {
		out = append(out, prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "payledger_log_index_flushes_total",
			Help: "Batches of stream-index entries the writer wrote to disk."}, func() float64 { return float64(lite.Stats().IndexFlushes) }))
	}
	if pg, ok := st.(*postgres.Store); ok {
		out = append(out, prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "payledger_log_listen_errors_total",
			Help: "Times the PostgreSQL log's LISTEN connection failed and was opened again (subscribers re-read the log each time)."},
			func() float64 { return float64(pg.Stats().ListenErrors) }))
	}
	if k, ok := st.(*kurrent.Store); ok {
		out = append(out, prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "payledger_log_retries_total",
			Help: "Appends to the KurrentDB log that found it moved on by another writer and decided again."},
			func() float64 { return float64(k.Stats().Retries) }))
	}
	return out
}

// project keeps the read models fed. A failure is logged and retried after
// a pause, until Close; the write path stays correct meanwhile because a
// lagging projection only understates balances.
func (m *Main) project(ctx context.Context) {
	defer m.wg.Done()
	for ctx.Err() == nil {
		err := m.RM.Run(ctx, m.Store)
		if ctx.Err() != nil {
			return
		}
		m.Config.Log.Error("projection stopped; restarting in 1s", slog.Any("error", err))
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// closeDays is serve's scheduler of the reserve's daily close: it closes
// every day that is over and not closed yet (looking back at most a month,
// so a server that was down closes what it missed), once a minute.
func (m *Main) closeDays(ctx context.Context) {
	defer m.wg.Done()
	every := m.Config.CloseEvery
	if every <= 0 {
		every = time.Minute
	}
	for {
		for _, c := range m.Config.CloseCurrencies {
			closed, err := m.Service.CloseDueDays(ctx, c, 31)
			for _, cl := range closed {
				m.Config.Log.Info("day closed", slog.String("day", cl.Day), slog.String("currency", string(c)),
					slog.String("provisioned", cl.Provisioned.String()), slog.Int64("through_position", cl.ThroughPosition))
			}
			if err != nil && ctx.Err() == nil {
				m.Config.Log.Error("daily close failed; retrying", slog.String("currency", string(c)), slog.Any("error", err))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

const (
	// closeSnapshotsMax and closeSnapshotBudget bound the account
	// snapshots a close saves (ledger.Service.SaveSnapshots).
	closeSnapshotsMax   = 20000
	closeSnapshotBudget = 5 * time.Second
)

// Close stops the API, then the projection, saves the cached accounts'
// snapshots, then closes the stores.
func (m *Main) Close() error {
	var errs []error
	if m.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		errs = append(errs, m.srv.Shutdown(ctx))
		cancel()
	}
	if m.cancel != nil {
		m.cancel()
	}
	m.wg.Wait()
	if m.Service != nil {
		// No command runs any more: the accounts served get a snapshot
		// with a short tail for the next start (advisory, so a failure
		// or the budget running out only makes those loads longer).
		ctx, cancel := context.WithTimeout(context.Background(), closeSnapshotBudget)
		n, err := m.Service.SaveSnapshots(ctx, closeSnapshotsMax)
		cancel()
		if err != nil {
			m.Config.Log.Warn("account snapshots at shutdown incomplete", slog.Int("saved", n), slog.Any("error", err))
		} else if n > 0 {
			m.Config.Log.Info("account snapshots saved at shutdown", slog.Int("saved", n))
		}
	}
	if m.signer != nil {
		// The last checkpoint covers every event the server acknowledged.
		if _, err := m.signer.Checkpoint(context.Background()); err != nil {
			errs = append(errs, fmt.Errorf("checkpoint at shutdown: %w", err))
		}
	}
	// The relay drained in its goroutine; the log stays open until then.
	m.closeBus()
	errs = append(errs, m.closeStores())
	return errors.Join(errs...)
}

// openSigner loads the checkpoint key, when one is configured, and signs a
// first checkpoint (catching the tree up with the log).
func (m *Main) openSigner(ctx context.Context) error {
	c := &m.Config
	if c.CheckpointKey == "" {
		return nil
	}
	priv, err := checkpoints.LoadKey(c.CheckpointKey)
	if err != nil {
		return err
	}
	if c.CheckpointDir != "" {
		if err := os.MkdirAll(c.CheckpointDir, 0o700); err != nil {
			return fmt.Errorf("--checkpoint-dir: %w", err)
		}
	}
	if m.signer, err = checkpoints.NewSigner(m.Store, priv, c.DataDir, c.CheckpointDir, c.Clock); err != nil {
		return err
	}
	cp, err := m.signer.Checkpoint(ctx)
	if err != nil {
		return fmt.Errorf("first checkpoint: %w", err)
	}
	c.Log.Info("checkpoint signed", slog.Uint64("size", cp.Size), slog.String("root", cp.Root), slog.String("key_id", cp.KeyID))
	return nil
}

// checkpoint signs a checkpoint every CheckpointEvery while the log grows.
func (m *Main) checkpoint(ctx context.Context) {
	defer m.wg.Done()
	every := m.Config.CheckpointEvery
	if every <= 0 {
		every = time.Minute
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		before, _ := m.signer.Latest()
		cp, err := m.signer.Checkpoint(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			m.Config.Log.Error("checkpoint failed; retrying", slog.Any("error", err))
		case err == nil && cp.Size != before.Size:
			m.Config.Log.Info("checkpoint signed", slog.Uint64("size", cp.Size), slog.String("root", cp.Root))
		}
	}
}

func (m *Main) closeStores() error {
	var errs []error
	if m.RM != nil {
		errs = append(errs, m.RM.Close())
	}
	if m.Store != nil {
		errs = append(errs, m.Store.Close())
	}
	if m.StaffKeys != nil {
		errs = append(errs, m.StaffKeys.Close())
	}
	if m.PersonalData != nil {
		errs = append(errs, m.PersonalData.Close())
	}
	return errors.Join(errs...)
}

func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var m Main
	m.Config.addFlags(fs, true)
	if err := fs.Parse(args); err != nil {
		return err
	}
	m.Config.Progress = stderr
	m.Config.CloseCurrencies = []domain.Currency{domain.CNY}
	if err := m.Open(ctx); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "payledger: serving %s (data %s, log head %d)\n", m.URL, m.Config.DataDir, m.RM.Checkpoint())
	<-ctx.Done()
	fmt.Fprintln(stdout, "payledger: shutting down")
	return m.Close()
}

// snapshotMetrics counts the account snapshots saved, loaded and not
// trusted (a rising count of the last means the snapshots are stale or
// damaged: loads then read whole streams).
func snapshotMetrics(svc *ledger.Service) []prometheus.Collector {
	counter := func(name, help string, read func(ledger.SnapshotStats) int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(read(svc.SnapshotStats())) })
	}
	return []prometheus.Collector{
		counter("payledger_snapshots_saved_total", "Account snapshots saved beside the log.", func(s ledger.SnapshotStats) int64 { return s.Saved }),
		counter("payledger_snapshots_loaded_total", "Cold account loads that started from a snapshot.", func(s ledger.SnapshotStats) int64 { return s.Loaded }),
		counter("payledger_snapshots_rejected_total", "Snapshots a load did not trust (hash, schema or payload) and read the stream in full instead.",
			func(s ledger.SnapshotStats) int64 { return s.Rejected }),
	}
}

// secureDataDir makes the data directory 0700 and every file in it 0600,
// also when they existed before with wider modes: the log, the read models
// and the keys are personal data and secrets.
func secureDataDir(dir string) error {
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return fmt.Errorf("data directory: %w", err)
		}
		if info.Mode().Perm()&0o077 != 0 {
			if err := os.Chmod(filepath.Join(dir, e.Name()), info.Mode().Perm()&0o700); err != nil {
				return fmt.Errorf("data directory: %w", err)
			}
		}
	}
	return nil
}
