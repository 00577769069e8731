package sqlite

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/eventstore"
	"github.com/payledger/payledger/projections"
)

// formatSizes names a log to measure in TestFormatSizes.
var formatSizes = flag.String("format-sizes", "", "measure this event log (events.db, closed) as stored and rewritten in format 1, in a temporary directory")

// ledgerLog appends to s what the ledger appends for accounts that are
// opened, funded and then pay one another: per payment a PaymentInitiated
// (with its challenge) and a PaymentConfirmed in the payer's stream. Each
// of workers appends its own accounts' events, so the writer groups them
// into transactions of several events as it does under load; the streams'
// contents do not depend on that order.
func ledgerLog(t *testing.T, s *Store, accounts, payments, workers int) {
	t.Helper()
	ctx := context.Background()
	start := time.Date(2030, 1, 1, 9, 0, 0, 0, time.UTC)
	id := func(k int) string { return fmt.Sprintf("01JH%022d", k) }
	type worker struct {
		rng     *rand.Rand
		entropy *rand.ChaCha8
		at      time.Time
		mine    []string
	}
	ws := make([]*worker, workers)
	for w := range ws {
		ws[w] = &worker{rng: rand.New(rand.NewPCG(uint64(w), 15)), entropy: rand.NewChaCha8([32]byte{byte(w)}), at: start}
	}
	next := func(k *worker) eventstore.EventData {
		k.at = k.at.Add(time.Duration(1+k.rng.IntN(90_000)) * time.Millisecond)
		return eventstore.EventData{ID: ulid.MustNew(ulid.Timestamp(k.at), k.entropy).String(), OccurredAt: k.at}
	}
	appendEv := func(stream string, d eventstore.EventData, ev domain.Event) error {
		var err error
		d.Type, d.SchemaVersion, d.Payload, err = domain.EncodeEvent(ev)
		if err != nil {
			return err
		}
		_, err = s.Append(ctx, stream, eventstore.Any, []eventstore.EventData{d})
		return err
	}
	// Every account is opened and funded before the first payment names it.
	open := func(k *worker, w int) error {
		for a := w; a < accounts; a += workers {
			acct := id(a)
			k.mine = append(k.mine, acct)
			if err := appendEv(domain.AccountStream(acct), next(k), domain.AccountOpened{AccountID: acct, HolderName: fmt.Sprintf("Holder %d", a),
				Currency: domain.CNY, Kind: domain.KindPersonal, AgreedDailyLimit: domain.MustMoney("50000.00", domain.CNY)}); err != nil {
				return err
			}
			d := next(k)
			if err := appendEv(domain.AccountStream(acct), d, domain.FundsDeposited{DepositID: d.ID,
				DebitAccount: domain.ClearingAccountID(domain.CNY), CreditAccount: acct,
				Amount: domain.MustMoney("100000.00", domain.CNY), Reference: fmt.Sprintf("bank-%d", a)}); err != nil {
				return err
			}
		}
		return nil
	}
	pay := func(k *worker, w int) error {
		for p := w; p < payments; p += workers {
			payer, payee := k.mine[k.rng.IntN(len(k.mine))], id(k.rng.IntN(accounts))
			stream := domain.AccountStream(payer)
			amount := domain.MustMoney(fmt.Sprintf("%d.%02d", 1+k.rng.IntN(300), k.rng.IntN(100)), domain.CNY)
			challenge := make([]byte, 48)
			_, _ = k.entropy.Read(challenge)
			ini := next(k)
			ini.IdempotencyKey = fmt.Sprintf("pay-%d", p)
			paymentID := ini.ID
			if err := appendEv(stream, ini, domain.PaymentInitiated{PaymentID: paymentID, Payer: payer, Payee: payee, Amount: amount,
				Fee: domain.Zero(domain.CNY), Channel: "app", Terminal: "phone", DeviceID: "device-" + payer,
				Description: fmt.Sprintf("invoice %d", p), Challenge: challenge, ExpiresAt: k.at.Add(5 * time.Minute)}); err != nil {
				return err
			}
			conf := next(k)
			conf.CausationID, conf.CorrelationID = paymentID, paymentID
			if err := appendEv(stream, conf, domain.PaymentConfirmed{PaymentID: paymentID, DebitAccount: payer, CreditAccount: payee,
				Amount: amount, Fee: domain.Zero(domain.CNY), Description: fmt.Sprintf("invoice %d", p), VerificationLevel: "two_factor",
				Categories: []string{"knowledge", "possession"}, FactorIDs: []string{"password-" + payer, "totp-" + payer}, DeviceID: "device-" + payer,
				OTPUses:    []domain.OTPUse{{FactorID: "totp-" + payer, Step: k.at.Unix() / 30}},
				DailyLimit: domain.MustMoney("50000.00", domain.CNY), DailyUsed: amount}); err != nil {
				return err
			}
		}
		return nil
	}
	for _, phase := range []func(*worker, int) error{open, pay} {
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for w, k := range ws {
			wg.Go(func() {
				if err := phase(k, w); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
}

// verifyAndRebuild does what payledger verify and payledger rebuild do to
// the log at path: every hash chain and version walked through the reader
// and the indexes checked, then the read models replayed into a new file
// from a Store that opened it (migrating schema 3). It returns the events
// and the read models' digest, after checking that they balance.
func verifyAndRebuild(t *testing.T, path, rmPath string) ([]eventstore.Event, string) {
	t.Helper()
	ctx := context.Background()
	r, err := OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	var all []eventstore.Event
	type chain struct {
		version int64
		hash    [32]byte
	}
	chains := map[string]chain{}
	for after := int64(0); ; {
		batch, err := r.ReadAll(ctx, after, eventstore.MaxReadBatch)
		if err != nil {
			t.Fatal(err)
		}
		if len(batch) == 0 {
			break
		}
		for _, e := range batch {
			c := chains[e.Stream]
			if e.Version != c.version+1 {
				t.Fatalf("%s: stream %s version %d follows %d", path, e.Stream, e.Version, c.version)
			}
			if _, err := eventstore.VerifyChain(c.hash, []eventstore.Event{e}); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			chains[e.Stream] = chain{e.Version, e.Hash}
		}
		all = append(all, batch...)
		after = batch[len(batch)-1].Position
	}
	if n, err := r.CheckIndexes(ctx); err != nil || n != int64(len(all)) {
		t.Fatalf("%s: check indexes: %d events indexed (%v), want %d", path, n, err, len(all))
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}

	s := mustOpen(t, path, DefaultOptions())
	defer s.Close()
	rm, err := projections.Open(rmPath)
	if err != nil {
		t.Fatal(err)
	}
	defer rm.Close()
	if err := rm.Rebuild(ctx, s); err != nil {
		t.Fatalf("%s: rebuild: %v", path, err)
	}
	totals, err := rm.Totals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := totals.Check(); err != nil {
		t.Fatalf("%s: the rebuilt read models do not balance: %v", path, err)
	}
	digest, err := rm.Digest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return all, digest
}

// TestFormat1LogVerifiesAndRebuildsIdentical: a ledger's log stored as the
// writer stores it (format 3) and the same events as the build before
// format 2 stored them (format 1, schema 3) both verify, read back the same
// events, and rebuild to identical read models; format 3 stores them in at
// most a third of the bytes (issue 15, item 2).
func TestFormat1LogVerifiesAndRebuildsIdentical(t *testing.T) {
	dir := t.TempDir()
	f3, f1 := filepath.Join(dir, "format3.db"), filepath.Join(dir, "format1.db")
	s := mustOpen(t, f3, DefaultOptions())
	ledgerLog(t, s, 64, 3000, 32)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	n := rewriteFormat1(t, f3, f1)
	if n < 6000 {
		t.Fatalf("%d events copied, want the whole log", n)
	}
	z3 := measureLog(t, f3, filepath.Join(dir, "format3-vacuumed.db"))
	z1 := measureLog(t, f1, filepath.Join(dir, "format1-vacuumed.db"))
	t.Logf("format 1: %s", z1)
	t.Logf("format 3: %s", z3)
	if z1.events != n || z3.events != n {
		t.Fatalf("%d and %d events measured, want %d", z1.events, z3.events, n)
	}
	if 3*z3.segmentBytes > z1.segmentBytes {
		t.Errorf("format 3 stores %d segment bytes, format 1 %d: not 3x smaller", z3.segmentBytes, z1.segmentBytes)
	}

	events1, digest1 := verifyAndRebuild(t, f1, filepath.Join(dir, "rm1.db"))
	events3, digest3 := verifyAndRebuild(t, f3, filepath.Join(dir, "rm3.db"))
	if int64(len(events1)) != n || !reflect.DeepEqual(events1, events3) {
		t.Fatalf("format 1 reads %d events, format 3 %d, not the same", len(events1), len(events3))
	}
	if digest1 != digest3 {
		t.Fatalf("read models rebuilt from format 1 %s, from format 3 %s", digest1, digest3)
	}
	// Opening the old log migrated its schema and left its segments as
	// they were.
	formats := func(path string) (f1, f3 int) {
		t.Helper()
		s := mustOpen(t, path, DefaultOptions())
		defer s.Close()
		if err := s.rdb.QueryRow(`SELECT COUNT(*) FILTER (WHERE substr(events, 1, 1) = x'01'),
			COUNT(*) FILTER (WHERE substr(events, 1, 1) = x'03') FROM segments`).Scan(&f1, &f3); err != nil {
			t.Fatal(err)
		}
		return f1, f3
	}
	if a, b := formats(f1); a == 0 || b != 0 {
		t.Errorf("the format-1 log holds %d format-1 and %d format-3 segments after open", a, b)
	}
	if a, b := formats(f3); a != 0 || b == 0 {
		t.Errorf("the format-3 log holds %d format-1 and %d format-3 segments", a, b)
	}
}

// TestFormatSizes measures a log given with -format-sizes (such as one
// payledger bench --history wrote) as stored and rewritten in format 1:
//
//	go test ./eventstore/sqlite -run TestFormatSizes -v -format-sizes DIR/events.db
func TestFormatSizes(t *testing.T) {
	if *formatSizes == "" {
		t.Skip("no -format-sizes log to measure")
	}
	dir := t.TempDir()
	f1 := filepath.Join(dir, "format1.db")
	t0 := time.Now()
	n := rewriteFormat1(t, *formatSizes, f1)
	t.Logf("rewrote %d events in format 1 in %s", n, time.Since(t0).Round(time.Second))
	z2 := measureLog(t, *formatSizes, filepath.Join(dir, "format2-vacuumed.db"))
	z1 := measureLog(t, f1, filepath.Join(dir, "format1-vacuumed.db"))
	t.Logf("format 1: %s", z1)
	t.Logf("as stored: %s", z2)
	t.Logf("format 1 / as stored: segment bytes %.2fx, file bytes %.2fx",
		float64(z1.segmentBytes)/float64(z2.segmentBytes), float64(z1.fileBytes)/float64(z2.fileBytes))
	if z1.events != n || z2.events != n {
		t.Fatalf("%d and %d events measured, want %d", z1.events, z2.events, n)
	}
}
