package domain

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

// TestSnapshotCoversAccount: every field of Account has its place in the
// snapshot (only the time zone, which the loader supplies, has none), so
// a field added to the aggregate cannot be silently dropped by snapshots.
func TestSnapshotCoversAccount(t *testing.T) {
	state := reflect.TypeOf(accountState{})
	acct := reflect.TypeOf(Account{})
	if acct.NumField()-1 != state.NumField() {
		t.Fatalf("Account has %d fields besides loc, the snapshot %d: add the new field to accountState, MarshalSnapshot and RestoreAccount, and raise AccountSnapshotSchema",
			acct.NumField()-1, state.NumField())
	}
}

// randomHistory makes n events of the kinds the account aggregate folds,
// with ids from small pools so that later events meet earlier ones.
func randomHistory(r *rand.Rand, n int, start time.Time) []Event {
	pick := func(prefix string, k int) string { return fmt.Sprintf("%s%d", prefix, r.IntN(k)) }
	money := func() Money { return Money{Amount: decimal.New(int64(1+r.IntN(100000)), -2), Currency: CNY} }
	at := func() time.Time { return start.Add(time.Duration(r.IntN(72)) * time.Hour) }
	auth := func() Authorised {
		return Authorised{DeviceID: pick("dev", 3), FactorIDs: []string{pick("f", 5)}, OTPUses: []OTPUse{{FactorID: pick("f", 5), Step: int64(r.IntN(1000))}}}
	}
	evs := []Event{AccountOpened{AccountID: "acc", HolderName: "Li Wei", Currency: CNY, Kind: KindPersonal, AgreedDailyLimit: MustMoney("50000.00", CNY)}}
	gens := []func() Event{
		func() Event {
			return FactorEnrolled{FactorID: pick("f", 5), Method: MethodTOTP, Category: CategoryPossession, DeviceID: pick("dev", 3),
				SealedSecret: []byte{byte(r.IntN(256))}, UsableFrom: at(), Authorised: auth()}
		},
		func() Event { return FactorRevoked{FactorID: pick("f", 5), Authorised: auth()} },
		func() Event { return CredentialLossReported{FactorID: pick("f", 5)} },
		func() Event {
			return CredentialReset{FactorID: pick("f", 5), PasswordHash: pick("h", 9), UsableFrom: at(), Authorised: auth()}
		},
		func() Event {
			return LoginSucceeded{SessionID: pick("s", 20), TokenHash: []byte{1, byte(r.IntN(9))}, DeviceID: pick("dev", 3),
				FactorIDs: []string{pick("f", 5)}, ExpiresAt: at(), OTPUses: auth().OTPUses}
		},
		func() Event { return LoginFailed{FailedAttempts: r.IntN(6), OTPUses: auth().OTPUses} },
		func() Event { return AccessLocked{Until: at(), FailedAttempts: 5} },
		func() Event { return AccessUnlocked{Authorised: auth()} },
		func() Event { return LimitAdjusted{AgreedDailyLimit: money(), Authorised: auth()} },
		func() Event { return PhoneChanged{Phone: pick("+86138", 99), Authorised: auth()} },
		func() Event {
			return BankAccountBound{BankAccountToken: pick("tok", 9), Last4: "3445", HolderName: "Li Wei"}
		},
		func() Event {
			return FundsDeposited{DepositID: pick("d", 99), Amount: money(), Reference: pick("ref", 50), Staff: Staff{StaffKey: "k"}}
		},
		func() Event {
			return PaymentInitiated{PaymentID: pick("p", 30), Payer: "acc", Payee: "other", Amount: money(), Fee: Zero(CNY),
				Challenge: []byte{byte(r.IntN(256))}, ExpiresAt: at()}
		},
		func() Event {
			return PaymentConfirmed{PaymentID: pick("p", 30), DebitAccount: "acc", CreditAccount: "other", Amount: money(),
				VerificationLevel: []string{LevelSingleFactor, LevelTwoFactor, LevelTwoFactorCertificate}[r.IntN(3)]}
		},
		func() Event { return PaymentRejected{PaymentID: pick("p", 30), Code: CodeInsufficientFunds} },
		func() Event {
			return FundsWithdrawn{WithdrawalID: pick("w", 9), Amount: money(), BankAccountLast4: "3445"}
		},
		func() Event { return FeeCharged{PaymentID: pick("p", 30), Amount: money()} },
		func() Event { return CompensationRecovered{CaseID: pick("c", 4), Amount: money()} },
		func() Event { return LossClaimed{CaseID: pick("c", 4), PaymentIDs: []string{pick("p", 30)}} },
		func() Event { return ServiceSuspended{Staff: Staff{StaffKey: []string{"", "k"}[r.IntN(2)]}} },
		func() Event { return ServiceReactivated{} },
		func() Event { return SessionEnded{SessionID: pick("s", 20)} },
		func() Event {
			return DeviceRegistered{DeviceID: pick("dev", 3), PublicKey: []byte{byte(r.IntN(256))}, SignedAt: at()}
		},
		func() Event { return DeviceRevoked{DeviceID: pick("dev", 3)} },
		func() Event { return DeviceUsed{DeviceID: pick("dev", 3), SignedAt: at()} },
		func() Event { return ChangeRejected{OTPUses: auth().OTPUses} },
	}
	for len(evs) < n {
		evs = append(evs, gens[r.IntN(len(gens))]())
	}
	return evs
}

func applyAll(a *Account, evs []Event, from int) {
	for i, e := range evs {
		v := int64(from + i + 1)
		a.Apply(e, Recorded{Version: v, Position: 10 * v, OccurredAt: time.Unix(1764000000+v*600, 0).UTC()})
	}
}

func snapshotOf(t *testing.T, a *Account) []byte {
	t.Helper()
	b, err := a.MarshalSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSnapshotEquivalence: for random histories, an aggregate restored
// from a snapshot taken at any point and given the rest of the stream
// equals the one that folded the whole stream, and decides the same.
func TestSnapshotEquivalence(t *testing.T) {
	loc := time.FixedZone("Asia/Shanghai", 8*3600)
	start := time.Date(2026, 3, 1, 9, 0, 0, 0, loc)
	for seed := uint64(0); seed < 200; seed++ {
		r := rand.New(rand.NewPCG(seed, 77))
		evs := randomHistory(r, 5+r.IntN(120), start)
		cut := 1 + r.IntN(len(evs))
		whole := NewAccount(loc)
		applyAll(whole, evs, 0)
		part := NewAccount(loc)
		applyAll(part, evs[:cut], 0)
		restored, err := RestoreAccount(snapshotOf(t, part), loc)
		if err != nil {
			t.Fatal(err)
		}
		applyAll(restored, evs[cut:], cut)
		if a, b := snapshotOf(t, whole), snapshotOf(t, restored); !bytes.Equal(a, b) {
			t.Fatalf("seed %d, snapshot after %d of %d events: restored state\n%s\nwant\n%s", seed, cut, len(evs), b, a)
		}
		// The restored aggregate decides as the whole one does.
		now := start.Add(80 * time.Hour)
		for _, check := range []func(*Account) string{
			func(a *Account) string { return a.Available(decimal.NewFromInt(500), 0).String() },
			func(a *Account) string { s, n, all := a.DayUsage(now); return s.String() + n.String() + all.String() },
			func(a *Account) string { return fmt.Sprint(len(a.Factors()), a.Status, a.AgreedLimit, a.Exists()) },
			func(a *Account) string { c, ok := a.ClaimedIn("p3"); return fmt.Sprint(c, ok, a.Recovered("c1")) },
		} {
			if x, y := check(whole), check(restored); x != y {
				t.Fatalf("seed %d: restored aggregate answers %q, whole %q", seed, y, x)
			}
		}
	}
}

// TestSnapshotRejectsGarbage: a corrupted payload is an error, never a
// half-restored aggregate.
func TestSnapshotRejectsGarbage(t *testing.T) {
	for _, p := range [][]byte{nil, []byte("{"), []byte(`{"version":"x"}`), []byte(`[]`)} {
		if a, err := RestoreAccount(p, time.UTC); err == nil {
			t.Errorf("RestoreAccount(%q) = %+v, want an error", p, a)
		}
	}
}
