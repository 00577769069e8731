package ledger_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/eventstore/sqlite"
	"github.com/payledger/payledger/ledger"
)

// hookBalances runs onSnapshot before each Snapshot of an account: a
// decision is about to read its balance.
type hookBalances struct {
	ledger.Balances
	onSnapshot func(accountID string)
}

func (h *hookBalances) Snapshot(accountID string) (decimal.Decimal, int64) {
	if h.onSnapshot != nil {
		h.onSnapshot(accountID)
	}
	return h.Balances.Snapshot(accountID)
}

// nthAppendTo runs fn once, before the n-th append to stream through hook.
func nthAppendTo(hook *hookStore, stream string, n int64, fn func()) {
	var seen atomic.Int64
	hook.before = func(s string, _ int64) error {
		if s == stream && seen.Add(1) == n {
			fn()
		}
		return nil
	}
}

// wantNeverClosedHolding walks the log in order and fails if an account
// was closed while it held money, or was credited once closed.
func wantNeverClosedHolding(t *testing.T, e *env) {
	t.Helper()
	held := map[string]decimal.Decimal{}
	closed := map[string]bool{}
	for _, ev := range readAll(t, e.store) {
		acct := strings.TrimPrefix(ev.Stream, "account-")
		d := decode(t, ev)
		if _, ok := d.(domain.AccountClosed); ok {
			closed[acct] = true
			if !held[acct].IsZero() {
				t.Errorf("account %s closed at position %d holding %s", acct, ev.Position, held[acct])
			}
		}
		if m, ok := domain.MovementOf(d); ok {
			if closed[m.Credit] {
				t.Errorf("%s credited %s to closed %s at position %d", ev.Type, m.Amount, m.Credit, ev.Position)
			}
			held[m.Credit] = held[m.Credit].Add(m.Amount.Amount)
			held[m.Debit] = held[m.Debit].Sub(m.Amount.Amount)
		}
	}
}

// TestCloseAcrossNodesSuspendedPayeeReactivated: a node closes a payee the
// holder had suspended (so no close fence is needed), and between the
// close's read of the account and its decision another node reactivates
// the payee and confirms a payment to it, which the stalled projection has
// not counted. The close must not close the account holding that payment.
func TestCloseAcrossNodesSuspendedPayeeReactivated(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, nil)
	stop := f.e.runProjection(t)
	pi := f.initiate(t, f.payer, f.payee, "25.00")
	if _, err := f.svc.Suspend(ctx, f.payee.actor(), f.payee.id, ledger.Idem{}, "away"); err != nil {
		t.Fatal(err)
	}
	bal := &hookBalances{Balances: f.e.rm}
	closer := f.e.node(t, func(c *ledger.Config) { c.Balances = bal })
	var once atomic.Bool
	bal.onSnapshot = func(id string) {
		if id != f.payee.id || !once.CompareAndSwap(false, true) {
			return
		}
		stop() // the projection falls behind: the payment below is not counted yet
		if _, err := f.svc.Reactivate(ctx, f.payee.actor(), f.payee.id, ledger.Idem{}, "back"); err != nil {
			t.Errorf("reactivate on the other node: %v", err)
		}
		if err := f.confirm(ctx, pi); err != nil {
			t.Errorf("confirm on the other node: %v", err)
		}
	}
	_, err := closer.Close(ctx, f.payee.actor(), f.payee.id, ledger.Idem{}, "moving")
	if !once.Load() {
		t.Fatal("the close never read the payee's balance")
	}
	if err == nil {
		t.Errorf("the close succeeded after the payee was reactivated and paid on another node")
	}
	wantNeverClosedHolding(t, f.e)
}

// TestCloseAcrossNodesReactivatedAfterFence: a node suspends an active
// payee as its close's fence; before the close is appended, another node
// reactivates the payee (its holder may) and confirms a payment to it,
// which the stalled projection has not counted. The close must not then
// close the account holding that payment, and must not lift a status it
// did not set.
func TestCloseAcrossNodesReactivatedAfterFence(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, nil)
	stop := f.e.runProjection(t)
	pi := f.initiate(t, f.payer, f.payee, "25.00")
	hook := &hookStore{ConditionalStore: f.e.store}
	closer := f.e.node(t, func(c *ledger.Config) { c.Store = hook })
	ran := false
	// The first append is the fence, the second the close.
	nthAppendTo(hook, domain.AccountStream(f.payee.id), 2, func() {
		ran = true
		stop()
		if _, err := f.svc.Reactivate(ctx, f.payee.actor(), f.payee.id, ledger.Idem{}, "not so fast"); err != nil {
			t.Errorf("reactivate on the other node: %v", err)
		}
		if err := f.confirm(ctx, pi); err != nil {
			t.Errorf("confirm on the other node: %v", err)
		}
	})
	_, err := closer.Close(ctx, f.payee.actor(), f.payee.id, ledger.Idem{}, "moving")
	if !ran {
		t.Fatal("the close never appended to the payee's stream twice")
	}
	if err == nil {
		t.Errorf("the close succeeded after the payee was reactivated and paid on another node")
	}
	wantNeverClosedHolding(t, f.e)
	v, err := f.svc.Account(ctx, f.payee.actor(), f.payee.id)
	if err != nil {
		t.Fatal(err)
	}
	if v.Status != domain.StatusActive {
		t.Errorf("payee %s, want active as the other node left it", v.Status)
	}
}

// TestSuspendDuringCloseFenceAcrossNodes: while a close on one node holds
// its fence (a suspension) on an account it will not close (money in it),
// a suspension on another node, by an operator for risk or by the holder,
// meets an account that is already suspended. The close then lifts its
// fence; the other node's suspension must not be lost while its requester
// was told the account is suspended: it is either recorded, or refused
// with an error that says to retry.
func TestSuspendDuringCloseFenceAcrossNodes(t *testing.T) {
	operator := func(*fixture) ledger.Actor { return operatorActor }
	holder := func(f *fixture) ledger.Actor { return f.payee.actor() }
	for _, tc := range []struct {
		name         string
		by, suspends func(f *fixture) ledger.Actor
	}{
		{"operator", operator, operator},
		{"holder", holder, holder},
		{"operator during the holder's close", holder, operator},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t, nil)
			f.e.runProjection(t)
			if _, err := f.svc.Deposit(ctx, fundingActor, f.payee.id, ledger.Idem{}, "10.00", "CNY", "float"); err != nil {
				t.Fatal(err)
			}
			by := tc.by(f)
			hook := &hookStore{ConditionalStore: f.e.store}
			closer := f.e.node(t, func(c *ledger.Config) { c.Store = hook })
			var suspendErr error
			ran := false
			// The first append is the fence; the close is refused (10.00
			// left) and appends nothing; the second lifts the fence.
			nthAppendTo(hook, domain.AccountStream(f.payee.id), 2, func() {
				ran = true
				_, suspendErr = f.svc.Suspend(ctx, tc.suspends(f), f.payee.id, ledger.Idem{}, "risk")
			})
			_, err := closer.Close(ctx, by, f.payee.id, ledger.Idem{}, "moving")
			if !ran {
				t.Fatalf("the close appended to the payee's stream once (close: %v)", err)
			}
			if c := domain.ErrorCode(err); c != domain.CodeConflict && c != domain.CodeForbidden {
				t.Fatalf("close with 10.00 left: %v, want it refused", err)
			}
			switch {
			case suspendErr == nil: // recorded
			case domain.ErrorCode(suspendErr) == domain.CodeConflict:
				if _, err := f.svc.Suspend(ctx, tc.suspends(f), f.payee.id, ledger.Idem{}, "risk"); err != nil {
					t.Fatalf("the suspension retried once the close was done: %v", err)
				}
			default:
				t.Logf("the suspension during the close's fence: %v", suspendErr)
			}
			v, err := f.svc.Account(ctx, by, f.payee.id)
			if err != nil {
				t.Fatal(err)
			}
			if v.Status != domain.StatusSuspended {
				t.Errorf("the account is %s after a suspension during a refused close was answered %v", v.Status, suspendErr)
			}
		})
	}
}

// TestConfirmOnTwoNodesAtOnce: a payment is confirmed on two nodes at
// once, with one Idempotency-Key (a client's retry on another node while
// the first try runs) or with none (two clients, or a retry without a
// key). The payment moves money once; with the key both answers carry the
// same events, without it the second is refused.
func TestConfirmOnTwoNodesAtOnce(t *testing.T) {
	for _, withKey := range []bool{true, false} {
		t.Run(fmt.Sprintf("key %v", withKey), func(t *testing.T) {
			const rounds = 20
			ctx := context.Background()
			f := newFixture(t, nil)
			f.e.runProjection(t)
			nodes := []*ledger.Service{f.svc, f.e.node(t, nil)}
			for r := range rounds {
				pi := f.initiate(t, f.payer, f.payee, "1.00")
				idem := ledger.Idem{}
				if withKey {
					idem = idemFor(fmt.Sprintf("confirm-%d", r), pi.PaymentID)
				}
				outs := make([]ledger.Outcome, 2)
				errs := make([]error, 2)
				var wg sync.WaitGroup
				for i, n := range nodes {
					wg.Go(func() {
						outs[i], errs[i] = n.ConfirmPayment(ctx, f.payer.actor(), f.payer.id, pi.PaymentID, idem, f.payer.device, f.payer.proofs(pi.Challenge))
					})
				}
				wg.Wait()
				ok := 0
				for i := range nodes {
					if errs[i] == nil && outs[i].Refusal == nil {
						ok++
					}
				}
				switch {
				case withKey && ok != 2:
					t.Fatalf("round %d: %v / %v and %v / %v, want both answered", r, errs[0], outs[0].Refusal, errs[1], outs[1].Refusal)
				case withKey && (fmt.Sprint(eventIDs(outs[0])) != fmt.Sprint(eventIDs(outs[1])) || outs[0].Replayed == outs[1].Replayed):
					t.Fatalf("round %d: answers %v (replayed %v) and %v (replayed %v), want one first answer and its replay",
						r, eventIDs(outs[0]), outs[0].Replayed, eventIDs(outs[1]), outs[1].Replayed)
				case !withKey && ok != 1:
					t.Fatalf("round %d: %d confirmations succeeded (%v / %v, %v / %v), want 1", r, ok, errs[0], outs[0].Refusal, errs[1], outs[1].Refusal)
				}
			}
			confirmed := 0
			for _, ev := range readAll(t, f.e.store) {
				if _, ok := decode(t, ev).(domain.PaymentConfirmed); ok {
					confirmed++
				}
			}
			if confirmed != rounds {
				t.Fatalf("%d payments confirmed in the log, want %d", confirmed, rounds)
			}
		})
	}
}

// lossToCompensate opens a holder who lost exactly their whole balance in
// a payment (300.00 and its 0.30 fee) and reported it: an advance of
// 300.00 is due from a reserve that can pay it.
func lossToCompensate(t *testing.T, f *reserveFixture) (lossHolder, string) {
	t.Helper()
	h := openLossHolder(t, f.svc, f.provider, "Closing Loser", 51)
	fund(t, f.svc, h.id, "300.30")
	pc, _ := h.pay(t, f.svc, f.payee.id, "300.00", domain.LevelTwoFactor)
	v, err := f.svc.ReportLossCase(context.Background(), h.actor(), h.id, ledger.Idem{}, ledger.LossRequest{PaymentIDs: []string{pc.PaymentID}})
	if err != nil || v.Advance != "due" {
		t.Fatalf("report: %+v, %v", v, err)
	}
	f.topUp(t, "1000.00")
	return h, v.CaseID
}

// TestCloseRacingCompensationAcrossNodes: a holder's empty account is
// closed on one node while another pays the holder's loss compensation
// into it, between the close's decision and its append. Compensation is
// credited from the reserve's stream, which no fence of the holder's
// stops: the account must not end closed holding it.
func TestCloseRacingCompensationAcrossNodes(t *testing.T) {
	ctx := context.Background()
	f := newReserveFixture(t, nil)
	h, caseID := lossToCompensate(t, f)
	hook := &hookStore{ConditionalStore: f.e.store}
	closer := f.e.node(t, func(c *ledger.Config) { c.Store = hook })
	ran := false
	// The first append is the fence, the second the close.
	nthAppendTo(hook, domain.AccountStream(h.id), 2, func() {
		ran = true
		if v, err := f.svc.SettleLoss(ctx, financeActor, caseID, ledger.Idem{}); err != nil || v.Compensated.String() != "300.00" {
			t.Errorf("settle on the other node: %+v, %v", v, err)
		}
	})
	_, err := closer.Close(ctx, h.actor(), h.id, ledger.Idem{}, "moving")
	if !ran {
		t.Fatalf("the close never appended twice (%v)", err)
	}
	t.Logf("close: %v", err)
	wantNeverClosedHolding(t, f.e)
}

// TestCloseRacingCompensation is the same race on the log's sole writer:
// the compensation read the account open, and the close comes before its
// append. The compensation must not be credited to the closed account.
func TestCloseRacingCompensation(t *testing.T) {
	ctx := context.Background()
	hook := &hookStore{}
	f := newReserveFixture(t, func(c *ledger.Config) {
		hook.ConditionalStore = c.Store.(*sqlite.Store)
		c.Store, c.SoleWriter = hook, true
	})
	h, caseID := lossToCompensate(t, f)
	ran := false
	nthAppendTo(hook, domain.ReserveStream(domain.CNY), 1, func() {
		ran = true
		if _, err := f.svc.Close(ctx, h.actor(), h.id, ledger.Idem{}, "moving"); err != nil {
			t.Logf("close: %v", err)
		}
	})
	v, err := f.svc.SettleLoss(ctx, financeActor, caseID, ledger.Idem{})
	if !ran {
		t.Fatal("the settlement never appended to the reserve")
	}
	if err != nil || v.Compensated.String() != "300.00" {
		t.Fatalf("settle: %+v, %v", v, err)
	}
	wantNeverClosedHolding(t, f.e)
}
