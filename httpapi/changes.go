package httpapi

import (
	"context"
	"encoding/base64"
	"net/http"
	"time"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/ledger"
)

// authJSON is the authorisation every sensitive change carries (R1): the
// device sending it, the proofs, and the account version that signature
// proofs signed over (see domain.ChangeChallenge).
type authJSON struct {
	DeviceID string      `json:"device_id"`
	Version  int64       `json:"version"`
	Proofs   []proofJSON `json:"proofs"`
	deviceSig
}

// deviceSig is a registered device's signature over an instruction
// (domain.DeviceChallenge): base64 Ed25519 and the RFC 3339 time signed.
type deviceSig struct {
	DeviceSignature string `json:"device_signature"`
	SignedAt        string `json:"signed_at"`
}

func (d deviceSig) proof() (domain.DeviceProof, error) {
	if d.DeviceSignature == "" && d.SignedAt == "" {
		return domain.DeviceProof{}, nil
	}
	sig, err := base64.StdEncoding.DecodeString(d.DeviceSignature)
	if err != nil || len(sig) == 0 {
		return domain.DeviceProof{}, domain.Invalid("device_signature", "device_signature must be a base64 Ed25519 signature")
	}
	at, err := signedAt(d.SignedAt, "signed_at")
	if err != nil {
		return domain.DeviceProof{}, err
	}
	return domain.DeviceProof{SignedAt: at, Signature: sig}, nil
}

// signedAt parses the time a device signed at. The device signs the text,
// and the ledger checks the signature over its own rendering of the time,
// so only that rendering is accepted: RFC 3339 in UTC ("Z") with the
// fraction's trailing zeros dropped, as Go's time.RFC3339Nano writes it.
func signedAt(text, field string) (time.Time, error) {
	at, err := time.Parse(time.RFC3339Nano, text)
	if err != nil || at.UTC().Format(time.RFC3339Nano) != text {
		return time.Time{}, domain.Invalid(field, field+" must be the time the device signed at, in RFC 3339 UTC with no trailing zeros in the fraction (e.g. 2026-03-02T01:00:05.25Z), exactly as signed")
	}
	return at, nil
}

func (a authJSON) auth() (domain.Authorisation, error) {
	if a.Version < 0 {
		return domain.Authorisation{}, domain.Invalid("version", "version must be an account version (1 or more)")
	}
	proofs, err := proofsOf(a.Proofs)
	if err != nil {
		return domain.Authorisation{}, err
	}
	dev, err := a.deviceSig.proof()
	if err != nil {
		return domain.Authorisation{}, err
	}
	return domain.Authorisation{DeviceID: a.DeviceID, Device: dev, Version: a.Version, Proofs: proofs}, nil
}

// optionalAuth is auth() for a request that may carry no step-up (an
// operator's enrolment, a lower limit): no device and no proofs is none.
func (a authJSON) optionalAuth() (domain.Authorisation, error) {
	if a.DeviceID == "" && len(a.Proofs) == 0 && a.Version == 0 && a.DeviceSignature == "" && a.SignedAt == "" {
		return domain.Authorisation{}, nil
	}
	return a.auth()
}

// authorisedBy is how a change was authorised, in its reply.
func authorisedBy(a domain.Authorised) []string {
	if a.Categories == nil {
		return []string{}
	}
	return a.Categories
}

type identityReq struct {
	HolderName string `json:"holder_name"`
	authJSON
}

func (s *Server) changeIdentity(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	command(s, w, r, http.StatusOK, func(ctx context.Context, by ledger.Actor, req identityReq, idem ledger.Idem) (ledger.Outcome, error) {
		auth, err := req.auth()
		if err != nil {
			return ledger.Outcome{}, err
		}
		return s.svc.ChangeIdentity(ctx, by, id, idem, req.HolderName, auth)
	}, func(out ledger.Outcome) (any, error) {
		e, out, err := find[domain.IdentityChanged](out)
		return map[string]any{"id": id, "holder_name": e.HolderName, "categories": authorisedBy(e.Authorised), "log": refOf(out)}, err
	})
}

type phoneReq struct {
	Phone string `json:"phone"`
	authJSON
}

func (s *Server) changePhone(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	command(s, w, r, http.StatusOK, func(ctx context.Context, by ledger.Actor, req phoneReq, idem ledger.Idem) (ledger.Outcome, error) {
		auth, err := req.auth()
		if err != nil {
			return ledger.Outcome{}, err
		}
		return s.svc.ChangePhone(ctx, by, id, idem, req.Phone, auth)
	}, func(out ledger.Outcome) (any, error) {
		e, out, err := find[domain.PhoneChanged](out)
		return map[string]any{"id": id, "phone": e.Phone, "categories": authorisedBy(e.Authorised), "log": refOf(out)}, err
	})
}

// resetReq carries the new credential as enrolment does: a password, a
// public key, or nothing for a TOTP factor (a new seed is generated).
type resetReq struct {
	Password  string `json:"password"`
	PublicKey string `json:"public_key"`
	authJSON
}

func (s *Server) resetCredential(w http.ResponseWriter, r *http.Request) {
	id, fid := r.PathValue("id"), r.PathValue("fid")
	command(s, w, r, http.StatusOK, func(ctx context.Context, by ledger.Actor, req resetReq, idem ledger.Idem) (ledger.Outcome, error) {
		pub, err := publicKey(req.PublicKey)
		if err != nil {
			return ledger.Outcome{}, err
		}
		auth, err := req.auth()
		if err != nil {
			return ledger.Outcome{}, err
		}
		return s.svc.ResetCredential(ctx, by, id, idem, ledger.ResetRequest{FactorID: fid, Password: req.Password, PublicKey: pub, Auth: auth})
	}, func(out ledger.Outcome) (any, error) {
		e, out, err := find[domain.CredentialReset](out)
		if err != nil {
			return nil, err
		}
		resp := map[string]any{"factor_id": e.FactorID, "method": e.Method, "active": true,
			"categories": authorisedBy(e.Authorised), "log": refOf(out)}
		if e.Method == domain.MethodTOTP {
			secret, err := s.svc.ResetTOTPSecret(e)
			if err != nil {
				return nil, err
			}
			resp["totp_secret"] = secret
			resp["otpauth_url"] = otpauthURL(id, secret)
		}
		return resp, nil
	})
}
