package ledger_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopspring/decimal"

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
	const (
		numPayers = 6
		numPayees = 3
		payments  = 30 // per payer
		toggles   = 20 // per payee
	)
	ctx := context.Background()
	e := newEnv(t, 5)
	e.runProjection(t)
	payNode, payeeNode := e.node(t, nil), e.node(t, nil)
	payers := make([]certHolder, numPayers)
	for i := range payers {
		payers[i] = openCertAccount(t, ctx, payNode, fmt.Sprintf("payer-%d", i), byte(10+i))
		if _, err := payNode.Deposit(ctx, fundingActor, payers[i].id, ledger.Idem{}, "500.00", "CNY", "initial"); err != nil {
			t.Fatal(err)
		}
	}
	payees := make([]string, numPayees)
	for i := range payees {
		payees[i] = openCertAccountKind(t, payeeNode, fmt.Sprintf("Payee %d", i), domain.KindMerchant, byte(40+i)).id
	}
	credited := make(chan struct{})
	var firstCredit sync.Once
	var wg sync.WaitGroup
	for i, p := range payers {
		wg.Go(func() {
			for n := range payments {
				payee := payees[(i+n)%numPayees]
				out, err := payNode.InitiatePayment(ctx, p.actor(), p.id, ledger.Idem{}, paymentReq(payee, "1.00", p.device))
				if err != nil {
					continue // the payee is suspended or closed: refused at once
				}
				pi, err := pendingOf(out)
				if err != nil {
					t.Error(err)
					return
				}
				out, err = payNode.ConfirmPayment(ctx, p.actor(), p.id, pi.PaymentID, ledger.Idem{}, p.device, p.proofs(pi.Challenge))
				switch {
				case domain.ErrorCode(err) == domain.CodeVersionConflict:
					// the payee moved MaxRetries times in a row: answered, nothing paid
				case err != nil:
					t.Errorf("confirm: %v", err)
				case out.Refusal == nil:
					firstCredit.Do(func() { close(credited) })
				}
			}
		})
	}
	for i, id := range payees {
		wg.Go(func() {
			select {
			case <-credited:
			case <-time.After(10 * time.Second): // bounded: the check below reports a run without credits
			}
			for n := range toggles {
				if _, err := payeeNode.Suspend(ctx, holderOf(id), id, ledger.Idem{}, "pause"); err != nil {
					return // closed
				}
				if _, err := payeeNode.Reactivate(ctx, holderOf(id), id, ledger.Idem{}, "resume"); err != nil {
					t.Errorf("reactivate %s: %v", id, err)
					return
				}
				if i == 0 || n%10 == 9 {
					_, _ = payeeNode.Close(ctx, holderOf(id), id, ledger.Idem{}, "done") // refused unless empty
				}
			}
		})
	}
	wg.Wait()

	status := map[string]string{}
	held := map[string]decimal.Decimal{}
	credits, suspensions := 0, 0
	for _, ev := range readAll(t, e.store) {
		acct := strings.TrimPrefix(ev.Stream, "account-")
		switch d := decode(t, ev).(type) {
		case domain.ServiceSuspended:
			status[acct] = domain.StatusSuspended
			suspensions++
		case domain.ServiceReactivated:
			status[acct] = domain.StatusActive
		case domain.AccountClosed:
			status[acct] = domain.StatusClosed
			if !held[acct].IsZero() {
				t.Errorf("payee %s closed at position %d holding %s", acct, ev.Position, held[acct])
			}
		case domain.PaymentConfirmed:
			if st := status[d.CreditAccount]; st == domain.StatusSuspended || st == domain.StatusClosed {
				t.Errorf("payment %s credited to %s at position %d while %s", d.PaymentID, d.CreditAccount, ev.Position, st)
			}
			held[d.CreditAccount] = held[d.CreditAccount].Add(d.Amount.Amount)
			credits++
		}
	}
	if credits == 0 || suspensions == 0 {
		t.Fatalf("%d credits, %d suspensions: the run exercised too little", credits, suspensions)
	}
	t.Logf("%d payments credited, %d suspensions", credits, suspensions)
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
