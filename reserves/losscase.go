package reserves

import (
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/shopspring/decimal"

	"github.com/payledger/payledger/domain"
)

// Loss case statuses.
const (
	StatusReported      = "reported"
	StatusInvestigating = "investigating"
	StatusDetermined    = "determined"
	StatusClosed        = "closed"
)

// Refusal codes of loss-case decisions.
const (
	// CodeEvidenceRequired: a finding against the customer names no
	// evidence or no reason, so the loss stays the institution's.
	CodeEvidenceRequired = "evidence_required"
	// CodeCaseState: the step does not fit the case's status.
	CodeCaseState = "case_state"
)

// Bounds on what a case records.
const (
	MaxCasePayments = 20
	maxText         = 500
	maxEvidence     = 20
)

// LossCase is the state of one losscase stream.
type LossCase struct {
	Version    int64
	Report     domain.LossReported
	ReportedAt time.Time
	Status     string
	Liability  *domain.LiabilityDetermined
	Closing    *domain.LossCaseClosed
}

// Exists reports whether the case was reported.
func (c *LossCase) Exists() bool { return c.Status != "" }

// Apply folds one event of the case's stream.
func (c *LossCase) Apply(e domain.Event, rec domain.Recorded) {
	c.Version = rec.Version
	switch v := e.(type) {
	case domain.LossReported:
		c.Report, c.ReportedAt, c.Status = v, rec.OccurredAt, StatusReported
	case domain.LossInvestigated:
		c.Status = StatusInvestigating
	case domain.LiabilityDetermined:
		l := v
		c.Liability, c.Status = &l, StatusDetermined
	case domain.LossCaseClosed:
		cl := v
		c.Closing, c.Status = &cl, StatusClosed
	}
}

// PaymentIDs returns the ids of the case's payments.
func (c *LossCase) PaymentIDs() []string {
	ids := make([]string, len(c.Report.Payments))
	for i, p := range c.Report.Payments {
		ids[i] = p.PaymentID
	}
	return ids
}

// singleFactor sums the case's payments verified with fewer than two
// factor categories: the institution bears them unconditionally (R10).
func (c *LossCase) singleFactor() decimal.Decimal {
	sum := decimal.Zero
	for _, p := range c.Report.Payments {
		if p.VerificationLevel == domain.LevelSingleFactor {
			sum = sum.Add(p.Amount.Amount)
		}
	}
	return sum
}

// AdvancePay is LossReported.Advance when advance compensation is due.
const AdvancePay = "pay"

// advanceInput is what the advance rules look at.
type advanceInput struct {
	payments []domain.LossPayment
	loss     domain.Money
	now      time.Time
	policy   Policy
}

// advanceRule is one row of the advance-compensation table: the first row
// whose test holds decides. Pay false means the case is excluded from
// advance compensation and waits for its investigation.
type advanceRule struct {
	code   string
	reason string
	test   func(advanceInput) bool
	pay    bool
}

// advanceRules decide advance compensation (Art. 37) of a case's
// payments verified with two factor categories or more: they are paid in
// full at once unless a rule below excludes them. Payments verified with
// fewer are the institution's unconditionally (Art. 28): ReportLoss pays
// them in advance whatever these rules say of the others.
var advanceRules = []advanceRule{
	{code: "claim_window_passed", pay: false,
		reason: "a payment was confirmed longer ago than the claim window; it is investigated before any compensation",
		test: func(in advanceInput) bool {
			return slices.ContainsFunc(in.payments, func(p domain.LossPayment) bool { return in.now.Sub(p.ConfirmedAt) > in.policy.ClaimWindow })
		}},
	{code: "above_advance_cap", pay: false,
		reason: "the loss is above the advance cap; it is investigated before any compensation",
		test: func(in advanceInput) bool {
			return in.policy.AdvanceCap.IsPositive() && in.loss.Amount.GreaterThan(in.policy.AdvanceCap)
		}},
	{code: AdvancePay, pay: true,
		reason: "a loss the institution cannot show the customer caused is compensated in full in advance",
		test:   func(advanceInput) bool { return true }},
}

// singleFactorReason is why single-factor payments are paid in advance.
const singleFactorReason = "single_factor: payments verified with fewer than two factor categories are the institution's loss unconditionally"

// ReportLoss decides a holder's loss report on payments of their account
// (the caller found them in the account's stream as confirmed payments it
// debited). It opens the case with the advance-compensation decision: the
// single-factor payments always, the others as advanceRules decide.
func ReportLoss(c *LossCase, caseID, accountID string, payments []domain.LossPayment, description string, p Policy, now time.Time) ([]domain.Event, error) {
	if c.Exists() {
		return nil, domain.Errorf(domain.CodeConflict, "case %s exists", caseID)
	}
	if len(payments) == 0 || len(payments) > MaxCasePayments {
		return nil, domain.Invalid("payment_ids", fmt.Sprintf("a loss report names 1 to %d payments", MaxCasePayments))
	}
	if utf8.RuneCountInString(description) > maxText {
		return nil, domain.Invalid("description", fmt.Sprintf("the description is at most %d characters", maxText))
	}
	cur := payments[0].Amount.Currency
	loss, single := decimal.Zero, decimal.Zero
	var others []domain.LossPayment
	seen := map[string]bool{}
	for _, pay := range payments {
		if seen[pay.PaymentID] {
			return nil, domain.Invalid("payment_ids", fmt.Sprintf("payment %s is named twice", pay.PaymentID))
		}
		seen[pay.PaymentID] = true
		if pay.Amount.Currency != cur {
			return nil, domain.Invalid("payment_ids", "the payments of one case are in one currency")
		}
		loss = loss.Add(pay.Amount.Amount)
		if pay.VerificationLevel == domain.LevelSingleFactor {
			single = single.Add(pay.Amount.Amount)
		} else {
			others = append(others, pay)
		}
	}
	advance, amount, reason := AdvancePay, loss, singleFactorReason
	if len(others) > 0 {
		in := advanceInput{payments: others, loss: domain.Money{Amount: loss.Sub(single), Currency: cur}, now: now, policy: p}
		rule := advanceRules[len(advanceRules)-1]
		for _, r := range advanceRules {
			if r.test(in) {
				rule = r
				break
			}
		}
		reason = rule.code + ": " + rule.reason
		switch {
		case rule.pay && single.IsPositive():
			reason = singleFactorReason + "; the others: " + reason
		case rule.pay:
		case single.IsPositive():
			amount, reason = single, singleFactorReason+"; the others: "+reason
		default:
			advance, amount = rule.code, decimal.Zero
		}
	}
	return []domain.Event{domain.LossReported{CaseID: caseID, AccountID: accountID, Payments: payments, Loss: domain.Money{Amount: loss, Currency: cur},
		Description: description, Advance: advance, AdvanceReason: reason, AdvanceAmount: domain.Money{Amount: amount, Currency: cur}}}, nil
}

// Investigate records that compliance took the case up.
func Investigate(c *LossCase, note string, staff domain.Staff) ([]domain.Event, error) {
	if err := c.expect(StatusReported); err != nil {
		return nil, err
	}
	if utf8.RuneCountInString(note) > maxText {
		return nil, domain.Invalid("note", fmt.Sprintf("the note is at most %d characters", maxText))
	}
	return []domain.Event{domain.LossInvestigated{CaseID: c.Report.CaseID, Note: note, Staff: staff}}, nil
}

// Finding is compliance's finding on a case: who it says caused the loss,
// why, and references to the evidence.
type Finding struct {
	Liable   string
	Reasons  []string
	Evidence []string
}

// liabilityRule is one row of the liability table; the first whose test
// holds decides. decide returns the customer's share, or a refusal.
type liabilityRule struct {
	name   string
	test   func(*LossCase, Finding) bool
	decide func(*LossCase, Finding) (decimal.Decimal, error)
}

// liabilityRules: a loss is the institution's unless shown to be the
// customer's (Art. 37), and single-factor payments are the institution's
// whatever is shown (Art. 28).
var liabilityRules = []liabilityRule{
	{name: "institution_found",
		test:   func(_ *LossCase, f Finding) bool { return f.Liable == domain.LiableInstitution },
		decide: func(*LossCase, Finding) (decimal.Decimal, error) { return decimal.Zero, nil }},
	{name: "not_shown",
		test: func(_ *LossCase, f Finding) bool {
			return f.Liable == domain.LiableCustomer && (len(f.Evidence) == 0 || len(f.Reasons) == 0)
		},
		decide: func(*LossCase, Finding) (decimal.Decimal, error) {
			return decimal.Zero, domain.Errorf(CodeEvidenceRequired,
				"a loss is the institution's unless shown to be the customer's: name the reasons and at least one evidence reference")
		}},
	{name: "customer_shown_single_factor_excepted",
		test: func(_ *LossCase, f Finding) bool { return f.Liable == domain.LiableCustomer },
		decide: func(c *LossCase, _ Finding) (decimal.Decimal, error) {
			return c.Report.Loss.Amount.Sub(c.singleFactor()), nil
		}},
}

// Determine decides liability from compliance's finding.
func Determine(c *LossCase, f Finding, staff domain.Staff) ([]domain.Event, error) {
	if !c.Exists() || c.Status == StatusDetermined || c.Status == StatusClosed {
		return nil, c.expect(StatusInvestigating)
	}
	if f.Liable != domain.LiableInstitution && f.Liable != domain.LiableCustomer {
		return nil, domain.Invalid("liable", `liable must be "institution" or "customer"`)
	}
	if len(f.Reasons) > maxEvidence || len(f.Evidence) > maxEvidence {
		return nil, domain.Invalid("evidence", fmt.Sprintf("at most %d reasons and %d evidence references", maxEvidence, maxEvidence))
	}
	for _, s := range append(slices.Clone(f.Reasons), f.Evidence...) {
		if s == "" || utf8.RuneCountInString(s) > maxText {
			return nil, domain.Invalid("reasons", fmt.Sprintf("reasons and evidence references are 1 to %d characters", maxText))
		}
	}
	for _, r := range liabilityRules {
		if !r.test(c, f) {
			continue
		}
		share, err := r.decide(c, f)
		if err != nil {
			return nil, err
		}
		liable := domain.LiableInstitution
		if share.IsPositive() {
			liable = domain.LiableCustomer
		}
		return []domain.Event{domain.LiabilityDetermined{CaseID: c.Report.CaseID, Liable: liable, Rule: r.name,
			Reasons: f.Reasons, Evidence: f.Evidence, CustomerShare: domain.Money{Amount: share, Currency: c.Report.Loss.Currency},
			Staff: staff}}, nil
	}
	return nil, domain.Errorf(domain.CodeInternal, "no liability rule decides this finding")
}

// Settlement is what a determined case still owes or is owed, given the
// compensation paid so far and what was recovered from the customer.
type Settlement struct {
	// Pay is compensation still owed to the holder by the institution.
	Pay decimal.Decimal
	// Recover is advance compensation still to take back from the holder.
	Recover decimal.Decimal
}

// SettlementOf computes what a determined case still owes: the
// institution bears the loss less the customer's share.
func SettlementOf(c *LossCase, paid, recovered decimal.Decimal) (Settlement, error) {
	if c.Liability == nil {
		return Settlement{}, c.expect(StatusDetermined)
	}
	institution := c.Report.Loss.Amount.Sub(c.Liability.CustomerShare.Amount)
	net := paid.Sub(recovered)
	switch {
	case net.LessThan(institution):
		return Settlement{Pay: institution.Sub(net), Recover: decimal.Zero}, nil
	case net.GreaterThan(institution):
		return Settlement{Pay: decimal.Zero, Recover: net.Sub(institution)}, nil
	}
	return Settlement{Pay: decimal.Zero, Recover: decimal.Zero}, nil
}

// CloseCase closes a determined case once nothing is left to pay. What
// remains to recover stays on record in the closing.
func CloseCase(c *LossCase, paid, recovered decimal.Decimal, staff domain.Staff) ([]domain.Event, error) {
	if c.Status == StatusClosed {
		return nil, domain.Errorf(CodeCaseState, "case %s is closed", c.Report.CaseID)
	}
	s, err := SettlementOf(c, paid, recovered)
	if err != nil {
		return nil, err
	}
	if s.Pay.IsPositive() {
		return nil, domain.Errorf(CodeCaseState, "case %s still owes the holder %s: pay it before closing",
			c.Report.CaseID, s.Pay.StringFixed(domain.MinorUnits(c.Report.Loss.Currency)))
	}
	outcome := "compensated"
	switch {
	case c.Liability.Liable == domain.LiableCustomer && s.Recover.IsPositive():
		outcome = "recovery_outstanding"
	case c.Liability.Liable == domain.LiableCustomer:
		outcome = "customer_liable"
	}
	cur := c.Report.Loss.Currency
	return []domain.Event{domain.LossCaseClosed{CaseID: c.Report.CaseID, Outcome: outcome,
		Compensated: domain.Money{Amount: paid, Currency: cur}, Recovered: domain.Money{Amount: recovered, Currency: cur},
		Staff: staff}}, nil
}

func (c *LossCase) expect(status string) error {
	if !c.Exists() {
		return domain.Errorf(domain.CodeNotFound, "loss case not found")
	}
	if c.Status != status {
		return domain.Errorf(CodeCaseState, "case %s is %s, not %s", c.Report.CaseID, c.Status, status)
	}
	return nil
}
