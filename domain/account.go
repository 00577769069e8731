package domain

import (
	"slices"
	"time"

	"github.com/shopspring/decimal"
)

// Account statuses.
const (
	StatusActive    = "active"
	StatusSuspended = "suspended"
	StatusClosed    = "closed"
)

// Factor is an enrolled authentication factor as the aggregate knows it.
type Factor struct {
	ID           string
	Method       string
	Category     string
	DeviceID     string
	PasswordHash string
	SealedSecret []byte
	PublicKey    []byte
	Active       bool
	// Revoked is final: a revoked factor cannot be reset back to life,
	// unlike one reported lost, whose credential can be replaced.
	Revoked bool
	// UsableFrom is when the factor may first move money (cooling-off).
	UsableFrom time.Time
}

// Session is a login session as the aggregate knows it: only the hash of
// its token is in the log.
type Session struct {
	ID        string
	TokenHash []byte
	DeviceID  string
	FactorIDs []string
	Start     time.Time
	ExpiresAt time.Time
}

// maxSessions bounds the open sessions of an account; a new login past it
// ends the oldest.
const maxSessions = 16

// Recorded carries the store's facts about an event, needed by the
// aggregate: where it sits in the global log (for the balance rule) and when
// it happened (for calendar-day limits).
type Recorded struct {
	Version    int64
	Position   int64
	OccurredAt time.Time
}

// ownMove is a money event of this account's own stream, kept until the
// balances projection has passed its position. before is the net of every
// own move added before this one (Account.movesNet then), so the moves
// after any checkpoint sum to movesNet minus the first one's before: two
// decimal operations per decision instead of one per move the projection
// has not counted yet (their number grows with its lag).
type ownMove struct {
	position int64
	before   decimal.Decimal
}

// dayUsage sums one calendar day's payments by verification level (R10).
// noCert (single + two) and all (noCert + cert) are kept as the payments
// are added, so reading them allocates nothing.
type dayUsage struct {
	day    int // dayKey; 0 before the first payment
	single decimal.Decimal
	two    decimal.Decimal
	cert   decimal.Decimal
	noCert decimal.Decimal
	all    decimal.Decimal
}

// finishedLimit bounds how many finished payment ids an account remembers
// (for clear errors on late confirmations); older ones are forgotten, and
// idempotency keys cover client retries.
const finishedLimit = 64

// Account is the aggregate of one account stream. Its state changes only in
// Apply; decisions read it and return events.
type Account struct {
	ID          string
	HolderName  string
	Currency    Currency
	Kind        string
	Status      string
	AgreedLimit Money
	Phone       string
	// Version is the number of events applied (the stream version).
	Version int64
	// LastPosition is the global position of the last applied event.
	LastPosition int64

	factors     map[string]*Factor
	failures    int
	lockedUntil time.Time
	otpLast     map[string]int64
	bank        *BankAccountBound
	pending     map[string]PaymentInitiated
	finished    map[string]string
	finOrder    []string
	moves       []ownMove
	movesNet    decimal.Decimal // the net of every own move added
	usage       dayUsage
	loc         *time.Location
	sessions    []Session // oldest first, at most maxSessions
	// staffSuspended is true while a suspension an operator made holds.
	staffSuspended bool
	// depositRefs maps each credited bank reference to its deposit.
	depositRefs map[string]string
	devices     map[string]*Device
	// recovered sums the compensation taken back per loss case.
	recovered map[string]decimal.Decimal
	// lastAt is when the account's last operation happened, from which
	// its retention runs (R2); erased is set once its personal data was
	// erased (R20).
	lastAt time.Time
	erased bool
	// claims maps each payment claimed in a loss case to the case.
	claims map[string]string
}

// NewAccount returns the empty aggregate for an account stream. loc is the
// institution's time zone, used to bucket payments into calendar days.
func NewAccount(loc *time.Location) *Account {
	if loc == nil {
		loc = time.UTC
	}
	return &Account{
		factors:  map[string]*Factor{},
		otpLast:  map[string]int64{},
		pending:  map[string]PaymentInitiated{},
		finished: map[string]string{},
		loc:      loc,

		depositRefs: map[string]string{},
		devices:     map[string]*Device{},
		recovered:   map[string]decimal.Decimal{},
		claims:      map[string]string{},
	}
}

// Exists reports whether the account has been opened.
func (a *Account) Exists() bool { return a.Status != "" }

// Factors returns the account's factors (active and retired).
func (a *Account) Factors() []Factor {
	out := make([]Factor, 0, len(a.factors))
	for _, f := range a.factors {
		out = append(out, *f)
	}
	return out
}

// Factor returns a copy of one factor, active or retired.
func (a *Account) Factor(id string) (Factor, bool) {
	f, ok := a.factors[id]
	if !ok {
		return Factor{}, false
	}
	return *f, true
}

// BankAccount returns the bound bank account, if any.
func (a *Account) BankAccount() (BankAccountBound, bool) {
	if a.bank == nil {
		return BankAccountBound{}, false
	}
	return *a.bank, true
}

// FailedAttempts returns the consecutive failed attempts since the last
// success or unlock.
func (a *Account) FailedAttempts() int { return a.failures }

// LockedUntil returns the end of the current lock (zero when none).
func (a *Account) LockedUntil() time.Time { return a.lockedUntil }

// Session returns an open session by id.
func (a *Account) Session(id string) (Session, bool) {
	for _, s := range a.sessions {
		if s.ID == id {
			return s, true
		}
	}
	return Session{}, false
}

// categories counts the factor categories among the factors that include
// accepts, leaving out the factor except (a credential being reset).
func (a *Account) categories(except string, include func(*Factor) bool) int {
	var seen [3]string
	n := 0
	for _, f := range a.factors {
		if !include(f) || f.ID == except {
			continue
		}
		dup := false
		for _, c := range seen[:n] {
			dup = dup || c == f.Category
		}
		if !dup && n < len(seen) {
			seen[n] = f.Category
			n++
		}
	}
	return n
}

// activeFactors counts the active factors (R26: revoked and lost ones do
// not count towards the limit).
func (a *Account) activeFactors() int {
	n := 0
	for _, f := range a.factors {
		if f.Active {
			n++
		}
	}
	return n
}

// endSessionsOf ends the sessions that logged in with factor id.
func (a *Account) endSessionsOf(id string) {
	a.sessions = slices.DeleteFunc(a.sessions, func(s Session) bool { return slices.Contains(s.FactorIDs, id) })
}

// Pending returns an initiated payment that is still awaiting confirmation.
func (a *Account) Pending(paymentID string) (PaymentInitiated, bool) {
	p, ok := a.pending[paymentID]
	return p, ok
}

// Available is the balance a decision may spend: the balances projection's
// figure at its checkpoint plus this stream's own money events after it.
// Credits from other streams arrive only through the projection, so a
// lagging projection can only understate the balance, never overdraw.
func (a *Account) Available(projected decimal.Decimal, checkpoint int64) Money {
	// Moves are in position order: skip those the projection has counted.
	i := 0
	for i < len(a.moves) && a.moves[i].position <= checkpoint {
		i++
	}
	if i == len(a.moves) {
		return Money{Amount: projected, Currency: a.Currency}
	}
	return Money{Amount: projected.Add(a.movesNet.Sub(a.moves[i].before)), Currency: a.Currency}
}

// Recovered returns the compensation taken back from the account for a
// loss case.
func (a *Account) Recovered(caseID string) decimal.Decimal { return a.recovered[caseID] }

// ClaimedIn returns the loss case a payment is claimed in, if any.
func (a *Account) ClaimedIn(paymentID string) (string, bool) {
	c, ok := a.claims[paymentID]
	return c, ok
}

// Forget drops own money events the projection has already counted, so the
// aggregate's memory stays bounded by the projection's lag.
func (a *Account) Forget(checkpoint int64) {
	i := 0
	for i < len(a.moves) && a.moves[i].position <= checkpoint {
		i++
	}
	if i > 0 {
		a.moves = append(a.moves[:0], a.moves[i:]...)
	}
}

// DayUsage returns the sums used on now's calendar day: single-factor,
// without certificate (single + two-factor), and all payments.
func (a *Account) DayUsage(now time.Time) (single, noCert, all decimal.Decimal) {
	if a.usage.day == 0 || a.usage.day != dayKey(now, a.loc) {
		return decimal.Zero, decimal.Zero, decimal.Zero
	}
	u := a.usage
	return u.single, u.noCert, u.all
}

// dayKey identifies t's calendar day in loc as yyyymmdd, which orders days
// (for years 0 to 9999) as their dates do.
func dayKey(t time.Time, loc *time.Location) int {
	y, m, d := t.In(loc).Date()
	return y*10000 + int(m)*100 + d
}

// Apply folds one recorded event into the state. It is the only place state
// changes, and it never fails: events are facts.
func (a *Account) Apply(e Event, r Recorded) {
	a.Version = r.Version
	if r.Position > a.LastPosition {
		a.LastPosition = r.Position
	}
	if _, erasure := e.(PersonalDataErased); !erasure && r.OccurredAt.After(a.lastAt) {
		a.lastAt = r.OccurredAt
	}
	switch v := e.(type) {
	case PersonalDataErased:
		a.eraseState()
	case AccountOpened:
		a.ID, a.HolderName, a.Currency, a.Kind = v.AccountID, v.HolderName, v.Currency, v.Kind
		a.Status, a.AgreedLimit = StatusActive, v.AgreedDailyLimit
	case FactorEnrolled:
		a.factors[v.FactorID] = &Factor{ID: v.FactorID, Method: v.Method, Category: v.Category, DeviceID: v.DeviceID,
			PasswordHash: v.PasswordHash, SealedSecret: v.SealedSecret, PublicKey: v.PublicKey, Active: true, UsableFrom: v.UsableFrom}
		a.authorised(v.Authorised)
	case FactorRevoked:
		a.retire(v.FactorID)
		if f, ok := a.factors[v.FactorID]; ok {
			f.Revoked = true
		}
		a.authorised(v.Authorised)
	case CredentialLossReported:
		a.retire(v.FactorID)
	case CredentialReset:
		if f, ok := a.factors[v.FactorID]; ok {
			f.PasswordHash, f.SealedSecret, f.PublicKey, f.Active = v.PasswordHash, v.SealedSecret, v.PublicKey, true
			f.UsableFrom = v.UsableFrom
			delete(a.otpLast, v.FactorID)
		}
		a.endSessionsOf(v.FactorID)
		a.authorised(v.Authorised)
	case LoginSucceeded:
		a.failures = 0
		a.useOTPs(v.OTPUses)
		if len(a.sessions) >= maxSessions {
			a.sessions = slices.Delete(a.sessions, 0, len(a.sessions)-maxSessions+1)
		}
		a.sessions = append(a.sessions, Session{ID: v.SessionID, TokenHash: v.TokenHash, DeviceID: v.DeviceID,
			FactorIDs: v.FactorIDs, Start: r.OccurredAt, ExpiresAt: v.ExpiresAt})
	case DeviceRegistered:
		a.devices[v.DeviceID] = &Device{ID: v.DeviceID, PublicKey: v.PublicKey, Label: v.Label, LastSignedAt: v.SignedAt}
		a.authorised(v.Authorised)
	case DeviceRevoked:
		delete(a.devices, v.DeviceID)
		a.authorised(v.Authorised)
	case DeviceUsed:
		if d, ok := a.devices[v.DeviceID]; ok && v.SignedAt.After(d.LastSignedAt) {
			d.LastSignedAt = v.SignedAt
		}
	case SessionEnded:
		a.sessions = slices.DeleteFunc(a.sessions, func(s Session) bool { return s.ID == v.SessionID })
	case LoginFailed:
		a.failures = v.FailedAttempts
		a.useOTPs(v.OTPUses)
	case VerificationFailed:
		a.failures = v.FailedAttempts
		a.useOTPs(v.OTPUses)
	case AccessLocked:
		a.lockedUntil, a.failures = v.Until, v.FailedAttempts
	case AccessUnlocked:
		a.lockedUntil, a.failures = time.Time{}, 0
		a.useOTPs(v.Authorised.OTPUses)
	case LimitAdjusted:
		a.AgreedLimit = v.AgreedDailyLimit
		a.authorised(v.Authorised)
	case IdentityChanged:
		a.HolderName = v.HolderName
		a.authorised(v.Authorised)
	case PhoneChanged:
		a.Phone = v.Phone
		a.authorised(v.Authorised)
	case ChangeRejected:
		a.useOTPs(v.OTPUses)
	case BankAccountBound:
		b := v
		a.bank = &b
		a.authorised(v.Authorised)
	case FundsDeposited:
		a.addMove(r.Position, v.Amount.Amount, false)
		if v.Reference != "" && v.StaffKey != "" {
			a.depositRefs[bankRefKey(v.Reference)] = v.DepositID
		}
	case PaymentInitiated:
		a.pending[v.PaymentID] = v
	case PaymentConfirmed:
		a.failures = 0
		a.useOTPs(v.OTPUses)
		a.finish(v.PaymentID, "completed")
		a.addMove(r.Position, v.Amount.Amount, true)
		a.addUsage(r.OccurredAt, v.VerificationLevel, v.Amount.Amount)
	case PaymentRejected:
		a.useOTPs(v.OTPUses)
		a.finish(v.PaymentID, "rejected")
	case FeeCharged:
		a.addMove(r.Position, v.Amount.Amount, true)
	case LossClaimed:
		for _, p := range v.PaymentIDs {
			a.claims[p] = v.CaseID
		}
	case CompensationRecovered:
		a.addMove(r.Position, v.Amount.Amount, true)
		a.recovered[v.CaseID] = a.recovered[v.CaseID].Add(v.Amount.Amount)
	case FundsWithdrawn:
		a.failures = 0
		a.useOTPs(v.OTPUses)
		a.addMove(r.Position, v.Amount.Amount, true)
	case WithdrawalRejected:
		a.useOTPs(v.OTPUses)
	case ServiceSuspended:
		a.Status = StatusSuspended
		a.staffSuspended = v.StaffKey != ""
	case ServiceReactivated:
		a.Status = StatusActive
		a.staffSuspended = false
	case AccountClosed:
		a.Status = StatusClosed
		a.sessions = nil
	}
}

// authorised applies a sensitive change's verification: its proofs
// verified, which ends the run of failures like any verified instruction
// (R9), and its one-time passwords are spent (R7).
func (a *Account) authorised(x Authorised) {
	if len(x.FactorIDs) > 0 {
		a.failures = 0
	}
	a.useOTPs(x.OTPUses)
}

func (a *Account) retire(id string) {
	if f, ok := a.factors[id]; ok {
		f.Active = false
	}
	a.endSessionsOf(id)
}

func (a *Account) useOTPs(uses []OTPUse) {
	for _, u := range uses {
		if u.Step > a.otpLast[u.FactorID] {
			a.otpLast[u.FactorID] = u.Step
		}
	}
}

func (a *Account) addMove(pos int64, amount decimal.Decimal, debit bool) {
	a.moves = append(a.moves, ownMove{position: pos, before: a.movesNet})
	if debit {
		a.movesNet = a.movesNet.Sub(amount)
	} else {
		a.movesNet = a.movesNet.Add(amount)
	}
}

func (a *Account) finish(id, status string) {
	delete(a.pending, id)
	if _, seen := a.finished[id]; !seen {
		a.finOrder = append(a.finOrder, id)
	}
	a.finished[id] = status
	if len(a.finOrder) > finishedLimit {
		delete(a.finished, a.finOrder[0])
		// Shift in place rather than reslicing, so the slice does not
		// wander through ever new backing arrays.
		n := copy(a.finOrder, a.finOrder[1:])
		clear(a.finOrder[n:])
		a.finOrder = a.finOrder[:n]
	}
}

func (a *Account) addUsage(at time.Time, level string, amt decimal.Decimal) {
	day := dayKey(at, a.loc)
	if day != a.usage.day {
		if a.usage.day != 0 && day < a.usage.day {
			return // an older day's payment cannot change today's usage
		}
		a.usage = dayUsage{day: day, single: decimal.Zero, two: decimal.Zero, cert: decimal.Zero,
			noCert: decimal.Zero, all: decimal.Zero}
	}
	u := &a.usage
	switch level {
	case LevelSingleFactor:
		u.single = u.single.Add(amt)
	case LevelTwoFactor:
		u.two = u.two.Add(amt)
	default:
		u.cert = u.cert.Add(amt)
	}
	u.noCert = u.single.Add(u.two)
	u.all = u.noCert.Add(u.cert)
}
