package ledger_test

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/eventstore"
	"github.com/payledger/payledger/ledger"
	"github.com/shopspring/decimal"
)

// fixture is one node over a fresh store with a funded payer and a payee,
// both holding a certificate factor.
type fixture struct {
	e            *env
	svc          *ledger.Service
	payer, payee certHolder
}

const payerName = "Payer Person"

func newFixture(t *testing.T, mod func(*ledger.Config)) *fixture {
	t.Helper()
	ctx := context.Background()
	e := newEnv(t, 9)
	f := &fixture{e: e, svc: e.node(t, mod)}
	f.payer = openCertAccount(t, ctx, f.svc, payerName, 1)
	f.payee = openCertAccount(t, ctx, f.svc, "Payee Person", 2)
	if _, err := f.svc.Deposit(ctx, fundingActor, f.payer.id, ledger.Idem{}, "500.00", "CNY", "initial"); err != nil {
		t.Fatalf("deposit: %v", err)
	}
	return f
}

// initiate starts a payment from payer to payee without an idempotency key.
func (f *fixture) initiate(t *testing.T, payer, payee certHolder, amount string) domain.PaymentInitiated {
	t.Helper()
	out, err := f.svc.InitiatePayment(context.Background(), payer.actor(), payer.id, ledger.Idem{}, paymentReq(payee.id, amount, payer.device))
	if err != nil {
		t.Fatalf("initiate: %v", err)
	}
	return initiated(t, out)
}

func idemFor(key, body string) ledger.Idem {
	sum := sha256.Sum256([]byte("POST\x00" + body))
	return ledger.Idem{Key: key, BodyHash: hex.EncodeToString(sum[:16])}
}

func eventIDs(out ledger.Outcome) []string {
	ids := make([]string, len(out.Events))
	for i, e := range out.Events {
		ids[i] = fmt.Sprintf("%s@%d", e.ID, e.Position)
	}
	return ids
}

// command runs one command on the given node with the given key.
type command func(s *ledger.Service, idem ledger.Idem) (ledger.Outcome, error)

func TestIdempotentReplay(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name    string
		prepare func(t *testing.T, f *fixture) command
		// refusal is the code of the recorded refusal, "" for success.
		refusal string
		// nodeLocal: only the node that answered first replays it. An
		// account opening's id is random and its key is remembered by the
		// node (openKeys): on another node the same key opens another
		// account (see TestOpenAccountKeyIsPerNode).
		nodeLocal bool
	}{
		{name: "open account", nodeLocal: true, prepare: func(t *testing.T, f *fixture) command {
			return func(s *ledger.Service, idem ledger.Idem) (ledger.Outcome, error) {
				return s.OpenAccount(ctx, operatorActor, idem, ledger.OpenRequest{HolderName: "New Holder", Currency: "CNY",
					Kind: domain.KindPersonal, Factor: ledger.EnrollRequest{Method: domain.MethodTOTP, DeviceID: "token-new"},
					IdentityCheck: testIdentityCheck})
			}
		}},
		{name: "public open account", nodeLocal: true, prepare: func(t *testing.T, f *fixture) command {
			return func(s *ledger.Service, idem ledger.Idem) (ledger.Outcome, error) {
				return s.OpenAccount(ctx, publicActor, idem, ledger.OpenRequest{HolderName: "Self Service", Currency: "CNY",
					Kind: domain.KindPersonal, Factor: ledger.EnrollRequest{Method: domain.MethodPassword, Password: testPassword}})
			}
		}},
		{name: "deposit", prepare: func(t *testing.T, f *fixture) command {
			return func(s *ledger.Service, idem ledger.Idem) (ledger.Outcome, error) {
				return s.Deposit(ctx, fundingActor, f.payer.id, idem, "12.34", "CNY", "salary")
			}
		}},
		{name: "enrol totp factor", prepare: func(t *testing.T, f *fixture) command {
			return func(s *ledger.Service, idem ledger.Idem) (ledger.Outcome, error) {
				return s.EnrollFactor(ctx, operatorActor, f.payer.id, idem, ledger.EnrollRequest{Method: domain.MethodTOTP, DeviceID: "token-1",
					IdentityCheck: testIdentityCheck})
			}
		}},
		{name: "holder enrols a totp factor with a step-up", prepare: func(t *testing.T, f *fixture) command {
			auth := f.payer.stepUp(t, f.svc, domain.ChangeKindEnrolment, domain.MethodTOTP)
			return func(s *ledger.Service, idem ledger.Idem) (ledger.Outcome, error) {
				return s.EnrollFactor(ctx, f.payer.actor(), f.payer.id, idem, ledger.EnrollRequest{Method: domain.MethodTOTP, DeviceID: "token-1", Auth: auth})
			}
		}},
		{name: "adjust limit", prepare: func(t *testing.T, f *fixture) command {
			return func(s *ledger.Service, idem ledger.Idem) (ledger.Outcome, error) {
				return s.AdjustLimit(ctx, f.payer.actor(), f.payer.id, idem, "20000.00", domain.Authorisation{})
			}
		}},
		{name: "bind bank account", prepare: func(t *testing.T, f *fixture) command {
			pw := enrolPassword(t, f.svc, f.payer.id)
			auth := f.payer.stepUp(t, f.svc, domain.ChangeKindBankAccount, "6222020200112233445", byPassword(pw).Proofs...)
			return func(s *ledger.Service, idem ledger.Idem) (ledger.Outcome, error) {
				return s.BindBankAccount(ctx, f.payer.actor(), f.payer.id, idem, "6222020200112233445", payerName, auth)
			}
		}},
		{name: "initiate payment", prepare: func(t *testing.T, f *fixture) command {
			return func(s *ledger.Service, idem ledger.Idem) (ledger.Outcome, error) {
				return s.InitiatePayment(ctx, f.payer.actor(), f.payer.id, idem, paymentReq(f.payee.id, "10.00", f.payer.device))
			}
		}},
		{name: "confirm payment", prepare: func(t *testing.T, f *fixture) command {
			pi := f.initiate(t, f.payer, f.payee, "25.00")
			return func(s *ledger.Service, idem ledger.Idem) (ledger.Outcome, error) {
				return s.ConfirmPayment(ctx, f.payer.actor(), f.payer.id, pi.PaymentID, idem, f.payer.device, f.payer.proofs(pi.Challenge))
			}
		}},
		{name: "refused payment records its rejection", refusal: domain.CodeInsufficientFunds, prepare: func(t *testing.T, f *fixture) command {
			pi := f.initiate(t, f.payee, f.payer, "400.00") // the payee has nothing
			return func(s *ledger.Service, idem ledger.Idem) (ledger.Outcome, error) {
				return s.ConfirmPayment(ctx, f.payee.actor(), f.payee.id, pi.PaymentID, idem, f.payee.device, f.payee.proofs(pi.Challenge))
			}
		}},
		{name: "refused withdrawal records its rejection", refusal: domain.CodeInsufficientFunds, prepare: func(t *testing.T, f *fixture) command {
			pw := enrolPassword(t, f.svc, f.payer.id)
			auth := f.payer.stepUp(t, f.svc, domain.ChangeKindBankAccount, "6222020200112233445", byPassword(pw).Proofs...)
			if _, err := f.svc.BindBankAccount(ctx, f.payer.actor(), f.payer.id, ledger.Idem{}, "6222020200112233445", payerName, auth); err != nil {
				t.Fatalf("bind: %v", err)
			}
			return func(s *ledger.Service, idem ledger.Idem) (ledger.Outcome, error) {
				return s.Withdraw(ctx, f.payer.actor(), f.payer.id, idem, "500.01", "CNY", "laptop", []domain.Proof{{FactorID: pw, Password: testPassword}})
			}
		}},
		{name: "payment to a suspended payee records its rejection", refusal: domain.CodePayeeUnavailable, prepare: func(t *testing.T, f *fixture) command {
			pi := f.initiate(t, f.payer, f.payee, "25.00")
			if _, err := f.svc.Suspend(ctx, f.payee.actor(), f.payee.id, ledger.Idem{}, "holiday"); err != nil {
				t.Fatalf("suspend payee: %v", err)
			}
			return func(s *ledger.Service, idem ledger.Idem) (ledger.Outcome, error) {
				return s.ConfirmPayment(ctx, f.payer.actor(), f.payer.id, pi.PaymentID, idem, f.payer.device, f.payer.proofs(pi.Challenge))
			}
		}},
		{name: "change identity", prepare: func(t *testing.T, f *fixture) command {
			// An identity change is a protected change: two categories
			// (the password and the certificate), no longer one.
			pw := enrolPassword(t, f.svc, f.payer.id)
			auth := f.payer.stepUp(t, f.svc, domain.ChangeKindIdentity, "Payer P. Person", byPassword(pw).Proofs...)
			return func(s *ledger.Service, idem ledger.Idem) (ledger.Outcome, error) {
				return s.ChangeIdentity(ctx, f.payer.actor(), f.payer.id, idem, "Payer P. Person", auth)
			}
		}},
		{name: "identity change with one category records its rejection", refusal: domain.CodeInsufficientVerification, prepare: func(t *testing.T, f *fixture) command {
			pw := enrolPassword(t, f.svc, f.payer.id)
			return func(s *ledger.Service, idem ledger.Idem) (ledger.Outcome, error) {
				return s.ChangeIdentity(ctx, f.payer.actor(), f.payer.id, idem, "Payer P. Person", byPassword(pw))
			}
		}},
		{name: "change phone", prepare: func(t *testing.T, f *fixture) command {
			// Password + a TOTP delivered to token-1, sent from the
			// registered laptop that signs it: two categories (R6).
			pw := enrolPassword(t, f.svc, f.payer.id)
			otp := enrolTOTP(t, f, "token-1")
			laptop := registerDevice(t, f.svc, f.e.clock.Now, f.payer.id, "laptop", 7)
			auth := withProofs(byPassword(pw), otp.proof(t, f))
			auth.Device = laptop.sign(f.payer.id, domain.ChangeKindPhone, "+8613800138000")
			return func(s *ledger.Service, idem ledger.Idem) (ledger.Outcome, error) {
				return s.ChangePhone(ctx, f.payer.actor(), f.payer.id, idem, "+8613800138000", auth)
			}
		}},
		{name: "refused phone change records its rejection", refusal: domain.CodeInsufficientVerification, prepare: func(t *testing.T, f *fixture) command {
			pw := enrolPassword(t, f.svc, f.payer.id)
			return func(s *ledger.Service, idem ledger.Idem) (ledger.Outcome, error) {
				return s.ChangePhone(ctx, f.payer.actor(), f.payer.id, idem, "+8613800138000", byPassword(pw))
			}
		}},
		{name: "phone change with a wrong password records its failure", refusal: domain.CodeProofInvalid, prepare: func(t *testing.T, f *fixture) command {
			pw := enrolPassword(t, f.svc, f.payer.id)
			otp := enrolTOTP(t, f, "token-1")
			return func(s *ledger.Service, idem ledger.Idem) (ledger.Outcome, error) {
				auth := withProofs(byPassword(pw), otp.proof(t, f))
				auth.Proofs[0].Password = "wrong battery"
				return s.ChangePhone(ctx, f.payer.actor(), f.payer.id, idem, "+8613800138000", auth)
			}
		}},
		{name: "reset totp with password and certificate", prepare: func(t *testing.T, f *fixture) command {
			pw := enrolPassword(t, f.svc, f.payer.id)
			otp := enrolTOTP(t, f, "token-1")
			auth := f.payer.stepUp(t, f.svc, domain.ChangeKindCredentialReset, otp.id, byPassword(pw).Proofs...)
			return func(s *ledger.Service, idem ledger.Idem) (ledger.Outcome, error) {
				return s.ResetCredential(ctx, f.payer.actor(), f.payer.id, idem, ledger.ResetRequest{FactorID: otp.id, Auth: auth})
			}
		}},
		{name: "self reset is refused without a record", refusal: domain.CodeFactorNotIndependent, prepare: func(t *testing.T, f *fixture) command {
			pw := enrolPassword(t, f.svc, f.payer.id)
			otp := enrolTOTP(t, f, "token-1")
			return func(s *ledger.Service, idem ledger.Idem) (ledger.Outcome, error) {
				return s.ResetCredential(ctx, f.payer.actor(), f.payer.id, idem, ledger.ResetRequest{FactorID: pw, Password: "a new long password",
					Auth: withProofs(byPassword(pw), otp.proof(t, f))})
			}
		}},
		{name: "wrong password login records its failure", refusal: domain.CodeAuthFailed, prepare: func(t *testing.T, f *fixture) command {
			enr, err := f.svc.EnrollFactor(ctx, operatorActor, f.payer.id, ledger.Idem{}, ledger.EnrollRequest{Method: domain.MethodPassword,
				Password: "correct horse", IdentityCheck: testIdentityCheck})
			if err != nil {
				t.Fatalf("enrol password: %v", err)
			}
			fid := enr.Decoded[0].(domain.FactorEnrolled).FactorID
			return func(s *ledger.Service, idem ledger.Idem) (ledger.Outcome, error) {
				return s.Login(ctx, publicActor, f.payer.id, idem, "laptop", []domain.Proof{{FactorID: fid, Password: "wrong battery"}})
			}
		}},
		{name: "logout", prepare: func(t *testing.T, f *fixture) command {
			// A replay of a logout: Logout takes no key itself, so the
			// command runs through Execute as the session.
			pw := enrolPassword(t, f.svc, f.payer.id)
			login, err := f.svc.Login(ctx, publicActor, f.payer.id, ledger.Idem{}, "laptop", byPassword(pw).Proofs)
			if err != nil || login.Refusal != nil {
				t.Fatalf("login: %v / %v", err, login.Refusal)
			}
			sid := login.Decoded[0].(domain.LoginSucceeded).SessionID
			by := ledger.Actor{AccountID: f.payer.id, SessionID: sid}
			return func(s *ledger.Service, idem ledger.Idem) (ledger.Outcome, error) {
				return s.Execute(ctx, by, ledger.OpLogout, f.payer.id, idem, func(*domain.Account, time.Time, domain.Balance) (domain.Command, error) {
					return domain.Logout{SessionID: sid, Reason: "logged out"}, nil
				})
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, nil)
			run := tc.prepare(t, f)
			idem := idemFor("key-"+tc.name, tc.name)

			first, err := run(f.svc, idem)
			if tc.refusal == domain.CodeFactorNotIndependent && err != nil {
				// Refused before any proof was checked: nothing recorded, so
				// nothing to replay; a retry is decided again, identically.
				head := f.e.head(t)
				again, err2 := run(f.svc, idem)
				if domain.ErrorCode(err) != tc.refusal || domain.ErrorCode(err2) != tc.refusal || again.Replayed || err.Error() != err2.Error() {
					t.Fatalf("first %v, retry %v", err, err2)
				}
				if h := f.e.head(t); h != head {
					t.Fatalf("the refusal appended: head %d -> %d", head, h)
				}
				return
			}
			if err != nil {
				t.Fatalf("first: %v", err)
			}
			if got := refusalCode(first.Refusal); got != tc.refusal {
				t.Fatalf("first: refusal %q (%v), want %q", got, first.Refusal, tc.refusal)
			}
			if first.Replayed || len(first.Events) == 0 {
				t.Fatalf("first: replayed %v with %d events", first.Replayed, len(first.Events))
			}
			head := f.e.head(t)

			// The same request on the same node, and on another node whose
			// cache has never seen the account, replays the first outcome.
			other := f.e.node(t, nil)
			nodes := []struct {
				name string
				svc  *ledger.Service
			}{{"same node", f.svc}, {"other node", other}}
			if tc.nodeLocal {
				nodes = nodes[:1]
			}
			for _, n := range nodes {
				again, err := run(n.svc, idem)
				if err != nil {
					t.Fatalf("%s: replay: %v", n.name, err)
				}
				if !again.Replayed {
					t.Errorf("%s: Replayed = false", n.name)
				}
				if again.AccountID != first.AccountID {
					t.Errorf("%s: account %s, first %s", n.name, again.AccountID, first.AccountID)
				}
				if got, want := eventIDs(again), eventIDs(first); strings.Join(got, ",") != strings.Join(want, ",") {
					t.Errorf("%s: events %v, first %v", n.name, got, want)
				}
				if got, want := jsonOf(t, again.Decoded), jsonOf(t, first.Decoded); got != want {
					t.Errorf("%s: decoded events differ:\n got %s\nwant %s", n.name, got, want)
				}
				if got, want := refusalCode(again.Refusal), refusalCode(first.Refusal); got != want {
					t.Errorf("%s: refusal %q, first %q", n.name, got, want)
				}
				if got, want := jsonOf(t, domain.ErrorDetails(again.Refusal)), jsonOf(t, domain.ErrorDetails(first.Refusal)); got != want {
					t.Errorf("%s: refusal details %s, first %s", n.name, got, want)
				}
				if h := f.e.head(t); h != head {
					t.Errorf("%s: replay appended: head %d -> %d", n.name, head, h)
				}
			}

			// The same key with another request is refused, on both nodes
			// (for an opening, on the node that remembers the key).
			refusing := []*ledger.Service{f.svc, other}
			if tc.nodeLocal {
				refusing = refusing[:1]
			}
			for _, s := range refusing {
				_, err := run(s, idemFor(idem.Key, tc.name+" but different"))
				if code := domain.ErrorCode(err); code != domain.CodeIdempotencyReused {
					t.Errorf("same key, other body: %v, want %s", err, domain.CodeIdempotencyReused)
				}
			}
			if h := f.e.head(t); h != head {
				t.Errorf("reused key appended: head %d -> %d", head, h)
			}
		})
	}
}

func refusalCode(err error) string {
	if err == nil {
		return ""
	}
	return domain.ErrorCode(err)
}

// TestOpenAccountWithSameKeyConcurrently: concurrent retries of an
// opening with one Idempotency-Key on one node open one account, which
// every retry reaches (one appends, the others replay it). On two nodes
// the key is not shared (account ids are random and each node remembers
// its own keys): each node opens its own account, once, however many
// retries reach it.
func TestOpenAccountWithSameKeyConcurrently(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 3)
	nodes := []*ledger.Service{e.node(t, nil), e.node(t, nil)}
	const perNode = 3
	for i := range 10 {
		idem := idemFor(fmt.Sprintf("open-%d", i), "open")
		var wg sync.WaitGroup
		outs := make([]ledger.Outcome, len(nodes)*perNode)
		errs := make([]error, len(nodes)*perNode)
		for k := range outs {
			s := nodes[k%len(nodes)]
			wg.Add(1)
			go func() {
				defer wg.Done()
				outs[k], errs[k] = s.OpenAccount(ctx, operatorActor, idem, ledger.OpenRequest{HolderName: "Twin Holder", Currency: "CNY",
					Kind: domain.KindPersonal, Factor: ledger.EnrollRequest{Method: domain.MethodBiometric, DeviceID: "phone"},
					IdentityCheck: testIdentityCheck})
			}()
		}
		wg.Wait()
		for k, err := range errs {
			if err != nil {
				t.Fatalf("round %d call %d: %v", i, k, err)
			}
		}
		for n := range nodes {
			first := outs[n]
			fresh := 0
			for k := n; k < len(outs); k += len(nodes) {
				if !outs[k].Replayed {
					fresh++
				}
				if outs[k].AccountID != first.AccountID || eventIDs(outs[k])[0] != eventIDs(first)[0] {
					t.Fatalf("round %d node %d: retries opened %s (%v) and %s (%v)", i, n, outs[k].AccountID, eventIDs(outs[k]),
						first.AccountID, eventIDs(first))
				}
			}
			if fresh != 1 {
				t.Errorf("round %d node %d: %d of %d retries were not replays, want 1", i, n, fresh, perNode)
			}
			if got := len(readStream(t, e.store, first.AccountID)); got != 2 {
				t.Fatalf("round %d node %d: stream has %d events, want 2", i, n, got)
			}
		}
		if outs[0].AccountID == outs[1].AccountID {
			t.Fatalf("round %d: two nodes derived the same account %s from the key", i, outs[0].AccountID)
		}
	}
}

func TestVersionConflictFromAnotherNodeIsRetried(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 4)
	nodeA := e.node(t, nil)
	hs := &hookStore{ConditionalStore: e.store}
	nodeB := e.node(t, func(c *ledger.Config) { c.Store = hs })
	h := openCertAccount(t, ctx, nodeA, "Contended Holder", 5)
	if _, err := nodeB.Account(ctx, h.actor(), h.id); err != nil { // warm B's cache
		t.Fatal(err)
	}

	// While B decides, A appends to the same stream: B's append conflicts,
	// B reloads, decides again and lands after A.
	var interfered atomic.Bool
	var builds atomic.Int64
	hs.before = func(stream string, expected int64) error {
		if interfered.CompareAndSwap(false, true) {
			if _, err := nodeA.Deposit(ctx, fundingActor, h.id, ledger.Idem{}, "7.00", "CNY", "from node A"); err != nil {
				t.Errorf("node A deposit: %v", err)
			}
		}
		return nil
	}
	out, err := nodeB.Execute(ctx, fundingActor, ledger.OpDeposit, h.id, ledger.Idem{}, func(a *domain.Account, now time.Time, bal domain.Balance) (domain.Command, error) {
		builds.Add(1)
		return domain.Deposit{DepositID: "dep-from-b", Amount: "3.00", Currency: "CNY", Reference: "from node B",
			Staff: domain.Staff{StaffKey: fundingActor.KeyID}}, nil
	})
	if err != nil {
		t.Fatalf("node B: %v", err)
	}
	if hs.conflicts.Load() != 1 || hs.appends.Load() != 2 || builds.Load() != 2 {
		t.Errorf("conflicts %d, appends %d, builds %d; want 1, 2, 2", hs.conflicts.Load(), hs.appends.Load(), builds.Load())
	}
	evs := readStream(t, e.store, h.id)
	var deposits []string
	for i, ev := range evs {
		if ev.Version != int64(i+1) {
			t.Fatalf("stream versions not contiguous: index %d has version %d", i, ev.Version)
		}
		if d, ok := decode(t, ev).(domain.FundsDeposited); ok {
			deposits = append(deposits, d.Amount.Amount.String())
		}
	}
	if strings.Join(deposits, ",") != "7,3" {
		t.Errorf("deposits in stream order: %v, want [7 3]", deposits)
	}
	if last := evs[len(evs)-1]; out.Events[0].ID != last.ID || out.Events[0].Version != last.Version {
		t.Errorf("B's outcome %s v%d, stream ends with %s v%d", out.Events[0].ID, out.Events[0].Version, last.ID, last.Version)
	}
	for _, s := range []*ledger.Service{nodeA, nodeB} {
		v, err := s.Account(ctx, h.actor(), h.id)
		if err != nil {
			t.Fatal(err)
		}
		if !v.Available.Amount.Equal(decimal.RequireFromString("10")) || v.Version != int64(len(evs)) {
			t.Errorf("view: available %s version %d, want 10 and %d", v.Available.Amount, v.Version, len(evs))
		}
	}
}

// TestStaleNodeSeesOtherNodesWrites covers the write path across nodes
// behind a load balancer: what one node appended is visible to the next
// command on another node even when that command records nothing.
func TestStaleNodeSeesOtherNodesWrites(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, nil)
	other := f.e.node(t, nil)
	// Warm the other node's cache for both accounts and for an account id
	// that does not exist yet.
	for _, id := range []string{f.payer.id, f.payee.id} {
		if _, err := other.Account(ctx, holderOf(id), id); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("payment initiated on one node is confirmed on another", func(t *testing.T) {
		pi := f.initiate(t, f.payer, f.payee, "5.00")
		out, err := other.ConfirmPayment(ctx, f.payer.actor(), f.payer.id, pi.PaymentID, ledger.Idem{}, f.payer.device, f.payer.proofs(pi.Challenge))
		if err != nil || out.Refusal != nil {
			t.Fatalf("confirm on the other node: %v / %v", err, out.Refusal)
		}
	})
	t.Run("payee opened on one node is found by another", func(t *testing.T) {
		// Account ids are random: a third node, whose next id is known in
		// advance, opens the payee.
		payeeID := f.e.newID()
		var given atomic.Bool
		opener := f.e.node(t, func(c *ledger.Config) {
			c.NewID = func() string {
				if given.CompareAndSwap(false, true) {
					return payeeID
				}
				return f.e.newID()
			}
		})
		// The other node looks the payee up before it exists (and caches
		// the empty account) ...
		if _, err := other.InitiatePayment(ctx, f.payer.actor(), f.payer.id, ledger.Idem{}, paymentReq(payeeID, "1.00", f.payer.device)); domain.ErrorCode(err) != domain.CodeNotFound {
			t.Fatalf("payee not opened yet: %v, want not_found", err)
		}
		// ... then the opener opens it ...
		opened := openCertAccount(t, ctx, opener, "Late Payee", 12)
		if opened.id != payeeID {
			t.Fatalf("opened %s, want %s", opened.id, payeeID)
		}
		// ... and the other node finds it.
		if _, err := other.InitiatePayment(ctx, f.payer.actor(), f.payer.id, ledger.Idem{}, paymentReq(payeeID, "1.00", f.payer.device)); err != nil {
			t.Fatalf("payee opened on another node: %v", err)
		}
	})
	t.Run("account view reflects the other node's writes", func(t *testing.T) {
		if _, err := f.svc.Suspend(ctx, f.payee.actor(), f.payee.id, ledger.Idem{}, "holiday"); err != nil {
			t.Fatal(err)
		}
		v, err := other.Account(ctx, f.payee.actor(), f.payee.id)
		if err != nil {
			t.Fatal(err)
		}
		if v.Status != domain.StatusSuspended {
			t.Errorf("other node sees status %s, want suspended", v.Status)
		}
	})
}

func TestConcurrentConfirmOnTwoNodesMovesMoneyOnce(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, nil)
	other := f.e.node(t, nil)
	nodes := []*ledger.Service{f.svc, other}
	const rounds = 10
	for r := range rounds {
		pi := f.initiate(t, f.payer, f.payee, "1.00")
		// Half the rounds retry with the same key (a client retrying on
		// another node), half without (two different requests).
		idem := ledger.Idem{}
		if r%2 == 0 {
			idem = idemFor(fmt.Sprintf("confirm-%d", r), pi.PaymentID)
		}
		outs := make([]ledger.Outcome, 2)
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for n, s := range nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				outs[n], errs[n] = s.ConfirmPayment(ctx, f.payer.actor(), f.payer.id, pi.PaymentID, idem, f.payer.device, f.payer.proofs(pi.Challenge))
			}()
		}
		wg.Wait()
		ok := 0
		for n := range nodes {
			switch {
			case errs[n] == nil && outs[n].Refusal == nil:
				ok++
			case idem.Key == "" && domain.ErrorCode(errs[n]) == domain.CodeConflict:
				// "payment ... is already completed"
			default:
				t.Errorf("round %d node %d: %v / %v", r, n, errs[n], outs[n].Refusal)
			}
		}
		if idem.Key != "" {
			if ok != 2 || eventIDs(outs[0])[0] != eventIDs(outs[1])[0] {
				t.Errorf("round %d: same key on two nodes: %d ok, events %v and %v", r, ok, eventIDs(outs[0]), eventIDs(outs[1]))
			}
		} else if ok != 1 {
			t.Errorf("round %d: %d confirmations acknowledged, want 1", r, ok)
		}
	}
	confirmed := 0
	for _, ev := range readStream(t, f.e.store, f.payer.id) {
		if ev.Type == domain.TypePaymentConfirmed {
			confirmed++
		}
	}
	if confirmed != rounds {
		t.Errorf("%d PaymentConfirmed in the payer's stream, want %d", confirmed, rounds)
	}
	v, err := other.Account(ctx, f.payer.actor(), f.payer.id)
	if err != nil {
		t.Fatal(err)
	}
	if want := decimal.RequireFromString("490"); !v.Available.Amount.Equal(want) {
		t.Errorf("payer available %s, want %s", v.Available.Amount, want)
	}
}

func TestRetryBounds(t *testing.T) {
	ctx := context.Background()
	errBoom := errors.New("boom")
	deposit := func(builds *atomic.Int64) ledger.Builder {
		return func(*domain.Account, time.Time, domain.Balance) (domain.Command, error) {
			builds.Add(1)
			n := builds.Load()
			return domain.Deposit{DepositID: fmt.Sprintf("dep-%d", n), Amount: "1.00", Currency: "CNY", Reference: fmt.Sprintf("ref-%d", n),
				Staff: domain.Staff{StaffKey: fundingActor.KeyID}}, nil
		}
	}
	cases := []struct {
		name       string
		maxRetries int
		// op is the operation, by the holder (default: a deposit by the
		// funding desk).
		op ledger.Op
		// before intercepts every append of the node under test.
		before  func(stream string, expected int64) error
		builder func(builds *atomic.Int64) ledger.Builder
		// wantErr checks the error; wantAppends and wantBuilds count calls.
		wantErr     func(error) bool
		wantAppends int64
		wantBuilds  int64
	}{
		{name: "builder error is not retried", maxRetries: 5,
			builder: func(builds *atomic.Int64) ledger.Builder {
				return func(*domain.Account, time.Time, domain.Balance) (domain.Command, error) {
					builds.Add(1)
					return nil, errBoom
				}
			},
			wantErr: func(err error) bool { return errors.Is(err, errBoom) }, wantAppends: 0, wantBuilds: 1},
		{name: "domain refusal without events is not retried", maxRetries: 5, op: ledger.OpAdjustLimit,
			builder: func(builds *atomic.Int64) ledger.Builder {
				return func(*domain.Account, time.Time, domain.Balance) (domain.Command, error) {
					builds.Add(1)
					return domain.AdjustLimit{Limit: "-1"}, nil
				}
			},
			wantErr: func(err error) bool { return domain.ErrorCode(err) == domain.CodeInvalid }, wantAppends: 0, wantBuilds: 1},
		{name: "store failure is not retried", maxRetries: 5,
			before:  func(string, int64) error { return errBoom },
			builder: deposit,
			wantErr: func(err error) bool {
				return errors.Is(err, errBoom) && domain.ErrorCode(err) == domain.CodeInternal
			}, wantAppends: 1, wantBuilds: 1},
		{name: "endless conflicts stop after MaxRetries", maxRetries: 3,
			before:  func(string, int64) error { return fmt.Errorf("wrapped: %w", eventstore.ErrVersionConflict) },
			builder: deposit,
			wantErr: func(err error) bool { return domain.ErrorCode(err) == domain.CodeVersionConflict },
			// One attempt per retry, each building and appending once.
			wantAppends: 3, wantBuilds: 3},
		{name: "default MaxRetries is 8", maxRetries: 0,
			before:      func(string, int64) error { return eventstore.ErrVersionConflict },
			builder:     deposit,
			wantErr:     func(err error) bool { return domain.ErrorCode(err) == domain.CodeVersionConflict },
			wantAppends: 8, wantBuilds: 8},
		{name: "conflicts below the bound succeed", maxRetries: 3,
			before: func() func(string, int64) error {
				var n atomic.Int64
				return func(string, int64) error {
					if n.Add(1) < 3 {
						return eventstore.ErrVersionConflict
					}
					return nil
				}
			}(),
			builder:     deposit,
			wantErr:     func(err error) bool { return err == nil },
			wantAppends: 3, wantBuilds: 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, 5)
			setup := e.node(t, nil)
			h := openCertAccount(t, ctx, setup, "Retry Holder", 6)
			hs := &hookStore{ConditionalStore: e.store, before: tc.before}
			s := e.node(t, func(c *ledger.Config) { c.Store = hs; c.MaxRetries = tc.maxRetries })
			headBefore := e.head(t)
			var builds atomic.Int64
			op, by := ledger.OpDeposit, fundingActor
			if tc.op != "" {
				op, by = tc.op, holderOf(h.id)
			}
			_, err := s.Execute(ctx, by, op, h.id, ledger.Idem{}, tc.builder(&builds))
			if !tc.wantErr(err) {
				t.Errorf("error %v (code %s) is not the expected one", err, domain.ErrorCode(err))
			}
			if hs.appends.Load() != tc.wantAppends || builds.Load() != tc.wantBuilds {
				t.Errorf("appends %d, builds %d; want %d, %d", hs.appends.Load(), builds.Load(), tc.wantAppends, tc.wantBuilds)
			}
			wantHead := headBefore
			if err == nil {
				wantHead++
			}
			if got := e.head(t); got != wantHead {
				t.Errorf("head %d -> %d, want %d", headBefore, got, wantHead)
			}
			// The node recovers once the store behaves.
			hs.before = nil
			if _, err := s.Deposit(ctx, fundingActor, h.id, ledger.Idem{}, "2.00", "CNY", "after"); err != nil {
				t.Errorf("deposit after the failure: %v", err)
			}
		})
	}
	t.Run("empty account id", func(t *testing.T) {
		s := newEnv(t, 6).node(t, nil)
		_, err := s.Execute(ctx, fundingActor, ledger.OpDeposit, "", ledger.Idem{}, func(*domain.Account, time.Time, domain.Balance) (domain.Command, error) {
			t.Error("builder called for an empty account id")
			return nil, nil
		})
		if domain.ErrorCode(err) != domain.CodeNotFound {
			t.Errorf("empty account id: %v", err)
		}
	})
}

func TestTinyCacheStaysCorrect(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 7)
	s := e.node(t, func(c *ledger.Config) { c.CacheSize = 2 })
	const accounts, rounds = 12, 3
	ids := make([]string, accounts)
	for i := range ids {
		ids[i] = openAccount(t, s, fmt.Sprintf("Small Cache %d", i), "",
			ledger.EnrollRequest{Method: domain.MethodBiometric, DeviceID: "phone"}).AccountID
	}
	first := map[string][]string{}
	// Sequential round robin: every command finds its account evicted.
	for r := range rounds {
		for i, id := range ids {
			key := fmt.Sprintf("dep-%d-%d", r, i)
			out, err := s.Deposit(ctx, fundingActor, id, idemFor(key, key), fmt.Sprintf("%d.00", i+1), "CNY", key)
			if err != nil {
				t.Fatalf("deposit %s: %v", key, err)
			}
			first[key] = eventIDs(out)
		}
	}
	// Concurrent deposits from 8 goroutines over the same 12 accounts.
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, id := range ids {
				if _, err := s.Deposit(ctx, fundingActor, id, ledger.Idem{}, "0.50", "CNY", fmt.Sprintf("w%d", w)); err != nil {
					t.Errorf("concurrent deposit: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	// Replays after eviction still find their keys in the log.
	head := e.head(t)
	for r := range rounds {
		for i, id := range ids {
			key := fmt.Sprintf("dep-%d-%d", r, i)
			out, err := s.Deposit(ctx, fundingActor, id, idemFor(key, key), fmt.Sprintf("%d.00", i+1), "CNY", key)
			if err != nil || !out.Replayed || strings.Join(eventIDs(out), ",") != strings.Join(first[key], ",") {
				t.Errorf("replay %s: %v replayed=%v events %v, first %v", key, err, out.Replayed, eventIDs(out), first[key])
			}
		}
	}
	if h := e.head(t); h != head {
		t.Errorf("replays appended: head %d -> %d", head, h)
	}
	for i, id := range ids {
		v, err := s.Account(ctx, holderOf(id), id)
		if err != nil {
			t.Fatal(err)
		}
		want := decimal.NewFromInt(int64((i + 1) * rounds)).Add(decimal.RequireFromString("4")) // 8 x 0.50
		// Opened with its first factor (2 events), then the deposits.
		if !v.Available.Amount.Equal(want) || v.Version != 2+rounds+8 {
			t.Errorf("account %d: available %s version %d, want %s and %d", i, v.Available.Amount, v.Version, want, 2+rounds+8)
		}
	}
}

func TestTOTPSecretIsSealedInTheLog(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, nil)
	out, err := f.svc.EnrollFactor(ctx, operatorActor, f.payer.id, ledger.Idem{}, ledger.EnrollRequest{Method: domain.MethodTOTP, DeviceID: "token-7",
		IdentityCheck: testIdentityCheck})
	if err != nil {
		t.Fatal(err)
	}
	fe := out.Decoded[0].(domain.FactorEnrolled)
	secret, err := f.svc.TOTPSecret(fe)
	if err != nil || len(secret) < 32 {
		t.Fatalf("TOTPSecret = %q, %v", secret, err)
	}
	raw, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(secret)
	if err != nil {
		t.Fatalf("secret is not base32: %v", err)
	}
	forms := []string{secret, strings.ToLower(secret), base64.StdEncoding.EncodeToString(raw),
		base64.RawStdEncoding.EncodeToString(raw), base64.StdEncoding.EncodeToString([]byte(secret)),
		base64.RawStdEncoding.EncodeToString([]byte(secret)), fmt.Sprintf("%x", raw)}
	for _, ev := range readAll(t, f.e.store) {
		stored := string(ev.Payload) + ev.IdempotencyKey + ev.CorrelationID + ev.CausationID
		for _, form := range forms {
			if strings.Contains(stored, form) {
				t.Errorf("%s at position %d contains the TOTP secret (as %q)", ev.Type, ev.Position, form)
			}
		}
	}
	// What the log holds opens to the same secret on another node (same
	// server key), and a code from it logs in once.
	other := f.e.node(t, nil)
	stored := decode(t, out.Events[0]).(domain.FactorEnrolled)
	if string(stored.SealedSecret) == secret || len(stored.SealedSecret) == 0 {
		t.Fatalf("stored seed is not sealed")
	}
	if s2, err := other.TOTPSecret(stored); err != nil || s2 != secret {
		t.Fatalf("other node opens %q, %v", s2, err)
	}
	code, err := domain.TOTPCode(secret, domain.TOTPStepAt(f.e.clock.Now()))
	if err != nil {
		t.Fatal(err)
	}
	proof := []domain.Proof{{FactorID: fe.FactorID, Code: code}}
	login, err := other.Login(ctx, publicActor, f.payer.id, ledger.Idem{}, "laptop", proof)
	if err != nil || login.Refusal != nil {
		t.Fatalf("login with the TOTP code: %v / %v", err, login.Refusal)
	}
	again, err := f.svc.Login(ctx, publicActor, f.payer.id, ledger.Idem{}, "laptop", proof)
	if err != nil || domain.ErrorCode(again.Refusal) != domain.CodeAuthFailed {
		t.Errorf("reusing the TOTP code: %v / %v, want %s", err, again.Refusal, domain.CodeAuthFailed)
	}
}

func TestBankAccountNumberNeverInTheLog(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, nil)
	const number = "6222020200112233445"
	// A refused bind (not the holder's name) records nothing.
	pw := byPassword(enrolPassword(t, f.svc, f.payer.id)).Proofs
	head := f.e.head(t)
	if _, err := f.svc.BindBankAccount(ctx, f.payer.actor(), f.payer.id, ledger.Idem{}, number, "Somebody Else",
		f.payer.stepUp(t, f.svc, domain.ChangeKindBankAccount, number, pw...)); domain.ErrorCode(err) != domain.CodeInvalid {
		t.Fatalf("bind in another name: %v", err)
	}
	if h := f.e.head(t); h != head {
		t.Fatalf("the refused bind appended: head %d -> %d", head, h)
	}
	out, err := f.svc.BindBankAccount(ctx, f.payer.actor(), f.payer.id, ledger.Idem{}, number, payerName,
		f.payer.stepUp(t, f.svc, domain.ChangeKindBankAccount, number, pw...))
	if err != nil {
		t.Fatal(err)
	}
	b, ok := out.Decoded[0].(domain.BankAccountBound)
	if !ok || b.Last4 != "3445" || b.BankAccountToken != f.e.keys.BankToken(number) || b.BankAccountToken == "" {
		t.Fatalf("bound %+v", out.Decoded[0])
	}
	found := false
	for _, ev := range readAll(t, f.e.store) {
		stored := string(ev.Payload) + ev.IdempotencyKey + ev.CorrelationID + ev.CausationID + ev.Type
		for _, part := range []string{number, number[:len(number)-4], number[4:]} {
			if strings.Contains(stored, part) {
				t.Errorf("%s at position %d contains the bank account number (%s)", ev.Type, ev.Position, part)
			}
		}
		if ev.Type == domain.TypeBankAccountBound {
			found = strings.Contains(stored, b.BankAccountToken) && strings.Contains(stored, `"3445"`)
		}
	}
	if !found {
		t.Errorf("BankAccountBound does not carry the token and last4")
	}
	v, err := f.e.node(t, nil).Account(ctx, f.payer.actor(), f.payer.id)
	if err != nil || v.BankLast4 != "3445" {
		t.Errorf("view: last4 %q, %v", v.BankLast4, err)
	}
}

// byPassword authorises a change from "laptop" with the password factor pw.
func byPassword(pw string) domain.Authorisation {
	return domain.Authorisation{DeviceID: "laptop", Proofs: []domain.Proof{{FactorID: pw, Password: testPassword}}}
}

func withProofs(a domain.Authorisation, more ...domain.Proof) domain.Authorisation {
	a.Proofs = append(append([]domain.Proof(nil), a.Proofs...), more...)
	return a
}

// totpFactor is an enrolled TOTP factor and its seed.
type totpFactor struct{ id, secret string }

func enrolTOTP(t *testing.T, f *fixture, device string) totpFactor {
	t.Helper()
	out, err := f.svc.EnrollFactor(context.Background(), operatorActor, f.payer.id, ledger.Idem{}, ledger.EnrollRequest{Method: domain.MethodTOTP, DeviceID: device,
		IdentityCheck: testIdentityCheck})
	if err != nil {
		t.Fatalf("enrol totp: %v", err)
	}
	fe := out.Decoded[0].(domain.FactorEnrolled)
	secret, err := f.svc.TOTPSecret(fe)
	if err != nil {
		t.Fatal(err)
	}
	return totpFactor{fe.FactorID, secret}
}

// proof is a proof with the factor's current code.
func (o totpFactor) proof(t *testing.T, f *fixture) domain.Proof {
	t.Helper()
	code, err := domain.TOTPCode(o.secret, domain.TOTPStepAt(f.e.clock.Now()))
	if err != nil {
		t.Fatal(err)
	}
	return domain.Proof{FactorID: o.id, Code: code}
}

// TestCredentialResets checks what the write path adds to a reset: a new
// salt for a password (the old password stops working, the new one works,
// on any node), a new sealed seed for a TOTP factor, shown once and never
// in the log in the clear.
func TestCredentialResets(t *testing.T) {
	ctx := context.Background()
	provider := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	f := newFixture(t, func(c *ledger.Config) { c.Policy.BiometricProviderKey = provider.Public().(ed25519.PublicKey) })
	pw := enrolPassword(t, f.svc, f.payer.id)
	otp := enrolTOTP(t, f, "token-1")
	enr, err := f.svc.EnrollFactor(ctx, operatorActor, f.payer.id, ledger.Idem{}, ledger.EnrollRequest{Method: domain.MethodBiometric, DeviceID: "phone-9",
		IdentityCheck: testIdentityCheck})
	if err != nil {
		t.Fatal(err)
	}
	bio := enr.Decoded[0].(domain.FactorEnrolled).FactorID

	// The password, reset with the TOTP (possession) and a biometric
	// attestation (inherence) over the change's challenge at the current
	// version. The certificate and the TOTP alone are one category.
	v, err := f.svc.Account(ctx, f.payer.actor(), f.payer.id)
	if err != nil {
		t.Fatal(err)
	}
	challenge := domain.ChangeChallenge(domain.ChangeKindCredentialReset, f.payer.id, v.Version, pw)
	const newPassword = "an entirely new passphrase"
	weak := domain.Authorisation{DeviceID: "laptop", Version: v.Version, Proofs: append(f.payer.proofs(challenge), otp.proof(t, f))}
	out, err := f.svc.ResetCredential(ctx, f.payer.actor(), f.payer.id, ledger.Idem{}, ledger.ResetRequest{FactorID: pw, Password: newPassword, Auth: weak})
	if err != nil || domain.ErrorCode(out.Refusal) != domain.CodeInsufficientVerification {
		t.Fatalf("reset password with two possession factors: %v / %v", err, out.Refusal)
	}
	f.e.clock.Advance(domain.TOTPStep)
	// The TOTP counts beside the attestation only from a registered device
	// that signs the reset (R6).
	laptop := registerDevice(t, f.svc, f.e.clock.Now, f.payer.id, "laptop", 9)
	v, err = f.svc.Account(ctx, f.payer.actor(), f.payer.id)
	if err != nil {
		t.Fatal(err)
	}
	challenge = domain.ChangeChallenge(domain.ChangeKindCredentialReset, f.payer.id, v.Version, pw)
	auth := domain.Authorisation{DeviceID: "laptop", Version: v.Version, Device: laptop.sign(f.payer.id, domain.ChangeKindCredentialReset, pw),
		Proofs: []domain.Proof{otp.proof(t, f), {FactorID: bio, Attestation: ed25519.Sign(provider, challenge)}}}
	out, err = f.svc.ResetCredential(ctx, f.payer.actor(), f.payer.id, ledger.Idem{}, ledger.ResetRequest{FactorID: pw, Password: newPassword, Auth: auth})
	if err != nil || out.Refusal != nil {
		t.Fatalf("reset password: %v / %v", err, out.Refusal)
	}
	for _, ev := range readAll(t, f.e.store) {
		if strings.Contains(string(ev.Payload), newPassword) || strings.Contains(string(ev.Payload), testPassword) {
			t.Errorf("%s at position %d contains a password", ev.Type, ev.Position)
		}
	}
	other := f.e.node(t, nil)
	for _, s := range []*ledger.Service{f.svc, other} {
		old, err := s.Login(ctx, publicActor, f.payer.id, ledger.Idem{}, "laptop", byPassword(pw).Proofs)
		if err != nil || domain.ErrorCode(old.Refusal) != domain.CodeAuthFailed {
			t.Errorf("old password: %v / %v", err, old.Refusal)
		}
		good, err := s.Login(ctx, publicActor, f.payer.id, ledger.Idem{}, "laptop", []domain.Proof{{FactorID: pw, Password: newPassword}})
		if err != nil || good.Refusal != nil {
			t.Errorf("new password: %v / %v", err, good.Refusal)
		}
	}

	// The TOTP seed, reset with the new password and the certificate,
	// once the reset password has cooled off (a fresh credential
	// authorises no change before then).
	f.e.clock.Advance(f.e.policy.CoolingOff)
	v, err = f.svc.Account(ctx, f.payer.actor(), f.payer.id)
	if err != nil {
		t.Fatal(err)
	}
	auth = domain.Authorisation{DeviceID: "laptop", Version: v.Version,
		Proofs: append(f.payer.proofs(domain.ChangeChallenge(domain.ChangeKindCredentialReset, f.payer.id, v.Version, otp.id)),
			domain.Proof{FactorID: pw, Password: newPassword})}
	idem := idemFor("reset-totp", "reset-totp")
	out, err = f.svc.ResetCredential(ctx, f.payer.actor(), f.payer.id, idem, ledger.ResetRequest{FactorID: otp.id, Auth: auth})
	if err != nil || out.Refusal != nil {
		t.Fatalf("reset totp: %v / %v", err, out.Refusal)
	}
	cr := out.Decoded[0].(domain.CredentialReset)
	seed, err := f.svc.ResetTOTPSecret(cr)
	if err != nil || seed == "" || seed == otp.secret || strings.Contains(string(out.Events[0].Payload), seed) {
		t.Fatalf("new seed %q, %v", seed, err)
	}
	replay, err := other.ResetCredential(ctx, f.payer.actor(), f.payer.id, idem, ledger.ResetRequest{FactorID: otp.id, Auth: auth})
	if err != nil || !replay.Replayed {
		t.Fatalf("replay: %v, replayed %v", err, replay.Replayed)
	}
	if again, err := other.ResetTOTPSecret(replay.Decoded[0].(domain.CredentialReset)); err != nil || again != seed {
		t.Errorf("replayed seed %q, %v; want %q", again, err, seed)
	}
	// The old seed no longer logs in; the new one does.
	f.e.clock.Advance(domain.TOTPStep)
	if out, err := f.svc.Login(ctx, publicActor, f.payer.id, ledger.Idem{}, "laptop", []domain.Proof{otp.proof(t, f)}); err != nil || out.Refusal == nil {
		t.Errorf("old seed: %v / %v", err, out.Refusal)
	}
	code, err := domain.TOTPCode(seed, domain.TOTPStepAt(f.e.clock.Now()))
	if err != nil {
		t.Fatal(err)
	}
	if out, err := f.svc.Login(ctx, publicActor, f.payer.id, ledger.Idem{}, "laptop", []domain.Proof{{FactorID: otp.id, Code: code}}); err != nil || out.Refusal != nil {
		t.Errorf("new seed: %v / %v", err, out.Refusal)
	}
}
