package domain

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// Tests of R26's access control in the domain: step-ups for the changes
// that protect the account or pay it out, the cooling-off of factors added
// without an operator's identity check, the last factor, staff actions,
// sessions, and the payment challenge's dynamic linking.

// bioOnly returns an account an operator opened with two biometric factors
// (fBio and "extra" on another device): one factor category.
func bioOnly(t *testing.T) *harness {
	t.Helper()
	h := newHarness(t).open()
	h.must(EnrollFactor{FactorID: "extra", Method: MethodBiometric, DeviceID: "tablet-2", Staff: operator})
	return h
}

// authorisedOf returns the authorisation a protected change's event records.
func authorisedOf(e Event) (Authorised, bool) {
	switch v := e.(type) {
	case FactorEnrolled:
		return v.Authorised, true
	case FactorRevoked:
		return v.Authorised, true
	case CredentialReset:
		return v.Authorised, true
	case LimitAdjusted:
		return v.Authorised, true
	case IdentityChanged:
		return v.Authorised, true
	case PhoneChanged:
		return v.Authorised, true
	case BankAccountBound:
		return v.Authorised, true
	}
	return Authorised{}, false
}

// wantNotified asserts that evs end with exactly one HolderNotified, equal
// to want, right after an event of type change.
func wantNotified(t *testing.T, evs []Event, change string, want HolderNotified) {
	t.Helper()
	n := len(evs)
	if n < 2 || evs[n-2].EventType() != change {
		t.Fatalf("events %v, want %s then %s", types(evs), change, TypeHolderNotified)
	}
	got, ok := evs[n-1].(HolderNotified)
	if !ok || got != want {
		t.Fatalf("last event %#v, want %#v", evs[n-1], want)
	}
	for _, e := range evs[:n-1] {
		if e.EventType() == TypeHolderNotified {
			t.Fatalf("events %v notify the holder twice", types(evs))
		}
	}
}

// wantNoNotice asserts that evs hold no HolderNotified (a refused change
// tells the holder nothing changed).
func wantNoNotice(t *testing.T, evs []Event) {
	t.Helper()
	for _, e := range evs {
		if e.EventType() == TypeHolderNotified {
			t.Fatalf("a refused change notified the holder: %v", types(evs))
		}
	}
}

// TestStepUpForEveryProtectedChange: each change that protects the account
// or pays it out needs proofs of two categories on an account whose active
// factors span two or more, and of every category it has on one whose
// factors span fewer; a success records its authorisation and is followed
// by a HolderNotified naming the change.
func TestStepUpForEveryProtectedChange(t *testing.T) {
	changes := []struct {
		name    string
		kind    string
		subject string // what the change's challenge names
		ref     string // the reference of its notice and of a refusal
		event   string
		cmd     func(Authorisation) Command
		done    func(h *harness) bool
	}{
		{"Enrolment", ChangeKindEnrolment, MethodBiometric, "new", TypeFactorEnrolled,
			func(a Authorisation) Command {
				return EnrollFactor{FactorID: "new", Method: MethodBiometric, DeviceID: "tablet-3", Auth: a}
			},
			func(h *harness) bool { f, ok := h.a.Factor("new"); return ok && f.Active }},
		{"Revocation", ChangeKindRevocation, "extra", "extra", TypeFactorRevoked,
			func(a Authorisation) Command {
				return RevokeFactor{FactorID: "extra", Reason: "sold the tablet", Auth: a}
			},
			func(h *harness) bool { f, _ := h.a.Factor("extra"); return f.Revoked && !f.Active }},
		{"LimitRaise", ChangeKindLimit, "60000.00", "60000.00", TypeLimitAdjusted,
			func(a Authorisation) Command { return AdjustLimit{Limit: "60000.00", Auth: a} },
			func(h *harness) bool { return h.a.AgreedLimit.String() == "60000.00" }},
		{"BankAccount", ChangeKindBankAccount, bankNumber, "", TypeBankAccountBound,
			func(a Authorisation) Command {
				return BindBankAccount{Number: bankNumber, HolderName: holder, Token: "tok", Auth: a}
			},
			func(h *harness) bool { _, ok := h.a.BankAccount(); return ok }},
		{"Identity", ChangeKindIdentity, "Li Wei Jr.", "", TypeIdentityChanged,
			func(a Authorisation) Command { return ChangeIdentity{HolderName: "Li Wei Jr.", Auth: a} },
			func(h *harness) bool { return h.a.HolderName == "Li Wei Jr." }},
		{"Phone", ChangeKindPhone, newPhone, "", TypePhoneChanged,
			func(a Authorisation) Command { return ChangePhone{Phone: newPhone, Auth: a} },
			func(h *harness) bool { return h.a.Phone == newPhone }},
	}
	// The base account spans three categories, bioOnly one; both have the
	// factor "extra" some changes need.
	base := func(t *testing.T) *harness {
		h := baseAccount(t)
		h.must(EnrollFactor{FactorID: "extra", Method: MethodBiometric, DeviceID: "tablet-2", Staff: operator})
		return h
	}
	proofs := []struct {
		name     string
		account  func(t *testing.T) *harness
		factors  []string
		code     string // "" for success
		verified int
		// signed is true when deviceApp signs the change (a proven
		// device, R6): a success then ends with its DeviceUsed.
		signed bool
	}{
		{"TwoCategoryAccount/OneCategory", base, []string{fBio}, CodeInsufficientVerification, 1, false},
		{"TwoCategoryAccount/PasswordOnly", base, []string{fPassword}, CodeInsufficientVerification, 1, false},
		{"TwoCategoryAccount/TwoCategories", base, []string{fPassword, fBio}, "", 2, false},
		{"TwoCategoryAccount/ThreeCategories", base, []string{fPassword, fOTP, fBio}, "", 3, true},
		// R6: from a device that is only claimed, the TOTP is no second
		// category; from a proven one other than its own, it is.
		{"TwoCategoryAccount/PasswordAndTOTPFromClaimedDevice", base, []string{fPassword, fOTP}, CodeFactorNotIndependent, 1, false},
		{"TwoCategoryAccount/PasswordAndTOTPFromProvenDevice", base, []string{fPassword, fOTP}, "", 2, true},
		{"OneCategoryAccount/ItsCategory", bioOnly, []string{fBio}, "", 1, false},
	}
	for _, c := range changes {
		for _, p := range proofs {
			t.Run(c.name+"/"+p.name, func(t *testing.T) {
				h := p.account(t)
				before := h.a.Version
				auth := h.auth(c.kind, c.subject, deviceApp, p.factors...)
				if p.signed {
					auth = h.signedAuth(c.kind, c.subject, deviceApp, p.factors...)
				}
				cmd := c.cmd(auth)
				if p.name == "OneCategoryAccount/ItsCategory" && c.kind != ChangeKindEnrolment {
					// Only an enrolment may make do with fewer than two
					// categories: refused before any proof is checked.
					e, evs := h.refuse(cmd, CodeInsufficientVerification)
					if len(evs) != 0 || h.a.Version != before || c.done(h) {
						t.Errorf("refused up front, but recorded %v", types(evs))
					}
					wantDetails(t, e, map[string]any{"required_categories": 2, "verified_categories": 0})
					return
				}
				if p.code != "" {
					e, evs := h.refuse(cmd, p.code)
					wantTypes(t, evs, TypeChangeRejected)
					r := evs[0].(ChangeRejected)
					if r.Change != c.kind || r.Reference != c.ref || r.Code != p.code {
						t.Errorf("rejection %+v", r)
					}
					wantDetails(t, e, map[string]any{"required_categories": 2, "verified_categories": p.verified})
					if c.done(h) {
						t.Error("a refused change changed the account")
					}
					return
				}
				evs := h.must(cmd)
				if p.signed {
					evs = wantDeviceUsed(t, evs, deviceApp, auth.Device.SignedAt)
				}
				wantNotified(t, evs, c.event, HolderNotified{Change: c.kind, Reference: c.ref})
				by, ok := authorisedOf(evs[0])
				if !ok || by.DeviceID != deviceApp || len(by.FactorIDs) != len(p.factors) || len(by.Categories) != p.verified {
					t.Errorf("the change records its authorisation as %+v", by)
				}
				recorded := int64(2)
				if p.signed {
					recorded = 3
				}
				if !c.done(h) || h.a.Version != before+recorded {
					t.Errorf("change not applied (version %d, was %d)", h.a.Version, before)
				}
				if !reflect.DeepEqual(h.replay(), h.a) {
					t.Error("the rebuilt aggregate differs from the live one")
				}
			})
		}
		t.Run(c.name+"/NoAuthorisation", func(t *testing.T) {
			h := base(t)
			e, evs := h.refuse(c.cmd(Authorisation{}), CodeInvalid)
			if e.Details["field"] != "device_id" || len(evs) != 0 {
				t.Errorf("details %v events %v", e.Details, types(evs))
			}
			e, evs = h.refuse(c.cmd(Authorisation{DeviceID: deviceApp}), CodeInvalid)
			if e.Details["field"] != "proofs" || len(evs) != 0 {
				t.Errorf("details %v events %v", e.Details, types(evs))
			}
		})
		t.Run(c.name+"/SignatureOverAnotherChange", func(t *testing.T) {
			// The challenge names the kind: an attestation over another
			// kind's challenge with the same subject does not verify.
			h := base(t)
			other := ChangeKindIdentity
			if c.kind == other {
				other = ChangeKindPhone
			}
			a := h.auth(other, c.subject, deviceApp, fPassword, fBio)
			_, evs := h.refuse(c.cmd(a), CodeProofInvalid)
			wantTypes(t, evs, TypeVerificationFailed)
			if v := evs[0].(VerificationFailed); v.Purpose != c.kind || v.Reference != c.ref || v.FailedAttempts != 1 {
				t.Errorf("event %+v", v)
			}
		})
	}
}

// TestEnrolment: the holder's enrolment is authorised by a step-up and
// cools off; an operator's, after an identity check, needs no step-up and
// is usable at once; an operator who names no check enrols nothing.
func TestEnrolment(t *testing.T) {
	newCert := func(auth Authorisation, staff Staff) EnrollFactor {
		return EnrollFactor{FactorID: "cert2", Method: MethodCertificate, PublicKey: pubOf(strangerKey), Auth: auth, Staff: staff}
	}
	wrongPW := Proof{FactorID: fPassword, Password: "wrong password"}
	tests := []struct {
		name    string
		account func(t *testing.T) *harness
		cmd     func(h *harness) EnrollFactor
		code    string
		types   []string
		// coolsOff is true when the enrolled factor waits CoolingOff.
		coolsOff bool
		failures int
	}{
		{"HolderWithoutProofs", baseAccount, func(h *harness) EnrollFactor {
			return newCert(Authorisation{DeviceID: deviceApp}, Staff{})
		}, CodeInvalid, nil, false, 0},
		{"HolderWithoutAuthorisation", baseAccount, func(h *harness) EnrollFactor {
			return newCert(Authorisation{}, Staff{})
		}, CodeInvalid, nil, false, 0},
		{"HolderWithOneCategoryOnTwoCategoryAccount", baseAccount, func(h *harness) EnrollFactor {
			return newCert(byPassword(), Staff{})
		}, CodeInsufficientVerification, []string{TypeChangeRejected}, false, 0},
		{"HolderWithTwoPossessionFactors", baseAccount, func(h *harness) EnrollFactor {
			return newCert(h.auth(ChangeKindEnrolment, MethodCertificate, deviceApp, fOTP, fCert), Staff{})
		}, CodeInsufficientVerification, []string{TypeChangeRejected}, false, 0},
		{"HolderWithOTPOfSendingDevice", baseAccount, func(h *harness) EnrollFactor {
			return newCert(h.auth(ChangeKindEnrolment, MethodCertificate, deviceApp, fPassword, fOTPApp), Staff{})
		}, CodeFactorNotIndependent, []string{TypeChangeRejected}, false, 0},
		{"HolderWithWrongPassword", baseAccount, func(h *harness) EnrollFactor {
			return newCert(Authorisation{DeviceID: deviceApp, Proofs: append(h.proofs(nil, fOTP), wrongPW)}, Staff{})
		}, CodeProofInvalid, []string{TypeVerificationFailed}, false, 1},
		{"HolderSignedAnotherMethod", baseAccount, func(h *harness) EnrollFactor {
			// The challenge names the method being enrolled.
			return newCert(h.auth(ChangeKindEnrolment, MethodESignature, deviceApp, fPassword, fBio), Staff{})
		}, CodeProofInvalid, []string{TypeVerificationFailed}, false, 1},
		// R6: the TOTP on deviceToken is a second category only when
		// deviceApp proves it sent the enrolment (its signature).
		{"HolderWithPasswordAndOTP", baseAccount, func(h *harness) EnrollFactor {
			return newCert(h.signedAuth(ChangeKindEnrolment, MethodCertificate, deviceApp, fPassword, fOTP), Staff{})
		}, "", []string{TypeFactorEnrolled, TypeHolderNotified, TypeDeviceUsed}, true, 0},
		{"HolderWithPasswordAndOTPFromClaimedDevice", baseAccount, func(h *harness) EnrollFactor {
			return newCert(h.auth(ChangeKindEnrolment, MethodCertificate, deviceApp, fPassword, fOTP), Staff{})
		}, CodeFactorNotIndependent, []string{TypeChangeRejected}, false, 0},
		{"HolderWithPasswordAloneOnPasswordOnlyAccount", passwordOnly, func(h *harness) EnrollFactor {
			return newCert(byPassword(), Staff{})
		}, "", []string{TypeFactorEnrolled, TypeHolderNotified}, true, 0},
		{"OperatorWithIdentityCheck", baseAccount, func(h *harness) EnrollFactor {
			return newCert(Authorisation{}, operator)
		}, "", []string{TypeFactorEnrolled, TypeHolderNotified}, false, 0},
		{"OperatorOnPasswordOnlyAccount", passwordOnly, func(h *harness) EnrollFactor {
			return newCert(Authorisation{}, operator)
		}, "", []string{TypeFactorEnrolled, TypeHolderNotified}, false, 0},
		{"OperatorWithoutIdentityCheck", baseAccount, func(h *harness) EnrollFactor {
			return newCert(Authorisation{}, uncheckedOp)
		}, CodeInvalid, nil, false, 0},
		{"OperatorWithoutIdentityCheckButHolderProofs", baseAccount, func(h *harness) EnrollFactor {
			// An operator's command is the operator's: the holder's proofs
			// do not stand in for the identity check.
			return newCert(h.auth(ChangeKindEnrolment, MethodCertificate, deviceApp, fPassword, fBio), uncheckedOp)
		}, CodeInvalid, nil, false, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.account(t)
			cmd := tc.cmd(h)
			evs, err := h.decide(cmd)
			if tc.code != "" {
				e := wantCode(t, err, tc.code)
				if tc.code == CodeInvalid && tc.types == nil && cmd.Staff.StaffKey != "" && e.Details["field"] != "identity_check" {
					t.Errorf("details %v", e.Details)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			wantTypes(t, evs, tc.types...)
			if h.a.FailedAttempts() != tc.failures {
				t.Errorf("failed attempts %d, want %d", h.a.FailedAttempts(), tc.failures)
			}
			f, enrolled := h.a.Factor("cert2")
			if tc.code != "" {
				wantNoNotice(t, evs)
				if enrolled {
					t.Fatalf("a refused enrolment enrolled %+v", f)
				}
				return
			}
			fe := evs[0].(FactorEnrolled)
			if len(cmd.Auth.Device.Signature) > 0 {
				evs = wantDeviceUsed(t, evs, cmd.Auth.DeviceID, cmd.Auth.Device.SignedAt)
			}
			wantNotified(t, evs, TypeFactorEnrolled, HolderNotified{Change: ChangeKindEnrolment, Reference: "cert2", Staff: cmd.Staff})
			var want time.Time
			if tc.coolsOff {
				want = h.now.Add(24 * time.Hour)
			}
			if !fe.UsableFrom.Equal(want) || !f.UsableFrom.Equal(want) || !enrolled || !f.Active {
				t.Errorf("event usable from %v, factor %+v; want usable from %v", fe.UsableFrom, f, want)
			}
			if fe.Staff != cmd.Staff {
				t.Errorf("staff %+v, want %+v", fe.Staff, cmd.Staff)
			}
			if (len(fe.Authorised.FactorIDs) > 0) != (cmd.Staff.StaffKey == "") || fe.Authorised.DeviceID != cmd.Auth.DeviceID {
				t.Errorf("authorised %+v", fe.Authorised)
			}
		})
	}
	t.Run("OperatorDuringLock", func(t *testing.T) {
		// The lock keeps out whoever guesses proofs; an operator who
		// checked the holder's identity is not guessing.
		h := baseAccount(t)
		for range 5 {
			h.decide(Login{DeviceID: deviceApp, Proofs: []Proof{{FactorID: fPassword, Password: "wrong password"}}})
		}
		_, evs := h.refuse(newCert(h.auth(ChangeKindEnrolment, MethodCertificate, deviceApp, fPassword, fBio), Staff{}), CodeAccessLocked)
		wantTypes(t, evs, TypeVerificationFailed)
		evs = h.must(newCert(Authorisation{}, operator))
		wantTypes(t, evs, TypeFactorEnrolled, TypeHolderNotified)
	})
}

// TestCoolingOff: a factor enrolled without an operator's identity check
// cannot confirm a payment or a withdrawal before UsableFrom. The refusal
// is input (factor_cooling_off, naming the factor and when it becomes
// usable): it comes before any proof is checked, so nothing is recorded,
// counted or spent. The factor logs in and authorises changes at once.
func TestCoolingOff(t *testing.T) {
	// otp2 is a TOTP factor on its own token, enrolled by the holder at t0.
	const otp2, token3 = "otp2", "token-3"
	setup := func(t *testing.T) *harness {
		h := withBank(t)
		h.must(EnrollFactor{FactorID: otp2, Method: MethodTOTP, DeviceID: token3, SealedSecret: []byte(secretApp),
			Auth: h.stepUp(ChangeKindEnrolment, MethodTOTP)})
		h.now = h.now.Add(TOTPStep)
		return h
	}
	usableFrom := t0.Add(24 * time.Hour)
	otp2Proof := func(h *harness) Proof { return Proof{FactorID: otp2, Code: h.code(secretApp)} }
	confirm := func(h *harness, extra ...Proof) ConfirmPayment {
		pi := h.initiate("10.00")
		cmd := h.confirmCmd(pi.PaymentID, fPassword)
		cmd.Proofs = append(cmd.Proofs, extra...)
		return cmd
	}
	withdraw := func(proofs ...Proof) Withdraw {
		return Withdraw{WithdrawalID: "w1", Amount: "10.00", Currency: "CNY", DeviceID: deviceApp, Proofs: proofs}
	}
	pw := Proof{FactorID: fPassword, Password: testPassword}
	wrongPW := Proof{FactorID: fPassword, Password: "wrong password"}

	refusals := map[string]func(h *harness) Command{
		"Payment": func(h *harness) Command { return confirm(h, otp2Proof(h)) },
		"PaymentWithAnotherOTPToo": func(h *harness) Command {
			return confirm(h, otp2Proof(h), h.proofs(nil, fOTP)[0])
		},
		"PaymentBesideAWrongPassword": func(h *harness) Command {
			cmd := confirm(h, otp2Proof(h))
			cmd.Proofs[0] = wrongPW
			return cmd
		},
		"Withdrawal":                     func(h *harness) Command { return withdraw(pw, otp2Proof(h)) },
		"WithdrawalAlone":                func(h *harness) Command { return withdraw(otp2Proof(h)) },
		"WithdrawalBesideAWrongPassword": func(h *harness) Command { return withdraw(wrongPW, h.proofs(nil, fOTP)[0], otp2Proof(h)) },
	}
	for name, cmd := range refusals {
		t.Run("Refused/"+name, func(t *testing.T) {
			h := setup(t)
			failures, avail := h.a.FailedAttempts(), h.available()
			c := cmd(h)
			version := h.a.Version // after the initiation, if any
			e, evs := h.refuse(c, CodeFactorCoolingOff)
			if len(evs) != 0 || h.a.Version != version {
				t.Errorf("recorded %v", types(evs))
			}
			wantDetails(t, e, map[string]any{"factor_id": otp2, "usable_from": usableFrom.UTC().Format(time.RFC3339Nano), "field": "proofs"})
			if h.a.FailedAttempts() != failures || h.available() != avail {
				t.Errorf("failed attempts %d (was %d), available %s (was %s)", h.a.FailedAttempts(), failures, h.available(), avail)
			}
			if p, ok := c.(ConfirmPayment); ok {
				if _, pending := h.a.Pending(p.PaymentID); !pending {
					t.Error("the payment is no longer pending")
				}
			}
			// Nothing was spent: the codes still log in.
			for _, pr := range proofsOf(c) {
				if pr.Code != "" {
					h.must(Login{SessionID: "s-" + pr.FactorID, DeviceID: deviceApp, Proofs: []Proof{pr}})
				}
			}
		})
	}
	t.Run("AcceptedFromUsableFrom", func(t *testing.T) {
		h := setup(t)
		h.now = usableFrom.Add(-time.Nanosecond)
		h.refuse(confirm(h, otp2Proof(h)), CodeFactorCoolingOff)
		h.refuse(withdraw(pw, otp2Proof(h)), CodeFactorCoolingOff)
		h.now = usableFrom
		// From deviceApp, which signs (R6): otp2 on token3 counts.
		evs, err := h.decide(h.prove(confirm(h, otp2Proof(h))))
		if err != nil {
			t.Fatal(err)
		}
		if c := confirmed(t, evs); !reflect.DeepEqual(c.FactorIDs, []string{otp2, fPassword}) || c.VerificationLevel != LevelTwoFactor {
			t.Errorf("confirmed %+v", c)
		}
		h.now = h.now.Add(TOTPStep)
		wantTypes(t, h.mustProven(withdraw(pw, otp2Proof(h))), TypeFundsWithdrawn)
	})
	t.Run("LoginAndEnrolmentAtOnceOtherChangesLater", func(t *testing.T) {
		h := setup(t)
		h.must(Login{SessionID: "s1", DeviceID: deviceApp, Proofs: []Proof{otp2Proof(h)}})
		h.now = h.now.Add(TOTPStep)
		// A fresh factor authorises no change that redirects money or
		// notices: refused as input, nothing recorded or spent.
		version := h.a.Version
		if _, evs := h.refuse(ChangePhone{Phone: newPhone, Auth: Authorisation{DeviceID: deviceApp, Proofs: []Proof{pw, otp2Proof(h)}}},
			CodeFactorCoolingOff); len(evs) != 0 || h.a.Version != version {
			t.Errorf("refused phone change recorded %v", types(evs))
		}
		// From deviceApp, which signs (R6): otp2 is the second category.
		h.mustProven(EnrollFactor{FactorID: "otp3", Method: MethodTOTP, DeviceID: "tablet-9", SealedSecret: []byte("sealed"),
			Auth: Authorisation{DeviceID: deviceApp, Proofs: []Proof{pw, otp2Proof(h)}}})
	})
	t.Run("OperatorEnrolmentPaysAtOnce", func(t *testing.T) {
		h := baseAccount(t)
		h.must(EnrollFactor{FactorID: "cert2", Method: MethodCertificate, PublicKey: pubOf(strangerKey), Staff: operator})
		pi := h.initiate("10.00")
		cmd := h.confirmCmd(pi.PaymentID, fPassword)
		cmd.Proofs = append(cmd.Proofs, Proof{FactorID: "cert2", Signature: ed25519.Sign(strangerKey, pi.Challenge)})
		if c := confirmed(t, h.must(cmd)); c.VerificationLevel != LevelTwoFactorCertificate {
			t.Errorf("level %s", c.VerificationLevel)
		}
	})
	t.Run("FirstFactorOfHolderOpenedAccount", func(t *testing.T) {
		h := passwordOnly(t)
		h.deposit("100.00")
		pi := h.initiate("10.00")
		e, evs := h.refuse(h.confirmCmd(pi.PaymentID, fPassword), CodeFactorCoolingOff)
		if len(evs) != 0 || e.Details["factor_id"] != fPassword {
			t.Errorf("details %v events %v", e.Details, types(evs))
		}
		h.now = t0.Add(h.p.CoolingOff)
		pi = h.initiate("10.00")
		confirmed(t, h.must(h.confirmCmd(pi.PaymentID, fPassword)))
	})
	t.Run("ResetCredential", func(t *testing.T) {
		// A reset credential is a new credential: it cools off like a new
		// factor, and resetting a factor in its cooling-off does not end it
		// early.
		h := setup(t)
		evs := h.must(ResetCredential{FactorID: otp2, SealedSecret: []byte(secretOther),
			Auth: h.auth(ChangeKindCredentialReset, otp2, deviceApp, fPassword, fBio)})
		if cr := evs[0].(CredentialReset); !cr.UsableFrom.Equal(h.now.Add(h.p.CoolingOff)) {
			t.Errorf("reset usable from %v", cr.UsableFrom)
		}
		h.now = usableFrom
		h.refuse(confirm(h, Proof{FactorID: otp2, Code: h.code(secretOther)}), CodeFactorCoolingOff)
		// The password reset the same way no longer pays alone.
		h.must(passwordReset(h.auth(ChangeKindCredentialReset, fPassword, deviceApp, fCert, fBio)))
		pi := h.initiate("10.00")
		_, err := h.decide(ConfirmPayment{PaymentID: pi.PaymentID, DeviceID: deviceApp, PayeeID: payeeID, Payee: activePayee,
			Proofs: []Proof{{FactorID: fPassword, Password: newPassword}}})
		wantCode(t, err, CodeFactorCoolingOff)
		h.must(Login{SessionID: "s1", DeviceID: deviceApp, Proofs: []Proof{{FactorID: fPassword, Password: newPassword}}})
	})
	t.Run("PolicyWithoutCoolingOff", func(t *testing.T) {
		h := baseAccount(t)
		h.p.CoolingOff = 0
		h.must(EnrollFactor{FactorID: "cert2", Method: MethodCertificate, PublicKey: pubOf(strangerKey),
			Auth: h.stepUp(ChangeKindEnrolment, MethodCertificate)})
		pi := h.initiate("10.00")
		cmd := h.confirmCmd(pi.PaymentID, fPassword)
		cmd.Proofs = append(cmd.Proofs, Proof{FactorID: "cert2", Signature: ed25519.Sign(strangerKey, pi.Challenge)})
		confirmed(t, h.must(cmd))
	})
}

// proofsOf returns the proofs a payment confirmation or withdrawal carries.
func proofsOf(c Command) []Proof {
	switch v := c.(type) {
	case ConfirmPayment:
		return v.Proofs
	case Withdraw:
		return v.Proofs
	}
	return nil
}

// TestRevocation: revoking needs a step-up, the last active factor cannot
// be revoked, and a revoked factor proves nothing.
func TestRevocation(t *testing.T) {
	t.Run("Recorded", func(t *testing.T) {
		h := baseAccount(t)
		evs := h.must(RevokeFactor{FactorID: fCert, Reason: "expired", Auth: h.stepUp(ChangeKindRevocation, fCert)})
		wantNotified(t, evs, TypeFactorRevoked, HolderNotified{Change: ChangeKindRevocation, Reference: fCert})
		fr := evs[0].(FactorRevoked)
		if fr.FactorID != fCert || fr.Reason != "expired" || !reflect.DeepEqual(fr.Authorised.FactorIDs, []string{fBio, fPassword}) {
			t.Errorf("event %+v", fr)
		}
		// Its own proof may authorise it: a revocation only takes away.
		evs = h.must(RevokeFactor{FactorID: fESig, Auth: h.auth(ChangeKindRevocation, fESig, deviceApp, fPassword, fESig)})
		wantTypes(t, evs, TypeFactorRevoked, TypeHolderNotified)
	})
	t.Run("LastActiveFactor", func(t *testing.T) {
		h := bioOnly(t)
		h.must(ReportCredentialLoss{FactorID: "extra"})
		e, evs := h.refuse(RevokeFactor{FactorID: fBio, Auth: h.auth(ChangeKindRevocation, fBio, deviceApp, fBio)}, CodeConflict)
		if len(evs) != 0 || !strings.Contains(e.Message, "last active factor") {
			t.Errorf("%v, events %v", e, types(evs))
		}
		if f, _ := h.a.Factor(fBio); !f.Active {
			t.Error("the last factor was revoked")
		}
	})
	t.Run("LastActiveBesideLostOnes", func(t *testing.T) {
		h := bioOnly(t)
		h.must(ReportCredentialLoss{FactorID: "extra"})
		_, evs := h.refuse(RevokeFactor{FactorID: fBio, Auth: h.auth(ChangeKindRevocation, fBio, deviceApp, fBio)}, CodeConflict)
		if len(evs) != 0 {
			t.Errorf("recorded %v", types(evs))
		}
		// Reporting the last factor lost is allowed: it only takes access
		// away (an operator helps from there).
		wantTypes(t, h.must(ReportCredentialLoss{FactorID: fBio}), TypeCredentialLossReported, TypeHolderNotified)
	})
	t.Run("RefusedBeforeProofs", func(t *testing.T) {
		// The last-factor refusal comes before the proofs: a wrong proof
		// beside it is not counted.
		h := bioOnly(t)
		h.must(ReportCredentialLoss{FactorID: "extra"})
		h.refuse(RevokeFactor{FactorID: fBio, Auth: Authorisation{DeviceID: deviceApp, Proofs: []Proof{{FactorID: "nope", Password: "x"}}}}, CodeConflict)
		if h.a.FailedAttempts() != 0 {
			t.Errorf("failed attempts %d", h.a.FailedAttempts())
		}
	})
}

// TestResetStepUp: the factor being reset is left out of the categories a
// reset needs; with no other active factor a reset is refused as
// insufficient_verification before any proof is checked.
func TestResetStepUp(t *testing.T) {
	// bioAndCert: a biometric and a certificate (two categories).
	bioAndCert := func(t *testing.T) *harness {
		h := newHarness(t).open()
		h.must(EnrollFactor{FactorID: fCert, Method: MethodCertificate, PublicKey: pubOf(certKey), Staff: operator})
		return h
	}
	t.Run("OneOtherCategoryIsNotEnough", func(t *testing.T) {
		// With the certificate reported lost, a stolen biometric alone
		// must not give the thief a new certificate.
		h := bioAndCert(t)
		e, evs := h.refuse(certReset(h.auth(ChangeKindCredentialReset, fCert, deviceApp, fBio)), CodeInsufficientVerification)
		if len(evs) != 0 || h.a.FailedAttempts() != 0 {
			t.Errorf("refused up front, but recorded %v", types(evs))
		}
		wantDetails(t, e, map[string]any{"required_categories": 2, "verified_categories": 0})
	})
	t.Run("TwoOtherCategories", func(t *testing.T) {
		h := bioAndCert(t)
		h.apply(FactorEnrolled{FactorID: fPassword, Method: MethodPassword, Category: CategoryKnowledge, PasswordHash: cheapHash(testPassword)})
		evs := h.must(certReset(h.auth(ChangeKindCredentialReset, fCert, deviceApp, fBio, fPassword)))
		wantNotified(t, evs, TypeCredentialReset, HolderNotified{Change: ChangeKindCredentialReset, Reference: fCert})
	})
	t.Run("OtherFactorLost", func(t *testing.T) {
		h := bioAndCert(t)
		h.must(ReportCredentialLoss{FactorID: fBio})
		e, evs := h.refuse(certReset(h.auth(ChangeKindCredentialReset, fCert, deviceApp, fBio)), CodeInsufficientVerification)
		if len(evs) != 0 || h.a.FailedAttempts() != 0 {
			t.Errorf("recorded %v, %d failures", types(evs), h.a.FailedAttempts())
		}
		wantDetails(t, e, map[string]any{"required_categories": 2, "verified_categories": 0})
	})
	for name, auth := range map[string]Authorisation{
		"NoProofs":      {DeviceID: deviceApp},
		"NoAuth":        {},
		"UnknownFactor": {DeviceID: deviceApp, Proofs: []Proof{{FactorID: "nope", Password: "guess"}}},
	} {
		t.Run("NoOtherFactor/"+name, func(t *testing.T) {
			h := passwordOnly(t)
			_, evs := h.refuse(passwordReset(auth), CodeInsufficientVerification)
			if len(evs) != 0 || h.a.FailedAttempts() != 0 {
				t.Errorf("recorded %v, %d failures", types(evs), h.a.FailedAttempts())
			}
		})
	}
	t.Run("NoOtherFactor/ItsOwnPassword", func(t *testing.T) {
		h := passwordOnly(t)
		_, evs := h.refuse(passwordReset(byPassword()), CodeFactorNotIndependent)
		if len(evs) != 0 {
			t.Errorf("recorded %v", types(evs))
		}
	})
}

// TestLimitChange: a raise needs a step-up, a lower (or equal) limit only
// protects the holder and needs none; every change notifies the holder.
func TestLimitChange(t *testing.T) {
	h := baseAccount(t)
	t.Run("LowerWithoutAuthorisation", func(t *testing.T) {
		evs := h.must(AdjustLimit{Limit: "20000.00"})
		wantNotified(t, evs, TypeLimitAdjusted, HolderNotified{Change: ChangeKindLimit, Reference: "20000.00"})
		if la := evs[0].(LimitAdjusted); la.Previous.String() != "50000.00" || len(la.Authorised.FactorIDs) != 0 {
			t.Errorf("event %+v", la)
		}
	})
	t.Run("SameWithoutAuthorisation", func(t *testing.T) {
		h.must(AdjustLimit{Limit: "20000"})
	})
	t.Run("RaiseWithoutAuthorisation", func(t *testing.T) {
		e, evs := h.refuse(AdjustLimit{Limit: "20000.01"}, CodeInvalid)
		if len(evs) != 0 || e.Details["field"] != "device_id" || h.a.AgreedLimit.String() != "20000.00" {
			t.Errorf("details %v events %v limit %s", e.Details, types(evs), h.a.AgreedLimit)
		}
	})
	t.Run("RaiseWithPasswordOnly", func(t *testing.T) {
		_, evs := h.refuse(AdjustLimit{Limit: "90000.00", Auth: byPassword()}, CodeInsufficientVerification)
		wantTypes(t, evs, TypeChangeRejected)
	})
	t.Run("RaiseWithStepUp", func(t *testing.T) {
		evs := h.mustAuthorised(AdjustLimit{Limit: "90000.00"})
		wantNotified(t, evs, TypeLimitAdjusted, HolderNotified{Change: ChangeKindLimit, Reference: "90000.00"})
		if h.a.AgreedLimit.String() != "90000.00" {
			t.Errorf("limit %s", h.a.AgreedLimit)
		}
	})
}

// TestHolderNotifiedAfterStaffAndLossChanges: the changes without a
// holder's step-up notify the holder too, naming the operator who made
// them.
func TestHolderNotifiedAfterStaffAndLossChanges(t *testing.T) {
	tests := []struct {
		name  string
		setup func(h *harness)
		cmd   Command
		event string
		want  HolderNotified
	}{
		{"OperatorEnrolment", nil, EnrollFactor{FactorID: "bio2", Method: MethodBiometric, DeviceID: "tablet-2", Staff: operator},
			TypeFactorEnrolled, HolderNotified{Change: ChangeKindEnrolment, Reference: "bio2", Staff: operator}},
		{"LossReportByHolder", nil, ReportCredentialLoss{FactorID: fCert},
			TypeCredentialLossReported, HolderNotified{Change: ChangeKindLossReport, Reference: fCert}},
		{"LossReportByOperator", nil, ReportCredentialLoss{FactorID: fCert, Staff: operator},
			TypeCredentialLossReported, HolderNotified{Change: ChangeKindLossReport, Reference: fCert, Staff: operator}},
		{"Unlock", lockOut, Unlock{Reason: "holder called", Staff: operator},
			TypeAccessUnlocked, HolderNotified{Change: ChangeKindUnlock, Staff: operator}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := baseAccount(t)
			if tc.setup != nil {
				tc.setup(h)
			}
			wantNotified(t, h.must(tc.cmd), tc.event, tc.want)
		})
	}
	t.Run("LossReportByOperatorWithoutIdentityCheck", func(t *testing.T) {
		h := baseAccount(t)
		e, evs := h.refuse(ReportCredentialLoss{FactorID: fCert, Staff: uncheckedOp}, CodeInvalid)
		if len(evs) != 0 || e.Details["field"] != "identity_check" {
			t.Errorf("details %v events %v", e.Details, types(evs))
		}
	})
	t.Run("LossReportRecordsTheOperator", func(t *testing.T) {
		h := baseAccount(t)
		evs := h.must(ReportCredentialLoss{FactorID: fCert, Staff: operator})
		if lr := evs[0].(CredentialLossReported); lr.Staff != operator || lr.Method != MethodCertificate {
			t.Errorf("event %+v", lr)
		}
	})
}

// lockOut locks the account with five wrong logins.
func lockOut(h *harness) {
	h.t.Helper()
	for range 5 {
		h.decide(Login{DeviceID: deviceApp, Proofs: []Proof{{FactorID: fPassword, Password: "wrong password"}}})
	}
	if h.a.LockedUntil().IsZero() {
		h.t.Fatal("not locked after five failures")
	}
}

// TestUnlock: an operator lifts a lock after checking the holder's
// identity, and only while it holds.
func TestUnlock(t *testing.T) {
	t.Run("NotLocked", func(t *testing.T) {
		h := baseAccount(t)
		if _, evs := h.refuse(Unlock{Staff: operator}, CodeConflict); len(evs) != 0 {
			t.Errorf("recorded %v", types(evs))
		}
	})
	t.Run("LockExpired", func(t *testing.T) {
		h := baseAccount(t)
		lockOut(h)
		h.now = h.a.LockedUntil()
		h.refuse(Unlock{Staff: operator}, CodeConflict)
		// The next attempt records the expiry as before.
		wantTypes(t, h.must(Login{DeviceID: deviceApp, Proofs: h.proofs(nil, fPassword)}), TypeAccessUnlocked, TypeLoginSucceeded)
	})
	// Without a staff key the unlock is the holder's early one, which needs
	// a registered device that signs it (TestHolderUnlock): a holder
	// without one, or naming an identity check as if an operator, is
	// refused as input like an operator who names no check.
	for name, tc := range map[string]struct {
		staff Staff
		field string
	}{
		"Holder":                       {Staff{}, "device_id"},
		"OperatorWithoutIdentityCheck": {uncheckedOp, "identity_check"},
		// An identity check no staff key names is refused as such.
		"IdentityCheckWithoutKey": {Staff{IdentityCheck: "x"}, "identity_check"},
	} {
		t.Run("Refused/"+name, func(t *testing.T) {
			h := baseAccount(t)
			lockOut(h)
			until := h.a.LockedUntil()
			e, evs := h.refuse(Unlock{Staff: tc.staff}, CodeInvalid)
			if len(evs) != 0 || e.Details["field"] != tc.field || !h.a.LockedUntil().Equal(until) {
				t.Errorf("details %v events %v", e.Details, types(evs))
			}
		})
	}
	t.Run("ByOperator", func(t *testing.T) {
		h := baseAccount(t)
		lockOut(h)
		h.now = h.now.Add(time.Minute)
		evs := h.must(Unlock{Reason: "holder called the branch", Staff: operator})
		wantNotified(t, evs, TypeAccessUnlocked, HolderNotified{Change: ChangeKindUnlock, Staff: operator})
		if u := evs[0].(AccessUnlocked); u.Staff != operator || u.Reason != "holder called the branch" {
			t.Errorf("event %+v", u)
		}
		for _, a := range []*Account{h.a, h.replay()} {
			if !a.LockedUntil().IsZero() || a.FailedAttempts() != 0 {
				t.Errorf("locked until %v, %d failures", a.LockedUntil(), a.FailedAttempts())
			}
		}
		wantTypes(t, h.must(Login{DeviceID: deviceApp, Proofs: h.proofs(nil, fPassword)}), TypeLoginSucceeded)
		h.refuse(Unlock{Staff: operator}, CodeConflict)
	})
}

// TestStaffSuspension: a suspension an operator made for risk is lifted
// only by an operator; the holder's own is the holder's to lift.
func TestStaffSuspension(t *testing.T) {
	t.Run("ByOperatorNotLiftableByHolder", func(t *testing.T) {
		h := baseAccount(t)
		evs := h.must(Suspend{Reason: "risk review", Staff: operator})
		if s := evs[0].(ServiceSuspended); s.Staff != operator {
			t.Errorf("event %+v", s)
		}
		for _, a := range []*Account{h.a, h.replay()} {
			_, err := Decide(a, Reactivate{Reason: "I am back"}, h.p, h.now)
			wantCode(t, err, CodeForbidden)
		}
		if _, evs := h.refuse(Reactivate{}, CodeForbidden); len(evs) != 0 || h.a.Status != StatusSuspended {
			t.Errorf("recorded %v, status %s", types(evs), h.a.Status)
		}
		evs = h.must(Reactivate{Reason: "risk cleared", Staff: operator})
		if r := evs[0].(ServiceReactivated); r.Staff != operator || h.a.Status != StatusActive {
			t.Errorf("event %+v, status %s", r, h.a.Status)
		}
		// The next suspension is the holder's, and so theirs to lift.
		h.must(Suspend{Reason: "travelling"})
		h.must(Reactivate{Reason: "back home"})
	})
	t.Run("ByHolderLiftableByEither", func(t *testing.T) {
		for _, staff := range []Staff{{}, operator} {
			h := baseAccount(t)
			h.must(Suspend{Reason: "travelling"})
			h.must(Reactivate{Staff: staff})
		}
	})
	t.Run("OldSuspensionWithoutStaff", func(t *testing.T) {
		h := baseAccount(t)
		e, err := DecodeEvent(TypeServiceSuspended, 1, []byte(`{"reason":"customer request"}`))
		if err != nil {
			t.Fatal(err)
		}
		h.apply(e)
		h.must(Reactivate{})
	})
}

// TestDepositRules: only the funding desk credits money, each bank
// reference once per account.
func TestDepositRules(t *testing.T) {
	deposit := func(id, ref string, staff Staff) Deposit {
		return Deposit{DepositID: id, Amount: "10.00", Currency: "CNY", Reference: ref, Staff: staff}
	}
	t.Run("WithoutStaff", func(t *testing.T) {
		h := newHarness(t).open()
		for name, c := range map[string]struct {
			staff Staff
			code  string
		}{"None": {Staff{}, CodeForbidden}, "IdentityCheckOnly": {Staff{IdentityCheck: "x"}, CodeInvalid}} {
			if _, evs := h.refuse(deposit("d1", "REF-1", c.staff), c.code); len(evs) != 0 || h.available() != "0.00" {
				t.Errorf("%s: recorded %v", name, types(evs))
			}
		}
		// Refused before the rest is looked at, even on a suspended account.
		h.must(Suspend{})
		h.refuse(deposit("d1", "REF-1", Staff{}), CodeForbidden)
		h.refuse(deposit("d1", "REF-1", fundingDesk), CodeAccountSuspended)
	})
	t.Run("DuplicateReference", func(t *testing.T) {
		h := newHarness(t).open()
		h.must(deposit("d1", "REF-1", fundingDesk))
		for name, ref := range map[string]string{"Same": "REF-1", "Padded": "  REF-1\t"} {
			for _, a := range []*Account{h.a, h.replay()} {
				evs, err := Decide(a, deposit("d2", ref, fundingDesk), h.p, h.now)
				e := wantCode(t, err, CodeBankReferenceUsed)
				if len(evs) != 0 || e.Details["deposit_id"] != "d1" || e.Details["field"] != "reference" {
					t.Errorf("%s: details %v events %v", name, e.Details, types(evs))
				}
			}
		}
		// Another reference, or another funding desk key, changes nothing
		// about the one used.
		h.must(deposit("d2", "REF-2", fundingDesk))
		e, _ := h.refuse(deposit("d3", "REF-2", Staff{StaffKey: "staff-funding-2"}), CodeBankReferenceUsed)
		if e.Details["deposit_id"] != "d2" {
			t.Errorf("details %v", e.Details)
		}
		if h.available() != "20.00" {
			t.Errorf("available %s", h.available())
		}
	})
	t.Run("RefusedDepositLeavesTheReference", func(t *testing.T) {
		h := newHarness(t).open()
		bad := deposit("d1", "REF-1", fundingDesk)
		bad.Amount = "0"
		h.refuse(bad, CodeInvalid)
		h.must(deposit("d1", "REF-1", fundingDesk))
	})
	t.Run("OtherAccountSameReference", func(t *testing.T) {
		h1, h2 := newHarness(t).open(), newHarness(t).open()
		h1.must(deposit("d1", "REF-1", fundingDesk))
		h2.must(deposit("d1", "REF-1", fundingDesk))
	})
	t.Run("OldDepositsDoNotHoldReferences", func(t *testing.T) {
		// Deposits written before references were checked carry free text
		// ("bank transfer" for many), so they hold no reference.
		h := newHarness(t).open()
		e, err := DecodeEvent(TypeFundsDeposited, 1, []byte(`{"deposit_id":"d0","debit_account":"clearing-CNY","credit_account":"acc-1",`+
			`"amount":{"amount":"5.00","currency":"CNY"},"reference":"bank transfer"}`))
		if err != nil {
			t.Fatal(err)
		}
		h.apply(e)
		h.must(deposit("d1", "bank transfer", fundingDesk))
		if h.available() != "15.00" {
			t.Errorf("available %s", h.available())
		}
	})
}

// TestSessions: the aggregate keeps the open sessions, at most 16, and
// ends them on logout, on the retirement or reset of a factor they logged
// in with, and on closing.
func TestSessions(t *testing.T) {
	// sessions logs in sPw with the password, sOTP with fOTP, sBoth with
	// both (a fresh TOTP step for each code).
	sessions := func(t *testing.T) *harness {
		h := newHarness(t).open()
		h.apply(FactorEnrolled{FactorID: fPassword, Method: MethodPassword, Category: CategoryKnowledge, PasswordHash: cheapHash(testPassword)})
		h.must(EnrollFactor{FactorID: fOTP, Method: MethodTOTP, DeviceID: deviceToken, SealedSecret: []byte(secretOther), Staff: operator})
		h.must(EnrollFactor{FactorID: fCert, Method: MethodCertificate, PublicKey: pubOf(certKey), Staff: operator})
		h.must(Login{SessionID: "sPw", TokenHash: []byte("h1"), DeviceID: deviceApp, Proofs: h.proofs(nil, fPassword)})
		h.must(Login{SessionID: "sOTP", TokenHash: []byte("h2"), DeviceID: deviceApp, Proofs: h.proofs(nil, fOTP)})
		h.now = h.now.Add(TOTPStep)
		h.must(Login{SessionID: "sBoth", TokenHash: []byte("h3"), DeviceID: deviceApp, Proofs: h.proofs(nil, fPassword, fOTP)})
		h.now = h.now.Add(TOTPStep)
		return h
	}
	all := []string{"sPw", "sOTP", "sBoth"}
	tests := []struct {
		name  string
		cmd   func(h *harness) Command
		ended []string
	}{
		{"Logout", func(h *harness) Command { return Logout{SessionID: "sOTP", Reason: "logout"} }, []string{"sOTP"}},
		{"RevokeOTP", func(h *harness) Command {
			return RevokeFactor{FactorID: fOTP, Auth: h.auth(ChangeKindRevocation, fOTP, deviceApp, fPassword, fBio)}
		}, []string{"sOTP", "sBoth"}},
		{"RevokePassword", func(h *harness) Command {
			return RevokeFactor{FactorID: fPassword, Auth: h.auth(ChangeKindRevocation, fPassword, deviceApp, fCert, fBio)}
		}, []string{"sPw", "sBoth"}},
		{"ReportOTPLost", func(h *harness) Command { return ReportCredentialLoss{FactorID: fOTP} }, []string{"sOTP", "sBoth"}},
		{"ReportPasswordLostByOperator", func(h *harness) Command { return ReportCredentialLoss{FactorID: fPassword, Staff: operator} },
			[]string{"sPw", "sBoth"}},
		{"ResetOTP", func(h *harness) Command {
			return ResetCredential{FactorID: fOTP, SealedSecret: []byte(secretApp), Auth: h.auth(ChangeKindCredentialReset, fOTP, deviceApp, fPassword, fBio)}
		}, []string{"sOTP", "sBoth"}},
		{"ResetPassword", func(h *harness) Command {
			return passwordReset(h.auth(ChangeKindCredentialReset, fPassword, deviceApp, fCert, fBio))
		}, []string{"sPw", "sBoth"}},
		{"RevokeFactorWithoutSessions", func(h *harness) Command {
			return RevokeFactor{FactorID: fCert, Auth: h.auth(ChangeKindRevocation, fCert, deviceApp, fPassword, fBio)}
		}, nil},
		{"Close", func(h *harness) Command { return CloseAccount{Reason: "moving"} }, all},
		{"CloseByOperator", func(h *harness) Command { return CloseAccount{Reason: "fraud", Staff: operator} }, all},
		// Refused changes end nothing.
		{"RevokeRefused", func(h *harness) Command { return RevokeFactor{FactorID: fOTP, Auth: byPassword()} }, nil},
		{"ResetRefused", func(h *harness) Command {
			return passwordReset(h.auth(ChangeKindCredentialReset, fPassword, deviceApp, fCert))
		}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := sessions(t)
			for _, id := range all {
				if _, ok := h.a.Session(id); !ok {
					t.Fatalf("session %s not open", id)
				}
			}
			h.decide(tc.cmd(h))
			for _, a := range []*Account{h.a, h.replay()} {
				for _, id := range all {
					_, open := a.Session(id)
					if ended := slicesContains(tc.ended, id); open == ended {
						t.Errorf("session %s open = %v, want %v", id, open, !ended)
					}
				}
			}
		})
	}
	t.Run("SessionRecordsItsLogin", func(t *testing.T) {
		h := sessions(t)
		s, ok := h.a.Session("sBoth")
		want := Session{ID: "sBoth", TokenHash: []byte("h3"), DeviceID: deviceApp, FactorIDs: []string{fOTP, fPassword},
			Start: t0.Add(TOTPStep), ExpiresAt: t0.Add(TOTPStep + 8*time.Hour)}
		if !ok || !sameValue(reflect.ValueOf(s), reflect.ValueOf(want)) {
			t.Errorf("Session(sBoth) = %+v, %v; want %+v", s, ok, want)
		}
	})
	t.Run("LogoutUnknownOrEnded", func(t *testing.T) {
		h := sessions(t)
		evs := h.must(Logout{SessionID: "sPw", Reason: "bye"})
		if se := evs[0].(SessionEnded); se.SessionID != "sPw" || se.Reason != "bye" || len(evs) != 1 {
			t.Errorf("events %+v", evs)
		}
		for _, id := range []string{"sPw", "nope", ""} {
			if _, evs := h.refuse(Logout{SessionID: id}, CodeUnauthenticated); len(evs) != 0 {
				t.Errorf("recorded %v", types(evs))
			}
		}
	})
	t.Run("AtMost16", func(t *testing.T) {
		h := sessions(t) // three open
		for i := 1; i <= 14; i++ {
			h.now = h.now.Add(time.Second)
			h.must(Login{SessionID: fmt.Sprintf("s%02d", i), DeviceID: deviceApp, Proofs: h.proofs(nil, fPassword)})
		}
		// 17 logins: the oldest (sPw) ended, the 16 others are open.
		for _, a := range []*Account{h.a, h.replay()} {
			if _, ok := a.Session("sPw"); ok {
				t.Error("the oldest session outlived the 17th login")
			}
			if n := len(a.sessions); n != 16 {
				t.Errorf("%d sessions open, want 16", n)
			}
			for _, id := range []string{"sOTP", "sBoth", "s01", "s14"} {
				if _, ok := a.Session(id); !ok {
					t.Errorf("session %s ended", id)
				}
			}
		}
		for i := 15; i <= 40; i++ {
			h.must(Login{SessionID: fmt.Sprintf("s%02d", i), DeviceID: deviceApp, Proofs: h.proofs(nil, fPassword)})
		}
		if n := len(h.a.sessions); n != 16 {
			t.Errorf("%d sessions open, want 16", n)
		}
		for i := 25; i <= 40; i++ {
			if _, ok := h.a.Session(fmt.Sprintf("s%02d", i)); !ok {
				t.Errorf("session s%02d ended; want the newest 16 open", i)
			}
		}
	})
	t.Run("LogoutOnClosedAccount", func(t *testing.T) {
		h := sessions(t)
		h.must(CloseAccount{})
		h.refuse(Logout{SessionID: "sPw"}, CodeAccountClosed)
	})
}

func slicesContains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// TestPaymentChallengeFormat pins PaymentChallenge to the bytes its doc
// comment gives, which clients rebuild to check what they sign.
func TestPaymentChallengeFormat(t *testing.T) {
	nonce := bytes.Repeat([]byte{0xfb, 0xff}, 8) // base64url needs '-' and '_' here
	got := PaymentChallenge("p-1", "acc-1", "acc-2", MustMoney("12.5", CNY), Zero(CNY), nonce)
	want := "payledger/payment/v1\np-1\nacc-1\nacc-2\n12.50\n0.00\nCNY\n-__7__v_-__7__v_-__7_w"
	if string(got) != want {
		t.Errorf("PaymentChallenge =\n%q\nwant\n%q", got, want)
	}
	got = PaymentChallenge("01J", "a", "b", MustMoney("1000000.01", CNY), MustMoney("0.5", CNY), []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15})
	want = "payledger/payment/v1\n01J\na\nb\n1000000.01\n0.50\nCNY\nAAECAwQFBgcICQoLDA0ODw"
	if string(got) != want {
		t.Errorf("PaymentChallenge =\n%q\nwant\n%q", got, want)
	}
}

// TestPaymentChallengeLinksThePayment: a signature over one payment's
// challenge verifies for no payment that differs in what is paid or to
// whom, even with the same nonce.
func TestPaymentChallengeLinksThePayment(t *testing.T) {
	nonce := []byte("0123456789abcdef")
	amt, fee := MustMoney("10.00", CNY), Zero(CNY)
	base := PaymentChallenge("p1", accountID, payeeID, amt, fee, nonce)
	sig := ed25519.Sign(certKey, base)
	if !VerifySignature(pubOf(certKey), base, sig) {
		t.Fatal("the signature does not verify its own challenge")
	}
	for name, other := range map[string][]byte{
		"Amount":    PaymentChallenge("p1", accountID, payeeID, MustMoney("10.01", CNY), fee, nonce),
		"Payee":     PaymentChallenge("p1", accountID, "acc-3", amt, fee, nonce),
		"Payer":     PaymentChallenge("p1", "acc-9", payeeID, amt, fee, nonce),
		"PaymentID": PaymentChallenge("p2", accountID, payeeID, amt, fee, nonce),
		"Fee":       PaymentChallenge("p1", accountID, payeeID, amt, MustMoney("0.01", CNY), nonce),
		"Nonce":     PaymentChallenge("p1", accountID, payeeID, amt, fee, []byte("0123456789abcdeF")),
	} {
		t.Run(name, func(t *testing.T) {
			if bytes.Equal(other, base) || VerifySignature(pubOf(certKey), other, sig) {
				t.Errorf("a signature over %q verifies %q", base, other)
			}
		})
	}
	t.Run("Decided", func(t *testing.T) {
		h := baseAccount(t)
		pay := func(amount, payee string) PaymentInitiated {
			cmd := h.payCmd(amount)
			cmd.PayeeID, cmd.Nonce = payee, nonce
			pi := h.must(cmd)[0].(PaymentInitiated)
			want := PaymentChallenge(cmd.PaymentID, accountID, payee, MustMoney(amount, CNY), Zero(CNY), nonce)
			if !bytes.Equal(pi.Challenge, want) {
				t.Fatalf("stored challenge %q, want %q", pi.Challenge, want)
			}
			return pi
		}
		a, b, c := pay("10.00", payeeID), pay("20.00", payeeID), pay("10.00", "acc-3")
		signedA := Proof{FactorID: fCert, Signature: ed25519.Sign(certKey, a.Challenge)}
		for _, other := range []PaymentInitiated{b, c} {
			cmd := h.confirmCmd(other.PaymentID, fPassword)
			cmd.Proofs = append(cmd.Proofs, signedA)
			_, evs := h.refuse(cmd, CodeProofInvalid)
			wantTypes(t, evs, TypeVerificationFailed)
		}
		cmd := h.confirmCmd(a.PaymentID, fPassword)
		cmd.Proofs = append(cmd.Proofs, signedA)
		if c := confirmed(t, h.must(cmd)); c.VerificationLevel != LevelTwoFactorCertificate {
			t.Errorf("level %s", c.VerificationLevel)
		}
	})
}

// TestOldEventShapesDecode: events written before R26's fields decode with
// those fields zero, and an aggregate folded from them behaves as before:
// their factors pay at once, their suspension is the holder's to lift,
// their deposits hold no bank reference.
func TestOldEventShapesDecode(t *testing.T) {
	cheap := cheapHash(testPassword)
	tests := []struct {
		typ     string
		payload string
		want    Event
	}{
		{TypeAccountOpened, `{"account_id":"acc-1","holder_name":"Li Wei","currency":"CNY","kind":"personal","agreed_daily_limit":{"amount":"50000.00","currency":"CNY"}}`,
			AccountOpened{AccountID: accountID, HolderName: holder, Currency: CNY, Kind: KindPersonal, AgreedDailyLimit: MustMoney("50000.00", CNY)}},
		{TypeFactorEnrolled, `{"factor_id":"pw","method":"password","category":"knowledge","password_hash":"` + cheap + `"}`,
			FactorEnrolled{FactorID: fPassword, Method: MethodPassword, Category: CategoryKnowledge, PasswordHash: cheap}},
		{TypeFactorEnrolled, `{"factor_id":"otp","method":"totp","category":"possession","device_id":"token-2","sealed_secret":"` +
			"SkJTV1kzRFBFSFBLM1BYUA==" + `"}`,
			FactorEnrolled{FactorID: fOTP, Method: MethodTOTP, Category: CategoryPossession, DeviceID: deviceToken, SealedSecret: []byte(secretOther)}},
		{TypeFundsDeposited, `{"deposit_id":"d1","debit_account":"clearing-CNY","credit_account":"acc-1","amount":{"amount":"100.00","currency":"CNY"},"reference":"bank transfer"}`,
			FundsDeposited{DepositID: "d1", DebitAccount: "clearing-CNY", CreditAccount: accountID, Amount: MustMoney("100.00", CNY), Reference: "bank transfer"}},
		{TypeBankAccountBound, `{"bank_account_token":"tok","last4":"3445","holder_name":"Li Wei"}`,
			BankAccountBound{BankAccountToken: "tok", Last4: "3445", HolderName: holder}},
		{TypeLimitAdjusted, `{"previous":{"amount":"50000.00","currency":"CNY"},"agreed_daily_limit":{"amount":"60000.00","currency":"CNY"}}`,
			LimitAdjusted{Previous: MustMoney("50000.00", CNY), AgreedDailyLimit: MustMoney("60000.00", CNY)}},
		{TypeServiceSuspended, `{"reason":"travelling"}`, ServiceSuspended{Reason: "travelling"}},
		{TypeFactorRevoked, `{"factor_id":"otp","reason":"lost"}`, FactorRevoked{FactorID: fOTP, Reason: "lost"}},
		{TypeCredentialReset, `{"factor_id":"pw","method":"password","password_hash":"` + cheap + `","device_id":"phone-1","factor_ids":["otp"],"categories":["possession"]}`,
			CredentialReset{FactorID: fPassword, Method: MethodPassword, PasswordHash: cheap,
				Authorised: Authorised{DeviceID: deviceApp, FactorIDs: []string{fOTP}, Categories: []string{CategoryPossession}}}},
		{TypeCredentialLossReported, `{"factor_id":"otp","method":"totp"}`, CredentialLossReported{FactorID: fOTP, Method: MethodTOTP}},
		{TypeAccessUnlocked, `{"reason":"lock expired"}`, AccessUnlocked{Reason: "lock expired"}},
		{TypeServiceReactivated, `{"reason":"back"}`, ServiceReactivated{Reason: "back"}},
		{TypeAccountClosed, `{"reason":"moving"}`, AccountClosed{Reason: "moving"}},
	}
	var log []Event
	for i, tc := range tests {
		got, err := DecodeEvent(tc.typ, 1, []byte(tc.payload))
		if err != nil {
			t.Fatalf("%d %s: %v", i, tc.typ, err)
		}
		if !sameValue(reflect.ValueOf(got), reflect.ValueOf(tc.want)) {
			t.Errorf("%d %s: decoded\n %#v\nwant\n %#v", i, tc.typ, got, tc.want)
		}
		// Written again, an old event keeps its shape: no new member.
		if _, _, again, err := EncodeEvent(got); err != nil || !bytes.Equal(again, []byte(tc.payload)) {
			t.Errorf("%d %s: re-encoded %s, %v\nwant %s", i, tc.typ, again, err, tc.payload)
		}
		log = append(log, got)
	}
	// An account folded from the old log up to its suspension.
	h := newHarness(t)
	for _, e := range log[:7] {
		h.apply(e)
	}
	if f, ok := h.a.Factor(fOTP); !ok || !f.UsableFrom.IsZero() || !f.Active {
		t.Fatalf("old factor %+v", f)
	}
	h.must(Reactivate{})
	h.now = h.now.Add(time.Minute)
	// The old TOTP counts as a second factor from a registered device that
	// signs the confirmation (R6), like a new one.
	h.registerDevice(deviceApp)
	evs, err := h.signedPay("10.00", fPassword, fOTP)
	if err != nil {
		t.Fatal(err)
	}
	if c := confirmed(t, evs); c.VerificationLevel != LevelTwoFactor {
		t.Errorf("level %s", c.VerificationLevel)
	}
	h.must(Deposit{DepositID: "d2", Amount: "1.00", Reference: "bank transfer", Staff: fundingDesk})
}

// TestLossReportDoesNotLowerTheStepUp: a thief with one credential reports
// the holder's other factor lost; enrolling a replacement still needs two
// categories, which the thief does not have (the review's attack).
func TestLossReportDoesNotLowerTheStepUp(t *testing.T) {
	h := newHarness(t).open() // fBio
	h.must(EnrollFactor{FactorID: fCert, Method: MethodCertificate, PublicKey: pubOf(certKey), Staff: operator})
	h.must(ReportCredentialLoss{FactorID: fCert})
	before := h.a.Version
	e, evs := h.refuse(EnrollFactor{FactorID: "thief", Method: MethodCertificate, PublicKey: pubOf(strangerKey),
		Auth: h.auth(ChangeKindEnrolment, MethodCertificate, deviceApp, fBio)}, CodeInsufficientVerification)
	if len(evs) != 0 || h.a.Version != before {
		t.Errorf("recorded %v", types(evs))
	}
	wantDetails(t, e, map[string]any{"required_categories": 2, "verified_categories": 0})
	// Nor can the lost factor be reset with the one left.
	h.refuse(certReset(h.auth(ChangeKindCredentialReset, fCert, deviceApp, fBio)), CodeInsufficientVerification)
	// An operator, after checking the holder's identity, can.
	h.must(EnrollFactor{FactorID: "new-cert", Method: MethodCertificate, PublicKey: pubOf(strangerKey), Staff: operator})
}

// TestOperatorSuspensionOverridesTheHolders: an operator's risk suspension
// of an account the holder already suspended replaces the holder's, so the
// holder can neither lift it nor close the account meanwhile.
func TestOperatorSuspensionOverridesTheHolders(t *testing.T) {
	h := newHarness(t).open()
	h.must(Suspend{Reason: "holiday"})
	wantTypes(t, h.must(Suspend{Reason: "AML alert", Staff: operator}), TypeServiceSuspended)
	h.refuse(Suspend{Reason: "again", Staff: operator}, CodeAccountSuspended)
	h.refuse(Reactivate{Reason: "back"}, CodeForbidden)
	h.refuse(CloseAccount{}, CodeForbidden)
	h.must(Reactivate{Reason: "cleared", Staff: operator})
	h.must(CloseAccount{})
}
