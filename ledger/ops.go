package ledger

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"time"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/eventstore"
)

// NonceSize is the number of random bytes in a payment's challenge.
const NonceSize = 32

// OpenRequest is the input of OpenAccount: the holder, the account and its
// first factor. IdentityCheck is the operator's reference of the identity
// check when an operator opens the account for a customer.
type OpenRequest struct {
	HolderName    string
	Currency      string
	Kind          string
	Factor        EnrollRequest
	IdentityCheck string
}

// OpenAccount opens an account with its first factor under a fresh random
// id. A retry with the same Idempotency-Key finds the account its first
// try opened (openKeys), on this node and within a day.
func (s *Service) OpenAccount(ctx context.Context, by Actor, idem Idem, r OpenRequest) (Outcome, error) {
	if err := Authorize(by, OpOpenAccount, ""); err != nil {
		return Outcome{}, err // before an id is remembered for the caller's key
	}
	id := s.opens.claim(by.scope()+":"+idem.Key, idem.Key != "", s.cfg.NewID, s.cfg.Clock())
	return s.withHashSlot(ctx, by, OpOpenAccount, "", r.Factor.Password != "", func() (Outcome, error) {
		return s.Execute(ctx, by, OpOpenAccount, id, idem, func(a *domain.Account, now time.Time, _ domain.Balance) (domain.Command, error) {
			if a.Exists() {
				return nil, domain.Errorf(domain.CodeConflict, "account id collision, retry")
			}
			f, err := s.enrollCommand(r.Factor, domain.Staff{})
			return domain.OpenAccount{AccountID: id, HolderName: r.HolderName, Currency: r.Currency, Kind: r.Kind,
				Factor: f, Staff: by.staff(r.IdentityCheck)}, err
		})
	})
}

// EnrollRequest is the input of EnrollFactor. A holder authorises it with
// Auth (a step-up); an operator names the identity check instead.
type EnrollRequest struct {
	Method        string
	DeviceID      string
	Password      string
	PublicKey     []byte
	Auth          domain.Authorisation
	IdentityCheck string
}

// EnrollFactor enrols a factor, generating its id, the password salt or the
// sealed TOTP seed.
func (s *Service) EnrollFactor(ctx context.Context, by Actor, accountID string, idem Idem, r EnrollRequest) (Outcome, error) {
	return s.withHashSlot(ctx, by, OpEnrollFactor, accountID, r.Password != "" || hasPassword(r.Auth.Proofs), func() (Outcome, error) {
		return s.Execute(ctx, by, OpEnrollFactor, accountID, idem, func(*domain.Account, time.Time, domain.Balance) (domain.Command, error) {
			return s.enrollCommand(r, by.staff(r.IdentityCheck))
		})
	})
}

func (s *Service) enrollCommand(r EnrollRequest, staff domain.Staff) (domain.EnrollFactor, error) {
	cmd := domain.EnrollFactor{FactorID: s.cfg.NewID(), Method: r.Method, DeviceID: r.DeviceID, Password: r.Password,
		PublicKey: r.PublicKey, Auth: r.Auth, Staff: staff}
	var err error
	cmd.Salt, cmd.SealedSecret, err = s.newSecretMaterial(r.Method)
	return cmd, err
}

// hasPassword reports whether proofs carry a password, whose check needs
// a hashing slot.
func hasPassword(proofs []domain.Proof) bool {
	for _, p := range proofs {
		if p.Password != "" {
			return true
		}
	}
	return false
}

// withHashSlot runs fn, once by may perform op on accountID, holding one
// of Config.HashSlots when it computes a password hash, so that memory has
// a ceiling under any load; it waits at most Config.HashWait for a slot,
// and takes it before any account's lock. One account's commands queue for
// their account's turn first, so that one holder cannot take every slot.
// A refused caller takes no slot.
func (s *Service) withHashSlot(ctx context.Context, by Actor, op Op, accountID string, needed bool, fn func() (Outcome, error)) (Outcome, error) {
	if err := Authorize(by, op, accountID); err != nil {
		return Outcome{}, err
	}
	if !needed {
		return fn()
	}
	t := time.NewTimer(s.cfg.HashWait)
	defer t.Stop()
	busy := domain.Errorf(domain.CodeRateLimited, "every password check is busy; retry in a second").With("retry_after", 1)
	if accountID != "" {
		turn := s.hashTurns[maphash.String(s.status.seed, accountID)%statusStripes]
		select {
		case turn <- struct{}{}:
		case <-t.C:
			return Outcome{}, busy
		case <-ctx.Done():
			return Outcome{}, ctx.Err()
		}
		defer func() { <-turn }()
	}
	select {
	case s.hashSlots <- struct{}{}:
	case <-t.C:
		return Outcome{}, busy
	case <-ctx.Done():
		return Outcome{}, ctx.Err()
	}
	defer func() { <-s.hashSlots }()
	return fn()
}

// newSecretMaterial generates what a new credential of method needs besides
// what the customer sends: a password's salt, or a TOTP seed sealed under
// the server key. Other methods need neither.
func (s *Service) newSecretMaterial(method string) (salt, sealed []byte, err error) {
	switch method {
	case domain.MethodPassword:
		salt, err = s.random(domain.SaltLength)
		return salt, nil, err
	case domain.MethodTOTP:
		secret, err := s.cfg.Keys.NewTOTPSecret()
		if err != nil {
			return nil, nil, err
		}
		sealed, err = s.cfg.Keys.Seal([]byte(secret))
		return nil, sealed, err
	}
	return nil, nil, nil
}

func (s *Service) random(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(s.cfg.Rand, b); err != nil {
		return nil, fmt.Errorf("random bytes: %w", err)
	}
	return b, nil
}

// TOTPSecret returns the plain seed of an enrolment event, shown to the
// customer once: callers do not show it to an idempotent replay.
func (s *Service) TOTPSecret(e domain.FactorEnrolled) (string, error) {
	return s.openSeed(e.SealedSecret)
}

// openSeed unseals a TOTP seed; "" when there is none (other methods).
func (s *Service) openSeed(sealed []byte) (string, error) {
	if len(sealed) == 0 {
		return "", nil
	}
	b, err := s.cfg.Keys.Open(sealed)
	return string(b), err
}

// Login verifies proofs and opens a session with a random token, returned
// in Outcome.Secret once; the log keeps only its SHA-256, so a replay of
// the login cannot show it again.
// device is the device's signature, when it is registered (at most one).
func (s *Service) Login(ctx context.Context, by Actor, accountID string, idem Idem, deviceID string, proofs []domain.Proof, device ...domain.DeviceProof) (Outcome, error) {
	var token string
	out, err := s.withHashSlot(ctx, by, OpLogin, accountID, hasPassword(proofs), func() (Outcome, error) {
		return s.Execute(ctx, by, OpLogin, accountID, idem, func(a *domain.Account, _ time.Time, _ domain.Balance) (domain.Command, error) {
			sid := s.cfg.NewID()
			tok, hash, err := s.newSessionToken(accountID, sid)
			token = tok
			return domain.Login{SessionID: sid, TokenHash: hash, DeviceID: deviceID, Device: first(device), Proofs: proofs}, err
		})
	})
	if err == nil && !out.Replayed && out.Refusal == nil {
		out.Secret = token
	}
	return out, err
}

// first is the optional device proof of an instruction.
func first(device []domain.DeviceProof) domain.DeviceProof {
	if len(device) == 0 {
		return domain.DeviceProof{}
	}
	return device[0]
}

// DeviceRequest is the input of RegisterDevice: the device, its key, the
// key's signature over the registration's challenge, and the step-up any
// device but the first needs.
type DeviceRequest struct {
	DeviceID  string
	PublicKey []byte
	Label     string
	SignedAt  time.Time
	Signature []byte
	Auth      domain.Authorisation
}

// RegisterDevice registers a holder's device (R6).
func (s *Service) RegisterDevice(ctx context.Context, by Actor, accountID string, idem Idem, r DeviceRequest) (Outcome, error) {
	return s.withHashSlot(ctx, by, OpRegisterDevice, accountID, hasPassword(r.Auth.Proofs), func() (Outcome, error) {
		return s.simple(ctx, by, OpRegisterDevice, accountID, idem, domain.RegisterDevice{DeviceID: r.DeviceID, PublicKey: r.PublicKey,
			Label: r.Label, SignedAt: r.SignedAt, Signature: r.Signature, Auth: r.Auth})
	})
}

// RevokeDevice removes a registered device: the holder with a step-up, or
// an operator after an identity check.
func (s *Service) RevokeDevice(ctx context.Context, by Actor, accountID string, idem Idem, deviceID, reason string, auth domain.Authorisation, identityCheck string) (Outcome, error) {
	return s.withHashSlot(ctx, by, OpRevokeDevice, accountID, hasPassword(auth.Proofs), func() (Outcome, error) {
		return s.simple(ctx, by, OpRevokeDevice, accountID, idem, domain.RevokeDevice{DeviceID: deviceID, Reason: reason, Auth: auth,
			Staff: by.staff(identityCheck)})
	})
}

// Logout ends the actor's session.
func (s *Service) Logout(ctx context.Context, by Actor) (Outcome, error) {
	return s.simple(ctx, by, OpLogout, by.AccountID, Idem{}, domain.Logout{SessionID: by.SessionID, Reason: "logged out"})
}

// BindBankAccount binds the same-name bank account for withdrawals; the
// number is tokenised before it reaches the domain's event.
func (s *Service) BindBankAccount(ctx context.Context, by Actor, accountID string, idem Idem, number, holderName string, auth domain.Authorisation) (Outcome, error) {
	return s.withHashSlot(ctx, by, OpBindBankAccount, accountID, hasPassword(auth.Proofs), func() (Outcome, error) {
		return s.simple(ctx, by, OpBindBankAccount, accountID, idem,
			domain.BindBankAccount{Number: number, HolderName: holderName, Token: s.cfg.Keys.BankToken(number), Auth: auth})
	})
}

// Deposit credits money arriving from outside: a bank transfer the
// funding desk matched, named by its bank reference.
func (s *Service) Deposit(ctx context.Context, by Actor, accountID string, idem Idem, amount, currency, reference string) (Outcome, error) {
	return s.Execute(ctx, by, OpDeposit, accountID, idem, func(*domain.Account, time.Time, domain.Balance) (domain.Command, error) {
		return domain.Deposit{DepositID: s.cfg.NewID(), Amount: amount, Currency: currency, Reference: reference, Staff: by.staff("")}, nil
	})
}

// PaymentRequest is the input of InitiatePayment.
type PaymentRequest struct {
	PayeeID     string
	Amount      string
	Currency    string
	Channel     string
	Terminal    string
	DeviceID    string
	Description string
}

// InitiatePayment is step one of confirm-then-execute (R15). The payee is
// looked up first, under its own lock, so two accounts paying each other
// never hold both locks.
func (s *Service) InitiatePayment(ctx context.Context, by Actor, accountID string, idem Idem, r PaymentRequest) (Outcome, error) {
	if err := Authorize(by, OpInitiatePayment, accountID); err != nil {
		return Outcome{}, err
	}
	payee := domain.Payee{}
	if r.PayeeID != accountID && r.PayeeID != "" {
		var err error
		if payee, _, err = s.peekPayee(ctx, r.PayeeID); err != nil {
			return Outcome{}, err
		}
	}
	return s.Execute(ctx, by, OpInitiatePayment, accountID, idem, func(*domain.Account, time.Time, domain.Balance) (domain.Command, error) {
		nonce, err := s.random(NonceSize)
		if err != nil {
			return nil, err
		}
		return domain.InitiatePayment{PaymentID: s.cfg.NewID(), PayeeID: r.PayeeID, Payee: payee, Amount: r.Amount,
			Currency: r.Currency, Channel: r.Channel, Terminal: r.Terminal, DeviceID: r.DeviceID,
			Description: r.Description, Nonce: nonce}, nil
	})
}

// peekPayee returns what a payment needs of its payee: whether it exists,
// its status and currency. As the only writer (Config.SoleWriter) the
// cached aggregate is authoritative, so its published view is read
// without the aggregate's lock: the payee's own commands hold that lock
// while their appends wait for the disk, and waiting for them made
// payments to busy accounts wait for an fsync they had no part in (in
// payledger bench, 22 of the 256 clients at any moment). A status change
// publishes before it releases the payee's status lock, so under that lock
// (ConfirmPayment) the view is current. Otherwise the aggregate is loaded,
// with the stream's tail, under its lock; version is then the payee's
// stream version that view was read at (0 from the sole writer's view).
func (s *Service) peekPayee(ctx context.Context, id string) (p domain.Payee, version int64, err error) {
	if s.cfg.SoleWriter {
		if p := s.cache.payee(id); p != nil {
			return *p, 0, nil
		}
	}
	ent := s.cache.lock(id)
	defer ent.mu.Unlock()
	if err := s.load(ctx, ent, id); err != nil {
		return domain.Payee{}, 0, err
	}
	ent.publish()
	p = *ent.payee.Load()
	if !p.Exists {
		s.cache.drop(id, ent)
	}
	return p, ent.acct.Version, nil
}

// ConfirmPayment is step two: proofs over the challenge; on success the
// money moves in one event in the payer's stream.
//
// R14: a payee whose service is suspended or whose account is closed takes
// no payments, so the payee's state is read first: the payment's payee id
// from the payer's aggregate, then the payee's status through the same
// cache, each under its own account's lock and never both at once (two
// accounts paying each other would otherwise deadlock). The decision then
// runs under the payer's lock alone.
//
// The payee's stream is not part of the payer's append (no expected
// version covers it), so the payee's status lock (statusLocks) is held,
// shared, from the read to the end of the append: a suspension or a close
// of the payee through this Service waits for the payment, and the payment
// sees the suspension or close that came first. Several Services sharing
// one store (Config.SoleWriter false) do not see each other's locks, so
// there the payer's append is conditioned on the payee's stream version
// the status was read at: a suspension or close on another node in
// between fails the append, and the payee is read again.
// device is the device's signature, when it is registered (at most one).
func (s *Service) ConfirmPayment(ctx context.Context, by Actor, accountID, paymentID string, idem Idem, deviceID string, proofs []domain.Proof, device ...domain.DeviceProof) (Outcome, error) {
	if err := Authorize(by, OpConfirmPayment, accountID); err != nil {
		return Outcome{}, err
	}
	if accountID == "" {
		return Outcome{}, domain.Errorf(domain.CodeNotFound, "account not found")
	}
	payeeID, err := s.pendingPayee(ctx, accountID, paymentID)
	if err != nil {
		return Outcome{}, err
	}
	if payeeID != "" {
		mu := s.status.of(payeeID)
		mu.RLock()
		defer mu.RUnlock()
	}
	if idem.Key != "" {
		idem.Key = by.scope() + ":" + idem.Key
	}
	return s.rereading("the payee "+payeeID, func() (Outcome, error) {
		var payee domain.Payee
		var conds []eventstore.Condition
		if payeeID != "" {
			var version int64
			var err error
			if payee, version, err = s.peekPayee(ctx, payeeID); err != nil {
				return Outcome{}, err
			}
			if !s.cfg.SoleWriter {
				conds = []eventstore.Condition{{Stream: domain.AccountStream(payeeID), Version: version}}
			}
		}
		return s.withHashSlot(ctx, by, OpConfirmPayment, accountID, hasPassword(proofs), func() (Outcome, error) {
			return s.execute(ctx, accountID, idem, conds, func(_ *domain.Account, _ time.Time, bal domain.Balance) (domain.Command, error) {
				return domain.ConfirmPayment{PaymentID: paymentID, DeviceID: deviceID, Device: first(device), Proofs: proofs, Balance: bal,
					PayeeID: payeeID, Payee: payee}, nil
			})
		})
	})
}

// rereading runs attempt, which reads another stream (what, in messages)
// and appends conditioned on it, again while that stream moved in
// between, at most MaxRetries times. The store's error is not passed on:
// it names the other stream's version, which the caller need not know.
func (s *Service) rereading(what string, attempt func() (Outcome, error)) (Outcome, error) {
	for range s.cfg.MaxRetries {
		out, err := attempt()
		if !errors.Is(err, eventstore.ErrConditionFailed) {
			return out, err
		}
	}
	return Outcome{}, domain.Errorf(domain.CodeVersionConflict, "%s changed concurrently %d times; retry the request", what, s.cfg.MaxRetries)
}

// pendingPayee returns the payee of a pending payment of accountID, or ""
// when the payment is not pending (the decision then refuses it, or an
// idempotent replay answers as the first time).
func (s *Service) pendingPayee(ctx context.Context, accountID, paymentID string) (string, error) {
	if accountID == "" {
		return "", nil
	}
	ent := s.cache.lock(accountID)
	defer ent.mu.Unlock()
	if err := s.load(ctx, ent, accountID); err != nil {
		return "", err
	}
	pi, ok := ent.acct.Pending(paymentID)
	if !ok {
		return "", nil
	}
	return pi.Payee, nil
}

// Withdraw pays out to the bound same-name bank account.
// device is the device's signature, when it is registered (at most one).
func (s *Service) Withdraw(ctx context.Context, by Actor, accountID string, idem Idem, amount, currency, deviceID string, proofs []domain.Proof, device ...domain.DeviceProof) (Outcome, error) {
	return s.withHashSlot(ctx, by, OpWithdraw, accountID, hasPassword(proofs), func() (Outcome, error) {
		return s.Execute(ctx, by, OpWithdraw, accountID, idem, func(_ *domain.Account, _ time.Time, bal domain.Balance) (domain.Command, error) {
			return domain.Withdraw{WithdrawalID: s.cfg.NewID(), Amount: amount, Currency: currency, DeviceID: deviceID, Device: first(device),
				Proofs: proofs, Balance: bal}, nil
		})
	})
}

// ChangeIdentity changes the holder name, authorised by auth's proofs (two
// factor categories, see domain.RequiredCategories).
func (s *Service) ChangeIdentity(ctx context.Context, by Actor, accountID string, idem Idem, holderName string, auth domain.Authorisation) (Outcome, error) {
	return s.withHashSlot(ctx, by, OpChangeIdentity, accountID, hasPassword(auth.Proofs), func() (Outcome, error) {
		return s.simple(ctx, by, OpChangeIdentity, accountID, idem, domain.ChangeIdentity{HolderName: holderName, Auth: auth})
	})
}

// ChangePhone changes the reserved phone number, authorised by auth's
// proofs (two factor categories).
func (s *Service) ChangePhone(ctx context.Context, by Actor, accountID string, idem Idem, phone string, auth domain.Authorisation) (Outcome, error) {
	return s.withHashSlot(ctx, by, OpChangePhone, accountID, hasPassword(auth.Proofs), func() (Outcome, error) {
		return s.simple(ctx, by, OpChangePhone, accountID, idem, domain.ChangePhone{Phone: phone, Auth: auth})
	})
}

// ResetRequest is the input of ResetCredential: the new credential as for
// enrolment (a password, or a public key; a TOTP factor gets a new seed)
// and the authorisation, which must not use the factor being reset.
type ResetRequest struct {
	FactorID  string
	Password  string
	PublicKey []byte
	Auth      domain.Authorisation
}

// ResetCredential replaces a factor's credential, generating the password
// salt or the sealed TOTP seed as enrolment does.
func (s *Service) ResetCredential(ctx context.Context, by Actor, accountID string, idem Idem, r ResetRequest) (Outcome, error) {
	return s.withHashSlot(ctx, by, OpResetCredential, accountID, r.Password != "" || hasPassword(r.Auth.Proofs), func() (Outcome, error) {
		return s.Execute(ctx, by, OpResetCredential, accountID, idem, func(a *domain.Account, _ time.Time, _ domain.Balance) (domain.Command, error) {
			cmd := domain.ResetCredential{FactorID: r.FactorID, Password: r.Password, PublicKey: r.PublicKey, Auth: r.Auth}
			f, _ := a.Factor(r.FactorID) // an unknown factor is the decision's not_found
			var err error
			cmd.Salt, cmd.SealedSecret, err = s.newSecretMaterial(f.Method)
			return cmd, err
		})
	})
}

// ResetTOTPSecret returns the plain new seed of a TOTP reset, shown to the
// customer once (callers do not show it to an idempotent replay); "" for
// other resets.
func (s *Service) ResetTOTPSecret(e domain.CredentialReset) (string, error) {
	return s.openSeed(e.SealedSecret)
}

// AdjustLimit sets the agreed daily limit; a raise needs auth's step-up.
func (s *Service) AdjustLimit(ctx context.Context, by Actor, accountID string, idem Idem, limit string, auth domain.Authorisation) (Outcome, error) {
	return s.withHashSlot(ctx, by, OpAdjustLimit, accountID, hasPassword(auth.Proofs), func() (Outcome, error) {
		return s.simple(ctx, by, OpAdjustLimit, accountID, idem, domain.AdjustLimit{Limit: limit, Auth: auth})
	})
}

// Suspend suspends the payment service (R14). It waits for the payments
// to the account being confirmed (see ConfirmPayment), so that none is
// credited after the suspension.
func (s *Service) Suspend(ctx context.Context, by Actor, accountID string, idem Idem, reason string) (Outcome, error) {
	if err := Authorize(by, OpSuspend, accountID); err != nil {
		return Outcome{}, err
	}
	mu := s.status.of(accountID)
	mu.Lock()
	defer mu.Unlock()
	out, err := s.simple(ctx, by, OpSuspend, accountID, idem, domain.Suspend{Reason: reason, Staff: by.staff("")})
	if !s.cfg.SoleWriter && domain.ErrorCode(err) == domain.CodeAccountSuspended {
		// "Already suspended" would be untrue of a close's fence, which
		// its node lifts if the close is refused.
		fence, ferr := s.closeFenceInForce(ctx, accountID)
		if ferr != nil {
			return out, errors.Join(err, ferr)
		}
		if fence {
			return Outcome{}, domain.Errorf(domain.CodeConflict,
				"account %s is suspended only while a close is decided on another node, and is reactivated if the close is refused; nothing was recorded: retry", accountID).
				With("retry_after", 1)
		}
	}
	return out, err
}

// closeFenceInForce reports whether the suspension in force on accountID
// is a close's fence (fenceClose) made recently enough that its node may
// still be deciding the close; one older than that was left by a node that
// stopped, and stands as any suspension.
func (s *Service) closeFenceInForce(ctx context.Context, accountID string) (bool, error) {
	const lookBack = 64 // events after the fence: a close decides right after it
	evs, err := s.cfg.Store.ReadStreamBackward(ctx, domain.AccountStream(accountID), 0, lookBack)
	if err != nil {
		return false, fmt.Errorf("read account %s: %w", accountID, err)
	}
	for _, e := range evs {
		switch e.Type {
		case domain.TypeServiceReactivated, domain.TypeAccountClosed:
			return false, nil
		case domain.TypeServiceSuspended:
			d, err := s.decode(accountID, e)
			if err != nil {
				return false, fmt.Errorf("account %s at version %d: %w", accountID, e.Version, err)
			}
			sus, ok := d.(domain.ServiceSuspended)
			return ok && sus.Reason == closeFenceReason && s.cfg.Clock().Sub(e.OccurredAt) < 2*s.cfg.CloseWait+time.Minute, nil
		}
	}
	return false, nil
}

// Reactivate lifts a suspension.
func (s *Service) Reactivate(ctx context.Context, by Actor, accountID string, idem Idem, reason string) (Outcome, error) {
	if err := Authorize(by, OpReactivate, accountID); err != nil {
		return Outcome{}, err
	}
	mu := s.status.of(accountID)
	mu.Lock()
	defer mu.Unlock()
	return s.simple(ctx, by, OpReactivate, accountID, idem, domain.Reactivate{Reason: reason, Staff: by.staff("")})
}

// Unlock lifts R9's lock early: an operator, after an identity check.
func (s *Service) Unlock(ctx context.Context, by Actor, accountID string, idem Idem, reason, identityCheck string) (Outcome, error) {
	return s.simple(ctx, by, OpUnlock, accountID, idem, domain.Unlock{Reason: reason, Staff: by.staff(identityCheck)})
}

// UnlockEarly lifts R9's lock at the holder's request: a step-up of two
// factor categories from a registered device that signs it.
func (s *Service) UnlockEarly(ctx context.Context, by Actor, accountID string, idem Idem, reason string, auth domain.Authorisation) (Outcome, error) {
	return s.withHashSlot(ctx, by, OpUnlock, accountID, hasPassword(auth.Proofs), func() (Outcome, error) {
		return s.simple(ctx, by, OpUnlock, accountID, idem, domain.Unlock{Reason: reason, Auth: auth})
	})
}

// Close closes the account; its balance must be zero.
//
// An account's available balance counts its own events after the
// projection's checkpoint, but the payments it received are in their
// payers' streams and count only once the projection has applied them.
// So Close first waits for the payments to the account being confirmed
// (its status lock, see ConfirmPayment), then for the projection to apply
// everything committed up to now (at most Config.CloseWait), and decides
// on that balance: a payment received just before the close makes it
// refused, as the balance is not zero, instead of leaving the amount in a
// closed account.
//
// The projection is waited for once before the status lock is taken, so
// that a projection falling behind fails the close without holding up the
// payments to the account, and once more under the lock, for what was
// committed in between (usually nothing, or one projection batch).
//
// Several writers of the log do not share the status lock, so there an
// active account is first suspended (fenceClose) and, if the close is
// refused, reactivated: both are recorded with the reason "closing the
// account".
func (s *Service) Close(ctx context.Context, by Actor, accountID string, idem Idem, reason string) (Outcome, error) {
	if err := Authorize(by, OpClose, accountID); err != nil {
		return Outcome{}, err
	}
	if err := s.waitForProjection(ctx, accountID); err != nil {
		return Outcome{}, err
	}
	mu := s.status.of(accountID)
	mu.Lock()
	defer mu.Unlock()
	// Compensation is credited from the reserve's stream, which neither
	// the status lock nor a fence holds back: the close is conditioned on
	// that stream's version read before the wait, so a payment the wait
	// may not count makes it fail (see compensationCredit).
	var conds []eventstore.Condition
	if s.conditional != nil {
		cur, err := s.Currency(ctx, accountID)
		if err != nil {
			return Outcome{}, err
		}
		reserve := domain.ReserveStream(cur)
		v, err := s.cfg.Store.StreamVersion(ctx, reserve)
		if err != nil {
			return Outcome{}, fmt.Errorf("close account %s: read the reserve's version: %w", accountID, err)
		}
		conds = []eventstore.Condition{{Stream: reserve, Version: v}}
	}
	if err := s.waitForProjection(ctx, accountID); err != nil {
		return Outcome{}, err
	}
	fenced, since := false, int64(-1)
	if !s.cfg.SoleWriter {
		var err error
		if fenced, since, err = s.fenceClose(ctx, by, accountID); err != nil {
			return Outcome{}, err
		}
	}
	if idem.Key != "" {
		idem.Key = by.scope() + ":" + idem.Key
	}
	out, err := s.execute(ctx, accountID, idem, conds, func(a *domain.Account, _ time.Time, bal domain.Balance) (domain.Command, error) {
		if since >= 0 {
			// A status change on another node since the balance was
			// waited for may have let payments in that it does not count.
			moved, err := s.statusMovedSince(ctx, accountID, since, a.Version)
			if err != nil {
				return nil, err
			}
			if moved {
				return nil, domain.Errorf(domain.CodeConflict,
					"the status of account %s changed while it was being closed; nothing was closed: retry", accountID).With("retry_after", 1)
			}
		}
		return domain.CloseAccount{Reason: reason, Balance: bal, Staff: by.staff("")}, nil
	})
	if errors.Is(err, eventstore.ErrConditionFailed) {
		err = domain.Errorf(domain.CodeConflict,
			"the reserve paid or took money while account %s was being closed; nothing was closed: retry", accountID).With("retry_after", 1)
	}
	if fenced && (err != nil || out.Refusal != nil) {
		if uerr := s.unfence(ctx, by, accountID, since); uerr != nil {
			return out, errors.Join(err, uerr)
		}
	}
	return out, err
}

// errStatusMoved is what unfence's decision answers when the account's
// status changed since the fence: that change stands.
var errStatusMoved = errors.New("the account's status changed since the close's fence")

// unfence lifts the suspension fenceClose made at version fence, unless
// another node changed the account's status since (a suspension or a
// reactivation of its own, which stands).
func (s *Service) unfence(ctx context.Context, by Actor, accountID string, fence int64) error {
	out, err := s.Execute(ctx, by, OpReactivate, accountID, Idem{}, func(a *domain.Account, _ time.Time, _ domain.Balance) (domain.Command, error) {
		moved, err := s.statusMovedSince(ctx, accountID, fence, a.Version)
		if err != nil {
			return nil, err
		}
		if moved {
			return nil, errStatusMoved
		}
		return domain.Reactivate{Reason: closeFenceReason, Staff: by.staff("")}, nil
	})
	if errors.Is(err, errStatusMoved) {
		return nil
	}
	if err == nil && out.Refusal != nil {
		err = out.Refusal
	}
	if err != nil {
		return fmt.Errorf("the close was not made; lifting the suspension it made failed, reactivate account %s: %w", accountID, err)
	}
	return nil
}

// statusMovedSince reports whether accountID's stream holds a status
// change (a suspension, a reactivation or a close) after version since, up
// to version (the aggregate's, read under its lock). A gap too long to
// read counts as moved.
func (s *Service) statusMovedSince(ctx context.Context, accountID string, since, version int64) (bool, error) {
	if version <= since {
		return false, nil
	}
	if version-since > eventstore.MaxReadBatch {
		return true, nil
	}
	evs, err := s.cfg.Store.ReadStream(ctx, domain.AccountStream(accountID), since+1, int(version-since))
	if err != nil {
		return false, fmt.Errorf("read account %s since version %d: %w", accountID, since, err)
	}
	for _, e := range evs {
		if e.Version > version {
			break
		}
		switch e.Type {
		case domain.TypeServiceSuspended, domain.TypeServiceReactivated, domain.TypeAccountClosed:
			return true, nil
		}
	}
	return false, nil
}

// closeFenceReason is the reason recorded on the suspension a close makes
// with several writers, and on its lifting when the close is refused.
const closeFenceReason = "closing the account"

// fenceClose, with several writers of the log, suspends an active account
// before its close is decided: the payments other nodes are confirming to
// it are conditioned on its stream's version (ConfirmPayment), so the
// suspension either comes after them, and the wait for the projection
// then counts them, or makes them fail and read the account suspended.
// An account that is not active takes no payment either, so the wait
// counts every payment to it, as long as no other node reactivates it
// before the close is appended: Close refuses if any status change
// follows since, the account's version the wait started from (the fence's
// when it made one). It reports whether it suspended; Close lifts that
// suspension if the close is refused.
func (s *Service) fenceClose(ctx context.Context, by Actor, accountID string) (fenced bool, since int64, err error) {
	ent := s.cache.lock(accountID)
	err = s.load(ctx, ent, accountID)
	active := err == nil && ent.acct.Status == domain.StatusActive
	if err == nil {
		since = ent.acct.Version
	}
	ent.mu.Unlock()
	if err != nil {
		return false, 0, err
	}
	if !active {
		// The close's own decision refuses a closed account; a suspended
		// one's payments are all in the log already.
		return false, since, s.waitForProjection(ctx, accountID)
	}
	out, err := s.simple(ctx, by, OpSuspend, accountID, Idem{}, domain.Suspend{Reason: closeFenceReason, Staff: by.staff("")})
	if err != nil {
		return false, 0, err
	}
	if out.Refusal != nil {
		return false, 0, out.Refusal
	}
	since = out.Events[len(out.Events)-1].Version
	if err := s.waitForProjection(ctx, accountID); err != nil {
		return true, since, errors.Join(err, s.unfence(ctx, by, accountID, since))
	}
	return true, since, nil
}

// waitForProjection waits, at most Config.CloseWait, for the balances
// projection to apply everything the log holds now.
func (s *Service) waitForProjection(ctx context.Context, accountID string) error {
	return s.waitForBalances(ctx, "close account "+accountID, "the balance to close on is not known yet; nothing was recorded")
}

// waitForBalances waits, at most Config.CloseWait, for the balances
// projection to apply everything the log holds now, for what (an action,
// in messages) which needs the credits from other streams counted; why
// says what is unknown until then.
func (s *Service) waitForBalances(ctx context.Context, what, why string) error {
	head, err := s.cfg.Store.Head(ctx)
	if err != nil {
		return fmt.Errorf("%s: read the log's head: %w", what, err)
	}
	wctx, cancel := context.WithTimeout(ctx, s.cfg.CloseWait)
	defer cancel()
	if err := s.cfg.Balances.WaitFor(wctx, head); err != nil {
		return domain.Errorf(domain.CodeUnavailable,
			"the balances projection has not reached position %d of the log, so %s; retry", head, why)
	}
	return nil
}

// RevokeFactor retires a factor, authorised by auth's step-up.
func (s *Service) RevokeFactor(ctx context.Context, by Actor, accountID string, idem Idem, factorID, reason string, auth domain.Authorisation) (Outcome, error) {
	return s.withHashSlot(ctx, by, OpRevokeFactor, accountID, hasPassword(auth.Proofs), func() (Outcome, error) {
		return s.simple(ctx, by, OpRevokeFactor, accountID, idem, domain.RevokeFactor{FactorID: factorID, Reason: reason, Auth: auth})
	})
}

// ReportCredentialLoss reports a factor's credential lost (R1): from the
// holder's session, or by an operator after an identity check.
func (s *Service) ReportCredentialLoss(ctx context.Context, by Actor, accountID string, idem Idem, factorID, identityCheck string) (Outcome, error) {
	return s.simple(ctx, by, OpReportLoss, accountID, idem, domain.ReportCredentialLoss{FactorID: factorID, Staff: by.staff(identityCheck)})
}

func (s *Service) simple(ctx context.Context, by Actor, op Op, accountID string, idem Idem, cmd domain.Command) (Outcome, error) {
	return s.Execute(ctx, by, op, accountID, idem, func(*domain.Account, time.Time, domain.Balance) (domain.Command, error) {
		return cmd, nil
	})
}

// AccountView is a consistent copy of an account's state for reads.
type AccountView struct {
	ID          string
	HolderName  string
	Currency    domain.Currency
	Kind        string
	Status      string
	AgreedLimit domain.Money
	Version     int64
	Factors     []domain.Factor
	BankLast4   string
	Devices     []domain.Device
	LockedUntil time.Time
	Failures    int
	// Available is the spendable balance now (projection + own tail).
	Available domain.Money
	// Day usage against the R10 caps, for the current calendar day.
	SingleUsed, NoCertUsed, AllUsed domain.Money
}

// Account returns a view of the account, or not_found, to an actor that
// may read it (a staff read is recorded).
func (s *Service) Account(ctx context.Context, by Actor, accountID string) (AccountView, error) {
	if err := s.AuthorizeRead(ctx, by, OpViewAccount, accountID); err != nil {
		return AccountView{}, err
	}
	ent := s.cache.lock(accountID)
	defer ent.mu.Unlock()
	if err := s.load(ctx, ent, accountID); err != nil {
		return AccountView{}, err
	}
	a := ent.acct
	if !a.Exists() {
		s.cache.drop(accountID, ent)
		return AccountView{}, domain.Errorf(domain.CodeNotFound, "account %s not found", accountID)
	}
	proj, cp := s.cfg.Balances.Snapshot(accountID)
	single, noCert, all := a.DayUsage(s.cfg.Clock())
	v := AccountView{ID: a.ID, HolderName: a.HolderName, Currency: a.Currency, Kind: a.Kind, Status: a.Status,
		AgreedLimit: a.AgreedLimit, Version: a.Version, Factors: a.Factors(), Devices: a.Devices(), LockedUntil: a.LockedUntil(),
		Failures: a.FailedAttempts(), Available: a.Available(proj, cp),
		SingleUsed: domain.Money{Amount: single, Currency: a.Currency}, NoCertUsed: domain.Money{Amount: noCert, Currency: a.Currency},
		AllUsed: domain.Money{Amount: all, Currency: a.Currency}}
	if b, ok := a.BankAccount(); ok {
		v.BankLast4 = b.Last4
	}
	return v, nil
}

// Currency returns the currency of an existing account, or not_found; for
// reads that AuthorizeRead has already allowed.
func (s *Service) Currency(ctx context.Context, accountID string) (domain.Currency, error) {
	ent := s.cache.lock(accountID)
	defer ent.mu.Unlock()
	if err := s.load(ctx, ent, accountID); err != nil {
		return "", err
	}
	if !ent.acct.Exists() {
		s.cache.drop(accountID, ent)
		return "", domain.Errorf(domain.CodeNotFound, "account %s not found", accountID)
	}
	return ent.acct.Currency, nil
}
