package domain

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/shopspring/decimal"
)

// wantCode asserts that err is a *Error (possibly wrapped) with code, and
// returns it.
func wantCode(t *testing.T, err error, code string) *Error {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want code %q", code)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("got %T %v, want *Error with code %q", err, err, code)
	}
	if e.Code != code {
		t.Fatalf("got code %q (%v), want %q", e.Code, err, code)
	}
	return e
}

// wantDetails asserts that each of want is among err's details, with the
// same value and type.
func wantDetails(t *testing.T, err error, want map[string]any) {
	t.Helper()
	got := ErrorDetails(err)
	for k, v := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("detail %q missing; details %v", k, got)
			continue
		}
		if g != v {
			t.Errorf("detail %q = %#v, want %#v", k, g, v)
		}
	}
}

func TestParseAmount(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		cur      Currency
		want     string // canonical String(); "" means an error is expected
		errField string
	}{
		{"TwoPlaces", "12.50", CNY, "12.50", ""},
		{"OneCent", "0.01", CNY, "0.01", ""},
		{"Integer", "1000", CNY, "1000.00", ""},
		{"OnePlace", "7.5", CNY, "7.50", ""},
		{"Max", "1000000000000", CNY, "1000000000000.00", ""},
		{"AboveMax", "1000000000000.01", CNY, "", "amount"},
		{"ThreePlaces", "12.505", CNY, "", "amount"},
		{"ThreePlacesTrailingZero", "12.500", CNY, "", "amount"},
		{"Zero", "0", CNY, "", "amount"},
		{"ZeroWithPlaces", "0.00", CNY, "", "amount"},
		{"Negative", "-5.00", CNY, "", "amount"},
		{"NegativeZero", "-0", CNY, "", "amount"},
		{"PlusSign", "+5.00", CNY, "", "amount"},
		{"LeadingZeros", "007.50", CNY, "7.50", ""},
		{"Exponent", "1e3", CNY, "", "amount"},
		{"ExponentUpper", "1E3", CNY, "", "amount"},
		{"LeadingSpace", " 12", CNY, "", "amount"},
		{"TrailingSpace", "12 ", CNY, "", "amount"},
		{"Empty", "", CNY, "", "amount"},
		{"Letters", "abc", CNY, "", "amount"},
		{"NoIntegerPart", ".5", CNY, "", "amount"},
		{"NoFraction", "5.", CNY, "", "amount"},
		{"TwoDots", "1.2.3", CNY, "", "amount"},
		{"Comma", "1,000.00", CNY, "", "amount"},
		{"SignOnly", "-", CNY, "", "amount"},
		{"Hex", "0x10", CNY, "", "amount"},
		{"Infinity", "Inf", CNY, "", "amount"},
		{"NaN", "NaN", CNY, "", "amount"},
		{"UnknownCurrency", "12.50", Currency("XYZ"), "", "currency"},
		{"EmptyCurrency", "12.50", Currency(""), "", "currency"},
		{"JPYInteger", "100", "JPY", "100", ""},
		{"JPYFraction", "100.5", "JPY", "", "amount"},
		{"JPYZeroFraction", "100.0", "JPY", "", "amount"},
		{"USDTwoPlaces", "3.99", "USD", "3.99", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ParseAmount(tc.in, tc.cur, "amount")
			if tc.want == "" {
				e := wantCode(t, err, CodeInvalid)
				if e.Details["field"] != tc.errField {
					t.Errorf("field = %v, want %q", e.Details["field"], tc.errField)
				}
				if m != (Money{}) {
					t.Errorf("refused amount returned %v", m)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseAmount(%q): %v", tc.in, err)
			}
			if m.Currency != tc.cur {
				t.Errorf("currency = %q, want %q", m.Currency, tc.cur)
			}
			if got := m.String(); got != tc.want {
				t.Errorf("String() = %q, want %q", got, tc.want)
			}
			if !m.Amount.Equal(decimal.RequireFromString(tc.in)) {
				t.Errorf("amount %s is not exactly %s", m.Amount, tc.in)
			}
		})
	}
}

func TestParseAmountFieldName(t *testing.T) {
	_, err := ParseAmount("abc", CNY, "agreed_daily_limit")
	wantDetails(t, err, map[string]any{"field": "agreed_daily_limit"})
}

func TestParseCurrency(t *testing.T) {
	for _, code := range []string{"CNY", "USD", "EUR", "HKD", "GBP", "JPY"} {
		t.Run(code, func(t *testing.T) {
			c, err := ParseCurrency(code, "currency")
			if err != nil || string(c) != code {
				t.Fatalf("ParseCurrency(%q) = %q, %v", code, c, err)
			}
		})
	}
	for _, code := range []string{"", "cny", "XYZ", "RMB", " CNY"} {
		t.Run("Refuses"+fmt.Sprintf("%q", code), func(t *testing.T) {
			_, err := ParseCurrency(code, "payee_currency")
			wantCode(t, err, CodeInvalid)
			wantDetails(t, err, map[string]any{"field": "payee_currency"})
		})
	}
}

func TestMoneyString(t *testing.T) {
	tests := []struct {
		name string
		m    Money
		want string
	}{
		{"PadsCNY", MustMoney("5", CNY), "5.00"},
		{"KeepsCents", MustMoney("0.10", CNY), "0.10"},
		{"JPY", MustMoney("1200", "JPY"), "1200"},
		{"Zero", Zero(CNY), "0.00"},
		{"Negative", MustMoney("-40.5", CNY), "-40.50"},
		{"Large", MustMoney("999999999999.99", CNY), "999999999999.99"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.m.String(); got != tc.want {
				t.Errorf("String() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestMoneyArithmeticIsExact(t *testing.T) {
	// 0.1 + 0.2 is not 0.3 in binary floating point; it must be here (R25).
	a, _ := ParseAmount("0.10", CNY, "amount")
	b, _ := ParseAmount("0.20", CNY, "amount")
	sum := a.Add(b)
	if sum.String() != "0.30" || !sum.Amount.Equal(decimal.RequireFromString("0.3")) {
		t.Errorf("0.10 + 0.20 = %s", sum)
	}
	total := Zero(CNY)
	cent := MustMoney("0.01", CNY)
	for range 100000 {
		total = total.Add(cent)
	}
	if total.String() != "1000.00" {
		t.Errorf("100000 cents = %s, want 1000.00", total)
	}
	if d := total.Sub(MustMoney("1000.01", CNY)); !d.IsNegative() || d.String() != "-0.01" {
		t.Errorf("1000.00 - 1000.01 = %s", d)
	}
	if !a.LessThan(b) || a.GreaterThan(b) || !b.GreaterThan(a) {
		t.Error("comparison of 0.10 and 0.20 is wrong")
	}
}

func TestMoneyCurrencyMismatchPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("adding CNY to USD did not panic")
		}
	}()
	MustMoney("1", CNY).Add(MustMoney("1", "USD"))
}

func TestMoneyJSONRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		in   string
		cur  Currency
		json string
	}{
		{"Cents", "12.50", CNY, `{"amount":"12.50","currency":"CNY"}`},
		{"Integer", "1000", CNY, `{"amount":"1000.00","currency":"CNY"}`},
		{"SmallestUnit", "0.01", CNY, `{"amount":"0.01","currency":"CNY"}`},
		{"Large", "999999999999.99", CNY, `{"amount":"999999999999.99","currency":"CNY"}`},
		{"JPY", "1500", "JPY", `{"amount":"1500","currency":"JPY"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ParseAmount(tc.in, tc.cur, "amount")
			if err != nil {
				t.Fatal(err)
			}
			b, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tc.json {
				t.Errorf("json = %s, want %s", b, tc.json)
			}
			var back Money
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			if !back.Amount.Equal(m.Amount) || back.Currency != m.Currency || back.String() != m.String() {
				t.Errorf("round trip %v -> %s -> %v", m, b, back)
			}
		})
	}
}

func TestMoneyUnmarshalMalformed(t *testing.T) {
	for name, in := range map[string]string{
		"NotObject":    `"12.50"`,
		"NumberAmount": `{"amount":12.5,"currency":"CNY"}`,
		"BadAmount":    `{"amount":"twelve","currency":"CNY"}`,
		"EmptyAmount":  `{"amount":"","currency":"CNY"}`,
		"Truncated":    `{"amount":"1`,
	} {
		t.Run(name, func(t *testing.T) {
			var m Money
			if err := json.Unmarshal([]byte(in), &m); err == nil {
				t.Errorf("unmarshal %s gave %v, want an error", in, m)
			}
		})
	}
}

func TestErrorHelpers(t *testing.T) {
	inner := Invalid("amount", "bad amount").With("extra", 3)
	wrapped := fmt.Errorf("handler: %w", inner)
	tests := []struct {
		name    string
		err     error
		code    string
		details map[string]any
	}{
		{"Domain", inner, CodeInvalid, map[string]any{"field": "amount", "extra": 3}},
		{"Wrapped", wrapped, CodeInvalid, map[string]any{"field": "amount"}},
		{"Foreign", errors.New("disk on fire"), CodeInternal, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ErrorCode(tc.err); got != tc.code {
				t.Errorf("ErrorCode = %q, want %q", got, tc.code)
			}
			if tc.details == nil && ErrorDetails(tc.err) != nil {
				t.Errorf("details of a foreign error = %v", ErrorDetails(tc.err))
			}
			wantDetails(t, tc.err, tc.details)
		})
	}
	if got := inner.Error(); got != "invalid_request: bad amount" {
		t.Errorf("Error() = %q", got)
	}
}
