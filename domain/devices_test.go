package domain

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// Tests of registered devices (R6, R26): registration, the device proofs
// instructions carry, and the rule that a one-time password is a second
// factor only from a proven device other than its own.

// noDevices returns an account with the base account's password, TOTP
// factors and biometric (fBio, on deviceApp), and no registered device.
func noDevices(t *testing.T) *harness {
	t.Helper()
	h := newHarness(t).open()
	h.apply(FactorEnrolled{FactorID: fPassword, Method: MethodPassword, Category: CategoryKnowledge, PasswordHash: cheapHash(testPassword)})
	h.must(EnrollFactor{FactorID: fOTP, Method: MethodTOTP, DeviceID: deviceToken, SealedSecret: []byte(secretOther), Staff: operator})
	h.must(EnrollFactor{FactorID: fOTPApp, Method: MethodTOTP, DeviceID: deviceApp, SealedSecret: []byte(secretApp), Staff: operator})
	return h
}

// keyOfSeed is a deterministic Ed25519 key.
func keyOfSeed(b byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{b}, ed25519.SeedSize))
}

// deviceOf returns a registered device of a.
func deviceOf(a *Account, id string) (Device, bool) {
	for _, d := range a.Devices() {
		if d.ID == id {
			return d, true
		}
	}
	return Device{}, false
}

// TestDeviceChallengeFormat pins DeviceChallenge to the text its doc
// comment gives, which clients build to sign: the time in UTC, RFC 3339
// with as many fractional digits as it needs.
func TestDeviceChallengeFormat(t *testing.T) {
	at := time.Date(2026, 11, 25, 18, 0, 1, 500_000_000, shanghai(t))
	got := DeviceChallenge("payment", "acc-1", "phone-1", at, "p-1")
	want := "payledger/device/v1\npayment\nacc-1\nphone-1\n2026-11-25T10:00:01.5Z\np-1"
	if string(got) != want {
		t.Errorf("DeviceChallenge =\n%q\nwant\n%q", got, want)
	}
	got = DeviceChallenge("login", "acc-1", "laptop-1", t0, "")
	want = "payledger/device/v1\nlogin\nacc-1\nlaptop-1\n2026-11-25T10:00:00Z\n"
	if string(got) != want {
		t.Errorf("DeviceChallenge =\n%q\nwant\n%q", got, want)
	}
	base := DeviceChallenge("withdrawal", "acc-1", "phone-1", t0, "10.00")
	for name, other := range map[string][]byte{
		"Purpose":   DeviceChallenge("payment", "acc-1", "phone-1", t0, "10.00"),
		"Account":   DeviceChallenge("withdrawal", "acc-2", "phone-1", t0, "10.00"),
		"Device":    DeviceChallenge("withdrawal", "acc-1", "phone-2", t0, "10.00"),
		"Time":      DeviceChallenge("withdrawal", "acc-1", "phone-1", t0.Add(time.Nanosecond), "10.00"),
		"Subject":   DeviceChallenge("withdrawal", "acc-1", "phone-1", t0, "10.0"),
		"NoSubject": DeviceChallenge("withdrawal", "acc-1", "phone-1", t0, ""),
	} {
		if bytes.Equal(other, base) {
			t.Errorf("%s: the challenge does not change: %q", name, other)
		}
	}
}

// TestRegisterDevice: the first device is registered with the session
// alone, any other needs a step-up of two categories; each proves the
// holder has its key by signing the registration's challenge, within
// DeviceSkew of the clock; a success is followed by a HolderNotified and
// the aggregate knows the device and the time of its signature.
func TestRegisterDevice(t *testing.T) {
	newKey := keyOfSeed(42)
	// reg is the registration of "new-1" with newKey, signed over the
	// challenge of purpose, account, device id and subject at at.
	reg := func(h *harness, purpose, account, device, subject string, at time.Time) RegisterDevice {
		sig := ed25519.Sign(newKey, DeviceChallenge(purpose, account, device, at, subject))
		return RegisterDevice{DeviceID: "new-1", PublicKey: pubOf(newKey), Label: "new phone", SignedAt: at, Signature: sig}
	}
	newB64 := base64.StdEncoding.EncodeToString(pubOf(newKey))
	valid := func(h *harness) RegisterDevice {
		return reg(h, ChangeKindDevice, accountID, "new-1", newB64, h.now)
	}
	// first: no device yet; second: deviceApp registered.
	first := noDevices
	second := func(t *testing.T) *harness {
		h := noDevices(t)
		h.registerDevice(deviceApp)
		return h
	}
	wrongPW := Proof{FactorID: fPassword, Password: "wrong password"}
	tests := []struct {
		name    string
		account func(t *testing.T) *harness
		cmd     func(h *harness) RegisterDevice
		code    string // "" for success
		field   string // of an invalid_request
		types   []string
		// authorised is true when the registration records a step-up.
		authorised bool
		failures   int
	}{
		{"First/WithoutStepUp", first, valid, "", "", []string{TypeDeviceRegistered, TypeHolderNotified}, false, 0},
		{"First/StepUpIgnored", first, func(h *harness) RegisterDevice {
			c := valid(h)
			c.Auth = byPassword()
			return c
		}, "", "", []string{TypeDeviceRegistered, TypeHolderNotified}, false, 0},
		{"Second/WithoutStepUp", second, valid, CodeInvalid, "device_id", nil, false, 0},
		{"Second/WithoutProofs", second, func(h *harness) RegisterDevice {
			c := valid(h)
			c.Auth = Authorisation{DeviceID: deviceApp}
			return c
		}, CodeInvalid, "proofs", nil, false, 0},
		{"Second/OneCategory", second, func(h *harness) RegisterDevice {
			c := valid(h)
			c.Auth = byPassword()
			return c
		}, CodeInsufficientVerification, "", []string{TypeChangeRejected}, false, 0},
		{"Second/TwoCategories", second, func(h *harness) RegisterDevice { return h.withStepUp(valid(h)) },
			"", "", []string{TypeDeviceRegistered, TypeHolderNotified}, true, 0},
		{"Second/TwoCategoriesSignedByFirstDevice", second, func(h *harness) RegisterDevice {
			return h.prove(h.withStepUp(valid(h))).(RegisterDevice)
		}, "", "", []string{TypeDeviceRegistered, TypeHolderNotified, TypeDeviceUsed}, true, 0},
		// R6: the TOTP on deviceToken is no second category from deviceApp
		// unless deviceApp signs.
		{"Second/PasswordAndTOTPFromClaimedDevice", second, func(h *harness) RegisterDevice {
			c := valid(h)
			c.Auth = h.auth(ChangeKindDevice, c.DeviceID, deviceApp, fPassword, fOTP)
			return c
		}, CodeFactorNotIndependent, "", []string{TypeChangeRejected}, false, 0},
		{"Second/PasswordAndTOTPFromProvenDevice", second, func(h *harness) RegisterDevice {
			c := valid(h)
			c.Auth = h.signedAuth(ChangeKindDevice, c.DeviceID, deviceApp, fPassword, fOTP)
			return c
		}, "", "", []string{TypeDeviceRegistered, TypeHolderNotified, TypeDeviceUsed}, true, 0},
		{"Second/WrongPassword", second, func(h *harness) RegisterDevice {
			c := valid(h)
			c.Auth = Authorisation{DeviceID: deviceApp, Proofs: []Proof{wrongPW}}
			return c
		}, CodeProofInvalid, "", []string{TypeVerificationFailed}, false, 1},
		{"Second/WrongDeviceSignature", second, func(h *harness) RegisterDevice {
			c := h.withStepUp(valid(h))
			c.Auth.Device = signWith(deviceKeys[deviceToken], ChangeKindDevice, deviceApp, c.DeviceID, h.signedAt())
			return c
		}, CodeProofInvalid, "", []string{TypeVerificationFailed}, false, 1},

		{"DuplicateID", second, func(h *harness) RegisterDevice {
			c := valid(h)
			c.DeviceID = deviceApp
			c.Signature = ed25519.Sign(newKey, DeviceChallenge(ChangeKindDevice, accountID, deviceApp, c.SignedAt, newB64))
			return h.withStepUp(c)
		}, CodeConflict, "", nil, false, 0},
		{"EmptyID", first, func(h *harness) RegisterDevice {
			c := reg(h, ChangeKindDevice, accountID, "", newB64, h.now)
			c.DeviceID = ""
			return c
		}, CodeInvalid, "device.device_id", nil, false, 0},
		{"IDOf101", first, func(h *harness) RegisterDevice {
			c := valid(h)
			c.DeviceID = strings.Repeat("d", 101)
			return c
		}, CodeInvalid, "device.device_id", nil, false, 0},
		{"KeyOf31Bytes", first, func(h *harness) RegisterDevice {
			c := valid(h)
			c.PublicKey = c.PublicKey[:31]
			return c
		}, CodeInvalid, "device.public_key", nil, false, 0},
		{"KeyOf33Bytes", first, func(h *harness) RegisterDevice {
			c := valid(h)
			c.PublicKey = append(bytes.Clone(c.PublicKey), 0)
			return c
		}, CodeInvalid, "device.public_key", nil, false, 0},
		{"PrivateKeyForPublic", first, func(h *harness) RegisterDevice {
			c := valid(h)
			c.PublicKey = []byte(newKey)
			return c
		}, CodeInvalid, "device.public_key", nil, false, 0},
		{"NoKey", first, func(h *harness) RegisterDevice {
			c := valid(h)
			c.PublicKey = nil
			return c
		}, CodeInvalid, "device.public_key", nil, false, 0},
		{"LabelOf101Runes", first, func(h *harness) RegisterDevice {
			c := valid(h)
			c.Label = strings.Repeat("机", 101)
			return c
		}, CodeInvalid, "device.label", nil, false, 0},
		{"LabelOf100Runes", first, func(h *harness) RegisterDevice {
			c := valid(h)
			c.Label = strings.Repeat("机", 100)
			return c
		}, "", "", []string{TypeDeviceRegistered, TypeHolderNotified}, false, 0},
		{"NoSignature", first, func(h *harness) RegisterDevice {
			c := valid(h)
			c.Signature = nil
			return c
		}, CodeInvalid, "device.signature", nil, false, 0},
		{"SignedByAnotherKey", first, func(h *harness) RegisterDevice {
			c := valid(h)
			c.Signature = ed25519.Sign(strangerKey, DeviceChallenge(ChangeKindDevice, accountID, "new-1", c.SignedAt, newB64))
			return c
		}, CodeInvalid, "device.signature", nil, false, 0},
		{"SignedOverAnotherKey", first, func(h *harness) RegisterDevice {
			return reg(h, ChangeKindDevice, accountID, "new-1", base64.StdEncoding.EncodeToString(pubOf(strangerKey)), h.now)
		}, CodeInvalid, "device.signature", nil, false, 0},
		{"SignedOverKeyInURLBase64", first, func(h *harness) RegisterDevice {
			return reg(h, ChangeKindDevice, accountID, "new-1", base64.RawURLEncoding.EncodeToString(pubOf(newKey)), h.now)
		}, CodeInvalid, "device.signature", nil, false, 0},
		{"SignedForAnotherDeviceID", first, func(h *harness) RegisterDevice {
			return reg(h, ChangeKindDevice, accountID, "new-2", newB64, h.now)
		}, CodeInvalid, "device.signature", nil, false, 0},
		{"SignedForAnotherAccount", first, func(h *harness) RegisterDevice {
			return reg(h, ChangeKindDevice, payeeID, "new-1", newB64, h.now)
		}, CodeInvalid, "device.signature", nil, false, 0},
		{"SignedForAnotherPurpose", first, func(h *harness) RegisterDevice {
			return reg(h, "login", accountID, "new-1", newB64, h.now)
		}, CodeInvalid, "device.signature", nil, false, 0},
		{"SignedAtAnotherTime", first, func(h *harness) RegisterDevice {
			c := valid(h)
			c.SignedAt = c.SignedAt.Add(time.Millisecond)
			return c
		}, CodeInvalid, "device.signature", nil, false, 0},
		{"SignedTooLongAgo", first, func(h *harness) RegisterDevice {
			return reg(h, ChangeKindDevice, accountID, "new-1", newB64, h.now.Add(-DeviceSkew-time.Nanosecond))
		}, CodeInvalid, "device.signed_at", nil, false, 0},
		{"SignedInTheFuture", first, func(h *harness) RegisterDevice {
			return reg(h, ChangeKindDevice, accountID, "new-1", newB64, h.now.Add(DeviceSkew+time.Nanosecond))
		}, CodeInvalid, "device.signed_at", nil, false, 0},
		{"SignedAtSkewBefore", first, func(h *harness) RegisterDevice {
			return reg(h, ChangeKindDevice, accountID, "new-1", newB64, h.now.Add(-DeviceSkew))
		}, "", "", []string{TypeDeviceRegistered, TypeHolderNotified}, false, 0},
		{"SignedAtSkewAfter", first, func(h *harness) RegisterDevice {
			return reg(h, ChangeKindDevice, accountID, "new-1", newB64, h.now.Add(DeviceSkew))
		}, "", "", []string{TypeDeviceRegistered, TypeHolderNotified}, false, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.account(t)
			devices, version := len(h.a.Devices()), h.a.Version
			cmd := tc.cmd(h)
			evs, err := h.decide(cmd)
			wantTypes(t, evs, tc.types...)
			if h.a.FailedAttempts() != tc.failures {
				t.Errorf("failed attempts %d, want %d", h.a.FailedAttempts(), tc.failures)
			}
			if tc.code != "" {
				e := wantCode(t, err, tc.code)
				if tc.field != "" && e.Details["field"] != tc.field {
					t.Errorf("details %v, want field %s", e.Details, tc.field)
				}
				if h.a.Version != version+int64(len(evs)) {
					t.Errorf("version %d, was %d, %d events", h.a.Version, version, len(evs))
				}
				wantNoNotice(t, evs)
				if d, ok := deviceOf(h.a, "new-1"); ok || len(h.a.Devices()) != devices {
					t.Errorf("a refused registration registered %+v", d)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(cmd.Auth.Device.Signature) > 0 {
				evs = wantDeviceUsed(t, evs, cmd.Auth.DeviceID, cmd.Auth.Device.SignedAt)
				if got := lastSignedAt(t, h.a, cmd.Auth.DeviceID); !got.Equal(cmd.Auth.Device.SignedAt) {
					t.Errorf("the signing device's LastSignedAt %v, want %v", got, cmd.Auth.Device.SignedAt)
				}
			}
			wantNotified(t, evs, TypeDeviceRegistered, HolderNotified{Change: ChangeKindDevice, Reference: cmd.DeviceID})
			dr := evs[0].(DeviceRegistered)
			want := DeviceRegistered{DeviceID: cmd.DeviceID, PublicKey: cmd.PublicKey, Label: cmd.Label, SignedAt: cmd.SignedAt}
			by := dr.Authorised
			dr.Authorised = Authorised{}
			if !sameValue(reflect.ValueOf(dr), reflect.ValueOf(want)) {
				t.Errorf("event %+v, want %+v", dr, want)
			}
			if tc.authorised != (len(by.FactorIDs) > 0) || (tc.authorised && (by.DeviceID != cmd.Auth.DeviceID || len(by.Categories) < 2)) {
				t.Errorf("authorised %+v", by)
			}
			for _, a := range []*Account{h.a, h.replay()} {
				d, ok := deviceOf(a, cmd.DeviceID)
				wantD := Device{ID: cmd.DeviceID, PublicKey: cmd.PublicKey, Label: cmd.Label, LastSignedAt: cmd.SignedAt}
				if !ok || !sameValue(reflect.ValueOf(d), reflect.ValueOf(wantD)) || len(a.Devices()) != devices+1 {
					t.Errorf("Devices() = %+v, want %+v among them", a.Devices(), wantD)
				}
			}
			if !reflect.DeepEqual(h.replay(), h.a) {
				t.Error("the rebuilt aggregate differs from the live one")
			}
		})
	}

	t.Run("AtMost10", func(t *testing.T) {
		h := noDevices(t)
		for i := range 10 {
			cmd := h.registerKeyCmd(fmt.Sprintf("dev-%d", i), keyOfSeed(byte(100+i)))
			if i > 0 {
				cmd = h.withStepUp(cmd)
			}
			h.must(cmd)
		}
		cmd := h.withStepUp(h.registerKeyCmd("dev-10", keyOfSeed(110)))
		version := h.a.Version
		e, evs := h.refuse(cmd, CodeConflict)
		if len(evs) != 0 || h.a.Version != version || !strings.Contains(e.Message, "at most 10") {
			t.Errorf("%v, recorded %v", e, types(evs))
		}
		for _, a := range []*Account{h.a, h.replay()} {
			if n := len(a.Devices()); n != 10 {
				t.Errorf("%d devices, want 10", n)
			}
		}
	})
	t.Run("SameKeyUnderTwoIDs", func(t *testing.T) {
		// A key proves one holder's device whatever it is called; the ids
		// are the account's to tell apart.
		h := noDevices(t)
		h.must(h.registerKeyCmd("a", newKey))
		h.must(h.withStepUp(h.registerKeyCmd("b", newKey)))
	})
	t.Run("ClosedAccount", func(t *testing.T) {
		h := noDevices(t)
		h.must(CloseAccount{})
		if _, evs := h.refuse(h.registerCmd(deviceApp), CodeAccountClosed); len(evs) != 0 {
			t.Errorf("recorded %v", types(evs))
		}
	})
	t.Run("SuspendedAccount", func(t *testing.T) {
		// R14 suspends payments, not the account's upkeep.
		h := noDevices(t)
		h.must(Suspend{})
		h.registerDevice(deviceApp)
	})
	t.Run("DuringLock", func(t *testing.T) {
		// A later device's step-up is a verification like any other: the
		// lock turns it away and records the attempt.
		h := noDevices(t)
		h.registerDevice(deviceApp)
		lockOut(h)
		_, evs := h.refuse(h.withStepUp(h.registerCmd(deviceToken)), CodeAccessLocked)
		wantTypes(t, evs, TypeVerificationFailed)
		if v := evs[0].(VerificationFailed); v.Purpose != ChangeKindDevice || v.Reference != deviceToken {
			t.Errorf("event %+v", v)
		}
		if _, ok := deviceOf(h.a, deviceToken); ok {
			t.Error("registered during the lock")
		}
	})
}

// instruction is one kind of instruction a device proof may sign.
type instruction struct {
	name string
	// failed is the event a wrong device proof records, code its error.
	failed, code string
	// done is the instruction's event on success.
	done string
	// build returns the instruction from device with proofs of factors,
	// unsigned; a payment is initiated from device first.
	build func(h *harness, device string, factors ...string) Command
}

// instructions are the instructions that carry device proofs: a login, a
// payment confirmation, a withdrawal and a change (the reserved phone).
// Each is built fresh (a new session, payment, withdrawal or phone).
var instructions = []instruction{
	{"Login", TypeLoginFailed, CodeAuthFailed, TypeLoginSucceeded, func(h *harness, device string, factors ...string) Command {
		h.seq++
		return Login{SessionID: fmt.Sprintf("s%d", h.seq), TokenHash: []byte{byte(h.seq)}, DeviceID: device, Proofs: h.proofs(nil, factors...)}
	}},
	{"Payment", TypeVerificationFailed, CodeProofInvalid, TypePaymentConfirmed, func(h *harness, device string, factors ...string) Command {
		cmd := h.payCmd("10.00")
		cmd.DeviceID = device
		pi := h.must(cmd)[0].(PaymentInitiated)
		c := h.confirmCmd(pi.PaymentID, factors...)
		c.DeviceID = device
		return c
	}},
	{"Withdrawal", TypeVerificationFailed, CodeProofInvalid, TypeFundsWithdrawn, func(h *harness, device string, factors ...string) Command {
		h.seq++
		return Withdraw{WithdrawalID: fmt.Sprintf("w%d", h.seq), Amount: "10.00", Currency: "CNY", DeviceID: device, Proofs: h.proofs(nil, factors...)}
	}},
	{"Change", TypeVerificationFailed, CodeProofInvalid, TypePhoneChanged, func(h *harness, device string, factors ...string) Command {
		h.seq++
		phone := fmt.Sprintf("+861380013%04d", h.seq)
		return ChangePhone{Phone: phone, Auth: h.auth(ChangeKindPhone, phone, device, factors...)}
	}},
}

// unregisteredOrWrong is the reason, and message, of a device signature
// that does not verify, whether its device is registered or not.
const unregisteredOrWrong = "the device signature does not verify for a device registered on this account"

// withoutDevice returns a failed attempt's event (LoginFailed or
// VerificationFailed) without the device it names.
func withoutDevice(e Event) Event {
	switch v := e.(type) {
	case LoginFailed:
		v.DeviceID = ""
		return v
	case VerificationFailed:
		v.DeviceID = ""
		return v
	}
	return e
}

// failedAttempt returns the failed attempt among evs (LoginFailed or
// VerificationFailed): its count and the one-time passwords it spent.
func failedAttempt(t *testing.T, evs []Event) (int, []OTPUse) {
	t.Helper()
	for _, e := range evs {
		switch v := e.(type) {
		case LoginFailed:
			return v.FailedAttempts, v.OTPUses
		case VerificationFailed:
			return v.FailedAttempts, v.OTPUses
		}
	}
	t.Fatalf("no failed attempt in %v", types(evs))
	return 0, nil
}

// TestDeviceProofs: an instruction may carry its device's signature. At a
// time too far from the clock that is malformed input (nothing recorded,
// counted or spent), whatever the device; a wrong signature, or one from a
// device the account does not know, is a failed attempt that counts
// towards the lock (R9), the same answer either way so that nobody learns
// the account's devices by trying names; a signature that verifies but is
// replayed or older is malformed input again (only the device's key makes
// it: a client's retry, not a guess); a right one records DeviceUsed after
// the instruction's event and moves the device's LastSignedAt.
func TestDeviceProofs(t *testing.T) {
	for _, in := range instructions {
		t.Run(in.name+"/UnregisteredDevice", func(t *testing.T) {
			// Was 400 invalid_request (field device_id), nothing recorded:
			// that told whoever tried a name whether the account has the
			// device. Now a failed proof like a wrong signature.
			h := withBank(t)
			cmd := in.build(h, "laptop-9", fPassword, fOTP)
			version := h.a.Version
			e, evs := h.refuse(h.prove(cmd), in.code)
			wantTypes(t, evs, in.failed)
			n, spent := failedAttempt(t, evs)
			if n != 1 || len(spent) != 0 || h.a.FailedAttempts() != 1 || e.Details["attempts_remaining"] != 4 || e.Details["field"] != nil {
				t.Errorf("recorded attempt %d spending %v, %d failures, details %v", n, spent, h.a.FailedAttempts(), e.Details)
			}
			if e.Message != unregisteredOrWrong || strings.Contains(e.Message, "laptop-9") {
				t.Errorf("message %q, want %q", e.Message, unregisteredOrWrong)
			}
			if h.a.Version != version+int64(len(evs)) {
				t.Errorf("version %d, was %d, %d events", h.a.Version, version, len(evs))
			}
			if _, ok := deviceOf(h.a, "laptop-9"); ok {
				t.Error("the device got registered")
			}
			for _, ev := range evs {
				if ev.EventType() == TypeDeviceUsed {
					t.Errorf("recorded a use of the unregistered device: %v", types(evs))
				}
			}
			// The proofs were not checked, so the TOTP code is unspent.
			h.must(Login{SessionID: "after", DeviceID: deviceApp, Proofs: h.proofs(nil, fOTP)})
		})
		t.Run(in.name+"/UnregisteredDeviceAnswersLikeAWrongSignature", func(t *testing.T) {
			// Side by side on two like accounts: a signature from a device
			// the account does not know, and a wrong signature from one it
			// knows, get the same code, message and details, and record the
			// same failed attempt (but for the device it names).
			outcome := func(device string, sign func(h *harness, purpose, device, subject string) DeviceProof) (*Error, Event) {
				t.Helper()
				h := withBank(t)
				cmd := in.build(h, device, fPassword, fOTP)
				purpose, device, subject, _ := deviceChallengeOf(cmd)
				e, evs := h.refuse(withDevice(cmd, sign(h, purpose, device, subject)), in.code)
				wantTypes(t, evs, in.failed)
				return e, evs[0]
			}
			unknownSigned, unknownEv := outcome("laptop-9", func(h *harness, purpose, device, subject string) DeviceProof {
				return h.sign(purpose, device, subject) // laptop-9's own key, over the right challenge
			})
			unknownGarbage, _ := outcome("laptop-9", func(h *harness, purpose, device, subject string) DeviceProof {
				return DeviceProof{SignedAt: h.signedAt(), Signature: make([]byte, ed25519.SignatureSize)}
			})
			wrong, wrongEv := outcome(deviceApp, func(h *harness, purpose, device, subject string) DeviceProof {
				return signWith(strangerKey, purpose, device, subject, h.signedAt())
			})
			for name, e := range map[string]*Error{"unregistered, signed": unknownSigned, "unregistered, garbage": unknownGarbage} {
				if e.Code != wrong.Code || e.Message != wrong.Message || !reflect.DeepEqual(e.Details, wrong.Details) {
					t.Errorf("%s: %v %v\nwrong signature: %v %v", name, e, e.Details, wrong, wrong.Details)
				}
			}
			if !sameValue(reflect.ValueOf(withoutDevice(unknownEv)), reflect.ValueOf(withoutDevice(wrongEv))) {
				t.Errorf("recorded %+v\nfor a wrong signature %+v", unknownEv, wrongEv)
			}
		})
		t.Run(in.name+"/UnregisteredAndWrongSignaturesLockTogether", func(t *testing.T) {
			// Both count towards the same lock (R9).
			h := withBank(t)
			for i := 1; i <= 5; i++ {
				device, key := "laptop-9", deviceKeys["laptop-9"]
				if i%2 == 0 {
					device, key = deviceApp, strangerKey
				}
				cmd := in.build(h, device, fPassword)
				purpose, device, subject, _ := deviceChallengeOf(cmd)
				cmd = withDevice(cmd, signWith(key, purpose, device, subject, h.signedAt()))
				code := in.code
				if i == 5 {
					code = CodeAccessLocked
				}
				_, evs := h.refuse(cmd, code)
				if n, _ := failedAttempt(t, evs); n != i || h.a.FailedAttempts() != i {
					t.Errorf("attempt %d recorded as %d, %d failures", i, n, h.a.FailedAttempts())
				}
			}
			for _, a := range []*Account{h.a, h.replay()} {
				if a.LockedUntil().IsZero() {
					t.Error("not locked")
				}
			}
		})
		t.Run(in.name+"/UnregisteredDeviceOutsideSkew", func(t *testing.T) {
			// The time is checked before the device is looked up: too far
			// from the clock is the same malformed input whether the device
			// is registered or not.
			for _, device := range []string{"laptop-9", deviceApp} {
				h := withBank(t)
				cmd := in.build(h, device, fPassword)
				purpose, device, subject, _ := deviceChallengeOf(cmd)
				version := h.a.Version
				e, evs := h.refuse(withDevice(cmd, h.signAt(purpose, device, subject, h.now.Add(-DeviceSkew-time.Second))), CodeInvalid)
				if e.Details["field"] != "signed_at" || len(evs) != 0 || h.a.Version != version || h.a.FailedAttempts() != 0 {
					t.Errorf("%s: details %v, recorded %v, %d failures", device, e.Details, types(evs), h.a.FailedAttempts())
				}
			}
		})
		t.Run(in.name+"/SignedAtOutsideSkew", func(t *testing.T) {
			for _, off := range []time.Duration{-DeviceSkew - time.Nanosecond, DeviceSkew + time.Nanosecond} {
				h := withBank(t)
				cmd := in.build(h, deviceApp, fPassword)
				purpose, device, subject, _ := deviceChallengeOf(cmd)
				version := h.a.Version
				e, evs := h.refuse(withDevice(cmd, h.signAt(purpose, device, subject, h.now.Add(off))), CodeInvalid)
				if e.Details["field"] != "signed_at" || len(evs) != 0 || h.a.Version != version {
					t.Errorf("%v: details %v, recorded %v", off, e.Details, types(evs))
				}
			}
		})
		t.Run(in.name+"/SignedAtSkewEdge", func(t *testing.T) {
			for _, off := range []time.Duration{-DeviceSkew, DeviceSkew} {
				h := withBank(t)
				// Later than the registrations, so that now-DeviceSkew is
				// after the device's registration signature.
				h.now = h.now.Add(3 * time.Minute)
				cmd := in.build(h, deviceApp, fPassword, fOTP)
				purpose, device, subject, _ := deviceChallengeOf(cmd)
				at := h.now.Add(off)
				evs := h.must(withDevice(cmd, h.signAt(purpose, device, subject, at)))
				wantDeviceUsed(t, evs, deviceApp, at)
			}
		})
		wrong := map[string]func(h *harness, purpose, device, subject string) DeviceProof{
			"KeyOfAnotherDevice": func(h *harness, purpose, device, subject string) DeviceProof {
				return signWith(deviceKeys[deviceToken], purpose, device, subject, h.signedAt())
			},
			"AnotherPurpose": func(h *harness, purpose, device, subject string) DeviceProof {
				other := "login"
				if purpose == other {
					other = "payment"
				}
				return h.sign(other, device, subject)
			},
			"AnotherSubject": func(h *harness, purpose, device, subject string) DeviceProof {
				return h.sign(purpose, device, subject+"0")
			},
			"AnotherAccount": func(h *harness, purpose, device, subject string) DeviceProof {
				at := h.signedAt()
				return DeviceProof{SignedAt: at, Signature: ed25519.Sign(h.deviceKey(device), DeviceChallenge(purpose, payeeID, device, at, subject))}
			},
			"AnotherDeviceID": func(h *harness, purpose, device, subject string) DeviceProof {
				at := h.signedAt()
				return DeviceProof{SignedAt: at, Signature: ed25519.Sign(h.deviceKey(device), DeviceChallenge(purpose, accountID, deviceToken, at, subject))}
			},
			"TimeOtherThanSigned": func(h *harness, purpose, device, subject string) DeviceProof {
				dp := h.sign(purpose, device, subject)
				dp.SignedAt = dp.SignedAt.Add(time.Nanosecond)
				return dp
			},
			"Garbage": func(h *harness, purpose, device, subject string) DeviceProof {
				return DeviceProof{SignedAt: h.signedAt(), Signature: make([]byte, ed25519.SignatureSize)}
			},
			"Truncated": func(h *harness, purpose, device, subject string) DeviceProof {
				dp := h.sign(purpose, device, subject)
				dp.Signature = dp.Signature[:10]
				return dp
			},
		}
		for name, sig := range wrong {
			t.Run(in.name+"/Wrong/"+name, func(t *testing.T) {
				h := withBank(t)
				before := lastSignedAt(t, h.a, deviceApp)
				cmd := in.build(h, deviceApp, fPassword, fOTP)
				purpose, device, subject, _ := deviceChallengeOf(cmd)
				e, evs := h.refuse(withDevice(cmd, sig(h, purpose, device, subject)), in.code)
				wantTypes(t, evs, in.failed)
				n, spent := failedAttempt(t, evs)
				if n != 1 || len(spent) != 0 || h.a.FailedAttempts() != 1 || e.Details["attempts_remaining"] != 4 {
					t.Errorf("recorded attempt %d spending %v, %d failures, details %v", n, spent, h.a.FailedAttempts(), e.Details)
				}
				if got := lastSignedAt(t, h.a, deviceApp); !got.Equal(before) {
					t.Errorf("LastSignedAt moved to %v", got)
				}
				if p, ok := cmd.(ConfirmPayment); ok {
					if _, pending := h.a.Pending(p.PaymentID); !pending {
						t.Error("the payment is no longer pending")
					}
				}
				// The proofs were not checked, so the TOTP code is unspent.
				h.must(Login{SessionID: "after", DeviceID: deviceApp, Proofs: h.proofs(nil, fOTP)})
			})
		}
		t.Run(in.name+"/WrongSignaturesLock", func(t *testing.T) {
			h := withBank(t)
			for i := 1; i <= 5; i++ {
				cmd := in.build(h, deviceApp, fPassword)
				purpose, device, subject, _ := deviceChallengeOf(cmd)
				cmd = withDevice(cmd, signWith(strangerKey, purpose, device, subject, h.signedAt()))
				if i < 5 {
					_, evs := h.refuse(cmd, in.code)
					wantTypes(t, evs, in.failed)
					continue
				}
				e, evs := h.refuse(cmd, CodeAccessLocked)
				wantTypes(t, evs, in.failed, TypeAccessLocked)
				if n, _ := failedAttempt(t, evs); n != 5 || e.Details["locked_until"] == nil {
					t.Errorf("attempt %d, details %v", n, e.Details)
				}
			}
			for _, a := range []*Account{h.a, h.replay()} {
				if a.LockedUntil().IsZero() || a.FailedAttempts() != 5 {
					t.Errorf("locked until %v, %d failures", a.LockedUntil(), a.FailedAttempts())
				}
			}
			h.refuse(h.prove(Login{DeviceID: deviceApp, Proofs: h.proofs(nil, fPassword)}), CodeAccessLocked)
		})
		t.Run(in.name+"/SucceedsAndRecordsTheUse", func(t *testing.T) {
			h := withBank(t)
			h.refuse(Login{DeviceID: deviceApp, Proofs: []Proof{{FactorID: fPassword, Password: "wrong password"}}}, CodeAuthFailed)
			token := lastSignedAt(t, h.a, deviceToken)
			cmd := h.prove(in.build(h, deviceApp, fPassword, fOTP))
			at := deviceProofOf(cmd).SignedAt
			evs, err := h.decide(cmd)
			if err != nil {
				t.Fatal(err)
			}
			evs = wantDeviceUsed(t, evs, deviceApp, at)
			if evs[0].EventType() != in.done {
				t.Errorf("events %v, want %s first", types(evs), in.done)
			}
			for _, a := range []*Account{h.a, h.replay()} {
				if got := lastSignedAt(t, a, deviceApp); !got.Equal(at) || a.FailedAttempts() != 0 {
					t.Errorf("LastSignedAt %v, want %v; %d failures", got, at, a.FailedAttempts())
				}
			}
			if !reflect.DeepEqual(h.replay(), h.a) {
				t.Error("the rebuilt aggregate differs from the live one")
			}
			// Another device's record does not move.
			if got := lastSignedAt(t, h.a, deviceToken); !got.Equal(token) {
				t.Errorf("deviceToken's LastSignedAt %v, was %v", got, token)
			}
		})
		t.Run(in.name+"/ReplayedOrOlder", func(t *testing.T) {
			// Was a failed proof (counted, VerificationFailed/LoginFailed).
			// A signature that verifies is the device key's own, so one at
			// a spent time is a client's retry: 400 invalid_request
			// (signed_at), nothing recorded, counted or spent.
			h := withBank(t)
			first := h.prove(in.build(h, deviceApp, fPassword, fOTP))
			at := deviceProofOf(first).SignedAt
			h.must(first)
			// A fresh TOTP step, so that a code the refusals spent would
			// show.
			h.now = h.now.Add(TOTPStep)
			// A signature at the time of the last one, or before it, is
			// spent, whatever it signs; more of them than the lock's
			// threshold lock nothing.
			whens := []time.Time{at, at.Add(-time.Millisecond), at.Add(-time.Second)}
			for len(whens) <= h.p.MaxFailures {
				whens = append(whens, whens...)
			}
			for i, when := range whens {
				cmd := in.build(h, deviceApp, fPassword, fOTP)
				version := h.a.Version // after a payment's initiation
				purpose, device, subject, _ := deviceChallengeOf(cmd)
				e, evs := h.refuse(withDevice(cmd, h.signAt(purpose, device, subject, when)), CodeInvalid)
				if e.Details["field"] != "signed_at" || len(evs) != 0 || h.a.FailedAttempts() != 0 {
					t.Errorf("replay %d: details %v, recorded %v, %d failures", i+1, e.Details, types(evs), h.a.FailedAttempts())
				}
				if got := lastSignedAt(t, h.a, deviceApp); !got.Equal(at) {
					t.Errorf("LastSignedAt moved to %v", got)
				}
				if p, ok := cmd.(ConfirmPayment); ok {
					if _, pending := h.a.Pending(p.PaymentID); !pending {
						t.Error("the payment is no longer pending")
					}
				}
				if h.a.Version != version {
					t.Errorf("version %d, was %d", h.a.Version, version)
				}
			}
			for _, a := range []*Account{h.a, h.replay()} {
				if !a.LockedUntil().IsZero() || a.FailedAttempts() != 0 {
					t.Errorf("locked until %v, %d failures", a.LockedUntil(), a.FailedAttempts())
				}
			}
			// A wrong signature at a spent time is still a failed proof: the
			// replay rule is no free guess.
			{
				cmd := in.build(h, deviceApp, fPassword)
				purpose, device, subject, _ := deviceChallengeOf(cmd)
				_, evs := h.refuse(withDevice(cmd, signWith(strangerKey, purpose, device, subject, at)), in.code)
				wantTypes(t, evs, in.failed)
				if n, _ := failedAttempt(t, evs); n != 1 {
					t.Errorf("a wrong signature at a spent time recorded as attempt %d", n)
				}
			}
			// Nothing was spent: this step's TOTP code still logs in.
			h.must(Login{SessionID: "after", DeviceID: deviceApp, Proofs: h.proofs(nil, fOTP)})
			// Any later time is fresh.
			h.now = h.now.Add(TOTPStep)
			cmd := in.build(h, deviceApp, fPassword, fOTP)
			purpose, device, subject, _ := deviceChallengeOf(cmd)
			later := at.Add(time.Nanosecond)
			evs := h.must(withDevice(cmd, h.signAt(purpose, device, subject, later)))
			wantDeviceUsed(t, evs, deviceApp, later)
			if got := lastSignedAt(t, h.replay(), deviceApp); !got.Equal(later) {
				t.Errorf("LastSignedAt %v, want %v", got, later)
			}
		})
		t.Run(in.name+"/OwnRegistrationTimeIsSpent", func(t *testing.T) {
			// The registration's own signature is the first the device used:
			// an instruction signed at its time is a replay (400 signed_at,
			// nothing recorded or counted; it was a failed proof).
			h := noDevices(t)
			h.apply(BankAccountBound{BankAccountToken: "tok", Last4: "3445", HolderName: holder})
			reg := h.registerCmd(deviceApp)
			h.must(reg)
			cmd := in.build(h, deviceApp, fPassword)
			purpose, device, subject, _ := deviceChallengeOf(cmd)
			e, evs := h.refuse(withDevice(cmd, h.signAt(purpose, device, subject, reg.SignedAt)), CodeInvalid)
			if e.Details["field"] != "signed_at" || len(evs) != 0 || h.a.FailedAttempts() != 0 {
				t.Errorf("details %v, recorded %v, %d failures", e.Details, types(evs), h.a.FailedAttempts())
			}
		})
	}
}

// TestDeviceProofBindsTheInstruction: a device's signature proves the one
// instruction it names, nothing else.
func TestDeviceProofBindsTheInstruction(t *testing.T) {
	t.Run("AnotherPayment", func(t *testing.T) {
		h := baseAccount(t)
		p1, p2 := h.initiate("10.00"), h.initiate("10.00")
		forP1 := h.sign("payment", deviceApp, p1.PaymentID)
		cmd := h.confirmCmd(p2.PaymentID, fPassword, fOTP)
		cmd.Device = forP1
		_, evs := h.refuse(cmd, CodeProofInvalid)
		wantTypes(t, evs, TypeVerificationFailed)
		if v := evs[0].(VerificationFailed); v.Purpose != "payment" || v.Reference != p2.PaymentID || v.DeviceID != deviceApp || len(v.OTPUses) != 0 {
			t.Errorf("event %+v", v)
		}
		if _, ok := h.a.Pending(p2.PaymentID); !ok {
			t.Error("p2 no longer pending")
		}
		// It still proves p1, whose payment then counts the TOTP.
		cmd = h.confirmCmd(p1.PaymentID, fPassword, fOTP)
		cmd.Device = forP1
		evs = wantDeviceUsed(t, h.must(cmd), deviceApp, forP1.SignedAt)
		if c := confirmed(t, evs); c.VerificationLevel != LevelTwoFactor {
			t.Errorf("level %s", c.VerificationLevel)
		}
	})
	t.Run("AnotherAmount", func(t *testing.T) {
		h := withBank(t)
		cmd := Withdraw{WithdrawalID: "w1", Amount: "20.00", DeviceID: deviceApp, Proofs: h.proofs(nil, fPassword),
			Device: h.sign("withdrawal", deviceApp, "10.00")}
		h.refuse(cmd, CodeProofInvalid)
		// The amount as sent: "10.0" is the amount of "10.00", but not its
		// text.
		cmd = Withdraw{WithdrawalID: "w1", Amount: "10.0", DeviceID: deviceApp, Proofs: h.proofs(nil, fPassword),
			Device: h.sign("withdrawal", deviceApp, "10.00")}
		h.refuse(cmd, CodeProofInvalid)
		cmd.Device = h.sign("withdrawal", deviceApp, "10.0")
		if w := wantDeviceUsed(t, h.must(cmd), deviceApp, cmd.Device.SignedAt)[0].(FundsWithdrawn); w.Amount.String() != "10.00" {
			t.Errorf("withdrawn %s", w.Amount)
		}
	})
	t.Run("AnotherChange", func(t *testing.T) {
		h := baseAccount(t)
		for _, dp := range []DeviceProof{
			h.sign(ChangeKindPhone, deviceApp, "+8613900000000"),
			h.sign(ChangeKindIdentity, deviceApp, newPhone),
			h.sign("login", deviceApp, ""),
		} {
			a := h.auth(ChangeKindPhone, newPhone, deviceApp, fPassword, fBio)
			a.Device = dp
			_, evs := h.refuse(phoneChange(a), CodeProofInvalid)
			wantTypes(t, evs, TypeVerificationFailed)
		}
		if h.a.Phone != "" {
			t.Errorf("phone changed to %q", h.a.Phone)
		}
	})
	t.Run("AnotherDevicesRegistration", func(t *testing.T) {
		// The step-up's device signature names the device it registers.
		h := baseAccount(t)
		cmd := h.withStepUp(h.registerCmd(deviceLaptop))
		cmd.Auth.Device = h.sign(ChangeKindDevice, deviceApp, "laptop-2")
		h.refuse(cmd, CodeProofInvalid)
	})
}

// TestR6Matrix: a one-time password counts as an independent second
// factor only when the instruction's device is proven (a registered device
// that signed it) and is not the device the password is delivered to. From
// a device that is only claimed it counts when it is the only category,
// never as a second one, and a refusal explains that the TOTP was not
// independent. Every instruction applies the rule alike.
func TestR6Matrix(t *testing.T) {
	know, poss := CategoryKnowledge, CategoryPossession
	rows := []struct {
		name    string
		device  string // the instruction's device (and a payment's initiator)
		signed  bool   // whether the device signs it
		factors []string
		// cats are the categories counted; excluded is true when a TOTP
		// verified but did not count as a second one.
		cats     []string
		excluded bool
	}{
		// (a) a claimed device other than the TOTP's.
		{"ClaimedOtherDevice/PasswordAndTOTP", deviceApp, false, []string{fPassword, fOTP}, []string{know}, true},
		{"UnregisteredClaimedDevice/PasswordAndTOTP", "laptop-9", false, []string{fPassword, fOTP}, []string{know}, true},
		// (b) a proven device other than the TOTP's.
		{"ProvenOtherDevice/PasswordAndTOTP", deviceApp, true, []string{fPassword, fOTP}, []string{know, poss}, false},
		{"ProvenLaptop/PasswordAndPhoneTOTP", deviceLaptop, true, []string{fPassword, fOTPApp}, []string{know, poss}, false},
		{"ProvenLaptop/PasswordAndBothTOTPs", deviceLaptop, true, []string{fPassword, fOTP, fOTPApp}, []string{know, poss}, false},
		// (c) a proven device that is the TOTP's own.
		{"ProvenOwnDevice/PasswordAndTOTP", deviceToken, true, []string{fPassword, fOTP}, []string{know}, true},
		{"ClaimedOwnDevice/PasswordAndTOTP", deviceToken, false, []string{fPassword, fOTP}, []string{know}, true},
		// A TOTP alone: one category from any device but its own.
		{"ClaimedOtherDevice/TOTPAlone", deviceApp, false, []string{fOTP}, []string{poss}, false},
		{"UnregisteredClaimedDevice/TOTPAlone", "laptop-9", false, []string{fOTP}, []string{poss}, false},
		{"ProvenOtherDevice/TOTPAlone", deviceApp, true, []string{fOTP}, []string{poss}, false},
		{"ClaimedOwnDevice/TOTPAlone", deviceToken, false, []string{fOTP}, nil, true},
		{"ProvenOwnDevice/TOTPAlone", deviceToken, true, []string{fOTP}, nil, true},
		// No TOTP: nothing to prove about independence.
		{"ClaimedDevice/PasswordOnly", "laptop-9", false, []string{fPassword}, []string{know}, false},
		// The attack from the issue: the phone, where fOTPApp is
		// delivered, calls itself "laptop-9" and signs nothing.
		{"Attack/PhoneCallsItselfLaptop", "laptop-9", false, []string{fPassword, fOTPApp}, []string{know}, true},
	}
	for _, in := range instructions {
		for _, r := range rows {
			t.Run(in.name+"/"+r.name, func(t *testing.T) {
				h := withBank(t)
				h.registerDevice(deviceLaptop)
				cmd := in.build(h, r.device, r.factors...)
				if r.signed {
					cmd = h.prove(cmd)
				}
				evs, err := h.decide(cmd)
				checkR6(t, h, in, cmd, r.cats, r.excluded, r.signed, r.factors, evs, err)
			})
		}
	}
	// Payments past the single factor cap: the level decides, and a
	// refusal names the TOTP that did not count.
	for _, r := range rows {
		t.Run("PaymentPastSingleFactorCap/"+r.name, func(t *testing.T) {
			h := baseAccount(t)
			h.registerDevice(deviceLaptop)
			cmd := h.payCmd("1000.01")
			cmd.DeviceID = r.device
			pi := h.must(cmd)[0].(PaymentInitiated)
			c := h.confirmCmd(pi.PaymentID, r.factors...)
			c.DeviceID = r.device
			var conf Command = c
			if r.signed {
				conf = h.prove(c)
			}
			evs, err := h.decide(conf)
			all := categoriesOf(h.a, r.factors)
			switch {
			case len(r.cats) >= 2:
				if err != nil {
					t.Fatal(err)
				}
				if pc := confirmed(t, evs); pc.VerificationLevel != LevelTwoFactor {
					t.Errorf("level %s", pc.VerificationLevel)
				}
			case len(r.cats) == 0:
				e := wantCode(t, err, CodeFactorNotIndependent)
				if e.Details["verification_level"] != "none" {
					t.Errorf("details %v", e.Details)
				}
				wantTypes(t, evs, spent(r.signed, TypePaymentRejected)...)
			case r.excluded && all >= 2:
				e := wantCode(t, err, CodeFactorNotIndependent)
				if e.Details["verification_level"] != LevelSingleFactor || !strings.Contains(e.Message, "R6") {
					t.Errorf("%v, details %v", e, e.Details)
				}
				wantTypes(t, evs, spent(r.signed, TypePaymentRejected)...)
			default:
				e := wantCode(t, err, CodeDailyLimitExceeded)
				if e.Details["cap"] != "single_factor_daily" {
					t.Errorf("details %v", e.Details)
				}
				wantTypes(t, evs, spent(r.signed, TypePaymentRejected)...)
			}
		})
	}
}

// categoriesOf counts the categories of factors (as if every one counted).
func categoriesOf(a *Account, factors []string) int {
	var cats []string
	for _, id := range factors {
		f, _ := a.Factor(id)
		if !slices.Contains(cats, f.Category) {
			cats = append(cats, f.Category)
		}
	}
	return len(cats)
}

// checkR6 checks the outcome of an instruction whose proofs verified and
// count cats (excluded: a TOTP verified without counting as a second
// category): a login, a 10.00 payment or withdrawal and a phone change
// succeed with cats when they count enough, and are refused, recorded,
// otherwise; a signed success ends with DeviceUsed, nothing else does.
func checkR6(t *testing.T, h *harness, in instruction, cmd Command, cats []string, excluded, signed bool, factors []string, evs []Event, err error) {
	t.Helper()
	need := 1
	if in.name == "Change" {
		need = 2
	}
	if len(cats) < need {
		code := CodeInsufficientVerification
		if in.name != "Change" || (excluded && categoriesOf(h.a, factors) >= need) {
			code = CodeFactorNotIndependent
		}
		e := wantCode(t, err, code)
		rejected := map[string]string{"Login": TypeLoginFailed, "Payment": TypePaymentRejected, "Withdrawal": TypeWithdrawalRejected, "Change": TypeChangeRejected}
		wantTypes(t, evs, spent(signed, rejected[in.name])...)
		if in.name == "Change" && e.Details["verified_categories"] != len(cats) {
			t.Errorf("details %v", e.Details)
		}
		if h.a.FailedAttempts() != 0 {
			t.Errorf("a refusal for independence counted as a failure: %d", h.a.FailedAttempts())
		}
		return
	}
	if err != nil {
		t.Fatalf("refused: %v", err)
	}
	if signed {
		_, device, _, _ := deviceChallengeOf(cmd)
		evs = wantDeviceUsed(t, evs, device, deviceProofOf(cmd).SignedAt)
	}
	for _, e := range evs {
		if e.EventType() == TypeDeviceUsed {
			t.Fatalf("an unsigned instruction recorded %v", types(evs))
		}
	}
	var got []string
	var ids []string
	level := ""
	switch v := evs[0].(type) {
	case LoginSucceeded:
		got, ids = v.Categories, v.FactorIDs
	case PaymentConfirmed:
		got, ids, level = v.Categories, v.FactorIDs, v.VerificationLevel
	case FundsWithdrawn:
		got, ids, level = v.Categories, v.FactorIDs, v.VerificationLevel
	case PhoneChanged:
		got, ids = v.Categories, v.FactorIDs
	default:
		t.Fatalf("events %v", types(evs))
	}
	want := slices.Clone(cats)
	slices.Sort(want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("categories %v, want %v", got, want)
	}
	if level != "" && level != levelOf(len(cats), false) {
		t.Errorf("level %s, want %s", level, levelOf(len(cats), false))
	}
	// Every proof verified is named, counted or not (R7 spends its code).
	if len(ids) != len(factors) {
		t.Errorf("factor ids %v, want all of %v", ids, factors)
	}
}

// TestR6AttackFromTheIssue: the phone, where the TOTP is delivered, sends
// the password and the TOTP claiming to be another device. Claimed, it
// reaches one factor only; it cannot sign as a device the account does not
// know, nor as a registered one whose key it does not have (a failed
// attempt either way, with the same answer, so it does not learn which
// devices are registered); and a second device it registers itself needs
// a step-up it cannot give.
func TestR6AttackFromTheIssue(t *testing.T) {
	h := withBank(t)
	h.registerDevice(deviceLaptop)
	attack := func() ConfirmPayment {
		cmd := h.payCmd("4000.00")
		cmd.DeviceID = "laptop-9"
		pi := h.must(cmd)[0].(PaymentInitiated)
		c := h.confirmCmd(pi.PaymentID, fPassword, fOTPApp)
		c.DeviceID = "laptop-9"
		return c
	}
	// Claimed: one factor, and the payment past the single factor cap is
	// refused for the TOTP's independence.
	e, evs := h.refuse(attack(), CodeFactorNotIndependent)
	wantTypes(t, evs, TypePaymentRejected)
	if e.Details["verification_level"] != LevelSingleFactor {
		t.Errorf("details %v", e.Details)
	}
	h.now = h.now.Add(TOTPStep)
	// Signed with the phone's key as "laptop-9", which is not registered:
	// a failed attempt (it was malformed input, nothing recorded, which
	// told the phone that laptop-9 is not registered).
	c := attack()
	c.Device = signWith(deviceKeys[deviceApp], "payment", "laptop-9", c.PaymentID, h.signedAt())
	unknown, evs := h.refuse(c, CodeProofInvalid)
	wantTypes(t, evs, TypeVerificationFailed)
	// Signed with the phone's key as the registered laptop: a failed
	// attempt, answered alike but for the count.
	c.DeviceID = deviceLaptop
	c.Device = signWith(deviceKeys[deviceApp], "payment", deviceLaptop, c.PaymentID, h.signedAt())
	registered, evs := h.refuse(c, CodeProofInvalid)
	wantTypes(t, evs, TypeVerificationFailed)
	if unknown.Message != registered.Message || unknown.Details["attempts_remaining"] != 4 || registered.Details["attempts_remaining"] != 3 {
		t.Errorf("unregistered %v %v, registered %v %v", unknown, unknown.Details, registered, registered.Details)
	}
	if _, pending := h.a.Pending(c.PaymentID); !pending {
		t.Error("the attacked payment is no longer pending")
	}
	// Registering "laptop-9" with a key of the phone's own needs two
	// categories; the phone's password and its own TOTP are one.
	reg := h.registerKeyCmd("laptop-9", keyOfSeed(99))
	reg.Auth = h.signedAuth(ChangeKindDevice, "laptop-9", deviceApp, fPassword, fOTPApp)
	_, evs = h.refuse(reg, CodeFactorNotIndependent)
	wantTypes(t, evs, TypeChangeRejected, TypeDeviceUsed)
	h.now = h.now.Add(TOTPStep)
	reg = h.registerKeyCmd("laptop-9", keyOfSeed(99))
	reg.Auth = h.auth(ChangeKindDevice, "laptop-9", "laptop-9", fPassword, fOTPApp)
	h.refuse(reg, CodeFactorNotIndependent)
	if _, ok := deviceOf(h.a, "laptop-9"); ok {
		t.Error("laptop-9 got registered")
	}
	// Before devices could be proven, the same proofs from the claimed
	// "laptop-9" were two factors; now even a small payment is single
	// factor.
	h.now = h.now.Add(TOTPStep)
	cmd := h.payCmd("10.00")
	cmd.DeviceID = "laptop-9"
	pi := h.must(cmd)[0].(PaymentInitiated)
	conf := h.confirmCmd(pi.PaymentID, fPassword, fOTPApp)
	conf.DeviceID = "laptop-9"
	if pc := confirmed(t, h.must(conf)); pc.VerificationLevel != LevelSingleFactor || !reflect.DeepEqual(pc.Categories, []string{CategoryKnowledge}) {
		t.Errorf("confirmed %+v", pc)
	}
}

// TestDeviceEvents: the aggregate folds the device events; events written
// before devices existed (no DeviceRegistered in the log) leave every
// device claimed, and a TOTP still counts there as the one factor.
func TestDeviceEvents(t *testing.T) {
	t.Run("OldDeviceRegisteredShape", func(t *testing.T) {
		// The first device's event has no label and no authorisation.
		key := base64.StdEncoding.EncodeToString(pubOf(deviceKeys[deviceApp]))
		payload := `{"device_id":"phone-1","public_key":"` + key + `","signed_at":"2026-11-25T10:00:00.001Z"}`
		e, err := DecodeEvent(TypeDeviceRegistered, 1, []byte(payload))
		if err != nil {
			t.Fatal(err)
		}
		want := DeviceRegistered{DeviceID: deviceApp, PublicKey: pubOf(deviceKeys[deviceApp]), SignedAt: t0.Add(time.Millisecond)}
		if !sameValue(reflect.ValueOf(e), reflect.ValueOf(want)) {
			t.Errorf("decoded %#v, want %#v", e, want)
		}
		if _, _, again, err := EncodeEvent(e); err != nil || string(again) != payload {
			t.Errorf("re-encoded %s, %v; want %s", again, err, payload)
		}
		du, err := DecodeEvent(TypeDeviceUsed, 1, []byte(`{"device_id":"phone-1","signed_at":"2026-11-25T10:00:00.002Z"}`))
		if err != nil {
			t.Fatal(err)
		}
		if !sameValue(reflect.ValueOf(du), reflect.ValueOf(DeviceUsed{DeviceID: deviceApp, SignedAt: t0.Add(2 * time.Millisecond)})) {
			t.Errorf("decoded %#v", du)
		}
		h := noDevices(t)
		h.apply(e, du)
		if got := lastSignedAt(t, h.a, deviceApp); !got.Equal(t0.Add(2 * time.Millisecond)) {
			t.Errorf("LastSignedAt %v", got)
		}
	})
	t.Run("LogWithoutDevices", func(t *testing.T) {
		h := noDevices(t)
		if n := len(h.a.Devices()); n != 0 {
			t.Fatalf("%d devices", n)
		}
		evs := h.must(Login{SessionID: "s1", DeviceID: deviceApp, Proofs: h.proofs(nil, fOTP)})
		if ls := evs[0].(LoginSucceeded); !reflect.DeepEqual(ls.Categories, []string{CategoryPossession}) || len(evs) != 1 {
			t.Errorf("events %v, login %+v", types(evs), ls)
		}
		h.now = h.now.Add(TOTPStep)
		evs = h.must(Login{SessionID: "s2", DeviceID: deviceApp, Proofs: h.proofs(nil, fPassword, fOTP)})
		if ls := evs[0].(LoginSucceeded); !reflect.DeepEqual(ls.Categories, []string{CategoryKnowledge}) {
			t.Errorf("login %+v", ls)
		}
	})
	t.Run("DeviceUsedNeverMovesBack", func(t *testing.T) {
		h := baseAccount(t)
		at := lastSignedAt(t, h.a, deviceApp)
		h.apply(DeviceUsed{DeviceID: deviceApp, SignedAt: at.Add(time.Second)})
		h.apply(DeviceUsed{DeviceID: deviceApp, SignedAt: at})
		h.apply(DeviceUsed{DeviceID: "unknown", SignedAt: at.Add(time.Hour)})
		for _, a := range []*Account{h.a, h.replay()} {
			if got := lastSignedAt(t, a, deviceApp); !got.Equal(at.Add(time.Second)) {
				t.Errorf("LastSignedAt %v, want %v", got, at.Add(time.Second))
			}
			if _, ok := deviceOf(a, "unknown"); ok || len(a.Devices()) != 2 {
				t.Errorf("devices %+v", a.Devices())
			}
		}
	})
	t.Run("DevicesAreCopies", func(t *testing.T) {
		h := baseAccount(t)
		ds := h.a.Devices()
		for i := range ds {
			ds[i].LastSignedAt = time.Time{}
			ds[i].Label = "changed"
		}
		for _, d := range h.a.Devices() {
			if d.LastSignedAt.IsZero() || d.Label == "changed" {
				t.Errorf("device %s changed through Devices()", d.ID)
			}
		}
	})
}

// TestHolderUnlock: a locked holder lifts the lock early with proofs of
// two categories sent from a registered device that signs the unlock.
// Without the device's signature, or with one at a time already used,
// that is malformed input; a wrong signature (or one from a device the
// account does not know) or a wrong proof is recorded and counted, and
// the lock holds; too few categories (a TOTP on the sending device does
// not count, R6) are refused and recorded.
func TestHolderUnlock(t *testing.T) {
	unlock := func(device string, proofs ...Proof) Unlock {
		return Unlock{Reason: "it was me", Auth: Authorisation{DeviceID: device, Proofs: proofs}}
	}
	pw := Proof{FactorID: fPassword, Password: testPassword}
	wrongPW := Proof{FactorID: fPassword, Password: "wrong password"}
	otp := func(h *harness) Proof { return h.proofs(nil, fOTP)[0] }
	wrongOTP := func(h *harness) Proof { return Proof{FactorID: fOTP, Code: wrongCode(h.proofs(nil, fOTP)[0].Code)} }
	tests := []struct {
		name  string
		cmd   func(h *harness) Unlock
		code  string // "" for success
		field string // of an invalid_request
		types []string
		// spent is true when the TOTP code of the attempt is used up.
		spent bool
	}{
		{"ProvenDeviceTwoCategories", func(h *harness) Unlock { return h.prove(unlock(deviceApp, pw, otp(h))).(Unlock) },
			"", "", []string{TypeAccessUnlocked, TypeHolderNotified, TypeDeviceUsed}, true},
		{"NoDevice", func(h *harness) Unlock { return unlock("", pw, otp(h)) }, CodeInvalid, "device_id", nil, false},
		{"ClaimedDevice", func(h *harness) Unlock { return unlock(deviceApp, pw, otp(h)) }, CodeInvalid, "device_signature", nil, false},
		// Was 400 invalid_request (device_id): now a failed proof like a
		// wrong signature, so it does not tell which devices exist.
		{"UnregisteredDevice", func(h *harness) Unlock { return h.prove(unlock("laptop-9", pw, otp(h))).(Unlock) },
			CodeAccessLocked, "", []string{TypeVerificationFailed}, false},
		{"SignedTooLongAgo", func(h *harness) Unlock {
			c := unlock(deviceApp, pw, otp(h))
			c.Auth.Device = h.signAt(ChangeKindUnlock, deviceApp, "", h.now.Add(-DeviceSkew-time.Second))
			return c
		}, CodeInvalid, "signed_at", nil, false},
		{"WrongDeviceSignature", func(h *harness) Unlock {
			c := unlock(deviceApp, pw, otp(h))
			c.Auth.Device = signWith(strangerKey, ChangeKindUnlock, deviceApp, "", h.signedAt())
			return c
		}, CodeAccessLocked, "", []string{TypeVerificationFailed}, false},
		{"SignedForAnotherPurpose", func(h *harness) Unlock {
			c := unlock(deviceApp, pw, otp(h))
			c.Auth.Device = h.sign("login", deviceApp, "")
			return c
		}, CodeAccessLocked, "", []string{TypeVerificationFailed}, false},
		// Was a failed proof: a signature that verifies at a spent time is
		// the device's own retry, malformed input, not counted.
		{"ReplayedDeviceSignature", func(h *harness) Unlock {
			c := unlock(deviceApp, pw, otp(h))
			c.Auth.Device = h.signAt(ChangeKindUnlock, deviceApp, "", lastSignedAt(h.t, h.a, deviceApp))
			return c
		}, CodeInvalid, "signed_at", nil, false},
		{"WrongSignatureAtSpentTime", func(h *harness) Unlock {
			c := unlock(deviceApp, pw, otp(h))
			c.Auth.Device = signWith(strangerKey, ChangeKindUnlock, deviceApp, "", lastSignedAt(h.t, h.a, deviceApp))
			return c
		}, CodeAccessLocked, "", []string{TypeVerificationFailed}, false},
		{"WrongPassword", func(h *harness) Unlock { return h.prove(unlock(deviceApp, wrongPW, otp(h))).(Unlock) },
			CodeAccessLocked, "", []string{TypeVerificationFailed, TypeDeviceUsed}, true},
		{"WrongTOTP", func(h *harness) Unlock { return h.prove(unlock(deviceApp, pw, wrongOTP(h))).(Unlock) },
			CodeAccessLocked, "", []string{TypeVerificationFailed, TypeDeviceUsed}, false},
		// Proofs naming one category are refused before any is checked,
		// so the refusal does not tell whether the password was right.
		{"OneCategory", func(h *harness) Unlock { return h.prove(unlock(deviceApp, pw)).(Unlock) },
			CodeInvalid, "proofs", nil, false},
		// R6: the TOTP delivered to the sending device is no second
		// category, signed or not.
		{"TOTPOfTheSendingDevice", func(h *harness) Unlock { return h.prove(unlock(deviceToken, pw, otp(h))).(Unlock) },
			CodeInsufficientVerification, "", []string{TypeChangeRejected, TypeDeviceUsed}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := baseAccount(t)
			lockOut(h)
			h.now = h.now.Add(time.Minute)
			until, failures, version := h.a.LockedUntil(), h.a.FailedAttempts(), h.a.Version
			cmd := tc.cmd(h)
			code := cmd.Auth.Proofs[len(cmd.Auth.Proofs)-1]
			evs, err := h.decide(cmd)
			wantTypes(t, evs, tc.types...)
			// Whether the attempt spent its TOTP code (R7); a login could
			// not tell during the lock.
			if code.FactorID == fOTP {
				step := TOTPStepAt(h.now)
				for _, a := range []*Account{h.a, h.replay()} {
					if spent := a.otpLast[fOTP] >= step; spent != tc.spent {
						t.Errorf("code spent %v, want %v", spent, tc.spent)
					}
				}
			}
			if tc.code == "" {
				if err != nil {
					t.Fatal(err)
				}
				evs = wantDeviceUsed(t, evs, cmd.Auth.DeviceID, cmd.Auth.Device.SignedAt)
				wantNotified(t, evs, TypeAccessUnlocked, HolderNotified{Change: ChangeKindUnlock})
				u := evs[0].(AccessUnlocked)
				if u.Staff != (Staff{}) || u.Reason != cmd.Reason || u.Authorised.DeviceID != cmd.Auth.DeviceID ||
					!reflect.DeepEqual(u.Authorised.Categories, []string{CategoryKnowledge, CategoryPossession}) {
					t.Errorf("event %+v", u)
				}
				for _, a := range []*Account{h.a, h.replay()} {
					if !a.LockedUntil().IsZero() || a.FailedAttempts() != 0 {
						t.Errorf("locked until %v, %d failures", a.LockedUntil(), a.FailedAttempts())
					}
				}
				h.must(Login{SessionID: "s1", DeviceID: deviceApp, Proofs: h.proofs(nil, fPassword)})
				return
			}
			e := wantCode(t, err, tc.code)
			if tc.field != "" && e.Details["field"] != tc.field {
				t.Errorf("details %v, want field %s", e.Details, tc.field)
			}
			if len(evs) == 0 && (h.a.Version != version || h.a.FailedAttempts() != failures) {
				t.Errorf("version %d, was %d; %d failures, were %d", h.a.Version, version, h.a.FailedAttempts(), failures)
			}
			wantNoNotice(t, evs)
			for _, ev := range evs {
				switch v := ev.(type) {
				case VerificationFailed:
					if v.Purpose != ChangeKindUnlock || v.FailedAttempts != failures+1 || !v.LockedUntil.Equal(until) || e.Details["locked_until"] == nil {
						t.Errorf("event %+v, details %v", v, e.Details)
					}
				case ChangeRejected:
					if v.Change != ChangeKindUnlock || e.Details["verified_categories"] != 1 {
						t.Errorf("event %+v, details %v", v, e.Details)
					}
				}
			}
			// The lock holds.
			for _, a := range []*Account{h.a, h.replay()} {
				if a.LockedUntil().Before(until) {
					t.Errorf("locked until %v, was %v", a.LockedUntil(), until)
				}
			}
			h.refuse(Login{DeviceID: deviceApp, Proofs: h.proofs(nil, fPassword)}, CodeAccessLocked)
		})
	}
	t.Run("NotLocked", func(t *testing.T) {
		h := baseAccount(t)
		if _, evs := h.refuse(h.prove(unlock(deviceApp, pw, otp(h))), CodeConflict); len(evs) != 0 {
			t.Errorf("recorded %v", types(evs))
		}
		lockOut(h)
		h.now = h.a.LockedUntil()
		h.refuse(h.prove(unlock(deviceApp, pw, otp(h))), CodeConflict)
	})
	t.Run("OneReasonForAnyFailedProof", func(t *testing.T) {
		// The early unlock is tried during a lock, which is there to stop
		// guessing: whichever proof failed, the answer and the recorded
		// reason are the same, so a guessed password is not confirmed by a
		// refusal that blames only the TOTP.
		type outcome struct {
			err    *Error
			reason string
		}
		try := func(proofs func(h *harness) []Proof) outcome {
			t.Helper()
			h := baseAccount(t)
			lockOut(h)
			h.now = h.now.Add(time.Minute)
			e, evs := h.refuse(h.prove(unlock(deviceApp, proofs(h)...)), CodeAccessLocked)
			wantTypes(t, evs, TypeVerificationFailed, TypeDeviceUsed)
			return outcome{e, evs[0].(VerificationFailed).Reason}
		}
		cases := map[string]outcome{
			"WrongPassword":     try(func(h *harness) []Proof { return []Proof{wrongPW, otp(h)} }),
			"WrongTOTP":         try(func(h *harness) []Proof { return []Proof{pw, wrongOTP(h)} }),
			"BothWrong":         try(func(h *harness) []Proof { return []Proof{wrongPW, wrongOTP(h)} }),
			"WrongTOTPFirst":    try(func(h *harness) []Proof { return []Proof{wrongOTP(h), pw} }),
			"WrongPasswordLast": try(func(h *harness) []Proof { return []Proof{otp(h), wrongPW} }),
		}
		base := cases["WrongPassword"]
		if base.reason != "the proofs did not verify" || !strings.HasPrefix(base.err.Message, base.reason+";") {
			t.Errorf("reason %q, message %q", base.reason, base.err.Message)
		}
		for name, o := range cases {
			if o.reason != base.reason || o.err.Code != base.err.Code || o.err.Message != base.err.Message ||
				!reflect.DeepEqual(o.err.Details, base.err.Details) {
				t.Errorf("%s: %v %v (recorded %q)\nwrong password: %v %v (recorded %q)", name, o.err, o.err.Details, o.reason,
					base.err, base.err.Details, base.reason)
			}
			for _, word := range []string{"password", "totp", "code", fPassword, fOTP} {
				if strings.Contains(strings.ToLower(o.err.Message), word) || strings.Contains(strings.ToLower(o.reason), word) {
					t.Errorf("%s: %q (recorded %q) names %q", name, o.err.Message, o.reason, word)
				}
			}
		}
	})
}

// wrongCode returns a code of code's length other than code.
func wrongCode(code string) string {
	b := []byte(code)
	b[len(b)-1] = '0' + (b[len(b)-1]-'0'+1)%10
	return string(b)
}

// spent is the events of a refusal: a signed instruction's refusal after
// its device signature verified spends it too, so DeviceUsed follows.
func spent(signed bool, types ...string) []string {
	if signed {
		return append(types, TypeDeviceUsed)
	}
	return types
}

// TestRefusedInstructionSpendsTheDeviceSignature: a device signature that
// verified is spent even when the instruction is refused, so a refused
// withdrawal cannot be sent again once money arrives (the review's third
// finding). Sent again, it is malformed input (400 signed_at: only the
// device's key makes it, so it is a retry, not a guess), not a failed
// proof as it was: nothing recorded or counted.
func TestRefusedInstructionSpendsTheDeviceSignature(t *testing.T) {
	h := withBank(t)
	cmd := h.prove(Withdraw{WithdrawalID: "w1", Amount: "500000.00", Currency: "CNY", DeviceID: deviceApp, Proofs: h.proofs(nil, fPassword)})
	_, evs := h.refuse(cmd, CodeInsufficientFunds)
	wantTypes(t, evs, TypeWithdrawalRejected, TypeDeviceUsed)
	h.deposit("500000.00")
	version := h.a.Version
	e, evs := h.refuse(cmd, CodeInvalid)
	if e.Details["field"] != "signed_at" || len(evs) != 0 || h.a.Version != version || h.a.FailedAttempts() != 0 {
		t.Errorf("details %v, recorded %v, %d failures", e.Details, types(evs), h.a.FailedAttempts())
	}
	if bal := h.a.Available(dec("0"), 0); !bal.Amount.Equal(dec("600000.00")) {
		t.Errorf("available %s after the replay, want 600000.00", bal)
	}
}

// TestDeviceIDAtMost100: the device id of a login, a payment confirmation,
// a withdrawal, a change's step-up and an early unlock is 1 to 100
// characters, like a registered device's: a longer one is malformed input
// (400 invalid_request, field device_id), refused before anything is
// checked, recorded, counted or spent.
// TestDeviceIDIsAnIdentifier: a device id is 1 to 64 letters, digits or
// ._:- on every instruction; a longer one and a device's display name
// (which names its owner, and a device id stays in clear in the log, R20)
// are refused, recording nothing.
func TestDeviceIDIsAnIdentifier(t *testing.T) {
	long, longest := strings.Repeat("d", 65), strings.Repeat("d", 64)
	builds := []struct {
		name  string
		build func(h *harness, device string) Command
	}{
		{"Login", func(h *harness, device string) Command {
			return Login{SessionID: "s1", TokenHash: []byte{1}, DeviceID: device, Proofs: h.proofs(nil, fPassword, fOTP)}
		}},
		{"Confirm", func(h *harness, device string) Command {
			// Initiated from a valid device: only the confirmation's is long.
			c := h.confirmCmd(h.initiate("10.00").PaymentID, fPassword, fOTP)
			c.DeviceID = device
			return c
		}},
		{"Withdrawal", func(h *harness, device string) Command {
			return Withdraw{WithdrawalID: "w1", Amount: "10.00", Currency: "CNY", DeviceID: device, Proofs: h.proofs(nil, fPassword, fOTP)}
		}},
		{"Change", func(h *harness, device string) Command {
			return ChangePhone{Phone: newPhone, Auth: h.auth(ChangeKindPhone, newPhone, device, fPassword, fBio)}
		}},
	}
	for _, b := range builds {
		t.Run(b.name+"/Of65", func(t *testing.T) {
			h := withBank(t)
			cmd := b.build(h, long)
			version := h.a.Version
			e, evs := h.refuse(cmd, CodeInvalid)
			if e.Details["field"] != "device_id" || len(evs) != 0 || h.a.Version != version || h.a.FailedAttempts() != 0 {
				t.Errorf("details %v, recorded %v, %d failures", e.Details, types(evs), h.a.FailedAttempts())
			}
			// Signed or not: the length is checked first.
			if _, evs := h.refuse(withDevice(cmd, signWith(strangerKey, "login", long, "", h.signedAt())), CodeInvalid); len(evs) != 0 {
				t.Errorf("signed: recorded %v", types(evs))
			}
			// Nothing was spent: the same TOTP code still logs in.
			h.must(Login{SessionID: "after", DeviceID: deviceApp, Proofs: h.proofs(nil, fOTP)})
		})
		t.Run(b.name+"/Of64", func(t *testing.T) {
			h := withBank(t)
			h.must(b.build(h, longest))
		})
		for _, name := range []string{"Ouyang Xiaoming's iPhone", "欧阳晓明的iPhone", "li@example.com"} {
			t.Run(b.name+"/DisplayName", func(t *testing.T) {
				h := withBank(t)
				if e, evs := h.refuse(b.build(h, name), CodeInvalid); e.Details["field"] != "device_id" || len(evs) != 0 {
					t.Errorf("%q: details %v, recorded %v", name, e.Details, types(evs))
				}
			})
		}
		t.Run(b.name+"/Empty", func(t *testing.T) {
			h := withBank(t)
			if e, evs := h.refuse(b.build(h, ""), CodeInvalid); e.Details["field"] != "device_id" || len(evs) != 0 {
				t.Errorf("details %v, recorded %v", e.Details, types(evs))
			}
		})
	}
	t.Run("Unlock/Of65", func(t *testing.T) {
		h := baseAccount(t)
		lockOut(h)
		failures, version := h.a.FailedAttempts(), h.a.Version
		cmd := Unlock{Reason: "me", Auth: Authorisation{DeviceID: long, Proofs: h.proofs(nil, fPassword, fOTP),
			Device: signWith(deviceKeys[deviceApp], ChangeKindUnlock, long, "", h.signedAt())}}
		e, evs := h.refuse(cmd, CodeInvalid)
		if e.Details["field"] != "device_id" || len(evs) != 0 || h.a.Version != version || h.a.FailedAttempts() != failures {
			t.Errorf("details %v, recorded %v, %d failures", e.Details, types(evs), h.a.FailedAttempts())
		}
	})
}

// TestEarlyUnlockAttemptsAreBounded: during a lock, failed attempts to
// unlock early from a registered device are counted, and once they reach
// twice the lock's threshold no further attempt is checked.
func TestEarlyUnlockAttemptsAreBounded(t *testing.T) {
	h := baseAccount(t)
	lockOut(h)
	wrong := []Proof{{FactorID: fPassword, Password: "still guessing"}, {FactorID: fOTP, Code: "000000"}}
	for i := 0; i < h.p.MaxFailures; i++ {
		h.now = h.now.Add(time.Second)
		cmd := h.prove(Unlock{Reason: "me", Auth: Authorisation{DeviceID: deviceApp, Proofs: wrong}}).(Unlock)
		_, evs := h.refuse(cmd, CodeAccessLocked)
		wantTypes(t, evs, TypeVerificationFailed, TypeDeviceUsed)
	}
	h.now = h.now.Add(time.Second)
	cmd := h.prove(Unlock{Reason: "me", Auth: Authorisation{DeviceID: deviceApp, Proofs: wrong}}).(Unlock)
	_, evs := h.refuse(cmd, CodeAccessLocked)
	wantTypes(t, evs, TypeVerificationFailed)
	if v := evs[0].(VerificationFailed); v.Reason != "access locked" {
		t.Errorf("the attempt past the bound was checked: %+v", v)
	}
}

// TestRevokeDevice: the holder revokes a device with a step-up, an
// operator after an identity check; a revoked device's signature proves
// nothing more, and an account whose devices are all revoked registers a
// first device again with the session alone.
func TestRevokeDevice(t *testing.T) {
	t.Run("HolderWithStepUp", func(t *testing.T) {
		h := baseAccount(t) // phone-1 and token-2 registered
		h.refuse(RevokeDevice{DeviceID: deviceToken, Auth: Authorisation{DeviceID: deviceApp, Proofs: h.proofs(nil, fPassword)}},
			CodeInsufficientVerification)
		evs := h.must(RevokeDevice{DeviceID: deviceToken, Reason: "lost", Auth: h.signedAuth(ChangeKindDeviceRevoke, deviceToken, deviceApp, fPassword, fBio)})
		if evs[len(evs)-1].EventType() == TypeDeviceUsed {
			evs = evs[:len(evs)-1]
		}
		wantNotified(t, evs, TypeDeviceRevoked, HolderNotified{Change: ChangeKindDeviceRevoke, Reference: deviceToken})
		if len(h.a.Devices()) != 1 {
			t.Fatalf("devices after the revocation: %+v", h.a.Devices())
		}
		// The revoked device's signature is now a failed proof.
		_, evs = h.refuse(Login{DeviceID: deviceToken, Device: h.sign("login", deviceToken, ""), Proofs: h.proofs(nil, fPassword)}, CodeAuthFailed)
		wantTypes(t, evs, TypeLoginFailed)
		h.refuse(RevokeDevice{DeviceID: deviceToken, Auth: h.signedAuth(ChangeKindDeviceRevoke, deviceToken, deviceApp, fPassword, fBio)}, CodeNotFound)
	})
	t.Run("OperatorAfterIdentityCheck", func(t *testing.T) {
		h := baseAccount(t)
		h.refuse(RevokeDevice{DeviceID: deviceApp, Staff: uncheckedOp}, CodeInvalid)
		wantTypes(t, h.must(RevokeDevice{DeviceID: deviceApp, Reason: "stolen phone", Staff: operator}), TypeDeviceRevoked, TypeHolderNotified)
		wantTypes(t, h.must(RevokeDevice{DeviceID: deviceToken, Staff: operator}), TypeDeviceRevoked, TypeHolderNotified)
		// No device left: the holder registers a first one with the
		// session alone.
		if len(h.a.Devices()) != 0 {
			t.Fatalf("devices: %+v", h.a.Devices())
		}
		h.registerDevice(deviceLaptop)
		if len(h.a.Devices()) != 1 {
			t.Fatalf("devices after a new first one: %+v", h.a.Devices())
		}
	})
}
