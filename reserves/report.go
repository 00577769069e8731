package reserves

import (
	"encoding/hex"
	"maps"
	"slices"
	"strconv"

	"github.com/shopspring/decimal"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/eventstore/merkle"
)

// Risk event kinds counted in the annual report.
const (
	RiskLossReported    = "loss_reported"
	RiskReserveShortage = "reserve_shortfall"
	RiskAccessLocked    = "access_locked"
	RiskSuspension      = "risk_suspension"
)

// RiskKinds lists the risk event kinds in report order.
var RiskKinds = []string{RiskLossReported, RiskReserveShortage, RiskAccessLocked, RiskSuspension}

// figure is a count and an amount with the cases behind them.
type figure struct {
	count  int
	amount decimal.Decimal
	cases  []string
}

func (f *figure) add(amount decimal.Decimal, caseID string) {
	f.count++
	f.amount = f.amount.Add(amount)
	if caseID != "" && !slices.Contains(f.cases, caseID) {
		f.cases = append(f.cases, caseID)
	}
}

// currencyYear is one currency's figures of a year.
type currencyYear struct {
	losses, compensation, recovered figure
	provisioned, toppedUp, released decimal.Decimal
	feeIncome, volume               decimal.Decimal
	provisionedCases, releaseCases  []string
}

// yearFigures is what the books keep of one calendar year.
type yearFigures struct {
	first, last int64
	events      int64
	// tree is the Merkle tree over the year's event hashes in log order.
	tree       merkle.Builder
	risk       map[string]int
	riskCases  map[string][]string
	currencies map[domain.Currency]*currencyYear
	disputes   DisputeFigures
}

// DisputeFigures count a year's disputes and complaints (Art. 41): those
// opened by kind, and those resolved by outcome.
type DisputeFigures struct {
	Opened     int            `json:"opened"`
	Errors     int            `json:"errors"`
	Complaints int            `json:"complaints"`
	Resolved   map[string]int `json:"resolved"`
}

func (b *Books) year(y int) *yearFigures {
	f := b.years[y]
	if f == nil {
		f = newYearFigures()
		b.years[y] = f
	}
	return f
}

func newYearFigures() *yearFigures {
	return &yearFigures{risk: map[string]int{}, riskCases: map[string][]string{}, currencies: map[domain.Currency]*currencyYear{},
		disputes: DisputeFigures{Resolved: map[string]int{}}}
}

func (y *yearFigures) positions(pos int64, hash [32]byte) {
	y.tree.Add(hash)
	if y.first == 0 {
		y.first = pos
	}
	y.last = pos
	y.events++
}

func (y *yearFigures) cur(c domain.Currency) *currencyYear {
	f := y.currencies[c]
	if f == nil {
		f = &currencyYear{}
		y.currencies[c] = f
	}
	return f
}

func (y *yearFigures) riskEvent(kind, ref string) {
	y.risk[kind]++
	if ref != "" {
		y.riskCases[kind] = append(y.riskCases[kind], ref)
	}
}

// event counts one event towards its year's figures. A provision counts
// in the year of the day it provisions for.
func (y *yearFigures) event(b *Books, r Recorded) {
	switch v := r.Event.(type) {
	case domain.LossReported:
		y.riskEvent(RiskLossReported, v.CaseID)
		y.cur(v.Loss.Currency).losses.add(v.Loss.Amount, v.CaseID)
	case domain.ReserveShortfall:
		y.riskEvent(RiskReserveShortage, v.CaseID)
	case domain.AccessLocked:
		y.riskEvent(RiskAccessLocked, "")
	case domain.ServiceSuspended:
		if v.StaffKey != "" {
			y.riskEvent(RiskSuspension, "")
		}
	case domain.CompensationPaid:
		y.cur(v.Amount.Currency).compensation.add(v.Amount.Amount, v.CaseID)
	case domain.CompensationRecovered:
		y.cur(v.Amount.Currency).recovered.add(v.Amount.Amount, v.CaseID)
	case domain.ReserveProvisioned:
		py := y
		if start, _ := Day(v.Day).Bounds(b.loc); !start.IsZero() {
			py = b.year(start.Year())
		}
		c := py.cur(v.Amount.Currency)
		c.provisioned = c.provisioned.Add(v.Amount.Amount)
		if !slices.Contains(c.provisionedCases, v.Day) {
			c.provisionedCases = append(c.provisionedCases, v.Day)
		}
	case domain.ReserveAdjusted:
		c := y.cur(v.Amount.Currency)
		if v.Kind == domain.AdjustRelease {
			c.released = c.released.Add(v.Amount.Amount)
		} else {
			c.toppedUp = c.toppedUp.Add(v.Amount.Amount)
		}
		c.releaseCases = append(c.releaseCases, v.AdjustmentID)
	case domain.FeeCharged:
		c := y.cur(v.Amount.Currency)
		c.feeIncome = c.feeIncome.Add(v.Amount.Amount)
	case domain.PaymentConfirmed:
		c := y.cur(v.Amount.Currency)
		c.volume = c.volume.Add(v.Amount.Amount)
	case domain.DisputeOpened:
		y.disputes.Opened++
		if v.Kind == domain.DisputeError {
			y.disputes.Errors++
		} else {
			y.disputes.Complaints++
		}
	case domain.DisputeResolved:
		y.disputes.Resolved[v.Outcome]++
	}
}

// Figure is a count and an amount with the cases behind them.
type Figure struct {
	Count  int      `json:"count"`
	Amount string   `json:"amount"`
	Cases  []string `json:"cases"`
}

// CurrencyReport is one currency's figures of the annual report.
type CurrencyReport struct {
	Currency         string `json:"currency"`
	CustomerLosses   Figure `json:"customer_losses"`
	CompensationPaid Figure `json:"compensation_paid"`
	Recovered        Figure `json:"recovered"`
	// ReserveProvisioned is what the daily closes provisioned (Days lists
	// them); ReserveToppedUp and ReserveReleased finance's adjustments.
	ReserveProvisioned     string   `json:"reserve_provisioned"`
	ProvisionDays          []string `json:"provision_days"`
	ReserveToppedUp        string   `json:"reserve_topped_up"`
	ReserveReleased        string   `json:"reserve_released"`
	Adjustments            []string `json:"adjustments"`
	ReserveUsed            string   `json:"reserve_used"`
	ReserveBalanceYearEnd  string   `json:"reserve_balance_year_end"`
	ReserveBalanceYearOpen string   `json:"reserve_balance_year_open"`
	FeeIncome              string   `json:"fee_income"`
	PaymentVolume          string   `json:"payment_volume"`
}

// RiskEvents counts the year's risk events by kind.
type RiskEvents struct {
	Total  int                 `json:"total"`
	ByKind map[string]int      `json:"by_kind"`
	Cases  map[string][]string `json:"cases"`
}

// LogRange is the part of the log a report was computed from.
type LogRange struct {
	FirstPosition int64 `json:"first_position"`
	LastPosition  int64 `json:"last_position"`
	Events        int64 `json:"events"`
	// MerkleRoot is the RFC 9162 root over the hashes of the year's events
	// in log order (eventstore/merkle), hex: whoever holds the log can
	// recompute it, and a signed checkpoint covering LastPosition vouches
	// for the events behind it.
	MerkleRoot string `json:"merkle_root"`
	// Through is the last position of the log the report read.
	Through int64 `json:"through"`
}

// AnnualReport is the annual report to the regulator (Art. 37, 38).
type AnnualReport struct {
	Year       int              `json:"year"`
	TimeZone   string           `json:"time_zone"`
	RiskEvents RiskEvents       `json:"risk_events"`
	Currencies []CurrencyReport `json:"currencies"`
	Disputes   DisputeFigures   `json:"disputes"`
	Log        LogRange         `json:"log"`
}

// Annual returns the report of a calendar year in the institution's zone.
// A year without activity gives zeros (in CNY when no currency was used).
func (b *Books) Annual(year int) AnnualReport {
	y := b.years[year]
	if y == nil {
		y = newYearFigures()
	}
	disputes := y.disputes
	disputes.Resolved = map[string]int{}
	for _, o := range []string{OutcomeUpheld, OutcomePartiallyUpheld, OutcomeRejected, OutcomeWithdrawn} {
		disputes.Resolved[o] = y.disputes.Resolved[o]
	}
	rep := AnnualReport{Year: year, TimeZone: b.loc.String(), Disputes: disputes,
		RiskEvents: RiskEvents{ByKind: map[string]int{}, Cases: map[string][]string{}},
		Log:        LogRange{FirstPosition: y.first, LastPosition: y.last, Events: y.events, Through: b.Through}}
	root := y.tree.Root()
	rep.Log.MerkleRoot = hex.EncodeToString(root[:])
	for _, k := range RiskKinds {
		rep.RiskEvents.ByKind[k] = y.risk[k]
		rep.RiskEvents.Total += y.risk[k]
		rep.RiskEvents.Cases[k] = orEmpty(y.riskCases[k])
	}
	currencies := slices.Sorted(maps.Keys(y.currencies))
	if len(currencies) == 0 {
		currencies = []domain.Currency{domain.CNY}
	}
	first := Day(strconv.Itoa(year) + "-01-01")
	next := Day(strconv.Itoa(year+1) + "-01-01")
	for _, c := range currencies {
		f := y.currencies[c]
		if f == nil {
			f = &currencyYear{}
		}
		p := domain.MinorUnits(c)
		rep.Currencies = append(rep.Currencies, CurrencyReport{
			Currency:               string(c),
			CustomerLosses:         f.losses.report(p),
			CompensationPaid:       f.compensation.report(p),
			Recovered:              f.recovered.report(p),
			ReserveProvisioned:     f.provisioned.StringFixed(p),
			ProvisionDays:          orEmpty(f.provisionedCases),
			ReserveToppedUp:        f.toppedUp.StringFixed(p),
			ReserveReleased:        f.released.StringFixed(p),
			Adjustments:            orEmpty(f.releaseCases),
			ReserveUsed:            f.compensation.amount.StringFixed(p),
			ReserveBalanceYearOpen: b.ReserveBalanceBefore(c, first).StringFixed(p),
			ReserveBalanceYearEnd:  b.ReserveBalanceBefore(c, next).StringFixed(p),
			FeeIncome:              f.feeIncome.StringFixed(p),
			PaymentVolume:          f.volume.StringFixed(p),
		})
	}
	return rep
}

func (f figure) report(places int32) Figure {
	return Figure{Count: f.count, Amount: f.amount.StringFixed(places), Cases: orEmpty(f.cases)}
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return slices.Clone(s)
}
