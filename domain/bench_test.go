package domain

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

// BenchmarkPaymentDecideApplyEncode is the domain's share of one payment of
// `payledger bench`: decide, encode and apply an initiation, then a
// confirmation with a TOTP proof from another device, against an account
// whose balance projection keeps up.
func BenchmarkPaymentDecideApplyEncode(b *testing.B) {
	loc, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		b.Fatal(err)
	}
	p := DefaultPolicy(loc)
	p.Secrets = identityOpener{}
	a := NewAccount(loc)
	now := t0
	var pos int64
	apply := func(evs []Event) {
		for _, e := range evs {
			if _, _, _, err := EncodeEvent(e); err != nil {
				b.Fatal(err)
			}
			pos++
			a.Apply(e, Recorded{Version: a.Version + 1, Position: pos, OccurredAt: now})
		}
	}
	decide := func(cmd Command) []Event {
		evs, err := Decide(a, cmd, p, now)
		if err != nil {
			b.Fatalf("%T: %v", cmd, err)
		}
		return evs
	}
	// Opened by an operator after an identity check, so that the TOTP
	// factor enrolled with it pays at once.
	apply(decide(OpenAccount{AccountID: accountID, HolderName: holder, Currency: "CNY", Staff: operator,
		Factor: EnrollFactor{FactorID: "01JTOTPFACTOR0000000000000", Method: MethodTOTP, DeviceID: deviceToken, SealedSecret: []byte(secretApp)}}))
	apply(decide(Deposit{DepositID: "d1", Amount: "1000000.00", Currency: "CNY", Reference: "bank transfer 1", Staff: fundingDesk}))
	projected, checkpoint := decimal.Zero, int64(0)
	nonce := make([]byte, 32)
	ids := make([]string, 4096)
	for i := range ids {
		ids[i] = fmt.Sprintf("01JPAYMENT%016d", i)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		now = now.Add(TOTPStep) // a fresh TOTP step for every payment
		// The projection catches up with the account before each payment.
		projected, checkpoint = a.Available(projected, checkpoint).Amount, a.LastPosition
		a.Forget(checkpoint)
		id := ids[i%len(ids)]
		apply(decide(InitiatePayment{PaymentID: id, PayeeID: payeeID, Payee: activePayee,
			Amount: "0.17", Currency: "CNY", Channel: "app", Terminal: "mobile", DeviceID: deviceApp, Nonce: nonce}))
		code, err := TOTPCode(secretApp, TOTPStepAt(now))
		if err != nil {
			b.Fatal(err)
		}
		evs := decide(ConfirmPayment{PaymentID: id, DeviceID: "phone-9", Proofs: []Proof{{FactorID: "01JTOTPFACTOR0000000000000", Code: code}},
			Balance: Balance{Projected: projected, Checkpoint: checkpoint}, PayeeID: payeeID, Payee: activePayee})
		if _, ok := evs[len(evs)-1].(PaymentConfirmed); !ok {
			b.Fatalf("confirm produced %v", types(evs))
		}
		apply(evs)
	}
}

// BenchmarkEncodePaymentEvents compares encoding/json with the hand-written
// encoders on the two events of a payment.
func BenchmarkEncodePaymentEvents(b *testing.B) {
	amt := MustMoney("0.17", CNY)
	evs := []Event{
		PaymentInitiated{PaymentID: "01JPAYMENT0000000000000001", Payer: "01JPAYER000000000000000001", Payee: "01JPAYEE000000000000000001",
			Amount: amt, Fee: Zero(CNY), Channel: "app", Terminal: "mobile", DeviceID: "phone-17", Challenge: make([]byte, 32),
			ExpiresAt: t0.Add(5 * time.Minute)},
		PaymentConfirmed{PaymentID: "01JPAYMENT0000000000000001", DebitAccount: "01JPAYER000000000000000001", CreditAccount: "01JPAYEE000000000000000001",
			Amount: amt, Fee: Zero(CNY), VerificationLevel: LevelSingleFactor, Categories: []string{CategoryPossession},
			FactorIDs: []string{"01JFACTOR00000000000000001"}, DeviceID: "phone-17", OTPUses: []OTPUse{{FactorID: "01JFACTOR00000000000000001", Step: 63000000}},
			DailyLimit: MustMoney("1000.00", CNY), DailyUsed: MustMoney("3.40", CNY)},
	}
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for _, e := range evs {
				if _, err := json.Marshal(e); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("EncodeEvent", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for _, e := range evs {
				if _, _, _, err := EncodeEvent(e); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}

// BenchmarkMatchTOTP compares the library-based check (the reference) with
// MatchTOTP on a code of the newest accepted step, so all three steps are
// computed.
func BenchmarkMatchTOTP(b *testing.B) {
	step := TOTPStepAt(t0) + TOTPSkew
	code, err := TOTPCode(secretApp, step)
	if err != nil {
		b.Fatal(err)
	}
	for _, f := range []struct {
		name  string
		match func(secret, code string, now time.Time, lastUsed int64) (int64, bool, error)
	}{{"hotp-reference", refMatchTOTP}, {"MatchTOTP", MatchTOTP}} {
		b.Run(f.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if s, ok, err := f.match(secretApp, code, t0, 0); !ok || s != step || err != nil {
					b.Fatal(s, ok, err)
				}
			}
		})
	}
}

// BenchmarkAvailable is one decision's balance with lag own moves the
// projection has not counted yet (about 8 per paying account in payledger
// bench, many more while the projection catches up).
func BenchmarkAvailable(b *testing.B) {
	for _, lag := range []int{8, 256} {
		b.Run(fmt.Sprintf("lag=%d", lag), func(b *testing.B) {
			a := NewAccount(time.UTC)
			a.Currency = CNY
			for i := range lag {
				a.addMove(int64(i+1), decimal.New(int64(1+i%30), -2), i%4 != 0)
			}
			projected := decimal.New(100000000, -2)
			b.ReportAllocs()
			for b.Loop() {
				if a.Available(projected, 0).Amount.IsZero() {
					b.Fatal("zero")
				}
			}
		})
	}
}
