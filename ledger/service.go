// Package ledger is the write path: it loads an account aggregate, lets the
// pure domain decide, appends the events under optimistic concurrency and
// retries a bounded number of times on conflict. HTTP handlers, the demo
// and the bench all go through it, so every entry point obeys the same
// rules. It also decides who may do what (Authorize, the one access table)
// and authenticates sessions and staff keys.
//
// It depends on the domain, the eventstore port and its own staffkeys; it
// must never import httpapi, a store adapter or cmd, which depend on it.
package ledger

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/oklog/ulid/v2"
	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/eventstore"
	"github.com/payledger/payledger/ledger/personaldata"
	"github.com/payledger/payledger/reserves"
	"github.com/shopspring/decimal"
)

// Balances is what the write path needs of the balances projection: an
// account's balance at the projection's checkpoint, read as one pair, and
// a wait for the projection to reach a position (a close must see every
// credit committed before it, see Close).
type Balances interface {
	Snapshot(accountID string) (balance decimal.Decimal, checkpoint int64)
	// WaitFor blocks until every event up to position has been applied,
	// or ctx is done.
	WaitFor(ctx context.Context, position int64) error
}

// Config wires a Service. Clock, IDs and Rand are injected so tests are
// deterministic.
type Config struct {
	Store    eventstore.Store
	Balances Balances
	Policy   domain.Policy
	Keys     *Keys
	// Clock returns "now"; it is read once per command.
	Clock func() time.Time
	// NewID returns a fresh ULID string.
	NewID func() string
	// Rand supplies salts and challenges.
	Rand io.Reader
	// MaxRetries bounds reload-and-retry on version conflicts (default 8).
	MaxRetries int
	// CacheSize bounds the number of cached aggregates (default 100000).
	CacheSize int
	// CloseWait bounds how long a close waits for the balances projection
	// to apply the credits committed before it (default 10 s).
	CloseWait time.Duration
	// SoleWriter declares that this Service is the only writer of the
	// account streams (the embedded store allows one writing process, and
	// serve runs one Service). Its cache is then authoritative and a
	// command skips the stream-tail read that otherwise picks up other
	// nodes' appends. Leave it false when several Services share a store;
	// the store must then be an eventstore.ConditionalStore, so that a
	// payment commits only if its payee's stream has not moved since its
	// status was read.
	SoleWriter bool
	// StaffKeys authenticates staff API keys; nil accepts none.
	StaffKeys StaffKeys
	// HashSlots bounds the password hashes (argon2id, 19 MiB each)
	// computed at once (default 4), and HashWait how long a command
	// waits for a slot before it is refused as rate_limited (default 2 s).
	HashSlots int
	HashWait  time.Duration
	// Reserves is the provisioning and compensation policy; its zero
	// value is reserves.DefaultPolicy in Policy.Location.
	Reserves reserves.Policy
	// SnapshotEvery is how many events of an account's stream pass
	// between snapshots of its aggregate (default 200; negative: none).
	SnapshotEvery int
	// OnSnapshotRejected, when set, hears of every snapshot a load did not
	// trust, and why.
	OnSnapshotRejected func(stream, reason string)
	// PersonalData holds the customers' data keys: the personal data of an
	// account's events and its snapshots are sealed with its key (R20).
	// Nil writes them in clear, as only tests of other rules do; serve
	// always sets it.
	PersonalData *personaldata.Store
}

// Service executes commands against account streams.
type Service struct {
	cfg Config
	// conditional is cfg.Store's conditional appends (nil when it has none).
	conditional eventstore.ConditionalStore
	cache       *cache
	status      statusLocks
	hashSlots   chan struct{}
	opens       *openKeys
	lastUse     *lastUse
	// hashTurns lets one password command per account stripe wait for a
	// hashing slot at a time.
	hashTurns []chan struct{}
	storage   storageHealth
	reserves  reserveBook
	snaps     struct {
		savers                  chan struct{}
		saved, loaded, rejected atomic.Int64
		// evictor is held while the snapshots of an evicted batch are
		// saved (snapshotEvicted).
		evictor chan struct{}
	}
}

// storageHealth remembers the last append that failed for a reason of the
// storage, until an append succeeds again.
type storageHealth struct {
	reason atomic.Pointer[string]
}

func (h *storageHealth) failed(err error) {
	r := err.Error()
	h.reason.Store(&r)
}

// succeeded clears a failure; the load keeps the append path free of
// writes to shared memory while all is well.
func (h *storageHealth) succeeded() {
	if h.reason.Load() != nil {
		h.reason.Store(nil)
	}
}

// StorageProblem returns why the last append failed for a reason of the
// storage, or "" when the log has been written since (or never failed).
func (s *Service) StorageProblem() string {
	if r := s.storage.reason.Load(); r != nil {
		return *r
	}
	return ""
}

// New returns a Service. Policy.Secrets is set to cfg.Keys.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Balances == nil || cfg.Keys == nil || cfg.Clock == nil || cfg.NewID == nil || cfg.Rand == nil {
		return nil, errors.New("ledger: Store, Balances, Keys, Clock, NewID and Rand are required")
	}
	conditional, ok := cfg.Store.(eventstore.ConditionalStore)
	if !cfg.SoleWriter && !ok {
		return nil, fmt.Errorf("ledger: a Service sharing its store with other writers (SoleWriter false) needs appends conditioned on other streams, which %T does not offer", cfg.Store)
	}
	if cfg.MaxRetries <= 0 {
		cfg.MaxRetries = 8
	}
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = 100000
	}
	if cfg.CloseWait <= 0 {
		cfg.CloseWait = 10 * time.Second
	}
	if cfg.HashSlots <= 0 {
		cfg.HashSlots = 4
	}
	if cfg.HashWait <= 0 {
		cfg.HashWait = 2 * time.Second
	}
	if cfg.SnapshotEvery == 0 {
		cfg.SnapshotEvery = defaultSnapshotEvery
	}
	cfg.Policy.Secrets = cfg.Keys
	if cfg.Reserves.Version == "" {
		cfg.Reserves = reserves.DefaultPolicy(cfg.Policy.Location)
	}
	if cfg.Reserves.Location == nil {
		cfg.Reserves.Location = cfg.Policy.Location
	}
	if cfg.Reserves.Location == nil {
		cfg.Reserves.Location = time.UTC
	}
	if err := cfg.Reserves.Validate(); err != nil {
		return nil, err
	}
	if err := cfg.Policy.Fees.Validate(); err != nil {
		return nil, err
	}
	turns := make([]chan struct{}, statusStripes)
	for i := range turns {
		turns[i] = make(chan struct{}, 1)
	}
	svc := &Service{hashTurns: turns, cfg: cfg, conditional: conditional, cache: newCache(cfg.CacheSize), status: newStatusLocks(),
		hashSlots: make(chan struct{}, cfg.HashSlots), opens: newOpenKeys(), lastUse: newLastUse(cfg.Policy.SessionIdle)}
	svc.snaps.savers = make(chan struct{}, snapshotSavers)
	svc.snaps.evictor = make(chan struct{}, 1)
	if cfg.SnapshotEvery >= 0 {
		svc.cache.onEvict = svc.snapshotEvicted
	}
	return svc, nil
}

// Policy returns the rules the service decides with.
func (s *Service) Policy() domain.Policy { return s.cfg.Policy }

// Keys returns the server keys (for rendering tokens and secrets).
func (s *Service) Keys() *Keys { return s.cfg.Keys }

// Now returns the injected clock's time.
func (s *Service) Now() time.Time { return s.cfg.Clock() }

// Idem identifies a client's retry of a command: the Idempotency-Key and a
// hash of the request it came with. The zero value means "no key".
type Idem struct {
	Key      string
	BodyHash string
}

// MaxIdemKey bounds the Idempotency-Key length.
const MaxIdemKey = 200

// stored is the form kept in the event envelope.
func (i Idem) stored() string {
	if i.Key == "" {
		return ""
	}
	return i.Key + "|" + i.BodyHash
}

// ValidateIdemKey checks a client-supplied Idempotency-Key.
func ValidateIdemKey(k string) error {
	// The key is stored in the events' text, which PostgreSQL's log holds
	// only as UTF-8 without NUL bytes; HTTP lets other bytes through.
	if len(k) > MaxIdemKey || strings.ContainsAny(k, "|\r\n\x00") || !utf8.ValidString(k) {
		return domain.Invalid("Idempotency-Key", "Idempotency-Key must be at most 200 characters of UTF-8 text without '|' or line breaks")
	}
	return nil
}

// Outcome is the result of a command that appended events (or replayed an
// earlier identical command).
type Outcome struct {
	AccountID string
	// Events are the committed envelopes, in order.
	Events []eventstore.Event
	// Decoded are the domain events of Events.
	Decoded []domain.Event
	// Refusal is set when the command was refused but its attempt was
	// recorded (a failed login, a rejected payment): the events are in the
	// log and the client gets this error.
	Refusal error
	// Replayed is true when the outcome is that of an earlier request with
	// the same Idempotency-Key and body.
	Replayed bool
	// Secret is the session token a login issued, shown once: a replay
	// never carries it.
	Secret string
}

// Builder makes the domain command from the current state. It runs under
// the account's lock, once per attempt.
type Builder func(a *domain.Account, now time.Time, bal domain.Balance) (domain.Command, error)

// Execute runs one command of op by the actor against accountID's stream,
// once Authorize allows it. The Idempotency-Key is scoped to the actor. It
// returns an error when nothing was appended (bad input, a refusal that
// records nothing, an infrastructure failure); otherwise the outcome,
// whose Refusal may still be set.
func (s *Service) Execute(ctx context.Context, by Actor, op Op, accountID string, idem Idem, build Builder) (Outcome, error) {
	if err := Authorize(by, op, accountID); err != nil {
		return Outcome{}, err
	}
	if accountID == "" {
		return Outcome{}, domain.Errorf(domain.CodeNotFound, "account not found")
	}
	if idem.Key != "" {
		idem.Key = by.scope() + ":" + idem.Key
	}
	return s.execute(ctx, accountID, idem, nil, build)
}

// execute is Execute once authorised, with conds on other streams for the
// append (several writers only); a condition not met is returned as an
// error wrapping eventstore.ErrConditionFailed, for the caller to read the
// other stream again.
func (s *Service) execute(ctx context.Context, accountID string, idem Idem, conds []eventstore.Condition, build Builder) (Outcome, error) {
	var lastErr error
	for attempt := 0; attempt < s.cfg.MaxRetries; attempt++ {
		out, retry, err := s.attempt(ctx, accountID, idem, conds, build)
		if !retry {
			return out, err
		}
		lastErr = err
	}
	return Outcome{}, domain.Errorf(domain.CodeVersionConflict, "account %s changed concurrently %d times; retry the request (%v)",
		accountID, s.cfg.MaxRetries, lastErr)
}

func (s *Service) attempt(ctx context.Context, accountID string, idem Idem, conds []eventstore.Condition, build Builder) (Outcome, bool, error) {
	ent := s.cache.lock(accountID)
	defer ent.mu.Unlock()
	if err := s.load(ctx, ent, accountID); err != nil {
		return Outcome{}, false, err
	}
	if idem.Key != "" {
		if rec, ok := ent.keys.keys[idem.Key]; ok {
			if rec.bodyHash != idem.BodyHash {
				return Outcome{}, false, domain.Errorf(domain.CodeIdempotencyReused,
					"Idempotency-Key %q was used with a different request", idem.Key)
			}
			evs, err := s.recorded(ctx, domain.AccountStream(accountID), rec)
			if err != nil {
				return Outcome{}, false, err
			}
			out, err := s.outcome(accountID, evs)
			out.Replayed = true
			return out, false, err
		}
	}
	now := s.cfg.Clock()
	proj, cp := s.cfg.Balances.Snapshot(accountID)
	ent.acct.Forget(cp)
	cmd, err := build(ent.acct, now, domain.Balance{Projected: proj, Checkpoint: cp})
	if err != nil {
		return Outcome{}, false, err
	}
	events, refusal := domain.Decide(ent.acct, cmd, s.cfg.Policy, now)
	if len(events) == 0 {
		if refusal == nil {
			refusal = domain.Errorf(domain.CodeInternal, "command produced no events")
		}
		if !ent.acct.Exists() {
			s.cache.drop(accountID, ent) // requests naming random ids do not fill the cache
		}
		return Outcome{}, false, refusal
	}
	data, err := s.encode(events, now, idem, accountID)
	if err != nil {
		return Outcome{}, false, err
	}
	res, err := s.append(ctx, domain.AccountStream(accountID), ent.acct.Version, data, conds)
	if errors.Is(err, eventstore.ErrConditionFailed) {
		return Outcome{}, false, err // this account's state stands; the caller rereads the other stream
	}
	if errors.Is(err, eventstore.ErrVersionConflict) {
		ent.reset()
		return Outcome{}, true, err
	}
	if errors.Is(err, eventstore.ErrUnavailable) {
		ent.reset() // the append may or may not have landed: reload next time
		s.storage.failed(err)
		return Outcome{}, false, domain.Errorf(domain.CodeStorageUnavailable,
			"the event log cannot be written now (its storage is full, read-only or failing); the request was not acknowledged: retry later")
	}
	if err != nil {
		ent.reset() // the append may or may not have landed: reload next time
		return Outcome{}, false, fmt.Errorf("append to account %s: %w", accountID, err)
	}
	s.storage.succeeded()
	for i, e := range res.Events {
		ent.apply(events[i], e)
	}
	ent.publish()
	s.maybeSnapshot(ent, domain.AccountStream(accountID))
	out := Outcome{AccountID: accountID, Events: res.Events, Decoded: events, Refusal: refusal}
	return out, false, nil
}

// encode makes the envelopes of a command's events, with the personal
// data in them sealed with owner's data key (an account id; "" for events
// that carry none).
func (s *Service) encode(events []domain.Event, now time.Time, idem Idem, owner string) ([]eventstore.EventData, error) {
	data := make([]eventstore.EventData, len(events))
	var corr string
	key := idem.stored()
	for i, e := range events {
		id := s.cfg.NewID()
		if pd := s.cfg.PersonalData; pd != nil {
			sealed, personal, err := domain.MapPersonal(e, func(_, f string) (string, error) { return pd.Seal(owner, id, f) })
			if errors.Is(err, personaldata.ErrErased) {
				return nil, domain.Errorf(domain.CodePersonalDataErased,
					"the personal data of account %s is erased: nothing more about it can be recorded", owner)
			}
			if err != nil {
				return nil, fmt.Errorf("seal the personal data of %s: %w", e.EventType(), err)
			}
			if personal && owner == "" {
				return nil, fmt.Errorf("%s carries personal data but no owner", e.EventType())
			}
			e = sealed
		}
		typ, ver, payload, err := domain.EncodeEvent(e)
		if err != nil {
			return nil, err
		}
		if i == 0 {
			corr = id
		}
		data[i] = eventstore.EventData{ID: id, Type: typ, SchemaVersion: ver, OccurredAt: now,
			CorrelationID: corr, IdempotencyKey: key, Payload: payload}
	}
	return data, nil
}

// outcome rebuilds the outcome of recorded events (for an idempotent
// replay), including the refusal they recorded.
func (s *Service) outcome(accountID string, evs []eventstore.Event) (Outcome, error) {
	return s.outcomeOf(accountID, accountID, evs)
}

// outcomeOf is outcome for events whose personal data owner's key seals.
func (s *Service) outcomeOf(accountID, owner string, evs []eventstore.Event) (Outcome, error) {
	out := Outcome{AccountID: accountID, Events: evs}
	for _, e := range evs {
		d, err := s.decode(owner, e)
		if err != nil {
			return Outcome{}, fmt.Errorf("account %s position %d: %w", accountID, e.Position, err)
		}
		out.Decoded = append(out.Decoded, d)
	}
	out.Refusal = RefusalOf(out.Decoded, s.cfg.Policy)
	return out, nil
}

// decode turns an event of owner's stream into its domain event with its
// personal data opened: as written for a field in clear (an event older
// than the encryption), domain.ErasedText for a field whose key was
// erased. A field that does not open is an error, never read as erased.
func (s *Service) decode(owner string, e eventstore.Event) (domain.Event, error) {
	d, err := domain.DecodeEvent(e.Type, e.SchemaVersion, e.Payload)
	if err != nil {
		return d, err
	}
	return s.openPersonal(owner, e.ID, d)
}

// openPersonal opens the sealed fields of d, an event of eventID sealed
// with owner's key (see decode).
func (s *Service) openPersonal(owner, eventID string, d domain.Event) (domain.Event, error) {
	if s.cfg.PersonalData == nil {
		return d, nil
	}
	pd := s.cfg.PersonalData
	d, _, err := domain.MapPersonal(d, func(_, f string) (string, error) {
		if !personaldata.Sealed(f) {
			return f, nil
		}
		plain, err := pd.Open(owner, eventID, f)
		if errors.Is(err, personaldata.ErrErased) {
			return domain.ErasedText, nil
		}
		return plain, err
	})
	return d, err
}

// RefusalOf reconstructs the error that a recorded refusal returned, so an
// idempotent replay of a refused command answers exactly as the first time.
func RefusalOf(events []domain.Event, p domain.Policy) error {
	locked := func(until time.Time) error {
		u := until.UTC().Format(time.RFC3339Nano)
		return domain.Errorf(domain.CodeAccessLocked, "access is locked until %s", u).With("locked_until", u)
	}
	var refusal error
	for _, e := range events {
		switch v := e.(type) {
		case domain.LoginFailed:
			switch {
			case !v.LockedUntil.IsZero():
				refusal = locked(v.LockedUntil)
			case v.Code == domain.CodeFactorNotIndependent:
				refusal = domain.Errorf(domain.CodeFactorNotIndependent, "%s", v.Reason)
			default:
				refusal = domain.Errorf(domain.CodeAuthFailed, "%s", v.Reason).With("attempts_remaining", p.MaxFailures-v.FailedAttempts)
			}
		case domain.VerificationFailed:
			if !v.LockedUntil.IsZero() {
				refusal = locked(v.LockedUntil)
				break
			}
			refusal = domain.Errorf(domain.CodeProofInvalid, "%s", v.Reason).With("attempts_remaining", p.MaxFailures-v.FailedAttempts)
		case domain.AccessLocked:
			until := v.Until.UTC().Format(time.RFC3339Nano)
			refusal = domain.Errorf(domain.CodeAccessLocked, "%d failed attempts lock access until %s", v.FailedAttempts, until).
				With("locked_until", until)
		case recordedRefusal:
			refusal = v.Refusal()
		}
	}
	return refusal
}

// append appends to stream, with conds when there are any: every store
// the ledger runs on offers conditional appends, and one that does not
// fails the append rather than losing the conditions.
func (s *Service) append(ctx context.Context, stream string, expected int64, data []eventstore.EventData, conds []eventstore.Condition) (eventstore.AppendResult, error) {
	if len(conds) == 0 {
		return s.cfg.Store.Append(ctx, stream, expected, data)
	}
	if s.conditional == nil {
		return eventstore.AppendResult{}, fmt.Errorf("append to %s: %T cannot check the append's conditions on other streams", stream, s.cfg.Store)
	}
	return s.conditional.AppendIf(ctx, stream, expected, data, conds)
}

// recordedRefusal is an event that records the refusal its client got
// (a rejected payment, withdrawal or change).
type recordedRefusal interface{ Refusal() *domain.Error }

// load brings the cached aggregate up to date: from scratch when the entry
// is new or was reset, otherwise by reading the stream's tail after the
// cached version (DESIGN.md: "cache of recent aggregates + stream tail from
// the store"). Reading the tail matters when another node appended: a
// decision that records nothing (a payment initiated on another node looks
// "not found", a payee opened there looks missing, a deposit made there is
// not available to a withdrawal) never reaches the expected-version check
// that would otherwise reveal the stale cache. What another node appends
// after the tail read is still caught by that check.
func (s *Service) load(ctx context.Context, ent *entry, accountID string) error {
	if ent.acct != nil && s.cfg.SoleWriter {
		return nil
	}
	stream := domain.AccountStream(accountID)
	if ent.acct == nil {
		if err := s.restoreSnapshot(ctx, ent, stream); err != nil {
			return fmt.Errorf("load account %s: %w", accountID, err)
		}
	}
	if ent.acct == nil {
		ent.acct = domain.NewAccount(s.cfg.Policy.Location)
		ent.keys = keyBook{}
		ent.snapVersion = 0
	}
	from := ent.acct.Version + 1
	for batch := 0; batch < maxLoadBatches; batch++ {
		evs, err := s.cfg.Store.ReadStream(ctx, stream, from, loadBatch)
		if err != nil {
			ent.reset()
			return fmt.Errorf("load account %s: %w", accountID, err)
		}
		for _, e := range evs {
			d, err := s.decode(accountID, e)
			if err != nil {
				ent.reset()
				return fmt.Errorf("load account %s at position %d: %w", accountID, e.Position, err)
			}
			ent.apply(d, e)
		}
		if len(evs) < loadBatch {
			ent.publish()
			if err := s.completeErasure(ent, accountID); err != nil {
				ent.reset()
				return err
			}
			s.maybeSnapshot(ent, stream)
			return nil
		}
		from = evs[len(evs)-1].Version + 1
	}
	ent.reset()
	return fmt.Errorf("load account %s: more than %d events", accountID, maxLoadBatches*loadBatch)
}

const (
	loadBatch      = 1000
	maxLoadBatches = 100000
	// keysPerAccount bounds the idempotency keys remembered per account.
	keysPerAccount = 256
)

// keyRecord is what an Idempotency-Key produced: the hash of its request
// and the stream versions of the events it appended, which a replay reads
// back from the log (keeping the events themselves in memory cost a copy
// of every recent payload per cached account).
type keyRecord struct {
	bodyHash string
	versions []int64
}

// keyBook remembers what the last keysPerAccount Idempotency-Keys of a
// stream produced, from the keys its events recorded.
type keyBook struct {
	keys  map[string]keyRecord
	order []string
}

// record notes an event under the key it was appended with, if any.
func (b *keyBook) record(ev eventstore.Event) {
	if ev.IdempotencyKey == "" {
		return
	}
	if b.keys == nil {
		b.keys = map[string]keyRecord{}
	}
	key, hash, _ := strings.Cut(ev.IdempotencyKey, "|")
	rec, ok := b.keys[key]
	if !ok {
		b.order = append(b.order, key)
		if len(b.order) > keysPerAccount {
			delete(b.keys, b.order[0])
			b.order = b.order[1:]
		}
	}
	rec.bodyHash = hash
	rec.versions = append(rec.versions, ev.Version)
	b.keys[key] = rec
}

// recorded reads back the events a key's request appended to stream.
func (s *Service) recorded(ctx context.Context, stream string, rec keyRecord) ([]eventstore.Event, error) {
	if len(rec.versions) == 0 {
		return nil, domain.Errorf(domain.CodeInternal, "idempotency key of %s recorded no event", stream)
	}
	first, last := rec.versions[0], rec.versions[len(rec.versions)-1]
	if last-first >= eventstore.MaxReadBatch {
		return nil, domain.Errorf(domain.CodeInternal, "idempotency key of %s spans %d events", stream, last-first+1)
	}
	evs, err := s.cfg.Store.ReadStream(ctx, stream, first, int(last-first+1))
	if err != nil {
		return nil, fmt.Errorf("replay from %s: %w", stream, err)
	}
	out := make([]eventstore.Event, 0, len(rec.versions))
	for _, e := range evs {
		if slices.Contains(rec.versions, e.Version) {
			out = append(out, e)
		}
	}
	if len(out) != len(rec.versions) {
		return nil, fmt.Errorf("replay from %s: %d of the key's %d events read back", stream, len(out), len(rec.versions))
	}
	return out, nil
}

// entry is one cached aggregate; its mutex serialises this process's
// commands on the account.
type entry struct {
	mu   sync.Mutex
	acct *domain.Account
	keys keyBook
	// snapVersion is the version of the last snapshot saved or loaded,
	// lastHash the hash of the last event folded.
	snapVersion int64
	lastHash    [32]byte
	// payee is the account as a payee (existence, status, currency) as of
	// acct, published after each load and append so that a payment to the
	// account can read it without mu, which the account's own commands
	// hold while their appends wait for the disk (see peekPayee); nil
	// while acct is not loaded.
	payee atomic.Pointer[domain.Payee]
}

func (e *entry) reset() {
	e.acct, e.keys = nil, keyBook{}
	e.payee.Store(nil)
}

// publish makes acct's payee view readable without mu; mu is held.
func (e *entry) publish() {
	p := domain.Payee{Exists: e.acct.Exists(), Status: e.acct.Status, Currency: e.acct.Currency}
	if old := e.payee.Load(); old == nil || *old != p {
		e.payee.Store(&p)
	}
}

func (e *entry) apply(d domain.Event, ev eventstore.Event) {
	e.acct.Apply(d, domain.Recorded{Version: ev.Version, Position: ev.Position, OccurredAt: ev.OccurredAt})
	e.keys.record(ev)
	e.lastHash = ev.Hash
}

// cache holds aggregates by account id, bounded by size.
type cache struct {
	mu      sync.Mutex
	entries map[string]*entry
	max     int
	// onEvict, when set, is handed the dropped entries that are at least
	// snapshotBehind events past their snapshot, after mu is released.
	onEvict func([]evicted)
}

// evicted is an entry the cache dropped, with its account id.
type evicted struct {
	id  string
	ent *entry
}

func newCache(max int) *cache { return &cache{entries: map[string]*entry{}, max: max} }

// lock returns the locked entry for id, evicting unlocked entries when the
// cache is full.
func (c *cache) lock(id string) *entry {
	c.mu.Lock()
	ent, ok := c.entries[id]
	var dropped []evicted
	if !ok {
		if len(c.entries) >= c.max {
			dropped = c.evictLocked(c.max / 10)
		}
		ent = &entry{}
		c.entries[id] = ent
	}
	c.mu.Unlock()
	if len(dropped) > 0 && c.onEvict != nil {
		c.onEvict(dropped)
	}
	ent.mu.Lock()
	return ent
}

// drop removes id's entry, held by the caller, when it is still ent: an
// account that does not exist is not kept, so unauthenticated requests
// naming random ids cannot fill the cache.
func (c *cache) drop(id string, ent *entry) {
	c.mu.Lock()
	if c.entries[id] == ent {
		delete(c.entries, id)
	}
	c.mu.Unlock()
}

// payee returns the published payee view of id's cached aggregate, or nil
// when it is not cached or not loaded; it takes no aggregate's lock.
func (c *cache) payee(id string) *domain.Payee {
	c.mu.Lock()
	ent := c.entries[id]
	c.mu.Unlock()
	if ent == nil {
		return nil
	}
	return ent.payee.Load()
}

// evictLocked drops up to n idle entries. An entry in use is skipped; a
// dropped entry still held by a waiter is harmless: the waiter works on its
// own copy and the next command reloads from the store. It returns the
// dropped entries worth a snapshot (see onEvict).
func (c *cache) evictLocked(n int) []evicted {
	var behind []evicted
	for id, ent := range c.entries {
		if n <= 0 {
			break
		}
		if ent.mu.TryLock() {
			delete(c.entries, id)
			if ent.behind() >= snapshotBehind {
				behind = append(behind, evicted{id, ent})
			}
			ent.mu.Unlock()
			n--
		}
	}
	return behind
}

// statusStripes is the number of status locks; accounts share them by hash.
const statusStripes = 1024

// statusLocks order payments to an account against changes of its status
// (R14): ConfirmPayment holds the payee's lock shared from its read of the
// payee's status to the end of its append, Suspend, Reactivate and Close
// hold it exclusively. A fixed table striped by account id, not a lock per
// cached aggregate, so that evicting an aggregate cannot drop a lock that
// is held. No one waits for a status lock while holding another lock, and
// no one holds two, so they cannot deadlock with the aggregates' locks.
type statusLocks struct {
	seed    maphash.Seed
	stripes *[statusStripes]sync.RWMutex
}

func newStatusLocks() statusLocks {
	return statusLocks{seed: maphash.MakeSeed(), stripes: new([statusStripes]sync.RWMutex)}
}

// of returns the status lock of accountID.
func (l statusLocks) of(accountID string) *sync.RWMutex {
	return &l.stripes[maphash.String(l.seed, accountID)%statusStripes]
}

// NewULIDSource returns an id generator for the given clock and entropy,
// monotonic within a millisecond, safe for concurrent use. When the
// monotonic counter of one millisecond overflows (2^80 ids), it starts a new
// random sequence instead of failing; only an entropy source that keeps
// failing is fatal, since no id can be made without it.
func NewULIDSource(clock func() time.Time, entropy io.Reader) func() string {
	var mu sync.Mutex
	mono := ulid.Monotonic(entropy, 0)
	return func() string {
		mu.Lock()
		defer mu.Unlock()
		ts := ulid.Timestamp(clock())
		for attempt := 0; attempt < 3; attempt++ {
			id, err := ulid.New(ts, mono)
			if err == nil {
				return id.String()
			}
			mono = ulid.Monotonic(entropy, 0)
		}
		panic("ledger: the entropy source keeps failing; no id can be generated")
	}
}
