package projections

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/eventstore"
)

// line is the expected shape of one statement entry.
type line struct {
	dir, amount, counterparty, after, typ string
}

func TestMoneyFlows(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		cases := []struct {
			name     string
			build    func(l *ledger)
			entries  map[string][]line
			balances map[string]string // account -> balance; "" means not found
			currency map[string]domain.Currency
		}{
			{
				name: "deposit then payment then withdrawal",
				build: func(l *ledger) {
					l.open("alice", domain.CNY)
					l.open("bob", domain.CNY)
					l.deposit("alice", "100.00", domain.CNY)
					l.pay("alice", "bob", "30.25", domain.CNY)
					l.withdraw("bob", "10", domain.CNY)
				},
				entries: map[string][]line{
					"alice": {
						{DirectionCredit, "100", clearingCNY, "100", domain.TypeFundsDeposited},
						{DirectionDebit, "30.25", "bob", "69.75", domain.TypePaymentConfirmed},
					},
					"bob": {
						{DirectionCredit, "30.25", "alice", "30.25", domain.TypePaymentConfirmed},
						{DirectionDebit, "10", clearingCNY, "20.25", domain.TypeFundsWithdrawn},
					},
					clearingCNY: {
						{DirectionDebit, "100", "alice", "-100", domain.TypeFundsDeposited},
						{DirectionCredit, "10", "bob", "-90", domain.TypeFundsWithdrawn},
					},
				},
				balances: map[string]string{"alice": "69.75", "bob": "20.25", clearingCNY: "-90", "nobody": ""},
			},
			{
				name: "non-money events advance nothing but the checkpoint",
				build: func(l *ledger) {
					l.open("alice", domain.CNY)
					l.add(domain.AccountStream("alice"), domain.LoginFailed{DeviceID: "d1", Reason: "bad password", FailedAttempts: 1})
					l.add(domain.AccountStream("alice"), domain.PaymentInitiated{PaymentID: "p1", Payer: "alice", Payee: "bob",
						Amount: money("5", domain.CNY), Fee: domain.Zero(domain.CNY), ExpiresAt: t0.Add(time.Hour)})
					l.add(domain.AccountStream("alice"), domain.PaymentRejected{PaymentID: "p1", Code: domain.CodeInsufficientFunds})
				},
				entries:  map[string][]line{"alice": nil, clearingCNY: nil},
				balances: map[string]string{"alice": "0", clearingCNY: ""},
			},
			{
				name: "two currencies keep their own clearing accounts",
				build: func(l *ledger) {
					l.open("carol", "USD")
					l.deposit("carol", "12.34", "USD")
					l.deposit("dave", "1000", "JPY") // never opened: created by the money event
					l.withdraw("dave", "1", "JPY")
				},
				entries: map[string][]line{
					"carol":        {{DirectionCredit, "12.34", "clearing-USD", "12.34", domain.TypeFundsDeposited}},
					"dave":         {{DirectionCredit, "1000", "clearing-JPY", "1000", domain.TypeFundsDeposited}, {DirectionDebit, "1", "clearing-JPY", "999", domain.TypeFundsWithdrawn}},
					"clearing-JPY": {{DirectionDebit, "1000", "dave", "-1000", domain.TypeFundsDeposited}, {DirectionCredit, "1", "dave", "-999", domain.TypeFundsWithdrawn}},
				},
				balances: map[string]string{"carol": "12.34", "clearing-USD": "-12.34", "dave": "999", "clearing-JPY": "-999"},
				currency: map[string]domain.Currency{"carol": "USD", "clearing-USD": "USD", "dave": "JPY", "clearing-JPY": "JPY"},
			},
			{
				name: "transfer to the same account: debit first, then credit",
				build: func(l *ledger) {
					l.deposit("erin", "50", domain.CNY)
					l.pay("erin", "erin", "20", domain.CNY)
				},
				entries: map[string][]line{
					"erin": {
						{DirectionCredit, "50", clearingCNY, "50", domain.TypeFundsDeposited},
						{DirectionDebit, "20", "erin", "30", domain.TypePaymentConfirmed},
						{DirectionCredit, "20", "erin", "50", domain.TypePaymentConfirmed},
					},
				},
				balances: map[string]string{"erin": "50"},
			},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				l := newLedger(t)
				tc.build(l)
				r := b.newRM(t)
				catchUp(t, r, l.store)
				if got, want := r.Checkpoint(), l.head(); got != want {
					t.Fatalf("checkpoint %d, want %d", got, want)
				}
				for id, want := range tc.entries {
					got := allEntries(t, r, id)
					if len(got) != len(want) {
						t.Fatalf("%s: %d entries, want %d: %+v", id, len(got), len(want), got)
					}
					for i, w := range want {
						g := got[i]
						gl := line{g.Direction, g.Amount.Amount.String(), g.Counterparty, g.BalanceAfter.Amount.String(), g.Type}
						if gl != w {
							t.Errorf("%s entry %d: got %+v, want %+v", id, i, gl, w)
						}
						if g.EventID == "" || g.Position < 1 || g.Time.IsZero() || g.Ref == "" {
							t.Errorf("%s entry %d: missing id, position, time or ref: %+v", id, i, g)
						}
						if g.Amount.Currency != g.BalanceAfter.Currency || g.Amount.Currency == "" {
							t.Errorf("%s entry %d: currencies %q/%q", id, i, g.Amount.Currency, g.BalanceAfter.Currency)
						}
					}
				}
				for id, want := range tc.balances {
					b := balanceOf(t, r, id)
					if want == "" {
						if b.Found {
							t.Errorf("%s: found %+v, want not found", id, b)
						}
						continue
					}
					if !b.Found || !b.Available.Amount.Equal(decimal.RequireFromString(want)) || b.AsOfPosition != l.head() {
						t.Errorf("%s: balance %+v, want %s at %d", id, b, want, l.head())
					}
					wantCur := domain.CNY
					if c, ok := tc.currency[id]; ok {
						wantCur = c
					}
					if b.Available.Currency != wantCur {
						t.Errorf("%s: currency %s, want %s", id, b.Available.Currency, wantCur)
					}
					snap, cp := r.Snapshot(id)
					if !snap.Equal(b.Available.Amount) || cp != l.head() {
						t.Errorf("%s: snapshot %s@%d, want %s@%d", id, snap, cp, want, l.head())
					}
				}
				totals, err := r.Totals(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				if err := totals.Check(); err != nil {
					t.Error(err)
				}
			})
		}
	})
}

func TestBalanceAfterSequence(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		l := newLedger(t)
		l.open("alice", domain.CNY)
		steps := []struct {
			op, amount, after string
		}{
			{"deposit", "0.10", "0.1"},
			{"deposit", "0.20", "0.3"}, // exact, never 0.30000000000000004
			{"pay", "0.30", "0"},
			{"deposit", "1000000000000", "1000000000000"},
			{"withdraw", "0.01", "999999999999.99"},
			{"pay", "999999999999.99", "0"},
		}
		for _, s := range steps {
			switch s.op {
			case "deposit":
				l.deposit("alice", s.amount, domain.CNY)
			case "pay":
				l.pay("alice", "bob", s.amount, domain.CNY)
			case "withdraw":
				l.withdraw("alice", s.amount, domain.CNY)
			}
		}
		r := b.newRM(t)
		catchUp(t, r, l.store)
		got := allEntries(t, r, "alice")
		if len(got) != len(steps) {
			t.Fatalf("%d entries, want %d", len(got), len(steps))
		}
		for i, s := range steps {
			if got[i].BalanceAfter.String() != decimal.RequireFromString(s.after).StringFixed(2) {
				t.Errorf("step %d (%s %s): balance after %s, want %s", i, s.op, s.amount, got[i].BalanceAfter, s.after)
			}
			if i > 0 && got[i].Position <= got[i-1].Position {
				t.Errorf("step %d: positions not ascending", i)
			}
		}
		if b := balanceOf(t, r, "bob"); b.Available.String() != "1000000000000.29" {
			t.Errorf("bob balance %s", b.Available)
		}
	})
}

func TestBalanceAsOf(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		l := newLedger(t)
		l.step = time.Hour
		l.open("alice", domain.CNY)           // t0+1h
		l.deposit("alice", "100", domain.CNY) // t0+2h
		l.pay("alice", "bob", "40", domain.CNY)
		l.withdraw("alice", "10", domain.CNY) // t0+4h
		r := b.newRM(t)
		catchUp(t, r, l.store)
		cases := []struct {
			name    string
			account string
			at      time.Time
			want    string
			found   bool
		}{
			{"before any entry", "alice", t0, "0", true},
			{"exactly at the deposit", "alice", t0.Add(2 * time.Hour), "100", true},
			{"a nanosecond before the deposit", "alice", t0.Add(2*time.Hour - 1), "0", true},
			{"between deposit and payment", "alice", t0.Add(150 * time.Minute), "100", true},
			{"between payment and withdrawal", "alice", t0.Add(210 * time.Minute), "60", true},
			{"after everything", "alice", t0.Add(100 * time.Hour), "50", true},
			{"counterparty", "bob", t0.Add(3 * time.Hour), "40", true},
			{"clearing", clearingCNY, t0.Add(5 * time.Hour), "-90", true},
			{"unknown account", "nobody", t0.Add(5 * time.Hour), "0", false},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				b, err := r.BalanceAsOf(context.Background(), tc.account, tc.at)
				if err != nil {
					t.Fatal(err)
				}
				if b.Found != tc.found || !b.Available.Amount.Equal(decimal.RequireFromString(tc.want)) || b.AsOfPosition != l.head() {
					t.Fatalf("got %+v, want %s found=%v at %d", b, tc.want, tc.found, l.head())
				}
				if tc.found && b.Available.Currency != domain.CNY {
					t.Fatalf("currency %q", b.Available.Currency)
				}
			})
		}
	})
}

// statementLedger makes n deposits to alice; every three share a timestamp,
// so ordering must fall back to the position.
func statementLedger(t *testing.T, b backend, n int) (*ledger, *ReadModels) {
	l := newLedger(t)
	for i := range n {
		l.appendAt(domain.AccountStream("alice"), t0.Add(time.Duration(i/3)*time.Minute), depositEvent("alice", "1", domain.CNY))
	}
	r := b.newRM(t)
	catchUp(t, r, l.store)
	return l, r
}

func TestStatementPagination(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		_, r := statementLedger(t, b, 250)
		ctx := context.Background()

		t.Run("pages of 100/100/50 without duplicates or gaps", func(t *testing.T) {
			q := StatementQuery{AccountID: "alice"}
			var sizes []int
			var all []Entry
			for range 10 {
				p, err := r.Statement(ctx, q)
				if err != nil {
					t.Fatal(err)
				}
				sizes = append(sizes, len(p.Entries))
				all = append(all, p.Entries...)
				if p.NextCursor == "" {
					break
				}
				q.Cursor = p.NextCursor
			}
			if fmt.Sprint(sizes) != "[100 100 50]" {
				t.Fatalf("page sizes %v", sizes)
			}
			for i, e := range all {
				if e.Position != int64(i+1) {
					t.Fatalf("entry %d has position %d: duplicate or gap", i, e.Position)
				}
				if e.BalanceAfter.Amount.IntPart() != int64(i+1) {
					t.Fatalf("entry %d balance after %s", i, e.BalanceAfter)
				}
			}
		})

		t.Run("exact multiple ends without an empty page", func(t *testing.T) {
			p, err := r.Statement(ctx, StatementQuery{AccountID: "alice", Limit: 50, To: t0.Add(50 * time.Minute)}) // 150 entries
			if err != nil {
				t.Fatal(err)
			}
			n := len(p.Entries)
			for p.NextCursor != "" {
				if p, err = r.Statement(ctx, StatementQuery{AccountID: "alice", Limit: 50, To: t0.Add(50 * time.Minute), Cursor: p.NextCursor}); err != nil {
					t.Fatal(err)
				}
				if len(p.Entries) == 0 {
					t.Fatal("empty page after a cursor")
				}
				n += len(p.Entries)
			}
			if n != 150 {
				t.Fatalf("%d entries, want 150", n)
			}
		})

		periods := []struct {
			name       string
			from, to   time.Time
			limit      int
			want       int
			firstPos   int64
			pageCounts string
		}{
			{"whole history", time.Time{}, time.Time{}, 0, 250, 1, "[100 100 50]"},
			{"from only", t0.Add(80 * time.Minute), time.Time{}, 0, 10, 241, "[10]"},
			{"to only, exclusive", time.Time{}, t0.Add(1 * time.Minute), 0, 3, 1, "[3]"},
			{"middle period in pages of 30", t0.Add(10 * time.Minute), t0.Add(50 * time.Minute), 30, 120, 31, "[30 30 30 30]"},
			{"empty period", t0.Add(500 * time.Minute), t0.Add(600 * time.Minute), 10, 0, 0, "[0]"},
			{"from equals to", t0.Add(10 * time.Minute), t0.Add(10 * time.Minute), 10, 0, 0, "[0]"},
		}
		for _, tc := range periods {
			t.Run("period "+tc.name, func(t *testing.T) {
				q := StatementQuery{AccountID: "alice", From: tc.from, To: tc.to, Limit: tc.limit}
				var counts []int
				var all []Entry
				for range 20 {
					p, err := r.Statement(ctx, q)
					if err != nil {
						t.Fatal(err)
					}
					counts = append(counts, len(p.Entries))
					all = append(all, p.Entries...)
					if p.NextCursor == "" {
						break
					}
					q.Cursor = p.NextCursor
				}
				if len(all) != tc.want || fmt.Sprint(counts) != tc.pageCounts {
					t.Fatalf("%d entries in pages %v, want %d in %s", len(all), counts, tc.want, tc.pageCounts)
				}
				for i, e := range all {
					if i == 0 && e.Position != tc.firstPos {
						t.Fatalf("first position %d, want %d", e.Position, tc.firstPos)
					}
					if i > 0 && e.Position != all[i-1].Position+1 {
						t.Fatalf("gap or duplicate at %d", i)
					}
					if (!tc.from.IsZero() && e.Time.Before(tc.from)) || (!tc.to.IsZero() && !e.Time.Before(tc.to)) {
						t.Fatalf("entry at %s outside [%s, %s)", e.Time, tc.from, tc.to)
					}
				}
			})
		}

		t.Run("other account has an empty statement", func(t *testing.T) {
			p, err := r.Statement(ctx, StatementQuery{AccountID: "bob"})
			if err != nil || len(p.Entries) != 0 || p.NextCursor != "" {
				t.Fatalf("got %+v, %v", p, err)
			}
		})

		valid, err := r.Statement(ctx, StatementQuery{AccountID: "alice", Limit: 1})
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := base64.RawURLEncoding.DecodeString(valid.NextCursor)
		wrongVersion := append([]byte{9}, raw[1:]...)
		badSeq := append(append([]byte{}, raw[:17]...), 7)
		invalid := []struct {
			name  string
			q     StatementQuery
			field string
		}{
			{"cursor not base64", StatementQuery{AccountID: "alice", Cursor: "!!!not-base64"}, "cursor"},
			{"cursor too short", StatementQuery{AccountID: "alice", Cursor: "abc"}, "cursor"},
			{"cursor wrong version", StatementQuery{AccountID: "alice", Cursor: base64.RawURLEncoding.EncodeToString(wrongVersion)}, "cursor"},
			{"cursor bad side", StatementQuery{AccountID: "alice", Cursor: base64.RawURLEncoding.EncodeToString(badSeq)}, "cursor"},
			{"cursor huge", StatementQuery{AccountID: "alice", Cursor: strings.Repeat("A", 1000)}, "cursor"},
			{"limit above 100", StatementQuery{AccountID: "alice", Limit: 101}, "limit"},
			{"negative limit", StatementQuery{AccountID: "alice", Limit: -1}, "limit"},
			{"no account", StatementQuery{}, "account_id"},
			{"to before from", StatementQuery{AccountID: "alice", From: t0.Add(time.Hour), To: t0}, "to"},
		}
		for _, tc := range invalid {
			t.Run(tc.name, func(t *testing.T) {
				_, err := r.Statement(ctx, tc.q)
				wantInvalid(t, err, tc.field)
			})
		}
	})
}

func TestIdempotentRedelivery(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		l := newLedger(t)
		l.open("alice", domain.CNY)
		for i := range 30 {
			l.deposit("alice", "10", domain.CNY)
			l.pay("alice", fmt.Sprintf("m%d", i%4), "3.33", domain.CNY)
		}
		all, _ := l.store.ReadAll(context.Background(), 0, 1000)
		path := filepath.Join(t.TempDir(), "rm.db")
		r := b.openRM(t, path)
		catchUp(t, r, l.store)
		want := digest(t, r)
		wantBal, _ := r.Snapshot("alice")

		apply := func(r *ReadModels, events []eventstore.Event) {
			t.Helper()
			r.applyMu.Lock()
			defer r.applyMu.Unlock()
			items := make([]item, len(events))
			for i, e := range events {
				items[i] = decodeItem(e)
			}
			if err := r.applyLocked(context.Background(), items); err != nil {
				t.Fatal(err)
			}
		}
		check := func(name string, r *ReadModels) {
			t.Helper()
			if got := digest(t, r); got != want {
				t.Errorf("%s: digest changed", name)
			}
			if bal, cp := r.Snapshot("alice"); !bal.Equal(wantBal) || cp != l.head() {
				t.Errorf("%s: snapshot %s@%d, want %s@%d", name, bal, cp, wantBal, l.head())
			}
		}
		apply(r, all)
		check("same events twice", r)
		apply(r, all[10:20])
		check("overlapping middle slice", r)
		catchUp(t, r, l.store)
		check("catch up again", r)

		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		r2 := b.openRM(t, path)
		apply(r2, all)
		check("redelivery after restart", r2)
	})
}

func TestRestartKeepsStateAndContinues(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		l := newLedger(t)
		l.open("alice", domain.CNY)
		l.deposit("alice", "100", domain.CNY)
		l.pay("alice", "bob", "25.5", domain.CNY)
		path := filepath.Join(t.TempDir(), "rm.db")
		r := b.openRM(t, path)
		catchUp(t, r, l.store)
		before := digest(t, r)
		cp := r.Checkpoint()
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}

		r = b.openRM(t, path)
		if r.Checkpoint() != cp {
			t.Fatalf("checkpoint %d after reopen, want %d", r.Checkpoint(), cp)
		}
		if bal, c := r.Snapshot("alice"); bal.String() != "74.5" || c != cp {
			t.Fatalf("snapshot %s@%d after reopen", bal, c)
		}
		if b := balanceOf(t, r, "alice"); !b.Found || b.Available.Currency != domain.CNY {
			t.Fatalf("balance after reopen %+v", b)
		}
		if digest(t, r) != before {
			t.Fatal("digest changed by reopening")
		}

		l.withdraw("alice", "4.5", domain.CNY)
		l.pay("bob", "alice", "0.5", domain.CNY)
		catchUp(t, r, l.store)
		if bal, c := r.Snapshot("alice"); bal.String() != "70.5" || c != l.head() {
			t.Fatalf("snapshot %s@%d after continuing", bal, c)
		}
		if got := allEntries(t, r, "alice"); len(got) != 4 || got[3].BalanceAfter.String() != "70.50" {
			t.Fatalf("entries after continuing: %+v", got)
		}

		fresh := b.newRM(t)
		catchUp(t, fresh, l.store)
		if digest(t, fresh) != digest(t, r) {
			t.Fatal("restart-and-continue differs from a fresh build")
		}
	})
}

// workload appends a mixed, multi-currency history.
func workload(l *ledger, n int) {
	accounts := []string{"a", "b", "c", "d", "e"}
	for _, a := range accounts {
		l.open(a, domain.CNY)
	}
	l.open("u", "USD")
	for i := range n {
		a, b := accounts[i%5], accounts[(i+2)%5]
		switch i % 4 {
		case 0:
			l.deposit(a, fmt.Sprintf("%d.%02d", 50+i%7, i%100), domain.CNY)
		case 1:
			l.pay(a, b, "1.01", domain.CNY)
		case 2:
			l.deposit("u", "2.5", "USD")
			l.add(domain.AccountStream(a), domain.LoginFailed{DeviceID: "x", FailedAttempts: 1})
		case 3:
			l.withdraw(a, "0.99", domain.CNY)
		}
	}
}

func TestRebuildGivesSameDigest(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		l := newLedger(t)
		workload(l, 40)

		// Incremental: a live Run receiving the log in bursts.
		inc := b.newRM(t)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- inc.Run(ctx, l.store) }()
		for burst := range 5 {
			workload(l, 10+burst*7)
			if err := inc.WaitFor(ctx, l.head()); err != nil {
				t.Fatal(err)
			}
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("Run returned %v, want context.Canceled", err)
		}
		incremental := digest(t, inc)

		fresh := b.newRM(t)
		catchUp(t, fresh, l.store)
		if got := digest(t, fresh); got != incremental {
			t.Fatalf("fresh catch-up digest %s, incremental %s", got, incremental)
		}
		if err := inc.Rebuild(context.Background(), l.store); err != nil {
			t.Fatal(err)
		}
		if got := digest(t, inc); got != incremental {
			t.Fatalf("rebuilt digest %s, incremental %s", got, incremental)
		}
		if inc.Checkpoint() != l.head() {
			t.Fatalf("checkpoint after rebuild %d, want %d", inc.Checkpoint(), l.head())
		}

		// The digest does see content: one more event changes it.
		l.deposit("a", "0.01", domain.CNY)
		catchUp(t, fresh, l.store)
		if digest(t, fresh) == incremental {
			t.Fatal("digest did not change with content")
		}
	})
}

func TestTotalsBalance(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		l := newLedger(t)
		workload(l, 101)
		r := b.newRM(t)
		catchUp(t, r, l.store)
		tot, err := r.Totals(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if err := tot.Check(); err != nil {
			t.Fatal(err)
		}
		if tot.AsOfPosition != l.head() || len(tot.Currencies) != 2 {
			t.Fatalf("totals %+v", tot)
		}
		// Independent sum over the log: every money event's amount is one debit.
		want := map[domain.Currency]decimal.Decimal{}
		events, _ := l.store.ReadAll(context.Background(), 0, 10000)
		for _, e := range events {
			ev, err := domain.DecodeEvent(e.Type, e.SchemaVersion, e.Payload)
			if err != nil {
				t.Fatal(err)
			}
			if m, ok := domain.MovementOf(ev); ok {
				want[m.Amount.Currency] = want[m.Amount.Currency].Add(m.Amount.Amount)
			}
		}
		accounts := map[domain.Currency]int{"CNY": 6, "USD": 2} // a..e + clearing; u + clearing
		for _, c := range tot.Currencies {
			if !c.Debits.Amount.Equal(want[c.Currency]) || !c.Credits.Amount.Equal(want[c.Currency]) {
				t.Errorf("%s: debits %s credits %s, want %s", c.Currency, c.Debits, c.Credits, want[c.Currency])
			}
			if !c.Balances.Amount.IsZero() || c.Accounts != accounts[c.Currency] {
				t.Errorf("%s: balances %s over %d accounts", c.Currency, c.Balances, c.Accounts)
			}
		}
		broken := Totals{Currencies: []CurrencyTotals{{Currency: "CNY", Debits: money("1", "CNY"), Credits: money("2", "CNY"), Balances: money("1", "CNY")}}}
		if broken.Check() == nil {
			t.Fatal("Check accepted debits != credits")
		}
	})
}

func TestRunLiveAndWaitFor(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		l := newLedger(t)
		l.open("alice", domain.CNY)
		l.deposit("alice", "10", domain.CNY)
		r := b.newRM(t)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx, l.store) }()

		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		defer wcancel()
		if err := r.WaitFor(wctx, 2); err != nil {
			t.Fatal(err)
		}
		// Appended after Run started: picked up live.
		var last eventstore.Event
		for range 50 {
			last = l.deposit("alice", "1", domain.CNY)
		}
		if err := r.WaitFor(wctx, last.Position); err != nil {
			t.Fatal(err)
		}
		if b := balanceOf(t, r, "alice"); b.Available.String() != "60.00" || b.AsOfPosition < last.Position {
			t.Fatalf("balance %+v", b)
		}
		// Waiting for a position nobody writes ends with the context.
		short, scancel := context.WithTimeout(ctx, 20*time.Millisecond)
		defer scancel()
		if err := r.WaitFor(short, last.Position+1); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("WaitFor beyond head: %v", err)
		}
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Run returned %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not stop")
		}
	})
}

func TestUndecodableEventIsAnError(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		good := mustJSON(t, depositEvent("alice", "5", domain.CNY))
		cases := []struct {
			name string
			data eventstore.EventData
			want string
		}{
			{"unknown type", eventstore.EventData{Type: "Bogus", SchemaVersion: 1, Payload: []byte(`{}`)}, "unknown event type Bogus"},
			{"unknown schema version", eventstore.EventData{Type: domain.TypeFundsDeposited, SchemaVersion: 9, Payload: good}, "version 9"},
			{"malformed payload", eventstore.EventData{Type: domain.TypeFundsDeposited, SchemaVersion: 1, Payload: []byte(`{"amount":`)}, "decode"},
			{"currency mismatch", eventstore.EventData{Type: domain.TypeFundsDeposited, SchemaVersion: 1,
				Payload: mustJSON(t, depositEvent("alice", "5", "USD"))}, "account alice is in CNY"},
		}
		for _, tc := range cases {
			for _, mode := range []string{"CatchUp", "Run"} {
				t.Run(tc.name+"/"+mode, func(t *testing.T) {
					l := newLedger(t)
					l.open("alice", domain.CNY)
					l.deposit("alice", "1", domain.CNY)
					d := tc.data
					d.ID, d.OccurredAt = newID(), t0
					l.appendRaw(domain.AccountStream("alice"), d) // position 3
					l.deposit("alice", "1", domain.CNY)
					r := b.newRM(t)
					var err error
					if mode == "CatchUp" {
						err = r.CatchUp(context.Background(), l.store)
					} else {
						ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
						defer cancel()
						err = r.Run(ctx, l.store)
					}
					if err == nil || !strings.Contains(err.Error(), "position 3") || !strings.Contains(err.Error(), tc.want) {
						t.Fatalf("error %v, want one naming position 3 and %q", err, tc.want)
					}
					if r.Checkpoint() != 2 {
						t.Fatalf("checkpoint %d, want 2 (right before the bad event)", r.Checkpoint())
					}
					if bal, _ := r.Snapshot("alice"); bal.String() != "1" {
						t.Fatalf("balance %s, want 1", bal)
					}
				})
			}
		}
	})
}

// TestSnapshotIsConsistent checks, under -race, that Snapshot's balance and
// checkpoint always belong together while Run applies: every event is a
// deposit of 1 to alice, so the balance must equal the checkpoint.
func TestSnapshotIsConsistent(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		l := newLedger(t)
		r := b.newRM(t)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx, l.store) }()

		var wg sync.WaitGroup
		stop := make(chan struct{})
		errs := make(chan error, 8)
		for range 4 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					bal, cp := r.Snapshot("alice")
					if !bal.Equal(decimal.NewFromInt(cp)) {
						errs <- fmt.Errorf("snapshot %s at checkpoint %d", bal, cp)
						return
					}
					if _, err := r.Statement(ctx, StatementQuery{AccountID: "alice", Limit: 5}); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		for range 20 {
			batch := make([]eventstore.EventData, 0, 25)
			for range 25 {
				typ, v, p, _ := domain.EncodeEvent(depositEvent("alice", "1", domain.CNY))
				batch = append(batch, eventstore.EventData{ID: newID(), Type: typ, SchemaVersion: v, OccurredAt: t0, Payload: p})
			}
			if _, err := l.store.Append(ctx, domain.AccountStream("alice"), eventstore.Any, batch); err != nil {
				t.Fatal(err)
			}
		}
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		defer wcancel()
		if err := r.WaitFor(wctx, 500); err != nil {
			t.Fatal(err)
		}
		close(stop)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		cancel()
		<-done
		if bal, cp := r.Snapshot("alice"); bal.IntPart() != 500 || cp != 500 {
			t.Fatalf("final snapshot %s@%d", bal, cp)
		}
	})
}

func TestOpenRejectsBadPath(t *testing.T) {
	for _, p := range []string{"", "a?b", "x#y"} {
		if _, err := Open(p); err == nil {
			t.Errorf("Open(%q) succeeded", p)
		}
	}
}

// TestCatchUpCanceledReportsContext: a catch-up whose context ends reports
// the context's error, whatever step it was in. database/sql rolls a
// transaction back when its context ends and then reports only that the
// transaction is done, which a caller could not tell from a failure.
func TestCatchUpCanceledReportsContext(t *testing.T) {
	forBackends(t, func(t *testing.T, be backend) {
		l := newLedger(t)
		a, b := newID(), newID()
		l.open(a, domain.CNY)
		l.open(b, domain.CNY)
		l.deposit(a, "1000000.00", domain.CNY)
		for range 20000 {
			l.pay(a, b, "0.01", domain.CNY)
		}
		for i := range 20 {
			r := be.newRM(t)
			wait := time.Duration(i) * 500 * time.Microsecond
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			err := r.CatchUp(ctx, l.store)
			cancel()
			if err != nil && !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("catch-up ended after %v: %v; want nil or the context's error", wait, err)
			}
		}
	})
}

// TestWithCause: an error after the context ended says so; other errors
// are left alone.
func TestWithCause(t *testing.T) {
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	err := withCause(ended, sql.ErrTxDone)
	if !errors.Is(err, context.Canceled) || !errors.Is(err, sql.ErrTxDone) {
		t.Errorf("ended: %v, want both the error and context.Canceled", err)
	}
	if err := withCause(context.Background(), sql.ErrTxDone); err != sql.ErrTxDone {
		t.Errorf("live: %v, want sql.ErrTxDone unchanged", err)
	}
	if err := withCause(ended, nil); err != nil {
		t.Errorf("no error: %v", err)
	}
	wrapped := fmt.Errorf("begin: %w", context.Canceled)
	if err := withCause(ended, wrapped); err != wrapped {
		t.Errorf("already the context's error: %v, want it unchanged", err)
	}
}
