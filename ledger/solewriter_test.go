package ledger_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/eventstore"
	"github.com/payledger/payledger/ledger"
)

// readCounter counts stream reads.
type readCounter struct {
	eventstore.ConditionalStore
	reads atomic.Int64
}

func (r *readCounter) ReadStream(ctx context.Context, stream string, from int64, limit int) ([]eventstore.Event, error) {
	r.reads.Add(1)
	return r.ConditionalStore.ReadStream(ctx, stream, from, limit)
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
			counter := &readCounter{ConditionalStore: e.store}
			svc := e.node(t, func(c *ledger.Config) { c.Store = counter; c.SoleWriter = tc.sole })
			ctx := context.Background()
			out := openAccount(t, svc, "Chen Jie", "", ledger.EnrollRequest{Method: domain.MethodBiometric, DeviceID: "phone"})
			for i := 0; i < 5; i++ {
				if _, err := svc.Deposit(ctx, fundingActor, out.AccountID, ledger.Idem{}, "1.00", "CNY", fmt.Sprintf("r%d", i)); err != nil {
					t.Fatal(err)
				}
			}
			if got := counter.reads.Load(); got != tc.wantReads {
				t.Fatalf("stream reads = %d, want %d", got, tc.wantReads)
			}
			v, err := svc.Account(ctx, holderOf(out.AccountID), out.AccountID)
			if err != nil {
				t.Fatal(err)
			}
			// AccountOpened, FactorEnrolled and five deposits.
			if v.Version != 7 {
				t.Fatalf("version %d, want 7", v.Version)
			}
		})
	}
}
