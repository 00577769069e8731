package domain

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/shopspring/decimal"
)

// Currency is an ISO 4217 code. Only the currencies in the table below are
// accepted, so an amount can always be checked against its minor units.
type Currency string

// CNY is the ledger's home currency (the regulation's amounts are in yuan).
const CNY Currency = "CNY"

// minorUnits lists the accepted currencies and how many decimal places
// their amounts may carry.
var minorUnits = map[Currency]int32{
	"CNY": 2, "USD": 2, "EUR": 2, "HKD": 2, "GBP": 2, "JPY": 0,
}

// ParseCurrency returns the currency for code, or an invalid_request error
// naming field when the code is not one the ledger keeps.
func ParseCurrency(code, field string) (Currency, error) {
	c := Currency(code)
	if _, ok := minorUnits[c]; !ok {
		return "", Invalid(field, fmt.Sprintf("unknown currency %q", code))
	}
	return c, nil
}

// Money is an exact amount in one currency. Amounts are never floats (R25).
type Money struct {
	Amount   decimal.Decimal
	Currency Currency
}

// ParseAmount parses a positive decimal string in currency c, rejecting
// more decimal places than the currency has, zero, negatives, exponents and
// anything that is not a plain decimal number. field names the input for the
// error.
func ParseAmount(s string, c Currency, field string) (Money, error) {
	units, ok := minorUnits[c]
	if !ok {
		return Money{}, Invalid("currency", fmt.Sprintf("unknown currency %q", c))
	}
	if !plainDecimal(s) {
		return Money{}, Invalid(field, fmt.Sprintf("amount %q is not a plain decimal number such as 12.50", s))
	}
	d, err := decimal.NewFromString(s)
	if err != nil {
		return Money{}, Invalid(field, fmt.Sprintf("amount %q is not a decimal number", s))
	}
	if -d.Exponent() > units {
		return Money{}, Invalid(field, fmt.Sprintf("amount %s has more than %d decimal places for %s", s, units, c))
	}
	if !d.IsPositive() {
		return Money{}, Invalid(field, fmt.Sprintf("amount %s must be greater than zero", s))
	}
	if d.GreaterThan(maxAmount) {
		return Money{}, Invalid(field, fmt.Sprintf("amount %s is larger than %s", s, maxAmount))
	}
	return Money{Amount: d, Currency: c}, nil
}

// maxAmount bounds a single amount so that sums of many of them stay far
// from any storage or display limit.
var maxAmount = decimal.New(1, 12)

// plainDecimal accepts digits with at most one dot and digits on both sides
// of it, optionally led by a minus (rejected later with a clear message);
// it refuses a plus sign, exponents, spaces and empty strings. It reads a
// request's string and, as bytes, a stored payload (fastdecode.go).
func plainDecimal[T string | []byte](s T) bool {
	if len(s) == 0 || len(s) > 40 {
		return false
	}
	i := 0
	if s[0] == '-' {
		i = 1
	}
	beforeDot, dot, afterDot := 0, false, 0
	for ; i < len(s); i++ {
		switch ch := s[i]; {
		case ch >= '0' && ch <= '9':
			if dot {
				afterDot++
			} else {
				beforeDot++
			}
		case ch == '.' && !dot:
			dot = true
		default:
			return false
		}
	}
	return beforeDot > 0 && (!dot || afterDot > 0)
}

// Zero returns a zero amount in c.
func Zero(c Currency) Money { return Money{Amount: decimal.Zero, Currency: c} }

// MustMoney builds a Money from a trusted literal such as a policy default.
// It panics on a malformed literal, so use it only with constants.
func MustMoney(s string, c Currency) Money {
	return Money{Amount: decimal.RequireFromString(s), Currency: c}
}

// String renders the amount with the currency's minor units, e.g. "12.50".
func (m Money) String() string {
	var buf [40]byte
	return string(appendFixed(buf[:0], m.Amount, minorUnits[m.Currency]))
}

// appendFixed appends d.StringFixed(places). Amounts that need no rounding
// and whose digits fit in an int64 (every amount the ledger accepts) are
// formatted here without the big.Int arithmetic and allocations of
// StringFixed; any other goes through StringFixed.
func appendFixed(dst []byte, d decimal.Decimal, places int32) []byte {
	exp := d.Exponent()
	shift := int64(places) + int64(exp) // digits to append to the coefficient
	if places < 0 || shift < 0 || d.NumDigits()+int(shift) > 18 {
		return append(dst, d.StringFixed(places)...)
	}
	c := d.CoefficientInt64() // |c| < 10^18: NumDigits <= 18
	for ; shift > 0; shift-- {
		c *= 10 // stays below 10^18 by the check above
	}
	if c < 0 {
		dst = append(dst, '-')
		c = -c
	}
	var digits [20]byte
	ds := strconv.AppendInt(digits[:0], c, 10)
	n := int(places)
	if n == 0 {
		return append(dst, ds...)
	}
	if len(ds) > n {
		dst = append(dst, ds[:len(ds)-n]...)
		dst = append(dst, '.')
		return append(dst, ds[len(ds)-n:]...)
	}
	dst = append(dst, '0', '.')
	for i := len(ds); i < n; i++ {
		dst = append(dst, '0')
	}
	return append(dst, ds...)
}

// Add returns m+o. Both must be in the same currency; callers check that at
// the edge, so a mismatch here is a programming error reported as such.
func (m Money) Add(o Money) Money {
	m.mustSame(o)
	return Money{Amount: m.Amount.Add(o.Amount), Currency: m.Currency}
}

// Sub returns m-o in the same currency.
func (m Money) Sub(o Money) Money {
	m.mustSame(o)
	return Money{Amount: m.Amount.Sub(o.Amount), Currency: m.Currency}
}

// LessThan reports m < o.
func (m Money) LessThan(o Money) bool { m.mustSame(o); return m.Amount.LessThan(o.Amount) }

// GreaterThan reports m > o.
func (m Money) GreaterThan(o Money) bool { m.mustSame(o); return m.Amount.GreaterThan(o.Amount) }

// IsNegative reports m < 0.
func (m Money) IsNegative() bool { return m.Amount.IsNegative() }

func (m Money) mustSame(o Money) {
	// An empty currency is the zero Money value and combines with anything.
	if m.Currency != o.Currency && m.Currency != "" && o.Currency != "" {
		panic(fmt.Sprintf("money: currency mismatch %s vs %s", m.Currency, o.Currency))
	}
}

// MarshalJSON writes {"amount":"12.50","currency":"CNY"}.
func (m Money) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Amount   string   `json:"amount"`
		Currency Currency `json:"currency"`
	}{m.String(), m.Currency})
}

// UnmarshalJSON reads what MarshalJSON writes. Stored events are trusted to
// be well formed, but a malformed one is still an error, never a panic.
func (m *Money) UnmarshalJSON(b []byte) error {
	var v struct {
		Amount   string   `json:"amount"`
		Currency Currency `json:"currency"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	d, err := decimal.NewFromString(v.Amount)
	if err != nil {
		return fmt.Errorf("money amount %q: %w", v.Amount, err)
	}
	m.Amount, m.Currency = d, v.Currency
	return nil
}
