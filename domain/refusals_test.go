package domain

import (
	"crypto/ed25519"
	"reflect"
	"testing"
	"time"
)

// bankNumber is the base account's same-name bank account in these tests.
const bankNumber = "6222020200112233445"

// withBank binds the base account's bank account under the holder's name.
func withBank(t *testing.T) *harness {
	t.Helper()
	h := baseAccount(t)
	h.bind(bankNumber, holder, "tok")
	return h
}

// TestOTPSpentOnFailedAttempt checks R7 on failed attempts: a TOTP code
// that verified is spent whatever else happens to the attempt (a wrong
// password beside it, before or after it, an unknown factor, a refusal by
// the rules), so it cannot be replayed, on the live aggregate or one
// rebuilt from the log.
func TestOTPSpentOnFailedAttempt(t *testing.T) {
	wrongPW := Proof{FactorID: fPassword, Password: "wrong password"}
	withdraw := func(device, amount string, proofs ...Proof) Withdraw {
		return Withdraw{WithdrawalID: "w1", Amount: amount, Currency: "CNY", DeviceID: device, Proofs: proofs}
	}
	tests := []struct {
		name string
		// cmd builds the attempt around code, a valid code of fOTP.
		cmd  func(h *harness, code Proof) Command
		code string
		// event is the type of the event that must record the code.
		event string
	}{
		{"LoginWrongPasswordAfterCode", func(h *harness, code Proof) Command {
			return Login{SessionID: "s1", DeviceID: deviceApp, Proofs: []Proof{code, wrongPW}}
		}, CodeAuthFailed, TypeLoginFailed},
		{"LoginWrongPasswordBeforeCode", func(h *harness, code Proof) Command {
			return Login{SessionID: "s1", DeviceID: deviceApp, Proofs: []Proof{wrongPW, code}}
		}, CodeAuthFailed, TypeLoginFailed},
		{"LoginUnknownFactorBeforeCode", func(h *harness, code Proof) Command {
			return Login{SessionID: "s1", DeviceID: deviceApp, Proofs: []Proof{{FactorID: "nope", Password: "x"}, code}}
		}, CodeAuthFailed, TypeLoginFailed},
		{"LoginCodeFromTheSameDevice", func(h *harness, code Proof) Command {
			// fOTP lives on deviceToken: logging in from it, the code does
			// not count (R6), but it verified.
			return Login{SessionID: "s1", DeviceID: deviceToken, Proofs: []Proof{code}}
		}, CodeFactorNotIndependent, TypeLoginFailed},
		{"ConfirmWrongPassword", func(h *harness, code Proof) Command {
			cmd := h.confirmCmd(h.initiate("10.00").PaymentID)
			cmd.Proofs = []Proof{code, wrongPW}
			return cmd
		}, CodeProofInvalid, TypeVerificationFailed},
		{"ConfirmWrongSignatureBeforeCode", func(h *harness, code Proof) Command {
			pi := h.initiate("10.00")
			cmd := h.confirmCmd(pi.PaymentID)
			cmd.Proofs = []Proof{{FactorID: fCert, Signature: ed25519.Sign(strangerKey, pi.Challenge)}, code}
			return cmd
		}, CodeProofInvalid, TypeVerificationFailed},
		{"WithdrawWrongPassword", func(h *harness, code Proof) Command {
			return withdraw(deviceApp, "10.00", wrongPW, code)
		}, CodeProofInvalid, TypeVerificationFailed},
		{"WithdrawInsufficientFunds", func(h *harness, code Proof) Command {
			return withdraw(deviceApp, "100000.01", code)
		}, CodeInsufficientFunds, TypeWithdrawalRejected},
		{"WithdrawCodeFromTheSameDevice", func(h *harness, code Proof) Command {
			return withdraw(deviceToken, "10.00", code)
		}, CodeFactorNotIndependent, TypeWithdrawalRejected},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := withBank(t)
			code := h.proofs(nil, fOTP)[0]
			_, evs := h.refuse(tc.cmd(h, code), tc.code)
			var uses []OTPUse
			found := false
			for _, e := range evs {
				if e.EventType() != tc.event {
					continue
				}
				found = true
				switch v := e.(type) {
				case LoginFailed:
					uses = v.OTPUses
				case VerificationFailed:
					uses = v.OTPUses
				case WithdrawalRejected:
					uses = v.OTPUses
				}
			}
			if !found {
				t.Fatalf("events %v, want a %s", types(evs), tc.event)
			}
			if want := []OTPUse{{FactorID: fOTP, Step: TOTPStepAt(h.now)}}; !reflect.DeepEqual(uses, want) {
				t.Fatalf("%s records otp uses %v, want %v", tc.event, uses, want)
			}
			// The code is spent: alone, from an independent device, it no
			// longer opens a session, here or on the rebuilt aggregate.
			reuse := Login{SessionID: "s2", DeviceID: deviceApp, Proofs: []Proof{code}}
			if _, err := Decide(h.replay(), reuse, h.p, h.now); err == nil {
				t.Error("the rebuilt account accepts the spent code")
			}
			h.refuse(reuse, CodeAuthFailed)
			// The next step's code is fresh and works.
			h.now = h.now.Add(TOTPStep)
			h.must(Login{SessionID: "s3", DeviceID: deviceApp, Proofs: h.proofs(nil, fOTP)})
		})
	}
	t.Run("MalformedInputSpendsNothing", func(t *testing.T) {
		// The shape of every proof is checked before any proof is, so a
		// malformed proof beside a good code leaves the code unspent.
		h := withBank(t)
		code := h.proofs(nil, fOTP)[0]
		for name, cmd := range map[string]Command{
			"Login":    Login{DeviceID: deviceApp, Proofs: []Proof{code, {FactorID: fPassword}}},
			"Withdraw": withdraw(deviceApp, "10.00", code, Proof{FactorID: fCert, Signature: make([]byte, 64)}),
		} {
			if _, evs := h.refuse(cmd, CodeInvalid); len(evs) != 0 {
				t.Errorf("%s: recorded %v", name, types(evs))
			}
		}
		h.must(Login{SessionID: "s1", DeviceID: deviceApp, Proofs: []Proof{code}})
	})
}

// TestWithdrawalRefusalIsRecorded checks that a withdrawal refused after
// its proofs verified is an event (R1, R9) carrying the refusal the client
// got, and moves no money; refusals before any proof is checked record
// nothing, as for payments.
func TestWithdrawalRefusalIsRecorded(t *testing.T) {
	tests := []struct {
		name string
		// noBank leaves the account without a bound bank account.
		noBank  bool
		setup   func(h *harness)
		amount  string
		device  string
		factors []string
		code    string
		// recorded is true when a WithdrawalRejected must be recorded.
		recorded bool
		details  map[string]any
	}{
		{name: "InsufficientFunds", amount: "100000.01", device: deviceApp, factors: []string{fPassword, fOTP},
			code: CodeInsufficientFunds, recorded: true, details: map[string]any{"available": "100000.00", "required": "100000.01"}},
		{name: "OnlySameDeviceOTP", amount: "10.00", device: deviceApp, factors: []string{fOTPApp},
			code: CodeFactorNotIndependent, recorded: true},
		{name: "NoBankAccount", noBank: true, amount: "10.00", device: deviceApp, factors: []string{fPassword},
			code: CodeConflict, details: map[string]any{"field": "bank_account"}},
		{name: "Suspended", setup: func(h *harness) { h.must(Suspend{}) }, amount: "10.00", device: deviceApp, factors: []string{fPassword},
			code: CodeAccountSuspended},
		{name: "Locked", setup: func(h *harness) {
			for range 5 {
				h.decide(Login{DeviceID: deviceApp, Proofs: []Proof{{FactorID: fPassword, Password: "wrong password"}}})
			}
		}, amount: "10.00", device: deviceApp, factors: []string{fPassword}, code: CodeAccessLocked},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := baseAccount(t)
			if !tc.noBank {
				h.bind(bankNumber, holder, "tok")
			}
			if tc.setup != nil {
				tc.setup(h)
			}
			failures := h.a.FailedAttempts()
			cmd := Withdraw{WithdrawalID: "w-" + tc.name, Amount: tc.amount, Currency: "CNY", DeviceID: tc.device, Proofs: h.proofs(nil, tc.factors...)}
			e, evs := h.refuse(cmd, tc.code)
			for k, v := range tc.details {
				if e.Details[k] != v {
					t.Errorf("details %v, want %s = %v", e.Details, k, v)
				}
			}
			if h.available() != "100000.00" {
				t.Errorf("a refused withdrawal moved money: available %s", h.available())
			}
			if h.a.FailedAttempts() != failures {
				t.Errorf("failed attempts %d, want %d: a refusal by the rules is not a wrong proof", h.a.FailedAttempts(), failures)
			}
			if !tc.recorded {
				for _, ev := range evs {
					if _, ok := ev.(WithdrawalRejected); ok {
						t.Errorf("recorded %v", types(evs))
					}
				}
				return
			}
			wantTypes(t, evs, TypeWithdrawalRejected)
			r := evs[0].(WithdrawalRejected)
			want := WithdrawalRejected{WithdrawalID: cmd.WithdrawalID, Amount: MustMoney(tc.amount, CNY), DeviceID: tc.device,
				Code: tc.code, Reason: e.Message, Details: e.Details, OTPUses: r.OTPUses}
			if !sameValue(reflect.ValueOf(r), reflect.ValueOf(want)) {
				t.Errorf("event\n got %+v\nwant %+v", r, want)
			}
			// The event survives the log: encoded, decoded and applied to
			// a rebuilt aggregate, which then equals the live one.
			typ, v, payload, err := EncodeEvent(r)
			if err != nil {
				t.Fatal(err)
			}
			back, err := DecodeEvent(typ, v, payload)
			if err != nil {
				t.Fatal(err)
			}
			if !sameValue(reflect.ValueOf(back), reflect.ValueOf(r)) {
				t.Errorf("decoded %+v, want %+v", back, r)
			}
			if !reflect.DeepEqual(h.replay(), h.a) {
				t.Error("the rebuilt aggregate differs from the live one")
			}
		})
	}
}

// TestPayeeUnavailable checks R14 on the payee's side: a payee whose
// service is suspended or whose account is closed takes no payments, at
// initiation (nothing recorded) or at confirmation (the payment is
// rejected for good, with the one-time passwords it spent).
func TestPayeeUnavailable(t *testing.T) {
	tests := []struct {
		name   string
		status string
		code   string
	}{
		{"Active", StatusActive, ""},
		{"Suspended", StatusSuspended, CodePayeeUnavailable},
		{"Closed", StatusClosed, CodePayeeUnavailable},
	}
	for _, tc := range tests {
		payee := Payee{Exists: true, Status: tc.status, Currency: CNY}
		t.Run("Initiate/"+tc.name, func(t *testing.T) {
			h := baseAccount(t)
			cmd := h.payCmd("10.00")
			cmd.Payee = payee
			if tc.code == "" {
				wantTypes(t, h.must(cmd), TypePaymentInitiated)
				return
			}
			e, evs := h.refuse(cmd, tc.code)
			if e.Details["field"] != "payee_account_id" || e.Details["payee_status"] != tc.status || len(evs) != 0 {
				t.Errorf("details %v events %v", e.Details, types(evs))
			}
			if _, ok := h.a.Pending(cmd.PaymentID); ok {
				t.Error("refused payment is pending")
			}
		})
		t.Run("Confirm/"+tc.name, func(t *testing.T) {
			// Initiated while the payee was active; its status changed
			// before the confirmation.
			h := baseAccount(t)
			pi := h.initiate("10.00")
			cmd := h.confirmCmd(pi.PaymentID, fPassword, fOTP)
			cmd.Payee = payee
			if tc.code == "" {
				evs := h.must(cmd)
				confirmed(t, evs)
				return
			}
			e, evs := h.refuse(cmd, tc.code)
			if e.Details["field"] != "payee_account_id" || e.Details["payee_status"] != tc.status {
				t.Errorf("details %v", e.Details)
			}
			wantTypes(t, evs, TypePaymentRejected)
			r := evs[0].(PaymentRejected)
			if r.PaymentID != pi.PaymentID || r.Code != tc.code || r.Reason != e.Message ||
				!reflect.DeepEqual(r.OTPUses, []OTPUse{{FactorID: fOTP, Step: TOTPStepAt(h.now)}}) {
				t.Errorf("rejection %+v", r)
			}
			if h.available() != "100000.00" {
				t.Errorf("available %s", h.available())
			}
			// Rejected for good: a later confirmation, payee active again,
			// is a conflict.
			e, _ = h.refuse(h.confirmCmd(pi.PaymentID, fPassword), CodeConflict)
			if e.Details["payment_status"] != "rejected" {
				t.Errorf("details %v", e.Details)
			}
		})
	}
	t.Run("Confirm/PayeeNotLookedUp", func(t *testing.T) {
		h := baseAccount(t)
		pi := h.initiate("10.00")
		for name, mod := range map[string]func(*ConfirmPayment){
			"NoPayee":    func(c *ConfirmPayment) { c.PayeeID, c.Payee = "", Payee{} },
			"NotExists":  func(c *ConfirmPayment) { c.Payee = Payee{} },
			"OtherPayee": func(c *ConfirmPayment) { c.PayeeID = "acc-3" },
		} {
			cmd := h.confirmCmd(pi.PaymentID, fPassword)
			mod(&cmd)
			if _, evs := h.refuse(cmd, CodeInternal); len(evs) != 0 {
				t.Errorf("%s: recorded %v", name, types(evs))
			}
		}
		if _, ok := h.a.Pending(pi.PaymentID); !ok {
			t.Error("the payment is no longer pending")
		}
	})
}

// TestWithdrawAfterIdentityChange checks the binding of R10's exclusion:
// withdrawals go only to the customer's own same-name bank account, so a
// binding made under a holder name the identity has since changed from is
// refused until the account is bound again. The refusal comes before any
// proof is checked: nothing is recorded or counted.
func TestWithdrawAfterIdentityChange(t *testing.T) {
	// The steps are authorised by a step-up each when they run (an identity
	// change needs two categories now, and binding a bank account a step-up).
	tests := []struct {
		name  string
		steps []Command
		code  string
	}{
		{"Unchanged", nil, ""},
		{"NameChanged", []Command{ChangeIdentity{HolderName: "Li Wei Jr."}}, CodeBankAccountNameMismatch},
		{"OnlyCaseChanged", []Command{ChangeIdentity{HolderName: "LI WEI"}}, ""},
		{"BoundAgainUnderNewName", []Command{ChangeIdentity{HolderName: "Li Wei Jr."},
			BindBankAccount{Number: "6222020200998877665", HolderName: "Li Wei Jr.", Token: "tok2"}}, ""},
		{"ChangedBack", []Command{ChangeIdentity{HolderName: "Li Wei Jr."}, ChangeIdentity{HolderName: holder}}, ""},
		{"BoundAgainThenChanged", []Command{ChangeIdentity{HolderName: "Li Wei Jr."},
			BindBankAccount{Number: "6222020200998877665", HolderName: "Li Wei Jr.", Token: "tok2"},
			ChangeIdentity{HolderName: "Wei Li"}}, CodeBankAccountNameMismatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := withBank(t)
			for _, c := range tc.steps {
				h.mustAuthorised(c)
			}
			h.now = h.now.Add(time.Minute)
			cmd := Withdraw{WithdrawalID: "w1", Amount: "10.00", Currency: "CNY", DeviceID: deviceApp, Proofs: h.proofs(nil, fPassword, fOTP)}
			if tc.code == "" {
				wantTypes(t, h.must(cmd), TypeFundsWithdrawn)
				return
			}
			e, evs := h.refuse(cmd, tc.code)
			if e.Details["field"] != "bank_account" || len(evs) != 0 {
				t.Errorf("details %v events %v", e.Details, types(evs))
			}
			// Not even a wrong password is looked at.
			cmd.Proofs = []Proof{{FactorID: fPassword, Password: "wrong password"}}
			h.refuse(cmd, tc.code)
			if h.a.FailedAttempts() != 0 || h.available() != "100000.00" {
				t.Errorf("failed attempts %d, available %s", h.a.FailedAttempts(), h.available())
			}
			// Binding again under the current name lifts the refusal.
			h.bind(bankNumber, h.a.HolderName, "tok3")
			cmd.Proofs = h.proofs(nil, fPassword, fOTP)
			wantTypes(t, h.must(cmd), TypeFundsWithdrawn)
		})
	}
}
