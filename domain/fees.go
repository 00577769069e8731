package domain

import (
	"fmt"
	"slices"

	"github.com/shopspring/decimal"
)

// FeeSchedule prices a payment: Rate times the amount plus Fixed, rounded
// half up to the currency's minor units, then held within [Min, Max] (a
// zero Max means no maximum). The zero schedule charges nothing. Version
// names the schedule on every fee it prices, so a figure in a report can
// be traced to the terms that applied.
type FeeSchedule struct {
	Version string          `json:"version"`
	Rate    decimal.Decimal `json:"rate"`
	Fixed   decimal.Decimal `json:"fixed"`
	Min     decimal.Decimal `json:"min"`
	Max     decimal.Decimal `json:"max"`
}

// maxFeeRate bounds a schedule's rate: a fee above a tenth of the payment
// is a configuration mistake, not a price.
var maxFeeRate = decimal.New(1, -1)

// Validate checks that the schedule can only ever price a fee of zero or
// more that fits the currency.
func (s FeeSchedule) Validate() error {
	switch {
	case s.Rate.IsNegative() || s.Fixed.IsNegative() || s.Min.IsNegative() || s.Max.IsNegative():
		return fmt.Errorf("fee schedule %q: rate, fixed, min and max must not be negative", s.Version)
	case s.Rate.GreaterThan(maxFeeRate):
		return fmt.Errorf("fee schedule %q: rate %s is above %s", s.Version, s.Rate, maxFeeRate)
	case !s.Max.IsZero() && s.Max.LessThan(s.Min):
		return fmt.Errorf("fee schedule %q: max %s is below min %s", s.Version, s.Max, s.Min)
	case s.Fixed.GreaterThan(maxAmount) || s.Min.GreaterThan(maxAmount) || s.Max.GreaterThan(maxAmount):
		return fmt.Errorf("fee schedule %q: amounts must be at most %s", s.Version, maxAmount)
	case !s.Free() && s.Version == "":
		return fmt.Errorf("a fee schedule that charges needs a version")
	case s.Fixed.Exponent() < -2 || s.Min.Exponent() < -2 || s.Max.Exponent() < -2:
		return fmt.Errorf("fee schedule %q: fixed, min and max have at most 2 decimal places", s.Version)
	}
	return nil
}

// Free reports whether the schedule charges nothing on any payment.
func (s FeeSchedule) Free() bool {
	return s.Rate.IsZero() && s.Fixed.IsZero() && s.Min.IsZero()
}

// FeeFor returns the fee of a payment of amount.
func (s FeeSchedule) FeeFor(amount Money) Money {
	if s.Free() {
		return Zero(amount.Currency)
	}
	places := minorUnits[amount.Currency]
	fee := amount.Amount.Mul(s.Rate).Add(s.Fixed).Round(places)
	// The bounds round inwards, so a currency with fewer places never
	// takes a fee outside them.
	if fee.LessThan(s.Min) {
		fee = s.Min.RoundCeil(places)
	}
	if !s.Max.IsZero() && fee.GreaterThan(s.Max) {
		fee = s.Max.RoundFloor(places)
	}
	return Money{Amount: fee, Currency: amount.Currency}
}

// MinorUnits returns how many decimal places amounts in c carry.
func MinorUnits(c Currency) int32 { return minorUnits[c] }

// Currencies returns the currencies the ledger keeps, sorted.
func Currencies() []Currency {
	out := make([]Currency, 0, len(minorUnits))
	for c := range minorUnits {
		out = append(out, c)
	}
	slices.Sort(out)
	return out
}
