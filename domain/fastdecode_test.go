package domain

import (
	"bytes"
	"encoding/json"
	"math/big"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

// factsRef is what DecodeLedgerFacts must always equal: the full
// decoder followed by LedgerFactsOf.
func factsRef(typ string, v int, payload []byte) (LedgerFacts, error) {
	e, err := DecodeEvent(typ, v, payload)
	if err != nil {
		return LedgerFacts{}, err
	}
	return LedgerFactsOf(e), nil
}

// factsCheck compares DecodeLedgerFacts with the reference on one payload
// and reports whether the fast path answered.
func factsCheck(t *testing.T, typ string, v int, payload []byte) (fast bool) {
	t.Helper()
	want, wantErr := factsRef(typ, v, payload)
	got, gotErr := DecodeLedgerFacts(typ, v, payload)
	if (wantErr == nil) != (gotErr == nil) || (wantErr != nil && wantErr.Error() != gotErr.Error()) {
		t.Fatalf("%s/%d %s:\n error %v\n want %v", typ, v, payload, gotErr, wantErr)
	}
	if !factsSame(got, want) {
		t.Fatalf("%s/%d %s:\n got  %#v\n want %#v", typ, v, payload, got, want)
	}
	if v != 1 {
		return false
	}
	f, ok := fastLedgerFacts(typ, payload)
	if ok && (wantErr != nil || !factsSame(f, want)) {
		t.Fatalf("fast path accepted %s %s: got %#v, full decoder %#v, %v", typ, payload, f, want, wantErr)
	}
	return ok
}

// factsSame compares exactly: the decimals' coefficient and exponent, not
// only their value, since stored amounts are rendered from them.
func factsSame(a, b LedgerFacts) bool {
	da, db := a.Movement.Amount.Amount, b.Movement.Amount.Amount
	if da.Exponent() != db.Exponent() || da.Coefficient().Cmp(db.Coefficient()) != 0 || da.String() != db.String() {
		return false
	}
	return reflect.DeepEqual(a, b)
}

// factsGenString returns a string that is often plain, sometimes full of what
// JSON escapes or encoding/json rewrites.
func factsGenString(r *rand.Rand) string {
	pieces := []string{"a", "Z", "0", "9", "-", "_", " ", "咖啡", "€", "😀", `"`, `\`, "/", "<", ">", "&",
		"\u2028", "\u2029", "\x01", "\x1f", "\t", "\n", "\xff", "\xc3", "é", "\u212a", "ſ"}
	n := r.IntN(12)
	var b strings.Builder
	plain := r.IntN(10) != 0
	for range n {
		if plain {
			b.WriteByte("abcdefghijklmnopqrstuvwxyzABCDEF0123456789-_ "[r.IntN(45)])
		} else {
			b.WriteString(pieces[r.IntN(len(pieces))])
		}
	}
	return b.String()
}

func factsGenCurrency(r *rand.Rand) Currency {
	return []Currency{CNY, CNY, CNY, "USD", "EUR", "HKD", "GBP", "JPY", "XTS", ""}[r.IntN(10)]
}

// factsGenDecimal returns amounts of every scale and size, including zero,
// negatives and more than 18 digits.
func factsGenDecimal(r *rand.Rand) decimal.Decimal {
	switch r.IntN(5) {
	case 0:
		return decimal.New(r.Int64N(1_000_000_000), -int32(r.IntN(4)))
	case 1:
		return decimal.New(-r.Int64N(1000), -int32(r.IntN(3)))
	case 2:
		return decimal.New(0, -int32(r.IntN(3)))
	case 3:
		n, _ := new(big.Int).SetString(strings.Repeat("9", 10+r.IntN(20)), 10)
		return decimal.NewFromBigInt(n, -int32(r.IntN(6)))
	}
	return decimal.New(r.Int64N(100), int32(r.IntN(3)))
}

func factsGenMoney(r *rand.Rand) Money {
	return Money{Amount: factsGenDecimal(r), Currency: factsGenCurrency(r)}
}

func factsGenStrings(r *rand.Rand) []string {
	if r.IntN(3) == 0 {
		return nil
	}
	out := make([]string, r.IntN(4))
	for i := range out {
		out[i] = factsGenString(r)
	}
	return out
}

func factsGenOTPUses(r *rand.Rand) []OTPUse {
	if r.IntN(2) == 0 {
		return nil
	}
	out := make([]OTPUse, 1+r.IntN(2))
	for i := range out {
		out[i] = OTPUse{FactorID: factsGenString(r), Step: r.Int64() - r.Int64()}
	}
	return out
}

// factsGenStaff returns no staff (an event of a holder, or one written
// before staff were recorded), a staff key alone (the funding desk), or an
// operator with an identity check.
func factsGenStaff(r *rand.Rand) Staff {
	switch r.IntN(3) {
	case 0:
		return Staff{}
	case 1:
		return Staff{StaffKey: factsGenString(r)}
	}
	return Staff{StaffKey: factsGenString(r), IdentityCheck: factsGenString(r)}
}

// factsGenEvent returns an event of one of the money-related types with every
// field set, or now and then another type.
func factsGenEvent(r *rand.Rand) Event {
	s := func() string { return factsGenString(r) }
	switch r.IntN(9) {
	case 0, 1:
		return AccountOpened{AccountID: s(), HolderName: s(), Currency: factsGenCurrency(r), Kind: s(), AgreedDailyLimit: factsGenMoney(r),
			Staff: factsGenStaff(r)}
	case 2, 3:
		return FundsDeposited{DepositID: s(), DebitAccount: s(), CreditAccount: s(), Amount: factsGenMoney(r), Reference: s(),
			Staff: factsGenStaff(r)}
	case 4, 5:
		return PaymentConfirmed{PaymentID: s(), DebitAccount: s(), CreditAccount: s(), Amount: factsGenMoney(r), Fee: factsGenMoney(r),
			Description: s(), VerificationLevel: s(), Categories: factsGenStrings(r), FactorIDs: factsGenStrings(r), DeviceID: s(),
			OTPUses: factsGenOTPUses(r), DailyLimit: factsGenMoney(r), DailyUsed: factsGenMoney(r)}
	case 6, 7:
		return FundsWithdrawn{WithdrawalID: s(), DebitAccount: s(), CreditAccount: s(), Amount: factsGenMoney(r), BankAccountLast4: s(),
			VerificationLevel: s(), Categories: factsGenStrings(r), FactorIDs: factsGenStrings(r), DeviceID: s(), OTPUses: factsGenOTPUses(r)}
	}
	others := []Event{PaymentInitiated{PaymentID: s(), Payer: s(), Payee: s(), Amount: factsGenMoney(r), Fee: factsGenMoney(r), Description: s()},
		PaymentRejected{PaymentID: s(), Code: s(), Reason: s()}, LimitAdjusted{Previous: factsGenMoney(r), AgreedDailyLimit: factsGenMoney(r)},
		// An amount, but no movement: a refused withdrawal moves nothing.
		WithdrawalRejected{WithdrawalID: s(), Amount: factsGenMoney(r), DeviceID: s(), Code: s(), Reason: s(), OTPUses: factsGenOTPUses(r)},
		// Device events hold no money, and names ("device_id",
		// "signed_at") the money events' do not.
		DeviceRegistered{DeviceID: s(), PublicKey: []byte(s()), Label: s(), SignedAt: time.Unix(int64(r.IntN(1<<31)), int64(r.IntN(1e9))).UTC()},
		DeviceUsed{DeviceID: s(), SignedAt: time.Unix(int64(r.IntN(1<<31)), int64(r.IntN(1e9))).UTC()}}
	return others[r.IntN(len(others))]
}

// factsMember is one name and raw value of a payload object, in order.
type factsMember struct {
	key string // the raw key, quotes included
	val string
}

// factsMembersOf splits a payload EncodeEvent wrote into its members.
func factsMembersOf(t *testing.T, payload []byte) []factsMember {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(payload))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("payload %s does not start an object: %v", payload, err)
	}
	var out []factsMember
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
		kb, _ := json.Marshal(k)
		out = append(out, factsMember{string(kb), string(v)})
	}
	return out
}

// join renders members as an object with random JSON whitespace.
func factsJoin(r *rand.Rand, ms []factsMember) []byte {
	ws := func() string { return []string{"", "", " ", "\n", "\t", "\r\n  "}[r.IntN(6)] }
	var b bytes.Buffer
	b.WriteString(ws() + "{")
	for i, m := range ms {
		if i > 0 {
			b.WriteString(ws() + ",")
		}
		b.WriteString(ws() + m.key + ws() + ":" + ws() + m.val)
	}
	b.WriteString(ws() + "}" + ws())
	return b.Bytes()
}

// factsOddValues are values of the wrong type or of unusual form for any factsMember.
var factsOddValues = []string{
	`null`, `0`, `-1`, `1.5`, `1e3`, `""`, `"x"`, `"12.50"`, `true`, `[]`, `{}`, `[null]`, `["a",null]`, `[1]`, `["a","b"]`,
	`{"amount":"1.00","currency":"CNY"}`, `{"currency":"CNY","amount":"0.01"}`, `{"amount":"1e3","currency":"CNY"}`,
	`{"amount":".5","currency":"CNY"}`, `{"amount":"5.","currency":"CNY"}`, `{"amount":"+5","currency":"CNY"}`,
	`{"amount":"","currency":"CNY"}`, `{"amount":"1.2.3","currency":"CNY"}`, `{"amount":"−7","currency":"CNY"}`,
	`{"amount":"-0.00","currency":"CNY"}`, `{"amount":"0012.50","currency":"CNY"}`, `{"amount":"123456789012345678","currency":"CNY"}`,
	`{"amount":"1234567890123456789.5","currency":"CNY"}`, `{"amount":"-12345678901234567","currency":"CNY"}`,
	`{"amount":"1","currency":""}`, `{"amount":"1","currency":null}`, `{"amount":null,"currency":"CNY"}`, `{"currency":"CNY"}`,
	`{"amount":"1"}`, `{"amount":12.5,"currency":"CNY"}`, `{"amount":"\u0031.00","currency":"CNY"}`, `{"Amount":"1","currency":"CNY"}`,
	`{"amount":"1","currency":"CNY","extra":1}`, `{"amount":"1","amount":"2","currency":"CNY"}`, `{"amount":"1","currency":"CNY",}`,
	`{"amount":"1" "currency":"CNY"}`, `[{"factor_id":"f","step":5}]`, `[{"step":-0}]`, `[{"step":01}]`, `[{"step":1.5}]`,
	`[{"step":1e3}]`, `[{"step":99999999999999999999}]`, `[{"step":999999999999999999}]`,
	`[{"step":9223372036854775807}]`, `[{"step":9223372036854775808}]`, `[{"step":-9223372036854775808}]`, `[{"step":-9223372036854775809}]`,
	`[{"step":18446744073709551615}]`, `[{"step":18446744073709551616}]`, `[{"step":-}]`, `[{"step":-01}]`, `[{"step":"5"}]`, `[{"step":1,"step":2}]`,
	`[{"factor_id":"f","factor_id":"g"}]`, `[{}]`, `[{"other":1}]`, `[{"step":5},]`, `[{"step":5}`, `nul`, `nulls`, `tru`,
	`"a\"b"`, `"\u00e9"`, `"é"`, `"` + "\xff" + `"`, `"` + "\x01" + `"`, `["\n"]`,
}

// factsVariants returns payloads derived from a canonical one: reordered, with
// unknown, duplicated, recased, escaped, missing and retyped members, and
// damaged bytes.
func factsVariants(t *testing.T, r *rand.Rand, payload []byte) [][]byte {
	ms := factsMembersOf(t, payload)
	out := [][]byte{payload}
	shuffled := append([]factsMember(nil), ms...)
	r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	out = append(out, factsJoin(r, shuffled))
	if len(ms) == 0 {
		return out
	}
	pick := func() int { return r.IntN(len(ms)) }
	with := func(f func([]factsMember) []factsMember) {
		c := append([]factsMember(nil), ms...)
		out = append(out, factsJoin(r, f(c)))
	}
	with(func(c []factsMember) []factsMember {
		return append(c, factsMember{`"extra"`, factsOddValues[r.IntN(len(factsOddValues))]})
	})
	with(func(c []factsMember) []factsMember {
		i := pick()
		return append(c, factsMember{c[i].key, factsOddValues[r.IntN(len(factsOddValues))]})
	})
	with(func(c []factsMember) []factsMember { i := pick(); return append(c, c[i]) })
	with(func(c []factsMember) []factsMember { i := pick(); c[i].key = strings.ToUpper(c[i].key); return c })
	with(func(c []factsMember) []factsMember {
		i := pick()
		c[i].key = strings.Replace(c[i].key, "a", `\u0061`, 1)
		return c
	})
	with(func(c []factsMember) []factsMember { i := pick(); return append(c[:i], c[i+1:]...) })
	for range 3 {
		with(func(c []factsMember) []factsMember {
			i := pick()
			c[i].val = factsOddValues[r.IntN(len(factsOddValues))]
			return c
		})
	}
	// Damaged bytes: truncated, a byte changed, trailing garbage, a BOM.
	if len(payload) > 1 {
		out = append(out, payload[:r.IntN(len(payload))])
		flipped := bytes.Clone(payload)
		flipped[r.IntN(len(flipped))] = `{}[]",:0a\ n`[r.IntN(12)]
		out = append(out, flipped)
	}
	out = append(out, append(bytes.Clone(payload), []byte(` x`)...), append([]byte("\xef\xbb\xbf"), payload...))
	return out
}

func TestDecodeLedgerFactsMatchesDecodeEvent(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var payloads, fast, canonicalPlain, canonicalFast int
	for range 4000 {
		e := factsGenEvent(r)
		typ, v, payload, err := EncodeEvent(e)
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range factsVariants(t, r, payload) {
			payloads++
			ok := factsCheck(t, typ, v, p)
			if ok {
				fast++
			}
			if i == 0 && bytes.IndexByte(p, '\\') < 0 && factsFastType(typ) {
				// EncodeEvent's own form without escapes is what the fast
				// path exists for: it must take it.
				canonicalPlain++
				if ok {
					canonicalFast++
				} else if _, err := DecodeEvent(typ, v, p); err == nil {
					t.Errorf("fast path refused a canonical %s payload: %s", typ, p)
				}
			}
		}
		// Other versions and types always take the full decoder.
		factsCheck(t, typ, 2, payload)
		factsCheck(t, "Nope", 1, payload)
	}
	t.Logf("%d payloads, %d on the fast path; %d of %d canonical plain ones", payloads, fast, canonicalFast, canonicalPlain)
	if canonicalPlain < 1000 || fast < 2000 {
		t.Errorf("the generator exercised the fast path too little: %d canonical plain payloads, %d fast in all", canonicalPlain, fast)
	}
}

func factsFastType(typ string) bool {
	switch typ {
	case TypeAccountOpened, TypeFundsDeposited, TypePaymentConfirmed, TypeFundsWithdrawn:
		return true
	}
	return false
}

// TestDecodeLedgerFactsCases pins the fast path's decisions on hand-written
// payloads; every one must also give the full decoder's answer.
func TestDecodeLedgerFactsCases(t *testing.T) {
	const pay = `{"payment_id":"p1","debit_account":"a","credit_account":"b","amount":{"amount":"12.50","currency":"CNY"},"description":"coffee"}`
	tests := []struct {
		name    string
		typ     string
		payload string
		fast    bool
		amount  string // the expected amount; "" for an error
	}{
		{"Canonical", TypePaymentConfirmed, pay, true, "12.5"},
		{"Reordered", TypePaymentConfirmed, `{ "amount" : {"currency":"CNY","amount":"7.05"},"credit_account":"b","debit_account":"a"}`, true, "7.05"},
		{"FullConfirmed", TypePaymentConfirmed, `{"payment_id":"p","debit_account":"a","credit_account":"b","amount":{"amount":"0.01","currency":"CNY"},` +
			`"fee":{"amount":"0.00","currency":"CNY"},"description":"d","verification_level":"single_factor","categories":["possession"],` +
			`"factor_ids":["f1"],"device_id":"dev","otp_uses":[{"factor_id":"f1","step":59000001}],` +
			`"daily_limit":{"amount":"1000.00","currency":"CNY"},"daily_used":{"amount":"0.01","currency":"CNY"}}`, true, "0.01"},
		{"NullSlices", TypePaymentConfirmed, `{"debit_account":"a","credit_account":"b","amount":{"amount":"1","currency":"CNY"},"categories":null,"factor_ids":null}`, true, "1"},
		{"ExponentAmount", TypePaymentConfirmed, `{"debit_account":"a","credit_account":"b","amount":{"amount":"1e3","currency":"CNY"}}`, true, "1000"},
		{"EscapedDescription", TypePaymentConfirmed, `{"debit_account":"a","credit_account":"b","amount":{"amount":"1","currency":"CNY"},"description":"Tom \u0026 Jerry"}`, false, "1"},
		{"EscapedKey", TypePaymentConfirmed, `{"debit_\u0061ccount":"a","credit_account":"b","amount":{"amount":"1","currency":"CNY"}}`, false, "1"},
		{"UnknownMember", TypePaymentConfirmed, `{"debit_account":"a","credit_account":"b","amount":{"amount":"1","currency":"CNY"},"tip":"5.00"}`, false, "1"},
		{"RecasedKey", TypePaymentConfirmed, `{"debit_account":"a","credit_account":"b","Amount":{"amount":"9","currency":"CNY"}}`, false, "9"},
		{"DuplicateKeyLastWins", TypePaymentConfirmed, `{"debit_account":"a","credit_account":"b","amount":{"amount":"1","currency":"CNY"},"amount":{"amount":"2","currency":"CNY"}}`, false, "2"},
		{"DuplicateThenNull", TypePaymentConfirmed, `{"debit_account":"a","debit_account":null,"credit_account":"b","amount":{"amount":"1","currency":"CNY"}}`, false, "1"},
		{"NullMoney", TypePaymentConfirmed, `{"debit_account":"a","credit_account":"b","amount":null}`, false, ""},
		{"BadOtherAmount", TypePaymentConfirmed, `{"debit_account":"a","credit_account":"b","amount":{"amount":"1","currency":"CNY"},"fee":{"amount":"x","currency":"CNY"}}`, false, ""},
		{"FractionalStep", TypePaymentConfirmed, `{"debit_account":"a","credit_account":"b","amount":{"amount":"1","currency":"CNY"},"otp_uses":[{"step":1.5}]}`, false, ""},
		{"NumberForString", TypePaymentConfirmed, `{"debit_account":7,"credit_account":"b","amount":{"amount":"1","currency":"CNY"}}`, false, ""},
		{"TrailingComma", TypePaymentConfirmed, `{"debit_account":"a","credit_account":"b","amount":{"amount":"1","currency":"CNY"},}`, false, ""},
		{"TrailingData", TypePaymentConfirmed, pay + `{}`, false, ""},
		{"InvalidUTF8", TypePaymentConfirmed, `{"debit_account":"a` + "\xff" + `","credit_account":"b","amount":{"amount":"1","currency":"CNY"}}`, false, "1"},
		{"TopLevelNull", TypePaymentConfirmed, `null`, false, "0"}, // a zero event: no error here, the projection refuses it
		{"Withdrawal", TypeFundsWithdrawn, `{"withdrawal_id":"w","debit_account":"a","credit_account":"clearing-CNY","amount":{"amount":"3.00","currency":"CNY"},"bank_account_last4":"3445"}`, true, "3"},
		{"Deposit", TypeFundsDeposited, `{"deposit_id":"d","debit_account":"clearing-CNY","credit_account":"a","amount":{"amount":"100","currency":"USD"},"reference":"r"}`, true, "100"},
		// Deposits name the funding desk's staff key (R26), and an account an
		// operator opened names the operator and the identity check.
		{"DepositByStaff", TypeFundsDeposited, `{"deposit_id":"d","debit_account":"clearing-CNY","credit_account":"a","amount":{"amount":"100.00","currency":"CNY"},"reference":"r","staff_key":"staff-funding-1"}`, true, "100"},
		{"DepositStaffNull", TypeFundsDeposited, `{"deposit_id":"d","debit_account":"clearing-CNY","credit_account":"a","amount":{"amount":"1","currency":"CNY"},"staff_key":null,"identity_check":null}`, true, "1"},
		{"DepositStaffNumber", TypeFundsDeposited, `{"deposit_id":"d","debit_account":"clearing-CNY","credit_account":"a","amount":{"amount":"1","currency":"CNY"},"staff_key":7}`, false, ""},
		{"DepositStaffTwice", TypeFundsDeposited, `{"deposit_id":"d","debit_account":"clearing-CNY","credit_account":"a","amount":{"amount":"1","currency":"CNY"},"staff_key":"a","staff_key":"b"}`, false, "1"},
		{"Opened", TypeAccountOpened, `{"account_id":"a","holder_name":"Li","currency":"JPY","kind":"personal","agreed_daily_limit":{"amount":"50000","currency":"JPY"}}`, true, "0"},
		{"OpenedByOperator", TypeAccountOpened, `{"account_id":"a","holder_name":"Li","currency":"CNY","kind":"personal","agreed_daily_limit":{"amount":"50000.00","currency":"CNY"},"staff_key":"staff-op-1","identity_check":"branch-visit-42"}`, true, "0"},
		{"NotMoney", TypePaymentInitiated, `{"payment_id":"p"}`, false, "0"},
		{"Unknown", "PaymentTeleported", `{}`, false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fast := factsCheck(t, tc.typ, 1, []byte(tc.payload))
			if fast != tc.fast {
				t.Errorf("fast path taken = %v, want %v", fast, tc.fast)
			}
			got, err := DecodeLedgerFacts(tc.typ, 1, []byte(tc.payload))
			switch {
			case tc.amount == "" && err == nil:
				t.Errorf("decoded %#v, want an error", got)
			case tc.amount != "" && err != nil:
				t.Errorf("error %v, want amount %s", err, tc.amount)
			case err == nil && got.Movement.Amount.Amount.String() != tc.amount:
				t.Errorf("amount %s, want %s", got.Movement.Amount.Amount, tc.amount)
			}
		})
	}
	payloadOf := func(name string) []byte {
		for _, tc := range tests {
			if tc.name == name {
				return []byte(tc.payload)
			}
		}
		t.Fatalf("no case %s", name)
		return nil
	}
	t.Run("Facts", func(t *testing.T) {
		got, err := DecodeLedgerFacts(TypeFundsWithdrawn, 1, payloadOf("Withdrawal"))
		want := LedgerFacts{Moves: true, Movement: Movement{Debit: "a", Credit: "clearing-CNY", Amount: MustMoney("3.00", CNY),
			Ref: "w", Description: "withdrawal to bank account ****3445"}}
		if err != nil || !factsSame(got, want) {
			t.Errorf("withdrawal: %#v, %v; want %#v", got, err, want)
		}
		got, err = DecodeLedgerFacts(TypeAccountOpened, 1, payloadOf("Opened"))
		if err != nil || got != (LedgerFacts{Opened: true, AccountID: "a", Currency: "JPY"}) {
			t.Errorf("opened: %#v, %v", got, err)
		}
	})
}

// TestPlainAmountsParse backs factPlainAmount's claim: every string it accepts
// decimal.NewFromString parses, to the value the digits say.
func TestPlainAmountsParse(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 20000 {
		n := 1 + r.IntN(fastMaxPlainAmount+2)
		b := make([]byte, n)
		for i := range b {
			b[i] = "0123456789.-"[r.IntN(12)]
		}
		d, err := decimal.NewFromString(string(b))
		if factPlainAmount(b) {
			if err != nil {
				t.Fatalf("factPlainAmount(%q) but NewFromString: %v", b, err)
			}
			if factValidAmount(b) != true {
				t.Fatalf("factValidAmount(%q) = false", b)
			}
			want, _ := new(big.Rat).SetString(string(b))
			if d.Rat().Cmp(want) != 0 {
				t.Fatalf("NewFromString(%q) = %s", b, d)
			}
		} else if factValidAmount(b) != (err == nil) {
			t.Fatalf("factValidAmount(%q) = %v, NewFromString error %v", b, factValidAmount(b), err)
		}
	}
	for _, s := range []string{"", "-", ".", "1.", ".1", "--1", "1..2", "1234567890123456789", "+1", "1e2"} {
		if factPlainAmount([]byte(s)) {
			t.Errorf("factPlainAmount(%q) = true", s)
		}
	}
}

// benchConfirmed is a PaymentConfirmed as payledger bench writes them.
func benchConfirmed() PaymentConfirmed {
	return PaymentConfirmed{PaymentID: "01JDQ3W5R7ZK8M2N4P6Q8R0S2T", DebitAccount: "01JDQ3W5R7ZK8M2N4P6Q8R0S2V", CreditAccount: "01JDQ3W5R7ZK8M2N4P6Q8R0S2W",
		Amount: MustMoney("0.27", CNY), Fee: Zero(CNY), Description: "bench payment", VerificationLevel: LevelSingleFactor,
		Categories: []string{CategoryPossession}, FactorIDs: []string{"01JDQ3W5R7ZK8M2N4P6Q8R0S2X"}, DeviceID: "bench-device",
		OTPUses: []OTPUse{{FactorID: "01JDQ3W5R7ZK8M2N4P6Q8R0S2X", Step: 63113904}}, DailyLimit: MustMoney("1000.00", CNY), DailyUsed: MustMoney("0.27", CNY)}
}

// TestDecodeLedgerFactsAllocations keeps the fast path allocation-light:
// the strings it keeps, the amount, nothing per skipped factsMember.
func TestDecodeLedgerFactsAllocations(t *testing.T) {
	e := benchConfirmed()
	typ, v, p, err := EncodeEvent(e)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := fastLedgerFacts(typ, p); !ok {
		t.Fatalf("fast path refused %s", p)
	}
	full := testing.AllocsPerRun(100, func() { _, _ = factsRef(typ, v, p) })
	fast := testing.AllocsPerRun(100, func() { _, _ = DecodeLedgerFacts(typ, v, p) })
	t.Logf("allocations per decode: full %.0f, fast %.0f", full, fast)
	if fast > 8 || fast*3 > full {
		t.Errorf("fast path allocates %.0f times per decode (full decoder %.0f)", fast, full)
	}
}

func FuzzDecodeLedgerFacts(f *testing.F) {
	for _, e := range sampleEvents() {
		typ, _, p, err := EncodeEvent(e)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(typ, p)
	}
	for _, v := range factsOddValues {
		f.Add(TypePaymentConfirmed, []byte(`{"debit_account":"a","credit_account":"b","amount":`+v+`}`))
		f.Add(TypePaymentConfirmed, []byte(`{"debit_account":"a","credit_account":"b","amount":{"amount":"1","currency":"CNY"},"otp_uses":`+v+`}`))
	}
	f.Fuzz(func(t *testing.T, typ string, payload []byte) {
		factsCheck(t, typ, 1, payload)
	})
}

func BenchmarkDecodeLedgerFacts(b *testing.B) {
	e := benchConfirmed()
	typ, v, p, err := EncodeEvent(e)
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		fn   func() (LedgerFacts, error)
	}{
		{"Full", func() (LedgerFacts, error) { return factsRef(typ, v, p) }},
		{"Fast", func() (LedgerFacts, error) { return DecodeLedgerFacts(typ, v, p) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bc.fn(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
