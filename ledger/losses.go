package ledger

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"github.com/shopspring/decimal"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/eventstore"
	"github.com/payledger/payledger/reserves"
)

// maxPaymentScan bounds how many events of an account's stream a loss
// report reads back to find the payments it names.
const maxPaymentScan = 200000

// LossRequest is a holder's loss report: the payments they did not make.
type LossRequest struct {
	PaymentIDs  []string
	Description string
}

// LossCaseView is a loss case as its holder and staff see it.
type LossCaseView struct {
	CaseID      string
	AccountID   string
	Status      string
	ReportedAt  time.Time
	Payments    []domain.LossPayment
	Loss        domain.Money
	Description string
	// Advance is "paid", "due" (owed but not paid yet: the reserve was
	// short) or the code of the rule that excluded advance compensation;
	// AdvanceReason says which rule decided.
	Advance       string
	AdvanceReason string
	// AdvanceAmount is what the advance pays (zero when the rules
	// exclude the case).
	AdvanceAmount domain.Money
	Compensated   domain.Money
	Recovered     domain.Money
	Liability     *domain.LiabilityDetermined
	Closing       *domain.LossCaseClosed
	// Refusal is set when the last step could not pay (a shortfall).
	Refusal error
	// Replayed is true when the step was an earlier request's, answered
	// again for its Idempotency-Key.
	Replayed bool
}

// ReportLossCase opens a loss case on payments of the holder's account and
// pays advance compensation from the reserve at once when the rules say
// so (Art. 37). The payments are first claimed in the account's own
// stream, so no payment is claimed in two cases; the case's stream then
// opens. A shortfall leaves the advance due and is recorded.
func (s *Service) ReportLossCase(ctx context.Context, by Actor, accountID string, idem Idem, r LossRequest) (LossCaseView, error) {
	if err := Authorize(by, OpReportLossCase, accountID); err != nil {
		return LossCaseView{}, err
	}
	if len(r.PaymentIDs) == 0 || len(r.PaymentIDs) > reserves.MaxCasePayments {
		return LossCaseView{}, domain.Invalid("payment_ids", fmt.Sprintf("name 1 to %d payments", reserves.MaxCasePayments))
	}
	payments, err := s.findPayments(ctx, accountID, r.PaymentIDs)
	if err != nil {
		return LossCaseView{}, err
	}
	caseID, err := s.claimPayments(ctx, by, accountID, idem, r.PaymentIDs)
	if err != nil {
		return LossCaseView{}, err
	}
	if idem.Key != "" {
		idem.Key = by.scope() + ":" + idem.Key
	}
	out, err := s.executeCase(ctx, caseID, idem, func(c *reserves.LossCase, now time.Time) ([]domain.Event, error) {
		if c.Exists() && c.Report.AccountID == accountID {
			return nil, nil // opened by an earlier try of this report
		}
		return reserves.ReportLoss(c, caseID, accountID, payments, r.Description, s.cfg.Reserves, now)
	})
	if err != nil {
		return LossCaseView{}, err
	}
	if out.Replayed {
		// A replay answers the case as it is and moves no money: an
		// advance still due is settlement's to pay.
		c, _, err := s.loadCase(ctx, caseID)
		if err != nil {
			return LossCaseView{}, err
		}
		v, err := s.caseView(ctx, c)
		v.Replayed = true
		return v, err
	}
	return s.advance(ctx, caseID)
}

// claimPayments records the claim in the account's stream and returns the
// case's id: a new one, the one a retry with the same Idempotency-Key
// recorded, or the one of an earlier claim of exactly these payments whose
// case never opened (the report stopped between the two appends).
func (s *Service) claimPayments(ctx context.Context, by Actor, accountID string, idem Idem, paymentIDs []string) (string, error) {
	caseID := s.opens.claim("loss:"+by.scope()+":"+idem.Key, idem.Key != "", s.cfg.NewID, s.cfg.Clock())
	out, err := s.Execute(ctx, by, OpReportLossCase, accountID, idem, func(*domain.Account, time.Time, domain.Balance) (domain.Command, error) {
		return domain.ClaimLoss{CaseID: caseID, PaymentIDs: paymentIDs}, nil
	})
	if err == nil {
		claimed, _, err := findIn[domain.LossClaimed](out)
		return claimed.CaseID, err
	}
	other, _ := domain.ErrorDetails(err)["case_id"].(string)
	if domain.ErrorCode(err) != domain.CodeConflict || other == "" {
		return "", err
	}
	c, _, lerr := s.loadCase(ctx, other)
	if lerr != nil {
		return "", lerr
	}
	if c.Exists() || !s.claimedTogether(ctx, accountID, other, paymentIDs) {
		return "", err
	}
	return other, nil
}

// claimedTogether reports whether every payment is claimed in caseID.
func (s *Service) claimedTogether(ctx context.Context, accountID, caseID string, paymentIDs []string) bool {
	ent := s.cache.lock(accountID)
	defer ent.mu.Unlock()
	if err := s.load(ctx, ent, accountID); err != nil {
		return false
	}
	for _, p := range paymentIDs {
		if c, ok := ent.acct.ClaimedIn(p); !ok || c != caseID {
			return false
		}
	}
	return true
}

// findIn returns the first event of type T an outcome recorded.
func findIn[T domain.Event](out Outcome) (T, Outcome, error) {
	for _, e := range out.Decoded {
		if v, ok := e.(T); ok {
			return v, out, nil
		}
	}
	var zero T
	return zero, out, domain.Errorf(domain.CodeInternal, "expected %s in the outcome", zero.EventType())
}

// findPayments reads the account's stream back for the confirmed payments
// it debited with the given ids.
func (s *Service) findPayments(ctx context.Context, accountID string, ids []string) ([]domain.LossPayment, error) {
	want := map[string]int{}
	for i, id := range ids {
		if _, dup := want[id]; dup {
			return nil, domain.Invalid("payment_ids", fmt.Sprintf("payment %s is named twice", id))
		}
		want[id] = i
	}
	found := make([]domain.LossPayment, len(ids))
	left := len(ids)
	stream := domain.AccountStream(accountID)
	from := int64(-1)
	for scanned := 0; left > 0 && scanned < maxPaymentScan; {
		evs, err := s.cfg.Store.ReadStreamBackward(ctx, stream, from, loadBatch)
		if err != nil {
			return nil, fmt.Errorf("find payments of account %s: %w", accountID, err)
		}
		for _, e := range evs {
			if e.Type != domain.TypePaymentConfirmed {
				continue
			}
			d, err := domain.DecodeEvent(e.Type, e.SchemaVersion, e.Payload)
			if err != nil {
				return nil, fmt.Errorf("account %s at position %d: %w", accountID, e.Position, err)
			}
			pc := d.(domain.PaymentConfirmed)
			if i, ok := want[pc.PaymentID]; ok && pc.DebitAccount == accountID && found[i].PaymentID == "" {
				found[i] = domain.LossPayment{PaymentID: pc.PaymentID, Payee: pc.CreditAccount, Amount: pc.Amount,
					VerificationLevel: pc.VerificationLevel, ConfirmedAt: e.OccurredAt}
				left--
			}
		}
		scanned += len(evs)
		if len(evs) < loadBatch || evs[len(evs)-1].Version <= 1 {
			break
		}
		from = evs[len(evs)-1].Version - 1
	}
	for i, p := range found {
		if p.PaymentID == "" {
			return nil, domain.Invalid("payment_ids", fmt.Sprintf("payment %s is not a confirmed payment of this account", ids[i]))
		}
	}
	return found, nil
}

// advance pays a case's advance compensation when it is due and unpaid,
// and returns the case.
func (s *Service) advance(ctx context.Context, caseID string) (LossCaseView, error) {
	c, _, err := s.loadCase(ctx, caseID)
	if err != nil {
		return LossCaseView{}, err
	}
	if !c.Exists() {
		return LossCaseView{}, domain.Errorf(domain.CodeNotFound, "loss case not found")
	}
	var refusal error
	if advanceDue(c) {
		rep := c.Report
		out, err := s.payCompensation(ctx, rep.AccountID, rep.Loss.Currency, Idem{}, func(credit string) ReserveDecision {
			return func(r *reserves.Reserve, bal domain.Money, _ time.Time) ([]domain.Event, error) {
				// Decided again under the reserve's lock: the case may have
				// moved on (liability determined) since it was read, and
				// nothing is paid in advance once anything was paid.
				now, _, err := s.loadCase(ctx, caseID)
				if err != nil {
					return nil, err
				}
				if !advanceDue(now) || r.Paid(caseID, domain.CompensationAdvance).Add(r.Paid(caseID, domain.CompensationSettlement)).IsPositive() {
					return nil, nil
				}
				return reserves.Compensate(r, caseID, domain.CompensationAdvance, credit, c.PaymentIDs(), advanceAmount(rep), domain.Staff{}, bal)
			}
		})
		switch code := domain.ErrorCode(err); {
		case err == nil:
			refusal = out.Refusal
		case code == domain.CodeConflict || code == reserves.CodeReserveShortfall:
			// The case stands; its advance stays due or was paid in
			// another case, and the caller is told which.
			refusal = err
		default:
			return LossCaseView{}, err
		}
	}
	v, err := s.caseView(ctx, c)
	v.Refusal = refusal
	return v, err
}

// advanceDue reports whether a case may still be paid in advance: the
// rules granted it, and compliance has not determined liability yet.
func advanceDue(c *reserves.LossCase) bool {
	return c.Report.Advance == reserves.AdvancePay && c.Liability == nil &&
		(c.Status == reserves.StatusReported || c.Status == reserves.StatusInvestigating)
}

// advanceAmount is what a case's advance pays.
func advanceAmount(r domain.LossReported) domain.Money {
	if r.AdvanceAmount.Currency == "" {
		return r.Loss
	}
	return r.AdvanceAmount
}

// compensationCredit is where a holder's compensation goes: their
// account, or compensation suspense when it is closed (finance pays it out
// from there). For the account, it returns the condition the reserve's
// append must meet: the account's stream has not moved since its status
// was read, so a close that comes in between makes the payment read it
// again (and a close conditioned on the reserve's stream is refused if
// the payment came first, see Close).
func (s *Service) compensationCredit(ctx context.Context, accountID string, c domain.Currency) (string, []eventstore.Condition, error) {
	ent := s.cache.lock(accountID)
	defer ent.mu.Unlock()
	if err := s.load(ctx, ent, accountID); err != nil {
		return "", nil, err
	}
	if ent.acct.Status == domain.StatusClosed {
		return domain.CompensationSuspenseAccountID(c), nil, nil
	}
	return accountID, []eventstore.Condition{{Stream: domain.AccountStream(accountID), Version: ent.acct.Version}}, nil
}

// payCompensation runs a decision on the reserve of c that credits
// accountID's compensation (where compensationCredit says), reading the
// account again when it moved before the reserve's append.
func (s *Service) payCompensation(ctx context.Context, accountID string, c domain.Currency, idem Idem, decide func(credit string) ReserveDecision) (Outcome, error) {
	return s.rereading("account "+accountID, func() (Outcome, error) {
		credit, conds, err := s.compensationCredit(ctx, accountID, c)
		if err != nil {
			return Outcome{}, err
		}
		return s.executeReserve(ctx, c, idem, decide(credit), conds...)
	})
}

// caseView adds what the reserve paid and the holder's account recovered.
func (s *Service) caseView(ctx context.Context, c *reserves.LossCase) (LossCaseView, error) {
	rep := c.Report
	cur := rep.Loss.Currency
	m, err := s.caseMoney(ctx, c)
	if err != nil {
		return LossCaseView{}, err
	}
	paid, recovered := m.paid(), m.recovered
	advance := rep.Advance
	if advance == reserves.AdvancePay {
		advance = "due"
		if m.advance.IsPositive() {
			advance = "paid"
		}
	}
	return LossCaseView{CaseID: rep.CaseID, AccountID: rep.AccountID, Status: c.Status, ReportedAt: c.ReportedAt,
		Payments: rep.Payments, Loss: rep.Loss, Description: rep.Description, Advance: advance, AdvanceReason: rep.AdvanceReason,
		AdvanceAmount: advanceAmount(rep),
		Compensated:   domain.Money{Amount: paid, Currency: cur}, Recovered: domain.Money{Amount: recovered, Currency: cur},
		Liability: c.Liability, Closing: c.Closing}, nil
}

// caseMoney is what the reserve paid for a case (in advance and in
// settlement) and what was taken back from the holder.
type caseMoney struct {
	advance, settlement, recovered decimal.Decimal
}

func (m caseMoney) paid() decimal.Decimal { return m.advance.Add(m.settlement) }

// caseMoney reads a case's money as of now from the reserve's stream and
// the holder's.
func (s *Service) caseMoney(ctx context.Context, c *reserves.LossCase) (caseMoney, error) {
	ent, err := s.lockReserve(ctx, c.Report.Loss.Currency)
	if err != nil {
		return caseMoney{}, err
	}
	m := caseMoney{advance: ent.reserve.Paid(c.Report.CaseID, domain.CompensationAdvance),
		settlement: ent.reserve.Paid(c.Report.CaseID, domain.CompensationSettlement)}
	ent.mu.Unlock()
	acct := s.cache.lock(c.Report.AccountID)
	defer acct.mu.Unlock()
	if err := s.load(ctx, acct, c.Report.AccountID); err != nil {
		return caseMoney{}, err
	}
	m.recovered = acct.acct.Recovered(c.Report.CaseID)
	return m, nil
}

// LossCase returns a case to its holder or to staff.
func (s *Service) LossCase(ctx context.Context, by Actor, caseID string) (LossCaseView, error) {
	c, _, err := s.loadCase(ctx, caseID)
	if err != nil {
		return LossCaseView{}, err
	}
	accountID := c.Report.AccountID
	if !c.Exists() {
		// A holder gets the same refusal for a case that does not exist
		// as for another holder's.
		accountID = "-"
	}
	if err := Authorize(by, OpViewLossCase, accountID); err != nil {
		return LossCaseView{}, err
	}
	if !c.Exists() {
		return LossCaseView{}, domain.Errorf(domain.CodeNotFound, "loss case not found")
	}
	if err := s.recordStaffRead(ctx, by, accountID, "loss_case "+caseID); err != nil {
		return LossCaseView{}, err
	}
	return s.caseView(ctx, c)
}

// InvestigateLoss records that compliance took a case up.
func (s *Service) InvestigateLoss(ctx context.Context, by Actor, caseID string, idem Idem, note string) (LossCaseView, error) {
	return s.caseStep(ctx, by, OpInvestigateLoss, caseID, idem, func(c *reserves.LossCase, _ time.Time) ([]domain.Event, error) {
		return reserves.Investigate(c, note, by.staff(""))
	})
}

// DetermineLiability records compliance's finding on who bears a loss.
func (s *Service) DetermineLiability(ctx context.Context, by Actor, caseID string, idem Idem, f reserves.Finding) (LossCaseView, error) {
	return s.caseStep(ctx, by, OpDetermineLiability, caseID, idem, func(c *reserves.LossCase, _ time.Time) ([]domain.Event, error) {
		return reserves.Determine(c, f, by.staff(""))
	})
}

// CloseLossCase closes a determined case once nothing is owed to the holder.
func (s *Service) CloseLossCase(ctx context.Context, by Actor, caseID string, idem Idem) (LossCaseView, error) {
	c, err := s.staffCase(ctx, by, OpCloseLossCase, caseID)
	if err != nil {
		return LossCaseView{}, err
	}
	m, err := s.caseMoney(ctx, c)
	if err != nil {
		return LossCaseView{}, err
	}
	return s.caseStep(ctx, by, OpCloseLossCase, caseID, idem, func(c *reserves.LossCase, _ time.Time) ([]domain.Event, error) {
		return reserves.CloseCase(c, m.paid(), m.recovered, by.staff(""))
	})
}

// staffCase authorises a staff step on a case and loads the case.
func (s *Service) staffCase(ctx context.Context, by Actor, op Op, caseID string) (*reserves.LossCase, error) {
	if err := Authorize(by, op, ""); err != nil {
		return nil, err
	}
	c, _, err := s.loadCase(ctx, caseID)
	if err != nil {
		return nil, err
	}
	if !c.Exists() {
		return nil, domain.Errorf(domain.CodeNotFound, "loss case not found")
	}
	return c, nil
}

func (s *Service) caseStep(ctx context.Context, by Actor, op Op, caseID string, idem Idem, decide CaseDecision) (LossCaseView, error) {
	if err := Authorize(by, op, ""); err != nil {
		return LossCaseView{}, err
	}
	if idem.Key != "" {
		idem.Key = by.scope() + ":" + idem.Key
	}
	out, err := s.executeCase(ctx, caseID, idem, decide)
	if err != nil {
		return LossCaseView{}, err
	}
	c, _, err := s.loadCase(ctx, caseID)
	if err != nil {
		return LossCaseView{}, err
	}
	v, err := s.caseView(ctx, c)
	v.Replayed = out.Replayed
	return v, err
}

// SettleLoss moves the money a case still owes: before liability is
// determined, an advance that is due and unpaid (after a shortfall was
// topped up); after, the compensation the institution still owes the
// holder, or what it takes back of an advance the holder was found liable
// for (as much as the account holds).
func (s *Service) SettleLoss(ctx context.Context, by Actor, caseID string, idem Idem) (LossCaseView, error) {
	c, err := s.staffCase(ctx, by, OpSettleLoss, caseID)
	if err != nil {
		return LossCaseView{}, err
	}
	if c.Liability == nil {
		m, err := s.caseMoney(ctx, c)
		if err != nil {
			return LossCaseView{}, err
		}
		if c.Report.Advance != reserves.AdvancePay || m.advance.IsPositive() {
			return LossCaseView{}, domain.Errorf(domain.CodeConflict,
				"case %s owes no advance now; what else it owes is settled once compliance has determined liability", caseID)
		}
		return s.advance(ctx, caseID)
	}
	m, err := s.caseMoney(ctx, c)
	if err != nil {
		return LossCaseView{}, err
	}
	due, err := reserves.SettlementOf(c, m.paid(), m.recovered)
	if err != nil {
		return LossCaseView{}, err
	}
	rep := c.Report
	cur := rep.Loss.Currency
	var nothing error = domain.Errorf(domain.CodeConflict, "case %s owes nothing and is owed nothing: close it", caseID)
	var refusal error
	switch {
	case due.Pay.IsPositive():
		scoped := idem
		if scoped.Key != "" {
			scoped.Key = by.scope() + ":" + scoped.Key
		}
		out, err := s.payCompensation(ctx, rep.AccountID, cur, scoped, func(credit string) ReserveDecision {
			return func(r *reserves.Reserve, bal domain.Money, _ time.Time) ([]domain.Event, error) {
				// What is owed is decided again under the reserve's lock, from
				// what the reserve has paid, so two settlements pay once.
				paid := r.Paid(caseID, domain.CompensationAdvance).Add(r.Paid(caseID, domain.CompensationSettlement))
				now, err := reserves.SettlementOf(c, paid, m.recovered)
				if err != nil || !now.Pay.IsPositive() {
					return nil, cmp.Or(err, nothing)
				}
				return reserves.Compensate(r, caseID, domain.CompensationSettlement, credit, nil,
					domain.Money{Amount: now.Pay, Currency: cur}, by.staff(""), bal)
			}
		})
		if err != nil {
			return LossCaseView{}, err
		}
		refusal = out.Refusal
	case due.Recover.IsPositive():
		if _, err := s.Execute(ctx, by, OpSettleLoss, rep.AccountID, idem, func(a *domain.Account, _ time.Time, bal domain.Balance) (domain.Command, error) {
			// Decided again under the account's lock, from what it has
			// given back, so two recoveries take back once.
			now, err := reserves.SettlementOf(c, m.paid(), a.Recovered(caseID))
			if err != nil || !now.Recover.IsPositive() {
				return nil, cmp.Or(err, nothing)
			}
			return domain.RecoverCompensation{CaseID: caseID, Amount: domain.Money{Amount: now.Recover, Currency: cur},
				Balance: bal, Staff: by.staff("")}, nil
		}); err != nil {
			return LossCaseView{}, err
		}
	default:
		return LossCaseView{}, nothing
	}
	c, _, err = s.loadCase(ctx, caseID)
	if err != nil {
		return LossCaseView{}, err
	}
	v, err := s.caseView(ctx, c)
	v.Refusal = refusal
	return v, err
}

// closeGrace is how long after a day's end its close waits, so that
// events decided just before midnight have been appended.
const closeGrace = time.Minute

// CloseDay closes a calendar day of currency c: it provisions the reserve
// by the policy on the day's fee income and payment volume, read from the
// log, once. A day already closed returns its close unchanged.
func (s *Service) CloseDay(ctx context.Context, by Actor, c domain.Currency, day reserves.Day) (domain.DayClosed, error) {
	if err := Authorize(by, OpCloseDay, ""); err != nil {
		return domain.DayClosed{}, err
	}
	p := s.cfg.Reserves
	_, end := day.Bounds(p.Location)
	if now := s.cfg.Clock(); now.Before(end.Add(closeGrace)) {
		return domain.DayClosed{}, domain.Errorf(reserves.CodeDayNotOver, "day %s is not over in %s (or ended less than %s ago); close it after %s",
			day, p.Location, closeGrace, end.Add(closeGrace).Format(time.RFC3339))
	}
	_, closes, err := s.reserveState(ctx, c)
	if err != nil {
		return domain.DayClosed{}, err
	}
	for _, cl := range closes {
		if cl.Day == string(day) {
			return cl, nil
		}
	}
	began, ok, err := s.ledgerBegan(ctx)
	if err != nil {
		return domain.DayClosed{}, err
	}
	if !ok {
		return domain.DayClosed{}, domain.Invalid("day", "the ledger is empty: there is no day to close")
	}
	if first := reserves.DayOf(began, p.Location); day < first {
		return domain.DayClosed{}, domain.Invalid("day", fmt.Sprintf("the ledger's first day is %s: there is nothing to close before it", first))
	}
	basis, err := s.dayBasis(ctx, c, day)
	if err != nil {
		return domain.DayClosed{}, err
	}
	var closed domain.DayClosed
	_, err = s.executeReserve(ctx, c, Idem{}, func(r *reserves.Reserve, bal domain.Money, _ time.Time) ([]domain.Event, error) {
		evs := reserves.CloseDay(r, day, basis, p, bal)
		if cl, done := r.Closed(day); done {
			closed = cl
		}
		for _, e := range evs {
			if cl, ok := e.(domain.DayClosed); ok {
				closed = cl
			}
		}
		return evs, nil
	})
	return closed, err
}

// dayScanSlack widens the part of the log a close reads around its day,
// for events whose time and position order differ slightly (appends from
// several writers).
const dayScanSlack = 10 * time.Minute

// maxDayScan bounds the events one close reads.
const maxDayScan = 50_000_000

// dayBasis sums a day's fees and confirmed payments in currency c from
// the log: it finds where the day starts by bisecting the log on event
// time, then reads forward to the head.
func (s *Service) dayBasis(ctx context.Context, c domain.Currency, day reserves.Day) (reserves.Basis, error) {
	start, end := day.Bounds(s.cfg.Reserves.Location)
	head, err := s.cfg.Store.Head(ctx)
	if err != nil {
		return reserves.Basis{}, fmt.Errorf("close %s: %w", day, err)
	}
	after, err := s.firstAt(ctx, start.Add(-dayScanSlack), head)
	if err != nil {
		return reserves.Basis{}, err
	}
	b := reserves.Basis{FeeIncome: domain.Zero(c), Volume: domain.Zero(c), Through: after}
	for scanned := 0; b.Through < head && scanned < maxDayScan; {
		evs, err := s.cfg.Store.ReadAll(ctx, b.Through, eventstore.MaxReadBatch)
		if err != nil {
			return reserves.Basis{}, fmt.Errorf("close %s: %w", day, err)
		}
		if len(evs) == 0 {
			break
		}
		for _, e := range evs {
			if e.Position > head || !e.OccurredAt.Before(end.Add(dayScanSlack)) {
				// The log past the day (and its slack) holds nothing of it.
				return b, nil
			}
			b.Through = e.Position
			if e.OccurredAt.Before(start) || !e.OccurredAt.Before(end) ||
				(e.Type != domain.TypeFeeCharged && e.Type != domain.TypePaymentConfirmed) {
				continue
			}
			f, err := domain.DecodeLedgerFacts(e.Type, e.SchemaVersion, e.Payload)
			if err != nil {
				return reserves.Basis{}, fmt.Errorf("close %s at position %d: %w", day, e.Position, err)
			}
			if f.Movement.Amount.Currency != c {
				continue
			}
			if e.Type == domain.TypeFeeCharged {
				b.FeeIncome = b.FeeIncome.Add(f.Movement.Amount)
			} else {
				b.Volume = b.Volume.Add(f.Movement.Amount)
			}
		}
		scanned += len(evs)
	}
	if b.Through < head {
		return reserves.Basis{}, fmt.Errorf("close %s: more than %d events to read", day, maxDayScan)
	}
	return b, nil
}

// firstAt returns the position after which the log's events occurred at
// or after t, bisecting on event time (which follows position closely).
func (s *Service) firstAt(ctx context.Context, t time.Time, head int64) (int64, error) {
	lo, hi := int64(0), head // events after lo may be at or after t; events after hi are
	for i := 0; i < 64 && lo < hi; i++ {
		mid := lo + (hi-lo)/2
		evs, err := s.cfg.Store.ReadAll(ctx, mid, 1)
		if err != nil {
			return 0, fmt.Errorf("find the log's position at %s: %w", t.Format(time.RFC3339), err)
		}
		if len(evs) == 0 || !evs[0].OccurredAt.Before(t) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo, nil
}

// AdjustReserve is finance's top-up or release of a currency's reserve.
func (s *Service) AdjustReserve(ctx context.Context, by Actor, idem Idem, kind, amount, currency, reason string) (Outcome, error) {
	if err := Authorize(by, OpAdjustReserve, ""); err != nil {
		return Outcome{}, err
	}
	c, err := domain.ParseCurrency(currency, "currency")
	if err != nil {
		return Outcome{}, err
	}
	m, err := domain.ParseAmount(amount, c, "amount")
	if err != nil {
		return Outcome{}, err
	}
	if idem.Key != "" {
		idem.Key = by.scope() + ":" + idem.Key
	}
	id := s.cfg.NewID()
	return s.executeReserve(ctx, c, idem, func(r *reserves.Reserve, bal domain.Money, _ time.Time) ([]domain.Event, error) {
		return reserves.Adjust(r, id, kind, m, reason, by.staff(""), s.cfg.Reserves, bal)
	})
}

// ReserveView is a currency's reserve as finance sees it.
type ReserveView struct {
	Balance domain.Money
	Closes  []domain.DayClosed
}

// Reserve returns the reserve of a currency and its last closes.
func (s *Service) Reserve(ctx context.Context, by Actor, currency string, lastCloses int) (ReserveView, error) {
	if err := Authorize(by, OpReadReserve, ""); err != nil {
		return ReserveView{}, err
	}
	c, err := domain.ParseCurrency(currency, "currency")
	if err != nil {
		return ReserveView{}, err
	}
	// What was recovered into the reserve is in the holders' streams, and
	// counts once the projection has applied it.
	if err := s.waitForBalances(ctx, "read the "+string(c)+" reserve", "the reserve's balance is not known yet"); err != nil {
		return ReserveView{}, err
	}
	bal, closes, err := s.reserveState(ctx, c)
	if err != nil {
		return ReserveView{}, err
	}
	if len(closes) > lastCloses {
		closes = closes[len(closes)-lastCloses:]
	}
	return ReserveView{Balance: bal, Closes: closes}, nil
}

// AnnualReport folds the log into the annual report of a calendar year
// (Art. 37, 38): every figure is computed from the log alone.
func (s *Service) AnnualReport(ctx context.Context, by Actor, year int) (reserves.AnnualReport, error) {
	reps, err := s.AnnualReports(ctx, by, []int{year})
	if err != nil {
		return reserves.AnnualReport{}, err
	}
	return reps[year], nil
}

// AnnualReports is AnnualReport for several years from one fold of the log.
func (s *Service) AnnualReports(ctx context.Context, by Actor, years []int) (map[int]reserves.AnnualReport, error) {
	if err := Authorize(by, OpReadAnnualReport, ""); err != nil {
		return nil, err
	}
	for _, y := range years {
		if y < 2000 || y > 9998 {
			return nil, domain.Invalid("year", "year must be a calendar year such as 2026")
		}
	}
	books, err := reserves.FoldLog(ctx, s.cfg.Store, s.cfg.Reserves.Location, 0, nil)
	if err != nil {
		return nil, err
	}
	out := make(map[int]reserves.AnnualReport, len(years))
	for _, y := range years {
		out[y] = books.Annual(y)
	}
	return out, nil
}

// Scheduler is the actor of serve's daily close and of payledger close: a
// finance role that no key authenticates as, so no request can act as it.
var Scheduler = Actor{KeyID: "system-scheduler", Role: finance}

// Reserves returns the provisioning and compensation policy.
func (s *Service) Reserves() reserves.Policy { return s.cfg.Reserves }

// CloseDueDays closes, for currency c, every day that is over and not
// closed yet, from the ledger's first day but at most back days ago;
// serve runs it as its scheduler. It returns the closes it made.
func (s *Service) CloseDueDays(ctx context.Context, c domain.Currency, back int) ([]domain.DayClosed, error) {
	loc := s.cfg.Reserves.Location
	now := s.cfg.Clock()
	began, ok, err := s.ledgerBegan(ctx)
	if err != nil || !ok {
		return nil, err
	}
	_, closes, err := s.reserveState(ctx, c)
	if err != nil {
		return nil, err
	}
	closed := make(map[string]bool, len(closes))
	for _, cl := range closes {
		closed[cl.Day] = true
	}
	next := func(d reserves.Day) reserves.Day {
		start, _ := d.Bounds(loc)
		return reserves.DayOf(start.AddDate(0, 0, 1).Add(time.Hour), loc)
	}
	first := max(reserves.DayOf(began, loc), reserves.DayOf(now.AddDate(0, 0, -back), loc))
	var out []domain.DayClosed
	for d, i := first, 0; i <= back; d, i = next(d), i+1 {
		if _, end := d.Bounds(loc); now.Before(end.Add(closeGrace)) {
			break
		}
		if closed[string(d)] {
			continue
		}
		cl, err := s.CloseDay(ctx, Scheduler, c, d)
		if err != nil {
			return out, err
		}
		out = append(out, cl)
	}
	return out, nil
}

// ledgerBegan returns when the log's first event occurred (ok false while
// the log is empty).
func (s *Service) ledgerBegan(ctx context.Context) (time.Time, bool, error) {
	evs, err := s.cfg.Store.ReadAll(ctx, 0, 1)
	if err != nil || len(evs) == 0 {
		return time.Time{}, false, err
	}
	return evs[0].OccurredAt, true, nil
}
