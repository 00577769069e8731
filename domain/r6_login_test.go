package domain

import "testing"

// TestLoginNeedsAnIndependentFactor: a login whose only proof is a one-time
// password delivered to the device logging in is refused (R6), the attempt
// is recorded (R9) but does not count towards the lock.
func TestLoginNeedsAnIndependentFactor(t *testing.T) {
	h := baseAccount(t)
	e, evs := h.refuse(Login{SessionID: "s1", DeviceID: deviceApp, Proofs: h.proofs(nil, fOTPApp)}, CodeFactorNotIndependent)
	if e == nil {
		t.Fatal("no refusal")
	}
	wantTypes(t, evs, TypeLoginFailed)
	lf := evs[0].(LoginFailed)
	if lf.Code != CodeFactorNotIndependent || lf.FailedAttempts != 0 {
		t.Fatalf("recorded %+v", lf)
	}
	if h.a.FailedAttempts() != 0 {
		t.Fatalf("failed attempts %d, want 0", h.a.FailedAttempts())
	}
}

// TestOTPOnInitiatingDeviceDoesNotCount: the OTP app is on the device that
// initiated the payment; confirming from another device does not make it
// independent of the instruction (R6).
func TestOTPOnInitiatingDeviceDoesNotCount(t *testing.T) {
	h := baseAccount(t)
	pi := h.initiate("10.00") // initiated from deviceApp, where fOTPApp lives
	cmd := h.confirmCmd(pi.PaymentID, fPassword, fOTPApp)
	cmd.DeviceID = deviceToken + "-laptop"
	evs, err := h.decide(cmd)
	if err != nil {
		t.Fatal(err)
	}
	if c := confirmed(t, evs); c.VerificationLevel != LevelSingleFactor {
		t.Fatalf("level %s, want single_factor: the initiating device's OTP must not count", c.VerificationLevel)
	}
}

// TestLockedLoginRecordsLockEnd: an attempt during a lock records when the
// lock ends, so a replay of it can say so.
func TestLockedLoginRecordsLockEnd(t *testing.T) {
	h := baseAccount(t)
	wrong := Login{SessionID: "s", DeviceID: deviceToken, Proofs: []Proof{{FactorID: fPassword, Password: "wrong password!"}}}
	for i := 0; i < 5; i++ {
		h.decide(wrong)
	}
	until := h.a.LockedUntil()
	if until.IsZero() {
		t.Fatal("not locked after 5 failures")
	}
	_, evs := h.refuse(wrong, CodeAccessLocked)
	lf := evs[0].(LoginFailed)
	if !lf.LockedUntil.Equal(until) || lf.Code != CodeAccessLocked {
		t.Fatalf("recorded %+v, want locked until %s", lf, until)
	}
}

// TestLockedVerificationIsRecorded: a payment confirmation or withdrawal
// turned away by the lock is still an event (R9), naming the lock's end,
// and does not extend the failure count.
func TestLockedVerificationIsRecorded(t *testing.T) {
	h := baseAccount(t)
	pi := h.initiate("10.00")
	wrong := Login{SessionID: "s", DeviceID: deviceToken, Proofs: []Proof{{FactorID: fPassword, Password: "wrong password!"}}}
	for i := 0; i < 5; i++ {
		h.decide(wrong)
	}
	until, n := h.a.LockedUntil(), h.a.FailedAttempts()
	if until.IsZero() {
		t.Fatal("not locked after 5 failures")
	}
	for name, cmd := range map[string]Command{
		"Payment":    h.confirmCmd(pi.PaymentID, fPassword),
		"Withdrawal": Withdraw{WithdrawalID: "w1", Amount: "1.00", Currency: "CNY", DeviceID: deviceToken, Proofs: []Proof{{FactorID: fPassword, Password: testPassword}}},
	} {
		t.Run(name, func(t *testing.T) {
			if name == "Withdrawal" {
				h.apply(BankAccountBound{BankAccountToken: "bat_x", Last4: "1234", HolderName: holder})
			}
			_, evs := h.refuse(cmd, CodeAccessLocked)
			wantTypes(t, evs, TypeVerificationFailed)
			vf := evs[0].(VerificationFailed)
			if !vf.LockedUntil.Equal(until) || vf.FailedAttempts != n {
				t.Fatalf("recorded %+v, want locked until %s with %d failures", vf, until, n)
			}
			if h.a.FailedAttempts() != n {
				t.Fatalf("failure count %d, want %d", h.a.FailedAttempts(), n)
			}
		})
	}
}
