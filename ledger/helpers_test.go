package ledger_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/eventstore"
	"github.com/payledger/payledger/eventstore/sqlite"
	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/staffkeys"
	"github.com/payledger/payledger/projections"
)

// lockedRand is a deterministic, concurrency-safe byte source.
type lockedRand struct {
	mu sync.Mutex
	r  *rand.ChaCha8
}

func newRand(seed byte) *lockedRand {
	var s [32]byte
	for i := range s {
		s[i] = seed + byte(i)
	}
	return &lockedRand{r: rand.NewChaCha8(s)}
}

func (l *lockedRand) Read(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.Read(p)
}

// fakeClock starts at a fixed instant and moves forward by step on every
// read, so time is strictly increasing and reproducible for a given call
// order. Advance jumps ahead (TOTP steps, lock expiry).
type fakeClock struct {
	nanos atomic.Int64
	step  time.Duration
}

func newClock(base time.Time, step time.Duration) *fakeClock {
	c := &fakeClock{step: step}
	c.nanos.Store(base.UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time { return time.Unix(0, c.nanos.Add(int64(c.step))).UTC() }

func (c *fakeClock) Advance(d time.Duration) { c.nanos.Add(int64(d)) }

// testBase is a weekday morning in the institution's zone, far from
// midnight, so no test crosses a calendar day by accident.
var testBase = time.Date(2025, 3, 10, 1, 0, 0, 0, time.UTC) // 09:00 in UTC+8

// env is one "deployment": a real SQLite event store and real read models
// in a temporary directory, the server keys and the injected clock and
// randomness. Services created from it are "nodes" sharing store, read
// models and keys.
type env struct {
	store  *sqlite.Store
	rm     *projections.ReadModels
	keys   *ledger.Keys
	clock  *fakeClock
	rnd    io.Reader
	policy domain.Policy
	newID  func() string
}

func newEnv(t testing.TB, seed byte) *env {
	t.Helper()
	dir := t.TempDir()
	store, err := sqlite.Open(filepath.Join(dir, "events.db"), sqlite.DefaultOptions())
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { store.Close() })
	rm, err := projections.Open(filepath.Join(dir, "readmodels.db"))
	if err != nil {
		t.Fatalf("open read models: %v", err)
	}
	t.Cleanup(func() { rm.Close() })
	rnd := newRand(seed)
	master := make([]byte, ledger.KeySize)
	if _, err := io.ReadFull(rnd, master); err != nil {
		t.Fatal(err)
	}
	keys, err := ledger.NewKeys(master, rnd)
	if err != nil {
		t.Fatalf("keys: %v", err)
	}
	clock := newClock(testBase, time.Millisecond)
	return &env{store: store, rm: rm, keys: keys, clock: clock, rnd: rnd,
		policy: domain.DefaultPolicy(time.FixedZone("Asia/Shanghai", 8*3600)),
		newID:  ledger.NewULIDSource(clock.Now, rnd)}
}

// config is the Config of a node over e; the store may be wrapped.
func (e *env) config() ledger.Config {
	return ledger.Config{Store: e.store, Balances: e.rm, Policy: e.policy, Keys: e.keys,
		Clock: e.clock.Now, NewID: e.newID, Rand: e.rnd}
}

func (e *env) node(t testing.TB, mod func(*ledger.Config)) *ledger.Service {
	t.Helper()
	cfg := e.config()
	if mod != nil {
		mod(&cfg)
	}
	s, err := ledger.New(cfg)
	if err != nil {
		t.Fatalf("ledger.New: %v", err)
	}
	return s
}

// runProjection feeds the read models concurrently, as serve does; the
// returned function stops it and waits.
func (e *env) runProjection(t testing.TB) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.rm.Run(ctx, e.store) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("projection Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func (e *env) head(t testing.TB) int64 {
	t.Helper()
	h, err := e.store.Head(context.Background())
	if err != nil {
		t.Fatalf("head: %v", err)
	}
	return h
}

// readAll returns the whole global log.
func readAll(t testing.TB, s eventstore.Store) []eventstore.Event {
	t.Helper()
	var all []eventstore.Event
	after := int64(0)
	for {
		evs, err := s.ReadAll(context.Background(), after, eventstore.MaxReadBatch)
		if err != nil {
			t.Fatalf("read all after %d: %v", after, err)
		}
		all = append(all, evs...)
		if len(evs) < eventstore.MaxReadBatch {
			return all
		}
		after = evs[len(evs)-1].Position
	}
}

func readStream(t testing.TB, s eventstore.Store, accountID string) []eventstore.Event {
	t.Helper()
	return readNamed(t, s, domain.AccountStream(accountID))
}

func readNamed(t testing.TB, s eventstore.Store, stream string) []eventstore.Event {
	t.Helper()
	evs, err := s.ReadStream(context.Background(), stream, 1, eventstore.MaxReadBatch)
	if err != nil {
		t.Fatalf("read stream %s: %v", stream, err)
	}
	return evs
}

func decode(t testing.TB, e eventstore.Event) domain.Event {
	t.Helper()
	d, err := domain.DecodeEvent(e.Type, e.SchemaVersion, e.Payload)
	if err != nil {
		t.Fatalf("decode position %d: %v", e.Position, err)
	}
	return d
}

// The actors the tests act as. Fixtures open accounts and enrol factors as
// an operator after an identity check, so the factors are usable at once
// (no cooling-off), credit money as the funding desk, and act on an
// account as its holder: an in-process call needs only the session's
// account and some session id (Authenticate is tested on its own).
var (
	operatorActor = ledger.Actor{KeyID: "key_test_operator", Role: staffkeys.RoleOperator}
	fundingActor  = ledger.Actor{KeyID: "key_test_funding", Role: staffkeys.RoleFunding}
	publicActor   = ledger.Actor{}
)

// testIdentityCheck is the identity check the test operator names.
const testIdentityCheck = "branch visit 0042"

func holderOf(accountID string) ledger.Actor {
	return ledger.Actor{AccountID: accountID, SessionID: "test"}
}

// bankRefs makes every test deposit's bank reference unique (a reference
// is credited once per account).
var bankRefs atomic.Int64

func nextBankRef(what string) string {
	return fmt.Sprintf("%s #%d", what, bankRefs.Add(1))
}

// fund deposits amount into accountID as the funding desk, under a fresh
// bank reference.
func fund(t testing.TB, s *ledger.Service, accountID, amount string) ledger.Outcome {
	t.Helper()
	out, err := s.Deposit(context.Background(), fundingActor, accountID, ledger.Idem{}, amount, "CNY", nextBankRef("transfer"))
	if err != nil {
		t.Fatalf("deposit %s into %s: %v", amount, accountID, err)
	}
	return out
}

// openAccount opens an account as the operator after an identity check,
// with the first factor f, and returns the outcome (AccountOpened and
// FactorEnrolled).
func openAccount(t testing.TB, s *ledger.Service, name, kind string, f ledger.EnrollRequest) ledger.Outcome {
	t.Helper()
	out, err := s.OpenAccount(context.Background(), operatorActor, ledger.Idem{},
		ledger.OpenRequest{HolderName: name, Currency: "CNY", Kind: kind, Factor: f, IdentityCheck: testIdentityCheck})
	if err != nil {
		t.Fatalf("open %s: %v", name, err)
	}
	if len(out.Decoded) != 2 {
		t.Fatalf("open %s: %d events, want AccountOpened and FactorEnrolled", name, len(out.Decoded))
	}
	return out
}

// firstFactor returns the FactorEnrolled of an OpenAccount outcome.
func firstFactor(t testing.TB, out ledger.Outcome) domain.FactorEnrolled {
	t.Helper()
	fe, ok := out.Decoded[1].(domain.FactorEnrolled)
	if !ok {
		t.Fatalf("open recorded %T second, want FactorEnrolled", out.Decoded[1])
	}
	return fe
}

// certKey returns a deterministic ed25519 key for seed.
func certKey(seed byte) ed25519.PrivateKey {
	var ks [ed25519.SeedSize]byte
	for i := range ks {
		ks[i] = seed ^ byte(i*7)
	}
	return ed25519.NewKeyFromSeed(ks[:])
}

// certHolder is an account with one certificate factor.
type certHolder struct {
	id     string
	factor string
	device string
	priv   ed25519.PrivateKey
}

// openCertAccount opens an account whose first factor is a certificate,
// as the operator after an identity check, so the certificate confirms
// payments at once.
func openCertAccount(t testing.TB, ctx context.Context, s *ledger.Service, name string, seed byte) certHolder {
	t.Helper()
	return openCertAccountKind(t, s, name, domain.KindPersonal, seed)
}

func openCertAccountKind(t testing.TB, s *ledger.Service, name, kind string, seed byte) certHolder {
	t.Helper()
	priv := certKey(seed)
	out := openAccount(t, s, name, kind, ledger.EnrollRequest{Method: domain.MethodCertificate, PublicKey: priv.Public().(ed25519.PublicKey)})
	return certHolder{id: out.AccountID, device: fmt.Sprintf("phone-%d", seed), priv: priv, factor: firstFactor(t, out).FactorID}
}

// actor is the holder's session.
func (h certHolder) actor() ledger.Actor { return holderOf(h.id) }

// stepUp is the holder's authorisation of a change of kind naming subject,
// from "laptop": the certificate's signature over the change's challenge
// at the account's current version, and more proofs.
func (h certHolder) stepUp(t testing.TB, s *ledger.Service, kind, subject string, more ...domain.Proof) domain.Authorisation {
	t.Helper()
	v, err := s.Account(context.Background(), h.actor(), h.id)
	if err != nil {
		t.Fatalf("read %s: %v", h.id, err)
	}
	proofs := append(h.proofs(domain.ChangeChallenge(kind, h.id, v.Version, subject)), more...)
	return domain.Authorisation{DeviceID: "laptop", Version: v.Version, Proofs: proofs}
}

func (h certHolder) proofs(challenge []byte) []domain.Proof {
	return []domain.Proof{{FactorID: h.factor, Signature: ed25519.Sign(h.priv, challenge)}}
}

func paymentReq(payee, amount string, device string) ledger.PaymentRequest {
	return ledger.PaymentRequest{PayeeID: payee, Amount: amount, Currency: "CNY", Channel: "app",
		Terminal: "mobile", DeviceID: device, Description: "test payment"}
}

// initiated returns the PaymentInitiated of an InitiatePayment outcome.
func initiated(t testing.TB, out ledger.Outcome) domain.PaymentInitiated {
	t.Helper()
	if len(out.Decoded) != 1 {
		t.Fatalf("initiate produced %d events, want 1", len(out.Decoded))
	}
	pi, ok := out.Decoded[0].(domain.PaymentInitiated)
	if !ok {
		t.Fatalf("initiate produced %T", out.Decoded[0])
	}
	return pi
}

func jsonOf(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("json: %v", err)
	}
	return string(b)
}

// hookStore wraps a Store to count and intercept appends.
type hookStore struct {
	eventstore.ConditionalStore
	appends   atomic.Int64
	conflicts atomic.Int64
	// before, when set, runs before each append; a non-nil error is
	// returned instead of appending.
	before func(stream string, expected int64) error
}

func (h *hookStore) Append(ctx context.Context, stream string, expected int64, events []eventstore.EventData) (eventstore.AppendResult, error) {
	return h.AppendIf(ctx, stream, expected, events, nil)
}

func (h *hookStore) AppendIf(ctx context.Context, stream string, expected int64, events []eventstore.EventData, conds []eventstore.Condition) (eventstore.AppendResult, error) {
	h.appends.Add(1)
	if h.before != nil {
		if err := h.before(stream, expected); err != nil {
			if errors.Is(err, eventstore.ErrVersionConflict) {
				h.conflicts.Add(1)
			}
			return eventstore.AppendResult{}, err
		}
	}
	res, err := h.ConditionalStore.AppendIf(ctx, stream, expected, events, conds)
	if errors.Is(err, eventstore.ErrVersionConflict) {
		h.conflicts.Add(1)
	}
	return res, err
}

// testPassword is the password enrolPassword enrols.
const testPassword = "correct horse battery"

// enrolPassword enrols a password factor on accountID, as the operator
// after an identity check, and returns its id.
func enrolPassword(t testing.TB, s *ledger.Service, accountID string) string {
	t.Helper()
	out, err := s.EnrollFactor(context.Background(), operatorActor, accountID, ledger.Idem{},
		ledger.EnrollRequest{Method: domain.MethodPassword, Password: testPassword, IdentityCheck: testIdentityCheck})
	if err != nil {
		t.Fatalf("enrol password: %v", err)
	}
	return out.Decoded[0].(domain.FactorEnrolled).FactorID
}

// device is a holder's registered device and its key.
type device struct {
	id    string
	priv  ed25519.PrivateKey
	clock func() time.Time
}

// registerDevice registers deviceID on the account as its holder, with a
// key from seed, as the account's first device (no step-up).
func registerDevice(t testing.TB, s *ledger.Service, clock func() time.Time, accountID, deviceID string, seed byte) device {
	t.Helper()
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
	pub := priv.Public().(ed25519.PublicKey)
	at := clock()
	sig := ed25519.Sign(priv, domain.DeviceChallenge(domain.ChangeKindDevice, accountID, deviceID, at, base64.StdEncoding.EncodeToString(pub)))
	out, err := s.RegisterDevice(context.Background(), holderOf(accountID), accountID, ledger.Idem{},
		ledger.DeviceRequest{DeviceID: deviceID, PublicKey: pub, SignedAt: at, Signature: sig})
	if err != nil || out.Refusal != nil {
		t.Fatalf("register device %s: %v / %v", deviceID, err, out.Refusal)
	}
	return device{id: deviceID, priv: priv, clock: clock}
}

// sign is the device's proof of an instruction of purpose about subject,
// signed now (the clock moves on, so each proof is newer than the last).
func (d device) sign(accountID, purpose, subject string) domain.DeviceProof {
	at := d.clock()
	return domain.DeviceProof{SignedAt: at, Signature: ed25519.Sign(d.priv, domain.DeviceChallenge(purpose, accountID, d.id, at, subject))}
}
