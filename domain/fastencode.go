package domain

import (
	"encoding/base64"
	"strconv"
	"time"
	"unicode/utf8"
)

// Hand-written JSON encoders for the events of the payment hot path
// (PaymentInitiated and PaymentConfirmed, written for every payment). They
// produce exactly the bytes encoding/json produces for the same value
// (fastencode_test.go checks this over many generated values, and
// codec_fuzz_test.go over fuzzed ones), so the log does not depend on
// which path wrote an event. Member names come from codec_fields.go, which
// is generated from the struct tags. Every other event type goes through
// encoding/json.

// encAppendEvent appends the JSON of e to dst when e has a hand-written
// encoder. ok is false when it has none or the value cannot be encoded
// (a time outside RFC 3339's range): the caller then uses encoding/json,
// which reports the error.
func encAppendEvent(dst []byte, e Event) (out []byte, ok bool) {
	switch v := e.(type) {
	case PaymentInitiated:
		return v.encAppend(dst)
	case PaymentConfirmed:
		return v.encAppend(dst), true
	}
	return dst, false
}

// encSize estimates the encoded size of e (names, punctuation, amounts and
// times, plus its variable text), so that a payload usually needs a single
// allocation; 0 for an event without a hand-written encoder.
func encSize(e Event) int {
	switch v := e.(type) {
	case PaymentInitiated:
		return 256 + len(v.PaymentID) + len(v.Payer) + len(v.Payee) + len(v.Channel) + len(v.Terminal) + len(v.DeviceID) +
			len(v.Description) + len(v.FeeSchedule) + base64.StdEncoding.EncodedLen(len(v.Challenge))
	case PaymentConfirmed:
		n := 384 + len(v.PaymentID) + len(v.DebitAccount) + len(v.CreditAccount) + len(v.Description) + len(v.VerificationLevel) + len(v.DeviceID)
		for _, s := range v.Categories {
			n += len(s) + 3
		}
		for _, s := range v.FactorIDs {
			n += len(s) + 3
		}
		for _, u := range v.OTPUses {
			n += len(u.FactorID) + 48
		}
		return n
	}
	return 0
}

func (v PaymentInitiated) encAppend(b []byte) ([]byte, bool) {
	b = append(b, `{"`+jsonPaymentInitiatedPaymentID+`":`...)
	b = encAppendString(b, v.PaymentID)
	b = append(b, `,"`+jsonPaymentInitiatedPayer+`":`...)
	b = encAppendString(b, v.Payer)
	b = append(b, `,"`+jsonPaymentInitiatedPayee+`":`...)
	b = encAppendString(b, v.Payee)
	b = append(b, `,"`+jsonPaymentInitiatedAmount+`":`...)
	b = v.Amount.encAppend(b)
	b = append(b, `,"`+jsonPaymentInitiatedFee+`":`...)
	b = v.Fee.encAppend(b)
	b = append(b, `,"`+jsonPaymentInitiatedChannel+`":`...)
	b = encAppendString(b, v.Channel)
	b = append(b, `,"`+jsonPaymentInitiatedTerminal+`":`...)
	b = encAppendString(b, v.Terminal)
	b = append(b, `,"`+jsonPaymentInitiatedDeviceID+`":`...)
	b = encAppendString(b, v.DeviceID)
	b = append(b, `,"`+jsonPaymentInitiatedDescription+`":`...)
	b = encAppendString(b, v.Description)
	b = append(b, `,"`+jsonPaymentInitiatedChallenge+`":`...)
	b = encAppendBytes(b, v.Challenge)
	b = append(b, `,"`+jsonPaymentInitiatedExpiresAt+`":`...)
	b, ok := encAppendTime(b, v.ExpiresAt)
	if !ok {
		return b, false
	}
	if v.FeeSchedule != "" {
		b = append(b, `,"`+jsonPaymentInitiatedFeeSchedule+`":`...)
		b = encAppendString(b, v.FeeSchedule)
	}
	return append(b, '}'), true
}

func (v PaymentConfirmed) encAppend(b []byte) []byte {
	b = append(b, `{"`+jsonPaymentConfirmedPaymentID+`":`...)
	b = encAppendString(b, v.PaymentID)
	b = append(b, `,"`+jsonPaymentConfirmedDebitAccount+`":`...)
	b = encAppendString(b, v.DebitAccount)
	b = append(b, `,"`+jsonPaymentConfirmedCreditAccount+`":`...)
	b = encAppendString(b, v.CreditAccount)
	b = append(b, `,"`+jsonPaymentConfirmedAmount+`":`...)
	b = v.Amount.encAppend(b)
	b = append(b, `,"`+jsonPaymentConfirmedFee+`":`...)
	b = v.Fee.encAppend(b)
	b = append(b, `,"`+jsonPaymentConfirmedDescription+`":`...)
	b = encAppendString(b, v.Description)
	b = append(b, `,"`+jsonPaymentConfirmedVerificationLevel+`":`...)
	b = encAppendString(b, v.VerificationLevel)
	b = append(b, `,"`+jsonPaymentConfirmedCategories+`":`...)
	b = encAppendStrings(b, v.Categories)
	b = append(b, `,"`+jsonPaymentConfirmedFactorIDs+`":`...)
	b = encAppendStrings(b, v.FactorIDs)
	b = append(b, `,"`+jsonPaymentConfirmedDeviceID+`":`...)
	b = encAppendString(b, v.DeviceID)
	if len(v.OTPUses) > 0 { // omitempty
		b = append(b, `,"`+jsonPaymentConfirmedOTPUses+`":`...)
		b = encAppendOTPUses(b, v.OTPUses)
	}
	b = append(b, `,"`+jsonPaymentConfirmedDailyLimit+`":`...)
	b = v.DailyLimit.encAppend(b)
	b = append(b, `,"`+jsonPaymentConfirmedDailyUsed+`":`...)
	b = v.DailyUsed.encAppend(b)
	return append(b, '}')
}

// encAppend appends what MarshalJSON returns.
func (m Money) encAppend(b []byte) []byte {
	b = append(b, `{"`+jsonMoneyAmount+`":"`...)
	b = appendFixed(b, m.Amount, minorUnits[m.Currency]) // digits, '-' and '.': nothing to escape
	b = append(b, '"')
	b = append(b, `,"`+jsonMoneyCurrency+`":`...)
	b = encAppendString(b, string(m.Currency))
	return append(b, '}')
}

func encAppendOTPUses(b []byte, uses []OTPUse) []byte {
	b = append(b, '[')
	for i, u := range uses {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"`+jsonOTPUseFactorID+`":`...)
		b = encAppendString(b, u.FactorID)
		b = append(b, `,"`+jsonOTPUseStep+`":`...)
		b = strconv.AppendInt(b, u.Step, 10)
		b = append(b, '}')
	}
	return append(b, ']')
}

// encAppendStrings encodes a []string: null when nil, as encoding/json.
func encAppendStrings(b []byte, ss []string) []byte {
	if ss == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = encAppendString(b, s)
	}
	return append(b, ']')
}

// encAppendBytes encodes a []byte as standard base64: null when nil, as
// encoding/json.
func encAppendBytes(b, v []byte) []byte {
	if v == nil {
		return append(b, "null"...)
	}
	b = append(b, '"')
	b = base64.StdEncoding.AppendEncode(b, v)
	return append(b, '"')
}

// encAppendTime appends what time.Time.MarshalJSON returns; false when it
// would fail.
func encAppendTime(b []byte, t time.Time) ([]byte, bool) {
	b = append(b, '"')
	b, err := t.AppendText(b)
	if err != nil {
		return b, false
	}
	return append(b, '"'), true
}

const encHex = "0123456789abcdef"

// encSafe[c] reports whether encoding/json writes the ASCII byte c as is
// in a string with HTML escaping on (json.Marshal's default).
var encSafe = func() (t [utf8.RuneSelf]bool) {
	for c := range t {
		t[c] = c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// encAppendString appends s quoted exactly as json.Marshal does: HTML
// characters, control characters, U+2028 and U+2029 escaped, and each byte
// of invalid UTF-8 replaced by \ufffd.
func encAppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if encSafe[c] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '\\', '"':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', encHex[c>>4], encHex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', encHex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
