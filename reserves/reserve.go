package reserves

import (
	"fmt"
	"maps"
	"slices"
	"unicode/utf8"

	"github.com/shopspring/decimal"

	"github.com/payledger/payledger/domain"
)

// Refusal codes of reserve decisions.
const (
	// CodeReserveShortfall: the reserve holds less than the compensation
	// owed; a ReserveShortfall event records it.
	CodeReserveShortfall = "reserve_shortfall"
	// CodeReserveFloor: a release would take the reserve below the
	// policy's floor or below zero.
	CodeReserveFloor = "reserve_floor"
	// CodeDayNotOver: a close was asked for a day that has not ended.
	CodeDayNotOver = "day_not_over"
)

// Reserve is the state of one currency's reserve stream.
type Reserve struct {
	Currency domain.Currency
	// Version is the stream version (events applied).
	Version int64
	closes  map[Day]domain.DayClosed
	// paid sums compensation paid per case and kind.
	paid map[string]decimal.Decimal
	// compensated maps each payment compensated to its case.
	compensated map[string]string
	// short are the cases whose shortfall is recorded and not paid since.
	short       map[string]bool
	adjustments map[string]bool
	moves       []move
	movesNet    decimal.Decimal
}

// move is a reserve movement of the reserve's own stream, kept until the
// balances projection has counted it (as the account aggregate does).
type move struct {
	position int64
	before   decimal.Decimal
}

// NewReserve returns the empty reserve of currency c.
func NewReserve(c domain.Currency) *Reserve {
	return &Reserve{Currency: c, closes: map[Day]domain.DayClosed{}, paid: map[string]decimal.Decimal{},
		compensated: map[string]string{}, short: map[string]bool{}, adjustments: map[string]bool{}, movesNet: decimal.Zero}
}

// Apply folds one event of the reserve stream.
func (r *Reserve) Apply(e domain.Event, rec domain.Recorded) {
	r.Version = rec.Version
	if m, ok := domain.MovementOf(e); ok {
		reserve := domain.ReserveAccountID(r.Currency)
		switch {
		case m.Credit == reserve && m.Debit != reserve:
			r.addMove(rec.Position, m.Amount.Amount)
		case m.Debit == reserve && m.Credit != reserve:
			r.addMove(rec.Position, m.Amount.Amount.Neg())
		}
	}
	switch v := e.(type) {
	case domain.DayClosed:
		r.closes[Day(v.Day)] = v
	case domain.CompensationPaid:
		k := v.CaseID + "/" + v.Kind
		r.paid[k] = r.paid[k].Add(v.Amount.Amount)
		for _, p := range v.PaymentIDs {
			r.compensated[p] = v.CaseID
		}
		delete(r.short, v.CaseID)
	case domain.ReserveShortfall:
		r.short[v.CaseID] = true
	case domain.ReserveAdjusted:
		r.adjustments[v.AdjustmentID] = true
	}
}

func (r *Reserve) addMove(pos int64, delta decimal.Decimal) {
	r.moves = append(r.moves, move{position: pos, before: r.movesNet})
	r.movesNet = r.movesNet.Add(delta)
}

// Available is the reserve's balance: the projection's figure at its
// checkpoint plus the reserve's own movements after it. Money arriving
// from other streams (recoveries) only counts once projected, so a lagging
// projection understates the reserve and never overdraws it.
func (r *Reserve) Available(projected decimal.Decimal, checkpoint int64) domain.Money {
	i := 0
	for i < len(r.moves) && r.moves[i].position <= checkpoint {
		i++
	}
	if i == len(r.moves) {
		return domain.Money{Amount: projected, Currency: r.Currency}
	}
	return domain.Money{Amount: projected.Add(r.movesNet.Sub(r.moves[i].before)), Currency: r.Currency}
}

// Forget drops movements the projection has counted.
func (r *Reserve) Forget(checkpoint int64) {
	i := 0
	for i < len(r.moves) && r.moves[i].position <= checkpoint {
		i++
	}
	r.moves = append(r.moves[:0], r.moves[i:]...)
}

// Closed returns the close of day d, if the day was closed.
func (r *Reserve) Closed(d Day) (domain.DayClosed, bool) {
	c, ok := r.closes[d]
	return c, ok
}

// Closes returns every close, oldest day first.
func (r *Reserve) Closes() []domain.DayClosed {
	days := slices.Sorted(maps.Keys(r.closes))
	out := make([]domain.DayClosed, len(days))
	for i, d := range days {
		out[i] = r.closes[d]
	}
	return out
}

// Paid returns the compensation paid for a case of kind.
func (r *Reserve) Paid(caseID, kind string) decimal.Decimal { return r.paid[caseID+"/"+kind] }

// CompensatedIn returns the case a payment was compensated in, if any.
func (r *Reserve) CompensatedIn(paymentID string) (string, bool) {
	c, ok := r.compensated[paymentID]
	return c, ok
}

// Basis is what a day's close provisions on, taken from the log up to
// Through: the day's fee income and confirmed payment volume.
type Basis struct {
	FeeIncome domain.Money
	Volume    domain.Money
	Through   int64
}

// CloseDay decides the close of day d: the provisions the policy asks for
// and the DayClosed that makes a second close a no-op. balance is the
// reserve before the close. A day already closed returns no events.
func CloseDay(r *Reserve, d Day, b Basis, p Policy, balance domain.Money) []domain.Event {
	if _, done := r.closes[d]; done {
		return nil
	}
	c := r.Currency
	places := domain.MinorUnits(c)
	reserve := domain.ReserveAccountID(c)
	var out []domain.Event
	total := decimal.Zero
	add := func(source, debit string, basis domain.Money, amt decimal.Decimal) {
		if !amt.IsPositive() {
			return
		}
		out = append(out, domain.ReserveProvisioned{Day: string(d), Source: source, Policy: p.Version, Basis: basis,
			DebitAccount: debit, CreditAccount: reserve, Amount: domain.Money{Amount: amt, Currency: c}})
		total = total.Add(amt)
	}
	add(domain.SourceFeeIncome, domain.FeeIncomeAccountID(c), b.FeeIncome, b.FeeIncome.Amount.Mul(p.FeeShare).RoundFloor(places))
	add(domain.SourceVolume, domain.OwnFundsAccountID(c), b.Volume, b.Volume.Amount.Mul(p.VolumeShare).RoundFloor(places))
	if after := balance.Amount.Add(total); after.LessThan(p.Floor) {
		add(domain.SourceFloor, domain.OwnFundsAccountID(c), domain.Zero(c), p.Floor.Sub(after).RoundCeil(places))
	}
	return append(out, domain.DayClosed{Day: string(d), Policy: p.Version, ThroughPosition: b.Through,
		FeeIncome: b.FeeIncome, Volume: b.Volume, Provisioned: domain.Money{Amount: total, Currency: c}})
}

// Adjust decides finance's top-up or release of amount. A release may not
// take the reserve below the policy's floor. A repeated adjustment id
// returns no events (the caller answers with the first).
func Adjust(r *Reserve, id, kind string, amount domain.Money, reason string, staff domain.Staff, p Policy, balance domain.Money) ([]domain.Event, error) {
	if r.adjustments[id] {
		return nil, nil
	}
	if reason == "" || utf8.RuneCountInString(reason) > 500 {
		return nil, domain.Invalid("reason", "a reserve adjustment needs a reason of at most 500 characters")
	}
	c := r.Currency
	ev := domain.ReserveAdjusted{AdjustmentID: id, Kind: kind, Amount: amount, Reason: reason, Staff: staff}
	switch kind {
	case domain.AdjustTopUp:
		ev.DebitAccount, ev.CreditAccount = domain.OwnFundsAccountID(c), domain.ReserveAccountID(c)
	case domain.AdjustRelease:
		if after := balance.Amount.Sub(amount.Amount); after.LessThan(p.Floor) || after.IsNegative() {
			return nil, &domain.Error{Code: CodeReserveFloor,
				Message: fmt.Sprintf("releasing %s would leave the reserve at %s, below its floor of %s", amount, after.StringFixed(domain.MinorUnits(c)), p.Floor.StringFixed(domain.MinorUnits(c))),
				Details: map[string]any{"available": balance.String(), "floor": p.Floor.StringFixed(domain.MinorUnits(c))}}
		}
		ev.DebitAccount, ev.CreditAccount = domain.ReserveAccountID(c), domain.OwnFundsAccountID(c)
	default:
		return nil, domain.Invalid("kind", `kind must be "top_up" or "release"`)
	}
	return []domain.Event{ev}, nil
}

// Compensate decides paying amount for a case from the reserve to credit
// (the holder's account, or compensation suspense). When the reserve holds
// less, it returns a ReserveShortfall to record and the refusal: the
// reserve never goes below zero.
func Compensate(r *Reserve, caseID, kind, credit string, paymentIDs []string, amount domain.Money, staff domain.Staff, balance domain.Money) ([]domain.Event, error) {
	for _, p := range paymentIDs {
		if other, ok := r.compensated[p]; ok {
			return nil, domain.Errorf(domain.CodeConflict, "payment %s was already compensated in case %s", p, other)
		}
	}
	if balance.Amount.LessThan(amount.Amount) {
		var events []domain.Event
		if !r.short[caseID] {
			// One shortfall is recorded per case until it is paid: the
			// regulator counts risk events, not retries.
			events = []domain.Event{domain.ReserveShortfall{CaseID: caseID, Needed: amount, Available: balance}}
		}
		return events, &domain.Error{Code: CodeReserveShortfall,
			Message: fmt.Sprintf("the risk reserve holds %s, less than the %s owed for case %s; finance must top it up, and the compensation is then paid", balance, amount, caseID),
			Details: map[string]any{"needed": amount.String(), "available": balance.String()}}
	}
	return []domain.Event{domain.CompensationPaid{CaseID: caseID, Kind: kind, PaymentIDs: paymentIDs, DebitAccount: domain.ReserveAccountID(r.Currency),
		CreditAccount: credit, Amount: amount, Staff: staff}}, nil
}
