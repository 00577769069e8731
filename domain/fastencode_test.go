package domain

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/shopspring/decimal"
)

// encGen generates event values that exercise every branch of the
// hand-written encoders: strings with HTML and control characters, invalid
// UTF-8, U+2028/U+2029 and multi-byte runes; nil, empty and filled slices;
// amounts of any scale and sign in known, unknown and odd currencies; times
// in odd zones, with and without fractions, inside and outside RFC 3339's
// year range.
type encGen struct{ r *rand.Rand }

var encPieces = []string{
	"a", "Z", "0", " ", "-", "_", "/", "+", "=", "~", "\x7f",
	"\"", "\\", "<", ">", "&", "'",
	"\x00", "\x01", "\b", "\f", "\n", "\r", "\t", "\x1b", "\x1f",
	"é", "咖啡", "😀", "\u2028", "\u2029", "\ufffd", "\u00a0", "\u200b", "\U0010ffff",
	"\x80", "\xff", "\xc3", "\xe2\x80", "\xf0\x9f\x98", "\xed\xa0\x80", "\xc0\xaf",
}

func (g encGen) str() string {
	switch g.r.IntN(6) {
	case 0:
		return ""
	case 1: // an id-like plain string, the common case
		return "01JABCDEFGHJKMNPQRSTVWXYZ"[g.r.IntN(20):]
	}
	var sb strings.Builder
	for n := g.r.IntN(12); n > 0; n-- {
		if g.r.IntN(4) == 0 {
			sb.WriteByte(byte(g.r.IntN(256)))
			continue
		}
		sb.WriteString(encPieces[g.r.IntN(len(encPieces))])
	}
	return sb.String()
}

func (g encGen) strs() []string {
	switch g.r.IntN(4) {
	case 0:
		return nil
	case 1:
		return []string{}
	}
	out := make([]string, 1+g.r.IntN(4))
	for i := range out {
		out[i] = g.str()
	}
	return out
}

func (g encGen) bytes() []byte {
	switch g.r.IntN(4) {
	case 0:
		return nil
	case 1:
		return []byte{}
	}
	b := make([]byte, 1+g.r.IntN(64))
	for i := range b {
		b[i] = byte(g.r.IntN(256))
	}
	return b
}

var encCurrencies = []Currency{CNY, "JPY", "USD", "", "XXX", "<&>", "\u2028", "\xff"}

func (g encGen) money() Money {
	m := Money{Amount: decimal.New(g.r.Int64N(2e12)-1e12, int32(g.r.IntN(10)-6)), Currency: encCurrencies[g.r.IntN(len(encCurrencies))]}
	switch g.r.IntN(8) {
	case 0:
		m.Amount = decimal.Decimal{} // the zero value
	case 1:
		m = Money{}
	case 2:
		m.Amount = decimal.RequireFromString("123456789012345678901234567890.123456789")
	}
	return m
}

var encZones = []*time.Location{time.UTC, time.FixedZone("CST", 8*3600), time.FixedZone("odd", -(3*3600 + 30*60 + 15)),
	time.FixedZone("far", 23*3600+59*60), time.FixedZone("bad", 24*3600), time.FixedZone("bad-neg", -25*3600)}

func (g encGen) time() time.Time {
	switch g.r.IntN(10) {
	case 0:
		return time.Time{}
	case 1: // outside [0,9999]: encoding/json fails
		return time.Date(10000+g.r.IntN(100), 1, 1, 0, 0, 0, 0, time.UTC)
	case 2:
		return time.Date(-1-g.r.IntN(100), 1, 1, 0, 0, 0, 0, time.UTC)
	}
	sec := g.r.Int64N(253402300799) // up to 9999-12-31
	nsec := int64(0)
	if g.r.IntN(2) == 0 {
		nsec = g.r.Int64N(1e9)
	}
	return time.Unix(sec, nsec).In(encZones[g.r.IntN(len(encZones))])
}

func (g encGen) otpUses() []OTPUse {
	switch g.r.IntN(3) {
	case 0:
		return nil
	case 1:
		return []OTPUse{}
	}
	out := make([]OTPUse, 1+g.r.IntN(3))
	for i := range out {
		out[i] = OTPUse{FactorID: g.str(), Step: g.r.Int64() - g.r.Int64()}
	}
	return out
}

func (g encGen) initiated() PaymentInitiated {
	return PaymentInitiated{PaymentID: g.str(), Payer: g.str(), Payee: g.str(), Amount: g.money(), Fee: g.money(),
		Channel: g.str(), Terminal: g.str(), DeviceID: g.str(), Description: g.str(), Challenge: g.bytes(), ExpiresAt: g.time()}
}

func (g encGen) confirmed() PaymentConfirmed {
	return PaymentConfirmed{PaymentID: g.str(), DebitAccount: g.str(), CreditAccount: g.str(), Amount: g.money(), Fee: g.money(),
		Description: g.str(), VerificationLevel: g.str(), Categories: g.strs(), FactorIDs: g.strs(), DeviceID: g.str(),
		OTPUses: g.otpUses(), DailyLimit: g.money(), DailyUsed: g.money()}
}

// checkSameAsJSON asserts that the hand-written encoder writes exactly what
// encoding/json writes for e, and declines exactly when encoding/json fails.
func checkSameAsJSON(t *testing.T, e Event) {
	t.Helper()
	want, jerr := json.Marshal(e)
	got, ok := encAppendEvent(nil, e)
	switch {
	case jerr != nil && ok:
		t.Fatalf("%T: encoding/json fails (%v) but the fast encoder wrote %s", e, jerr, got)
	case jerr == nil && !ok:
		t.Fatalf("%T: the fast encoder declined a value encoding/json encodes as %s", e, want)
	case jerr == nil && !bytes.Equal(got, want):
		t.Fatalf("%T: fast encoding differs from encoding/json\n got %s\nwant %s\nvalue %#v", e, got, want, e)
	}
	// EncodeEvent, whichever path it takes, returns encoding/json's bytes
	// or its failure.
	_, _, payload, err := EncodeEvent(e)
	if (err != nil) != (jerr != nil) || !bytes.Equal(payload, want) {
		t.Fatalf("%T: EncodeEvent = %s, %v; encoding/json = %s, %v", e, payload, err, want, jerr)
	}
}

func TestFastEncodeMatchesEncodingJSON(t *testing.T) {
	g := encGen{rand.New(rand.NewPCG(1, 2))}
	var initiated, failures int
	for range 20000 {
		pi := g.initiated()
		checkSameAsJSON(t, pi)
		if _, err := json.Marshal(pi); err != nil {
			failures++
		} else {
			initiated++
		}
		checkSameAsJSON(t, g.confirmed())
	}
	// The generator reaches both outcomes.
	if failures == 0 || initiated == 0 {
		t.Fatalf("generated %d encodable and %d failing PaymentInitiated values; want both", initiated, failures)
	}
	// The real events of the domain, including the samples of every type.
	for _, e := range sampleEvents() {
		if _, ok := encAppendEvent(nil, e); ok {
			checkSameAsJSON(t, e)
			continue
		}
		want, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, got, err := EncodeEvent(e); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%T: EncodeEvent = %s, %v; want %s", e, got, err, want)
		}
	}
}

// TestFastEncodeCoversHotEvents: the payment events take the fast path and
// the others still go through encoding/json.
func TestFastEncodeCoversHotEvents(t *testing.T) {
	for _, e := range sampleEvents() {
		_, ok := encAppendEvent(nil, e)
		want := e.EventType() == TypePaymentInitiated || e.EventType() == TypePaymentConfirmed
		if ok != want {
			t.Errorf("%s: fast path taken = %v, want %v", e.EventType(), ok, want)
		}
	}
}

// FuzzEncAppendString compares the string encoder with encoding/json on
// arbitrary bytes (the seeds run with every `go test`).
func FuzzEncAppendString(f *testing.F) {
	for _, s := range encPieces {
		f.Add(s)
	}
	f.Add("plain ascii text")
	f.Add("<script>alert('x') & \"y\"</script>\u2028\u2029\x00\xff")
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := encAppendString([]byte("prefix"), s); !bytes.Equal(got[len("prefix"):], want) || string(got[:6]) != "prefix" {
			t.Fatalf("encAppendString(%q) = %s, want %s", s, got, want)
		}
	})
}

// TestEncAppendStringAllRunes checks every single rune and every single byte.
func TestEncAppendStringAllRunes(t *testing.T) {
	check := func(s string) {
		want, _ := json.Marshal(s)
		if got := encAppendString(nil, s); !bytes.Equal(got, want) {
			t.Fatalf("encAppendString(%q) = %s, want %s", s, got, want)
		}
	}
	for b := 0; b < 256; b++ {
		check(string([]byte{byte(b)}))
		check("x" + string([]byte{byte(b)}) + "y")
	}
	for r := rune(0); r <= utf8.MaxRune; r += 1 + rune(r/4096) {
		check(string(r))
	}
	for _, r := range []rune{0x2027, 0x2028, 0x2029, 0x202a, 0xfffd, 0xd800, 0xdfff, utf8.MaxRune} {
		check(string(r) + "<")
	}
}

// fillEvery sets every field of the struct v points to (recursively, and one
// element in every slice) to a non-zero value, so that a field added to an
// event later shows up in the comparison below whatever its tags. A field
// of a type it does not know fails the test: teach it the type, and the
// hand-written encoder the field.
func fillEvery(t *testing.T, v reflect.Value, n *int) {
	t.Helper()
	*n++
	switch v.Interface().(type) {
	case Money:
		v.Set(reflect.ValueOf(Money{Amount: decimal.New(int64(*n)*101, -2), Currency: "CNY"}))
		return
	case time.Time:
		v.Set(reflect.ValueOf(time.Date(2026, 11, 25, 8, 0, *n, 123, time.UTC)))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(fmt.Sprintf("s%d<&>", *n))
	case reflect.Int, reflect.Int32, reflect.Int64:
		v.SetInt(int64(*n))
	case reflect.Uint8, reflect.Uint32, reflect.Uint64:
		v.SetUint(uint64(*n))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 1, 1)
		fillEvery(t, s.Index(0), n)
		v.Set(s)
	case reflect.Struct:
		for i := range v.NumField() {
			fillEvery(t, v.Field(i), n)
		}
	default:
		t.Fatalf("fillEvery: no value for a field of type %s", v.Type())
	}
}

// TestFastEncodersCoverEveryField: with every field set, the hand-written
// encoders still produce encoding/json's bytes, so none of the fields is
// missing from them.
func TestFastEncodersCoverEveryField(t *testing.T) {
	for _, e := range []Event{&PaymentInitiated{}, &PaymentConfirmed{}} {
		v := reflect.ValueOf(e).Elem()
		n := 0
		fillEvery(t, v, &n)
		ev := v.Interface().(Event)
		want, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := encAppendEvent(nil, ev)
		if !ok {
			t.Fatalf("%T: no hand-written encoding", ev)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%T with every field set:\n got %s\nwant %s", ev, got, want)
		}
	}
}
