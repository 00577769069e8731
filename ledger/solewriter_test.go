package ledger_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/payledger/payledger/eventstore"
	"github.com/payledger/payledger/ledger"
)

// readCounter counts stream reads.
type readCounter struct {
	eventstore.Store
	reads atomic.Int64
}

func (r *readCounter) ReadStream(ctx context.Context, stream string, from int64, limit int) ([]eventstore.Event, error) {
	r.reads.Add(1)
	return r.Store.ReadStream(ctx, stream, from, limit)
}

// TestSoleWriterSkipsTailReads: a sole writer trusts its cache, so after the
// first load an account's commands read nothing from the store; a shared
// writer reads the stream tail before every decision.
func TestSoleWriterSkipsTailReads(t *testing.T) {
	for _, tc := range []struct {
		name      string
		sole      bool
		wantReads int64
	}{
		{"SoleWriter", true, 1},
		{"SharedStore", false, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, 7)
			counter := &readCounter{Store: e.store}
			svc := e.node(t, func(c *ledger.Config) { c.Store = counter; c.SoleWriter = tc.sole })
			ctx := context.Background()
			out, err := svc.OpenAccount(ctx, ledger.Idem{}, "Chen Jie", "CNY", "")
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 5; i++ {
				if _, err := svc.Deposit(ctx, out.AccountID, ledger.Idem{}, "1.00", "CNY", "r"); err != nil {
					t.Fatal(err)
				}
			}
			if got := counter.reads.Load(); got != tc.wantReads {
				t.Fatalf("stream reads = %d, want %d", got, tc.wantReads)
			}
			v, err := svc.Account(ctx, out.AccountID)
			if err != nil {
				t.Fatal(err)
			}
			if v.Version != 6 {
				t.Fatalf("version %d, want 6", v.Version)
			}
		})
	}
}
