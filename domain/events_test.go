package domain

import (
	"bytes"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

// sampleEvents has one fully populated event of every type (some types
// twice: with and without their optional parts).
func sampleEvents() []Event {
	at := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	amt := MustMoney("12.50", CNY)
	staff := Staff{StaffKey: "staff-op-1", IdentityCheck: "branch-visit-42"}
	byHolder := Authorised{DeviceID: "laptop-1", FactorIDs: []string{"f2", "f4"}, Categories: []string{CategoryInherence, CategoryKnowledge},
		OTPUses: []OTPUse{{FactorID: "f1", Step: 58999980}}}
	return []Event{
		AccountOpened{AccountID: "acc-1", HolderName: "Li Wei", Currency: CNY, Kind: KindPersonal, AgreedDailyLimit: MustMoney("50000.00", CNY)},
		AccountOpened{AccountID: "acc-3", HolderName: "Wang Fang", Currency: CNY, Kind: KindMerchant, AgreedDailyLimit: MustMoney("50000.00", CNY), Staff: staff},
		FactorEnrolled{FactorID: "f1", Method: MethodTOTP, Category: CategoryPossession, DeviceID: "phone-1", SealedSecret: []byte{1, 2, 3}, Staff: staff},
		FactorEnrolled{FactorID: "f2", Method: MethodPassword, Category: CategoryKnowledge, PasswordHash: "$argon2id$v=19$m=8,t=1,p=1$c2FsdA$a2V5",
			UsableFrom: at.Add(24 * time.Hour)},
		FactorEnrolled{FactorID: "f3", Method: MethodCertificate, Category: CategoryPossession, PublicKey: bytes.Repeat([]byte{7}, 32),
			UsableFrom: at.Add(24 * time.Hour), Authorised: byHolder},
		FactorRevoked{FactorID: "f1", Reason: "phone replaced", Authorised: byHolder},
		CredentialReset{FactorID: "f2", Method: MethodPassword, PasswordHash: "$argon2id$v=19$m=8,t=1,p=1$c2FsdA$bmV3", UsableFrom: at.Add(24 * time.Hour),
			Authorised: Authorised{DeviceID: "laptop-1", FactorIDs: []string{"f1", "f4"}, Categories: []string{CategoryInherence, CategoryPossession},
				OTPUses: []OTPUse{{FactorID: "f1", Step: 58999990}}}},
		CredentialLossReported{FactorID: "f3", Method: MethodCertificate},
		CredentialLossReported{FactorID: "f4", Method: MethodBiometric, Staff: staff},
		LoginSucceeded{SessionID: "s1", TokenHash: []byte{9, 9}, DeviceID: "laptop-1", FactorIDs: []string{"f1", "f2"},
			Categories: []string{CategoryKnowledge, CategoryPossession}, ExpiresAt: at.Add(15 * time.Minute),
			OTPUses: []OTPUse{{FactorID: "f1", Step: 59000000}}},
		LoginFailed{DeviceID: "laptop-1", Reason: "wrong password", FailedAttempts: 2, Code: CodeAuthFailed,
			LockedUntil: at.Add(time.Minute), OTPUses: []OTPUse{{FactorID: "f1", Step: 58999999}}},
		VerificationFailed{Purpose: "payment", Reference: "p1", DeviceID: "phone-1", Reason: "signature does not verify", FailedAttempts: 3,
			LockedUntil: at.Add(time.Minute), OTPUses: []OTPUse{{FactorID: "f1", Step: 58999998}}},
		AccessLocked{Until: at.Add(30 * time.Minute), FailedAttempts: 5},
		PersonalDataErased{Reference: "dsr-2031-77", Staff: Staff{StaffKey: "staff-compliance-1"}},
		AccessUnlocked{Reason: "lock expired"},
		AccessUnlocked{Reason: "called the branch", Staff: staff},
		LimitAdjusted{Previous: MustMoney("50000.00", CNY), AgreedDailyLimit: MustMoney("20000.00", CNY)},
		LimitAdjusted{Previous: MustMoney("20000.00", CNY), AgreedDailyLimit: MustMoney("80000.00", CNY), Authorised: byHolder},
		IdentityChanged{HolderName: "Li Wei Jr.", Authorised: Authorised{DeviceID: "laptop-1", FactorIDs: []string{"f2"}, Categories: []string{CategoryKnowledge}}},
		PhoneChanged{Phone: "+8613800138000", Authorised: Authorised{DeviceID: "laptop-1", FactorIDs: []string{"f1", "f2"},
			Categories: []string{CategoryKnowledge, CategoryPossession}, OTPUses: []OTPUse{{FactorID: "f1", Step: 58999991}}}},
		BankAccountBound{BankAccountToken: "tok-abc", Last4: "3445", HolderName: "Li Wei", Authorised: byHolder},
		FundsDeposited{DepositID: "d1", DebitAccount: ClearingAccountID(CNY), CreditAccount: "acc-1", Amount: amt, Reference: "bank-transfer-123",
			Staff: Staff{StaffKey: "staff-funding-1"}},
		PaymentInitiated{PaymentID: "p1", Payer: "acc-1", Payee: "acc-2", Amount: amt, Fee: Zero(CNY), Channel: "app", Terminal: "mobile",
			DeviceID: "phone-1", Description: "咖啡 coffee", Challenge: bytes.Repeat([]byte{5}, 32), ExpiresAt: at.Add(5 * time.Minute)},
		PaymentConfirmed{PaymentID: "p1", DebitAccount: "acc-1", CreditAccount: "acc-2", Amount: amt, Fee: Zero(CNY), Description: "coffee",
			VerificationLevel: LevelTwoFactor, Categories: []string{CategoryKnowledge, CategoryPossession}, FactorIDs: []string{"f1", "f2"},
			DeviceID: "phone-1", OTPUses: []OTPUse{{FactorID: "f1", Step: 59000001}}},
		PaymentRejected{PaymentID: "p2", Code: CodeDailyLimitExceeded, Reason: "over the limit",
			Details: map[string]any{"limit": "1000.00", "cap": "single_factor_daily", "over": true},
			OTPUses: []OTPUse{{FactorID: "f1", Step: 59000002}}},
		FundsWithdrawn{WithdrawalID: "w1", DebitAccount: "acc-1", CreditAccount: ClearingAccountID(CNY), Amount: amt, BankAccountLast4: "3445",
			VerificationLevel: LevelSingleFactor, Categories: []string{CategoryKnowledge}, FactorIDs: []string{"f2"}, DeviceID: "phone-1"},
		// String details only, so the round trip compares exactly.
		WithdrawalRejected{WithdrawalID: "w2", Amount: amt, DeviceID: "phone-1", Code: CodeInsufficientFunds,
			Reason: "available balance 1.00 CNY is less than 12.50 CNY", Details: map[string]any{"available": "1.00", "required": "12.50"},
			OTPUses: []OTPUse{{FactorID: "f1", Step: 59000003}}},
		ChangeRejected{Change: ChangeKindCredentialReset, Reference: "f2", DeviceID: "laptop-1", Code: CodeInsufficientVerification,
			Reason:  "a credential reset needs proofs of 2 independent factor categories; these count 1",
			Details: map[string]any{"required": "2"}, OTPUses: []OTPUse{{FactorID: "f1", Step: 59000004}}},
		ServiceSuspended{Reason: "customer request"},
		ServiceSuspended{Reason: "risk review", Staff: staff},
		ServiceReactivated{Reason: "customer request"},
		ServiceReactivated{Reason: "risk cleared", Staff: staff},
		AccountClosed{Reason: "customer request", Staff: staff},
		SessionEnded{SessionID: "s1", Reason: "logout"},
		HolderNotified{Change: ChangeKindEnrolment, Reference: "f3"},
		HolderNotified{Change: ChangeKindUnlock, Staff: staff},
		StaffRead{Role: "support", What: "history", Staff: staff},
		// The first device (no step-up), and another one authorised by a
		// step-up from a proven device.
		DeviceRegistered{DeviceID: "phone-1", PublicKey: bytes.Repeat([]byte{0xfb}, 32), Label: "Li Wei's phone 手机", SignedAt: at.Add(-time.Second)},
		DeviceRegistered{DeviceID: "laptop-1", PublicKey: bytes.Repeat([]byte{8}, 32), SignedAt: at.Add(time.Minute + 123456789*time.Nanosecond),
			Authorised: byHolder},
		DeviceUsed{DeviceID: "laptop-1", SignedAt: at.Add(2*time.Minute + time.Nanosecond)},
		DeviceRevoked{DeviceID: "laptop-1", Reason: "stolen", Authorised: byHolder},
		DeviceRevoked{DeviceID: "phone-1", Staff: staff},
		FeeCharged{PaymentID: "p1", DebitAccount: "acc-1", CreditAccount: FeeIncomeAccountID(CNY), Amount: MustMoney("0.08", CNY), Schedule: "fees-1"},
		ReserveProvisioned{Day: "2026-11-24", Source: SourceVolume, Policy: "default-1", Basis: MustMoney("25000.00", CNY),
			DebitAccount: OwnFundsAccountID(CNY), CreditAccount: ReserveAccountID(CNY), Amount: amt},
		ReserveAdjusted{AdjustmentID: "adj-1", Kind: AdjustTopUp, DebitAccount: OwnFundsAccountID(CNY), CreditAccount: ReserveAccountID(CNY),
			Amount: amt, Reason: "annual top-up", Staff: Staff{StaffKey: "staff-fin-1"}},
		ReserveShortfall{CaseID: "case-1", Needed: amt, Available: MustMoney("3.00", CNY)},
		DayClosed{Day: "2026-11-24", Policy: "default-1", ThroughPosition: 912, FeeIncome: MustMoney("0.08", CNY), Volume: MustMoney("25000.00", CNY), Provisioned: amt},
		CompensationPaid{CaseID: "case-1", Kind: CompensationAdvance, PaymentIDs: []string{"p1"}, DebitAccount: ReserveAccountID(CNY), CreditAccount: "acc-1", Amount: amt},
		CompensationRecovered{CaseID: "case-1", DebitAccount: "acc-1", CreditAccount: ReserveAccountID(CNY), Amount: amt, Staff: Staff{StaffKey: "staff-fin-1"}},
		LossReported{CaseID: "case-1", AccountID: "acc-1", Payments: []LossPayment{{PaymentID: "p1", Payee: "acc-2", Amount: amt,
			VerificationLevel: LevelTwoFactor, ConfirmedAt: at}}, Loss: amt, Description: "not me", Advance: "pay", AdvanceReason: "pay: default"},
		LossInvestigated{CaseID: "case-1", Note: "call the holder", Staff: Staff{StaffKey: "staff-comp-1"}},
		LiabilityDetermined{CaseID: "case-1", Liable: LiableCustomer, Rule: "customer_shown", Reasons: []string{"shared password"},
			Evidence: []string{"call-7"}, CustomerShare: amt, Staff: Staff{StaffKey: "staff-comp-1"}},
		LossCaseClosed{CaseID: "case-1", Outcome: "customer_liable", Compensated: amt, Recovered: amt, Staff: Staff{StaffKey: "staff-fin-1"}},
		LossClaimed{CaseID: "case-1", PaymentIDs: []string{"p1", "p2"}},
		DisputeOpened{DisputeID: "d-1", AccountID: "acc-1", Kind: DisputeError, PaymentID: "p1", Subject: "charged twice",
			Description: "the coffee was charged twice", DueBy: at.Add(15 * 24 * time.Hour)},
		DisputeOpened{DisputeID: "d-2", AccountID: "acc-1", Kind: DisputeComplaint, Subject: "slow app", DueBy: at},
		DisputeAssigned{DisputeID: "d-1", Assignee: "payments desk", Staff: Staff{StaffKey: "staff-op-1"}},
		DisputeAnswered{DisputeID: "d-1", Answer: "the second charge is refunded", Staff: Staff{StaffKey: "staff-op-1"}},
		DisputeResolved{DisputeID: "d-1", Outcome: "upheld", Resolution: "refunded", Staff: Staff{StaffKey: "staff-op-1"}},
		DisputeResolved{DisputeID: "d-2", Outcome: "withdrawn"},
	}
}

func TestEventRoundTrip(t *testing.T) {
	covered := map[string]bool{}
	for i, e := range sampleEvents() {
		covered[e.EventType()] = true
		t.Run(fmt.Sprintf("%s/%d", e.EventType(), i), func(t *testing.T) {
			typ, v, payload, err := EncodeEvent(e)
			if err != nil {
				t.Fatal(err)
			}
			if typ != e.EventType() || v != CurrentSchemaVersion {
				t.Errorf("encoded as %s/%d", typ, v)
			}
			back, err := DecodeEvent(typ, v, payload)
			if err != nil {
				t.Fatalf("decode %s: %v", payload, err)
			}
			if reflect.TypeOf(back) != reflect.TypeOf(e) {
				t.Fatalf("decoded %T, want %T", back, e)
			}
			// JSON numbers in free-form details come back as float64, so
			// compare details by their encoding and everything else exactly.
			if _, isRejected := e.(PaymentRejected); !isRejected && !sameValue(reflect.ValueOf(back), reflect.ValueOf(e)) {
				t.Errorf("round trip changed the event:\n got %#v\nwant %#v", back, e)
			}
			_, _, again, err := EncodeEvent(back)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again, payload) {
				t.Errorf("re-encoding differs:\n got %s\nwant %s", again, payload)
			}
		})
	}
	for k := range decoders {
		if !covered[k.typ] {
			t.Errorf("event type %s has no round-trip case", k)
		}
	}
}

var (
	decimalType = reflect.TypeOf(decimal.Decimal{})
	timeType    = reflect.TypeOf(time.Time{})
)

// sameValue is reflect.DeepEqual except that decimals compare by value, so
// 0 and 0.00 are the same amount.
func sameValue(a, b reflect.Value) bool {
	if a.Type() != b.Type() {
		return false
	}
	if a.Type() == decimalType {
		return a.Interface().(decimal.Decimal).Equal(b.Interface().(decimal.Decimal))
	}
	if a.Type() == timeType {
		ta, tb := a.Interface().(time.Time), b.Interface().(time.Time)
		return ta.Equal(tb) && ta.Location().String() == tb.Location().String()
	}
	switch a.Kind() {
	case reflect.Struct:
		for i := range a.NumField() {
			if !sameValue(a.Field(i), b.Field(i)) {
				return false
			}
		}
		return true
	case reflect.Slice:
		if a.Len() != b.Len() || a.IsNil() != b.IsNil() {
			return false
		}
		for i := range a.Len() {
			if !sameValue(a.Index(i), b.Index(i)) {
				return false
			}
		}
		return true
	case reflect.Interface, reflect.Pointer:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() == b.IsNil()
		}
		return sameValue(a.Elem(), b.Elem())
	}
	if a.CanInterface() {
		return reflect.DeepEqual(a.Interface(), b.Interface())
	}
	return reflect.DeepEqual(a, b)
}

func TestEventTypeNamesAreStable(t *testing.T) {
	// Stored names must never change; a rename of a Go type must not leak.
	want := []string{"AccountOpened", "FactorEnrolled", "FactorRevoked", "CredentialReset", "CredentialLossReported",
		"LoginSucceeded", "LoginFailed", "VerificationFailed", "AccessLocked", "AccessUnlocked", "LimitAdjusted",
		"IdentityChanged", "PhoneChanged", "BankAccountBound", "FundsDeposited", "PaymentInitiated", "PaymentConfirmed",
		"PaymentRejected", "FundsWithdrawn", "WithdrawalRejected", "ChangeRejected", "ServiceSuspended", "ServiceReactivated", "AccountClosed",
		"SessionEnded", "HolderNotified", "StaffRead", "DeviceRegistered", "DeviceUsed", "DeviceRevoked",
		"FeeCharged", "ReserveProvisioned", "ReserveAdjusted", "ReserveShortfall", "DayClosed", "CompensationPaid",
		"CompensationRecovered", "LossReported", "LossInvestigated", "LiabilityDetermined", "LossCaseClosed",
		"DisputeOpened", "DisputeAssigned", "DisputeAnswered", "DisputeResolved", "LossClaimed", "PersonalDataErased"}
	if len(decoders) != len(want) {
		t.Errorf("%d decoders, want %d", len(decoders), len(want))
	}
	for _, typ := range want {
		if _, ok := decoders[key(typ, 1)]; !ok {
			t.Errorf("no decoder for %s/1", typ)
		}
	}
}

func TestDecodeEventErrors(t *testing.T) {
	tests := []struct {
		name    string
		typ     string
		version int
		payload string
	}{
		{"UnknownType", "PaymentTeleported", 1, `{}`},
		{"EmptyType", "", 1, `{}`},
		{"UnknownVersion", TypePaymentConfirmed, 2, `{}`},
		{"VersionZero", TypeAccountOpened, 0, `{}`},
		{"NegativeVersion", TypeAccountOpened, -1, `{}`},
		{"MalformedJSON", TypeAccountOpened, 1, `{"account_id":`},
		{"WrongFieldType", TypeLoginFailed, 1, `{"failed_attempts":"two"}`},
		{"MalformedMoney", TypeFundsDeposited, 1, `{"amount":{"amount":"lots","currency":"CNY"}}`},
		{"MalformedTime", TypeAccessLocked, 1, `{"until":"yesterday"}`},
		{"Array", TypePaymentInitiated, 1, `[1,2,3]`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("DecodeEvent panicked: %v", r)
				}
			}()
			e, err := DecodeEvent(tc.typ, tc.version, []byte(tc.payload))
			if err == nil {
				t.Fatalf("decoded %#v, want an error", e)
			}
			if e != nil {
				t.Errorf("returned event %#v alongside error", e)
			}
		})
	}
}

func TestMovementOf(t *testing.T) {
	amt := MustMoney("12.50", CNY)
	tests := []struct {
		name string
		e    Event
		want Movement
		ok   bool
	}{
		{"Deposit", FundsDeposited{DepositID: "d1", DebitAccount: "clearing-CNY", CreditAccount: "acc-1", Amount: amt, Reference: "ref"},
			Movement{Debit: "clearing-CNY", Credit: "acc-1", Amount: amt, Ref: "d1", Description: "ref"}, true},
		{"Payment", PaymentConfirmed{PaymentID: "p1", DebitAccount: "acc-1", CreditAccount: "acc-2", Amount: amt, Description: "coffee"},
			Movement{Debit: "acc-1", Credit: "acc-2", Amount: amt, Ref: "p1", Description: "coffee"}, true},
		{"Withdrawal", FundsWithdrawn{WithdrawalID: "w1", DebitAccount: "acc-1", CreditAccount: "clearing-CNY", Amount: amt, BankAccountLast4: "3445"},
			Movement{Debit: "acc-1", Credit: "clearing-CNY", Amount: amt, Ref: "w1", Description: "withdrawal to bank account ****3445"}, true},
		{"Fee", FeeCharged{PaymentID: "p1", DebitAccount: "acc-1", CreditAccount: "fee-income-CNY", Amount: amt, Schedule: "f"},
			Movement{Debit: "acc-1", Credit: "fee-income-CNY", Amount: amt, Ref: "p1", Description: "fee"}, true},
		{"Provision", ReserveProvisioned{Day: "2026-01-02", Source: SourceFeeIncome, DebitAccount: "fee-income-CNY", CreditAccount: "risk-reserve-CNY", Amount: amt},
			Movement{Debit: "fee-income-CNY", Credit: "risk-reserve-CNY", Amount: amt, Ref: "2026-01-02", Description: "provision fee_income"}, true},
		{"Adjustment", ReserveAdjusted{AdjustmentID: "a1", Kind: AdjustRelease, DebitAccount: "risk-reserve-CNY", CreditAccount: "own-funds-CNY", Amount: amt},
			Movement{Debit: "risk-reserve-CNY", Credit: "own-funds-CNY", Amount: amt, Ref: "a1", Description: "reserve release"}, true},
		{"Compensation", CompensationPaid{CaseID: "c1", Kind: CompensationAdvance, DebitAccount: "risk-reserve-CNY", CreditAccount: "acc-1", Amount: amt},
			Movement{Debit: "risk-reserve-CNY", Credit: "acc-1", Amount: amt, Ref: "c1", Description: "compensation advance"}, true},
		{"Recovery", CompensationRecovered{CaseID: "c1", DebitAccount: "acc-1", CreditAccount: "risk-reserve-CNY", Amount: amt},
			Movement{Debit: "acc-1", Credit: "risk-reserve-CNY", Amount: amt, Ref: "c1", Description: "compensation recovered"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := MovementOf(tc.e)
			if ok != tc.ok || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("MovementOf = %#v, %v; want %#v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
	for _, e := range sampleEvents() {
		switch e.(type) {
		case FundsDeposited, PaymentConfirmed, FundsWithdrawn, FeeCharged, ReserveProvisioned, ReserveAdjusted, CompensationPaid, CompensationRecovered:
			continue
		}
		t.Run("NotMoney/"+e.EventType(), func(t *testing.T) {
			if m, ok := MovementOf(e); ok || m != (Movement{}) {
				t.Errorf("MovementOf(%s) = %#v, %v; want none", e.EventType(), m, ok)
			}
		})
	}
	t.Run("Nil", func(t *testing.T) {
		if _, ok := MovementOf(nil); ok {
			t.Error("MovementOf(nil) reported a movement")
		}
	})
}

func TestStreamAndClearingNames(t *testing.T) {
	if got := AccountStream("01J"); got != "account-01J" {
		t.Errorf("AccountStream = %q", got)
	}
	if got := ClearingAccountID(CNY); got != "clearing-CNY" {
		t.Errorf("ClearingAccountID = %q", got)
	}
}

// TestKnownEventType: a reader skips decoding the known events it does not
// need (the projections do, for every event), so KnownEventType must accept
// exactly the types and versions DecodeEvent decodes.
func TestKnownEventType(t *testing.T) {
	want := EventTypes()
	if len(want) != len(decoders) {
		t.Fatalf("EventTypes lists %d, decoders hold %d", len(want), len(decoders))
	}
	for _, tv := range want {
		typ, v, _ := strings.Cut(tv, "/")
		ver, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("type %q: %v", tv, err)
		}
		if !KnownEventType(typ, ver) {
			t.Errorf("%s not known", tv)
		}
	}
	for _, tv := range []eventKey{{TypePaymentInitiated, 2}, {"PaymentTeleported", 1}, {TypeAccountOpened, 0}} {
		if KnownEventType(tv.typ, tv.version) {
			t.Errorf("%v known", tv)
		}
	}
	if n := testing.AllocsPerRun(100, func() { KnownEventType(TypePaymentConfirmed, 1) }); n != 0 {
		t.Errorf("KnownEventType allocates %v times a call", n)
	}
}
