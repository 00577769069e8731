package domain

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

func TestInitiatePayment(t *testing.T) {
	h := baseAccount(t)
	t.Run("Valid", func(t *testing.T) {
		cmd := h.payCmd("12.50")
		evs := h.must(cmd)
		wantTypes(t, evs, TypePaymentInitiated)
		pi := evs[0].(PaymentInitiated)
		want := PaymentInitiated{PaymentID: cmd.PaymentID, Payer: accountID, Payee: payeeID, Amount: MustMoney("12.50", CNY),
			Fee: Zero(CNY), Channel: "app", Terminal: "mobile", DeviceID: deviceApp, Description: cmd.Description,
			Challenge: PaymentChallenge(cmd.PaymentID, accountID, payeeID, MustMoney("12.50", CNY), Zero(CNY), cmd.Nonce),
			ExpiresAt: h.now.Add(5 * time.Minute)}
		if !sameValue(reflect.ValueOf(pi), reflect.ValueOf(want)) {
			t.Errorf("event\n got %+v\nwant %+v", pi, want)
		}
		if got, ok := h.a.Pending(cmd.PaymentID); !ok || got.PaymentID != cmd.PaymentID {
			t.Error("payment not pending")
		}
		if h.available() != "100000.00" {
			t.Errorf("initiation moved money: %s", h.available())
		}
	})
	mod := func(f func(*InitiatePayment)) InitiatePayment {
		c := h.payCmd("10.00")
		f(&c)
		return c
	}
	tests := []struct {
		name  string
		cmd   InitiatePayment
		code  string
		field string
	}{
		{"PaySelf", mod(func(c *InitiatePayment) { c.PayeeID = accountID }), CodeInvalid, "payee_account_id"},
		{"PayeeNotFound", mod(func(c *InitiatePayment) { c.Payee = Payee{} }), CodeNotFound, "payee_account_id"},
		{"PayeeClosed", mod(func(c *InitiatePayment) { c.Payee.Status = StatusClosed }), CodePayeeUnavailable, "payee_account_id"},
		{"PayeeSuspended", mod(func(c *InitiatePayment) { c.Payee.Status = StatusSuspended }), CodePayeeUnavailable, "payee_account_id"},
		{"PayeeOtherCurrency", mod(func(c *InitiatePayment) { c.Payee.Currency = "USD" }), CodeInvalid, "payee_account_id"},
		{"OtherCurrency", mod(func(c *InitiatePayment) { c.Currency = "USD" }), CodeInvalid, "currency"},
		{"UnknownCurrency", mod(func(c *InitiatePayment) { c.Currency = "XYZ" }), CodeInvalid, "currency"},
		{"AmountZero", mod(func(c *InitiatePayment) { c.Amount = "0.00" }), CodeInvalid, "amount"},
		{"AmountNegative", mod(func(c *InitiatePayment) { c.Amount = "-1.00" }), CodeInvalid, "amount"},
		{"AmountThreePlaces", mod(func(c *InitiatePayment) { c.Amount = "1.005" }), CodeInvalid, "amount"},
		{"AmountExponent", mod(func(c *InitiatePayment) { c.Amount = "1e2" }), CodeInvalid, "amount"},
		{"ChannelUnknown", mod(func(c *InitiatePayment) { c.Channel = "fax" }), CodeInvalid, "channel"},
		{"ChannelEmpty", mod(func(c *InitiatePayment) { c.Channel = "" }), CodeInvalid, "channel"},
		{"TerminalUnknown", mod(func(c *InitiatePayment) { c.Terminal = "watch" }), CodeInvalid, "terminal"},
		{"DeviceEmpty", mod(func(c *InitiatePayment) { c.DeviceID = "" }), CodeInvalid, "device_id"},
		{"DeviceTooLong", mod(func(c *InitiatePayment) { c.DeviceID = strings.Repeat("d", 65) }), CodeInvalid, "device_id"},
		{"DeviceName", mod(func(c *InitiatePayment) { c.DeviceID = "Li Wei's phone" }), CodeInvalid, "device_id"},
		{"Description141Runes", mod(func(c *InitiatePayment) { c.Description = strings.Repeat("咖", 141) }), CodeInvalid, "description"},
		{"NonceTooShort", mod(func(c *InitiatePayment) { c.Nonce = make([]byte, 15) }), CodeInternal, ""},
		{"NonceMissing", mod(func(c *InitiatePayment) { c.Nonce = nil }), CodeInternal, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, evs := h.refuse(tc.cmd, tc.code)
			if tc.field != "" && e.Details["field"] != tc.field {
				t.Errorf("field %v, want %s", e.Details["field"], tc.field)
			}
			if len(evs) != 0 {
				t.Errorf("recorded %v", types(evs))
			}
			if _, ok := h.a.Pending(tc.cmd.PaymentID); ok {
				t.Error("refused payment is pending")
			}
		})
	}
	accepted := map[string]InitiatePayment{
		"Description140Runes": mod(func(c *InitiatePayment) { c.Description = strings.Repeat("咖", 140) }),
		"EmptyDescription":    mod(func(c *InitiatePayment) { c.Description = "" }),
		"CurrencyOmitted":     mod(func(c *InitiatePayment) { c.Currency = "" }),
		"Device64":            mod(func(c *InitiatePayment) { c.DeviceID = strings.Repeat("d", 64) }),
		"ChannelWebDesktop":   mod(func(c *InitiatePayment) { c.Channel, c.Terminal = "web", "desktop" }),
		"ChannelAPIServer":    mod(func(c *InitiatePayment) { c.Channel, c.Terminal = "api", "server" }),
		"ChannelPOS":          mod(func(c *InitiatePayment) { c.Channel, c.Terminal = "pos", "pos" }),
		"AboveBalance":        mod(func(c *InitiatePayment) { c.Amount = "999999.00" }), // checked at confirmation
		"Nonce16Bytes":        mod(func(c *InitiatePayment) { c.Nonce = make([]byte, 16) }),
	}
	for name, cmd := range accepted {
		t.Run(name, func(t *testing.T) {
			h.must(cmd)
		})
	}
}

func TestConfirmPayment(t *testing.T) {
	h := baseAccount(t)
	pi := h.initiate("250.00")
	h.now = h.now.Add(time.Minute)
	// Signed by deviceApp: the TOTP on deviceToken is a second category
	// (R6), and the signature's use is recorded after the payment.
	cmd := h.signedConfirm(pi.PaymentID, fPassword, fOTP)
	evs, err := h.decide(cmd)
	if err != nil {
		t.Fatal(err)
	}
	wantTypes(t, evs, TypePaymentConfirmed, TypeDeviceUsed)
	wantDeviceUsed(t, evs, deviceApp, cmd.Device.SignedAt)
	c := evs[0].(PaymentConfirmed)
	t.Run("Event", func(t *testing.T) {
		if c.PaymentID != pi.PaymentID || c.DebitAccount != accountID || c.CreditAccount != payeeID ||
			c.Amount.String() != "250.00" || c.Amount.Currency != CNY || c.Fee.String() != "0.00" || c.Description != pi.Description ||
			c.VerificationLevel != LevelTwoFactor || c.DeviceID != deviceApp ||
			!reflect.DeepEqual(c.Categories, []string{CategoryKnowledge, CategoryPossession}) ||
			!reflect.DeepEqual(c.FactorIDs, []string{fOTP, fPassword}) ||
			!reflect.DeepEqual(c.OTPUses, []OTPUse{{FactorID: fOTP, Step: TOTPStepAt(h.now)}}) {
			t.Errorf("event %+v", c)
		}
		m, ok := MovementOf(c)
		if !ok || m.Debit != accountID || m.Credit != payeeID || m.Amount.String() != "250.00" || m.Ref != pi.PaymentID {
			t.Errorf("movement %+v", m)
		}
	})
	t.Run("State", func(t *testing.T) {
		if _, ok := h.a.Pending(pi.PaymentID); ok {
			t.Error("confirmed payment still pending")
		}
		if h.available() != "99750.00" {
			t.Errorf("available %s", h.available())
		}
	})
	t.Run("AlreadyCompleted", func(t *testing.T) {
		e, evs := h.refuse(h.confirmCmd(pi.PaymentID, fPassword), CodeConflict)
		if e.Details["payment_status"] != "completed" || len(evs) != 0 {
			t.Errorf("details %v events %v", e.Details, types(evs))
		}
	})
	t.Run("UnknownPayment", func(t *testing.T) {
		_, evs := h.refuse(h.confirmCmd("no-such-payment", fPassword), CodeNotFound)
		if len(evs) != 0 {
			t.Errorf("recorded %v", types(evs))
		}
	})
	t.Run("NoDevice", func(t *testing.T) {
		p := h.initiate("1.00")
		cmd := h.confirmCmd(p.PaymentID, fPassword)
		cmd.DeviceID = ""
		h.refuse(cmd, CodeInvalid)
	})
	t.Run("NoProofs", func(t *testing.T) {
		p := h.initiate("1.00")
		_, evs := h.refuse(h.confirmCmd(p.PaymentID), CodeInvalid)
		if len(evs) != 0 {
			t.Errorf("recorded %v", types(evs))
		}
	})
	t.Run("SignatureMissing", func(t *testing.T) {
		p := h.initiate("1.00")
		cmd := h.confirmCmd(p.PaymentID, fPassword)
		cmd.Proofs = append(cmd.Proofs, Proof{FactorID: fCert})
		h.refuse(cmd, CodeInvalid)
	})
	t.Run("PaymentOfAnotherAccountIsUnknown", func(t *testing.T) {
		other := baseAccount(t)
		_, err := Decide(other.a, h.confirmCmd(pi.PaymentID, fPassword), other.p, other.now)
		wantCode(t, err, CodeNotFound)
	})
}

func TestInsufficientFunds(t *testing.T) {
	h := newHarness(t).open()
	h.apply(FactorEnrolled{FactorID: fPassword, Method: MethodPassword, Category: CategoryKnowledge, PasswordHash: cheapHash(testPassword)})
	h.deposit("100.00")
	t.Run("MoreThanAvailable", func(t *testing.T) {
		pi := h.initiate("100.01")
		e, evs := h.refuse(h.confirmCmd(pi.PaymentID, fPassword), CodeInsufficientFunds)
		if e.Details["available"] != "100.00" || e.Details["required"] != "100.01" {
			t.Errorf("details %v", e.Details)
		}
		wantTypes(t, evs, TypePaymentRejected)
		if r := evs[0].(PaymentRejected); r.Details["available"] != "100.00" {
			t.Errorf("rejection %+v", r)
		}
		if h.available() != "100.00" {
			t.Errorf("available %s", h.available())
		}
	})
	t.Run("NeverBelowZero", func(t *testing.T) {
		// Two payments initiated against the same balance: only one can be
		// confirmed, even with the same stale projection figure.
		snapshot := Balance{Projected: decimal.Zero, Checkpoint: 0}
		p1, p2 := h.initiate("60.00"), h.initiate("60.00")
		c1 := h.confirmCmd(p1.PaymentID, fPassword)
		c1.Balance = snapshot
		h.must(c1)
		c2 := h.confirmCmd(p2.PaymentID, fPassword)
		c2.Balance = snapshot
		e, _ := h.refuse(c2, CodeInsufficientFunds)
		if e.Details["available"] != "40.00" {
			t.Errorf("details %v", e.Details)
		}
		// A projection that has caught up gives the same answer.
		p3 := h.initiate("40.01")
		c3 := h.confirmCmd(p3.PaymentID, fPassword)
		c3.Balance = Balance{Projected: dec("40.00"), Checkpoint: h.pos}
		h.refuse(c3, CodeInsufficientFunds)
		// Exactly the available balance is fine and leaves zero.
		p4 := h.initiate("40.00")
		h.must(h.confirmCmd(p4.PaymentID, fPassword))
		if h.available() != "0.00" {
			t.Errorf("available %s", h.available())
		}
		p5 := h.initiate("0.01")
		h.refuse(h.confirmCmd(p5.PaymentID, fPassword), CodeInsufficientFunds)
	})
	t.Run("IncomingCreditFromProjection", func(t *testing.T) {
		// 50.00 received from another account, counted by the projection
		// after all of this stream's events.
		p := h.initiate("50.00")
		c := h.confirmCmd(p.PaymentID, fPassword)
		c.Balance = Balance{Projected: dec("50.00"), Checkpoint: h.pos}
		h.must(c)
	})
}

// TestDecideIsPure checks that Decide never changes the account: deciding
// twice on the same state gives the same result, and the state equals a
// twin rebuilt from the same log until the events are applied.
func TestDecideIsPure(t *testing.T) {
	h := baseAccount(t)
	h.bind("6222020200112233445", holder, "tok")
	h.must(Login{SessionID: "s1", DeviceID: deviceApp, Proofs: h.proofs(nil, fPassword)})
	if _, err := h.pay("900.00", fPassword); err != nil {
		t.Fatal(err)
	}
	pending := h.initiate("500.00")
	for range 4 {
		h.refuse(Login{DeviceID: deviceApp, Proofs: []Proof{{FactorID: fPassword, Password: "wrong password"}}}, CodeAuthFailed)
	}
	wrong := []Proof{{FactorID: fPassword, Password: "wrong password"}}
	cmds := map[string]Command{
		"ConfirmSucceeds":     h.signedConfirm(pending.PaymentID, fPassword, fOTP),
		"ConfirmOverLimit":    h.confirmCmd(pending.PaymentID, fPassword),
		"ConfirmLocks":        ConfirmPayment{PaymentID: pending.PaymentID, DeviceID: deviceApp, Proofs: wrong, PayeeID: payeeID, Payee: activePayee},
		"LoginLocks":          Login{DeviceID: deviceApp, Proofs: wrong},
		"LoginSucceeds":       Login{DeviceID: deviceApp, Proofs: h.proofs(nil, fPassword, fOTP)},
		"Withdraw":            Withdraw{WithdrawalID: "w", Amount: "10.00", DeviceID: deviceApp, Proofs: h.proofs(nil, fOTP)},
		"Initiate":            h.payCmd("10.00"),
		"Enroll":              h.authorised(EnrollFactor{FactorID: "new", Method: MethodBiometric, DeviceID: deviceApp}),
		"EnrollByOperator":    EnrollFactor{FactorID: "new", Method: MethodBiometric, DeviceID: deviceApp, Staff: operator},
		"Revoke":              h.authorised(RevokeFactor{FactorID: fESig, Reason: "replaced"}),
		"ReportLoss":          ReportCredentialLoss{FactorID: fCert},
		"Bind":                h.authorised(BindBankAccount{Number: "6222020200998877665", HolderName: holder, Token: "tok2"}),
		"Suspend":             Suspend{},
		"SuspendByOperator":   Suspend{Reason: "risk", Staff: operator},
		"Close":               CloseAccount{},
		"AdjustLimit":         AdjustLimit{Limit: "1.00"},
		"RaiseLimit":          h.authorised(AdjustLimit{Limit: "60000.00"}),
		"Deposit":             Deposit{DepositID: "d", Amount: "1.00", Reference: "bank transfer x", Staff: fundingDesk},
		"DepositSameRef":      Deposit{DepositID: "d", Amount: "1.00", Reference: "bank transfer 1", Staff: fundingDesk},
		"Unlock":              Unlock{Reason: "called in", Staff: operator},
		"Logout":              Logout{SessionID: "s1"},
		"ResetCredential":     ResetCredential{FactorID: fOTP, SealedSecret: []byte(secretApp), Auth: h.auth(ChangeKindCredentialReset, fOTP, deviceToken, fPassword, fBio)},
		"InsufficientFunds":   ConfirmPayment{PaymentID: pending.PaymentID, DeviceID: deviceApp, Proofs: h.proofs(pending.Challenge, fPassword, fOTP), Balance: Balance{Projected: dec("-99000"), Checkpoint: 0}, PayeeID: payeeID, Payee: activePayee, Device: h.sign("payment", deviceApp, pending.PaymentID)},
		"FactorNotIndependnt": h.confirmCmd(pending.PaymentID, fOTPApp),
		"ClaimedDevice":       h.confirmCmd(pending.PaymentID, fPassword, fOTP),
		"SignedLogin":         h.prove(Login{DeviceID: deviceApp, Proofs: h.proofs(nil, fPassword, fOTP)}),
		"WrongDeviceSignature": ConfirmPayment{PaymentID: pending.PaymentID, DeviceID: deviceApp, Proofs: h.proofs(pending.Challenge, fPassword),
			PayeeID: payeeID, Payee: activePayee, Device: h.sign("payment", deviceApp, "another payment")},
		"UnregisteredDevice": h.prove(Login{DeviceID: deviceLaptop, Proofs: h.proofs(nil, fPassword)}),
		"RegisterDevice":     h.prove(h.withStepUp(h.registerCmd(deviceLaptop))),
		"RegisterDuplicate":  h.registerCmd(deviceApp),
	}
	times := []time.Time{h.now, h.now.Add(6 * time.Minute), h.now.Add(24 * time.Hour)}
	for name, cmd := range cmds {
		t.Run(name, func(t *testing.T) {
			for _, now := range times {
				twin := h.replay()
				if !reflect.DeepEqual(twin, h.a) {
					t.Fatal("replayed twin differs before deciding")
				}
				evs1, err1 := Decide(h.a, cmd, h.p, now)
				evs2, err2 := Decide(h.a, cmd, h.p, now)
				if !reflect.DeepEqual(evs1, evs2) || !reflect.DeepEqual(err1, err2) {
					t.Errorf("at %v: two decisions differ:\n%v %v\n%v %v", now, evs1, err1, evs2, err2)
				}
				if !reflect.DeepEqual(twin, h.a) {
					t.Errorf("at %v: Decide changed the account", now)
				}
			}
		})
	}
	t.Run("ApplyChangesState", func(t *testing.T) {
		before := h.a.Version
		evs, err := Decide(h.a, cmds["ConfirmSucceeds"], h.p, h.now)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := h.a.Pending(pending.PaymentID); !ok || h.a.Version != before {
			t.Fatal("state changed before Apply")
		}
		h.apply(evs...)
		if _, ok := h.a.Pending(pending.PaymentID); ok || h.a.Version != before+int64(len(evs)) {
			t.Error("Apply did not change state")
		}
		if h.a.LastPosition != h.pos {
			t.Errorf("LastPosition %d, want %d", h.a.LastPosition, h.pos)
		}
	})
}

func TestRecordedFacts(t *testing.T) {
	h := newHarness(t).open() // AccountOpened, FactorEnrolled
	h.deposit("1.00")
	if h.a.Version != 3 || h.a.LastPosition != h.pos {
		t.Errorf("version %d position %d", h.a.Version, h.a.LastPosition)
	}
	// A lower position (replayed out of order) never moves LastPosition back.
	h.a.Apply(PhoneChanged{Phone: "12345"}, Recorded{Version: 4, Position: 1, OccurredAt: t0})
	if h.a.LastPosition != h.pos || h.a.Version != 4 {
		t.Errorf("version %d position %d", h.a.Version, h.a.LastPosition)
	}
}

func TestFactorsAreCopies(t *testing.T) {
	h := baseAccount(t)
	fs := h.a.Factors()
	for i := range fs {
		fs[i].Active = false
	}
	for _, f := range h.a.Factors() {
		if !f.Active {
			t.Errorf("factor %s deactivated through Factors()", f.ID)
		}
	}
}
