package domain

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

// The codec must write exactly encoding/json's bytes and read back exactly
// what encoding/json reads, whichever path an event takes: these fuzz
// tests hold JSONCodec (or any Codec put in its place) to that on
// arbitrary payment events. Their seeds run with every go test.

// fuzzMoney builds a Money from fuzz inputs: any coefficient and exponent,
// any currency bytes.
func fuzzMoney(coef int64, exp int8, cur string) Money {
	if coef == math.MinInt64 { // the zero Money value, as a decoded event never has
		return Money{}
	}
	return Money{Amount: decimal.New(coef, int32(exp)), Currency: Currency(cur)}
}

// fuzzTime builds a time from fuzz inputs: any instant (years before 0
// and after 9999 included, which encoding/json refuses) in a fixed zone
// of any offset, out-of-range ones included.
func fuzzTime(sec int64, nsec int32, offset int32) time.Time {
	if sec == math.MinInt64 {
		return time.Time{}
	}
	// Bound the instant to a few hundred thousand years either side, where
	// time.Unix stays exact.
	sec %= 1 << 43
	return time.Unix(sec, int64(nsec)).In(time.FixedZone("z", int(offset%(100*3600))))
}

// fuzzStrings splits s on NUL bytes into a slice; shape 0 gives nil and
// 1 an empty slice, so both reach the encoder.
func fuzzStrings(s string, shape uint8) []string {
	switch shape % 4 {
	case 0:
		return nil
	case 1:
		return []string{}
	}
	return bytes2strings(bytes.Split([]byte(s), []byte{0}))
}

func bytes2strings(bs [][]byte) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = string(b)
	}
	return out
}

// fuzzBytes gives nil for shape 0, empty for 1, b otherwise.
func fuzzBytes(b []byte, shape uint8) []byte {
	switch shape % 4 {
	case 0:
		return nil
	case 1:
		return []byte{}
	}
	return b
}

// checkCodecAsJSON asserts, for one event, that Encode writes json.Marshal's
// bytes (or fails when it fails), and that Decode and LedgerFacts on those
// bytes give what json.Unmarshal gives.
func checkCodecAsJSON[T Event](t *testing.T, c Codec, e T) {
	t.Helper()
	want, jerr := json.Marshal(e)
	typ, ver, got, err := c.Encode(e)
	if jerr != nil {
		if err == nil {
			t.Fatalf("encoding/json fails (%v), the codec wrote %s for %#v", jerr, got, e)
		}
		return
	}
	if err != nil {
		t.Fatalf("the codec fails (%v), encoding/json wrote %s for %#v", err, want, e)
	}
	if typ != e.EventType() || ver != CurrentSchemaVersion {
		t.Fatalf("Encode = %s v%d, want %s v%d", typ, ver, e.EventType(), CurrentSchemaVersion)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("codec and encoding/json differ\n got %s\nwant %s\nvalue %#v", got, want, e)
	}
	var ref T
	if err := json.Unmarshal(want, &ref); err != nil {
		t.Fatalf("encoding/json cannot read its own %s: %v", want, err)
	}
	dec, err := c.Decode(typ, ver, got)
	if err != nil {
		t.Fatalf("Decode(%s): %v", got, err)
	}
	if !reflect.DeepEqual(dec, Event(ref)) {
		t.Fatalf("Decode(%s)\n = %#v\nencoding/json reads %#v", got, dec, ref)
	}
	facts, err := c.LedgerFacts(typ, ver, got)
	if err != nil {
		t.Fatalf("LedgerFacts(%s): %v", got, err)
	}
	if wantFacts := LedgerFactsOf(ref); !factsSame(facts, wantFacts) {
		t.Fatalf("LedgerFacts(%s)\n = %+v\nencoding/json gives %+v", got, facts, wantFacts)
	}
}

// codecFuzzStrings are seeds for the text fields: HTML characters, control
// characters, the line and paragraph separators, invalid UTF-8, a
// surrogate half and runes of every width.
var codecFuzzStrings = []string{
	"", "01JPAYMENT0000000000000001", "<script>&amp;</script>", "\u2028\u2029", "\x00\x01\b\f\n\r\t\x1f\x7f",
	"\"\\/", "\xff\xfe", "a\xc3", "\xed\xa0\x80", "\xe2\x80", "é咖啡😀\U0010ffff", "\ufffd",
}

func FuzzCodecPaymentInitiated(f *testing.F) {
	for i, s := range codecFuzzStrings {
		f.Add(s, "payer-"+s, "CNY", int64(17+i), int8(-2), int64(0), int8(0), []byte("challenge "+s), uint8(i), int64(1764057600+i), int32(i*1e8), int32(8*3600))
	}
	f.Add("", "", "", int64(math.MinInt64), int8(0), int64(math.MinInt64), int8(0), []byte(nil), uint8(0), int64(math.MinInt64), int32(0), int32(0))
	f.Add("p", "x", "JPY", int64(math.MaxInt64), int8(127), int64(-1), int8(-128), []byte{0xff}, uint8(2), int64(253402300799), int32(999999999), int32(-(3*3600 + 30*60 + 15)))
	f.Add("p", "x", "\xff<&>", int64(-5), int8(-9), int64(5), int8(30), []byte{}, uint8(1), int64(-62135596800), int32(0), int32(24*3600))
	f.Add("p", "x", "USD", int64(1), int8(0), int64(1), int8(0), []byte("y"), uint8(3), int64(253402300800), int32(0), int32(0)) // year 10000
	f.Add("p", "x", "USD", int64(1), int8(0), int64(1), int8(0), []byte("y"), uint8(3), int64(-62135596801), int32(0), int32(0)) // year -1
	f.Add("p", "x", "USD", int64(1), int8(0), int64(1), int8(0), []byte("y"), uint8(3), int64(-62135596800), int32(0), int32(3600))
	f.Fuzz(func(t *testing.T, s, s2, cur string, coef int64, exp int8, coef2 int64, exp2 int8, challenge []byte, shape uint8, sec int64, nsec, offset int32) {
		e := PaymentInitiated{
			PaymentID: s, Payer: s2, Payee: s + s2, Amount: fuzzMoney(coef, exp, cur), Fee: fuzzMoney(coef2, exp2, "CNY"),
			Channel: s2, Terminal: cur, DeviceID: s, Description: s2 + s,
			Challenge: fuzzBytes(challenge, shape), ExpiresAt: fuzzTime(sec, nsec, offset),
		}
		if shape&1 == 1 {
			e.FeeSchedule = s2
		}
		checkCodecAsJSON(t, JSONCodec{}, e)
	})
}

func FuzzCodecPaymentConfirmed(f *testing.F) {
	for i, s := range codecFuzzStrings {
		f.Add(s, "level-"+s, "CNY", int64(17+i), int8(-2), int64(0), int8(0), "possession\x00"+s, uint8(i), "f1\x00"+s, int64(i)*63113904)
	}
	f.Add("", "", "", int64(math.MinInt64), int8(0), int64(math.MinInt64), int8(0), "", uint8(0), "", int64(0))
	f.Add("p", "x", "JPY", int64(math.MaxInt64), int8(127), int64(-1), int8(-128), "\xff", uint8(1), "<&>", int64(math.MinInt64))
	f.Add("p", "x", "\u2028", int64(-5), int8(-9), int64(5), int8(30), "a\x00\x00b", uint8(2), "\x00", int64(math.MaxInt64))
	f.Fuzz(func(t *testing.T, s, s2, cur string, coef int64, exp int8, coef2 int64, exp2 int8, cats string, shape uint8, factor string, step int64) {
		e := PaymentConfirmed{
			PaymentID: s, DebitAccount: s2, CreditAccount: s + s2, Amount: fuzzMoney(coef, exp, cur), Fee: fuzzMoney(coef2, exp2, cur),
			Description: s2 + s, VerificationLevel: s2, Categories: fuzzStrings(cats, shape), FactorIDs: fuzzStrings(factor, shape>>2),
			DeviceID: s, DailyLimit: fuzzMoney(coef2, exp, "CNY"), DailyUsed: fuzzMoney(coef, exp2, cur),
		}
		switch shape >> 4 % 4 {
		case 0:
		case 1:
			e.OTPUses = []OTPUse{}
		default:
			for _, id := range fuzzStrings(factor, 2) {
				e.OTPUses = append(e.OTPUses, OTPUse{FactorID: id, Step: step})
				step = -step/3 + 1
			}
		}
		checkCodecAsJSON(t, JSONCodec{}, e)
	})
}
