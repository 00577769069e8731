package tests

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/eventstore"
	"github.com/payledger/payledger/eventstore/postgres"
	"github.com/payledger/payledger/internal/apiclient"
	"github.com/payledger/payledger/internal/pgtest"
)

// sharedLog migrates a fresh PostgreSQL schema and returns its --store URL
// and a reader of it.
func sharedLog(t *testing.T) (string, *postgres.Store) {
	t.Helper()
	var nonce [8]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		t.Fatal(err)
	}
	dsn, schema := pgtest.Schema(t, fmt.Sprintf("%s-%x", t.Name(), nonce)) // a fresh log, even under -count
	ctx := context.Background()
	if _, err := postgres.Migrate(ctx, dsn, postgres.Options{Schema: schema}); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	opts := postgres.DefaultOptions()
	opts.Schema = schema
	reader, err := postgres.Open(ctx, dsn, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reader.Close() })
	return u.String(), reader
}

// twoNodes starts two `payledger serve --shared-log` processes on one
// PostgreSQL log, with the same server key and master key, and a staff
// key of each role asked for, made in the first node's data directory.
func twoNodes(t *testing.T, store string, roles ...string) (a, b *server, keys map[string]string, master string) {
	t.Helper()
	base := t.TempDir()
	serverKey := make([]byte, 32)
	if _, err := rand.Read(serverKey); err != nil {
		t.Fatal(err)
	}
	master = filepath.Join(base, "master.key")
	runCmd(t, "keys", "master-key", "--out", master)
	dirs := []string{filepath.Join(base, "a"), filepath.Join(base, "b")}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "server.key"), serverKey, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	keys = map[string]string{}
	for _, r := range roles {
		keys[r] = staffKey(t, dirs[0], r)
	}
	flags := []string{"--store", store, "--shared-log", "--master-key", master}
	return start(t, dirs[0], flags...), start(t, dirs[1], flags...), keys, master
}

// TestTwoNodesOnOnePostgresLog runs two payledger processes on one
// PostgreSQL log (issue 13's multi-node case): 50 confirmations of one
// payer's payments split across both move exactly the 10 its balance
// affords; a payee suspending on one node while payments to it are
// confirmed on the other is credited nothing while suspended; and a
// subscriber of the log, like each node's projection, sees every event
// once, in commit order.
func TestTwoNodesOnOnePostgresLog(t *testing.T) {
	store, log := sharedLog(t)
	a, b, keys, master := twoNodes(t, store, "operator", "funding")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	// A subscriber of the shared log from its start.
	var subMu sync.Mutex
	var seen []eventstore.Event
	subCtx, stopSub := context.WithCancel(ctx)
	subDone := make(chan error, 1)
	go func() {
		subDone <- log.Subscribe(subCtx, 0, func(e eventstore.Event) error {
			subMu.Lock()
			seen = append(seen, e)
			subMu.Unlock()
			return nil
		})
	}()

	// An exclusive server cannot join the shared ones.
	if out, err := runCmdErr("serve", "--addr", "127.0.0.1:0", "--data", t.TempDir(), "--store", store, "--master-key", master); err == nil ||
		!strings.Contains(out, "--shared-log") {
		t.Fatalf("an exclusive serve beside shared ones: %v\n%s", err, out)
	}

	nodes := []*apiclient.Client{apiclient.New(a.url), apiclient.New(b.url)}
	operator, funding := nodes[0].As(keys["operator"]), nodes[0].As(keys["funding"])
	const password = "a long shared-node password"
	payer, payerFactor := openAccount(t, ctx, operator, "Node Payer", "personal", password)
	payee, payeeFactor := openAccount(t, ctx, operator, "Node Payee", "merchant", password)
	if _, err := funding.Expect(ctx, http.StatusCreated, "POST", "/v1/accounts/"+payer+"/deposits",
		map[string]any{"amount": "10.00", "currency": "CNY", "reference": "multi-node"}, ""); err != nil {
		t.Fatal(err)
	}
	// A session opened on one node is honoured on the other: it is in the log.
	payerOn := []*apiclient.Client{login(t, ctx, nodes[0], payer, payerFactor, password)}
	payerOn = append(payerOn, nodes[1].As(payerOn[0].Token))
	payeeOn := nodes[1].As(login(t, ctx, nodes[1], payee, payeeFactor, password).Token)

	initiate := func(c *apiclient.Client) (string, error) {
		r, err := c.Expect(ctx, http.StatusCreated, "POST", "/v1/accounts/"+payer+"/payments", map[string]any{"payee_account_id": payee,
			"amount": "1.00", "currency": "CNY", "channel": "app", "terminal": "desktop", "device_id": "web-1", "description": "node test"}, "")
		return r.Str("payment_id"), err
	}
	// confirm returns the problem code, "" when the payment went through;
	// a request that lost a race (version_conflict) or found every
	// password check busy (rate_limited) is sent again, as a client would.
	confirm := func(c *apiclient.Client, pid string) (string, error) {
		for try := 0; try < 20; try++ {
			r, err := c.Do(ctx, "POST", "/v1/accounts/"+payer+"/payments/"+pid+"/confirm",
				map[string]any{"device_id": "web-1", "proofs": []any{map[string]any{"factor_id": payerFactor, "password": password}}}, "")
			if err != nil {
				return "", err
			}
			if r.Status == http.StatusOK {
				return "", nil
			}
			code := r.Str("code")
			if code == "version_conflict" || code == "rate_limited" {
				time.Sleep(time.Duration(50*(try+1)) * time.Millisecond)
				continue
			}
			return code, nil
		}
		return "", fmt.Errorf("confirm %s: still refused for a race after 20 tries", pid)
	}

	t.Run("OverdraftRace", func(t *testing.T) {
		const payments, affordable = 50, 10
		pids := make([]string, payments)
		for i := range pids {
			pid, err := initiate(payerOn[i%2])
			if err != nil {
				t.Fatal(err)
			}
			pids[i] = pid
		}
		var mu sync.Mutex
		codes := map[string]int{}
		var wg sync.WaitGroup
		for i, pid := range pids {
			wg.Go(func() {
				code, err := confirm(payerOn[i%2], pid)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				codes[code]++
				mu.Unlock()
			})
		}
		wg.Wait()
		if codes[""] != affordable || codes["insufficient_funds"] != payments-affordable {
			t.Fatalf("outcomes %v, want %d confirmed and %d insufficient_funds", codes, affordable, payments-affordable)
		}
		for i, c := range payerOn {
			waitBalance(t, ctx, c, payer, "0.00", fmt.Sprintf("payer on node %d", i))
		}
	})

	t.Run("SuspensionRacesPayment", func(t *testing.T) {
		if _, err := funding.Expect(ctx, http.StatusCreated, "POST", "/v1/accounts/"+payer+"/deposits",
			map[string]any{"amount": "30.00", "currency": "CNY", "reference": "multi-node-2"}, ""); err != nil {
			t.Fatal(err)
		}
		const rounds = 20
		paid, refused := 0, 0
		for round := range rounds {
			pid, err := initiate(payerOn[0])
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			var code string
			var confirmErr, suspendErr error
			wg.Go(func() { code, confirmErr = confirm(payerOn[0], pid) })
			wg.Go(func() {
				// Staggered, so that some rounds' payments land first.
				time.Sleep(time.Duration(round%5) * 15 * time.Millisecond)
				_, suspendErr = payeeOn.Expect(ctx, http.StatusOK, "POST", "/v1/accounts/"+payee+"/suspend", map[string]any{"reason": "pause"}, "")
			})
			wg.Wait()
			if confirmErr != nil || suspendErr != nil {
				t.Fatalf("round %d: confirm %v, suspend %v", round, confirmErr, suspendErr)
			}
			switch code {
			case "":
				paid++
			case "payee_unavailable":
				refused++
			default:
				t.Fatalf("round %d: confirm refused with %s", round, code)
			}
			if _, err := payeeOn.Expect(ctx, http.StatusOK, "POST", "/v1/accounts/"+payee+"/reactivate", map[string]any{"reason": "resume"}, ""); err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("%d rounds: %d paid before the suspension, %d refused after it", rounds, paid, refused)
	})

	// The log, in order: no payment credited while its payee is
	// suspended; and the subscriber saw exactly the log.
	head, err := log.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var all []eventstore.Event
	for pos := int64(0); pos < head; {
		evs, err := log.ReadAll(ctx, pos, eventstore.MaxReadBatch)
		if err != nil || len(evs) == 0 {
			t.Fatalf("read the log after %d: %d events, %v", pos, len(evs), err)
		}
		all = append(all, evs...)
		pos = evs[len(evs)-1].Position
	}
	suspended := false
	credits := 0
	for i, e := range all {
		if e.Position != int64(i+1) {
			t.Fatalf("log position %d at index %d", e.Position, i)
		}
		if e.Stream != domain.AccountStream(payee) && e.Type != "PaymentConfirmed" {
			continue
		}
		d, err := domain.DecodeEvent(e.Type, e.SchemaVersion, e.Payload)
		if err != nil {
			t.Fatalf("decode position %d: %v", e.Position, err)
		}
		switch d := d.(type) {
		case domain.ServiceSuspended:
			suspended = true
		case domain.ServiceReactivated:
			suspended = false
		case domain.PaymentConfirmed:
			if d.CreditAccount == payee {
				credits++
				if suspended {
					t.Errorf("payment %s credited at position %d while the payee was suspended", d.PaymentID, e.Position)
				}
			}
		}
	}
	if credits < 10 {
		t.Fatalf("%d payments credited to the payee, want at least the 10 of the overdraft race", credits)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		subMu.Lock()
		n := len(seen)
		subMu.Unlock()
		if n >= len(all) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	stopSub()
	<-subDone
	subMu.Lock()
	defer subMu.Unlock()
	if len(seen) != len(all) {
		t.Fatalf("the subscriber saw %d events, the log holds %d", len(seen), len(all))
	}
	for i := range all {
		if seen[i].Position != all[i].Position || seen[i].ID != all[i].ID {
			t.Fatalf("the subscriber's event %d is position %d (%s), the log's is %d (%s)", i, seen[i].Position, seen[i].ID, all[i].Position, all[i].ID)
		}
	}
	// Each node's projection applied the whole log: the same balances.
	want := fmt.Sprintf("%d.00", credits)
	for i, n := range nodes {
		waitBalance(t, ctx, n.As(payeeOn.Token), payee, want, fmt.Sprintf("payee on node %d", i))
	}
}

// waitBalance waits, at most 20 s, for c to read account's available
// balance as want: each node's projection catches up with the shared log
// on its own.
func waitBalance(t *testing.T, ctx context.Context, c *apiclient.Client, account, want, what string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r, err := c.Expect(ctx, http.StatusOK, "GET", "/v1/accounts/"+account+"/balance", nil, "")
		if err != nil {
			t.Fatal(err)
		}
		if r.Str("available") == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: available %s, want %s", what, r.Str("available"), want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
