package main

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/eventstore/postgres"
	"github.com/payledger/payledger/eventstore/sqlite"
	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/personaldata"
	"github.com/payledger/payledger/ledger/staffkeys"
)

// benchConfig is what the bench flags set.
type benchConfig struct {
	duration         time.Duration
	baselineDuration time.Duration
	clients          int
	accounts         int
	dataDir          string
	timeZone         string
	speed            float64
	baselineSpeed    float64
	seed             uint64
	cpuProfile       string
	trace            string
	rate             float64
	// history > 0 builds a store of that many events over five simulated
	// years and measures reads, rebuild and verify on it (history.go)
	// instead of the write-path runs.
	history int64
	// store, when a postgres:// URL, adds a run on PostgreSQL (in a schema
	// of its own, dropped afterwards) instead of the baseline.
	store string
}

// Bench workload constants.
const (
	benchCurrency = "CNY"
	benchDeposit  = "1000000.00"
	// benchMaxCents bounds a payment's amount (0.01 .. 0.30 CNY). An account
	// can confirm at most one payment per TOTP step (a code is single use),
	// i.e. at most 86400/30 + 1 = 2881 payments per calendar day whatever
	// the throughput or clock speed; 2881 × 0.30 = 864.30 CNY stays under the
	// 1000 CNY single-factor daily cap, so no payment can be refused for it.
	benchMaxCents = 30
	// latencySamples bounds the latencies one client keeps (a reservoir).
	latencySamples = 1 << 16
	// setupTimeout and catchUpTimeout bound the untimed phases.
	setupTimeout   = 5 * time.Minute
	catchUpTimeout = time.Minute
	// maxOfferedRate bounds --rate; maxBacklog bounds the payments an open
	// loop has scheduled but no client has started (a backlog that full
	// means the ledger is not keeping up, and the schedule then waits).
	maxOfferedRate = 1_000_000
	maxBacklog     = 1 << 16
	// fsyncSamples writes of fsyncWriteBytes, each followed by an fsync,
	// measure the disk (a few tens of ms on a fast disk, a few seconds on
	// a slow one); the size is one page of the event log.
	fsyncSamples    = 200
	fsyncWriteBytes = 16 << 10
)

// benchEpoch is where every run's virtual clock starts: a fixed instant, so
// that runs see the same calendar whatever the real date.
var benchEpoch = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// cmdBench drives the write path in process (no HTTP) with concurrent
// clients, first with group commit and then, as the baseline, with one
// transaction per append, and prints confirmed payments per second and
// latency percentiles of both.
func cmdBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c benchConfig
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "measured duration of the group-commit run")
	fs.DurationVar(&c.baselineDuration, "baseline-duration", 5*time.Second, "measured duration of the baseline run (group commit off)")
	fs.IntVar(&c.clients, "clients", 256, "concurrent clients; each owns a disjoint share of the paying accounts")
	fs.IntVar(&c.accounts, "accounts", 2000, "accounts (each pays and is paid)")
	fs.StringVar(&c.dataDir, "data", "", "directory for the runs' data (kept); default a temporary directory, removed afterwards")
	fs.StringVar(&c.timeZone, "tz", "Asia/Shanghai", "time zone of the calendar day for daily limits")
	fs.Float64Var(&c.speed, "speed", 1000, "virtual clock speed of the group-commit run (virtual seconds per real second)")
	fs.Float64Var(&c.baselineSpeed, "baseline-speed", 100, "virtual clock speed of the baseline run")
	fs.Uint64Var(&c.seed, "seed", 1, "seed of the deterministic randomness")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile of the group-commit run's measured phase to this file")
	fs.Float64Var(&c.rate, "rate", 0, "offered payments per second in the group-commit run: an open loop, each payment's latency counted from its scheduled start; 0 runs the closed loop (each client pays again as soon as its last payment returns)")
	fs.StringVar(&c.trace, "trace", "", "write a runtime execution trace of the group-commit run's measured phase to this file (go tool trace)")
	fs.Int64Var(&c.history, "history", 0, "build a store of this many events over five simulated years, then measure cold and warm balance reads, statement pages, a cold account's first payment, rebuild and verify on it (0: the write-path runs)")
	fs.StringVar(&c.store, "store", "", "also run on this PostgreSQL database (postgres://...), in a schema of its own dropped afterwards, instead of the baseline, and print its rate beside the embedded store's")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var pgStore bool
	if c.store != "" {
		spec, err := parseStore(c.store, "")
		if err == nil && spec.kurrentURL != "" {
			// A run needs a log of its own, which on PostgreSQL is a
			// schema dropped afterwards; KurrentDB's streams cannot be
			// dropped where its ACLs keep the log (R2).
			return errors.New("bench: --store kurrentdb:// is not supported: a run's streams could not be removed afterwards; bench runs on PostgreSQL or the embedded store")
		}
		if err != nil || spec.postgresDSN == "" {
			return errors.New("bench: --store must be a postgres://... URL (the embedded store always runs)")
		}
		pgStore = true
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("bench: unexpected arguments %q", fs.Args())
	case c.duration <= 0 || c.baselineDuration <= 0:
		return errors.New("bench: --duration and --baseline-duration must be positive")
	case c.clients < 1:
		return errors.New("bench: --clients must be at least 1")
	case c.accounts < 2 || c.accounts < c.clients:
		return errors.New("bench: --accounts must be at least 2 and at least --clients")
	case c.speed < 1 || c.baselineSpeed < 1:
		return errors.New("bench: --speed and --baseline-speed must be at least 1")
	case c.rate < 0 || c.rate > maxOfferedRate:
		return fmt.Errorf("bench: --rate must be between 0 and %d", maxOfferedRate)
	case c.history < 0 || c.history > maxHistoryEvents:
		return fmt.Errorf("bench: --history must be between 0 and %d events", maxHistoryEvents)
	}

	root := c.dataDir
	if root == "" {
		dir, err := os.MkdirTemp("", "payledger-bench-")
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		defer os.RemoveAll(dir)
		root = dir
	} else if err := os.MkdirAll(root, 0o700); err != nil {
		return fmt.Errorf("bench: data directory: %w", err)
	}
	if c.history > 0 {
		return benchHistory(ctx, c, root, stdout, stderr)
	}
	fmt.Fprintf(stdout, "bench: in-process write path, %d clients, %d accounts, GOMAXPROCS=%d\n",
		c.clients, c.accounts, runtime.GOMAXPROCS(0))
	// The baseline pays one fsync per append, so the speedup group commit
	// can show is bounded by how long an fsync takes on this disk next to
	// the CPU an append costs: print it, measured in this run.
	if err := printDisk(stdout, "disk", root); err != nil {
		return err
	}

	res, err := benchRun(ctx, c, "group-commit", root, "", sqlite.DefaultOptions(), c.duration, c.speed, c.rate, c.cpuProfile, c.trace, stdout, stderr)
	if err != nil {
		return err
	}
	if pgStore {
		pres, err := benchRun(ctx, c, "postgres", root, c.store, sqlite.DefaultOptions(), c.duration, c.speed, c.rate, "", "", stdout, stderr)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "bench: payments_per_s=%d p50_ms=%.2f p99_ms=%.2f postgres_payments_per_s=%d postgres_p50_ms=%.2f postgres_p99_ms=%.2f postgres_ratio=%.2f\n",
			int64(res.rate), ms(res.p50), ms(res.p99), int64(pres.rate), ms(pres.p50), ms(pres.p99), pres.rate/max(res.rate, 1e-9))
		return nil
	}
	// A shared disk's fsync can change within a run, and the baseline's
	// rate follows it, so measure it again just before the baseline (the
	// figures that showed it are in docs/performance.md).
	if err := printDisk(stdout, "disk before the baseline", root); err != nil {
		return err
	}
	base := sqlite.DefaultOptions()
	base.GroupCommit = false
	bres, err := benchRun(ctx, c, "baseline", root, "", base, c.baselineDuration, c.baselineSpeed, 0, "", "", stdout, stderr)
	if err != nil {
		return err
	}
	speedup := 0.0
	if bres.rate > 0 {
		speedup = res.rate / bres.rate
	}
	fmt.Fprintf(stdout, "bench: payments_per_s=%d p50_ms=%.2f p99_ms=%.2f baseline_payments_per_s=%d speedup=%.2f\n",
		int64(res.rate), ms(res.p50), ms(res.p99), int64(bres.rate), speedup)
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// startProfiles starts a CPU profile and an execution trace into the
// files named (none for ""); stop ends both and closes the files.
func startProfiles(cpuProfile, traceFile string) (stop func() error, err error) {
	var stops []func() error
	stop = func() error {
		var errs []error
		for _, f := range slices.Backward(stops) {
			errs = append(errs, f())
		}
		stops = nil
		return errors.Join(errs...)
	}
	for _, p := range []struct {
		name, file string
		start      func(io.Writer) error
		stop       func()
	}{
		{"cpu profile", cpuProfile, pprof.StartCPUProfile, pprof.StopCPUProfile},
		{"trace", traceFile, trace.Start, trace.Stop},
	} {
		if p.file == "" {
			continue
		}
		f, err := os.Create(p.file)
		if err == nil {
			if err = p.start(f); err != nil {
				_ = f.Close()
			}
		}
		if err != nil {
			return nil, errors.Join(fmt.Errorf("bench: %s: %w", p.name, err), stop())
		}
		stops = append(stops, func() error {
			p.stop()
			if err := f.Close(); err != nil {
				return fmt.Errorf("bench: %s: %w", p.name, err)
			}
			return nil
		})
	}
	return stop, nil
}

// fsyncLatency is the measured latency of a write followed by an fsync.
type fsyncLatency struct{ p50, p99 time.Duration }

// printDisk measures the data directory's fsync (measureFsync) and prints
// it under label.
func printDisk(stdout io.Writer, label, root string) error {
	fsync, err := measureFsync(root, fsyncSamples)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	fmt.Fprintf(stdout, "bench: %s: %d writes of %d KiB each followed by fsync in the data directory: p50_us=%d p99_us=%d\n",
		label, fsyncSamples, fsyncWriteBytes>>10, fsync.p50.Microseconds(), fsync.p99.Microseconds())
	return nil
}

// measureFsync writes n blocks of fsyncWriteBytes to a temporary file in
// dir, over a 1 MiB region like a log's, each followed by an fsync, and
// returns the percentiles of their latency. The file is removed.
func measureFsync(dir string, n int) (fsyncLatency, error) {
	f, err := os.CreateTemp(dir, "fsync-probe-")
	if err != nil {
		return fsyncLatency{}, fmt.Errorf("fsync probe: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, fsyncWriteBytes)
	const region = 1 << 20
	lat := make([]time.Duration, 0, n)
	for i := range n {
		binary.LittleEndian.PutUint64(buf, uint64(i))
		t0 := time.Now()
		if _, err := f.WriteAt(buf, int64(i*fsyncWriteBytes)%region); err != nil {
			return fsyncLatency{}, fmt.Errorf("fsync probe: %w", err)
		}
		if err := f.Sync(); err != nil {
			return fsyncLatency{}, fmt.Errorf("fsync probe: %w", err)
		}
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	return fsyncLatency{p50: percentile(lat, 0.50), p99: percentile(lat, 0.99)}, nil
}

// virtualClock runs speed times faster than real time from benchEpoch. It
// exists because a TOTP code is single use per 30 s step (R7): at real
// speed an account could confirm one payment per 30 s, so thousands of
// payments per second would need hundreds of thousands of accounts. At
// x1000 a step lasts 30 ms (so 2000 accounts allow up to ~66000 payments/s),
// a 5-minute challenge 300 ms (far above a group-committed payment's
// latency) and a calendar day 86.4 s. The baseline runs at x100: one fsync
// per append makes its latency approach the 300 ms a challenge would live
// at x1000, while its throughput is far below x100's ceiling (~6600/s).
type virtualClock struct {
	start time.Time // real, with its monotonic reading
	speed float64
}

func newVirtualClock(speed float64) *virtualClock {
	return &virtualClock{start: time.Now(), speed: speed}
}

func (c *virtualClock) Now() time.Time {
	return benchEpoch.Add(time.Duration(float64(time.Since(c.start)) * c.speed))
}

// realUntil is the real time until the virtual instant v.
func (c *virtualClock) realUntil(v time.Time) time.Duration {
	return time.Duration(float64(v.Sub(c.Now())) / c.speed)
}

// benchClock is the clock the clients pay by: virtualClock, or the
// history's historyClock, which jumps from one simulated day to the next.
type benchClock interface {
	Now() time.Time
	// realUntil is the real time until the virtual instant v.
	realUntil(v time.Time) time.Duration
}

// lockedReader makes a deterministic generator safe for the concurrent
// readers the ledger has (ULIDs, challenges, nonces).
type lockedReader struct {
	mu  sync.Mutex
	src *rand.ChaCha8
}

func newLockedReader(seed uint64) *lockedReader {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	copy(s[8:], "payledger/bench")
	return &lockedReader{src: rand.NewChaCha8(s)}
}

func (r *lockedReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.src.Read(p)
}

// benchAccount is one paying account and what its client knows of it.
type benchAccount struct {
	index    int
	id       string
	factorID string
	seed     string
	// lastStep is the last TOTP step this client used; the ledger refuses
	// any step at or below it.
	lastStep int64
}

// benchResult is the measurement of one run.
type benchResult struct {
	payments, refusals, failures int64
	elapsed                      time.Duration
	rate                         float64
	p50, p99                     time.Duration
}

// benchRun sets up a fresh ledger, measures the workload for d with the
// given store options and verifies the ledger afterwards.
func benchRun(ctx context.Context, c benchConfig, name, root, store string, opts sqlite.Options, d time.Duration,
	speed, rate float64, cpuProfile, traceFile string, stdout, stderr io.Writer) (res benchResult, err error) {
	dir, err := os.MkdirTemp(root, name+"-")
	if err != nil {
		return res, fmt.Errorf("bench %s: %w", name, err)
	}
	clock := newVirtualClock(speed)
	rnd := newLockedReader(c.seed)
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	cfg := Config{DataDir: dir, TimeZone: c.timeZone, Clock: clock.Now, Rand: rnd, Log: logger, Store: store}
	// A master key of the run's own, held in memory: no key file is left
	// beside the bench's directories.
	if cfg.MasterKeyB64, err = benchMasterKey(rnd); err != nil {
		return res, fmt.Errorf("bench %s: %w", name, err)
	}
	if store != "" {
		drop, err := benchSchema(ctx, store, filepath.Base(dir), &cfg)
		if err != nil {
			return res, fmt.Errorf("bench %s: %w", name, err)
		}
		defer func() {
			if derr := drop(); derr != nil && err == nil {
				err = fmt.Errorf("bench %s: %w", name, derr)
			}
		}()
	}

	// Setup always runs with group commit: it is not measured, and without
	// it thousands of accounts would take minutes of single fsyncs. The
	// store is then reopened with the run's options.
	setupStart := time.Now()
	setup := &Main{Config: cfg}
	setup.Config.StoreOpts = sqlite.DefaultOptions()
	if err := setup.Open(ctx); err != nil {
		return res, fmt.Errorf("bench %s: %w", name, err)
	}
	var setUp atomic.Int64
	stop := showProgress(stderr, int64(c.accounts), "bench "+name+": accounts set up", setUp.Load)
	accts, err := benchSetup(ctx, setup, c, &setUp)
	stop()
	if err == nil {
		err = benchCatchUp(ctx, setup)
	}
	if cerr := setup.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return res, fmt.Errorf("bench %s: setup: %w", name, err)
	}
	fmt.Fprintf(stdout, "bench: %s: set up %d accounts (open, enrol TOTP, deposit %s %s) in %s; virtual clock x%g; data %s\n",
		name, len(accts), benchDeposit, benchCurrency, time.Since(setupStart).Round(time.Millisecond), speed, dir)

	m := &Main{Config: cfg}
	m.Config.StoreOpts = opts
	if err := m.Open(ctx); err != nil {
		return res, fmt.Errorf("bench %s: %w", name, err)
	}
	defer func() {
		if cerr := m.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("bench %s: %w", name, cerr)
		}
	}()

	stopProfiles, err := startProfiles(cpuProfile, traceFile)
	if err != nil {
		return res, err
	}
	before := storeStats(m.Store)
	cpu0, cpuOK := processCPU()
	if rate > 0 {
		fmt.Fprintf(stdout, "bench: %s: open loop, %g payments/s offered; latency counted from each payment's scheduled start\n", name, rate)
	}
	res, firstErr := benchMeasure(ctx, m, c, accts, d, rate, clock)
	cpu1, _ := processCPU()
	after := storeStats(m.Store)
	if err := stopProfiles(); err != nil {
		return res, err
	}
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	st := logStats{Transactions: after.Transactions - before.Transactions, Appends: after.Appends - before.Appends,
		Events: after.Events - before.Events}
	perTx := 0.0
	if st.Transactions > 0 {
		perTx = float64(st.Events) / float64(st.Transactions)
	}
	head, _ := m.Store.Head(ctx)
	cp := m.RM.Checkpoint()
	fmt.Fprintf(stdout, "bench: %s: payments=%d refusals=%d errors=%d elapsed=%s payments_per_s=%d p50_ms=%.2f p99_ms=%.2f\n",
		name, res.payments, res.refusals, res.failures, res.elapsed.Round(time.Millisecond), int64(res.rate), ms(res.p50), ms(res.p99))
	fmt.Fprintf(stdout, "bench: %s: store transactions=%d appends=%d events=%d events_per_tx=%.1f; projection at %d of head %d (lag %d)\n",
		name, st.Transactions, st.Appends, st.Events, perTx, cp, head, head-cp)
	if cpuOK && res.payments > 0 {
		// CPU per payment is steadier than throughput on a shared machine:
		// other processes taking cores lower the rate, not this figure.
		used := cpu1 - cpu0
		fmt.Fprintf(stdout, "bench: %s: process cpu=%s (%.2f cores) cpu_us_per_payment=%.0f\n", name,
			used.Round(time.Millisecond), used.Seconds()/res.elapsed.Seconds(),
			float64(used.Microseconds())/float64(res.payments))
	}
	if firstErr != nil {
		fmt.Fprintf(stdout, "bench: %s: first error or refusal: %v\n", name, firstErr)
	}
	if err := benchVerify(ctx, m, accts); err != nil {
		return res, fmt.Errorf("bench %s: %w", name, err)
	}
	fmt.Fprintf(stdout, "bench: %s: ledger verified: debits = credits, balances sum to zero, no account negative\n", name)
	return res, nil
}

// benchSchema migrates a fresh PostgreSQL schema named after the run's
// directory for a run on dsn, points cfg at it, and returns what drops it.
func benchSchema(ctx context.Context, dsn, name string, cfg *Config) (drop func() error, err error) {
	schema := "payledger_bench_" + strings.ToLower(strings.NewReplacer("-", "_").Replace(name))
	cfg.PostgresOpts = postgres.DefaultOptions()
	cfg.PostgresOpts.Schema = schema
	if _, err := postgres.Migrate(ctx, dsn, cfg.PostgresOpts); err != nil {
		return nil, err
	}
	return func() error {
		dctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		conn, err := pgx.Connect(dctx, dsn)
		if err != nil {
			return fmt.Errorf("drop schema %s: %w", schema, err)
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(dctx, "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			return fmt.Errorf("drop schema %s: %w", schema, err)
		}
		// The data keys serve kept beside the log.
		pd := personalDataSchema("", schema)
		if _, err := conn.Exec(dctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{pd}.Sanitize()+" CASCADE"); err != nil {
			return fmt.Errorf("drop schema %s: %w", pd, err)
		}
		return nil
	}, nil
}

// benchSetup opens the accounts, enrols one TOTP factor each (on device
// "token-<i>") and deposits into each, using c.clients goroutines; done
// counts the accounts set up, for a progress bar.
func benchSetup(ctx context.Context, m *Main, c benchConfig, done *atomic.Int64) ([]*benchAccount, error) {
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	svc := m.Service
	accts := make([]*benchAccount, c.accounts)
	var next atomic.Int64
	errs := make([]error, c.clients)
	var wg sync.WaitGroup
	for w := range c.clients {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= c.accounts {
					return
				}
				a, err := benchSetupOne(ctx, svc, i)
				if err != nil {
					errs[w] = fmt.Errorf("account %d: %w", i, err)
					cancel()
					return
				}
				accts[i] = a
				done.Add(1)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return accts, nil
}

// The bench drives the ledger in process, as the operator who opens the
// accounts after an identity check, the funding desk that credits them
// and each holder's session; no credential crosses a network.
var (
	benchOperator = ledger.Actor{KeyID: "key_bench_operator", Role: staffkeys.RoleOperator}
	benchFunding  = ledger.Actor{KeyID: "key_bench_funding", Role: staffkeys.RoleFunding}
)

func benchSetupOne(ctx context.Context, svc *ledger.Service, i int) (*benchAccount, error) {
	check := func(op string, out ledger.Outcome, err error) error {
		if err == nil && out.Refusal != nil {
			err = out.Refusal
		}
		if err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		return nil
	}
	out, err := svc.OpenAccount(ctx, benchOperator, ledger.Idem{}, ledger.OpenRequest{HolderName: fmt.Sprintf("Bench Holder %d", i),
		Currency: benchCurrency, Kind: domain.KindPersonal, IdentityCheck: "bench",
		Factor: ledger.EnrollRequest{Method: domain.MethodTOTP, DeviceID: fmt.Sprintf("token-%d", i)}})
	if err := check("open", out, err); err != nil {
		return nil, err
	}
	a := &benchAccount{index: i, id: out.AccountID}
	for _, e := range out.Decoded {
		if fe, ok := e.(domain.FactorEnrolled); ok {
			a.factorID = fe.FactorID
			if a.seed, err = svc.TOTPSecret(fe); err != nil {
				return nil, fmt.Errorf("totp seed: %w", err)
			}
		}
	}
	if a.factorID == "" || a.seed == "" {
		return nil, errors.New("enrol: no FactorEnrolled event with a TOTP seed")
	}
	out, err = svc.Deposit(ctx, benchFunding, a.id, ledger.Idem{}, benchDeposit, benchCurrency, fmt.Sprintf("bench-%d", i))
	if err := check("deposit", out, err); err != nil {
		return nil, err
	}
	return a, nil
}

// benchCatchUp waits (bounded) until the read models reach the log's head.
func benchCatchUp(ctx context.Context, m *Main) error {
	ctx, cancel := context.WithTimeout(ctx, catchUpTimeout)
	defer cancel()
	head, err := m.Store.Head(ctx)
	if err != nil {
		return err
	}
	return m.RM.WaitFor(ctx, head)
}

// benchClient is one client's state: its paying accounts and its results.
type benchClient struct {
	id       int
	accts    []*benchAccount
	next     int
	rng      *rand.Rand
	payments int64
	refusals int64
	failures int64
	firstErr error
	lat      []time.Duration
	seen     int64 // latencies offered to the reservoir
}

// benchMeasure runs the clients until the deadline and collects results.
// Client k pays from accounts k, k+clients, k+2·clients, ... so no two
// clients contend for one payer's lock. With rate > 0 the clients serve a
// schedule of rate payments per second instead (see schedule).
func benchMeasure(ctx context.Context, m *Main, c benchConfig, accts []*benchAccount, d time.Duration,
	rate float64, clock benchClock) (benchResult, error) {
	clients := make([]*benchClient, c.clients)
	for k := range clients {
		cl := &benchClient{id: k, rng: rand.New(rand.NewPCG(c.seed, uint64(k)))}
		for i := k; i < len(accts); i += c.clients {
			cl.accts = append(cl.accts, accts[i])
		}
		clients[k] = cl
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	if rate > 0 {
		due := make(chan time.Time, maxBacklog)
		go schedule(ctx, due, start, deadline, rate)
		for _, cl := range clients {
			wg.Go(func() { cl.serve(ctx, m.Service, accts, due, clock) })
		}
	} else {
		for _, cl := range clients {
			wg.Go(func() { cl.run(ctx, m.Service, accts, deadline, clock) })
		}
	}
	// Bound the wait: a client stops starting payments at the deadline, so
	// it only finishes the one in flight; in an open loop the clients also
	// serve the backlog left at the deadline, at most maxBacklog payments.
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d + time.Minute):
		cancel()
		<-done
	}
	var res benchResult
	res.elapsed = time.Since(start)
	var lat []time.Duration
	var firstErr error
	for _, cl := range clients {
		res.payments += cl.payments
		res.refusals += cl.refusals
		res.failures += cl.failures
		lat = append(lat, cl.lat...)
		if firstErr == nil {
			firstErr = cl.firstErr
		}
	}
	res.rate = float64(res.payments) / res.elapsed.Seconds()
	slices.Sort(lat)
	res.p50, res.p99 = percentile(lat, 0.50), percentile(lat, 0.99)
	return res, firstErr
}

func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func (cl *benchClient) run(ctx context.Context, svc *ledger.Service, all []*benchAccount, deadline time.Time, clock benchClock) {
	for ctx.Err() == nil && time.Now().Before(deadline) {
		a := cl.ready(clock)
		if a == nil {
			cl.sleepToNextStep(clock, time.Until(deadline))
			continue
		}
		cl.pay(ctx, svc, a, all, clock, time.Now())
	}
}

// serve pays once for every scheduled start it takes from due, until due
// is closed and drained; the latency runs from the scheduled start, so
// time spent waiting for a free client or account counts.
func (cl *benchClient) serve(ctx context.Context, svc *ledger.Service, all []*benchAccount, due <-chan time.Time, clock benchClock) {
	for start := range due {
		a := cl.ready(clock)
		for a == nil && ctx.Err() == nil {
			cl.sleepToNextStep(clock, 100*time.Millisecond)
			a = cl.ready(clock)
		}
		if a == nil {
			return
		}
		cl.pay(ctx, svc, a, all, clock, start)
	}
}

// sleepToNextStep sleeps until the next TOTP step begins, when every
// account of this client has used this step's codes, for at most limit.
func (cl *benchClient) sleepToNextStep(clock benchClock, limit time.Duration) {
	cur := domain.TOTPStepAt(clock.Now())
	wait := clock.realUntil(time.Unix((cur+1)*int64(domain.TOTPStep/time.Second), 0))
	wait = min(max(wait, 50*time.Microsecond), limit, 100*time.Millisecond)
	if wait > 0 {
		time.Sleep(wait)
	}
}

// schedule sends the start times of an open loop: rate per second from
// start until deadline, each sent once it is due, and then closes due.
// Starts that fall due together (the sleeps are coarser than the interval
// at high rates) are sent together. When due is full the ledger is behind:
// sending waits, and the starts keep their scheduled times.
func schedule(ctx context.Context, due chan<- time.Time, start, deadline time.Time, rate float64) {
	defer close(due)
	const tick = 200 * time.Microsecond
	total := int64(deadline.Sub(start).Seconds() * rate)
	for i := int64(0); i < total; i++ {
		at := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
		if wait := time.Until(at); wait > 0 {
			time.Sleep(max(wait, tick))
		}
		select {
		case due <- at:
		case <-ctx.Done():
			return
		}
	}
}

// ready returns the next account (round robin) that has a usable TOTP step.
// The ledger accepts steps cur-1 .. cur+1 above the last used one; the
// bench always uses cur+1 (see pay), so an account is ready once its last
// step is at most cur: one payment per account and step.
func (cl *benchClient) ready(clock benchClock) *benchAccount {
	cur := domain.TOTPStepAt(clock.Now())
	for range len(cl.accts) {
		a := cl.accts[cl.next]
		cl.next = (cl.next + 1) % len(cl.accts)
		if a.lastStep+1 <= cur+domain.TOTPSkew {
			return a
		}
	}
	return nil
}

// pay runs one full payment: initiate, then confirm with one TOTP proof
// from device "phone-<i>", which is not the factor's device "token-<i>",
// so the code counts as an independent possession factor (R6). t0 is when
// the payment was due to start; its latency runs from there.
func (cl *benchClient) pay(ctx context.Context, svc *ledger.Service, a *benchAccount, all []*benchAccount, clock benchClock, t0 time.Time) {
	payee := all[cl.rng.IntN(len(all)-1)]
	if payee == a {
		payee = all[len(all)-1]
	}
	cents := 1 + cl.rng.IntN(benchMaxCents)
	device := fmt.Sprintf("phone-%d", a.index)
	holder := ledger.Actor{AccountID: a.id, SessionID: "bench"}
	out, err := svc.InitiatePayment(ctx, holder, a.id, ledger.Idem{}, ledger.PaymentRequest{
		PayeeID: payee.id, Amount: fmt.Sprintf("%d.%02d", cents/100, cents%100), Currency: benchCurrency,
		Channel: "app", Terminal: "mobile", DeviceID: device,
	})
	if cl.failed(err, out.Refusal) {
		return
	}
	var paymentID string
	for _, e := range out.Decoded {
		if pi, ok := e.(domain.PaymentInitiated); ok {
			paymentID = pi.PaymentID
		}
	}
	if paymentID == "" {
		cl.failed(errors.New("initiate: no PaymentInitiated event"), nil)
		return
	}
	// The step is chosen after the initiation: the newest the ledger
	// accepts, cur+1, which stays acceptable until step cur+2 ends, at least
	// two steps (60 ms at x1000) however late the confirmation runs.
	cur := domain.TOTPStepAt(clock.Now())
	step := max(a.lastStep+1, cur+domain.TOTPSkew)
	code, err := domain.TOTPCode(a.seed, step)
	if err != nil {
		cl.failed(err, nil)
		return
	}
	a.lastStep = step // used, or at worst skipped, whatever the outcome
	out, err = svc.ConfirmPayment(ctx, holder, a.id, paymentID, ledger.Idem{}, device,
		[]domain.Proof{{FactorID: a.factorID, Code: code}})
	if cl.failed(err, out.Refusal) {
		return
	}
	cl.payments++
	cl.record(time.Since(t0))
}

// failed counts an error (nothing appended) or a refusal (recorded but
// refused) and reports whether there was one.
func (cl *benchClient) failed(err, refusal error) bool {
	switch {
	case err != nil:
		cl.failures++
	case refusal != nil:
		cl.refusals++
		err = refusal
	default:
		return false
	}
	if cl.firstErr == nil {
		cl.firstErr = err
	}
	return true
}

// record keeps a uniform sample of at most latencySamples latencies.
func (cl *benchClient) record(d time.Duration) {
	cl.seen++
	if len(cl.lat) < latencySamples {
		cl.lat = append(cl.lat, d)
		return
	}
	if j := cl.rng.Int64N(cl.seen); j < latencySamples {
		cl.lat[j] = d
	}
}

// benchVerify catches the read models up and proves no money was created
// or lost and no bench account went negative.
func benchVerify(ctx context.Context, m *Main, accts []*benchAccount) error {
	ctx, cancel := context.WithTimeout(ctx, catchUpTimeout)
	defer cancel()
	if err := m.RM.CatchUp(ctx, m.Store); err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	totals, err := m.RM.Totals(ctx)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	if err := totals.Check(); err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	for _, a := range accts {
		if bal, _ := m.RM.Snapshot(a.id); bal.IsNegative() {
			return fmt.Errorf("verify: account %s has a negative balance %s", a.id, bal)
		}
	}
	return nil
}

// benchMasterKey is a fresh master key of personal data, in base64.
func benchMasterKey(rnd io.Reader) (string, error) {
	k := make([]byte, personaldata.KeySize)
	if _, err := io.ReadFull(rnd, k); err != nil {
		return "", fmt.Errorf("master key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(k), nil
}
