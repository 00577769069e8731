package domain

import (
	"encoding/base64"
	"slices"
	"time"
	"unicode/utf8"
)

// Devices (R6, R26): a holder registers a device with an Ed25519 public
// key, and an instruction from it carries the device's signature over
// DeviceChallenge, so the device that sends an instruction is proven, not
// claimed. A one-time password counts as an independent second factor only
// when the instruction comes from a proven device other than the one the
// password is delivered to.

// DeviceSkew is how far a device signature's time may be from the ledger's
// clock.
const DeviceSkew = 2 * time.Minute

// maxDevices bounds the devices an account may register.
const maxDevices = 10

// maxDeviceID bounds a device id.
const maxDeviceID = 64

// deviceIDRule is the refusal of a device id validDeviceID does not take.
const deviceIDRule = "device_id is required: 1 to 64 letters, digits or ._:- (an identifier the app generates; the device's name goes in its label)"

// validDeviceID accepts an identifier: 1 to 64 ASCII letters, digits or
// ".", "_", ":", "-". A device id is in clear in the log (R20 does not seal
// it: it names the device in signed challenges and in every instruction's
// event), so a device's display name, which usually carries its owner's
// name, is refused here and belongs in the sealed label.
func validDeviceID(s string) bool {
	if s == "" || len(s) > maxDeviceID {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

// DeviceProof is a device's signature over an instruction: the registered
// device, when it signed, and its Ed25519 signature over DeviceChallenge.
// The zero value proves nothing (the device is then only claimed).
type DeviceProof struct {
	SignedAt  time.Time
	Signature []byte
}

// DeviceChallenge is what a device signs for an instruction: the UTF-8 text
//
//	"payledger/device/v1\n" + purpose + "\n" + accountID + "\n" + deviceID + "\n" + signedAt + "\n" + subject
//
// with signedAt in RFC 3339 UTC with nanoseconds as the client sends it.
// Purposes and subjects: "login" and ""; "payment" and the payment id;
// "withdrawal" and the amount as sent; "device_registration" and the new
// key in standard base64; a change's kind and the subject its
// ChangeChallenge names. A signature is accepted once per device: its time
// must be later than the last one the device's instructions used.
func DeviceChallenge(purpose, accountID, deviceID string, signedAt time.Time, subject string) []byte {
	return []byte("payledger/device/v1\n" + purpose + "\n" + accountID + "\n" + deviceID + "\n" +
		signedAt.UTC().Format(time.RFC3339Nano) + "\n" + subject)
}

// Device is a registered device as the aggregate knows it.
type Device struct {
	ID        string
	PublicKey []byte
	Label     string
	// LastSignedAt is the time of the last signature an instruction of
	// the device used; an older or equal one is a replay.
	LastSignedAt time.Time
}

// Devices returns the registered devices.
func (a *Account) Devices() []Device {
	out := make([]Device, 0, len(a.devices))
	for _, d := range a.devices {
		out = append(out, *d)
	}
	return out
}

// deviceCheck is the outcome of checking an instruction's device proof.
type deviceCheck struct {
	proven bool
	used   *DeviceUsed
}

// verifyDevice checks the proof that deviceID sent an instruction of
// purpose about subject. No signature leaves the device claimed, not
// proven. A time too far from now is malformed input, checked before the
// device is looked up; a signature that does not verify, or comes from a
// device that is not registered, is one failed proof (R9), so that nobody
// learns an account's devices by trying names. A signature that verifies
// but was already used (or an older one) is malformed input, not counted:
// only the device's key can make it, so it is a client's retry, not a
// guess.
func (a *Account) verifyDevice(deviceID string, dp DeviceProof, purpose, subject string, now time.Time) (deviceCheck, *Error, *proofFailure) {
	if len(dp.Signature) == 0 {
		return deviceCheck{}, nil, nil
	}
	if dp.SignedAt.Before(now.Add(-DeviceSkew)) || dp.SignedAt.After(now.Add(DeviceSkew)) {
		return deviceCheck{}, Invalid("signed_at", "signed_at must be within 2 minutes of the ledger's clock; sign again"), nil
	}
	d, ok := a.devices[deviceID]
	if !ok || !VerifySignature(d.PublicKey, DeviceChallenge(purpose, a.ID, deviceID, dp.SignedAt, subject), dp.Signature) {
		return deviceCheck{}, nil, &proofFailure{"the device signature does not verify for a device registered on this account"}
	}
	if !dp.SignedAt.After(d.LastSignedAt) {
		return deviceCheck{}, Invalid("signed_at", "the device has already signed an instruction at this time or later: sign again"), nil
	}
	return deviceCheck{proven: true, used: &DeviceUsed{DeviceID: deviceID, SignedAt: dp.SignedAt}}, nil, nil
}

// withUse appends the device's use to events that record a success.
func (c deviceCheck) withUse(events []Event) []Event {
	if c.used != nil {
		events = append(events, *c.used)
	}
	return events
}

// decideHolderUnlock lifts R9's lock before it expires at the holder's
// request: only from a registered device that signs it, whose key a
// guesser does not have, and with proofs of two factor categories. Its
// proofs are checked during the lock, which is the point; a failure is
// recorded like any verification and the lock stays.
func decideHolderUnlock(a *Account, c Unlock, p Policy, now time.Time) ([]Event, error) {
	if a.lockedUntil.IsZero() || !now.Before(a.lockedUntil) {
		return nil, Errorf(CodeConflict, "account %s is not locked", a.ID)
	}
	auth := c.Auth
	if !validDeviceID(auth.DeviceID) {
		return nil, Invalid("device_id", deviceIDRule)
	}
	if len(auth.Device.Signature) == 0 {
		return nil, Invalid("device_signature", "an early unlock must come from a registered device that signs it; otherwise wait for the lock to end or ask an operator")
	}
	n := a.failures
	// The lock exists to stop guessing, so an early unlock gets as many
	// tries as a login had before the lock, and no more until it ends.
	if n >= 2*p.MaxFailures {
		until := a.lockedUntil.UTC().Format(time.RFC3339Nano)
		return a.lockedAttempt(ChangeKindUnlock, "", auth.DeviceID, n),
			Errorf(CodeAccessLocked, "too many failed attempts to unlock early; access stays locked until %s", until).With("locked_until", until)
	}
	// Proofs naming fewer than two categories are refused before any is
	// checked, so that a refusal never tells which proof was right.
	if a.namedCategories(auth.Proofs) < RequiredCategories(ChangeKindUnlock) {
		return nil, Invalid("proofs", "an early unlock needs proofs of two factor categories")
	}
	locked := func(fail *proofFailure, spent []OTPUse) ([]Event, error) {
		until := a.lockedUntil.UTC().Format(time.RFC3339Nano)
		return []Event{VerificationFailed{Purpose: ChangeKindUnlock, DeviceID: auth.DeviceID, Reason: fail.reason, FailedAttempts: n + 1,
				LockedUntil: a.lockedUntil, OTPUses: spent}},
			Errorf(CodeAccessLocked, "%s; access stays locked until %s", fail.reason, until).With("locked_until", until)
	}
	dv, bad, fail := a.verifyDevice(auth.DeviceID, auth.Device, ChangeKindUnlock, "", now)
	if bad != nil {
		return nil, bad
	}
	if fail != nil {
		return locked(fail, nil)
	}
	if !dv.proven {
		return nil, Invalid("device_signature", "an early unlock must come from a registered device that signs it")
	}
	if usable := a.usableCategories(ChangeKindUnlock, "", now); usable < RequiredCategories(ChangeKindUnlock) {
		return nil, Errorf(CodeInsufficientVerification, "an early unlock needs proofs of 2 factor categories, and the account's usable factors span %d; wait for the lock to end or ask an operator", usable).
			With("required_categories", 2).With("verified_categories", 0)
	}
	v, bad, fail := a.verifyProofs(p, auth.Proofs, []string{auth.DeviceID}, nil, true, dv.proven, now)
	if bad != nil {
		return nil, bad
	}
	if fail != nil {
		// One reason for whichever proof failed: the early unlock is tried
		// during a lock, and must not confirm a guessed password.
		evs, err := locked(&proofFailure{"the proofs did not verify"}, v.otpUses)
		return dv.withUse(evs), err
	}
	if len(v.categories) < RequiredCategories(ChangeKindUnlock) {
		e := Errorf(CodeInsufficientVerification, "an early unlock needs proofs of 2 independent factor categories; these count %d", len(v.categories)).
			With("required_categories", 2).With("verified_categories", len(v.categories))
		return dv.withUse([]Event{ChangeRejected{Change: ChangeKindUnlock, DeviceID: auth.DeviceID, Code: e.Code, Reason: e.Message, Details: e.Details, OTPUses: v.otpUses}}), e
	}
	by := Authorised{DeviceID: auth.DeviceID, FactorIDs: v.factorIDs, Categories: v.categories, OTPUses: v.otpUses}
	return dv.withUse([]Event{AccessUnlocked{Reason: limitText(c.Reason, 200), Authorised: by}, HolderNotified{Change: ChangeKindUnlock}}), nil
}

// namedCategories counts the categories of the active factors proofs name,
// before any proof is checked.
func (a *Account) namedCategories(proofs []Proof) int {
	var seen []string
	for _, pr := range proofs {
		if f, ok := a.factors[pr.FactorID]; ok && f.Active && !slices.Contains(seen, f.Category) {
			seen = append(seen, f.Category)
		}
	}
	return len(seen)
}

func decideRegisterDevice(a *Account, c RegisterDevice, p Policy, now time.Time) ([]Event, error) {
	switch {
	case !validDeviceID(c.DeviceID):
		return nil, Invalid("device.device_id", deviceIDRule)
	case len(c.PublicKey) != 32:
		return nil, Invalid("device.public_key", "public_key must be a base64 Ed25519 public key (32 bytes)")
	case utf8.RuneCountInString(c.Label) > 100:
		return nil, Invalid("device.label", "label is at most 100 characters")
	}
	if _, dup := a.devices[c.DeviceID]; dup {
		return nil, Errorf(CodeConflict, "device %s is already registered", c.DeviceID)
	}
	if len(a.devices) >= maxDevices {
		return nil, Errorf(CodeConflict, "an account may register at most %d devices", maxDevices)
	}
	if c.SignedAt.Before(now.Add(-DeviceSkew)) || c.SignedAt.After(now.Add(DeviceSkew)) {
		return nil, Invalid("device.signed_at", "signed_at must be within 2 minutes of the ledger's clock; sign again")
	}
	subject := base64.StdEncoding.EncodeToString(c.PublicKey)
	if !VerifySignature(c.PublicKey, DeviceChallenge(ChangeKindDevice, a.ID, c.DeviceID, c.SignedAt, subject), c.Signature) {
		return nil, Invalid("device.signature", "the signature does not verify with public_key: sign the registration's challenge with the device's key")
	}
	ev := DeviceRegistered{DeviceID: c.DeviceID, PublicKey: c.PublicKey, Label: c.Label, SignedAt: c.SignedAt}
	if len(a.devices) == 0 {
		// The first device needs only the session: there is no device yet
		// to prove anything with, and the holder is told.
		return []Event{ev, HolderNotified{Change: ChangeKindDevice, Reference: c.DeviceID}}, nil
	}
	return a.authoriseChange(p, now, ChangeKindDevice, c.DeviceID, c.DeviceID, c.Auth, func(by Authorised) Event {
		ev.Authorised = by
		return ev
	})
}

func decideRevokeDevice(a *Account, c RevokeDevice, p Policy, now time.Time) ([]Event, error) {
	if _, ok := a.devices[c.DeviceID]; !ok {
		return nil, Errorf(CodeNotFound, "device %s is not registered on this account", c.DeviceID).With("field", "device_id")
	}
	ev := DeviceRevoked{DeviceID: c.DeviceID, Reason: limitText(c.Reason, 200), Staff: c.Staff}
	return a.operatorOrStepUp(p, now, ChangeKindDeviceRevoke, c.DeviceID, c.DeviceID, c.Staff, c.Auth, func(by Authorised) Event {
		ev.Authorised = by
		return ev
	})
}
