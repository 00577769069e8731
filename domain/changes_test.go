package domain

import (
	"crypto/ed25519"
	"testing"
	"time"
)

const (
	newPhone    = "+8613800138000"
	newPassword = "a brand new passphrase"
)

// Commands of each sensitive change with an authorisation, for the tables.
func phoneChange(auth Authorisation) Command { return ChangePhone{Phone: newPhone, Auth: auth} }
func identityChange(auth Authorisation) Command {
	return ChangeIdentity{HolderName: "Li Wei Jr.", Auth: auth}
}
func passwordReset(auth Authorisation) Command {
	return ResetCredential{FactorID: fPassword, Password: newPassword, Salt: make([]byte, SaltLength), Auth: auth}
}
func certReset(auth Authorisation) Command {
	return ResetCredential{FactorID: fCert, PublicKey: pubOf(strangerKey), Auth: auth}
}

// TestSensitiveChangeRules is the table of R1's sensitive changes: which
// proofs authorise each, and what a refusal records. Identity changes,
// reserved phone changes and credential resets all need two counted factor
// categories on this account (identity changes needed one before R26's
// step-up), never counting the factor being reset; a success is followed
// by a HolderNotified.
func TestSensitiveChangeRules(t *testing.T) {
	wrongPW := Proof{FactorID: fPassword, Password: "wrong password"}
	tests := []struct {
		name string
		cmd  func(h *harness) Command
		// code is the refusal ("" for success); types the events recorded.
		code  string
		types []string
		// failures is the consecutive failure count afterwards (one failure
		// precedes every case).
		failures int
	}{
		// Success: the change's event, the notice to the holder, and the run
		// of failures ends.
		{"IdentityWithPasswordAndBiometric", func(h *harness) Command {
			return identityChange(h.auth(ChangeKindIdentity, "Li Wei Jr.", deviceApp, fPassword, fBio))
		}, "", []string{TypeIdentityChanged, TypeHolderNotified}, 0},
		// A TOTP is a second category from a proven device other than its
		// own (R6): deviceApp signs these, and its use is recorded last.
		{"IdentityWithPasswordAndOTP", func(h *harness) Command {
			return identityChange(h.signedAuth(ChangeKindIdentity, "Li Wei Jr.", deviceApp, fPassword, fOTP))
		}, "", []string{TypeIdentityChanged, TypeHolderNotified, TypeDeviceUsed}, 0},
		{"PhoneWithPasswordAndOTP", func(h *harness) Command {
			return phoneChange(h.signedAuth(ChangeKindPhone, newPhone, deviceApp, fPassword, fOTP))
		}, "", []string{TypePhoneChanged, TypeHolderNotified, TypeDeviceUsed}, 0},
		{"PasswordResetWithOTPAndBiometric", func(h *harness) Command {
			return passwordReset(h.signedAuth(ChangeKindCredentialReset, fPassword, deviceApp, fOTP, fBio))
		}, "", []string{TypeCredentialReset, TypeHolderNotified, TypeDeviceUsed}, 0},
		{"CertificateResetWithPasswordAndOTP", func(h *harness) Command {
			return certReset(h.signedAuth(ChangeKindCredentialReset, fCert, deviceApp, fPassword, fOTP))
		}, "", []string{TypeCredentialReset, TypeHolderNotified, TypeDeviceUsed}, 0},
		{"PhoneWithCertificateAndBiometric", func(h *harness) Command {
			return phoneChange(h.auth(ChangeKindPhone, newPhone, deviceApp, fCert, fBio))
		}, "", []string{TypePhoneChanged, TypeHolderNotified}, 0},

		// Missing or malformed authorisation: nothing recorded or counted.
		{"PhoneWithoutProofs", func(h *harness) Command { return phoneChange(Authorisation{DeviceID: deviceApp}) },
			CodeInvalid, nil, 1},
		{"IdentityWithoutDevice", func(h *harness) Command {
			return identityChange(Authorisation{Proofs: byPassword().Proofs})
		}, CodeInvalid, nil, 1},
		{"SignatureWithoutVersion", func(h *harness) Command {
			a := h.auth(ChangeKindPhone, newPhone, deviceApp, fPassword, fCert)
			a.Version = 0
			return phoneChange(a)
		}, CodeInvalid, nil, 1},
		{"StaleVersion", func(h *harness) Command {
			a := h.auth(ChangeKindPhone, newPhone, deviceApp, fPassword, fCert)
			a.Version--
			return phoneChange(a)
		}, CodeVersionConflict, nil, 1},

		// Too few categories after the proofs verified: recorded as
		// ChangeRejected, not counted.
		{"PhoneWithPasswordOnly", func(h *harness) Command { return phoneChange(byPassword()) },
			CodeInsufficientVerification, []string{TypeChangeRejected}, 1},
		// Changed on purpose: one category authorised an identity change
		// before R26; it now needs two like the others.
		{"IdentityWithPasswordOnly", func(h *harness) Command { return identityChange(byPassword()) },
			CodeInsufficientVerification, []string{TypeChangeRejected}, 1},
		{"IdentityWithTwoPossessionFactors", func(h *harness) Command {
			return identityChange(h.auth(ChangeKindIdentity, "Li Wei Jr.", deviceApp, fOTP, fCert))
		}, CodeInsufficientVerification, []string{TypeChangeRejected}, 1},
		{"PasswordResetWithOTPOnly", func(h *harness) Command {
			return passwordReset(h.auth(ChangeKindCredentialReset, fPassword, deviceApp, fOTP))
		}, CodeInsufficientVerification, []string{TypeChangeRejected}, 1},
		{"PasswordResetWithTwoPossessionFactors", func(h *harness) Command {
			return passwordReset(h.auth(ChangeKindCredentialReset, fPassword, deviceApp, fOTP, fCert))
		}, CodeInsufficientVerification, []string{TypeChangeRejected}, 1},
		// R6: the OTP of the device sending the change does not count,
		// proven or not.
		{"PhoneWithOTPOfSendingDevice", func(h *harness) Command {
			return phoneChange(h.auth(ChangeKindPhone, newPhone, deviceApp, fPassword, fOTPApp))
		}, CodeFactorNotIndependent, []string{TypeChangeRejected}, 1},
		{"PhoneWithOTPOfSendingProvenDevice", func(h *harness) Command {
			return phoneChange(h.signedAuth(ChangeKindPhone, newPhone, deviceApp, fPassword, fOTPApp))
		}, CodeFactorNotIndependent, []string{TypeChangeRejected, TypeDeviceUsed}, 1},
		// R6: nor is a TOTP on another device a second category when the
		// sending device is only claimed (no signature).
		{"PhoneWithPasswordAndOTPFromClaimedDevice", func(h *harness) Command {
			return phoneChange(h.auth(ChangeKindPhone, newPhone, deviceApp, fPassword, fOTP))
		}, CodeFactorNotIndependent, []string{TypeChangeRejected}, 1},
		{"PasswordResetWithOTPAndBiometricFromClaimedDevice", func(h *harness) Command {
			return passwordReset(h.auth(ChangeKindCredentialReset, fPassword, deviceApp, fOTP, fBio))
		}, CodeFactorNotIndependent, []string{TypeChangeRejected}, 1},
		{"IdentityWithOTPOfSendingDevice", func(h *harness) Command {
			return identityChange(h.auth(ChangeKindIdentity, "Li Wei Jr.", deviceApp, fPassword, fOTPApp))
		}, CodeFactorNotIndependent, []string{TypeChangeRejected}, 1},

		// A wrong proof: VerificationFailed, counted (R9).
		{"PhoneWithWrongPassword", func(h *harness) Command {
			return phoneChange(Authorisation{DeviceID: deviceApp, Proofs: append(h.proofs(nil, fOTP), wrongPW)})
		}, CodeProofInvalid, []string{TypeVerificationFailed}, 2},
		{"IdentityWithInactiveFactor", func(h *harness) Command {
			return identityChange(Authorisation{DeviceID: deviceApp, Proofs: []Proof{{FactorID: "nope", Password: "x"}}})
		}, CodeProofInvalid, []string{TypeVerificationFailed}, 2},
		// A signature over another change's challenge does not verify.
		{"SignatureOverAnotherPhone", func(h *harness) Command {
			a := h.auth(ChangeKindPhone, "+8613900000000", deviceApp, fPassword, fBio)
			return phoneChange(a)
		}, CodeProofInvalid, []string{TypeVerificationFailed}, 2},
		{"SignatureOverAnotherKind", func(h *harness) Command {
			a := h.auth(ChangeKindIdentity, newPhone, deviceApp, fPassword, fBio)
			return phoneChange(a)
		}, CodeProofInvalid, []string{TypeVerificationFailed}, 2},

		// The factor being reset never authorises its own reset: refused
		// before any proof is checked.
		{"PasswordResetWithThePassword", func(h *harness) Command {
			return passwordReset(h.auth(ChangeKindCredentialReset, fPassword, deviceApp, fPassword, fOTP))
		}, CodeFactorNotIndependent, nil, 1},
		{"PasswordResetWithThePasswordAndTwoOthers", func(h *harness) Command {
			return passwordReset(h.auth(ChangeKindCredentialReset, fPassword, deviceApp, fOTP, fBio, fPassword))
		}, CodeFactorNotIndependent, nil, 1},
		{"OTPResetWithTheOTP", func(h *harness) Command {
			return ResetCredential{FactorID: fOTP, SealedSecret: []byte(secretApp),
				Auth: h.auth(ChangeKindCredentialReset, fOTP, deviceApp, fPassword, fOTP)}
		}, CodeFactorNotIndependent, nil, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := baseAccount(t)
			h.refuse(Login{DeviceID: deviceApp, Proofs: []Proof{wrongPW}}, CodeAuthFailed)
			before := *h.a
			evs, err := h.decide(tc.cmd(h))
			if tc.code == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
			} else {
				wantCode(t, err, tc.code)
			}
			wantTypes(t, evs, tc.types...)
			if got := h.a.FailedAttempts(); got != tc.failures {
				t.Errorf("failed attempts %d, want %d", got, tc.failures)
			}
			changed := h.a.Phone != before.Phone || h.a.HolderName != before.HolderName
			if tc.code != "" && changed {
				t.Errorf("a refused change changed the account: phone %q, holder %q", h.a.Phone, h.a.HolderName)
			}
			for _, e := range evs {
				switch v := e.(type) {
				case ChangeRejected:
					e := wantCode(t, err, v.Code)
					if v.Reason != e.Message || v.Details["required_categories"] != e.Details["required_categories"] {
						t.Errorf("event %+v does not record the refusal %v", v, e)
					}
					if e.Details["verified_categories"] == nil {
						t.Errorf("details %v", e.Details)
					}
				case VerificationFailed:
					if v.FailedAttempts != 2 || (v.Purpose != ChangeKindPhone && v.Purpose != ChangeKindIdentity) {
						t.Errorf("event %+v", v)
					}
				}
			}
		})
	}
}

// TestSensitiveChangeEffects checks what the successful changes do: the
// account's state, the factors and categories recorded, and that a reset
// password replaces the old one.
func TestSensitiveChangeEffects(t *testing.T) {
	t.Run("PhoneRecordsItsAuthorisation", func(t *testing.T) {
		h := baseAccount(t)
		evs := h.mustProven(phoneChange(h.auth(ChangeKindPhone, newPhone, deviceApp, fPassword, fOTP)))
		pc := evs[0].(PhoneChanged)
		if h.a.Phone != newPhone || pc.DeviceID != deviceApp || len(pc.OTPUses) != 1 ||
			pc.Categories[0] != CategoryKnowledge || pc.Categories[1] != CategoryPossession {
			t.Errorf("phone %q, event %+v", h.a.Phone, pc)
		}
	})
	t.Run("IdentityChangesTheHolder", func(t *testing.T) {
		h := baseAccount(t)
		h.mustAuthorised(ChangeIdentity{HolderName: " Wang Fang "})
		if h.a.HolderName != "Wang Fang" {
			t.Errorf("holder %q", h.a.HolderName)
		}
	})
	t.Run("PasswordResetReplacesThePassword", func(t *testing.T) {
		h := baseAccount(t)
		evs := h.mustProven(passwordReset(h.auth(ChangeKindCredentialReset, fPassword, deviceApp, fOTP, fBio)))
		cr := evs[0].(CredentialReset)
		if cr.FactorID != fPassword || cr.Method != MethodPassword || cr.PasswordHash == "" || len(cr.FactorIDs) != 2 {
			t.Errorf("event %+v", cr)
		}
		for _, a := range []*Account{h.a, h.replay()} {
			_, err := Decide(a, Login{SessionID: "s1", DeviceID: deviceApp, Proofs: []Proof{{FactorID: fPassword, Password: testPassword}}}, h.p, h.now)
			wantCode(t, err, CodeAuthFailed)
			if _, err := Decide(a, Login{SessionID: "s2", DeviceID: deviceApp, Proofs: []Proof{{FactorID: fPassword, Password: newPassword}}}, h.p, h.now); err != nil {
				t.Errorf("new password refused: %v", err)
			}
		}
	})
	t.Run("LostCertificateIsResetAndProvesAgain", func(t *testing.T) {
		h := baseAccount(t)
		h.must(ReportCredentialLoss{FactorID: fCert})
		evs := h.mustProven(certReset(h.auth(ChangeKindCredentialReset, fCert, deviceApp, fPassword, fOTP)))
		if cr := evs[0].(CredentialReset); !cr.UsableFrom.Equal(h.now.Add(h.p.CoolingOff)) {
			t.Errorf("reset usable from %v", cr.UsableFrom)
		}
		pay := func() ([]Event, error) {
			pi := h.initiate("10.00")
			cmd := h.confirmCmd(pi.PaymentID, fPassword)
			cmd.Proofs = append(cmd.Proofs, Proof{FactorID: fCert, Signature: ed25519.Sign(strangerKey, pi.Challenge)})
			return h.decide(cmd)
		}
		// A reset credential cools off like a new factor: it proves again
		// for a login or a change at once, and moves money a day later.
		evs, err := pay()
		wantCode(t, err, CodeFactorCoolingOff)
		if len(evs) != 0 {
			t.Errorf("recorded %v", types(evs))
		}
		h.now = h.now.Add(h.p.CoolingOff)
		evs, err = pay()
		if err != nil {
			t.Fatal(err)
		}
		if c := confirmed(t, evs); c.VerificationLevel != LevelTwoFactorCertificate {
			t.Errorf("level %s", c.VerificationLevel)
		}
	})
}

// TestSensitiveChangeSpendsOTPs checks R7 on changes: a TOTP code that
// verified is spent whether the change succeeded, was refused for too few
// categories or failed on another proof, on the live aggregate and on one
// rebuilt from the log; and one the self-reset check turned away first is
// not.
func TestSensitiveChangeSpendsOTPs(t *testing.T) {
	wrongPW := Proof{FactorID: fPassword, Password: "wrong password"}
	tests := []struct {
		name  string
		cmd   func(h *harness, code Proof) Command
		spent bool
	}{
		{"Succeeded", func(h *harness, code Proof) Command {
			// Signed by deviceApp, so that the code counts (R6) and the
			// change succeeds.
			return h.prove(phoneChange(Authorisation{DeviceID: deviceApp, Proofs: []Proof{code, {FactorID: fPassword, Password: testPassword}}}))
		}, true},
		{"TooFewCategories", func(h *harness, code Proof) Command {
			return passwordReset(Authorisation{DeviceID: deviceApp, Proofs: []Proof{code}})
		}, true},
		{"WrongPasswordBeside", func(h *harness, code Proof) Command {
			return phoneChange(Authorisation{DeviceID: deviceApp, Proofs: []Proof{wrongPW, code}})
		}, true},
		{"SelfReset", func(h *harness, code Proof) Command {
			return passwordReset(Authorisation{DeviceID: deviceApp, Proofs: []Proof{code, wrongPW}})
		}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := baseAccount(t)
			code := h.proofs(nil, fOTP)[0]
			_, err := h.decide(tc.cmd(h, code))
			if succeeded := err == nil; succeeded != (tc.name == "Succeeded") {
				t.Fatalf("decided: %v", err)
			}
			for _, a := range []*Account{h.a, h.replay()} {
				_, err := Decide(a, Login{SessionID: "s", DeviceID: deviceApp, Proofs: []Proof{code}}, h.p, h.now)
				if spent := err != nil; spent != tc.spent {
					t.Errorf("code spent %v, want %v (%v)", spent, tc.spent, err)
				}
			}
		})
	}
}

// TestSensitiveChangeLock checks R9 on changes: wrong proofs of changes
// count towards the same lock as logins and payments, and a change tried
// during the lock is refused and recorded, even with the right proofs.
func TestSensitiveChangeLock(t *testing.T) {
	h := baseAccount(t)
	wrong := Authorisation{DeviceID: deviceApp, Proofs: []Proof{{FactorID: fPassword, Password: "wrong password"}}}
	for i := 1; i <= 4; i++ {
		e, evs := h.refuse(identityChange(wrong), CodeProofInvalid)
		wantTypes(t, evs, TypeVerificationFailed)
		if e.Details["attempts_remaining"] != 5-i {
			t.Fatalf("attempt %d: details %v", i, e.Details)
		}
	}
	_, evs := h.refuse(certReset(wrong), CodeAccessLocked)
	wantTypes(t, evs, TypeVerificationFailed, TypeAccessLocked)
	if v := evs[0].(VerificationFailed); v.Purpose != ChangeKindCredentialReset || v.Reference != fCert || v.FailedAttempts != 5 {
		t.Errorf("fifth failure %+v", v)
	}
	_, evs = h.refuse(phoneChange(h.auth(ChangeKindPhone, newPhone, deviceApp, fPassword, fOTP)), CodeAccessLocked)
	wantTypes(t, evs, TypeVerificationFailed)
	if v := evs[0].(VerificationFailed); v.Purpose != ChangeKindPhone || v.LockedUntil.IsZero() {
		t.Errorf("locked attempt %+v", v)
	}
	if h.a.Phone != "" {
		t.Errorf("phone changed during the lock: %q", h.a.Phone)
	}
	// After the lock: an AccessUnlocked first, then the change.
	h.now = h.now.Add(31 * time.Minute)
	evs = h.mustProven(phoneChange(h.auth(ChangeKindPhone, newPhone, deviceApp, fPassword, fOTP)))
	wantTypes(t, evs, TypeAccessUnlocked, TypePhoneChanged, TypeHolderNotified)
}

// TestSensitiveChangeSignatureIsSingleUse: a biometric attestation over a
// change's challenge names the account version, so it cannot be replayed
// once any attempt moved the version on.
func TestSensitiveChangeSignatureIsSingleUse(t *testing.T) {
	h := baseAccount(t)
	auth := h.auth(ChangeKindPhone, newPhone, deviceApp, fPassword, fBio)
	h.must(phoneChange(auth))
	// The same request again: the version moved on.
	h.refuse(phoneChange(auth), CodeVersionConflict)
	// Claiming the current version with the old attestation does not verify.
	auth.Version = h.a.Version
	_, evs := h.refuse(phoneChange(auth), CodeProofInvalid)
	wantTypes(t, evs, TypeVerificationFailed)
}

// TestSensitiveChangesAndStatus: R14 suspends the payment service, not the
// account's upkeep, so the changes (like login and factor enrolment) are
// accepted while suspended; a closed account accepts none, before any
// proof is checked.
func TestSensitiveChangesAndStatus(t *testing.T) {
	// Signed by deviceApp, so that the TOTP on deviceToken counts (R6).
	cmds := map[string]func(h *harness) Command{
		"Identity": func(h *harness) Command {
			return identityChange(h.signedAuth(ChangeKindIdentity, "Li Wei Jr.", deviceApp, fPassword, fOTP))
		},
		"Phone": func(h *harness) Command {
			return phoneChange(h.signedAuth(ChangeKindPhone, newPhone, deviceApp, fPassword, fOTP))
		},
		"Reset": func(h *harness) Command {
			return certReset(h.signedAuth(ChangeKindCredentialReset, fCert, deviceApp, fPassword, fOTP))
		},
	}
	for name, cmd := range cmds {
		t.Run("Suspended/"+name, func(t *testing.T) {
			h := baseAccount(t)
			h.must(Suspend{Reason: "travelling"})
			if evs := h.must(cmd(h)); len(evs) != 3 || evs[1].EventType() != TypeHolderNotified || evs[2].EventType() != TypeDeviceUsed {
				t.Errorf("events %v", types(evs))
			}
		})
		t.Run("Closed/"+name, func(t *testing.T) {
			h := newHarness(t).open()
			h.apply(FactorEnrolled{FactorID: fPassword, Method: MethodPassword, Category: CategoryKnowledge, PasswordHash: cheapHash(testPassword)})
			h.must(EnrollFactor{FactorID: fOTP, Method: MethodTOTP, DeviceID: deviceToken, SealedSecret: []byte(secretOther), Staff: operator})
			h.must(EnrollFactor{FactorID: fCert, Method: MethodCertificate, PublicKey: pubOf(certKey), Staff: operator})
			h.must(CloseAccount{Reason: "moving"})
			c := cmd(h)
			if _, evs := h.refuse(c, CodeAccountClosed); len(evs) != 0 {
				t.Errorf("recorded %v", types(evs))
			}
		})
	}
}
