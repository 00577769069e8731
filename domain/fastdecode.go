package domain

import (
	"unicode/utf8"

	"github.com/shopspring/decimal"
)

// LedgerFacts is what balances and statements take from one event: the
// account an AccountOpened opens, with its currency, or the double entry of
// a money event (MovementOf). Every other event has neither.
type LedgerFacts struct {
	// Opened is true for an AccountOpened; AccountID and Currency are its.
	Opened    bool
	AccountID string
	Currency  Currency
	// Moves is true for a money event; Movement is what MovementOf gives.
	Moves    bool
	Movement Movement
}

// LedgerFactsOf returns the LedgerFacts of a decoded event.
func LedgerFactsOf(e Event) LedgerFacts {
	if o, ok := e.(AccountOpened); ok {
		return LedgerFacts{Opened: true, AccountID: o.AccountID, Currency: o.Currency}
	}
	m, ok := MovementOf(e)
	return LedgerFacts{Moves: ok, Movement: m}
}

// DecodeLedgerFacts returns what DecodeEvent followed by LedgerFactsOf
// returns, errors included, for any stored event, but without decoding a
// whole payload of the events a projection applies most.
//
// Version 1 payloads of AccountOpened, FundsDeposited, PaymentConfirmed and
// FundsWithdrawn in the shape EncodeEvent writes (members in any order,
// whitespace between tokens, strings without escapes in valid UTF-8) are
// read by a small scanner (factScanner) that takes the fields LedgerFactsOf
// uses, parses the amount with decimal.NewFromString as Money.UnmarshalJSON
// does, and checks every other member for what would make encoding/json
// fail (the syntax, the types, the other amounts). Anything else (an
// unknown, duplicated or differently cased member, an escape, a number
// where a string belongs, another type or version) goes to DecodeEvent,
// so the answer is always the full decoder's.
func DecodeLedgerFacts(typ string, schemaVersion int, payload []byte) (LedgerFacts, error) {
	return JSONCodec{}.LedgerFacts(typ, schemaVersion, payload)
}

// fastLedgerFacts is DecodeLedgerFacts's fast path for version 1 payloads;
// false means "not sure: use the full decoder". It fills the fields of the
// event that LedgerFactsOf reads and hands the event to it, so the facts
// are built by the same code as on the slow path. The test checks that on
// generated payloads of every shape, including events whose other fields
// are all set, so a change of MovementOf that reads one more field fails it.
// The member names are codec_fields.go's, generated from the struct tags.
func fastLedgerFacts(typ string, payload []byte) (LedgerFacts, bool) {
	s := factScanner{b: payload}
	var (
		ev   Event
		ok   bool
		seen uint32 // one bit per member: a duplicate is left to encoding/json
	)
	once := func(bit uint) bool {
		if seen&(1<<bit) != 0 {
			return false
		}
		seen |= 1 << bit
		return true
	}
	switch typ {
	case TypeAccountOpened:
		var v AccountOpened
		ok = s.object(func(key []byte) bool {
			switch string(key) {
			case jsonAccountOpenedAccountID:
				return once(0) && s.str(&v.AccountID)
			case jsonAccountOpenedHolderName:
				return once(1) && s.str(nil)
			case jsonAccountOpenedCurrency:
				return once(2) && s.currency(&v.Currency)
			case jsonAccountOpenedKind:
				return once(3) && s.str(nil)
			case jsonAccountOpenedAgreedDailyLimit:
				return once(4) && s.money(nil)
			case jsonAccountOpenedStaffKey:
				return once(5) && s.str(nil)
			case jsonAccountOpenedIdentityCheck:
				return once(6) && s.str(nil)
			}
			return false
		})
		ev = v
	case TypeFundsDeposited:
		var v FundsDeposited
		ok = s.object(func(key []byte) bool {
			switch string(key) {
			case jsonFundsDepositedDepositID:
				return once(0) && s.str(&v.DepositID)
			case jsonFundsDepositedDebitAccount:
				return once(1) && s.str(&v.DebitAccount)
			case jsonFundsDepositedCreditAccount:
				return once(2) && s.str(&v.CreditAccount)
			case jsonFundsDepositedAmount:
				return once(3) && s.money(&v.Amount)
			case jsonFundsDepositedReference:
				return once(4) && s.str(&v.Reference)
			case jsonFundsDepositedStaffKey:
				return once(5) && s.str(nil)
			case jsonFundsDepositedIdentityCheck:
				return once(6) && s.str(nil)
			}
			return false
		})
		ev = v
	case TypePaymentConfirmed:
		var v PaymentConfirmed
		ok = s.object(func(key []byte) bool {
			switch string(key) {
			case jsonPaymentConfirmedPaymentID:
				return once(0) && s.str(&v.PaymentID)
			case jsonPaymentConfirmedDebitAccount:
				return once(1) && s.str(&v.DebitAccount)
			case jsonPaymentConfirmedCreditAccount:
				return once(2) && s.str(&v.CreditAccount)
			case jsonPaymentConfirmedAmount:
				return once(3) && s.money(&v.Amount)
			case jsonPaymentConfirmedFee:
				return once(4) && s.money(nil)
			case jsonPaymentConfirmedDescription:
				return once(5) && s.str(&v.Description)
			case jsonPaymentConfirmedVerificationLevel:
				return once(6) && s.str(nil)
			case jsonPaymentConfirmedCategories:
				return once(7) && s.strs()
			case jsonPaymentConfirmedFactorIDs:
				return once(8) && s.strs()
			case jsonPaymentConfirmedDeviceID:
				return once(9) && s.str(nil)
			case jsonPaymentConfirmedOTPUses:
				return once(10) && s.otpUses()
			case jsonPaymentConfirmedDailyLimit:
				return once(11) && s.money(nil)
			case jsonPaymentConfirmedDailyUsed:
				return once(12) && s.money(nil)
			}
			return false
		})
		ev = v
	case TypeFundsWithdrawn:
		var v FundsWithdrawn
		ok = s.object(func(key []byte) bool {
			switch string(key) {
			case jsonFundsWithdrawnWithdrawalID:
				return once(0) && s.str(&v.WithdrawalID)
			case jsonFundsWithdrawnDebitAccount:
				return once(1) && s.str(&v.DebitAccount)
			case jsonFundsWithdrawnCreditAccount:
				return once(2) && s.str(&v.CreditAccount)
			case jsonFundsWithdrawnAmount:
				return once(3) && s.money(&v.Amount)
			case jsonFundsWithdrawnBankAccountLast4:
				return once(4) && s.str(&v.BankAccountLast4)
			case jsonFundsWithdrawnVerificationLevel:
				return once(5) && s.str(nil)
			case jsonFundsWithdrawnCategories:
				return once(6) && s.strs()
			case jsonFundsWithdrawnFactorIDs:
				return once(7) && s.strs()
			case jsonFundsWithdrawnDeviceID:
				return once(8) && s.str(nil)
			case jsonFundsWithdrawnOTPUses:
				return once(9) && s.otpUses()
			}
			return false
		})
		ev = v
	default:
		return LedgerFacts{}, false
	}
	if !ok || !s.end() {
		return LedgerFacts{}, false
	}
	return LedgerFactsOf(ev), true
}

// Bounds of the fast path; a payload beyond them takes the full decoder.
const (
	// fastMaxMembers bounds the members of one object and the elements of
	// one array.
	fastMaxMembers = 64
	// fastMaxPlainAmount is the longest amount string (sign, digits and
	// point) known to parse without asking decimal.NewFromString: at most
	// 18 digits always fit its int64 shortcut.
	fastMaxPlainAmount = 18
)

// factScanner reads the subset of JSON the fast path accepts. Every method
// returns false on anything outside it; the payload then goes to the full
// decoder, so false never needs to say whether the JSON is valid.
type factScanner struct {
	b []byte
	i int
}

// ws skips JSON whitespace.
func (s *factScanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// tok consumes c after optional whitespace.
func (s *factScanner) tok(c byte) bool {
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// null consumes the literal null after optional whitespace. A letter right
// after it fails at the next token.
func (s *factScanner) null() bool {
	s.ws()
	if len(s.b)-s.i >= 4 && string(s.b[s.i:s.i+4]) == "null" {
		s.i += 4
		return true
	}
	return false
}

// end reports whether only whitespace is left.
func (s *factScanner) end() bool {
	s.ws()
	return s.i == len(s.b)
}

// raw consumes a string without escapes and returns its bytes, which are
// then exactly what encoding/json would give: no escape, no control
// character (invalid JSON), valid UTF-8 (invalid bytes would be replaced).
func (s *factScanner) raw() ([]byte, bool) {
	s.ws()
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return nil, false
	}
	start, ascii := s.i+1, true
	for j := start; j < len(s.b); j++ {
		switch c := s.b[j]; {
		case c == '"':
			out := s.b[start:j]
			if !ascii && !utf8.Valid(out) {
				return nil, false
			}
			s.i = j + 1
			return out, true
		case c == '\\' || c < 0x20:
			return nil, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, false
}

// str consumes a string member into dst (nil: only checked). A null
// leaves a string field as it is, which for a member seen once is "".
func (s *factScanner) str(dst *string) bool {
	if s.null() {
		return true
	}
	b, ok := s.raw()
	if ok && dst != nil {
		*dst = string(b)
	}
	return ok
}

// currency consumes a currency code, sharing the string of a known one.
func (s *factScanner) currency(dst *Currency) bool {
	if s.null() {
		return true
	}
	b, ok := s.raw()
	if !ok {
		return false
	}
	switch string(b) {
	case "CNY":
		*dst = CNY
	case "USD":
		*dst = "USD"
	case "EUR":
		*dst = "EUR"
	case "HKD":
		*dst = "HKD"
	case "GBP":
		*dst = "GBP"
	case "JPY":
		*dst = "JPY"
	default:
		*dst = Currency(b)
	}
	return true
}

// strs checks a []string member: null or an array of strings.
func (s *factScanner) strs() bool {
	if s.null() {
		return true
	}
	return s.array(func() bool { return s.str(nil) })
}

// array consumes an array, calling elem for each element.
func (s *factScanner) array(elem func() bool) bool {
	if !s.tok('[') {
		return false
	}
	if s.tok(']') {
		return true
	}
	for range fastMaxMembers {
		if !elem() {
			return false
		}
		if s.tok(']') {
			return true
		}
		if !s.tok(',') {
			return false
		}
	}
	return false
}

// object consumes an object, calling member with each key and the scanner
// before its value; member consumes the value.
func (s *factScanner) object(member func(key []byte) bool) bool {
	if !s.tok('{') {
		return false
	}
	if s.tok('}') {
		return true
	}
	for range fastMaxMembers {
		key, ok := s.raw()
		if !ok || !s.tok(':') || !member(key) {
			return false
		}
		if s.tok('}') {
			return true
		}
		if !s.tok(',') {
			return false
		}
	}
	return false
}

// money consumes a Money member as Money.UnmarshalJSON reads it, into dst
// (nil: only checked). It takes an object with an "amount" string and at
// most a "currency" string or null besides, once each; null, a missing
// amount and the rest are the full decoder's (Money.UnmarshalJSON fails on
// some of them).
func (s *factScanner) money(dst *Money) bool {
	var (
		amount         []byte
		cur            Currency
		hasAmt, hasCur bool
	)
	ok := s.object(func(key []byte) bool {
		switch string(key) {
		case jsonMoneyAmount:
			if hasAmt {
				return false
			}
			var ok bool
			amount, ok = s.raw()
			hasAmt = ok
			return ok
		case jsonMoneyCurrency:
			if hasCur {
				return false
			}
			hasCur = true
			return s.currency(&cur)
		}
		return false
	})
	if !ok || !hasAmt {
		return false
	}
	if dst == nil {
		return factValidAmount(amount)
	}
	d, err := decimal.NewFromString(string(amount))
	if err != nil {
		return false
	}
	*dst = Money{Amount: d, Currency: cur}
	return true
}

// factValidAmount reports whether decimal.NewFromString accepts b, without
// allocating for the plain amounts that stored events carry.
func factValidAmount(b []byte) bool {
	if factPlainAmount(b) {
		return true
	}
	_, err := decimal.NewFromString(string(b))
	return err == nil
}

// factPlainAmount reports whether b is a plain decimal (plainDecimal: an
// optional minus, digits, optionally a point and more digits) of at most
// fastMaxPlainAmount bytes: decimal.NewFromString parses all of them
// through its int64 shortcut.
func factPlainAmount(b []byte) bool {
	return len(b) <= fastMaxPlainAmount && plainDecimal(b)
}

// otpUses checks an []OTPUse member: null or an array of objects with at
// most a "factor_id" string and a "step" integer that fits int64.
func (s *factScanner) otpUses() bool {
	if s.null() {
		return true
	}
	return s.array(func() bool {
		var factor, step bool
		return s.object(func(key []byte) bool {
			switch string(key) {
			case jsonOTPUseFactorID:
				if factor {
					return false
				}
				factor = true
				return s.str(nil)
			case jsonOTPUseStep:
				if step {
					return false
				}
				step = true
				return s.int64()
			}
			return false
		})
	})
}

// int64 consumes a JSON integer (no fraction, no exponent) that fits an
// int64, which is what encoding/json stores in an int64 field.
func (s *factScanner) int64() bool {
	s.ws()
	i, neg := s.i, false
	if i < len(s.b) && s.b[i] == '-' {
		i, neg = i+1, true
	}
	start := i
	limit := uint64(1<<63 - 1)
	if neg {
		limit++
	}
	var n uint64
	for ; i < len(s.b) && s.b[i] >= '0' && s.b[i] <= '9'; i++ {
		d := uint64(s.b[i] - '0')
		if n > (limit-d)/10 {
			return false // out of range: encoding/json fails
		}
		n = n*10 + d
	}
	if i == start || (i-start > 1 && s.b[start] == '0') {
		return false
	}
	// A fraction or an exponent would follow here; the caller's next
	// token (',', '}' or ']') then fails, so they need no check of their
	// own.
	s.i = i
	return true
}
