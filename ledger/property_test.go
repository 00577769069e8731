package ledger_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/eventstore"
	"github.com/payledger/payledger/ledger"
	"github.com/shopspring/decimal"
)

// ack is a command the service acknowledged as done.
type ack struct {
	payer, payee string
	amount       decimal.Decimal
}

// propertyResults is what the workers observed, guarded by mu.
type propertyResults struct {
	mu        sync.Mutex
	confirmed map[string]ack    // payment id -> acknowledged confirmation
	rejected  map[string]string // payment id -> refusal code
	pending   map[string]bool   // initiated, confirm returned an error (nothing appended)
	initiated map[string]string // payment id -> payer
	deposits  map[string]ack    // deposit id -> acknowledged deposit
	errors    map[string]int    // code of errors (nothing appended)
	refusals  map[string]int    // code of recorded refusals
}

// TestConcurrentPaymentsKeepLedgerConsistent is the property test of the
// money rule (DESIGN.md, "Available balance for a decision"): random
// concurrent payments from two nodes over one real store, with the balances
// projection running concurrently and lagging, never overdraw a customer
// account, keep the ledger balanced, and record exactly the payments that
// were acknowledged; the projection equals a fold of the log and a rebuild.
func TestConcurrentPaymentsKeepLedgerConsistent(t *testing.T) {
	const (
		numAccounts = 30
		workers     = 16
		opsPerWork  = 50
	)
	ctx := context.Background()
	started := time.Now()
	e := newEnv(t, 1)
	stopProjection := e.runProjection(t)
	// Two nodes over the same store and read models: node B has a tiny
	// aggregate cache, so it evicts and reloads all the time, and the two
	// nodes' caches go stale, so appends conflict and retry.
	counted := &hookStore{ConditionalStore: e.store}
	nodes := []*ledger.Service{
		e.node(t, func(c *ledger.Config) { c.Store = counted }),
		e.node(t, func(c *ledger.Config) { c.Store = counted; c.CacheSize = 8 }),
	}

	holders := make([]certHolder, numAccounts)
	byID := map[string]certHolder{}
	for i := range holders {
		holders[i] = openCertAccount(t, ctx, nodes[i%2], fmt.Sprintf("Holder %02d", i), byte(i+1))
		byID[holders[i].id] = holders[i]
	}
	res := &propertyResults{confirmed: map[string]ack{}, rejected: map[string]string{}, pending: map[string]bool{},
		initiated: map[string]string{}, deposits: map[string]ack{}, errors: map[string]int{}, refusals: map[string]int{}}
	seedRng := rand.New(rand.NewPCG(42, 7))
	for i, h := range holders {
		if i%3 == 2 {
			continue // some accounts start empty
		}
		deposit(t, ctx, nodes[seedRng.IntN(2)], h.id, randomAmount(seedRng, 1000, 30000), res)
	}

	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(1000, uint64(w)))
			for range opsPerWork {
				if rng.IntN(10) == 0 {
					h := holders[rng.IntN(numAccounts)]
					deposit(t, ctx, nodes[rng.IntN(2)], h.id, randomAmount(rng, 100, 5000), res)
					continue
				}
				payer := holders[rng.IntN(numAccounts)]
				payee := holders[rng.IntN(numAccounts)]
				for payee.id == payer.id {
					payee = holders[rng.IntN(numAccounts)]
				}
				// Up to 120.00: often more than the payer has.
				pay(t, ctx, nodes[rng.IntN(2)], nodes[rng.IntN(2)], payer, payee, randomAmount(rng, 1, 12000), res)
			}
		}()
	}
	wg.Wait()
	stopProjection()
	if err := e.rm.CatchUp(ctx, e.store); err != nil {
		t.Fatalf("catch up: %v", err)
	}
	head := e.head(t)
	if cp := e.rm.Checkpoint(); cp != head {
		t.Fatalf("checkpoint %d after catch-up, head %d", cp, head)
	}

	// Fold the whole log from scratch, checking after every event that no
	// customer account is below zero (the balance at every prefix of the
	// log, which is stronger than the final balance).
	all := readAll(t, e.store)
	if int64(len(all)) != head {
		t.Fatalf("read %d events, head is %d", len(all), head)
	}
	bal := map[string]decimal.Decimal{}
	versions := map[string]int64{}
	confirmedInLog := map[string]int{}
	rejectedInLog := map[string]int{}
	initiatedInLog := map[string]string{}
	depositsInLog := map[string]int{}
	totalDebits, totalCredits := decimal.Zero, decimal.Zero
	negativeSeen := 0
	for i, ev := range all {
		if ev.Position != int64(i+1) {
			t.Fatalf("event %d has position %d: the log has a gap", i, ev.Position)
		}
		if versions[ev.Stream]+1 != ev.Version {
			t.Fatalf("stream %s: version %d follows %d", ev.Stream, ev.Version, versions[ev.Stream])
		}
		versions[ev.Stream] = ev.Version
		d := decode(t, ev)
		switch v := d.(type) {
		case domain.AccountOpened:
			if _, ok := bal[v.AccountID]; !ok {
				bal[v.AccountID] = decimal.Zero
			}
		case domain.PaymentInitiated:
			initiatedInLog[v.PaymentID] = v.Payer
		case domain.PaymentConfirmed:
			confirmedInLog[v.PaymentID]++
			if want := domain.AccountStream(v.DebitAccount); ev.Stream != want {
				t.Errorf("payment %s confirmed in stream %s, want the payer's %s", v.PaymentID, ev.Stream, want)
			}
			a, ok := res.confirmed[v.PaymentID]
			switch {
			case !ok:
				t.Errorf("payment %s confirmed in the log at position %d but never acknowledged", v.PaymentID, ev.Position)
			case a.payer != v.DebitAccount || a.payee != v.CreditAccount || !a.amount.Equal(v.Amount.Amount):
				t.Errorf("payment %s: log has %s -> %s %s, acknowledged %s -> %s %s", v.PaymentID,
					v.DebitAccount, v.CreditAccount, v.Amount.Amount, a.payer, a.payee, a.amount)
			}
		case domain.PaymentRejected:
			rejectedInLog[v.PaymentID]++
		case domain.FundsDeposited:
			depositsInLog[v.DepositID]++
			if _, ok := res.deposits[v.DepositID]; !ok {
				t.Errorf("deposit %s in the log but never acknowledged", v.DepositID)
			}
		}
		m, ok := domain.MovementOf(d)
		if !ok {
			continue
		}
		if !m.Amount.Amount.IsPositive() {
			t.Errorf("position %d moves a non-positive amount %s", ev.Position, m.Amount.Amount)
		}
		bal[m.Debit] = bal[m.Debit].Sub(m.Amount.Amount)
		bal[m.Credit] = bal[m.Credit].Add(m.Amount.Amount)
		totalDebits = totalDebits.Add(m.Amount.Amount)
		totalCredits = totalCredits.Add(m.Amount.Amount)
		if isCustomer(m.Debit) && bal[m.Debit].IsNegative() {
			negativeSeen++
			t.Errorf("after position %d (%s) account %s is at %s: overdrawn", ev.Position, ev.Type, m.Debit, bal[m.Debit])
		}
	}

	// (a) no customer balance below zero, in the fold and in the projection.
	for id, b := range bal {
		if isCustomer(id) && b.IsNegative() {
			t.Errorf("fold: account %s ends at %s", id, b)
		}
	}
	// (b) debits = credits, in the fold and in the projection's totals.
	if !totalDebits.Equal(totalCredits) {
		t.Errorf("fold: debits %s != credits %s", totalDebits, totalCredits)
	}
	totals, err := e.rm.Totals(ctx)
	if err != nil {
		t.Fatalf("totals: %v", err)
	}
	if err := totals.Check(); err != nil {
		t.Errorf("totals: %v", err)
	}
	if len(totals.Currencies) != 1 || totals.Currencies[0].Currency != domain.CNY {
		t.Fatalf("totals currencies = %+v, want CNY only", totals.Currencies)
	}
	if ct := totals.Currencies[0]; !ct.Debits.Amount.Equal(totalDebits) || ct.Accounts != len(bal) {
		t.Errorf("totals: debits %s over %d accounts, fold has %s over %d", ct.Debits.Amount, ct.Accounts, totalDebits, len(bal))
	}

	// (c) every acknowledged payment is in the log exactly once, and
	// nothing else is (checked in the fold above).
	for id := range res.confirmed {
		if n := confirmedInLog[id]; n != 1 {
			t.Errorf("acknowledged payment %s appears %d times as PaymentConfirmed", id, n)
		}
		if rejectedInLog[id] != 0 {
			t.Errorf("acknowledged payment %s also rejected", id)
		}
	}
	for id := range res.deposits {
		if n := depositsInLog[id]; n != 1 {
			t.Errorf("acknowledged deposit %s appears %d times", id, n)
		}
	}
	for id, code := range res.rejected {
		if rejectedInLog[id] != 1 || confirmedInLog[id] != 0 {
			t.Errorf("payment %s refused with %s: %d rejections, %d confirmations in the log", id, code, rejectedInLog[id], confirmedInLog[id])
		}
	}
	for id := range res.pending {
		if rejectedInLog[id]+confirmedInLog[id] != 0 {
			t.Errorf("payment %s: confirm failed with nothing appended, but the log finished it", id)
		}
	}
	for id, payer := range res.initiated {
		if initiatedInLog[id] != payer {
			t.Errorf("payment %s initiated by %s: log says %q", id, payer, initiatedInLog[id])
		}
	}
	if len(initiatedInLog) != len(res.initiated) {
		t.Errorf("log has %d initiated payments, %d acknowledged", len(initiatedInLog), len(res.initiated))
	}

	// (d) the projection equals the fold, account by account, and so does
	// every node's view of the available balance.
	for id, want := range bal {
		got, err := e.rm.Balance(ctx, id)
		if err != nil {
			t.Fatalf("balance %s: %v", id, err)
		}
		if !got.Found || !got.Available.Amount.Equal(want) {
			t.Errorf("projection: account %s has %s (found %v), fold %s", id, got.Available.Amount, got.Found, want)
		}
		if isCustomer(id) && got.Available.Amount.IsNegative() {
			t.Errorf("projection: account %s below zero: %s", id, got.Available.Amount)
		}
		if !isCustomer(id) {
			continue
		}
		for n, node := range nodes {
			v, err := node.Account(ctx, holderOf(id), id)
			if err != nil {
				t.Fatalf("node %d account %s: %v", n, id, err)
			}
			if !v.Available.Amount.Equal(want) {
				t.Errorf("node %d: account %s available %s, fold %s", n, id, v.Available.Amount, want)
			}
		}
	}
	before, err := e.rm.Digest(ctx)
	if err != nil {
		t.Fatalf("digest: %v", err)
	}
	if err := e.rm.Rebuild(ctx, e.store); err != nil {
		t.Fatalf("rebuild: %v", err)
	}
	after, err := e.rm.Digest(ctx)
	if err != nil {
		t.Fatalf("digest after rebuild: %v", err)
	}
	if before != after {
		t.Errorf("digest changed by rebuild: %s -> %s", before, after)
	}

	// (e) the rule was exercised: refusals for lack of funds happened, and
	// money did move.
	res.mu.Lock()
	defer res.mu.Unlock()
	if res.refusals[domain.CodeInsufficientFunds] == 0 {
		t.Errorf("no insufficient_funds refusal: the test does not exercise the balance rule (refusals %v)", res.refusals)
	}
	if len(res.confirmed) < 50 {
		t.Errorf("only %d payments confirmed", len(res.confirmed))
	}
	t.Logf("%d events, %d payments confirmed, refusals %v, errors %v, %d deposits, %d appends of which %d conflicted and were retried, %s",
		len(all), len(res.confirmed), sortedCounts(res.refusals), sortedCounts(res.errors), len(res.deposits),
		counted.appends.Load(), counted.conflicts.Load(), time.Since(started).Round(time.Millisecond))
}

func isCustomer(id string) bool { return !strings.HasPrefix(id, "clearing-") }

// randomAmount returns a CNY amount between lo and hi cents.
func randomAmount(rng *rand.Rand, lo, hi int) string {
	c := lo + rng.IntN(hi-lo+1)
	return fmt.Sprintf("%d.%02d", c/100, c%100)
}

func sortedCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%d ", k, m[k])
	}
	return strings.TrimSpace(b.String())
}

// tolerated reports whether err is an error the property test accepts:
// only a version conflict that outlasted the retries, which appends
// nothing.
func tolerated(err error) bool { return domain.ErrorCode(err) == domain.CodeVersionConflict }

func deposit(t *testing.T, ctx context.Context, s *ledger.Service, id, amount string, res *propertyResults) {
	// Each bank transfer is credited once: a fresh reference per deposit.
	out, err := s.Deposit(ctx, fundingActor, id, ledger.Idem{}, amount, "CNY", nextBankRef("top up"))
	res.mu.Lock()
	defer res.mu.Unlock()
	if err != nil {
		if !tolerated(err) {
			t.Errorf("deposit into %s: %v", id, err)
		}
		res.errors[domain.ErrorCode(err)]++
		return
	}
	d, ok := out.Decoded[0].(domain.FundsDeposited)
	if len(out.Decoded) != 1 || !ok || out.Refusal != nil {
		t.Errorf("deposit into %s: outcome %+v", id, out)
		return
	}
	res.deposits[d.DepositID] = ack{payee: id, amount: d.Amount.Amount}
}

func pay(t *testing.T, ctx context.Context, initNode, confirmNode *ledger.Service, payer, payee certHolder, amount string, res *propertyResults) {
	out, err := initNode.InitiatePayment(ctx, payer.actor(), payer.id, ledger.Idem{}, paymentReq(payee.id, amount, payer.device))
	if err != nil {
		if !tolerated(err) {
			t.Errorf("initiate %s -> %s %s: %v", payer.id, payee.id, amount, err)
		}
		res.mu.Lock()
		res.errors[domain.ErrorCode(err)]++
		res.mu.Unlock()
		return
	}
	pi, ok := out.Decoded[0].(domain.PaymentInitiated)
	if !ok || len(out.Decoded) != 1 {
		t.Errorf("initiate: outcome %+v", out)
		return
	}
	res.mu.Lock()
	res.initiated[pi.PaymentID] = payer.id
	res.mu.Unlock()

	conf, err := confirmNode.ConfirmPayment(ctx, payer.actor(), payer.id, pi.PaymentID, ledger.Idem{}, payer.device, payer.proofs(pi.Challenge))
	res.mu.Lock()
	defer res.mu.Unlock()
	if err != nil {
		if !tolerated(err) {
			t.Errorf("confirm %s: %v", pi.PaymentID, err)
		}
		res.errors[domain.ErrorCode(err)]++
		res.pending[pi.PaymentID] = true
		return
	}
	if conf.Refusal != nil {
		code := domain.ErrorCode(conf.Refusal)
		res.refusals[code]++
		res.rejected[pi.PaymentID] = code
		if code != domain.CodeInsufficientFunds && code != domain.CodeDailyLimitExceeded {
			t.Errorf("confirm %s refused unexpectedly: %v", pi.PaymentID, conf.Refusal)
		}
		return
	}
	var pc *domain.PaymentConfirmed
	for _, d := range conf.Decoded {
		if v, ok := d.(domain.PaymentConfirmed); ok {
			pc = &v
		}
	}
	if pc == nil || pc.PaymentID != pi.PaymentID || len(conf.Events) != len(conf.Decoded) {
		t.Errorf("confirm %s acknowledged without its PaymentConfirmed: %+v", pi.PaymentID, conf.Decoded)
		return
	}
	for _, ev := range conf.Events {
		if ev.Position == 0 || ev.Stream != domain.AccountStream(payer.id) {
			t.Errorf("confirm %s: event %s at position %d in %s", pi.PaymentID, ev.ID, ev.Position, ev.Stream)
		}
	}
	res.confirmed[pi.PaymentID] = ack{payer: payer.id, payee: payee.id, amount: pc.Amount.Amount}
}

var _ eventstore.Store = (*hookStore)(nil)
