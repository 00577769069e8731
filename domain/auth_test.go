package domain

import (
	"crypto/ed25519"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestVerificationLevels checks R5 (categories) and R6 (independence):
// proofs count by category, and an OTP shown on the device that issues the
// instruction does not count. The payments are confirmed from deviceApp,
// which signs them (a proven device), so that a TOTP on another device is
// independent; TestR6Matrix has the claimed device.
func TestVerificationLevels(t *testing.T) {
	tests := []struct {
		name       string
		factors    []string
		level      string
		categories []string
	}{
		{"PasswordOnly", []string{fPassword}, LevelSingleFactor, []string{CategoryKnowledge}},
		{"CertificateOnly", []string{fCert}, LevelSingleFactor, []string{CategoryPossession}},
		{"BiometricOnly", []string{fBio}, LevelSingleFactor, []string{CategoryInherence}},
		{"TOTPOtherDeviceOnly", []string{fOTP}, LevelSingleFactor, []string{CategoryPossession}},
		{"PasswordAndTOTPOtherDevice", []string{fPassword, fOTP}, LevelTwoFactor, []string{CategoryKnowledge, CategoryPossession}},
		{"PasswordAndTOTPSameDevice", []string{fPassword, fOTPApp}, LevelSingleFactor, []string{CategoryKnowledge}},
		{"TOTPAndCertificateSameCategory", []string{fOTP, fCert}, LevelSingleFactor, []string{CategoryPossession}},
		{"CertificateAndESignatureSameCategory", []string{fCert, fESig}, LevelSingleFactor, []string{CategoryPossession}},
		{"PasswordAndCertificate", []string{fPassword, fCert}, LevelTwoFactorCertificate, []string{CategoryKnowledge, CategoryPossession}},
		{"PasswordAndESignature", []string{fPassword, fESig}, LevelTwoFactorCertificate, []string{CategoryKnowledge, CategoryPossession}},
		{"BiometricAndESignature", []string{fBio, fESig}, LevelTwoFactorCertificate, []string{CategoryInherence, CategoryPossession}},
		{"BiometricAndCertificate", []string{fBio, fCert}, LevelTwoFactorCertificate, []string{CategoryInherence, CategoryPossession}},
		{"BiometricAndPassword", []string{fBio, fPassword}, LevelTwoFactor, []string{CategoryInherence, CategoryKnowledge}},
		{"BiometricAndTOTPOtherDevice", []string{fBio, fOTP}, LevelTwoFactor, []string{CategoryInherence, CategoryPossession}},
		{"BiometricAndTOTPSameDevice", []string{fBio, fOTPApp}, LevelSingleFactor, []string{CategoryInherence}},
		{"SameDeviceTOTPDoesNotAddCertificate", []string{fOTPApp, fCert}, LevelSingleFactor, []string{CategoryPossession}},
		{"ThreeCategories", []string{fPassword, fOTP, fBio}, LevelTwoFactor, []string{CategoryInherence, CategoryKnowledge, CategoryPossession}},
		{"ThreeCategoriesWithCertificate", []string{fPassword, fCert, fBio}, LevelTwoFactorCertificate, []string{CategoryInherence, CategoryKnowledge, CategoryPossession}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := baseAccount(t)
			evs, err := h.signedPay("10.00", tc.factors...)
			if err != nil {
				t.Fatal(err)
			}
			c := confirmed(t, evs)
			if c.VerificationLevel != tc.level {
				t.Errorf("level %s, want %s", c.VerificationLevel, tc.level)
			}
			if !reflect.DeepEqual(c.Categories, tc.categories) {
				t.Errorf("categories %v, want %v", c.Categories, tc.categories)
			}
			if len(c.FactorIDs) != len(tc.factors) {
				t.Errorf("factor ids %v, want all of %v", c.FactorIDs, tc.factors)
			}
		})
	}
}

func TestLoginLevels(t *testing.T) {
	h := baseAccount(t)
	h.now = h.now.Add(time.Second)
	// Signed by deviceApp: the TOTP on deviceToken counts (R6), the one on
	// deviceApp itself does not.
	evs := h.mustProven(Login{SessionID: "s1", TokenHash: []byte{1}, DeviceID: deviceApp, Proofs: h.proofs(nil, fPassword, fOTP, fOTPApp)})
	wantTypes(t, evs, TypeLoginSucceeded)
	ls := evs[0].(LoginSucceeded)
	if !reflect.DeepEqual(ls.Categories, []string{CategoryKnowledge, CategoryPossession}) {
		t.Errorf("categories %v", ls.Categories)
	}
	if !reflect.DeepEqual(ls.FactorIDs, []string{fOTP, fOTPApp, fPassword}) {
		t.Errorf("factor ids %v", ls.FactorIDs)
	}
	// Sessions last at most 8 hours now (SessionIdle, 15 minutes, is the
	// ledger's to apply between requests).
	if !ls.ExpiresAt.Equal(h.now.Add(8*time.Hour)) || ls.SessionID != "s1" || ls.DeviceID != deviceApp {
		t.Errorf("session %+v", ls)
	}
	s, ok := h.a.Session("s1")
	if !ok || !s.ExpiresAt.Equal(ls.ExpiresAt) || !s.Start.Equal(h.now) || s.DeviceID != deviceApp ||
		!reflect.DeepEqual(s.FactorIDs, ls.FactorIDs) || !reflect.DeepEqual(s.TokenHash, []byte{1}) {
		t.Errorf("Session(s1) = %+v, %v", s, ok)
	}
	// Both OTPs were consumed, the excluded one included.
	if len(ls.OTPUses) != 2 {
		t.Errorf("otp uses %v", ls.OTPUses)
	}
	t.Run("SignatureNeedsChallenge", func(t *testing.T) {
		_, evs := h.refuse(Login{DeviceID: deviceApp, Proofs: []Proof{{FactorID: fCert, Signature: make([]byte, 64)}}}, CodeInvalid)
		if len(evs) != 0 {
			t.Errorf("recorded %v", types(evs))
		}
		h.refuse(Login{DeviceID: deviceApp, Proofs: []Proof{{FactorID: fBio, Attestation: make([]byte, 64)}}}, CodeInvalid)
	})
	t.Run("MalformedProofs", func(t *testing.T) {
		pw := Proof{FactorID: fPassword, Password: testPassword}
		for name, cmd := range map[string]Login{
			"NoDevice":        {Proofs: []Proof{pw}},
			"NoProofs":        {DeviceID: deviceApp},
			"SixProofs":       {DeviceID: deviceApp, Proofs: []Proof{pw, {FactorID: "a"}, {FactorID: "b"}, {FactorID: "c"}, {FactorID: "d"}, {FactorID: "e"}}},
			"DuplicateFactor": {DeviceID: deviceApp, Proofs: []Proof{pw, pw}},
			"PasswordMissing": {DeviceID: deviceApp, Proofs: []Proof{{FactorID: fPassword, Code: "123456"}}},
			"CodeMissing":     {DeviceID: deviceApp, Proofs: []Proof{{FactorID: fOTP, Password: "x"}}},
		} {
			t.Run(name, func(t *testing.T) {
				before := h.a.FailedAttempts()
				_, evs := h.refuse(cmd, CodeInvalid)
				if len(evs) != 0 || h.a.FailedAttempts() != before {
					t.Errorf("malformed input counted as an attempt: %v", types(evs))
				}
			})
		}
	})
}

func TestFactorNotIndependent(t *testing.T) {
	tests := []struct {
		name    string
		amount  string
		factors []string
		code    string
		level   string
	}{
		// Single factor suffices: the payment passes as single_factor.
		{"WithinSingleCap", "1000.00", []string{fPassword, fOTPApp}, "", LevelSingleFactor},
		// The excluded OTP would have made it two_factor and within 5,000.
		{"ExcludedOTPWouldHavePassed", "1000.01", []string{fPassword, fOTPApp}, CodeFactorNotIndependent, LevelSingleFactor},
		{"ExcludedOTPWithBiometric", "4999.99", []string{fBio, fOTPApp}, CodeFactorNotIndependent, LevelSingleFactor},
		// Even with the OTP counted the payment is over 5,000: the limit,
		// not independence, is the reason.
		{"ExcludedOTPWouldNotHaveHelped", "5000.01", []string{fPassword, fOTPApp}, CodeDailyLimitExceeded, LevelSingleFactor},
		// An OTP alone from the instructing device proves nothing.
		{"OnlySameDeviceOTP", "10.00", []string{fOTPApp}, CodeFactorNotIndependent, "none"},
		// The same amount with an OTP from another device passes.
		{"OtherDeviceOTPPasses", "1000.01", []string{fPassword, fOTP}, "", LevelTwoFactor},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := baseAccount(t)
			pi := h.initiate(tc.amount)
			// deviceApp signs (a proven device): only the TOTP on it is
			// not independent.
			evs, err := h.decide(h.signedConfirm(pi.PaymentID, tc.factors...))
			if tc.code == "" {
				if err != nil {
					t.Fatal(err)
				}
				if c := confirmed(t, evs); c.VerificationLevel != tc.level {
					t.Errorf("level %s, want %s", c.VerificationLevel, tc.level)
				}
				return
			}
			e := wantCode(t, err, tc.code)
			if e.Details["verification_level"] != tc.level {
				t.Errorf("verification_level %v, want %s", e.Details["verification_level"], tc.level)
			}
			wantTypes(t, evs, TypePaymentRejected, TypeDeviceUsed) // the signature is spent too
			if r := evs[0].(PaymentRejected); r.Code != tc.code || r.PaymentID != pi.PaymentID {
				t.Errorf("rejection %+v", r)
			}
			if _, still := h.a.Pending(pi.PaymentID); still {
				t.Error("rejected payment still pending")
			}
			if h.available() != "100000.00" {
				t.Errorf("rejected payment moved money: %s", h.available())
			}
		})
	}
}

// TestOTPSingleUse checks R7: a code works once, across logins and
// confirmations, including within the accepted clock skew.
func TestOTPSingleUse(t *testing.T) {
	t.Run("SecondLogin", func(t *testing.T) {
		h := baseAccount(t)
		proofs := h.proofs(nil, fOTP)
		h.must(Login{SessionID: "s1", DeviceID: deviceApp, Proofs: proofs})
		_, evs := h.refuse(Login{SessionID: "s2", DeviceID: deviceApp, Proofs: proofs}, CodeAuthFailed)
		wantTypes(t, evs, TypeLoginFailed)
		// Thirty seconds later the old code is within the skew window but
		// already used; a fresh code works.
		h.now = h.now.Add(TOTPStep)
		h.refuse(Login{SessionID: "s3", DeviceID: deviceApp, Proofs: proofs}, CodeAuthFailed)
		h.must(Login{SessionID: "s4", DeviceID: deviceApp, Proofs: h.proofs(nil, fOTP)})
	})
	t.Run("LoginThenConfirmation", func(t *testing.T) {
		h := baseAccount(t)
		code := h.proofs(nil, fOTP)[0]
		h.must(Login{SessionID: "s1", DeviceID: deviceApp, Proofs: []Proof{code}})
		pi := h.initiate("10.00")
		cmd := h.confirmCmd(pi.PaymentID, fPassword)
		cmd.Proofs = append(cmd.Proofs, code)
		_, evs := h.refuse(cmd, CodeProofInvalid)
		wantTypes(t, evs, TypeVerificationFailed)
	})
	t.Run("ConfirmationThenConfirmation", func(t *testing.T) {
		h := baseAccount(t)
		p1, p2 := h.initiate("10.00"), h.initiate("10.00")
		evs, err := h.confirm(p1.PaymentID, fPassword, fOTP)
		if err != nil {
			t.Fatal(err)
		}
		c := confirmed(t, evs)
		if len(c.OTPUses) != 1 || c.OTPUses[0] != (OTPUse{FactorID: fOTP, Step: TOTPStepAt(h.now)}) {
			t.Errorf("otp uses %v", c.OTPUses)
		}
		h.refuse(h.confirmCmd(p2.PaymentID, fPassword, fOTP), CodeProofInvalid)
	})
	t.Run("ExcludedOTPIsConsumedToo", func(t *testing.T) {
		h := baseAccount(t)
		evs, err := h.pay("10.00", fPassword, fOTPApp)
		if err != nil {
			t.Fatal(err)
		}
		if c := confirmed(t, evs); len(c.OTPUses) != 1 || c.OTPUses[0].FactorID != fOTPApp {
			t.Errorf("otp uses %v", c.OTPUses)
		}
		h.refuse(Login{DeviceID: deviceToken, Proofs: h.proofs(nil, fOTPApp)}, CodeAuthFailed)
	})
	t.Run("RejectedConfirmationConsumesCode", func(t *testing.T) {
		// The code verified, but the payment was refused for its limit: the
		// code has been used (RFC 6238 5.2) and cannot open a session.
		for name, c := range map[string]struct {
			amount    string
			factors   []string
			code      string
			reuse     string
			projected string
		}{
			"OverLimit":         {"5000.01", []string{fPassword, fOTP}, CodeDailyLimitExceeded, fOTP, ""},
			"NotIndependent":    {"1000.01", []string{fPassword, fOTPApp}, CodeFactorNotIndependent, fOTPApp, ""},
			"OnlySameDeviceOTP": {"10.00", []string{fOTPApp}, CodeFactorNotIndependent, fOTPApp, ""},
			"InsufficientFunds": {"2000.00", []string{fBio, fOTP}, CodeInsufficientFunds, fOTP, "-99000.00"},
		} {
			t.Run(name, func(t *testing.T) {
				h := baseAccount(t)
				pi := h.initiate(c.amount)
				cmd := h.signedConfirm(pi.PaymentID, c.factors...)
				if c.projected != "" {
					cmd.Balance.Projected = dec(c.projected)
				}
				_, evs := h.refuse(cmd, c.code)
				wantTypes(t, evs, TypePaymentRejected, TypeDeviceUsed)
				if r := evs[0].(PaymentRejected); len(r.OTPUses) != 1 || r.OTPUses[0].FactorID != c.reuse {
					t.Errorf("rejection records otp uses %v", r.OTPUses)
				}
				var code Proof
				for _, p := range cmd.Proofs {
					if p.FactorID == c.reuse {
						code = p
					}
				}
				h.refuse(Login{DeviceID: deviceToken, Proofs: []Proof{code}}, CodeAuthFailed)
				if _, err := Decide(h.replay(), Login{DeviceID: deviceToken, Proofs: []Proof{code}}, h.p, h.now); err == nil {
					t.Error("replayed account accepts the used code")
				}
			})
		}
	})
	t.Run("SurvivesReplay", func(t *testing.T) {
		h := baseAccount(t)
		proofs := h.proofs(nil, fOTP)
		h.must(Login{SessionID: "s1", DeviceID: deviceApp, Proofs: proofs})
		fresh := h.replay()
		_, err := Decide(fresh, Login{SessionID: "s2", DeviceID: deviceApp, Proofs: proofs}, h.p, h.now)
		wantCode(t, err, CodeAuthFailed)
	})
	t.Run("ResetClearsUsedSteps", func(t *testing.T) {
		h := baseAccount(t)
		h.must(Login{SessionID: "s1", DeviceID: deviceApp, Proofs: h.proofs(nil, fOTP)})
		// From deviceToken, which signs: the TOTP on deviceApp counts (R6).
		h.must(ResetCredential{FactorID: fOTP, SealedSecret: []byte(secretApp), Auth: h.signedAuth(ChangeKindCredentialReset, fOTP, deviceToken, fPassword, fOTPApp)})
		// The new seed's current code is accepted although its step was used
		// with the old seed.
		h.must(Login{SessionID: "s2", DeviceID: deviceApp, Proofs: []Proof{{FactorID: fOTP, Code: h.code(secretApp)}}})
	})
	t.Run("CodeOfOtherSeed", func(t *testing.T) {
		h := baseAccount(t)
		h.refuse(Login{DeviceID: deviceApp, Proofs: []Proof{{FactorID: fOTP, Code: h.code(secretApp)}}}, CodeAuthFailed)
	})
	t.Run("NoSecretOpener", func(t *testing.T) {
		h := baseAccount(t)
		h.p.Secrets = nil
		h.refuse(Login{DeviceID: deviceApp, Proofs: h.proofs(nil, fOTP)}, CodeAuthFailed)
	})
}

func TestPaymentChallengeExpiry(t *testing.T) {
	h := baseAccount(t)
	pi := h.initiate("10.00")
	if !pi.ExpiresAt.Equal(t0.Add(5 * time.Minute)) {
		t.Fatalf("expires at %v, want initiation + 5m", pi.ExpiresAt)
	}
	late := h.initiate("10.00")
	t.Run("AtExpiryStillValid", func(t *testing.T) {
		h.now = pi.ExpiresAt
		if _, err := h.confirm(pi.PaymentID, fPassword); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("AfterExpiry", func(t *testing.T) {
		h.now = late.ExpiresAt.Add(time.Second)
		e, evs := h.refuse(h.confirmCmd(late.PaymentID, fPassword, fOTP), CodePaymentExpired)
		wantTypes(t, evs, TypePaymentRejected)
		r := evs[0].(PaymentRejected)
		if r.PaymentID != late.PaymentID || r.Code != CodePaymentExpired || r.Reason != e.Message {
			t.Errorf("rejection %+v", r)
		}
		// Nothing was verified, so nothing was consumed or counted.
		if h.a.FailedAttempts() != 0 {
			t.Errorf("failed attempts %d", h.a.FailedAttempts())
		}
		h.must(Login{DeviceID: deviceApp, Proofs: h.proofs(nil, fOTP)})
	})
	t.Run("ExpiredIsFinished", func(t *testing.T) {
		e, _ := h.refuse(h.confirmCmd(late.PaymentID, fPassword), CodeConflict)
		if e.Details["payment_status"] != "rejected" {
			t.Errorf("details %v", e.Details)
		}
	})
	t.Run("CustomTTL", func(t *testing.T) {
		h.p.ChallengeTTL = time.Minute
		p := h.initiate("1.00")
		if !p.ExpiresAt.Equal(h.now.Add(time.Minute)) {
			t.Errorf("expires at %v", p.ExpiresAt)
		}
	})
}

// TestLockout checks R9: consecutive failures lock access for a period.
func TestLockout(t *testing.T) {
	wrongLogin := func(h *harness) Login {
		return Login{SessionID: "s", DeviceID: deviceApp, Proofs: []Proof{{FactorID: fPassword, Password: "wrong password"}}}
	}
	rightLogin := func(h *harness) Login {
		return Login{SessionID: "s", DeviceID: deviceApp, Proofs: h.proofs(nil, fPassword)}
	}
	failTimes := func(t *testing.T, h *harness, n, from int) {
		t.Helper()
		for i := 1; i <= n; i++ {
			e, evs := h.refuse(wrongLogin(h), CodeAuthFailed)
			wantTypes(t, evs, TypeLoginFailed)
			if got := evs[0].(LoginFailed).FailedAttempts; got != from+i {
				t.Errorf("attempt %d recorded as %d", from+i, got)
			}
			if e.Details["attempts_remaining"] != 5-(from+i) {
				t.Errorf("attempt %d: attempts_remaining %v, want %d", from+i, e.Details["attempts_remaining"], 5-(from+i))
			}
			h.now = h.now.Add(time.Minute)
		}
	}

	h := baseAccount(t)
	failTimes(t, h, 4, 0)
	lockAt := h.now
	until := lockAt.Add(30 * time.Minute)
	t.Run("FifthFailureLocks", func(t *testing.T) {
		e, evs := h.refuse(wrongLogin(h), CodeAccessLocked)
		wantTypes(t, evs, TypeLoginFailed, TypeAccessLocked)
		lock := evs[1].(AccessLocked)
		if !lock.Until.Equal(until) || lock.FailedAttempts != 5 {
			t.Errorf("lock %+v, want until %v", lock, until)
		}
		if e.Details["locked_until"] != until.Format(time.RFC3339) {
			t.Errorf("locked_until %v, want %s", e.Details["locked_until"], until.Format(time.RFC3339))
		}
		if !h.a.LockedUntil().Equal(until) || h.a.FailedAttempts() != 5 {
			t.Errorf("state: locked until %v, %d failures", h.a.LockedUntil(), h.a.FailedAttempts())
		}
	})
	t.Run("CorrectPasswordRefusedDuringLock", func(t *testing.T) {
		for _, at := range []time.Time{lockAt, lockAt.Add(29*time.Minute + 59*time.Second)} {
			h.now = at
			e, evs := h.refuse(rightLogin(h), CodeAccessLocked)
			// The refused attempt is itself recorded (R9) without extending
			// the lock or the count.
			wantTypes(t, evs, TypeLoginFailed)
			if evs[0].(LoginFailed).FailedAttempts != 5 || !h.a.LockedUntil().Equal(until) {
				t.Errorf("attempt during lock changed the lock: %+v", evs[0])
			}
			if e.Details["locked_until"] != until.Format(time.RFC3339) {
				t.Errorf("details %v", e.Details)
			}
		}
	})
	t.Run("PaymentsRefusedDuringLock", func(t *testing.T) {
		_, evs := h.refuse(h.payCmd("1.00"), CodeAccessLocked)
		if len(evs) != 0 {
			t.Errorf("recorded %v", types(evs))
		}
	})
	t.Run("UnlockedAfterExpiry", func(t *testing.T) {
		h.now = until
		evs := h.must(rightLogin(h))
		wantTypes(t, evs, TypeAccessUnlocked, TypeLoginSucceeded)
		if !h.a.LockedUntil().IsZero() || h.a.FailedAttempts() != 0 {
			t.Errorf("state after unlock: %v, %d", h.a.LockedUntil(), h.a.FailedAttempts())
		}
	})
	t.Run("FailureAfterExpiryStartsAtOne", func(t *testing.T) {
		h2 := baseAccount(t)
		failTimes(t, h2, 4, 0)
		h2.refuse(wrongLogin(h2), CodeAccessLocked)
		h2.now = h2.now.Add(31 * time.Minute)
		e, evs := h2.refuse(wrongLogin(h2), CodeAuthFailed)
		wantTypes(t, evs, TypeAccessUnlocked, TypeLoginFailed)
		if evs[1].(LoginFailed).FailedAttempts != 1 || e.Details["attempts_remaining"] != 4 {
			t.Errorf("events %+v details %v", evs, e.Details)
		}
	})
	t.Run("SuccessResetsCount", func(t *testing.T) {
		h2 := baseAccount(t)
		failTimes(t, h2, 4, 0)
		h2.must(rightLogin(h2))
		if h2.a.FailedAttempts() != 0 {
			t.Fatalf("failed attempts %d after success", h2.a.FailedAttempts())
		}
		failTimes(t, h2, 4, 0)
	})
	t.Run("UnknownFactorCounts", func(t *testing.T) {
		h2 := baseAccount(t)
		e, evs := h2.refuse(Login{DeviceID: deviceApp, Proofs: []Proof{{FactorID: "nope", Password: "x"}}}, CodeAuthFailed)
		wantTypes(t, evs, TypeLoginFailed)
		if e.Details["attempts_remaining"] != 4 {
			t.Errorf("details %v", e.Details)
		}
	})
	t.Run("PaymentVerificationFailuresCount", func(t *testing.T) {
		h2 := baseAccount(t)
		failTimes(t, h2, 2, 0)
		pi := h2.initiate("10.00")
		// A wrong signature and a wrong attestation: proof_invalid, counted.
		for i, bad := range []Proof{
			{FactorID: fCert, Signature: ed25519.Sign(strangerKey, pi.Challenge)},
			{FactorID: fBio, Attestation: ed25519.Sign(certKey, pi.Challenge)},
		} {
			cmd := h2.confirmCmd(pi.PaymentID, fPassword)
			cmd.Proofs = append(cmd.Proofs, bad)
			e, evs := h2.refuse(cmd, CodeProofInvalid)
			wantTypes(t, evs, TypeVerificationFailed)
			v := evs[0].(VerificationFailed)
			if v.Purpose != "payment" || v.Reference != pi.PaymentID || v.FailedAttempts != 3+i || v.DeviceID != deviceApp {
				t.Errorf("event %+v", v)
			}
			if e.Details["attempts_remaining"] != 2-i {
				t.Errorf("details %v", e.Details)
			}
		}
		if _, ok := h2.a.Pending(pi.PaymentID); !ok {
			t.Error("a failed verification ended the payment")
		}
		// A signature over another payment's challenge is wrong too.
		other := h2.initiate("10.00")
		cmd := h2.confirmCmd(pi.PaymentID)
		cmd.Proofs = []Proof{{FactorID: fCert, Signature: ed25519.Sign(certKey, other.Challenge)}}
		e, evs := h2.refuse(cmd, CodeAccessLocked)
		wantTypes(t, evs, TypeVerificationFailed, TypeAccessLocked)
		if e.Details["locked_until"] != h2.now.Add(30*time.Minute).Format(time.RFC3339) {
			t.Errorf("details %v", e.Details)
		}
		h2.refuse(h2.confirmCmd(pi.PaymentID, fPassword), CodeAccessLocked)
		h2.refuse(rightLogin(h2), CodeAccessLocked)
	})
	t.Run("SuccessfulPaymentResetsCount", func(t *testing.T) {
		h2 := baseAccount(t)
		failTimes(t, h2, 3, 0)
		if _, err := h2.pay("10.00", fPassword); err != nil {
			t.Fatal(err)
		}
		if h2.a.FailedAttempts() != 0 {
			t.Errorf("failed attempts %d after a confirmed payment", h2.a.FailedAttempts())
		}
	})
	t.Run("ConfirmAfterLockExpiryRecordsUnlock", func(t *testing.T) {
		h2 := baseAccount(t)
		h2.p.ChallengeTTL = 2 * time.Hour
		pi := h2.initiate("10.00")
		failTimes(t, h2, 4, 0)
		h2.refuse(wrongLogin(h2), CodeAccessLocked)
		h2.now = h2.now.Add(30 * time.Minute)
		evs, err := h2.confirm(pi.PaymentID, fPassword)
		if err != nil {
			t.Fatal(err)
		}
		wantTypes(t, evs, TypeAccessUnlocked, TypePaymentConfirmed)
	})
	t.Run("CustomPolicy", func(t *testing.T) {
		h2 := baseAccount(t)
		h2.p.MaxFailures, h2.p.LockDuration = 3, time.Hour
		failTimes2 := func() {
			for i := 1; i <= 2; i++ {
				e, _ := h2.refuse(wrongLogin(h2), CodeAuthFailed)
				if e.Details["attempts_remaining"] != 3-i {
					t.Errorf("details %v", e.Details)
				}
			}
		}
		failTimes2()
		_, evs := h2.refuse(wrongLogin(h2), CodeAccessLocked)
		if lock := evs[1].(AccessLocked); !lock.Until.Equal(h2.now.Add(time.Hour)) {
			t.Errorf("lock %+v", lock)
		}
	})
}

func TestLoginFailureReasonsNeverLeakSecrets(t *testing.T) {
	h := baseAccount(t)
	_, evs := h.refuse(Login{DeviceID: deviceApp, Proofs: []Proof{{FactorID: fPassword, Password: "hunter2-guess"}}}, CodeAuthFailed)
	for _, e := range evs {
		_, _, payload, _ := EncodeEvent(e)
		if strings.Contains(string(payload), "hunter2") {
			t.Errorf("%s stores the attempted password: %s", e.EventType(), payload)
		}
	}
}
