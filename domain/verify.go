package domain

import (
	"slices"
	"time"
)

// maxProofs bounds the proofs one instruction may carry.
const maxProofs = 5

// verified is the outcome of checking a set of proofs.
type verified struct {
	categories []string
	factorIDs  []string
	hasCert    bool
	otpUses    []OTPUse
	// excluded is true when an OTP proof was valid but did not count
	// because it came from the device issuing the instruction (R6).
	excluded bool
	// levelWithExcluded is the level the proofs would have reached had the
	// excluded OTP counted; used to explain a refusal.
	levelWithExcluded string
}

// level is the verification level of the counted categories (R10).
func (v verified) level() string { return levelOf(len(v.categories), v.hasCert) }

func levelOf(categories int, hasCert bool) string {
	switch {
	case categories >= 2 && hasCert:
		return LevelTwoFactorCertificate
	case categories >= 2:
		return LevelTwoFactor
	}
	return LevelSingleFactor
}

// proofFailure is a proof that did not verify; it counts as a failed attempt
// (R9), unlike malformed input, which changes nothing.
type proofFailure struct{ reason string }

// verifyProofs checks proofs against the account's factors. challenge is
// nil where no challenge was issued (login, withdrawal): signature-based
// proofs then have nothing to sign and are refused as malformed input.
// It returns a *Error for malformed input and a *proofFailure for a proof
// that is wrong.
// devices are the devices involved in the instruction (the one confirming
// and, for a payment, the one that initiated it): an OTP delivered to any of
// them is not independent of the instruction (R6).
//
// Malformed input is found before any proof is checked, so it spends
// nothing. Otherwise every proof is checked, even after one has failed: a
// one-time password that verified is spent whatever the outcome (R7), so
// with a *proofFailure v still carries the OTP uses the failed attempt
// must record (and nothing else).
//
// cooled is true for an instruction that moves money or changes how the
// account is protected or paid out: a factor still in its cooling-off
// (Factor.UsableFrom) is then refused as input, before any proof is
// checked.
//
// proven is true when the instruction's device signed it (verifyDevice): a
// one-time password then counts when it is delivered to another device.
// From a device that is only claimed, it counts only as the one factor of
// an instruction, never as a second one, since the claim may hide that it
// is delivered to the very device sending the instruction (R6).
func (a *Account) verifyProofs(p Policy, proofs []Proof, devices []string, challenge []byte, cooled, proven bool, now time.Time) (verified, *Error, *proofFailure) {
	var v verified
	if len(proofs) == 0 {
		return v, Invalid("proofs", "at least one proof is required"), nil
	}
	if len(proofs) > maxProofs {
		return v, Invalid("proofs", "at most 5 proofs are accepted"), nil
	}
	// At most maxProofs proofs: small sets as slices, not maps.
	var seenBuf, catsBuf, allCatsBuf [maxProofs]string
	seen, cats, allCats := seenBuf[:0], catsBuf[:0], allCatsBuf[:0]
	for _, pr := range proofs {
		if slices.Contains(seen, pr.FactorID) {
			return v, Invalid("proofs", "factor "+pr.FactorID+" is presented twice"), nil
		}
		seen = append(seen, pr.FactorID)
		if f, ok := a.factors[pr.FactorID]; ok && f.Active {
			if bad := shapeError(f.Method, pr, challenge != nil); bad != nil {
				return v, bad, nil
			}
			if cooled && now.Before(f.UsableFrom) {
				until := f.UsableFrom.UTC().Format(time.RFC3339Nano)
				return v, Errorf(CodeFactorCoolingOff, "factor %s was added or reset without an identity check and can move money or authorise this change from %s", f.ID, until).
					With("factor_id", f.ID).With("usable_from", until).With("field", "proofs"), nil
			}
		}
	}
	var fail *proofFailure
	allCert, unproven := false, false
	for _, pr := range proofs {
		f, ok := a.factors[pr.FactorID]
		if !ok || !f.Active {
			if fail == nil {
				fail = &proofFailure{"factor " + pr.FactorID + " is not an active factor of this account"}
			}
			continue
		}
		ok, use, reason := a.checkProof(p, f, pr, challenge, now)
		if use != nil {
			v.otpUses = append(v.otpUses, *use)
		}
		if !ok {
			if fail == nil {
				fail = &proofFailure{reason}
			}
			continue
		}
		v.factorIDs = append(v.factorIDs, f.ID)
		cert := f.Method == MethodCertificate || f.Method == MethodESignature
		if !slices.Contains(allCats, f.Category) {
			allCats = append(allCats, f.Category)
		}
		allCert = allCert || cert
		if f.Method == MethodTOTP && slices.Contains(devices, f.DeviceID) {
			v.excluded = true // R6: same device as the instruction, not independent
			continue
		}
		if f.Method == MethodTOTP && !proven {
			unproven = true // independence unknown: it may only stand alone
			continue
		}
		if !slices.Contains(cats, f.Category) {
			cats = append(cats, f.Category)
		}
		v.hasCert = v.hasCert || cert
	}
	if fail != nil {
		return verified{otpUses: v.otpUses}, nil, fail
	}
	if unproven {
		if len(cats) == 0 {
			cats = append(cats, CategoryPossession)
		} else if !slices.Contains(cats, CategoryPossession) {
			v.excluded = true
		}
	}
	if len(cats) > 0 {
		v.categories = slices.Clone(cats)
		slices.Sort(v.categories)
	}
	slices.Sort(v.factorIDs)
	v.levelWithExcluded = levelOf(len(allCats), allCert)
	return v, nil, nil
}

// shapeError rejects a proof that carries the wrong kind of evidence for its
// factor's method.
func shapeError(method string, pr Proof, hasChallenge bool) *Error {
	switch method {
	case MethodPassword:
		if pr.Password == "" {
			return Invalid("proofs", "a password factor needs \"password\"")
		}
	case MethodTOTP:
		if pr.Code == "" {
			return Invalid("proofs", "a totp factor needs \"code\"")
		}
	case MethodCertificate, MethodESignature:
		if !hasChallenge {
			return Invalid("proofs", "certificate and e-signature proofs sign a payment challenge; use them to confirm a payment")
		}
		if len(pr.Signature) == 0 {
			return Invalid("proofs", "a "+method+" factor needs \"signature\"")
		}
	case MethodBiometric:
		if !hasChallenge {
			return Invalid("proofs", "biometric attestations sign a payment challenge; use them to confirm a payment")
		}
		if len(pr.Attestation) == 0 {
			return Invalid("proofs", "a biometric factor needs \"attestation\"")
		}
	}
	return nil
}

// checkProof verifies one proof. It returns the OTP use to record when the
// proof consumed a one-time password.
func (a *Account) checkProof(p Policy, f *Factor, pr Proof, challenge []byte, now time.Time) (bool, *OTPUse, string) {
	switch f.Method {
	case MethodPassword:
		ok, err := VerifyPassword(f.PasswordHash, pr.Password)
		if err != nil || !ok {
			return false, nil, "wrong password"
		}
		return true, nil, ""
	case MethodTOTP:
		if p.Secrets == nil {
			return false, nil, "one-time passwords are not configured"
		}
		secret, err := p.Secrets.Open(f.SealedSecret)
		if err != nil {
			return false, nil, "one-time password seed cannot be opened"
		}
		step, ok, err := MatchTOTP(string(secret), pr.Code, now, a.otpLast[f.ID])
		if err != nil || !ok {
			return false, nil, "wrong, expired or already used one-time password"
		}
		return true, &OTPUse{FactorID: f.ID, Step: step}, ""
	case MethodCertificate, MethodESignature:
		if !VerifySignature(f.PublicKey, challenge, pr.Signature) {
			return false, nil, "signature does not verify"
		}
		return true, nil, ""
	case MethodBiometric:
		if !VerifySignature(p.BiometricProviderKey, challenge, pr.Attestation) {
			return false, nil, "biometric attestation does not verify"
		}
		return true, nil, ""
	}
	return false, nil, "unknown factor method"
}
