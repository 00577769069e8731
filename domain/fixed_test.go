package domain

import (
	"math"
	"math/big"
	"math/rand/v2"
	"testing"

	"github.com/shopspring/decimal"
)

// TestAppendFixedMatchesStringFixed: the fast formatting of amounts gives
// exactly StringFixed's text for generated decimals of every scale, sign
// and size, for the places the currencies use and more.
func TestAppendFixedMatchesStringFixed(t *testing.T) {
	r := rand.New(rand.NewPCG(12, 50))
	check := func(d decimal.Decimal, places int32) {
		t.Helper()
		want := d.StringFixed(places)
		if got := string(appendFixed([]byte("x"), d, places)); got != "x"+want {
			t.Fatalf("appendFixed(%s (coefficient %s, exp %d), %d) = %q, want %q", d.String(), d.Coefficient(), d.Exponent(), places, got[1:], want)
		}
	}
	specials := []decimal.Decimal{{}, decimal.Zero, decimal.New(0, -2), decimal.New(0, 3),
		decimal.New(math.MaxInt64, 0), decimal.New(math.MinInt64, 0), decimal.New(math.MaxInt64, -2), decimal.New(math.MinInt64, -2),
		decimal.New(999999999999999999, -2), decimal.New(-999999999999999999, 0), decimal.New(100000000000000000, 1),
		decimal.New(1, -20), decimal.New(-5, -3), decimal.New(5, -3), decimal.New(-15, -3), decimal.New(1, 30),
		decimal.NewFromBigInt(new(big.Int).Lsh(big.NewInt(1), 100), -2), decimal.RequireFromString("-0.001"),
		decimal.RequireFromString("1000000.00"), decimal.RequireFromString("0.30"), decimal.RequireFromString("-12.5")}
	for _, d := range specials {
		for places := int32(-2); places <= 20; places++ {
			check(d, places)
		}
	}
	for range 200000 {
		c := r.Int64() >> r.IntN(64)
		if r.IntN(2) == 0 {
			c = -c
		}
		d := decimal.New(c, int32(r.IntN(30)-20))
		check(d, int32(r.IntN(8)))
	}
	// Money.String is appendFixed with the currency's places.
	for _, m := range []Money{MustMoney("12.5", CNY), MustMoney("-0.07", "USD"), MustMoney("1234", "JPY"), MustMoney("1.239", CNY), {}} {
		if got, want := m.String(), m.Amount.StringFixed(minorUnits[m.Currency]); got != want {
			t.Fatalf("Money.String(%#v) = %q, want %q", m, got, want)
		}
	}
}
