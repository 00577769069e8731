package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/payledger/payledger/eventstore/sqlite"
	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/projections"
)

// payledger bench --history N builds a store of N events, payments spread
// over five simulated years, and then measures on it, in the same run,
// what a long-lived ledger must keep fast: balance reads and the first
// payment of an account the process has not loaded yet (cold) and of one
// it has (warm), statement pages of random months, and the events per
// second of rebuild and verify.

const (
	// maxHistoryEvents bounds --history.
	maxHistoryEvents = 1_000_000_000
	// historyDays is the simulated span: 2030-01-01 to 2034-12-31.
	historyDays = 5*365 + 1
	// historySpeed is the virtual clock's speed within a round, as the
	// write-path run's (see virtualClock).
	historySpeed = 1000
	// historyRoundMin: a round has at least this many payments per client,
	// so that a tiny history is not mostly barriers.
	historyRoundMin = 4
	// The samples of each measurement; fewer when there are fewer accounts.
	historyBalanceSamples   = 500
	historyPaymentSamples   = 200
	historyStatementSamples = 1000
	// historyPerCatchUp bounds the wait for the projection after the build
	// per million events.
	historyPerCatchUp = 2 * time.Minute
)

// historyClock is the history's virtual clock: within a round it runs
// historySpeed times faster than real time from the round's start, and
// between rounds it jumps (forward only) to the next round's start, when
// no payment is in flight, so no challenge expires across a jump.
type historyClock struct {
	seg atomic.Pointer[clockSegment]
}

type clockSegment struct {
	virt time.Time // the virtual instant at real
	real time.Time // with its monotonic reading
}

func newHistoryClock(at time.Time) *historyClock {
	c := &historyClock{}
	c.seg.Store(&clockSegment{virt: at, real: time.Now()})
	return c
}

func (c *historyClock) Now() time.Time {
	s := c.seg.Load()
	return s.virt.Add(time.Duration(float64(time.Since(s.real)) * historySpeed))
}

func (c *historyClock) realUntil(v time.Time) time.Duration {
	return time.Duration(float64(v.Sub(c.Now())) / historySpeed)
}

// jump moves the clock to v, or leaves it when it is already past v.
func (c *historyClock) jump(v time.Time) {
	if now := c.Now(); v.Before(now) {
		v = now
	}
	c.seg.Store(&clockSegment{virt: v, real: time.Now()})
}

// historyFigures are the measured figures the targets are checked on.
type historyFigures struct {
	bytesPerPayment              int64
	coldBalanceP99, statementP99 time.Duration
	coldPayP50, warmPayP50       time.Duration
	rebuildPerS                  float64
}

// Issue 15's targets on a 2-core machine at 10 M events.
const (
	targetReadP99         = 5 * time.Millisecond
	targetColdOverWarm    = 2
	targetRebuildPerS     = 200_000
	targetBytesPerPayment = 500
)

// printTargets prints each target and whether the run met it.
func printTargets(stdout io.Writer, f historyFigures) {
	met := func(ok bool) string {
		if ok {
			return "met"
		}
		return "missed"
	}
	for _, t := range []struct {
		what string
		ok   bool
	}{
		{fmt.Sprintf("cold balance p99 %.2f ms <= %d ms", ms(f.coldBalanceP99), targetReadP99/time.Millisecond), f.coldBalanceP99 <= targetReadP99},
		{fmt.Sprintf("statement page p99 %.2f ms <= %d ms", ms(f.statementP99), targetReadP99/time.Millisecond), f.statementP99 <= targetReadP99},
		{fmt.Sprintf("first payment cold p50 %.2f ms <= %d x warm p50 %.2f ms", ms(f.coldPayP50), targetColdOverWarm, ms(f.warmPayP50)), f.coldPayP50 <= targetColdOverWarm*f.warmPayP50},
		{fmt.Sprintf("rebuild %d events/s >= %d", int64(f.rebuildPerS), targetRebuildPerS), f.rebuildPerS >= targetRebuildPerS},
		{fmt.Sprintf("log bytes per payment %d <= %d", f.bytesPerPayment, targetBytesPerPayment), f.bytesPerPayment <= targetBytesPerPayment},
	} {
		fmt.Fprintf(stdout, "bench: history: target %s: %s\n", t.what, met(t.ok))
	}
}

// historyBuild is what the build phase leaves for the measurements.
type historyBuild struct {
	accts    []*benchAccount
	payments int64 // attempted: paid, refused or failed
	events   int64 // the log's head
}

// benchHistory runs the history mode in a new directory under root.
func benchHistory(ctx context.Context, c benchConfig, root string, stdout, stderr io.Writer) (err error) {
	dir, err := os.MkdirTemp(root, "history-")
	if err != nil {
		return fmt.Errorf("bench history: %w", err)
	}
	fmt.Fprintf(stdout, "bench: history: %d events over %d simulated days from %s, %d clients, %d accounts, data %s\n",
		c.history, historyDays, benchEpoch.Format(time.DateOnly), c.clients, c.accounts, dir)
	if err := printDisk(stdout, "disk", dir); err != nil {
		return err
	}
	// One CPU profile covers the run; each phase's samples carry the label
	// phase=build|reads|rebuild|verify (go tool pprof -tagfocus).
	stopProfiles, err := startProfiles(c.cpuProfile, c.trace)
	if err != nil {
		return err
	}
	defer func() {
		if perr := stopProfiles(); err == nil {
			err = perr
		}
	}()
	clock := newHistoryClock(benchEpoch)
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	cfg := Config{DataDir: dir, TimeZone: c.timeZone, Clock: clock.Now, Log: logger, StoreOpts: sqlite.DefaultOptions()}
	if cfg.MasterKeyB64, err = benchMasterKey(ledger.CryptoRand); err != nil {
		return err
	}
	phase := func(name string, f func(context.Context) error) error {
		var err error
		pprof.Do(ctx, pprof.Labels("phase", name), func(ctx context.Context) { err = f(ctx) })
		if err != nil {
			return fmt.Errorf("bench history: %s: %w", name, err)
		}
		return ctx.Err()
	}

	var b historyBuild
	if err := phase("build", func(ctx context.Context) error {
		cfg.Rand = newLockedReader(c.seed)
		b, err = historyBuildLog(ctx, cfg, c, clock, stdout, stderr)
		return err
	}); err != nil {
		return err
	}
	var fig historyFigures
	if fig.bytesPerPayment, err = printLogSize(stdout, dir, b); err != nil {
		return err
	}
	// After the five years: the clock runs on from their end.
	clock.jump(benchEpoch.AddDate(0, 0, historyDays))
	if err := phase("reads", func(ctx context.Context) error {
		cfg.Rand = newLockedReader(c.seed + 1) // other ids than the build's
		return historyReads(ctx, cfg, c, b, clock, stdout, &fig)
	}); err != nil {
		return err
	}
	if err := phase("rebuild", func(ctx context.Context) error {
		fig.rebuildPerS, err = historyRebuild(ctx, dir, stdout, stderr)
		return err
	}); err != nil {
		return err
	}
	if err := phase("verify", func(ctx context.Context) error {
		return historyVerify(ctx, dir, stdout, stderr)
	}); err != nil {
		return err
	}
	printTargets(stdout, fig)
	return nil
}

// historyBuildLog opens a ledger in cfg.DataDir, sets up the accounts and
// pays until the log holds c.history events, in rounds spread evenly over
// historyDays: every round starts at a random time of its slice of days,
// pays its share and waits for its last payment before the clock jumps to
// the next. It closes the ledger once the read models have caught up.
func historyBuildLog(ctx context.Context, cfg Config, c benchConfig, clock *historyClock, stdout, stderr io.Writer) (b historyBuild, err error) {
	start := time.Now()
	m := &Main{Config: cfg}
	if err := m.Open(ctx); err != nil {
		return b, err
	}
	defer func() {
		if cerr := m.Close(); err == nil {
			err = cerr
		}
	}()
	var setUp atomic.Int64
	stop := showProgress(stderr, int64(c.accounts), "bench history: accounts set up", setUp.Load)
	b.accts, err = benchSetup(ctx, m, c, &setUp)
	stop()
	if err != nil {
		return b, fmt.Errorf("setup: %w", err)
	}
	setupHead, err := m.Store.Head(ctx)
	if err != nil {
		return b, err
	}
	// Each payment appends two events: its initiation and its confirmation
	// (or refusal).
	total := max(c.history-setupHead, 0)
	total = (total + 1) / 2
	rounds := min(int64(historyDays), max(total/int64(c.clients*historyRoundMin), 1))
	slice := time.Duration(historyDays) * 24 * time.Hour / time.Duration(rounds)
	clients := make([]*benchClient, c.clients)
	for k := range clients {
		clients[k] = &benchClient{id: k, rng: rand.New(rand.NewPCG(c.seed, uint64(k)))}
		for i := k; i < len(b.accts); i += c.clients {
			clients[k].accts = append(clients[k].accts, b.accts[i])
		}
	}
	rng := rand.New(rand.NewPCG(c.seed, 1<<32))
	var paid atomic.Int64
	stop = showProgress(stderr, c.history, "bench history: events written", func() int64 { return setupHead + 2*paid.Load() })
	payStart := time.Now()
	for r := range rounds {
		quota := total*(r+1)/rounds - total*r/rounds
		// A round starts in the first half of its slice; the second half
		// leaves it slice/2 of virtual time, slice/2/historySpeed real.
		at := benchEpoch.Add(time.Duration(r)*slice + time.Duration(rng.Int64N(int64(slice/2))))
		clock.jump(at)
		if err = historyRound(ctx, m.Service, clients, b.accts, quota, clock, at.Add(slice/2), &paid); err != nil {
			break
		}
	}
	stop()
	if err != nil {
		return b, fmt.Errorf("pay: %w", err)
	}
	payElapsed := time.Since(payStart)
	b.payments = paid.Load()
	if b.events, err = m.Store.Head(ctx); err != nil {
		return b, err
	}
	var res benchResult
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
	slices.Sort(lat)
	fmt.Fprintf(stdout, "bench: history: build: events=%d payments=%d refusals=%d errors=%d rounds=%d elapsed=%s events_per_s=%d payments_per_s=%d payment_p50_ms=%.2f payment_p99_ms=%.2f\n",
		b.events, res.payments, res.refusals, res.failures, rounds, payElapsed.Round(time.Millisecond),
		int64(float64(b.events-setupHead)/payElapsed.Seconds()), int64(float64(res.payments)/payElapsed.Seconds()),
		ms(percentile(lat, 0.50)), ms(percentile(lat, 0.99)))
	if firstErr != nil {
		fmt.Fprintf(stdout, "bench: history: build: first error or refusal: %v\n", firstErr)
	}
	// The read models catch up before the ledger closes, as a server's
	// would while it runs: the reads measure a caught-up projection.
	catchUp := time.Duration(b.events/1_000_000+1) * historyPerCatchUp
	wctx, cancel := context.WithTimeout(ctx, catchUp)
	defer cancel()
	lag := m.RM.Checkpoint()
	stop = showProgress(stderr, b.events, "bench history: projection catching up", m.RM.Checkpoint)
	err = m.RM.WaitFor(wctx, b.events)
	stop()
	if err != nil {
		return b, fmt.Errorf("projection catch-up: %w", err)
	}
	ss := m.Service.SnapshotStats()
	fmt.Fprintf(stdout, "bench: history: build: set up and paid in %s; projection at %d of %d when the payments ended; account snapshots saved=%d\n",
		time.Since(start).Round(time.Millisecond), lag, b.events, ss.Saved)
	if err := benchVerify(ctx, m, b.accts); err != nil {
		return b, err
	}
	return b, nil
}

// historyRound pays quota payments with every client at once, each client
// from its own accounts, and returns once all are done. Its clock must not
// reach end: a round that has not paid its quota by then fails.
func historyRound(ctx context.Context, svc *ledger.Service, clients []*benchClient, all []*benchAccount,
	quota int64, clock *historyClock, end time.Time, paid *atomic.Int64) error {
	deadline := time.Now().Add(clock.realUntil(end))
	var left atomic.Int64
	left.Store(quota)
	var late atomic.Bool
	var wg sync.WaitGroup
	for _, cl := range clients {
		wg.Go(func() {
			for ctx.Err() == nil && left.Add(-1) >= 0 {
				a := cl.ready(clock)
				for a == nil {
					if ctx.Err() != nil || !time.Now().Before(deadline) {
						late.Store(true)
						return
					}
					cl.sleepToNextStep(clock, time.Until(deadline))
					a = cl.ready(clock)
				}
				cl.pay(ctx, svc, a, all, clock, time.Now())
				paid.Add(1)
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	if late.Load() {
		return fmt.Errorf("a round of %d payments did not end within %s of virtual time", quota, end.Sub(clock.Now()))
	}
	return nil
}

// printLogSize prints the event log's size on disk (the SQLite file and
// its write-ahead log) per payment and per event.
func printLogSize(stdout io.Writer, dir string, b historyBuild) (perPayment int64, err error) {
	var size int64
	for _, name := range []string{"events.db", "events.db-wal"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("bench history: %w", err)
		}
		size += fi.Size()
	}
	sizeOf := func(name string) int64 {
		if fi, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return fi.Size()
		}
		return 0
	}
	fmt.Fprintf(stdout, "bench: history: log bytes=%d (events.db and -wal) payments=%d bytes_per_payment=%d bytes_per_event=%d; beside it: snapshots %d bytes, read models %d bytes\n",
		size, b.payments, size/max(b.payments, 1), size/max(b.events, 1), sizeOf("events.snapshots.db"), sizeOf("readmodels.db"))
	return size / max(b.payments, 1), nil
}

// historyReads opens the built ledger again, as a restarted server would:
// no account is in the Service's cache (the operating system's page cache
// still holds whatever the build left there). It measures what the HTTP
// handlers call, in process: a balance read of accounts never read before
// (cold) and of the same again (warm), statement pages of random accounts
// and months, and the first payment of an account never loaded against
// its second one.
func historyReads(ctx context.Context, cfg Config, c benchConfig, b historyBuild, clock *historyClock, stdout io.Writer,
	fig *historyFigures) (err error) {
	m := &Main{Config: cfg}
	if err := m.Open(ctx); err != nil {
		return err
	}
	defer func() {
		if cerr := m.Close(); err == nil {
			err = cerr
		}
	}()
	rng := rand.New(rand.NewPCG(c.seed, 2<<32))
	order := slices.Clone(b.accts)
	rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	nBal := min(historyBalanceSamples, len(order)/2)
	balSet, paySet := order[:nBal], order[nBal:]
	paySet = paySet[:min(historyPaymentSamples, len(paySet))]

	read := func(a *benchAccount) (time.Duration, error) {
		t0 := time.Now()
		err := historyBalance(ctx, m, a.id)
		return time.Since(t0), err
	}
	cold, err := sample(balSet, read)
	if err != nil {
		return fmt.Errorf("cold balance: %w", err)
	}
	warm, err := sample(balSet, read)
	if err != nil {
		return fmt.Errorf("warm balance: %w", err)
	}
	fmt.Fprintf(stdout, "bench: history: cold balance p50_ms=%.3f p99_ms=%.3f n=%d (first read of the account in this process)\n",
		ms(percentile(cold, 0.5)), ms(percentile(cold, 0.99)), len(cold))
	fmt.Fprintf(stdout, "bench: history: warm balance p50_ms=%.3f p99_ms=%.3f n=%d (the same accounts again)\n",
		ms(percentile(warm, 0.5)), ms(percentile(warm, 0.99)), len(warm))

	months := historyDays * 12 / 365
	stmt := make([]int, min(historyStatementSamples, 2*len(b.accts)))
	var entries int64
	st, err := sample(stmt, func(int) (time.Duration, error) {
		a := b.accts[rng.IntN(len(b.accts))]
		from := benchEpoch.AddDate(0, rng.IntN(months), 0)
		t0 := time.Now()
		n, err := historyStatement(ctx, m, a.id, from, from.AddDate(0, 1, 0))
		entries += int64(n)
		return time.Since(t0), err
	})
	if err != nil {
		return fmt.Errorf("statement: %w", err)
	}
	fmt.Fprintf(stdout, "bench: history: statement page p50_ms=%.3f p99_ms=%.3f n=%d entries_per_page=%.1f (random account and month, pages of %d)\n",
		ms(percentile(st, 0.5)), ms(percentile(st, 0.99)), len(st), float64(entries)/float64(max(len(st), 1)), projections.DefaultStatementLimit)

	// The payee is an account already loaded, so the cold payment's extra
	// time is the payer's load alone: the balance reads above no longer
	// load the aggregate, so the payees are loaded here, untimed.
	for _, a := range balSet {
		if _, err := m.Service.Currency(ctx, a.id); err != nil {
			return fmt.Errorf("payee load: %w", err)
		}
	}
	pay := func(a *benchAccount) (time.Duration, error) {
		return historyPayment(ctx, m.Service, a, balSet[rng.IntN(len(balSet))], clock)
	}
	coldPay, err := sample(paySet, pay)
	if err != nil {
		return fmt.Errorf("cold payment: %w", err)
	}
	warmPay, err := sample(paySet, pay)
	if err != nil {
		return fmt.Errorf("warm payment: %w", err)
	}
	fig.coldBalanceP99, fig.statementP99 = percentile(cold, 0.99), percentile(st, 0.99)
	fig.coldPayP50, fig.warmPayP50 = percentile(coldPay, 0.5), percentile(warmPay, 0.5)
	ratio := 0.0
	if w := percentile(warmPay, 0.5); w > 0 {
		ratio = float64(percentile(coldPay, 0.5)) / float64(w)
	}
	fmt.Fprintf(stdout, "bench: history: first payment cold p50_ms=%.3f p99_ms=%.3f warm p50_ms=%.3f p99_ms=%.3f cold_over_warm_p50=%.2f n=%d (one at a time: initiate and confirm, two commits)\n",
		ms(percentile(coldPay, 0.5)), ms(percentile(coldPay, 0.99)), ms(percentile(warmPay, 0.5)), ms(percentile(warmPay, 0.99)), ratio, len(coldPay))
	ss := m.Service.SnapshotStats()
	fmt.Fprintf(stdout, "bench: history: account snapshots loaded=%d rejected=%d\n", ss.Loaded, ss.Rejected)
	return nil
}

// sample times f on every item in order and returns the sorted latencies.
func sample[T any](items []T, f func(T) (time.Duration, error)) ([]time.Duration, error) {
	lat := make([]time.Duration, 0, len(items))
	for _, it := range items {
		d, err := f(it)
		if err != nil {
			return nil, err
		}
		lat = append(lat, d)
	}
	slices.Sort(lat)
	return lat, nil
}

// historyBalance is what GET /v1/accounts/{id}/balance does for the
// holder (httpapi's balance handler), without HTTP.
func historyBalance(ctx context.Context, m *Main, id string) error {
	if err := m.Service.AuthorizeRead(ctx, ledger.Actor{AccountID: id, SessionID: "bench"}, ledger.OpReadBalance, id); err != nil {
		return err
	}
	if err := historyCatchUp(ctx, m); err != nil {
		return err
	}
	b, err := m.RM.Balance(ctx, id)
	if err == nil && !b.Found {
		// As the handler does: only an account the read model has not seen
		// loads the aggregate; every bench account has moved money.
		_, err = m.Service.Currency(ctx, id)
		if err == nil {
			err = fmt.Errorf("account %s has no balance", id)
		}
	}
	return err
}

// historyStatement is what GET /v1/accounts/{id}/statement does for the
// holder (httpapi's statement handler) for one page of [from, to), without
// HTTP; it returns the page's entries.
func historyStatement(ctx context.Context, m *Main, id string, from, to time.Time) (int, error) {
	if err := m.Service.AuthorizeRead(ctx, ledger.Actor{AccountID: id, SessionID: "bench"}, ledger.OpReadStatement, id); err != nil {
		return 0, err
	}
	if err := historyCatchUp(ctx, m); err != nil {
		return 0, err
	}
	page, err := m.RM.Statement(ctx, projections.StatementQuery{AccountID: id, From: from, To: to, Limit: projections.DefaultStatementLimit})
	return len(page.Entries), err
}

// historyCatchUp is the handlers' catch-up: the read models reach the
// log's head as of the read's start.
func historyCatchUp(ctx context.Context, m *Main) error {
	head, err := m.Store.Head(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return m.RM.WaitFor(ctx, head)
}

// historyPayment times one payment from a to payee; waiting for a's next
// TOTP step, when it has used the current one, is not counted.
func historyPayment(ctx context.Context, svc *ledger.Service, a, payee *benchAccount, clock *historyClock) (time.Duration, error) {
	cl := &benchClient{accts: []*benchAccount{a}, rng: rand.New(rand.NewPCG(uint64(a.index), 3))}
	for range 100 {
		if cl.ready(clock) != nil {
			break
		}
		cl.sleepToNextStep(clock, 100*time.Millisecond)
	}
	t0 := time.Now()
	cl.pay(ctx, svc, a, []*benchAccount{payee, a}, clock, t0)
	d := time.Since(t0)
	if cl.firstErr != nil {
		return 0, cl.firstErr
	}
	return d, nil
}

// historyRebuild replays the log into a new read-model file, as
// payledger rebuild does into the emptied one, and checks its totals.
func historyRebuild(ctx context.Context, dir string, stdout, stderr io.Writer) (perS float64, err error) {
	store, err := sqlite.Open(filepath.Join(dir, "events.db"), sqlite.DefaultOptions())
	if err != nil {
		return 0, err
	}
	defer func() {
		if cerr := store.Close(); err == nil {
			err = cerr
		}
	}()
	path := filepath.Join(dir, "rebuild-readmodels.db")
	defer removeDB(path)
	rm, err := projections.Open(path)
	if err != nil {
		return 0, err
	}
	defer func() {
		if cerr := rm.Close(); err == nil {
			err = cerr
		}
	}()
	head, err := store.Head(ctx)
	if err != nil {
		return 0, err
	}
	stop := showProgress(stderr, head, "bench history: rebuild: events replayed", rm.Checkpoint)
	t0 := time.Now()
	err = rm.Rebuild(ctx, store)
	d := time.Since(t0)
	stop()
	if err != nil {
		return 0, err
	}
	totals, err := rm.Totals(ctx)
	if err != nil {
		return 0, err
	}
	if err := totals.Check(); err != nil {
		return 0, fmt.Errorf("the rebuilt read models do not balance: %w", err)
	}
	perS = float64(head) / d.Seconds()
	fmt.Fprintf(stdout, "bench: history: rebuild events=%d elapsed=%s events_per_s=%d (a new read-model file)\n",
		head, d.Round(time.Millisecond), int64(perS))
	return perS, nil
}

// removeDB removes a SQLite file and its write-ahead log.
func removeDB(path string) {
	for _, suffix := range []string{"", "-wal", "-shm"} {
		_ = os.Remove(path + suffix)
	}
}

// historyVerify runs what payledger verify runs: the walk of every hash
// chain, then the index check.
func historyVerify(ctx context.Context, dir string, stdout, stderr io.Writer) error {
	log, err := sqlite.OpenReader(filepath.Join(dir, "events.db"))
	if err != nil {
		return err
	}
	defer log.Close()
	head, err := log.Head(ctx)
	if err != nil {
		return err
	}
	var checked atomic.Int64
	stop := showProgress(stderr, head, "bench history: verify: events checked", checked.Load)
	t0 := time.Now()
	n, streams, _, err := verifyLog(ctx, log, &checked)
	walk := time.Since(t0)
	stop()
	if err != nil {
		return err
	}
	if _, err := log.CheckIndexes(ctx); err != nil {
		return err
	}
	d := time.Since(t0)
	fmt.Fprintf(stdout, "bench: history: verify events=%d streams=%d elapsed=%s events_per_s=%d (hash chains %s, indexes %s)\n",
		n, streams, d.Round(time.Millisecond), int64(float64(n)/d.Seconds()), walk.Round(time.Millisecond), (d - walk).Round(time.Millisecond))
	return nil
}
