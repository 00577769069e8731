package httpapi

import (
	"context"
	"encoding/base64"
	"net/http"
	"strconv"
	"time"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/staffkeys"
	"github.com/payledger/payledger/projections"
)

type openAccountReq struct {
	HolderName    string    `json:"holder_name"`
	Currency      string    `json:"currency"`
	Kind          string    `json:"kind"`
	Factor        factorReq `json:"factor"`
	IdentityCheck string    `json:"identity_check"`
}

// factorReq is a new factor's credential, at opening or enrolment.
type factorReq struct {
	Method    string `json:"method"`
	Password  string `json:"password"`
	DeviceID  string `json:"device_id"`
	PublicKey string `json:"public_key"`
}

func (f factorReq) request() (ledger.EnrollRequest, error) {
	pub, err := publicKey(f.PublicKey)
	return ledger.EnrollRequest{Method: f.Method, DeviceID: f.DeviceID, Password: f.Password, PublicKey: pub}, err
}

type accountResp struct {
	ID               string      `json:"id"`
	HolderName       string      `json:"holder_name"`
	Currency         string      `json:"currency"`
	Kind             string      `json:"kind"`
	Status           string      `json:"status"`
	AgreedDailyLimit string      `json:"agreed_daily_limit"`
	Available        string      `json:"available,omitempty"`
	BankAccountLast4 string      `json:"bank_account_last4,omitempty"`
	LockedUntil      string      `json:"locked_until,omitempty"`
	FailedAttempts   int         `json:"failed_attempts"`
	Version          int64       `json:"version"`
	Factors          []factorV   `json:"factors"`
	Devices          []deviceV   `json:"devices"`
	DailyUsage       *usageResp  `json:"daily_usage,omitempty"`
	FirstFactor      *enrollResp `json:"first_factor,omitempty"`
	Log              *logRef     `json:"log,omitempty"`
}

type factorV struct {
	FactorID   string `json:"factor_id"`
	Method     string `json:"method"`
	Category   string `json:"category"`
	DeviceID   string `json:"device_id,omitempty"`
	Active     bool   `json:"active"`
	UsableFrom string `json:"usable_from,omitempty"`
}

type deviceV struct {
	DeviceID string `json:"device_id"`
	Label    string `json:"label,omitempty"`
}

type usageResp struct {
	SingleFactor       string `json:"single_factor"`
	WithoutCertificate string `json:"without_certificate"`
	All                string `json:"all"`
}

func (s *Server) openAccount(w http.ResponseWriter, r *http.Request) {
	command(s, w, r, http.StatusCreated, func(ctx context.Context, by ledger.Actor, req openAccountReq, idem ledger.Idem) (ledger.Outcome, error) {
		f, err := req.Factor.request()
		if err != nil {
			return ledger.Outcome{}, err
		}
		return s.svc.OpenAccount(ctx, by, idem, ledger.OpenRequest{HolderName: req.HolderName, Currency: req.Currency, Kind: req.Kind,
			Factor: f, IdentityCheck: req.IdentityCheck})
	}, func(out ledger.Outcome) (any, error) {
		e, out, err := find[domain.AccountOpened](out)
		if err != nil {
			return nil, err
		}
		fe, out, err := find[domain.FactorEnrolled](out)
		if err != nil {
			return nil, err
		}
		first, err := s.enrolled(e.AccountID, fe, out)
		ref := refOf(out)
		return accountResp{ID: e.AccountID, HolderName: e.HolderName, Currency: string(e.Currency), Kind: e.Kind,
			Status: domain.StatusActive, AgreedDailyLimit: e.AgreedDailyLimit.String(), Available: domain.Zero(e.Currency).String(),
			Version: ref.Version, Factors: []factorV{factorOf(fe.FactorID, fe.Method, fe.Category, fe.DeviceID, true, fe.UsableFrom)}, Devices: []deviceV{},
			FirstFactor: &first, Log: &ref}, err
	})
}

func factorOf(id, method, category, device string, active bool, usable time.Time) factorV {
	f := factorV{FactorID: id, Method: method, Category: category, DeviceID: device, Active: active}
	if !usable.IsZero() {
		f.UsableFrom = ts(usable)
	}
	return f
}

// masked replaces personal data in a view for the auditor role.
const masked = "***"

func (s *Server) getAccount(w http.ResponseWriter, r *http.Request) {
	by := actorOf(r)
	v, err := s.svc.Account(r.Context(), by, r.PathValue("id"))
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	resp := accountResp{ID: v.ID, HolderName: v.HolderName, Currency: string(v.Currency), Kind: v.Kind, Status: v.Status,
		AgreedDailyLimit: v.AgreedLimit.String(), Available: v.Available.String(), BankAccountLast4: v.BankLast4,
		FailedAttempts: v.Failures, Version: v.Version, Factors: []factorV{},
		DailyUsage: &usageResp{SingleFactor: v.SingleUsed.String(), WithoutCertificate: v.NoCertUsed.String(), All: v.AllUsed.String()}}
	if !v.LockedUntil.IsZero() && v.LockedUntil.After(s.svc.Now()) {
		resp.LockedUntil = ts(v.LockedUntil)
	}
	for _, f := range v.Factors {
		resp.Factors = append(resp.Factors, factorOf(f.ID, f.Method, f.Category, f.DeviceID, f.Active, f.UsableFrom))
	}
	resp.Devices = []deviceV{}
	for _, d := range v.Devices {
		resp.Devices = append(resp.Devices, deviceV{DeviceID: d.ID, Label: d.Label})
	}
	if by.Role == staffkeys.RoleAuditor {
		resp.HolderName = masked
		if resp.BankAccountLast4 != "" {
			resp.BankAccountLast4 = masked
		}
		for i := range resp.Factors {
			if resp.Factors[i].DeviceID != "" {
				resp.Factors[i].DeviceID = masked
			}
		}
		for i := range resp.Devices {
			resp.Devices[i] = deviceV{DeviceID: masked}
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

// enrollReq is a new factor and what authorises it: the holder's step-up
// (authJSON) or an operator's identity check.
type enrollReq struct {
	Factor        factorReq `json:"factor"`
	IdentityCheck string    `json:"identity_check"`
	authJSON
}

type enrollResp struct {
	FactorID   string `json:"factor_id"`
	Method     string `json:"method"`
	Category   string `json:"category"`
	DeviceID   string `json:"device_id,omitempty"`
	UsableFrom string `json:"usable_from,omitempty"`
	TOTPSecret string `json:"totp_secret,omitempty"`
	OTPAuthURL string `json:"otpauth_url,omitempty"`
	Log        logRef `json:"log"`
}

// enrolled is the reply to an enrolment: the factor, when it can move
// money, and a TOTP factor's seed (shown once).
func (s *Server) enrolled(accountID string, e domain.FactorEnrolled, out ledger.Outcome) (enrollResp, error) {
	resp := enrollResp{FactorID: e.FactorID, Method: e.Method, Category: e.Category, DeviceID: e.DeviceID, Log: refOf(out)}
	if !e.UsableFrom.IsZero() {
		resp.UsableFrom = ts(e.UsableFrom)
	}
	if e.Method == domain.MethodTOTP {
		secret, err := s.svc.TOTPSecret(e)
		if err != nil {
			return resp, err
		}
		resp.TOTPSecret = secret
		resp.OTPAuthURL = otpauthURL(accountID, secret)
	}
	return resp, nil
}

// publicKey decodes a request's base64 public key (enrolment, credential
// reset); an empty one is none.
func publicKey(b64 string) ([]byte, error) {
	if b64 == "" {
		return nil, nil
	}
	pub, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, domain.Invalid("public_key", "public_key must be base64")
	}
	return pub, nil
}

// otpauthURL is the key URI an authenticator app scans for a TOTP factor
// of the account (30 s steps, 6 digits).
func otpauthURL(accountID, secret string) string {
	return "otpauth://totp/payledger:" + accountID + "?secret=" + secret + "&issuer=payledger&digits=6&period=30"
}

func (s *Server) enrollFactor(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	command(s, w, r, http.StatusCreated, func(ctx context.Context, by ledger.Actor, req enrollReq, idem ledger.Idem) (ledger.Outcome, error) {
		f, err := req.Factor.request()
		if err != nil {
			return ledger.Outcome{}, err
		}
		if f.Auth, err = req.optionalAuth(); err != nil {
			return ledger.Outcome{}, err
		}
		f.IdentityCheck = req.IdentityCheck
		return s.svc.EnrollFactor(ctx, by, id, idem, f)
	}, func(out ledger.Outcome) (any, error) {
		e, out, err := find[domain.FactorEnrolled](out)
		if err != nil {
			return nil, err
		}
		return s.enrolled(id, e, out)
	})
}

type reasonReq struct {
	Reason string `json:"reason"`
}

type revokeReq struct {
	Reason string `json:"reason"`
	authJSON
}

func (s *Server) revokeFactor(w http.ResponseWriter, r *http.Request) {
	id, fid := r.PathValue("id"), r.PathValue("fid")
	command(s, w, r, http.StatusOK, func(ctx context.Context, by ledger.Actor, req revokeReq, idem ledger.Idem) (ledger.Outcome, error) {
		auth, err := req.auth()
		if err != nil {
			return ledger.Outcome{}, err
		}
		return s.svc.RevokeFactor(ctx, by, id, idem, fid, req.Reason, auth)
	}, func(out ledger.Outcome) (any, error) {
		return map[string]any{"factor_id": fid, "active": false, "log": refOf(out)}, nil
	})
}

// checkReq is an operator's action that follows an identity check.
type checkReq struct {
	Reason        string `json:"reason"`
	IdentityCheck string `json:"identity_check"`
}

// unlockReq is an operator's unlock after an identity check, or the
// holder's early one with a step-up from a registered device.
type unlockReq struct {
	Reason        string `json:"reason"`
	IdentityCheck string `json:"identity_check"`
	authJSON
}

func (s *Server) reportLoss(w http.ResponseWriter, r *http.Request) {
	id, fid := r.PathValue("id"), r.PathValue("fid")
	command(s, w, r, http.StatusOK, func(ctx context.Context, by ledger.Actor, req checkReq, idem ledger.Idem) (ledger.Outcome, error) {
		return s.svc.ReportCredentialLoss(ctx, by, id, idem, fid, req.IdentityCheck)
	}, func(out ledger.Outcome) (any, error) {
		return map[string]any{"factor_id": fid, "active": false, "log": refOf(out)}, nil
	})
}

func (s *Server) unlock(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	command(s, w, r, http.StatusOK, func(ctx context.Context, by ledger.Actor, req unlockReq, idem ledger.Idem) (ledger.Outcome, error) {
		if by.Holder() {
			auth, err := req.auth()
			if err != nil {
				return ledger.Outcome{}, err
			}
			return s.svc.UnlockEarly(ctx, by, id, idem, req.Reason, auth)
		}
		return s.svc.Unlock(ctx, by, id, idem, req.Reason, req.IdentityCheck)
	}, func(out ledger.Outcome) (any, error) {
		return map[string]any{"id": id, "locked": false, "log": refOf(out)}, nil
	})
}

// deviceReq registers a device: its key and the key's signature over the
// registration's challenge, and the holder's step-up for any device but
// the first.
type deviceReq struct {
	Device struct {
		DeviceID  string `json:"device_id"`
		PublicKey string `json:"public_key"`
		Label     string `json:"label"`
		SignedAt  string `json:"signed_at"`
		Signature string `json:"signature"`
	} `json:"device"`
	authJSON
}

func (s *Server) registerDevice(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	command(s, w, r, http.StatusCreated, func(ctx context.Context, by ledger.Actor, req deviceReq, idem ledger.Idem) (ledger.Outcome, error) {
		d := req.Device
		pub, err := base64.StdEncoding.DecodeString(d.PublicKey)
		if err != nil {
			return ledger.Outcome{}, domain.Invalid("device.public_key", "public_key must be a base64 Ed25519 public key")
		}
		sig, err := base64.StdEncoding.DecodeString(d.Signature)
		if err != nil {
			return ledger.Outcome{}, domain.Invalid("device.signature", "signature must be base64")
		}
		at, err := signedAt(d.SignedAt, "device.signed_at")
		if err != nil {
			return ledger.Outcome{}, err
		}
		auth, err := req.optionalAuth()
		if err != nil {
			return ledger.Outcome{}, err
		}
		return s.svc.RegisterDevice(ctx, by, id, idem, ledger.DeviceRequest{DeviceID: d.DeviceID, PublicKey: pub, Label: d.Label,
			SignedAt: at, Signature: sig, Auth: auth})
	}, func(out ledger.Outcome) (any, error) {
		e, out, err := find[domain.DeviceRegistered](out)
		return map[string]any{"device_id": e.DeviceID, "label": e.Label, "categories": authorisedBy(e.Authorised), "log": refOf(out)}, err
	})
}

// revokeDeviceReq is the holder's step-up, or an operator's identity check.
type revokeDeviceReq struct {
	Reason        string `json:"reason"`
	IdentityCheck string `json:"identity_check"`
	authJSON
}

func (s *Server) revokeDevice(w http.ResponseWriter, r *http.Request) {
	id, did := r.PathValue("id"), r.PathValue("did")
	command(s, w, r, http.StatusOK, func(ctx context.Context, by ledger.Actor, req revokeDeviceReq, idem ledger.Idem) (ledger.Outcome, error) {
		auth, err := req.optionalAuth()
		if err != nil {
			return ledger.Outcome{}, err
		}
		return s.svc.RevokeDevice(ctx, by, id, idem, did, req.Reason, auth, req.IdentityCheck)
	}, func(out ledger.Outcome) (any, error) {
		e, out, err := find[domain.DeviceRevoked](out)
		return map[string]any{"device_id": e.DeviceID, "revoked": true, "log": refOf(out)}, err
	})
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	by := actorOf(r)
	if _, err := s.svc.Logout(r.Context(), by); err != nil {
		s.writeProblem(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type loginReq struct {
	DeviceID string      `json:"device_id"`
	Proofs   []proofJSON `json:"proofs"`
	deviceSig
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	command(s, w, r, http.StatusCreated, func(ctx context.Context, by ledger.Actor, req loginReq, idem ledger.Idem) (ledger.Outcome, error) {
		proofs, err := proofsOf(req.Proofs)
		if err != nil {
			return ledger.Outcome{}, err
		}
		dev, err := req.proof()
		if err != nil {
			return ledger.Outcome{}, err
		}
		return s.svc.Login(ctx, by, id, idem, req.DeviceID, proofs, dev)
	}, func(out ledger.Outcome) (any, error) {
		e, out, err := find[domain.LoginSucceeded](out)
		if err == nil && out.Secret == "" {
			err = domain.Errorf(domain.CodeInternal, "a login outcome carries no token")
		}
		cats := e.Categories
		if cats == nil {
			cats = []string{} // no counted category (R6): an empty list, never null
		}
		return map[string]any{"session_id": e.SessionID, "token": out.Secret,
			"expires_at": ts(e.ExpiresAt), "idle_timeout_seconds": int(s.svc.Policy().SessionIdle / time.Second),
			"categories": cats, "log": refOf(out)}, err
	})
}

type bankReq struct {
	BankAccountNumber string `json:"bank_account_number"`
	HolderName        string `json:"holder_name"`
	authJSON
}

func (s *Server) bindBank(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	command(s, w, r, http.StatusCreated, func(ctx context.Context, by ledger.Actor, req bankReq, idem ledger.Idem) (ledger.Outcome, error) {
		auth, err := req.auth()
		if err != nil {
			return ledger.Outcome{}, err
		}
		return s.svc.BindBankAccount(ctx, by, id, idem, req.BankAccountNumber, req.HolderName, auth)
	}, func(out ledger.Outcome) (any, error) {
		e, out, err := find[domain.BankAccountBound](out)
		return map[string]any{"bank_account_last4": e.Last4,
			"holder_name": e.HolderName, "log": refOf(out)}, err
	})
}

type depositReq struct {
	Amount    string `json:"amount"`
	Currency  string `json:"currency"`
	Reference string `json:"reference"`
}

func (s *Server) deposit(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	command(s, w, r, http.StatusCreated, func(ctx context.Context, by ledger.Actor, req depositReq, idem ledger.Idem) (ledger.Outcome, error) {
		return s.svc.Deposit(ctx, by, id, idem, req.Amount, req.Currency, req.Reference)
	}, func(out ledger.Outcome) (any, error) {
		e, out, err := find[domain.FundsDeposited](out)
		return map[string]any{"deposit_id": e.DepositID, "account_id": e.CreditAccount, "amount": e.Amount.String(),
			"currency": e.Amount.Currency, "reference": e.Reference, "status": "completed", "log": refOf(out)}, err
	})
}

type paymentReq struct {
	PayeeAccountID string `json:"payee_account_id"`
	Amount         string `json:"amount"`
	Currency       string `json:"currency"`
	Channel        string `json:"channel"`
	Terminal       string `json:"terminal"`
	DeviceID       string `json:"device_id"`
	Description    string `json:"description"`
}

type paymentDetails struct {
	Payer       string `json:"payer"`
	Payee       string `json:"payee"`
	Amount      string `json:"amount"`
	Fee         string `json:"fee"`
	Total       string `json:"total"`
	Currency    string `json:"currency"`
	Description string `json:"description"`
	Channel     string `json:"channel"`
	Terminal    string `json:"terminal"`
}

func (s *Server) initiatePayment(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	command(s, w, r, http.StatusCreated, func(ctx context.Context, by ledger.Actor, req paymentReq, idem ledger.Idem) (ledger.Outcome, error) {
		return s.svc.InitiatePayment(ctx, by, id, idem, ledger.PaymentRequest{PayeeID: req.PayeeAccountID, Amount: req.Amount,
			Currency: req.Currency, Channel: req.Channel, Terminal: req.Terminal, DeviceID: req.DeviceID, Description: req.Description})
	}, func(out ledger.Outcome) (any, error) {
		e, out, err := find[domain.PaymentInitiated](out)
		if err != nil {
			return nil, err
		}
		return map[string]any{"payment_id": e.PaymentID, "status": "pending_confirmation",
			"details": paymentDetails{Payer: e.Payer, Payee: e.Payee, Amount: e.Amount.String(), Fee: e.Fee.String(),
				Total: e.Amount.Add(e.Fee).String(), Currency: string(e.Amount.Currency), Description: e.Description,
				Channel: e.Channel, Terminal: e.Terminal},
			"challenge":  base64.StdEncoding.EncodeToString(e.Challenge),
			"expires_at": ts(e.ExpiresAt), "log": refOf(out)}, nil
	})
}

type confirmReq struct {
	DeviceID string      `json:"device_id"`
	Proofs   []proofJSON `json:"proofs"`
	deviceSig
}

func (s *Server) confirmPayment(w http.ResponseWriter, r *http.Request) {
	id, pid := r.PathValue("id"), r.PathValue("pid")
	command(s, w, r, http.StatusOK, func(ctx context.Context, by ledger.Actor, req confirmReq, idem ledger.Idem) (ledger.Outcome, error) {
		proofs, err := proofsOf(req.Proofs)
		if err != nil {
			return ledger.Outcome{}, err
		}
		dev, err := req.proof()
		if err != nil {
			return ledger.Outcome{}, err
		}
		return s.svc.ConfirmPayment(ctx, by, id, pid, idem, req.DeviceID, proofs, dev)
	}, func(out ledger.Outcome) (any, error) {
		e, out, err := find[domain.PaymentConfirmed](out)
		return map[string]any{"payment_id": e.PaymentID, "status": "completed", "verification_level": e.VerificationLevel,
			"categories": e.Categories, "amount": e.Amount.String(), "currency": e.Amount.Currency,
			"daily_limit": e.DailyLimit.String(), "daily_used": e.DailyUsed.String(), "log": refOf(out)}, err
	})
}

type withdrawReq struct {
	Amount   string      `json:"amount"`
	Currency string      `json:"currency"`
	DeviceID string      `json:"device_id"`
	Proofs   []proofJSON `json:"proofs"`
	deviceSig
}

func (s *Server) withdraw(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	command(s, w, r, http.StatusCreated, func(ctx context.Context, by ledger.Actor, req withdrawReq, idem ledger.Idem) (ledger.Outcome, error) {
		proofs, err := proofsOf(req.Proofs)
		if err != nil {
			return ledger.Outcome{}, err
		}
		dev, err := req.proof()
		if err != nil {
			return ledger.Outcome{}, err
		}
		return s.svc.Withdraw(ctx, by, id, idem, req.Amount, req.Currency, req.DeviceID, proofs, dev)
	}, func(out ledger.Outcome) (any, error) {
		e, out, err := find[domain.FundsWithdrawn](out)
		return map[string]any{"withdrawal_id": e.WithdrawalID, "status": "completed", "amount": e.Amount.String(),
			"currency": e.Amount.Currency, "bank_account_last4": e.BankAccountLast4,
			"verification_level": e.VerificationLevel, "log": refOf(out)}, err
	})
}

type limitReq struct {
	AgreedDailyLimit string `json:"agreed_daily_limit"`
	authJSON
}

func (s *Server) adjustLimit(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	command(s, w, r, http.StatusOK, func(ctx context.Context, by ledger.Actor, req limitReq, idem ledger.Idem) (ledger.Outcome, error) {
		auth, err := req.optionalAuth()
		if err != nil {
			return ledger.Outcome{}, err
		}
		return s.svc.AdjustLimit(ctx, by, id, idem, req.AgreedDailyLimit, auth)
	}, func(out ledger.Outcome) (any, error) {
		e, out, err := find[domain.LimitAdjusted](out)
		return map[string]any{"agreed_daily_limit": e.AgreedDailyLimit.String(), "previous": e.Previous.String(),
			"currency": e.AgreedDailyLimit.Currency, "log": refOf(out)}, err
	})
}

// status serves suspend, reactivate and close: a reason in, the new status
// out.
func (s *Server) status(op func(context.Context, ledger.Actor, string, ledger.Idem, string) (ledger.Outcome, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		command(s, w, r, http.StatusOK, func(ctx context.Context, by ledger.Actor, req reasonReq, idem ledger.Idem) (ledger.Outcome, error) {
			return op(ctx, by, id, idem, req.Reason)
		}, func(out ledger.Outcome) (any, error) {
			st := domain.StatusActive
			for _, e := range out.Decoded {
				switch e.(type) {
				case domain.ServiceSuspended:
					st = domain.StatusSuspended
				case domain.AccountClosed:
					st = domain.StatusClosed
				}
			}
			return map[string]any{"id": id, "status": st, "log": refOf(out)}, nil
		})
	}
}

// catchUp waits until the projections have applied everything committed
// when the read began, so a read after a write sees it.
func (s *Server) catchUp(ctx context.Context) error {
	head, err := s.store.Head(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, readWait)
	defer cancel()
	if err := s.rm.WaitFor(ctx, head); err != nil {
		return domain.Errorf(domain.CodeUnavailable, "the read models are behind the log (at position %d of %d); retry", s.rm.Checkpoint(), head)
	}
	return nil
}

func (s *Server) balance(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.svc.AuthorizeRead(r.Context(), actorOf(r), ledger.OpReadBalance, id); err != nil {
		s.writeProblem(w, r, err)
		return
	}
	asOf := s.svc.Now()
	if q := r.URL.Query().Get("as_of"); q != "" {
		var err error
		if asOf, err = time.Parse(time.RFC3339Nano, q); err != nil {
			s.writeProblem(w, r, domain.Invalid("as_of", "as_of must be an RFC 3339 time"))
			return
		}
	}
	if err := s.catchUp(r.Context()); err != nil {
		s.writeProblem(w, r, err)
		return
	}
	var b projections.Balance
	var err error
	if r.URL.Query().Has("as_of") {
		b, err = s.rm.BalanceAsOf(r.Context(), id, asOf)
	} else {
		b, err = s.rm.Balance(r.Context(), id)
	}
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	// The read model knows the currency of an account it has seen; only an
	// account it has not (none yet at as_of, or no such account) needs the
	// aggregate, whose cold load replays the account's tail.
	avail := b.Available
	if !b.Found {
		v, err := s.svc.Currency(r.Context(), id)
		if err != nil {
			s.writeProblem(w, r, err)
			return
		}
		avail = domain.Zero(v)
	}
	writeJSON(w, http.StatusOK, map[string]any{"account_id": id, "available": avail.String(), "currency": avail.Currency,
		"as_of": ts(asOf), "as_of_position": b.AsOfPosition})
}

// statementWindow is how far back the free statement query reaches (R17).
const statementWindow = 12

func (s *Server) statement(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	by := actorOf(r)
	if err := s.svc.AuthorizeRead(r.Context(), by, ledger.OpReadStatement, id); err != nil {
		s.writeProblem(w, r, err)
		return
	}
	s.serveStatement(w, r, id, by)
}

// serveStatement serves a page of an account's statement: the period
// (?from, ?to; the last year by default), ?limit and ?cursor.
func (s *Server) serveStatement(w http.ResponseWriter, r *http.Request, id string, by ledger.Actor) {
	q := r.URL.Query()
	now := s.svc.Now()
	from, to := now.AddDate(0, -statementWindow, 0), now.Add(time.Nanosecond)
	var err error
	if v := q.Get("from"); v != "" {
		if from, err = time.Parse(time.RFC3339Nano, v); err != nil {
			s.writeProblem(w, r, domain.Invalid("from", "from must be an RFC 3339 time"))
			return
		}
	}
	if v := q.Get("to"); v != "" {
		if to, err = time.Parse(time.RFC3339Nano, v); err != nil {
			s.writeProblem(w, r, domain.Invalid("to", "to must be an RFC 3339 time"))
			return
		}
	}
	if !from.Before(to) {
		s.writeProblem(w, r, domain.Invalid("from", "from must be before to"))
		return
	}
	limit := 100
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > 100 {
			s.writeProblem(w, r, domain.Invalid("limit", "limit must be 1 to 100"))
			return
		}
	}
	if err := s.catchUp(r.Context()); err != nil {
		s.writeProblem(w, r, err)
		return
	}
	page, err := s.rm.Statement(r.Context(), projections.StatementQuery{AccountID: id, From: from, To: to, Limit: limit, Cursor: q.Get("cursor")})
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	entries := make([]map[string]any, 0, len(page.Entries))
	for _, e := range page.Entries {
		if by.Role == staffkeys.RoleAuditor {
			e.Description = masked
		} else {
			// Sealed by the payer: this account or its counterparty.
			e.Description = s.svc.ResolvePersonal(e.EventID, e.Description, id, e.Counterparty)
		}
		entries = append(entries, map[string]any{"event_id": e.EventID, "position": e.Position, "time": ts(e.Time),
			"type": e.Type, "direction": e.Direction, "amount": e.Amount.String(), "currency": e.Amount.Currency,
			"counterparty": e.Counterparty, "balance_after": e.BalanceAfter.String(), "description": e.Description, "ref": e.Ref})
	}
	writeJSON(w, http.StatusOK, map[string]any{"account_id": id, "from": ts(from), "to": ts(to), "entries": entries, "next_cursor": page.NextCursor})
}
