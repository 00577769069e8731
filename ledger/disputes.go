package ledger

import (
	"context"
	"fmt"
	"time"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/reserves"
)

// DisputeRequest is a holder's dispute: an error in a payment (PaymentID
// required) or a complaint.
type DisputeRequest struct {
	Kind        string
	PaymentID   string
	Subject     string
	Description string
}

// DisputeView is a dispute as its holder and staff see it.
type DisputeView struct {
	reserves.Dispute
	Overdue bool
	// Replayed is true when the step was an earlier request's, answered
	// again for its Idempotency-Key.
	Replayed bool
}

// loadDispute folds a dispute's stream.
func (s *Service) loadDispute(ctx context.Context, id string) (*reserves.Dispute, *stream, error) {
	d := &reserves.Dispute{}
	st := newStream(domain.DisputeStream(id), d.Apply)
	if err := s.catchUp(ctx, st); err != nil {
		return nil, nil, err
	}
	return d, st, nil
}

// executeDispute runs a decision on a dispute's stream and returns it.
func (s *Service) executeDispute(ctx context.Context, id string, idem Idem, decide func(d *reserves.Dispute, now time.Time) ([]domain.Event, error)) (DisputeView, error) {
	out, err := s.executeOn(ctx, "dispute "+id, idem, func() (*stream, func(time.Time) ([]domain.Event, error), error) {
		d, st, err := s.loadDispute(ctx, id)
		if err != nil {
			return nil, nil, err
		}
		return st, func(now time.Time) ([]domain.Event, error) { return decide(d, now) }, nil
	})
	if err != nil {
		return DisputeView{}, err
	}
	d, _, err := s.loadDispute(ctx, id)
	if err != nil {
		return DisputeView{}, err
	}
	return DisputeView{Dispute: *d, Overdue: d.Overdue(s.cfg.Clock()), Replayed: out.Replayed}, nil
}

// OpenDispute opens a holder's dispute about an error in one of their
// payments, or a complaint (Art. 41); its answer is due within the
// policy's service time.
func (s *Service) OpenDispute(ctx context.Context, by Actor, accountID string, idem Idem, r DisputeRequest) (DisputeView, error) {
	if err := Authorize(by, OpOpenDispute, accountID); err != nil {
		return DisputeView{}, err
	}
	if idem.Key != "" {
		idem.Key = by.scope() + ":" + idem.Key
	}
	if _, err := s.Currency(ctx, accountID); err != nil {
		return DisputeView{}, err
	}
	if r.PaymentID != "" {
		if err := s.ownPayment(ctx, accountID, r.PaymentID); err != nil {
			return DisputeView{}, err
		}
	}
	id := s.opens.claim("dispute:"+idem.Key, idem.Key != "", s.cfg.NewID, s.cfg.Clock())
	return s.executeDispute(ctx, id, idem, func(d *reserves.Dispute, now time.Time) ([]domain.Event, error) {
		return reserves.OpenDispute(d, id, accountID, r.Kind, r.PaymentID, r.Subject, r.Description, s.cfg.Reserves.DisputeServiceTime, now)
	})
}

// ownPayment checks that paymentID is a payment the account initiated.
func (s *Service) ownPayment(ctx context.Context, accountID, paymentID string) error {
	stream := domain.AccountStream(accountID)
	from := int64(-1)
	for scanned := 0; scanned < maxPaymentScan; {
		evs, err := s.cfg.Store.ReadStreamBackward(ctx, stream, from, loadBatch)
		if err != nil {
			return fmt.Errorf("find payment of account %s: %w", accountID, err)
		}
		for _, e := range evs {
			if e.Type != domain.TypePaymentInitiated {
				continue
			}
			d, err := domain.DecodeEvent(e.Type, e.SchemaVersion, e.Payload)
			if err != nil {
				return fmt.Errorf("account %s at position %d: %w", accountID, e.Position, err)
			}
			if d.(domain.PaymentInitiated).PaymentID == paymentID {
				return nil
			}
		}
		scanned += len(evs)
		if len(evs) < loadBatch || evs[len(evs)-1].Version <= 1 {
			break
		}
		from = evs[len(evs)-1].Version - 1
	}
	return domain.Invalid("payment_id", fmt.Sprintf("payment %s is not a payment of this account", paymentID))
}

// Dispute returns a dispute to its holder or to staff; another holder's
// answers as a missing one does.
func (s *Service) Dispute(ctx context.Context, by Actor, id string) (DisputeView, error) {
	d, _, err := s.disputeFor(ctx, by, OpViewDispute, id)
	if err != nil {
		return DisputeView{}, err
	}
	if err := s.recordStaffRead(ctx, by, d.Opened.AccountID, "dispute "+id); err != nil {
		return DisputeView{}, err
	}
	return DisputeView{Dispute: *d, Overdue: d.Overdue(s.cfg.Clock())}, nil
}

// disputeFor loads a dispute and authorises op on it for by.
func (s *Service) disputeFor(ctx context.Context, by Actor, op Op, id string) (*reserves.Dispute, *stream, error) {
	d, st, err := s.loadDispute(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	accountID := d.Opened.AccountID
	if !d.Exists() {
		accountID = "-"
	}
	if err := Authorize(by, op, accountID); err != nil {
		return nil, nil, err
	}
	if !d.Exists() {
		return nil, nil, domain.Errorf(domain.CodeNotFound, "dispute not found")
	}
	return d, st, nil
}

// AssignDispute gives a dispute to a handler.
func (s *Service) AssignDispute(ctx context.Context, by Actor, id string, idem Idem, assignee string) (DisputeView, error) {
	return s.disputeStep(ctx, by, OpHandleDispute, id, idem, func(d *reserves.Dispute) ([]domain.Event, error) {
		return reserves.AssignDispute(d, assignee, by.staff(""))
	})
}

// AnswerDispute records the institution's answer to the holder.
func (s *Service) AnswerDispute(ctx context.Context, by Actor, id string, idem Idem, answer string) (DisputeView, error) {
	return s.disputeStep(ctx, by, OpHandleDispute, id, idem, func(d *reserves.Dispute) ([]domain.Event, error) {
		return reserves.AnswerDispute(d, answer, by.staff(""))
	})
}

// ResolveDispute ends a dispute with staff's outcome, once answered.
func (s *Service) ResolveDispute(ctx context.Context, by Actor, id string, idem Idem, outcome, resolution string) (DisputeView, error) {
	return s.disputeStep(ctx, by, OpHandleDispute, id, idem, func(d *reserves.Dispute) ([]domain.Event, error) {
		return reserves.ResolveDispute(d, outcome, resolution, by.staff(""))
	})
}

// WithdrawDispute is the holder ending their own dispute.
func (s *Service) WithdrawDispute(ctx context.Context, by Actor, id string, idem Idem, reason string) (DisputeView, error) {
	return s.disputeStep(ctx, by, OpWithdrawDispute, id, idem, func(d *reserves.Dispute) ([]domain.Event, error) {
		return reserves.ResolveDispute(d, reserves.OutcomeWithdrawn, reason, domain.Staff{})
	})
}

func (s *Service) disputeStep(ctx context.Context, by Actor, op Op, id string, idem Idem, decide func(*reserves.Dispute) ([]domain.Event, error)) (DisputeView, error) {
	if _, _, err := s.disputeFor(ctx, by, op, id); err != nil {
		return DisputeView{}, err
	}
	if idem.Key != "" {
		idem.Key = by.scope() + ":" + idem.Key
	}
	return s.executeDispute(ctx, id, idem, func(d *reserves.Dispute, _ time.Time) ([]domain.Event, error) { return decide(d) })
}
