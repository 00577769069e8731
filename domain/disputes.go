package domain

import "time"

// DisputeStream is the stream of one error dispute or complaint (Art. 41).
func DisputeStream(disputeID string) string { return "dispute-" + disputeID }

// Event type names of disputes. They never change.
const (
	TypeDisputeOpened   = "DisputeOpened"
	TypeDisputeAssigned = "DisputeAssigned"
	TypeDisputeAnswered = "DisputeAnswered"
	TypeDisputeResolved = "DisputeResolved"
)

// Dispute kinds: an error in a transaction, or a complaint about the
// service.
const (
	DisputeError     = "error"
	DisputeComplaint = "complaint"
)

// DisputeOpened opens a holder's dispute, the first event of its stream.
// DueBy is when the institution's answer is due (the service time).
type DisputeOpened struct {
	DisputeID   string    `json:"dispute_id"`
	AccountID   string    `json:"account_id"`
	Kind        string    `json:"kind"`
	PaymentID   string    `json:"payment_id,omitempty"`
	Subject     string    `json:"subject"`
	Description string    `json:"description"`
	DueBy       time.Time `json:"due_by"`
}

// DisputeAssigned gives a dispute to a handler (a desk or a person, named
// by the staff who assigns it).
type DisputeAssigned struct {
	DisputeID string `json:"dispute_id"`
	Assignee  string `json:"assignee"`
	Staff
}

// DisputeAnswered records the institution's answer to the holder.
type DisputeAnswered struct {
	DisputeID string `json:"dispute_id"`
	Answer    string `json:"answer"`
	Staff
}

// DisputeResolved ends a dispute with its outcome: upheld, partly upheld
// or rejected by staff, or withdrawn by the holder (no staff key).
type DisputeResolved struct {
	DisputeID  string `json:"dispute_id"`
	Outcome    string `json:"outcome"`
	Resolution string `json:"resolution"`
	Staff
}

func (DisputeOpened) EventType() string   { return TypeDisputeOpened }
func (DisputeAssigned) EventType() string { return TypeDisputeAssigned }
func (DisputeAnswered) EventType() string { return TypeDisputeAnswered }
func (DisputeResolved) EventType() string { return TypeDisputeResolved }

// Case kinds of CaseFact.
const (
	CaseLoss    = "loss"
	CaseDispute = "dispute"
)

// CaseFact is what an event of a loss case or a dispute tells the list of
// cases staff work from: which case, its status after the event, and for
// the opening event its account and the time an answer is due.
type CaseFact struct {
	CaseID    string
	Kind      string
	Status    string
	Opens     bool
	AccountID string
	DueBy     time.Time
	// Ends is true when the case is closed or resolved.
	Ends bool
}

// caseTypes are the event types CaseFactOf knows.
var caseTypes = map[string]bool{
	TypeLossReported: true, TypeLossInvestigated: true, TypeLiabilityDetermined: true, TypeLossCaseClosed: true,
	TypeDisputeOpened: true, TypeDisputeAssigned: true, TypeDisputeAnswered: true, TypeDisputeResolved: true,
}

// MovesCase reports whether events of type typ change a case's status.
func MovesCase(typ string) bool { return caseTypes[typ] }

// CaseFactOf returns the case fact of an event of a loss case or dispute.
func CaseFactOf(e Event) (CaseFact, bool) {
	switch v := e.(type) {
	case LossReported:
		return CaseFact{CaseID: v.CaseID, Kind: CaseLoss, Status: "reported", Opens: true, AccountID: v.AccountID}, true
	case LossInvestigated:
		return CaseFact{CaseID: v.CaseID, Kind: CaseLoss, Status: "investigating"}, true
	case LiabilityDetermined:
		return CaseFact{CaseID: v.CaseID, Kind: CaseLoss, Status: "determined"}, true
	case LossCaseClosed:
		return CaseFact{CaseID: v.CaseID, Kind: CaseLoss, Status: "closed", Ends: true}, true
	case DisputeOpened:
		return CaseFact{CaseID: v.DisputeID, Kind: CaseDispute, Status: "open", Opens: true, AccountID: v.AccountID, DueBy: v.DueBy}, true
	case DisputeAssigned:
		return CaseFact{CaseID: v.DisputeID, Kind: CaseDispute, Status: "assigned"}, true
	case DisputeAnswered:
		return CaseFact{CaseID: v.DisputeID, Kind: CaseDispute, Status: "answered"}, true
	case DisputeResolved:
		return CaseFact{CaseID: v.DisputeID, Kind: CaseDispute, Status: "resolved", Ends: true}, true
	}
	return CaseFact{}, false
}
