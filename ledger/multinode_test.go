package ledger_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/ledger"
)

// TestOverdraftRaceAcrossNodes: 50 confirmations of one payer's pending
// payments, split across two Services writing one log, that its balance
// affords 10 of. Exactly 10 move money, whichever node confirms them, and
// the payer ends at zero.
func TestOverdraftRaceAcrossNodes(t *testing.T) {
	const payments, affordable = 50, 10
	ctx := context.Background()
	e := newEnv(t, 5)
	e.runProjection(t)
	nodes := []*ledger.Service{e.node(t, nil), e.node(t, nil)}
	payer := openCertAccount(t, ctx, nodes[0], "Payer", 10)
	payee := openCertAccountKind(t, nodes[1], "Payee", domain.KindMerchant, 40)
	if _, err := nodes[0].Deposit(ctx, fundingActor, payer.id, ledger.Idem{}, fmt.Sprintf("%d.00", affordable), "CNY", "initial"); err != nil {
		t.Fatal(err)
	}
	pending := make([]domain.PaymentInitiated, payments)
	for i := range pending {
		out, err := nodes[i%2].InitiatePayment(ctx, payer.actor(), payer.id, ledger.Idem{}, paymentReq(payee.id, "1.00", payer.device))
		if err != nil {
			t.Fatalf("initiate %d: %v", i, err)
		}
		if pending[i], err = pendingOf(out); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	confirmed, refused := 0, 0
	var wg sync.WaitGroup
	for i, pi := range pending {
		node := nodes[i%2]
		wg.Go(func() {
			// A confirmation that lost the race to the other node MaxRetries
			// times is answered version_conflict, and a client retries it.
			for try := 0; try < 5; try++ {
				out, err := node.ConfirmPayment(ctx, payer.actor(), payer.id, pi.PaymentID, ledger.Idem{}, payer.device, payer.proofs(pi.Challenge))
				if domain.ErrorCode(err) == domain.CodeVersionConflict {
					continue
				}
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err != nil:
					t.Errorf("confirm %s: %v", pi.PaymentID, err)
				case out.Refusal == nil:
					confirmed++
				case refusalCode(out.Refusal) == domain.CodeInsufficientFunds:
					refused++
				default:
					t.Errorf("confirm %s refused: %v", pi.PaymentID, out.Refusal)
				}
				return
			}
			t.Errorf("confirm %s: still conflicting after 5 client retries", pi.PaymentID)
		})
	}
	wg.Wait()
	if confirmed != affordable || refused != payments-affordable {
		t.Fatalf("%d confirmed and %d refused, want %d and %d", confirmed, refused, affordable, payments-affordable)
	}
	credited := 0
	for _, ev := range readAll(t, e.store) {
		if _, ok := decode(t, ev).(domain.PaymentConfirmed); ok {
			credited++
		}
	}
	if credited != affordable {
		t.Fatalf("the log holds %d confirmed payments, want %d", credited, affordable)
	}
	for _, n := range nodes {
		v, err := n.Account(ctx, payer.actor(), payer.id)
		if err != nil {
			t.Fatal(err)
		}
		if !v.Available.Amount.IsZero() {
			t.Errorf("payer available %s on a node, want 0", v.Available)
		}
	}
}

// TestPayeeStatusAcrossNodes is TestPayeeStatusUnderConcurrentPayments
// with the payers confirming on one node and the payees suspending,
// reactivating and closing on another: the two Services do not share
// their locks, so only the store's conditions keep a payment from being
// credited to a payee while it is suspended or after it closed.
func TestPayeeStatusAcrossNodes(t *testing.T) {
	e := newEnv(t, 5)
	e.runProjection(t)
	payeeStatusRace(t, e, e.node(t, nil), e.node(t, nil), 6, 30, 20)
}

// TestCloseAcrossNodesCountsLatePayment: a node closes an empty payee
// while another confirms a payment to it, and the payment commits after
// the close read the balance but before the close's append. The close
// must not leave the amount in a closed account: with several writers it
// suspends first, which the payment either precedes (and the close,
// counting it, is refused) or fails against.
func TestCloseAcrossNodesCountsLatePayment(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, nil)
	f.e.runProjection(t)
	hook := &hookStore{ConditionalStore: f.e.store}
	closer := f.e.node(t, func(c *ledger.Config) { c.Store = hook })
	pi := f.initiate(t, f.payer, f.payee, "25.00")
	paid := make(chan struct{})
	reached := holdFirstAppend(hook, domain.AccountStream(f.payee.id), paid, 5*time.Second)
	closed := make(chan error, 1)
	go func() {
		_, err := closer.Close(ctx, f.payee.actor(), f.payee.id, ledger.Idem{}, "moving")
		closed <- err
	}()
	<-reached
	if err := f.confirm(ctx, pi); err != nil {
		t.Fatalf("confirm: %v", err)
	}
	close(paid)
	wantCloseRefused(t, "close racing a payment on another node", <-closed, "25.00")
	v, err := closer.Account(ctx, f.payee.actor(), f.payee.id)
	if err != nil {
		t.Fatal(err)
	}
	if v.Status != domain.StatusActive || v.Available.String() != "25.00" {
		t.Errorf("payee %s holding %s, want active holding 25.00", v.Status, v.Available)
	}
}
