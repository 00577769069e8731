package ledger_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/eventstore"
	"github.com/payledger/payledger/ledger"
	"github.com/shopspring/decimal"
)

// benchClock is a virtual clock running speed times faster than real time,
// as in `payledger bench`: a TOTP code is single use per 30 s step, so at
// x1000 an account can confirm a payment every 30 ms of real time.
type benchClock struct {
	start time.Time
	speed float64
}

func (c *benchClock) Now() time.Time {
	return testBase.Add(time.Duration(float64(time.Since(c.start)) * c.speed))
}

// benchPayer is one paying account and what its client knows of it.
type benchPayer struct {
	id, factor, seed, device string
	lastStep                 int64
}

const (
	benchAccounts    = 2048
	benchParallelism = 128 // goroutines per GOMAXPROCS, 256 clients on 2 cores as in `payledger bench`
)

// BenchmarkInitiateConfirm is the write path of `payledger bench`: many
// concurrent clients, each payment initiated and then confirmed with a real
// TOTP proof, against the real SQLite store with the projection running.
// One op is one confirmed payment. Set PAYLEDGER_BENCH_CPUPROFILE to profile
// only the measured loop (without the setup).
func BenchmarkInitiateConfirm(b *testing.B) {
	ctx := context.Background()
	e := newEnv(b, 3)
	clock := &benchClock{start: time.Now(), speed: 1000}
	svc := e.node(b, func(c *ledger.Config) {
		c.Clock = clock.Now
		c.NewID = ledger.NewULIDSource(clock.Now, e.rnd)
		c.SoleWriter = true
	})
	e.runProjection(b)
	payers := benchSetupPayers(b, ctx, svc, benchAccounts)
	if err := e.rm.WaitFor(ctx, e.head(b)); err != nil {
		b.Fatal(err)
	}
	benchPayments(b, ctx, svc, clock, payers, benchParallelism)
}

// BenchmarkInitiateConfirmMemStore is the same workload over an in-memory
// store and a projection that is always caught up, so it measures only the
// CPU the write path spends outside the event store.
func BenchmarkInitiateConfirmMemStore(b *testing.B) {
	ctx := context.Background()
	e := newEnv(b, 3)
	// At x500 a TOTP step lasts 60 ms, so a confirmation has over 60 ms to
	// arrive; 8192 accounts allow up to ~136000 payments/s.
	clock := &benchClock{start: time.Now(), speed: 500}
	store := &memStore{versions: map[string]int64{}}
	svc := e.node(b, func(c *ledger.Config) {
		c.Store = store
		c.Balances = store
		c.Clock = clock.Now
		c.NewID = ledger.NewULIDSource(clock.Now, e.rnd)
		c.SoleWriter = true
	})
	payers := benchSetupPayers(b, ctx, svc, 4*benchAccounts)
	benchPayments(b, ctx, svc, clock, payers, 1)
}

// benchPayments runs b.N payments from parallelism×GOMAXPROCS clients, each
// paying from its own share of the payers.
func benchPayments(b *testing.B, ctx context.Context, svc *ledger.Service, clock *benchClock, payers []*benchPayer, parallelism int) {
	if path := os.Getenv("PAYLEDGER_BENCH_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	var nextClient atomic.Int64
	var failures, expired atomic.Int64
	var firstErr atomic.Value
	clients := runtime.GOMAXPROCS(0) * parallelism
	b.SetParallelism(parallelism)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU(b)
	b.RunParallel(func(pb *testing.PB) {
		k := int(nextClient.Add(1) - 1)
		rng := rand.New(rand.NewPCG(3, uint64(k)))
		var mine []*benchPayer
		for i := k % clients; i < len(payers); i += clients {
			mine = append(mine, payers[i])
		}
		next := 0
		for pb.Next() {
			var a *benchPayer
			for a == nil {
				cur := domain.TOTPStepAt(clock.Now())
				for range len(mine) {
					c := mine[next]
					next = (next + 1) % len(mine)
					if c.lastStep+1 <= cur+domain.TOTPSkew {
						a = c
						break
					}
				}
				if a == nil {
					time.Sleep(100 * time.Microsecond)
				}
			}
			if err := benchPay(ctx, svc, clock, rng, a, payers); err != nil {
				// A client descheduled for over two TOTP steps between
				// choosing its code and confirming (a shared machine) sees
				// its code expire; that alone is tolerated below.
				if domain.ErrorCode(err) == domain.CodeProofInvalid {
					expired.Add(1)
				} else {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
		}
	})
	b.StopTimer()
	if cpu0 >= 0 {
		b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
	}
	if n := failures.Load(); n > 0 {
		b.Fatalf("%d payments failed, first: %v", n, firstErr.Load())
	}
	if n := expired.Load(); n > int64(b.N)/1000 {
		b.Fatalf("%d of %d confirmations came too late for their TOTP code", n, b.N)
	}
}

// memStore is an in-memory event store for benchmarks: optimistic
// concurrency and positions like the real one, nothing durable, no hashes,
// and it keeps no events: with SoleWriter and a cache larger than the
// accounts, the service reads each stream only once, when it is still
// empty. As Balances it reports a projection caught up to the head with a
// large balance, so aggregates keep no unprojected money events.
type memStore struct {
	eventstore.Store // not implemented: only Append and ReadStream are used
	mu               sync.Mutex
	versions         map[string]int64
	head             int64
}

func (m *memStore) Append(_ context.Context, stream string, expected int64, events []eventstore.EventData) (eventstore.AppendResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.versions[stream] != expected {
		return eventstore.AppendResult{}, eventstore.ErrVersionConflict
	}
	out := make([]eventstore.Event, len(events))
	for i, d := range events {
		d.Payload = append([]byte(nil), d.Payload...) // as a real store copies what it keeps
		m.head++
		out[i] = eventstore.Event{EventData: d, Stream: stream, Version: expected + int64(i) + 1, Position: m.head}
	}
	m.versions[stream] = expected + int64(len(events))
	return eventstore.AppendResult{Events: out}, nil
}

func (m *memStore) ReadStream(_ context.Context, stream string, from int64, _ int) ([]eventstore.Event, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.versions[stream] >= from {
		return nil, fmt.Errorf("memStore keeps no events; %s was read from version %d", stream, from)
	}
	return nil, nil
}

func (m *memStore) Snapshot(string) (decimal.Decimal, int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return benchBalance, m.head
}

// WaitFor returns at once: Snapshot's checkpoint is always the head.
func (m *memStore) WaitFor(context.Context, int64) error { return nil }

var benchBalance = decimal.RequireFromString("1000000.00")

func benchSetupPayers(b *testing.B, ctx context.Context, svc *ledger.Service, n int) []*benchPayer {
	payers := make([]*benchPayer, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 256)
	for range 256 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(payers) {
					return
				}
				p, err := benchSetupOne(ctx, svc, i)
				if err != nil {
					errs <- err
					return
				}
				payers[i] = p
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	return payers
}

func benchSetupOne(ctx context.Context, svc *ledger.Service, i int) (*benchPayer, error) {
	// Opened by an operator after an identity check, with the TOTP as its
	// first factor: usable at once.
	out, err := svc.OpenAccount(ctx, operatorActor, ledger.Idem{}, ledger.OpenRequest{HolderName: fmt.Sprintf("Bench Holder %d", i),
		Currency: "CNY", Kind: domain.KindPersonal, IdentityCheck: testIdentityCheck,
		Factor: ledger.EnrollRequest{Method: domain.MethodTOTP, DeviceID: fmt.Sprintf("token-%d", i)}})
	if err != nil {
		return nil, err
	}
	p := &benchPayer{id: out.AccountID, device: fmt.Sprintf("phone-%d", i)}
	fe := out.Decoded[1].(domain.FactorEnrolled)
	p.factor = fe.FactorID
	if p.seed, err = svc.TOTPSecret(fe); err != nil {
		return nil, err
	}
	if _, err := svc.Deposit(ctx, fundingActor, p.id, ledger.Idem{}, "1000000.00", "CNY", "bench"); err != nil {
		return nil, err
	}
	return p, nil
}

func benchPay(ctx context.Context, svc *ledger.Service, clock *benchClock, rng *rand.Rand, a *benchPayer, all []*benchPayer) error {
	payee := all[rng.IntN(len(all)-1)]
	if payee == a {
		payee = all[len(all)-1]
	}
	cents := 1 + rng.IntN(30)
	out, err := svc.InitiatePayment(ctx, holderOf(a.id), a.id, ledger.Idem{}, ledger.PaymentRequest{PayeeID: payee.id,
		Amount: fmt.Sprintf("0.%02d", cents), Currency: "CNY", Channel: "app", Terminal: "mobile", DeviceID: a.device})
	if err == nil {
		err = out.Refusal
	}
	if err != nil {
		return fmt.Errorf("initiate: %w", err)
	}
	pi := out.Decoded[0].(domain.PaymentInitiated)
	step := max(a.lastStep+1, domain.TOTPStepAt(clock.Now())+domain.TOTPSkew)
	code, err := domain.TOTPCode(a.seed, step)
	if err != nil {
		return err
	}
	a.lastStep = step
	out, err = svc.ConfirmPayment(ctx, holderOf(a.id), a.id, pi.PaymentID, ledger.Idem{}, a.device, []domain.Proof{{FactorID: a.factor, Code: code}})
	if err == nil {
		err = out.Refusal
	}
	if err != nil {
		return fmt.Errorf("confirm: %w", err)
	}
	if _, ok := out.Decoded[0].(domain.PaymentConfirmed); !ok {
		return fmt.Errorf("confirm produced %T", out.Decoded[0])
	}
	return nil
}
