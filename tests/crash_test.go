package tests

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/payledger/payledger/internal/apiclient"
)

// TestKilledUnderLoadKeepsAcknowledgedWrites kills the server (SIGKILL, no
// shutdown) while clients are depositing concurrently, restarts it on the
// same directory and checks that every acknowledged deposit is there: each
// account's balance lies between the deposits it acknowledged and those it
// attempted (an attempt cut off by the kill may or may not have landed),
// and the log verifies. A deposit acknowledged before its transaction
// committed, with the kill landing in between, would show as a balance
// below the acknowledged sum. (A killed process keeps what it wrote to the
// operating system, so this proves acknowledged means committed; that
// committed means fsynced, against a power cut, is the pipeline's own
// tests' matter: eventstore/sqlite/writer_test.go.)
func TestKilledUnderLoadKeepsAcknowledgedWrites(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	srv := start(t, dir)
	opKey := staffKey(t, dir, "operator")
	operator := apiclient.New(srv.url).As(opKey)
	c := apiclient.New(srv.url).As(staffKey(t, dir, "funding"))

	const accounts, perAccount = 8, 4
	ids := make([]string, accounts)
	for i := range ids {
		ids[i], _ = openAccount(t, ctx, operator, fmt.Sprintf("Crash %d", i), "personal", "a long passphrase")
	}

	var mu sync.Mutex
	acked := make([]int, accounts)
	attempted := make([]int, accounts)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range accounts {
		for k := range perAccount {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Bounded: the kill ends every client well before this.
				for n := 0; n < 100000; n++ {
					select {
					case <-stop:
						return
					default:
					}
					mu.Lock()
					attempted[i]++
					mu.Unlock()
					_, err := c.Expect(ctx, http.StatusCreated, "POST", "/v1/accounts/"+ids[i]+"/deposits",
						map[string]any{"amount": "1.00", "currency": "CNY", "reference": fmt.Sprintf("crash-%d-%d-%d", i, k, n)}, fmt.Sprintf("dep-%d-%d-%d", i, k, n))
					if err != nil {
						return // the server is gone (or refused): this attempt's outcome is unknown
					}
					mu.Lock()
					acked[i]++
					mu.Unlock()
				}
			}()
		}
	}
	// The kill comes once the load has run: 50 acknowledged deposits (a
	// busy machine takes longer), at most 30 s.
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		mu.Lock()
		n := 0
		for _, a := range acked {
			n += a
		}
		mu.Unlock()
		if n >= 50 {
			break
		}
	}
	srv.stop(t, syscall.SIGKILL)
	close(stop)
	wg.Wait()

	total := 0
	for _, n := range acked {
		total += n
	}
	if total < 50 {
		t.Fatalf("only %d deposits acknowledged before the kill: the load did not run", total)
	}

	srv = start(t, dir)
	defer srv.stop(t, syscall.SIGTERM)
	c = apiclient.New(srv.url).As(opKey)
	for i, id := range ids {
		b, err := c.Expect(ctx, http.StatusOK, "GET", "/v1/accounts/"+id+"/balance", nil, "")
		if err != nil {
			t.Fatal(err)
		}
		got, err := decimal.NewFromString(b.Str("available"))
		if err != nil {
			t.Fatalf("balance %q: %v", b.Str("available"), err)
		}
		lo, hi := decimal.NewFromInt(int64(acked[i])), decimal.NewFromInt(int64(attempted[i]))
		if got.LessThan(lo) || got.GreaterThan(hi) {
			t.Errorf("account %d: balance %s after the kill, acknowledged %s and attempted %s deposits of 1.00", i, got, lo, hi)
		}
	}
	if out := runCmd(t, "verify", "--data", dir); !strings.Contains(out, "every hash chain intact") {
		t.Fatalf("verify after the kill: %s", out)
	}
	t.Logf("%d deposits acknowledged before the kill", total)
}
