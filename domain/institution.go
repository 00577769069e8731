package domain

import "time"

// The institution's own accounts, one each per currency, in the same
// double-entry ledger as the customers' (R21, R23). Their balances are
// credits minus debits like every account's; own funds and clearing stand
// for money outside the ledger and may be below zero, the others never are.

// OwnFundsAccountID is the institution's own money: the source of reserve
// top-ups and of provisions on payment volume, the destination of releases.
func OwnFundsAccountID(c Currency) string { return "own-funds-" + string(c) }

// FeeIncomeAccountID receives every payment fee.
func FeeIncomeAccountID(c Currency) string { return "fee-income-" + string(c) }

// ReserveAccountID is the risk-reserve fund (Art. 37): provisioned daily,
// drawn only for compensation, never below zero.
func ReserveAccountID(c Currency) string { return "risk-reserve-" + string(c) }

// CompensationSuspenseAccountID holds compensation owed to a holder whose
// account was closed before it could be paid, until finance pays it out.
func CompensationSuspenseAccountID(c Currency) string { return "compensation-suspense-" + string(c) }

// ReserveStream is the stream of a currency's reserve fund: provisions,
// adjustments, compensation paid, shortfalls and daily closes. Every
// movement out of the reserve is appended there, so its balance is checked
// under that one stream's optimistic concurrency.
func ReserveStream(c Currency) string { return "reserve-" + string(c) }

// LossCaseStream is the stream of one loss case.
func LossCaseStream(caseID string) string { return "losscase-" + caseID }

// Event type names of the institution's streams and of the money events
// they cause in account streams. They never change.
const (
	TypeFeeCharged            = "FeeCharged"
	TypeReserveProvisioned    = "ReserveProvisioned"
	TypeReserveAdjusted       = "ReserveAdjusted"
	TypeReserveShortfall      = "ReserveShortfall"
	TypeDayClosed             = "DayClosed"
	TypeCompensationPaid      = "CompensationPaid"
	TypeCompensationRecovered = "CompensationRecovered"
	TypeLossReported          = "LossReported"
	TypeLossInvestigated      = "LossInvestigated"
	TypeLiabilityDetermined   = "LiabilityDetermined"
	TypeLossCaseClosed        = "LossCaseClosed"
	TypeLossClaimed           = "LossClaimed"
)

// FeeCharged takes a payment's fee (R15, shown before confirmation) from
// the payer into fee income. It follows its PaymentConfirmed in the
// payer's stream, in the same append.
type FeeCharged struct {
	PaymentID     string `json:"payment_id"`
	DebitAccount  string `json:"debit_account"`
	CreditAccount string `json:"credit_account"`
	Amount        Money  `json:"amount"`
	// Schedule is the version of the fee schedule that priced it.
	Schedule string `json:"schedule"`
}

// Provision sources.
const (
	SourceFeeIncome = "fee_income"
	SourceVolume    = "volume"
	SourceFloor     = "floor"
)

// ReserveProvisioned moves money into the reserve at a day's close by the
// provisioning policy: a share of the day's fee income (debit fee income),
// a share of its confirmed payment volume, or what the floor asks (debit
// own funds). Basis is the figure the share applied to.
type ReserveProvisioned struct {
	Day           string `json:"day"`
	Source        string `json:"source"`
	Policy        string `json:"policy"`
	Basis         Money  `json:"basis"`
	DebitAccount  string `json:"debit_account"`
	CreditAccount string `json:"credit_account"`
	Amount        Money  `json:"amount"`
}

// Reserve adjustment kinds.
const (
	AdjustTopUp   = "top_up"
	AdjustRelease = "release"
)

// ReserveAdjusted is finance's top-up (own funds into the reserve) or
// release (back to own funds), with its reason and the staff key.
type ReserveAdjusted struct {
	AdjustmentID  string `json:"adjustment_id"`
	Kind          string `json:"kind"`
	DebitAccount  string `json:"debit_account"`
	CreditAccount string `json:"credit_account"`
	Amount        Money  `json:"amount"`
	Reason        string `json:"reason"`
	Staff
}

// ReserveShortfall records that compensation owed could not be paid
// because the reserve held less: a reportable risk event, never a
// negative reserve.
type ReserveShortfall struct {
	CaseID    string `json:"case_id"`
	Needed    Money  `json:"needed"`
	Available Money  `json:"available"`
}

// DayClosed marks a calendar day (in the institution's zone) closed for
// one currency: its provisions are in the log, and a second close of the
// day changes nothing. ThroughPosition is the last log position the
// day's figures were taken from, so they are reproducible from the log.
type DayClosed struct {
	Day             string `json:"day"`
	Policy          string `json:"policy"`
	ThroughPosition int64  `json:"through_position"`
	FeeIncome       Money  `json:"fee_income"`
	Volume          Money  `json:"volume"`
	Provisioned     Money  `json:"provisioned"`
}

// Compensation kinds: paid in advance when the loss is reported (Art. 37),
// or after liability was found to be the institution's.
const (
	CompensationAdvance    = "advance"
	CompensationSettlement = "settlement"
)

// CompensationPaid pays a loss case from the reserve to the holder (or to
// compensation suspense when the account is closed). It lives in the
// reserve's stream, the account it debits.
type CompensationPaid struct {
	CaseID string `json:"case_id"`
	Kind   string `json:"kind"`
	// PaymentIDs are the payments compensated, so that no payment is
	// compensated twice through two cases.
	PaymentIDs    []string `json:"payment_ids"`
	DebitAccount  string   `json:"debit_account"`
	CreditAccount string   `json:"credit_account"`
	Amount        Money    `json:"amount"`
	Staff
}

// CompensationRecovered takes back an advance from the holder after
// liability was found to be theirs. It lives in the holder's stream (the
// account it debits), so it never takes more than the holder has.
type CompensationRecovered struct {
	CaseID        string `json:"case_id"`
	DebitAccount  string `json:"debit_account"`
	CreditAccount string `json:"credit_account"`
	Amount        Money  `json:"amount"`
	Staff
}

// LossPayment is one payment a loss report names, as the payer's stream
// recorded it.
type LossPayment struct {
	PaymentID         string    `json:"payment_id"`
	Payee             string    `json:"payee"`
	Amount            Money     `json:"amount"`
	VerificationLevel string    `json:"verification_level"`
	ConfirmedAt       time.Time `json:"confirmed_at"`
}

// LossReported opens a loss case, the first event of its stream: the
// holder says the payments were not theirs to bear (Art. 37). Loss is the
// sum of the payments' amounts.
type LossReported struct {
	CaseID      string        `json:"case_id"`
	AccountID   string        `json:"account_id"`
	Payments    []LossPayment `json:"payments"`
	Loss        Money         `json:"loss"`
	Description string        `json:"description"`
	// Advance is the rule's decision on advance compensation: "pay", or
	// the code of the rule that excludes it; AdvanceAmount is what it pays
	// (the single-factor payments' part alone when the rules exclude the
	// others).
	Advance       string `json:"advance"`
	AdvanceReason string `json:"advance_reason"`
	AdvanceAmount Money  `json:"advance_amount"`
}

// LossClaimed records in the holder's stream that payments are claimed
// in a loss case, so that no payment is claimed in two cases: the
// account's own stream decides it under its optimistic concurrency. The
// case's own stream follows with LossReported.
type LossClaimed struct {
	CaseID     string   `json:"case_id"`
	PaymentIDs []string `json:"payment_ids"`
}

// LossInvestigated records that compliance took the case up.
type LossInvestigated struct {
	CaseID string `json:"case_id"`
	Note   string `json:"note"`
	Staff
}

// Liable parties.
const (
	LiableInstitution = "institution"
	LiableCustomer    = "customer"
)

// LiabilityDetermined records who bears the loss, by which rule, with
// compliance's reasons and references to the evidence (never the evidence
// itself, which may hold personal data).
type LiabilityDetermined struct {
	CaseID   string   `json:"case_id"`
	Liable   string   `json:"liable"`
	Rule     string   `json:"rule"`
	Reasons  []string `json:"reasons"`
	Evidence []string `json:"evidence"`
	// CustomerShare is the part of the loss the customer bears; the
	// institution bears the rest.
	CustomerShare Money `json:"customer_share"`
	Staff
}

// LossCaseClosed ends a case with what was compensated and recovered.
type LossCaseClosed struct {
	CaseID      string `json:"case_id"`
	Outcome     string `json:"outcome"`
	Compensated Money  `json:"compensated"`
	Recovered   Money  `json:"recovered"`
	Staff
}

func (FeeCharged) EventType() string            { return TypeFeeCharged }
func (ReserveProvisioned) EventType() string    { return TypeReserveProvisioned }
func (ReserveAdjusted) EventType() string       { return TypeReserveAdjusted }
func (ReserveShortfall) EventType() string      { return TypeReserveShortfall }
func (DayClosed) EventType() string             { return TypeDayClosed }
func (CompensationPaid) EventType() string      { return TypeCompensationPaid }
func (CompensationRecovered) EventType() string { return TypeCompensationRecovered }
func (LossReported) EventType() string          { return TypeLossReported }
func (LossInvestigated) EventType() string      { return TypeLossInvestigated }
func (LiabilityDetermined) EventType() string   { return TypeLiabilityDetermined }
func (LossCaseClosed) EventType() string        { return TypeLossCaseClosed }
func (LossClaimed) EventType() string           { return TypeLossClaimed }

// moneyTypes are the event types MovementOf gives a movement for.
var moneyTypes = map[string]bool{
	TypeFundsDeposited: true, TypePaymentConfirmed: true, TypeFundsWithdrawn: true,
	TypeFeeCharged: true, TypeReserveProvisioned: true, TypeReserveAdjusted: true,
	TypeCompensationPaid: true, TypeCompensationRecovered: true,
}

// MovesMoney reports whether events of type typ move money (MovementOf
// gives them a movement), so a reader can skip decoding the others.
func MovesMoney(typ string) bool { return moneyTypes[typ] }

// institutionMovement is MovementOf for the institution's money events.
func institutionMovement(e Event) (Movement, bool) {
	switch v := e.(type) {
	case FeeCharged:
		return Movement{v.DebitAccount, v.CreditAccount, v.Amount, v.PaymentID, "fee"}, true
	case ReserveProvisioned:
		return Movement{v.DebitAccount, v.CreditAccount, v.Amount, v.Day, "provision " + v.Source}, true
	case ReserveAdjusted:
		return Movement{v.DebitAccount, v.CreditAccount, v.Amount, v.AdjustmentID, "reserve " + v.Kind}, true
	case CompensationPaid:
		return Movement{v.DebitAccount, v.CreditAccount, v.Amount, v.CaseID, "compensation " + v.Kind}, true
	case CompensationRecovered:
		return Movement{v.DebitAccount, v.CreditAccount, v.Amount, v.CaseID, "compensation recovered"}, true
	}
	return Movement{}, false
}
