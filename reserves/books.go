package reserves

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/payledger/payledger/domain"
)

// Recorded is a decoded event with what the log recorded about it.
type Recorded struct {
	Event      domain.Event
	Stream     string
	Position   int64
	OccurredAt time.Time
	// Hash is the event's hash in the log's chain (eventstore.Event.Hash).
	Hash [32]byte
}

// InstitutionAccount reports whether id is one of the institution's own
// accounts (clearing, own funds, fee income, reserve, compensation
// suspense) rather than a customer's.
func InstitutionAccount(id string) bool {
	for _, prefix := range []string{"clearing-", "own-funds-", "fee-income-", "risk-reserve-", "compensation-suspense-"} {
		if strings.HasPrefix(id, prefix) {
			return true
		}
	}
	return false
}

// AccountTotals is one account's side of the ledger as folded from the log.
type AccountTotals struct {
	Currency domain.Currency
	Debits   decimal.Decimal
	Credits  decimal.Decimal
}

// Balance is credits minus debits.
func (t AccountTotals) Balance() decimal.Decimal { return t.Credits.Sub(t.Debits) }

// dayKey names one currency's calendar day.
type dayKey struct {
	currency domain.Currency
	day      Day
}

// dayFigures is what the books keep of one currency's day.
type dayFigures struct {
	// feeIncome and volume count the day's fees and confirmed payments up
	// to the day's close (all of them while the day is not closed); late
	// the ones the log holds after the close's through position.
	feeIncome, volume decimal.Decimal
	lateEvents        int
	// reserve sums the reserve's movements of the day by kind (see
	// MovementKinds); provisions records the close's provisions by source.
	reserve map[string]decimal.Decimal
}

// Movement kinds of the reserve, as the daily close report lists them.
const (
	MoveProvisionFees   = "provision_fee_income"
	MoveProvisionVolume = "provision_volume"
	MoveProvisionFloor  = "provision_floor"
	MoveTopUp           = "top_up"
	MoveRelease         = "release"
	MoveCompensation    = "compensation"
	MoveRecovery        = "recovery"
)

// MovementKinds lists the reserve movement kinds in report order.
var MovementKinds = []string{MoveProvisionFees, MoveProvisionVolume, MoveProvisionFloor, MoveTopUp, MoveRelease, MoveCompensation, MoveRecovery}

// Books folds the whole log into what finance and the regulator are told:
// every account's debits and credits, each day's close basis and reserve
// movements, and each year's loss and compensation figures. Everything it
// reports is computed from the events it was given and nothing else.
type Books struct {
	loc    *time.Location
	closes map[dayKey]domain.DayClosed
	// Accounts holds every account's totals.
	Accounts map[string]AccountTotals
	days     map[dayKey]*dayFigures
	years    map[int]*yearFigures
	// cases are the loss cases' money as the log holds it.
	cases map[string]*caseBooks
	// reserveRun is each reserve's balance in log order, reserveLow the
	// lowest it reached.
	reserveRun, reserveLow map[domain.Currency]decimal.Decimal
	// Through is the last position folded.
	Through int64
}

// NewBooks returns empty books for the institution's zone. closes are the
// DayClosed events of the reserve streams, read first, so that a day's
// basis counts exactly the positions its close counted; a close's
// currency is its figures'.
func NewBooks(loc *time.Location, closes []domain.DayClosed) *Books {
	b := &Books{loc: loc, closes: map[dayKey]domain.DayClosed{}, Accounts: map[string]AccountTotals{},
		days: map[dayKey]*dayFigures{}, years: map[int]*yearFigures{},
		reserveRun: map[domain.Currency]decimal.Decimal{}, reserveLow: map[domain.Currency]decimal.Decimal{},
		cases: map[string]*caseBooks{}}
	for _, c := range closes {
		b.closes[dayKey{c.FeeIncome.Currency, Day(c.Day)}] = c
	}
	return b
}

func (b *Books) day(c domain.Currency, d Day) *dayFigures {
	k := dayKey{c, d}
	f := b.days[k]
	if f == nil {
		f = &dayFigures{feeIncome: decimal.Zero, volume: decimal.Zero, reserve: map[string]decimal.Decimal{}}
		b.days[k] = f
	}
	return f
}

// Add folds one event; events must come in position order.
func (b *Books) Add(r Recorded) error {
	if r.Position <= b.Through {
		return fmt.Errorf("reserves: position %d after %d: the books take the log in order", r.Position, b.Through)
	}
	b.Through = r.Position
	y := b.year(r.OccurredAt.In(b.loc).Year())
	y.positions(r.Position, r.Hash)
	if m, ok := domain.MovementOf(r.Event); ok {
		b.move(m, r)
	}
	d := DayOf(r.OccurredAt, b.loc)
	switch v := r.Event.(type) {
	case domain.FeeCharged:
		b.basis(v.Amount, d, r.Position, true)
	case domain.PaymentConfirmed:
		b.basis(v.Amount, d, r.Position, false)
	}
	y.event(b, r)
	b.caseEvent(r.Event)
	return nil
}

// caseBooks is one loss case's money in the log: its loss, what was paid
// in advance and in settlement, what was recovered, and whether an advance
// was paid after liability was determined.
type caseBooks struct {
	currency                          domain.Currency
	loss, advance, settled, recovered decimal.Decimal
	determined, lateAdvance           bool
}

func (b *Books) caseOf(id string) *caseBooks {
	c := b.cases[id]
	if c == nil {
		c = &caseBooks{}
		b.cases[id] = c
	}
	return c
}

func (b *Books) caseEvent(e domain.Event) {
	switch v := e.(type) {
	case domain.LossReported:
		c := b.caseOf(v.CaseID)
		c.loss, c.currency = v.Loss.Amount, v.Loss.Currency
	case domain.LiabilityDetermined:
		b.caseOf(v.CaseID).determined = true
	case domain.CompensationPaid:
		c := b.caseOf(v.CaseID)
		if v.Kind == domain.CompensationAdvance {
			c.advance = c.advance.Add(v.Amount.Amount)
			c.lateAdvance = c.lateAdvance || c.determined
		} else {
			c.settled = c.settled.Add(v.Amount.Amount)
		}
	case domain.CompensationRecovered:
		c := b.caseOf(v.CaseID)
		c.recovered = c.recovered.Add(v.Amount.Amount)
	}
}

// basis counts a fee or a payment towards its day's close basis.
func (b *Books) basis(m domain.Money, d Day, pos int64, fee bool) {
	f := b.day(m.Currency, d)
	if c, closed := b.closes[dayKey{m.Currency, d}]; closed && pos > c.ThroughPosition {
		f.lateEvents++
		return
	}
	if fee {
		f.feeIncome = f.feeIncome.Add(m.Amount)
	} else {
		f.volume = f.volume.Add(m.Amount)
	}
}

func (b *Books) move(m domain.Movement, r Recorded) {
	amt := m.Amount.Amount
	deb, cred := b.Accounts[m.Debit], b.Accounts[m.Credit]
	if deb.Currency == "" {
		deb = AccountTotals{Currency: m.Amount.Currency, Debits: decimal.Zero, Credits: decimal.Zero}
	}
	deb.Debits = deb.Debits.Add(amt)
	b.Accounts[m.Debit] = deb
	if m.Credit == m.Debit {
		cred = deb
	} else if cred.Currency == "" {
		cred = AccountTotals{Currency: m.Amount.Currency, Debits: decimal.Zero, Credits: decimal.Zero}
	}
	cred.Credits = cred.Credits.Add(amt)
	b.Accounts[m.Credit] = cred

	c := m.Amount.Currency
	reserve := domain.ReserveAccountID(c)
	if m.Debit == m.Credit || (m.Debit != reserve && m.Credit != reserve) {
		return
	}
	if m.Debit == reserve {
		amt = amt.Neg()
	}
	b.reserveRun[c] = b.reserveRun[c].Add(amt)
	if b.reserveRun[c].LessThan(b.reserveLow[c]) {
		b.reserveLow[c] = b.reserveRun[c]
	}
	kind := reserveMoveKind(r.Event)
	if kind == "" {
		kind = "other"
	}
	f := b.day(m.Amount.Currency, movementDay(r, b.loc))
	f.reserve[kind] = f.reserve[kind].Add(amt)
}

// movementDay is the day a reserve movement counts on: a provision on the
// day it provisions for (it is booked when that day is closed, early the
// next), every other movement on the day it happened.
func movementDay(r Recorded, loc *time.Location) Day {
	if p, ok := r.Event.(domain.ReserveProvisioned); ok {
		return Day(p.Day)
	}
	return DayOf(r.OccurredAt, loc)
}

// reserveMoveKind names the kind of a movement into or out of the reserve.
func reserveMoveKind(e domain.Event) string {
	switch v := e.(type) {
	case domain.ReserveProvisioned:
		switch v.Source {
		case domain.SourceFeeIncome:
			return MoveProvisionFees
		case domain.SourceVolume:
			return MoveProvisionVolume
		}
		return MoveProvisionFloor
	case domain.ReserveAdjusted:
		if v.Kind == domain.AdjustRelease {
			return MoveRelease
		}
		return MoveTopUp
	case domain.CompensationPaid:
		return MoveCompensation
	case domain.CompensationRecovered:
		return MoveRecovery
	}
	return ""
}

// ReserveBalanceBefore sums the reserve's movements of the days before d.
func (b *Books) ReserveBalanceBefore(c domain.Currency, d Day) decimal.Decimal {
	sum := decimal.Zero
	for k, f := range b.days {
		if k.currency == c && k.day < d {
			for _, v := range f.reserve {
				sum = sum.Add(v)
			}
		}
	}
	return sum
}

// DayReport is the daily close report of one currency's reserve.
type DayReport struct {
	Day       string            `json:"day"`
	Currency  string            `json:"currency"`
	Closed    bool              `json:"closed"`
	Opening   string            `json:"opening"`
	Movements map[string]string `json:"movements"`
	Closing   string            `json:"closing"`
	FeeIncome string            `json:"fee_income"`
	Volume    string            `json:"volume"`
	// Provisioned is what the close recorded; Expected what the policy
	// gives on the basis recomputed from the log.
	Provisioned string `json:"provisioned"`
}

// DayReport returns the close report of day d in currency c.
func (b *Books) DayReport(c domain.Currency, d Day) DayReport {
	places := domain.MinorUnits(c)
	open := b.ReserveBalanceBefore(c, d)
	f := b.day(c, d)
	rep := DayReport{Day: string(d), Currency: string(c), Opening: open.StringFixed(places), Movements: map[string]string{},
		FeeIncome: f.feeIncome.StringFixed(places), Volume: f.volume.StringFixed(places)}
	closing := open
	provisioned := decimal.Zero
	for _, k := range MovementKinds {
		v := f.reserve[k]
		rep.Movements[k] = v.StringFixed(places)
		closing = closing.Add(v)
		if strings.HasPrefix(k, "provision_") {
			provisioned = provisioned.Add(v)
		}
	}
	rep.Closing = closing.StringFixed(places)
	rep.Provisioned = provisioned.StringFixed(places)
	_, rep.Closed = b.closes[dayKey{c, d}]
	return rep
}

// Days returns the days the books hold figures for in currency c, in order.
func (b *Books) Days(c domain.Currency) []Day {
	var out []Day
	for k := range b.days {
		if k.currency == c {
			out = append(out, k.day)
		}
	}
	slices.Sort(out)
	return out
}

// Currencies returns the currencies the books hold accounts in, sorted.
func (b *Books) Currencies() []domain.Currency {
	set := map[domain.Currency]bool{}
	for _, a := range b.Accounts {
		set[a.Currency] = true
	}
	for k := range b.days {
		set[k.currency] = true
	}
	return slices.Sorted(maps.Keys(set))
}
