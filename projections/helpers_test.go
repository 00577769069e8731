package projections

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/eventstore"
	"github.com/payledger/payledger/internal/pgtest"
)

var t0 = time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)

var clearingCNY = domain.ClearingAccountID(domain.CNY)

// ledger appends real domain events to a memStore with an injected clock.
type ledger struct {
	t     testing.TB
	store *memStore
	now   time.Time
	step  time.Duration
}

func newLedger(t testing.TB) *ledger {
	return &ledger{t: t, store: newMemStore(), now: t0, step: time.Minute}
}

func newID() string { return ulid.Make().String() }

func money(s string, c domain.Currency) domain.Money { return domain.MustMoney(s, c) }

// appendAt appends ev to stream at time at.
func (l *ledger) appendAt(stream string, at time.Time, ev domain.Event) eventstore.Event {
	l.t.Helper()
	typ, v, payload, err := domain.EncodeEvent(ev)
	if err != nil {
		l.t.Fatal(err)
	}
	return l.appendRaw(stream, eventstore.EventData{
		ID: newID(), Type: typ, SchemaVersion: v, OccurredAt: at, Payload: payload,
	})
}

func (l *ledger) appendRaw(stream string, d eventstore.EventData) eventstore.Event {
	l.t.Helper()
	res, err := l.store.Append(context.Background(), stream, eventstore.Any, []eventstore.EventData{d})
	if err != nil {
		l.t.Fatal(err)
	}
	return res.Events[0]
}

// add appends ev at the next clock tick.
func (l *ledger) add(stream string, ev domain.Event) eventstore.Event {
	l.t.Helper()
	l.now = l.now.Add(l.step)
	return l.appendAt(stream, l.now, ev)
}

func (l *ledger) open(id string, c domain.Currency) eventstore.Event {
	return l.add(domain.AccountStream(id), domain.AccountOpened{
		AccountID: id, HolderName: "holder " + id, Currency: c, Kind: domain.KindPersonal,
		AgreedDailyLimit: money("5000", c),
	})
}

func depositEvent(id, amount string, c domain.Currency) domain.FundsDeposited {
	return domain.FundsDeposited{
		DepositID: newID(), DebitAccount: domain.ClearingAccountID(c), CreditAccount: id,
		Amount: money(amount, c), Reference: "top-up",
	}
}

func (l *ledger) deposit(id, amount string, c domain.Currency) eventstore.Event {
	return l.add(domain.AccountStream(id), depositEvent(id, amount, c))
}

func payEvent(from, to, amount string, c domain.Currency) domain.PaymentConfirmed {
	return domain.PaymentConfirmed{
		PaymentID: newID(), DebitAccount: from, CreditAccount: to, Amount: money(amount, c),
		Fee: domain.Zero(c), Description: "pay " + to, VerificationLevel: "two_factor",
	}
}

func (l *ledger) pay(from, to, amount string, c domain.Currency) eventstore.Event {
	return l.add(domain.AccountStream(from), payEvent(from, to, amount, c))
}

func (l *ledger) withdraw(id, amount string, c domain.Currency) eventstore.Event {
	return l.add(domain.AccountStream(id), domain.FundsWithdrawn{
		WithdrawalID: newID(), DebitAccount: id, CreditAccount: domain.ClearingAccountID(c),
		Amount: money(amount, c), BankAccountLast4: "4242",
	})
}

func (l *ledger) head() int64 {
	h, _ := l.store.Head(context.Background())
	return h
}

func openRM(t testing.TB, path string) *ReadModels {
	t.Helper()
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func newRM(t testing.TB) *ReadModels {
	t.Helper()
	return openRM(t, filepath.Join(t.TempDir(), "readmodels.db"))
}

// backend opens read models on one of the two databases.
type backend struct {
	name string
	// open opens the read models key names: the same key in the same test
	// reopens the same ones (a file path for SQLite, a schema of its own
	// for PostgreSQL).
	open func(t testing.TB, key string) *ReadModels
}

// openRM opens the read models key names on b, closing them at the end.
func (b backend) openRM(t testing.TB, key string) *ReadModels {
	t.Helper()
	r := b.open(t, key)
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// newRM opens new, empty read models on b.
func (b backend) newRM(t testing.TB) *ReadModels {
	t.Helper()
	return b.openRM(t, filepath.Join(t.TempDir(), "readmodels.db"))
}

var (
	sqliteBackend = backend{name: "sqlite", open: func(t testing.TB, path string) *ReadModels {
		t.Helper()
		r, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}}
	postgresBackend = backend{name: "postgres", open: func(t testing.TB, key string) *ReadModels {
		t.Helper()
		dsn, schema := pgtest.Schema(t, key)
		r, err := OpenPostgres(context.Background(), dsn, schema)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}}
)

// forBackends runs fn once per backend, as subtests named after them. The
// PostgreSQL one is skipped with the reason when the test server does not
// answer, unless PAYLEDGER_REQUIRE_POSTGRES=1 (then it fails).
func forBackends(t *testing.T, fn func(t *testing.T, b backend)) {
	t.Helper()
	for _, b := range []backend{sqliteBackend, postgresBackend} {
		t.Run(b.name, func(t *testing.T) {
			if b.name == "postgres" {
				pgtest.DSN(t)
			}
			fn(t, b)
		})
	}
}

func catchUp(t testing.TB, r *ReadModels, s eventstore.Store) {
	t.Helper()
	if err := r.CatchUp(context.Background(), s); err != nil {
		t.Fatal(err)
	}
}

func digest(t testing.TB, r *ReadModels) string {
	t.Helper()
	d, err := r.Digest(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// allEntries reads an account's whole statement page by page.
func allEntries(t testing.TB, r *ReadModels, id string) []Entry {
	t.Helper()
	var out []Entry
	q := StatementQuery{AccountID: id}
	for range 10000 {
		p, err := r.Statement(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p.Entries...)
		if p.NextCursor == "" {
			return out
		}
		q.Cursor = p.NextCursor
	}
	t.Fatal("statement did not end")
	return nil
}

func balanceOf(t testing.TB, r *ReadModels, id string) Balance {
	t.Helper()
	b, err := r.Balance(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wantInvalid asserts err is a *domain.Error with code invalid_request
// naming field.
func wantInvalid(t testing.TB, err error, field string) {
	t.Helper()
	var de *domain.Error
	if !errors.As(err, &de) {
		t.Fatalf("error %v is not a *domain.Error", err)
	}
	if de.Code != domain.CodeInvalid || de.Details["field"] != field {
		t.Fatalf("error %v: code %s field %v, want %s field %s", err, de.Code, de.Details["field"], domain.CodeInvalid, field)
	}
}

func mustJSON(t testing.TB, ev domain.Event) []byte {
	t.Helper()
	_, _, p, err := domain.EncodeEvent(ev)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
