package reserves

import (
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/payledger/payledger/domain"
)

// Dispute statuses (Art. 41): opened by the holder, assigned to a
// handler, answered, resolved.
const (
	DisputeOpen     = "open"
	DisputeAssigned = "assigned"
	DisputeAnswered = "answered"
	DisputeResolved = "resolved"
)

// Dispute outcomes.
const (
	OutcomeUpheld          = "upheld"
	OutcomePartiallyUpheld = "partially_upheld"
	OutcomeRejected        = "rejected"
	OutcomeWithdrawn       = "withdrawn"
)

// staffOutcomes are the outcomes staff may resolve a dispute with; only
// the holder withdraws one.
var staffOutcomes = []string{OutcomeUpheld, OutcomePartiallyUpheld, OutcomeRejected}

// Bounds on what a dispute records.
const (
	maxSubject = 200
	maxAnswer  = 2000
)

// Dispute is the state of one dispute stream.
type Dispute struct {
	Version    int64
	Opened     domain.DisputeOpened
	OpenedAt   time.Time
	Status     string
	Assignee   string
	Answers    []domain.DisputeAnswered
	Resolution *domain.DisputeResolved
}

// Exists reports whether the dispute was opened.
func (d *Dispute) Exists() bool { return d.Status != "" }

// Apply folds one event of the dispute's stream.
func (d *Dispute) Apply(e domain.Event, rec domain.Recorded) {
	d.Version = rec.Version
	switch v := e.(type) {
	case domain.DisputeOpened:
		d.Opened, d.OpenedAt, d.Status = v, rec.OccurredAt, DisputeOpen
	case domain.DisputeAssigned:
		d.Assignee, d.Status = v.Assignee, DisputeAssigned
	case domain.DisputeAnswered:
		d.Answers = append(d.Answers, v)
		d.Status = DisputeAnswered
	case domain.DisputeResolved:
		r := v
		d.Resolution, d.Status = &r, DisputeResolved
	}
}

// Overdue reports whether the dispute is still unresolved after its due
// time.
func (d *Dispute) Overdue(now time.Time) bool {
	return d.Exists() && d.Status != DisputeResolved && now.After(d.Opened.DueBy)
}

// text checks one free-text input.
func text(field, s string, maxLen int, required bool) error {
	s = strings.TrimSpace(s)
	if required && s == "" {
		return domain.Invalid(field, field+" is required")
	}
	if utf8.RuneCountInString(s) > maxLen {
		return domain.Invalid(field, fmt.Sprintf("%s is at most %d characters", field, maxLen))
	}
	return nil
}

// OpenDispute decides a holder's dispute. A dispute about an error names
// the payment (the caller found it among the account's own); a complaint
// may. The answer is due serviceTime after now.
func OpenDispute(d *Dispute, id, accountID, kind, paymentID, subject, description string, serviceTime time.Duration, now time.Time) ([]domain.Event, error) {
	if d.Exists() {
		return nil, domain.Errorf(domain.CodeConflict, "dispute %s exists", id)
	}
	switch {
	case kind != domain.DisputeError && kind != domain.DisputeComplaint:
		return nil, domain.Invalid("kind", `kind must be "error" or "complaint"`)
	case kind == domain.DisputeError && paymentID == "":
		return nil, domain.Invalid("payment_id", "a dispute about an error names the payment")
	}
	if err := text("subject", subject, maxSubject, true); err != nil {
		return nil, err
	}
	if err := text("description", description, maxAnswer, false); err != nil {
		return nil, err
	}
	return []domain.Event{domain.DisputeOpened{DisputeID: id, AccountID: accountID, Kind: kind, PaymentID: paymentID,
		Subject: strings.TrimSpace(subject), Description: strings.TrimSpace(description), DueBy: now.Add(serviceTime)}}, nil
}

func (d *Dispute) expectOpen() error {
	if !d.Exists() {
		return domain.Errorf(domain.CodeNotFound, "dispute not found")
	}
	if d.Status == DisputeResolved {
		return domain.Errorf(CodeCaseState, "dispute %s is resolved", d.Opened.DisputeID)
	}
	return nil
}

// AssignDispute gives an unresolved dispute to a handler.
func AssignDispute(d *Dispute, assignee string, staff domain.Staff) ([]domain.Event, error) {
	if err := d.expectOpen(); err != nil {
		return nil, err
	}
	if err := text("assignee", assignee, 100, true); err != nil {
		return nil, err
	}
	return []domain.Event{domain.DisputeAssigned{DisputeID: d.Opened.DisputeID, Assignee: strings.TrimSpace(assignee), Staff: staff}}, nil
}

// AnswerDispute records an answer to the holder on an unresolved dispute.
func AnswerDispute(d *Dispute, answer string, staff domain.Staff) ([]domain.Event, error) {
	if err := d.expectOpen(); err != nil {
		return nil, err
	}
	if err := text("answer", answer, maxAnswer, true); err != nil {
		return nil, err
	}
	if len(d.Answers) >= 50 {
		return nil, domain.Errorf(CodeCaseState, "dispute %s has 50 answers: resolve it", d.Opened.DisputeID)
	}
	return []domain.Event{domain.DisputeAnswered{DisputeID: d.Opened.DisputeID, Answer: strings.TrimSpace(answer), Staff: staff}}, nil
}

// ResolveDispute ends a dispute: staff with an outcome once it was
// answered, or the holder withdrawing it at any time (staff is then
// empty, and the resolution is their reason).
func ResolveDispute(d *Dispute, outcome, resolution string, staff domain.Staff) ([]domain.Event, error) {
	if err := d.expectOpen(); err != nil {
		return nil, err
	}
	field := "resolution"
	if staff.StaffKey == "" {
		field = "reason"
	}
	if err := text(field, resolution, maxAnswer, staff.StaffKey != ""); err != nil {
		return nil, err
	}
	switch {
	case staff.StaffKey == "" && outcome != OutcomeWithdrawn:
		return nil, domain.Invalid("outcome", `a holder can only withdraw a dispute: outcome "withdrawn"`)
	case staff.StaffKey != "" && !slices.Contains(staffOutcomes, outcome):
		return nil, domain.Invalid("outcome", `outcome must be "upheld", "partially_upheld" or "rejected"`)
	case staff.StaffKey != "" && len(d.Answers) == 0:
		return nil, domain.Errorf(CodeCaseState, "answer dispute %s before resolving it: the holder is owed an answer", d.Opened.DisputeID)
	}
	return []domain.Event{domain.DisputeResolved{DisputeID: d.Opened.DisputeID, Outcome: outcome, Resolution: strings.TrimSpace(resolution), Staff: staff}}, nil
}
