package domain

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

func TestOpenAccount(t *testing.T) {
	// Every opening carries its first factor (an account never exists
	// without one); the table's commands get it below.
	tests := []struct {
		name     string
		cmd      OpenAccount
		code     string
		field    string
		wantKind string
		wantName string
	}{
		{"Valid", OpenAccount{AccountID: accountID, HolderName: holder, Currency: "CNY", Kind: KindPersonal}, "", "", KindPersonal, holder},
		{"Merchant", OpenAccount{AccountID: accountID, HolderName: "Shop Ltd", Currency: "CNY", Kind: KindMerchant}, "", "", KindMerchant, "Shop Ltd"},
		{"KindDefaultsToPersonal", OpenAccount{AccountID: accountID, HolderName: holder, Currency: "CNY"}, "", "", KindPersonal, holder},
		{"NameTrimmed", OpenAccount{AccountID: accountID, HolderName: "  李伟 ", Currency: "CNY"}, "", "", KindPersonal, "李伟"},
		{"Name200Runes", OpenAccount{AccountID: accountID, HolderName: strings.Repeat("伟", 200), Currency: "CNY"}, "", "", KindPersonal, strings.Repeat("伟", 200)},
		{"InvalidKind", OpenAccount{AccountID: accountID, HolderName: holder, Currency: "CNY", Kind: "corporate"}, CodeInvalid, "kind", "", ""},
		{"KindCase", OpenAccount{AccountID: accountID, HolderName: holder, Currency: "CNY", Kind: "Personal"}, CodeInvalid, "kind", "", ""},
		{"EmptyName", OpenAccount{AccountID: accountID, HolderName: "", Currency: "CNY"}, CodeInvalid, "holder_name", "", ""},
		{"BlankName", OpenAccount{AccountID: accountID, HolderName: " \t ", Currency: "CNY"}, CodeInvalid, "holder_name", "", ""},
		{"Name201Runes", OpenAccount{AccountID: accountID, HolderName: strings.Repeat("伟", 201), Currency: "CNY"}, CodeInvalid, "holder_name", "", ""},
		{"USDNotOffered", OpenAccount{AccountID: accountID, HolderName: holder, Currency: "USD"}, CodeInvalid, "currency", "", ""},
		{"JPYNotOffered", OpenAccount{AccountID: accountID, HolderName: holder, Currency: "JPY"}, CodeInvalid, "currency", "", ""},
		{"UnknownCurrency", OpenAccount{AccountID: accountID, HolderName: holder, Currency: "XYZ"}, CodeInvalid, "currency", "", ""},
		{"EmptyCurrency", OpenAccount{AccountID: accountID, HolderName: holder, Currency: ""}, CodeInvalid, "currency", "", ""},
		{"LowercaseCurrency", OpenAccount{AccountID: accountID, HolderName: holder, Currency: "cny"}, CodeInvalid, "currency", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			tc.cmd.Factor = firstFactor
			if tc.code != "" {
				e, evs := h.refuse(tc.cmd, tc.code)
				if e.Details["field"] != tc.field {
					t.Errorf("field = %v, want %q", e.Details["field"], tc.field)
				}
				if len(evs) != 0 || h.a.Exists() {
					t.Errorf("refused open recorded %v", types(evs))
				}
				return
			}
			evs := h.must(tc.cmd)
			wantTypes(t, evs, TypeAccountOpened, TypeFactorEnrolled)
			ev := evs[0].(AccountOpened)
			want := AccountOpened{AccountID: accountID, HolderName: tc.wantName, Currency: CNY, Kind: tc.wantKind, AgreedDailyLimit: MustMoney("50000.00", CNY)}
			if !sameValue(reflect.ValueOf(ev), reflect.ValueOf(want)) {
				t.Errorf("event %#v, want %#v", ev, want)
			}
			a := h.a
			if !a.Exists() || a.ID != accountID || a.Status != StatusActive || a.Kind != tc.wantKind || a.HolderName != tc.wantName ||
				a.Currency != CNY || a.AgreedLimit.String() != "50000.00" || a.Version != 2 {
				t.Errorf("state after open: %+v", a)
			}
			if f, ok := a.Factor(fBio); !ok || !f.Active || f.Category != CategoryInherence {
				t.Errorf("first factor %+v, %v", f, ok)
			}
		})
	}
}

// TestOpenAccountFirstFactor: the first factor is enrolled with the
// account; it cools off unless an operator who checked the holder's
// identity opened the account; an operator who names no identity check
// opens nothing, and neither does an invalid first factor.
func TestOpenAccountFirstFactor(t *testing.T) {
	open := func(f EnrollFactor, staff Staff) OpenAccount {
		return OpenAccount{AccountID: accountID, HolderName: holder, Currency: "CNY", Factor: f, Staff: staff}
	}
	tests := []struct {
		name       string
		cmd        OpenAccount
		code       string
		field      string
		usableFrom time.Time
	}{
		{"ByHolderCoolsOff", open(firstFactor, Staff{}), "", "", t0.Add(24 * time.Hour)},
		{"ByOperatorUsableAtOnce", open(firstFactor, operator), "", "", time.Time{}},
		{"IdentityCheckWithoutStaffKey", open(firstFactor, Staff{IdentityCheck: "selfie"}), CodeInvalid, "identity_check", time.Time{}},
		{"IdentityCheckTooLong", open(firstFactor, Staff{StaffKey: operator.StaffKey, IdentityCheck: strings.Repeat("x", 101)}), CodeInvalid, "identity_check", time.Time{}},
		{"OperatorWithoutIdentityCheck", open(firstFactor, uncheckedOp), CodeInvalid, "identity_check", time.Time{}},
		{"NoFactor", open(EnrollFactor{}, operator), CodeInvalid, "method", time.Time{}},
		{"FactorUnknownMethod", open(EnrollFactor{FactorID: "f", Method: "sms"}, Staff{}), CodeInvalid, "method", time.Time{}},
		{"FactorWithoutDevice", open(EnrollFactor{FactorID: "f", Method: MethodBiometric}, Staff{}), CodeInvalid, "device_id", time.Time{}},
		{"FactorShortPassword", open(EnrollFactor{FactorID: "f", Method: MethodPassword, Password: "short", Salt: make([]byte, SaltLength)}, Staff{}),
			CodeInvalid, "password", time.Time{}},
		{"FactorDevice101", open(EnrollFactor{FactorID: "f", Method: MethodBiometric, DeviceID: strings.Repeat("d", 101)}, Staff{}),
			CodeInvalid, "device_id", time.Time{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			if tc.code != "" {
				e, evs := h.refuse(tc.cmd, tc.code)
				if e.Details["field"] != tc.field || len(evs) != 0 || h.a.Exists() {
					t.Errorf("details %v, events %v, exists %v", e.Details, types(evs), h.a.Exists())
				}
				return
			}
			evs := h.must(tc.cmd)
			wantTypes(t, evs, TypeAccountOpened, TypeFactorEnrolled)
			opened, fe := evs[0].(AccountOpened), evs[1].(FactorEnrolled)
			if opened.Staff != tc.cmd.Staff || fe.Staff != tc.cmd.Staff {
				t.Errorf("staff recorded %+v and %+v, want %+v", opened.Staff, fe.Staff, tc.cmd.Staff)
			}
			if fe.FactorID != tc.cmd.Factor.FactorID || fe.Category != CategoryInherence || !fe.UsableFrom.Equal(tc.usableFrom) ||
				len(fe.Authorised.FactorIDs) != 0 {
				t.Errorf("first factor %+v, want usable from %v", fe, tc.usableFrom)
			}
			for _, a := range []*Account{h.a, h.replay()} {
				if f, ok := a.Factor(fe.FactorID); !ok || !f.Active || !f.UsableFrom.Equal(tc.usableFrom) {
					t.Errorf("factor %+v, %v", f, ok)
				}
			}
		})
	}
	t.Run("PasswordWithRealHash", func(t *testing.T) {
		h := newHarness(t)
		salt := bytes.Repeat([]byte{7}, SaltLength)
		evs := h.must(OpenAccount{AccountID: accountID, HolderName: holder, Currency: "CNY",
			Factor: EnrollFactor{FactorID: fPassword, Method: MethodPassword, Password: "correct horse battery staple", Salt: salt}})
		fe := evs[1].(FactorEnrolled)
		if fe.Category != CategoryKnowledge || !strings.HasPrefix(fe.PasswordHash, "$argon2id$") || !fe.UsableFrom.Equal(t0.Add(h.p.CoolingOff)) {
			t.Errorf("event %+v", fe)
		}
		if ok, err := VerifyPassword(fe.PasswordHash, "correct horse battery staple"); err != nil || !ok {
			t.Errorf("enrolled hash does not verify: %v %v", ok, err)
		}
	})
	t.Run("CustomCoolingOff", func(t *testing.T) {
		h := newHarness(t)
		h.p.CoolingOff = time.Hour
		evs := h.must(open(firstFactor, Staff{}))
		if fe := evs[1].(FactorEnrolled); !fe.UsableFrom.Equal(t0.Add(time.Hour)) {
			t.Errorf("usable from %v", fe.UsableFrom)
		}
	})
}

func TestOpenTwiceConflicts(t *testing.T) {
	h := newHarness(t).open()
	_, evs := h.refuse(OpenAccount{AccountID: accountID, HolderName: "Other", Currency: "CNY", Factor: firstFactor}, CodeConflict)
	if len(evs) != 0 || h.a.HolderName != holder {
		t.Error("second open changed the account")
	}
}

func TestCommandsOnMissingAccount(t *testing.T) {
	h := newHarness(t)
	for _, cmd := range []Command{
		Login{DeviceID: deviceApp, Proofs: []Proof{{FactorID: fPassword, Password: testPassword}}},
		EnrollFactor{FactorID: "f", Method: MethodBiometric, DeviceID: deviceApp},
		Deposit{DepositID: "d", Amount: "1.00", Reference: "r", Staff: fundingDesk},
		Suspend{}, CloseAccount{}, Unlock{Staff: operator}, Logout{SessionID: "s"},
	} {
		t.Run(fmt.Sprintf("%T", cmd), func(t *testing.T) {
			if _, evs := h.refuse(cmd, CodeNotFound); len(evs) != 0 {
				t.Errorf("recorded %v", types(evs))
			}
		})
	}
}

func TestEnrollFactorWithRealHash(t *testing.T) {
	// The holder enrols it, authorised by the account's only factor (a
	// biometric: one category).
	h := newHarness(t).open()
	salt := bytes.Repeat([]byte{7}, SaltLength)
	evs := h.must(EnrollFactor{FactorID: "pw", Method: MethodPassword, Password: "correct horse battery staple", Salt: salt,
		Auth: h.auth(ChangeKindEnrolment, MethodPassword, deviceApp, fBio)})
	wantTypes(t, evs, TypeFactorEnrolled, TypeHolderNotified)
	ev := evs[0].(FactorEnrolled)
	if ev.Category != CategoryKnowledge || ev.Method != MethodPassword || !strings.HasPrefix(ev.PasswordHash, "$argon2id$") {
		t.Errorf("event %+v", ev)
	}
	// R8: the password never appears in what is stored.
	_, _, payload, err := EncodeEvent(ev)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(payload, []byte("correct horse")) {
		t.Errorf("stored payload contains the password: %s", payload)
	}
	if ok, err := VerifyPassword(ev.PasswordHash, "correct horse battery staple"); err != nil || !ok {
		t.Errorf("enrolled hash does not verify: %v %v", ok, err)
	}
	t.Run("BadSalt", func(t *testing.T) {
		h.refuse(EnrollFactor{FactorID: "pw2", Method: MethodPassword, Password: "long enough pass", Salt: []byte("short"), Staff: operator}, CodeInternal)
	})
}

func TestEnrollFactor(t *testing.T) {
	key := pubOf(certKey)
	tests := []struct {
		name     string
		cmd      EnrollFactor
		code     string
		field    string
		category string
	}{
		{"TOTP", EnrollFactor{FactorID: "f", Method: MethodTOTP, DeviceID: deviceToken, SealedSecret: []byte(secretOther)}, "", "", CategoryPossession},
		{"Certificate", EnrollFactor{FactorID: "f", Method: MethodCertificate, PublicKey: key}, "", "", CategoryPossession},
		{"ESignature", EnrollFactor{FactorID: "f", Method: MethodESignature, PublicKey: key}, "", "", CategoryPossession},
		{"Biometric", EnrollFactor{FactorID: "f", Method: MethodBiometric, DeviceID: deviceApp}, "", "", CategoryInherence},
		{"UnknownMethod", EnrollFactor{FactorID: "f", Method: "sms", DeviceID: deviceApp}, CodeInvalid, "method", ""},
		{"EmptyMethod", EnrollFactor{FactorID: "f"}, CodeInvalid, "method", ""},
		{"PasswordTooShort", EnrollFactor{FactorID: "f", Method: MethodPassword, Password: "1234567", Salt: make([]byte, SaltLength)}, CodeInvalid, "password", ""},
		{"PasswordShortInRunes", EnrollFactor{FactorID: "f", Method: MethodPassword, Password: "密码密码密码密", Salt: make([]byte, SaltLength)}, CodeInvalid, "password", ""},
		{"PasswordTooLong", EnrollFactor{FactorID: "f", Method: MethodPassword, Password: strings.Repeat("a", 1025), Salt: make([]byte, SaltLength)}, CodeInvalid, "password", ""},
		{"TOTPNeedsDevice", EnrollFactor{FactorID: "f", Method: MethodTOTP, SealedSecret: []byte(secretOther)}, CodeInvalid, "device_id", ""},
		{"TOTPNeedsSeed", EnrollFactor{FactorID: "f", Method: MethodTOTP, DeviceID: deviceToken}, CodeInternal, "", ""},
		{"CertificateNoKey", EnrollFactor{FactorID: "f", Method: MethodCertificate}, CodeInvalid, "public_key", ""},
		{"CertificateKey31", EnrollFactor{FactorID: "f", Method: MethodCertificate, PublicKey: key[:31]}, CodeInvalid, "public_key", ""},
		{"CertificateKey33", EnrollFactor{FactorID: "f", Method: MethodCertificate, PublicKey: append(append([]byte(nil), key...), 1)}, CodeInvalid, "public_key", ""},
		{"ESignatureKey64", EnrollFactor{FactorID: "f", Method: MethodESignature, PublicKey: certKey}, CodeInvalid, "public_key", ""},
		{"BiometricNeedsDevice", EnrollFactor{FactorID: "f", Method: MethodBiometric}, CodeInvalid, "device_id", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Enrolled by an operator after an identity check: the input
			// is validated before any authorisation.
			h := newHarness(t).open()
			tc.cmd.Staff = operator
			if tc.code != "" {
				e, evs := h.refuse(tc.cmd, tc.code)
				if tc.field != "" && e.Details["field"] != tc.field {
					t.Errorf("field = %v, want %q", e.Details["field"], tc.field)
				}
				if len(evs) != 0 || len(h.a.Factors()) != 1 {
					t.Errorf("refused enrolment recorded %v", types(evs))
				}
				return
			}
			evs := h.must(tc.cmd)
			wantTypes(t, evs, TypeFactorEnrolled, TypeHolderNotified)
			ev := evs[0].(FactorEnrolled)
			if ev.FactorID != "f" || ev.Method != tc.cmd.Method || ev.Category != tc.category || ev.DeviceID != tc.cmd.DeviceID ||
				!bytes.Equal(ev.PublicKey, tc.cmd.PublicKey) || !bytes.Equal(ev.SealedSecret, tc.cmd.SealedSecret) || ev.PasswordHash != "" {
				t.Errorf("event %+v", ev)
			}
			f, ok := h.a.Factor("f")
			if len(h.a.Factors()) != 2 || !ok || !f.Active || f.Category != tc.category {
				t.Errorf("factors after enrolment: %+v", h.a.Factors())
			}
		})
	}
}

func TestEnrollDuplicateAndMaximum(t *testing.T) {
	h := newHarness(t).open() // fBio
	h.must(EnrollFactor{FactorID: fCert, Method: MethodCertificate, PublicKey: pubOf(certKey), Staff: operator})
	enrol := func(id string) EnrollFactor {
		return EnrollFactor{FactorID: id, Method: MethodBiometric, DeviceID: deviceApp, Staff: operator}
	}
	// Revocations are authorised by a biometric attestation and the
	// certificate: two categories.
	revoke := func(id string) RevokeFactor {
		return RevokeFactor{FactorID: id, Reason: "lost phone", Auth: h.auth(ChangeKindRevocation, id, deviceApp, fBio, fCert)}
	}
	h.must(enrol("f0"))
	t.Run("DuplicateID", func(t *testing.T) {
		h.refuse(EnrollFactor{FactorID: "f0", Method: MethodCertificate, PublicKey: pubOf(certKey), Staff: operator}, CodeConflict)
		h.refuse(EnrollFactor{FactorID: fBio, Method: MethodBiometric, DeviceID: deviceApp, Staff: operator}, CodeConflict)
	})
	t.Run("DuplicateOfRevoked", func(t *testing.T) {
		h.must(enrol("gone"))
		h.must(revoke("gone"))
		h.refuse(enrol("gone"), CodeConflict)
	})
	t.Run("AtMost20Active", func(t *testing.T) {
		for i := 1; h.a.activeFactors() < 20; i++ {
			h.must(enrol(fmt.Sprintf("f%d", i)))
		}
		if n := len(h.a.Factors()); n != 21 { // 20 active and "gone"
			t.Fatalf("%d factors enrolled, want 21", n)
		}
		_, evs := h.refuse(enrol("f21"), CodeConflict)
		if len(evs) != 0 || len(h.a.Factors()) != 21 {
			t.Error("21st active factor was recorded")
		}
		// The holder's own enrolment is refused before any proof is checked.
		_, evs = h.refuse(EnrollFactor{FactorID: "f21", Method: MethodBiometric, DeviceID: deviceApp,
			Auth: h.auth(ChangeKindEnrolment, MethodBiometric, deviceApp, fBio)}, CodeConflict)
		if len(evs) != 0 {
			t.Errorf("recorded %v", types(evs))
		}
	})
	t.Run("RetiredFactorsDoNotCount", func(t *testing.T) {
		// R26: a revoked or lost factor frees its place.
		h.must(revoke("f1"))
		h.must(enrol("f21"))
		h.refuse(enrol("f22"), CodeConflict)
		h.must(ReportCredentialLoss{FactorID: "f2"})
		h.must(enrol("f22"))
		h.refuse(enrol("f23"), CodeConflict)
		if n, all := h.a.activeFactors(), len(h.a.Factors()); n != 20 || all != 23 {
			t.Errorf("%d active of %d factors, want 20 of 23", n, all)
		}
		if n := h.replay().activeFactors(); n != 20 {
			t.Errorf("replayed: %d active factors", n)
		}
	})
}

func TestRevokeReportResetFactor(t *testing.T) {
	h := baseAccount(t)
	t.Run("RevokeUnknown", func(t *testing.T) {
		e, _ := h.refuse(RevokeFactor{FactorID: "nope"}, CodeNotFound)
		if e.Details["field"] != "factor_id" {
			t.Errorf("details %v", e.Details)
		}
	})
	t.Run("RevokedCannotProve", func(t *testing.T) {
		h.mustAuthorised(RevokeFactor{FactorID: fCert, Reason: "expired"})
		h.refuse(h.authorised(RevokeFactor{FactorID: fCert}), CodeConflict)
		h.refuse(ReportCredentialLoss{FactorID: fCert}, CodeConflict)
		pi := h.initiate("10.00")
		_, evs := h.refuse(h.confirmCmd(pi.PaymentID, fPassword, fCert), CodeProofInvalid)
		wantTypes(t, evs, TypeVerificationFailed)
	})
	t.Run("LossReportedCannotProve", func(t *testing.T) {
		evs := h.must(ReportCredentialLoss{FactorID: fESig})
		if ev := evs[0].(CredentialLossReported); ev.Method != MethodESignature {
			t.Errorf("event %+v", ev)
		}
		pi := h.initiate("10.00")
		h.refuse(h.confirmCmd(pi.PaymentID, fPassword, fESig), CodeProofInvalid)
	})
	t.Run("ResetReactivates", func(t *testing.T) {
		h.mustProven(ResetCredential{FactorID: fESig, PublicKey: pubOf(strangerKey), Auth: h.auth(ChangeKindCredentialReset, fESig, deviceApp, fPassword, fOTP)})
		// The reset credential cools off before it moves money.
		h.now = h.now.Add(h.p.CoolingOff)
		pi := h.initiate("10.00")
		cmd := h.confirmCmd(pi.PaymentID, fPassword)
		cmd.Proofs = append(cmd.Proofs, Proof{FactorID: fESig, Signature: ed25519.Sign(strangerKey, pi.Challenge)})
		evs, err := h.decide(cmd)
		if err != nil {
			t.Fatal(err)
		}
		if c := confirmed(t, evs); c.VerificationLevel != LevelTwoFactorCertificate {
			t.Errorf("level %s", c.VerificationLevel)
		}
	})
	t.Run("ResetErrors", func(t *testing.T) {
		h.refuse(ResetCredential{FactorID: "nope", PublicKey: pubOf(certKey)}, CodeNotFound)
		h.refuse(ResetCredential{FactorID: fBio}, CodeInvalid)
		h.refuse(ResetCredential{FactorID: fESig, PublicKey: []byte{1, 2}}, CodeInvalid)
		// Revocation is final: unlike a loss report, no reset revives it.
		h.refuse(ResetCredential{FactorID: fCert, PublicKey: pubOf(certKey)}, CodeConflict)
		h.refuse(ResetCredential{FactorID: fPassword, Password: "short", Salt: make([]byte, SaltLength)}, CodeInvalid)
		h.refuse(ResetCredential{FactorID: fOTP}, CodeInternal)
	})
}

func TestSuspendReactivateClose(t *testing.T) {
	h := baseAccount(t)
	h.bind("6222020200112233445", holder, "tok")
	pending := h.initiate("10.00")

	evs := h.must(Suspend{Reason: "travelling"})
	wantTypes(t, evs, TypeServiceSuspended)
	if h.a.Status != StatusSuspended {
		t.Fatalf("status %s", h.a.Status)
	}
	refusedWhileSuspended := map[string]Command{
		"Initiate": h.payCmd("10.00"),
		"Confirm":  h.confirmCmd(pending.PaymentID, fPassword),
		"Withdraw": Withdraw{WithdrawalID: "w1", Amount: "10.00", DeviceID: deviceApp, Proofs: h.proofs(nil, fPassword)},
		"Deposit":  Deposit{DepositID: "dx", Amount: "10.00", Reference: "bank transfer x", Staff: fundingDesk},
		"Suspend":  Suspend{Reason: "again"},
	}
	for name, cmd := range refusedWhileSuspended {
		t.Run("Suspended/"+name, func(t *testing.T) {
			if _, evs := h.refuse(cmd, CodeAccountSuspended); len(evs) != 0 {
				t.Errorf("recorded %v", types(evs))
			}
		})
	}
	t.Run("Suspended/LoginAllowed", func(t *testing.T) {
		evs := h.must(Login{SessionID: "s1", DeviceID: deviceApp, Proofs: h.proofs(nil, fPassword)})
		wantTypes(t, evs, TypeLoginSucceeded)
	})
	t.Run("Reactivate", func(t *testing.T) {
		h.must(Reactivate{Reason: "back home"})
		if h.a.Status != StatusActive {
			t.Fatalf("status %s", h.a.Status)
		}
		h.refuse(Reactivate{}, CodeConflict)
		if _, err := h.confirm(pending.PaymentID, fPassword); err != nil {
			t.Errorf("confirm after reactivation: %v", err)
		}
	})
	t.Run("CloseNeedsZeroBalance", func(t *testing.T) {
		e, evs := h.refuse(CloseAccount{Reason: "moving"}, CodeConflict)
		if len(evs) != 0 || e.Details["available"] != "99990.00" {
			t.Errorf("details %v, events %v", e.Details, types(evs))
		}
		// A projection that has counted an incoming payment keeps the
		// account open too.
		e, _ = h.refuse(CloseAccount{Balance: Balance{Projected: dec("0.01"), Checkpoint: h.pos}}, CodeConflict)
		if e.Details["available"] != "0.01" {
			t.Errorf("details %v", e.Details)
		}
	})
	t.Run("CloseWhenEmpty", func(t *testing.T) {
		h.must(Withdraw{WithdrawalID: "w-all", Amount: "99990.00", DeviceID: deviceApp, Proofs: h.proofs(nil, fPassword)})
		if h.available() != "0.00" {
			t.Fatalf("available %s", h.available())
		}
		if _, ok := h.a.Session("s1"); !ok {
			t.Fatal("session s1 not open before the close")
		}
		wantTypes(t, h.must(CloseAccount{Reason: "moving"}), TypeAccountClosed)
		if h.a.Status != StatusClosed {
			t.Fatalf("status %s", h.a.Status)
		}
		// Closing ends every session.
		if _, ok := h.a.Session("s1"); ok {
			t.Error("session s1 outlived the close")
		}
	})
	refusedWhenClosed := []Command{
		Login{SessionID: "s2", DeviceID: deviceApp, Proofs: h.proofs(nil, fPassword)},
		h.payCmd("1.00"),
		Withdraw{WithdrawalID: "w2", Amount: "1.00", DeviceID: deviceApp, Proofs: h.proofs(nil, fPassword)},
		Deposit{DepositID: "d-late", Amount: "1.00", Reference: "late transfer", Staff: fundingDesk},
		EnrollFactor{FactorID: "late", Method: MethodBiometric, DeviceID: deviceApp},
		EnrollFactor{FactorID: "late", Method: MethodBiometric, DeviceID: deviceApp, Staff: operator},
		RevokeFactor{FactorID: fPassword},
		ReportCredentialLoss{FactorID: fPassword},
		ResetCredential{FactorID: fCert, PublicKey: pubOf(certKey)},
		AdjustLimit{Limit: "100.00"},
		ChangeIdentity{HolderName: "New Name"},
		ChangePhone{Phone: "+8613800138000"},
		BindBankAccount{Number: "6222020200112233445", HolderName: holder},
		Suspend{}, Reactivate{}, CloseAccount{},
		Suspend{Staff: operator}, Reactivate{Staff: operator}, CloseAccount{Staff: operator},
		Unlock{Staff: operator}, Logout{SessionID: "s1"},
	}
	for i, cmd := range refusedWhenClosed {
		t.Run(fmt.Sprintf("Closed/%d-%T", i, cmd), func(t *testing.T) {
			if _, evs := h.refuse(cmd, CodeAccountClosed); len(evs) != 0 {
				t.Errorf("recorded %v", types(evs))
			}
		})
	}
	t.Run("Closed/OpenAgain", func(t *testing.T) {
		h.refuse(OpenAccount{AccountID: accountID, HolderName: holder, Currency: "CNY", Factor: firstFactor}, CodeConflict)
	})
}

func TestSuspendThenClose(t *testing.T) {
	h := newHarness(t).open()
	h.must(Suspend{})
	h.must(CloseAccount{Reason: "customer request"})
	if h.a.Status != StatusClosed {
		t.Errorf("status %s", h.a.Status)
	}
}

func TestBindBankAccount(t *testing.T) {
	tests := []struct {
		name   string
		number string
		holder string
		code   string
		field  string
		last4  string
	}{
		{"Valid", "6222020200112233445", holder, "", "", "3445"},
		{"EightDigits", "12345678", holder, "", "", "5678"},
		{"ThirtyFourDigits", strings.Repeat("1", 30) + "9876", holder, "", "", "9876"},
		{"NameCaseAndSpaceInsensitive", "6222020200112233445", "  li wei ", "", "", "3445"},
		{"SevenDigits", "1234567", holder, CodeInvalid, "bank_account_number", ""},
		{"ThirtyFiveDigits", strings.Repeat("1", 35), holder, CodeInvalid, "bank_account_number", ""},
		{"Letters", "6222ABCD00112233", holder, CodeInvalid, "bank_account_number", ""},
		{"Spaces", "6222 0202 0011 2233", holder, CodeInvalid, "bank_account_number", ""},
		{"IBAN", "DE89370400440532013000", holder, CodeInvalid, "bank_account_number", ""},
		{"Empty", "", holder, CodeInvalid, "bank_account_number", ""},
		{"OtherHolder", "6222020200112233445", "Zhang San", CodeInvalid, "holder_name", ""},
		{"EmptyHolder", "6222020200112233445", "", CodeInvalid, "holder_name", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t).open()
			h.must(EnrollFactor{FactorID: fCert, Method: MethodCertificate, PublicKey: pubOf(certKey), Staff: operator})
			cmd := BindBankAccount{Number: tc.number, HolderName: tc.holder, Token: "tok-" + tc.name,
				Auth: h.auth(ChangeKindBankAccount, tc.number, deviceApp, fBio, fCert)}
			if tc.code != "" {
				e, evs := h.refuse(cmd, tc.code)
				if e.Details["field"] != tc.field || len(evs) != 0 {
					t.Errorf("details %v events %v", e.Details, types(evs))
				}
				if _, ok := h.a.BankAccount(); ok {
					t.Error("bank account bound after refusal")
				}
				return
			}
			evs := h.must(cmd)
			wantTypes(t, evs, TypeBankAccountBound, TypeHolderNotified)
			ev := evs[0].(BankAccountBound)
			if ev.Last4 != tc.last4 || ev.BankAccountToken != cmd.Token || !reflect.DeepEqual(ev.Authorised.FactorIDs, []string{fBio, fCert}) {
				t.Errorf("event %+v", ev)
			}
			// R19: only the token and the last four digits are kept.
			for _, e := range evs {
				if _, _, payload, _ := EncodeEvent(e); bytes.Contains(payload, []byte(tc.number)) {
					t.Errorf("full account number stored: %s", payload)
				}
			}
			b, ok := h.a.BankAccount()
			if !ok || b.Last4 != tc.last4 {
				t.Errorf("BankAccount() = %+v, %v", b, ok)
			}
		})
	}
}

func TestWithdraw(t *testing.T) {
	withdraw := func(h *harness, id, amount string, factors ...string) Withdraw {
		return Withdraw{WithdrawalID: id, Amount: amount, Currency: "CNY", DeviceID: deviceApp, Proofs: h.proofs(nil, factors...)}
	}
	t.Run("NeedsBoundBankAccount", func(t *testing.T) {
		h := baseAccount(t)
		e, evs := h.refuse(withdraw(h, "w1", "10.00", fPassword), CodeConflict)
		if e.Details["field"] != "bank_account" || len(evs) != 0 {
			t.Errorf("details %v events %v", e.Details, types(evs))
		}
	})
	h := baseAccount(t)
	h.bind("6222020200112233445", holder, "tok")
	t.Run("Succeeds", func(t *testing.T) {
		h.now = h.now.Add(time.Minute)
		// From deviceApp, which signs the withdrawal: the TOTP on
		// deviceToken is a second category (R6).
		evs := h.mustProven(withdraw(h, "w1", "300.00", fPassword, fOTP))
		wantTypes(t, evs, TypeFundsWithdrawn)
		w := evs[0].(FundsWithdrawn)
		want := FundsWithdrawn{WithdrawalID: "w1", DebitAccount: accountID, CreditAccount: "clearing-CNY", Amount: MustMoney("300.00", CNY),
			BankAccountLast4: "3445", VerificationLevel: LevelTwoFactor, Categories: []string{CategoryKnowledge, CategoryPossession},
			FactorIDs: []string{fOTP, fPassword}, DeviceID: deviceApp, OTPUses: []OTPUse{{FactorID: fOTP, Step: TOTPStepAt(h.now)}}}
		if !sameValue(reflect.ValueOf(w), reflect.ValueOf(want)) {
			t.Errorf("event\n got %+v\nwant %+v", w, want)
		}
		if h.available() != "99700.00" {
			t.Errorf("available %s", h.available())
		}
		m, ok := MovementOf(w)
		if !ok || m.Debit != accountID || m.Credit != "clearing-CNY" {
			t.Errorf("movement %+v", m)
		}
	})
	t.Run("InsufficientFunds", func(t *testing.T) {
		// Refused after the proofs verified: recorded (R1), no money moves.
		e, evs := h.refuse(withdraw(h, "w2", "99700.01", fPassword), CodeInsufficientFunds)
		if e.Details["available"] != "99700.00" {
			t.Errorf("details %v", e.Details)
		}
		wantTypes(t, evs, TypeWithdrawalRejected)
		if h.available() != "99700.00" {
			t.Errorf("available %s", h.available())
		}
	})
	t.Run("Validation", func(t *testing.T) {
		h.refuse(withdraw(h, "w3", "0", fPassword), CodeInvalid)
		h.refuse(withdraw(h, "w3", "1.001", fPassword), CodeInvalid)
		cmd := withdraw(h, "w3", "1.00", fPassword)
		cmd.Currency = "USD"
		h.refuse(cmd, CodeInvalid)
		cmd = withdraw(h, "w3", "1.00", fPassword)
		cmd.DeviceID = ""
		h.refuse(cmd, CodeInvalid)
		h.refuse(Withdraw{WithdrawalID: "w3", Amount: "1.00", DeviceID: deviceApp}, CodeInvalid)
		// Signatures need a challenge; withdrawals have none.
		h.refuse(Withdraw{WithdrawalID: "w3", Amount: "1.00", DeviceID: deviceApp,
			Proofs: []Proof{{FactorID: fCert, Signature: make([]byte, 64)}}}, CodeInvalid)
	})
	t.Run("SameDeviceOTPAlone", func(t *testing.T) {
		// The code verified but does not count (R6): the refusal is
		// recorded and the code spent (R7).
		h.now = h.now.Add(time.Minute)
		_, evs := h.refuse(withdraw(h, "w4", "1.00", fOTPApp), CodeFactorNotIndependent)
		wantTypes(t, evs, TypeWithdrawalRejected)
		if r := evs[0].(WithdrawalRejected); len(r.OTPUses) != 1 || r.OTPUses[0].FactorID != fOTPApp {
			t.Errorf("rejection %+v", r)
		}
	})
	t.Run("WrongProofCounts", func(t *testing.T) {
		before := h.a.FailedAttempts()
		cmd := withdraw(h, "w5", "1.00", fPassword)
		cmd.Proofs[0].Password = "wrong password"
		e, evs := h.refuse(cmd, CodeProofInvalid)
		wantTypes(t, evs, TypeVerificationFailed)
		if v := evs[0].(VerificationFailed); v.Purpose != "withdrawal" || v.Reference != "w5" || v.FailedAttempts != before+1 {
			t.Errorf("event %+v", v)
		}
		if e.Details["attempts_remaining"] != 5-(before+1) {
			t.Errorf("details %v", e.Details)
		}
	})
	t.Run("IdentityChangeKeepsBinding", func(t *testing.T) {
		// A new identity does not silently rebind; the stored binding keeps
		// the holder name it was checked against.
		h.mustAuthorised(ChangeIdentity{HolderName: "Li Wei Jr."})
		b, _ := h.a.BankAccount()
		if b.HolderName != holder {
			t.Errorf("binding holder %q", b.HolderName)
		}
		h.refuse(h.authorised(BindBankAccount{Number: "6222020200112233445", HolderName: holder}), CodeInvalid)
		h.bind("6222020200998877665", "Li Wei Jr.", "tok2")
		if b, _ := h.a.BankAccount(); b.Last4 != "7665" {
			t.Errorf("rebinding kept %q", b.Last4)
		}
	})
}

func TestProfileChanges(t *testing.T) {
	h := baseAccount(t)
	tests := []struct {
		name  string
		cmd   Command
		code  string
		field string
	}{
		{"Phone", ChangePhone{Phone: "+8613800138000"}, "", ""},
		{"PhoneNoPlus", ChangePhone{Phone: "13800138000"}, "", ""},
		{"PhoneLetters", ChangePhone{Phone: "+86abc"}, CodeInvalid, "phone"},
		{"PhoneShort", ChangePhone{Phone: "1234"}, CodeInvalid, "phone"},
		{"PhoneLong", ChangePhone{Phone: strings.Repeat("1", 21)}, CodeInvalid, "phone"},
		{"Identity", ChangeIdentity{HolderName: " Wang Fang "}, "", ""},
		{"IdentityEmpty", ChangeIdentity{HolderName: "  "}, CodeInvalid, "holder_name"},
		{"LimitValid", AdjustLimit{Limit: "20000.00"}, "", ""}, // lower: no step-up
		{"LimitZero", AdjustLimit{Limit: "0"}, CodeInvalid, "agreed_daily_limit"},
		{"LimitThreePlaces", AdjustLimit{Limit: "1.234"}, CodeInvalid, "agreed_daily_limit"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.code != "" {
				e, evs := h.refuse(tc.cmd, tc.code)
				if e.Details["field"] != tc.field || len(evs) != 0 {
					t.Errorf("details %v events %v", e.Details, types(evs))
				}
				return
			}
			// A fresh TOTP step for every change (R7: a code is single use).
			h.now = h.now.Add(TOTPStep)
			switch c := tc.cmd.(type) {
			case ChangePhone:
				// Signed by deviceApp, so that the TOTP on deviceToken
				// counts (R6).
				c.Auth = h.signedAuth(ChangeKindPhone, c.Phone, deviceApp, fPassword, fOTP)
				tc.cmd = c
			case ChangeIdentity:
				c.Auth = h.stepUp(ChangeKindIdentity, c.HolderName)
				tc.cmd = c
			}
			h.must(tc.cmd)
		})
	}
	if h.a.Phone != "13800138000" || h.a.HolderName != "Wang Fang" || h.a.AgreedLimit.String() != "20000.00" {
		t.Errorf("state %+v", h.a)
	}
	var adj LimitAdjusted
	for _, x := range h.log {
		if v, ok := x.e.(LimitAdjusted); ok {
			adj = v
		}
	}
	if adj.Previous.String() != "50000.00" || adj.AgreedDailyLimit.String() != "20000.00" {
		t.Errorf("LimitAdjusted %+v", adj)
	}
}

func TestAvailableAndForget(t *testing.T) {
	h := newHarness(t).open()
	h.deposit("100.00") // position 130
	p1 := h.pos
	h.deposit("50.00") // position 140
	p2 := h.pos
	h.apply(PaymentConfirmed{PaymentID: "px", DebitAccount: accountID, CreditAccount: payeeID, Amount: MustMoney("30.00", CNY),
		VerificationLevel: LevelSingleFactor}) // position 150
	p3 := h.pos
	// Events without money do not count.
	h.apply(PhoneChanged{Phone: "12345"}, LoginFailed{FailedAttempts: 1})
	tests := []struct {
		name       string
		projected  string
		checkpoint int64
		want       string
	}{
		{"EmptyProjection", "0", 0, "120.00"},
		{"ProjectionAtFirstDeposit", "100.00", p1, "120.00"},
		{"ProjectionAtSecondDeposit", "150.00", p2, "120.00"},
		{"ProjectionCaughtUp", "120.00", p3, "120.00"},
		{"ProjectionAhead", "120.00", h.pos + 1000, "120.00"},
		// An incoming payment from another stream counted by the
		// projection between p1 and p2 adds to the available balance.
		{"IncomingCredit", "125.00", p1 + 5, "145.00"},
		{"CheckpointBetweenEvents", "100.00", p1 + 1, "120.00"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := h.a.Available(dec(tc.projected), tc.checkpoint)
			if got.String() != tc.want || got.Currency != CNY {
				t.Errorf("Available(%s, %d) = %s %s, want %s", tc.projected, tc.checkpoint, got, got.Currency, tc.want)
			}
		})
	}
	t.Run("ForgetPrunes", func(t *testing.T) {
		h.a.Forget(p2)
		// The projection that has passed p2 holds 150.00; only the payment
		// at p3 is still the aggregate's to add.
		if got := h.a.Available(dec("150.00"), p2).String(); got != "120.00" {
			t.Errorf("after Forget(p2): %s", got)
		}
		// Forgotten moves no longer count even for an older checkpoint.
		if got := h.a.Available(decimal.Zero, 0).String(); got != "-30.00" {
			t.Errorf("after Forget(p2) with an empty projection: %s, want -30.00", got)
		}
		h.a.Forget(p3)
		if got := h.a.Available(dec("120.00"), p3).String(); got != "120.00" {
			t.Errorf("after Forget(p3): %s", got)
		}
		if got := h.a.Available(decimal.Zero, 0).String(); got != "0.00" {
			t.Errorf("after Forget(p3) with an empty projection: %s", got)
		}
		h.a.Forget(0) // nothing left, nothing breaks
	})
}

// TestAvailableMatchesFold: for random own moves, checkpoints and Forgets,
// Available (prefix sums) equals the projected figure plus a plain fold of
// the moves after the checkpoint that have not been forgotten.
func TestAvailableMatchesFold(t *testing.T) {
	type mv struct {
		pos    int64
		amount decimal.Decimal
		debit  bool
	}
	rng := rand.New(rand.NewPCG(7, 11))
	for round := range 200 {
		a := NewAccount(time.UTC)
		a.Currency = CNY
		var kept []mv
		pos := int64(0)
		for range 1 + rng.IntN(40) {
			switch rng.IntN(5) {
			case 0: // the projection passes some moves
				cp := pos - int64(rng.IntN(5))
				a.Forget(cp)
				for len(kept) > 0 && kept[0].pos <= cp {
					kept = kept[1:]
				}
			default:
				pos += 1 + int64(rng.IntN(3))
				m := mv{pos, decimal.New(int64(1+rng.IntN(100000)), -2), rng.IntN(3) > 0}
				a.addMove(m.pos, m.amount, m.debit)
				kept = append(kept, m)
			}
			for range 3 {
				cp := int64(rng.IntN(int(pos) + 3))
				projected := decimal.New(int64(rng.IntN(1_000_000)), -2)
				want := projected
				for _, m := range kept {
					switch {
					case m.pos <= cp:
					case m.debit:
						want = want.Sub(m.amount)
					default:
						want = want.Add(m.amount)
					}
				}
				if got := a.Available(projected, cp); !got.Amount.Equal(want) || got.Currency != CNY {
					t.Fatalf("round %d: Available(%s, %d) = %s %s, want %s", round, projected, cp, got.Amount, got.Currency, want)
				}
			}
		}
	}
}

func TestDepositValidation(t *testing.T) {
	h := newHarness(t).open()
	deposit := func(id, amount, currency, ref string) Deposit {
		return Deposit{DepositID: id, Amount: amount, Currency: currency, Reference: ref, Staff: fundingDesk}
	}
	t.Run("Valid", func(t *testing.T) {
		// The bank reference is kept as the funding desk matched it, less
		// surrounding space; it is at most 140 characters (it used to be
		// cut there, it is refused beyond now: see Reference141Runes).
		evs := h.must(deposit("d1", "10.50", "CNY", " "+strings.Repeat("参", 140)+" "))
		d := evs[0].(FundsDeposited)
		if d.DebitAccount != "clearing-CNY" || d.CreditAccount != accountID || d.Amount.String() != "10.50" ||
			d.Reference != strings.Repeat("参", 140) || d.Staff != fundingDesk {
			t.Errorf("event %+v", d)
		}
		if h.available() != "10.50" {
			t.Errorf("available %s", h.available())
		}
	})
	t.Run("CurrencyOptional", func(t *testing.T) {
		h.must(deposit("d2", "1", "", "ref-2"))
	})
	for name, cmd := range map[string]Deposit{
		"OtherCurrency":     deposit("d3", "10.00", "USD", "ref-3"),
		"Negative":          deposit("d3", "-10.00", "", "ref-3"),
		"Zero":              deposit("d3", "0.00", "", "ref-3"),
		"ThreePlaces":       deposit("d3", "1.001", "", "ref-3"),
		"NoReference":       deposit("d3", "10.00", "", ""),
		"BlankReference":    deposit("d3", "10.00", "", " \t "),
		"Reference141Runes": deposit("d3", "10.00", "", strings.Repeat("参", 141)),
	} {
		t.Run(name, func(t *testing.T) {
			if _, evs := h.refuse(cmd, CodeInvalid); len(evs) != 0 {
				t.Errorf("recorded %v", types(evs))
			}
		})
	}
	if h.available() != "11.50" {
		t.Errorf("available %s", h.available())
	}
}
