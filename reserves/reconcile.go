package reserves

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/payledger/payledger/domain"
)

// Mismatch is one disagreement the reconciliation found: Log is the figure
// recomputed from the log, Recorded the one the projection holds or a
// close recorded. It is listed, never hidden: any mismatch makes the
// reconciliation fail.
type Mismatch struct {
	Check    string `json:"check"`
	Subject  string `json:"subject"`
	Log      string `json:"log"`
	Recorded string `json:"recorded"`
	Detail   string `json:"detail"`
}

func (m Mismatch) String() string {
	s := fmt.Sprintf("%s %s: log %s, recorded %s", m.Check, m.Subject, m.Log, m.Recorded)
	if m.Detail != "" {
		s += " (" + m.Detail + ")"
	}
	return s
}

// Reconciliation checks.
const (
	CheckAccount       = "account"
	CheckTrialBalance  = "trial_balance"
	CheckCustomerFunds = "customer_funds"
	CheckReserve       = "reserve"
	CheckClose         = "day_close"
	CheckLossCase      = "loss_case"
)

// Reconcile compares the books folded from the log with the balances the
// projection holds at the same position, and checks the ledger's own
// invariants: debits equal credits per currency, customers' funds equal
// the sum of customer balances, the reserve equals its movements, and
// every day's close provisioned what the policy gives on the basis the log
// holds. policies maps policy versions to the policies known to this
// build; a close under another version is checked for its basis only.
func (b *Books) Reconcile(projected map[string]AccountTotals, policies map[string]Policy) []Mismatch {
	var out []Mismatch
	add := func(check, subject string, log, proj decimal.Decimal, places int32, detail string) {
		out = append(out, Mismatch{Check: check, Subject: subject, Log: log.StringFixed(places), Recorded: proj.StringFixed(places), Detail: detail})
	}
	// Every account, on both sides.
	ids := slices.Sorted(maps.Keys(b.Accounts))
	for _, id := range slices.Sorted(maps.Keys(projected)) {
		if _, ok := b.Accounts[id]; !ok {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	for _, id := range ids {
		l, inLog := b.Accounts[id]
		p, inProj := projected[id]
		c := l.Currency
		if !inLog {
			c = p.Currency
		}
		places := domain.MinorUnits(c)
		switch {
		case !inProj && (!l.Debits.IsZero() || !l.Credits.IsZero()):
			add(CheckAccount, id, l.Balance(), decimal.Zero, places, "the projection has no row for this account")
		case !inLog && (!p.Debits.IsZero() || !p.Credits.IsZero()):
			add(CheckAccount, id, decimal.Zero, p.Balance(), places, "the log moved no money of this account")
		case inLog && inProj && (!l.Debits.Equal(p.Debits) || !l.Credits.Equal(p.Credits) || !l.Balance().Equal(p.Balance())):
			add(CheckAccount, id, l.Balance(), p.Balance(), places,
				fmt.Sprintf("debits %s vs %s, credits %s vs %s", l.Debits.StringFixed(places), p.Debits.StringFixed(places),
					l.Credits.StringFixed(places), p.Credits.StringFixed(places)))
		}
	}
	for _, c := range b.Currencies() {
		out = append(out, b.reconcileCurrency(c, projected)...)
	}
	out = append(out, b.reconcileCloses(policies)...)
	return append(out, b.reconcileCases()...)
}

// reconcileCases checks each loss case's money: never more paid than the
// loss, never more recovered than paid, no advance once liability was
// determined.
func (b *Books) reconcileCases() []Mismatch {
	var out []Mismatch
	for _, id := range slices.Sorted(maps.Keys(b.cases)) {
		c := b.cases[id]
		places := domain.MinorUnits(c.currency)
		paid := c.advance.Add(c.settled)
		mm := func(log, bound decimal.Decimal, detail string) {
			out = append(out, Mismatch{Check: CheckLossCase, Subject: id, Log: log.StringFixed(places), Recorded: bound.StringFixed(places), Detail: detail})
		}
		if paid.GreaterThan(c.loss) {
			mm(paid, c.loss, "the case was paid more than its loss")
		}
		if c.recovered.GreaterThan(paid) {
			mm(c.recovered, paid, "more was recovered from the holder than the case paid")
		}
		if c.lateAdvance {
			mm(c.advance, decimal.Zero, "an advance was paid after liability was determined")
		}
	}
	return out
}

func (b *Books) reconcileCurrency(c domain.Currency, projected map[string]AccountTotals) []Mismatch {
	var out []Mismatch
	places := domain.MinorUnits(c)
	sums := func(accts map[string]AccountTotals) (debits, credits, customers, institution decimal.Decimal) {
		for id, a := range accts {
			if a.Currency != c {
				continue
			}
			debits, credits = debits.Add(a.Debits), credits.Add(a.Credits)
			if InstitutionAccount(id) {
				institution = institution.Add(a.Balance())
			} else {
				customers = customers.Add(a.Balance())
			}
		}
		return
	}
	ld, lc, lcust, linst := sums(b.Accounts)
	pd, pc, pcust, pinst := sums(projected)
	mm := func(check, subject string, log, proj decimal.Decimal, detail string) {
		out = append(out, Mismatch{Check: check, Subject: subject, Log: log.StringFixed(places), Recorded: proj.StringFixed(places), Detail: detail})
	}
	if !ld.Equal(lc) {
		mm(CheckTrialBalance, string(c)+" debits-credits", ld.Sub(lc), pd.Sub(pc), "the log's debits and credits differ")
	}
	if !pd.Equal(pc) {
		mm(CheckTrialBalance, string(c)+" debits-credits", ld.Sub(lc), pd.Sub(pc), "the projection's debits and credits differ")
	}
	if !lcust.Equal(pcust) {
		mm(CheckCustomerFunds, string(c), lcust, pcust, "customers' funds differ from the sum of customer balances")
	}
	if !lcust.Equal(linst.Neg()) || !pcust.Equal(pinst.Neg()) {
		mm(CheckCustomerFunds, string(c)+" against institution accounts", lcust.Add(linst), pcust.Add(pinst),
			"customers' funds must equal what the institution accounts owe them")
	}
	reserve := domain.ReserveAccountID(c)
	moves := decimal.Zero
	for k, f := range b.days {
		if k.currency == c {
			for _, v := range f.reserve {
				moves = moves.Add(v)
			}
		}
	}
	lr := b.Accounts[reserve].Balance()
	pr := projected[reserve].Balance()
	if !lr.Equal(moves) {
		mm(CheckReserve, reserve, lr, pr, "the reserve's balance differs from provisions+top-ups-releases-compensation+recoveries "+moves.StringFixed(places))
	}
	if !lr.Equal(pr) {
		mm(CheckReserve, reserve, lr, pr, "the reserve recomputed from the log differs from the projection")
	}
	if low := b.reserveLow[c]; low.IsNegative() {
		mm(CheckReserve, reserve, low, pr, "the reserve went below zero in the log")
	}
	return out
}

func (b *Books) reconcileCloses(policies map[string]Policy) []Mismatch {
	var out []Mismatch
	keys := slices.SortedFunc(maps.Keys(b.closes), func(x, y dayKey) int {
		return strings.Compare(string(x.currency)+string(x.day), string(y.currency)+string(y.day))
	})
	for _, k := range keys {
		cl := b.closes[k]
		places := domain.MinorUnits(k.currency)
		f := b.day(k.currency, k.day)
		subject := string(k.currency) + " " + string(k.day)
		mm := func(log, recorded decimal.Decimal, detail string) {
			out = append(out, Mismatch{Check: CheckClose, Subject: subject, Log: log.StringFixed(places), Recorded: recorded.StringFixed(places), Detail: detail})
		}
		if !f.feeIncome.Equal(cl.FeeIncome.Amount) {
			mm(f.feeIncome, cl.FeeIncome.Amount, "fee income recomputed from the log differs from the close's")
		}
		if !f.volume.Equal(cl.Volume.Amount) {
			mm(f.volume, cl.Volume.Amount, "payment volume recomputed from the log differs from the close's")
		}
		provisioned := f.reserve[MoveProvisionFees].Add(f.reserve[MoveProvisionVolume]).Add(f.reserve[MoveProvisionFloor])
		if !provisioned.Equal(cl.Provisioned.Amount) {
			mm(provisioned, cl.Provisioned.Amount, "the provisions in the log differ from the close's total")
		}
		if p, known := policies[cl.Policy]; known {
			if want := cl.FeeIncome.Amount.Mul(p.FeeShare).RoundFloor(places); !want.Equal(f.reserve[MoveProvisionFees]) {
				mm(f.reserve[MoveProvisionFees], want, "the fee-income provision differs from policy "+p.Version)
			}
			if want := cl.Volume.Amount.Mul(p.VolumeShare).RoundFloor(places); !want.Equal(f.reserve[MoveProvisionVolume]) {
				mm(f.reserve[MoveProvisionVolume], want, "the volume provision differs from policy "+p.Version)
			}
		}
		if f.lateEvents > 0 {
			out = append(out, Mismatch{Check: CheckClose, Subject: subject, Log: fmt.Sprint(f.lateEvents), Recorded: "0",
				Detail: "fees or payments of the day were appended after its close and were not provisioned on"})
		}
	}
	return out
}

// Reconciliation is what a reconciliation found, as of one position.
type Reconciliation struct {
	Through    int64             `json:"through"`
	Accounts   int               `json:"accounts"`
	Reserves   map[string]string `json:"reserves"`
	Mismatches []Mismatch        `json:"mismatches"`
	Day        *DayReport        `json:"day,omitempty"`
	// Books are the books folded from the log up to Through.
	Books *Books `json:"-"`
}

// ReconcileLog folds the log up to through, the position at which the
// projection's accounts were read, and compares them; policies are the
// policies known by version.
func ReconcileLog(ctx context.Context, log LogReader, loc *time.Location, projected map[string]AccountTotals, through int64, policies map[string]Policy) (Reconciliation, error) {
	books, err := FoldLog(ctx, log, loc, through, nil)
	if err != nil {
		return Reconciliation{}, err
	}
	res := Reconciliation{Through: through, Accounts: len(projected), Reserves: map[string]string{}, Books: books,
		Mismatches: books.Reconcile(projected, policies)}
	if res.Mismatches == nil {
		res.Mismatches = []Mismatch{}
	}
	for _, c := range books.Currencies() {
		res.Reserves[string(c)] = books.Accounts[domain.ReserveAccountID(c)].Balance().StringFixed(domain.MinorUnits(c))
	}
	return res, nil
}
