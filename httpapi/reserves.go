package httpapi

import (
	"bytes"
	"context"
	"html/template"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/projections"
	"github.com/payledger/payledger/reserves"
)

type lossReq struct {
	PaymentIDs  []string `json:"payment_ids"`
	Description string   `json:"description"`
}

type noteReq struct {
	Note string `json:"note"`
}

type liabilityReq struct {
	Liable   string   `json:"liable"`
	Reasons  []string `json:"reasons"`
	Evidence []string `json:"evidence"`
}

type adjustmentReq struct {
	Kind     string `json:"kind"`
	Amount   string `json:"amount"`
	Currency string `json:"currency"`
	Reason   string `json:"reason"`
}

type closeReq struct {
	Day      string `json:"day"`
	Currency string `json:"currency"`
}

// caseStep runs a loss-case command and renders the case for its caller.
// A step that stood while its payment could not be made (a shortfall, a
// payment compensated in another case) is answered with the case and the
// refusal in its "refusal" member: the case exists either way.
func caseStep[T any](s *Server, w http.ResponseWriter, r *http.Request, status int,
	run func(ctx context.Context, by ledger.Actor, req T, idem ledger.Idem) (ledger.LossCaseView, error)) {
	viewStep(s, w, r, status, run, func(v ledger.LossCaseView, by ledger.Actor) (any, bool) { return caseJSON(v, by), v.Replayed })
}

// viewStep runs a command on an institution stream (a loss case, a
// dispute): decode, idempotency, run, then render the view for the caller,
// marking a replayed answer.
func viewStep[T, V any](s *Server, w http.ResponseWriter, r *http.Request, status int,
	run func(ctx context.Context, by ledger.Actor, req T, idem ledger.Idem) (V, error),
	render func(v V, by ledger.Actor) (body any, replayed bool)) {
	var req T
	body, err := decode(r, &req)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	idem, err := idemOf(s.svc.Keys(), r, body)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	by := actorOf(r)
	v, err := run(r.Context(), by, req, idem)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	out, replayed := render(v, by)
	if replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	writeJSON(w, status, out)
}

func (s *Server) reportLossCase(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	caseStep(s, w, r, http.StatusCreated, func(ctx context.Context, by ledger.Actor, req lossReq, idem ledger.Idem) (ledger.LossCaseView, error) {
		return s.svc.ReportLossCase(ctx, by, id, idem, ledger.LossRequest{PaymentIDs: req.PaymentIDs, Description: req.Description})
	})
}

func (s *Server) getLossCase(w http.ResponseWriter, r *http.Request) {
	by := actorOf(r)
	v, err := s.svc.LossCase(r.Context(), by, r.PathValue("case"))
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, caseJSON(v, by))
}

func (s *Server) investigateLoss(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("case")
	caseStep(s, w, r, http.StatusOK, func(ctx context.Context, by ledger.Actor, req noteReq, idem ledger.Idem) (ledger.LossCaseView, error) {
		return s.svc.InvestigateLoss(ctx, by, id, idem, req.Note)
	})
}

func (s *Server) determineLiability(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("case")
	caseStep(s, w, r, http.StatusOK, func(ctx context.Context, by ledger.Actor, req liabilityReq, idem ledger.Idem) (ledger.LossCaseView, error) {
		return s.svc.DetermineLiability(ctx, by, id, idem, reserves.Finding{Liable: req.Liable, Reasons: req.Reasons, Evidence: req.Evidence})
	})
}

func (s *Server) settleLoss(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("case")
	caseStep(s, w, r, http.StatusOK, func(ctx context.Context, by ledger.Actor, _ struct{}, idem ledger.Idem) (ledger.LossCaseView, error) {
		return s.svc.SettleLoss(ctx, by, id, idem)
	})
}

func (s *Server) closeLossCase(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("case")
	caseStep(s, w, r, http.StatusOK, func(ctx context.Context, by ledger.Actor, _ struct{}, idem ledger.Idem) (ledger.LossCaseView, error) {
		return s.svc.CloseLossCase(ctx, by, id, idem)
	})
}

// caseJSON renders a case for its caller: a holder sees neither the staff
// keys nor the evidence references, the auditor no personal data.
func caseJSON(v ledger.LossCaseView, by ledger.Actor) map[string]any {
	payments := make([]map[string]any, len(v.Payments))
	for i, p := range v.Payments {
		payments[i] = map[string]any{"payment_id": p.PaymentID, "payee": p.Payee, "amount": p.Amount.String(),
			"verification_level": p.VerificationLevel, "confirmed_at": ts(p.ConfirmedAt)}
	}
	out := map[string]any{"case_id": v.CaseID, "account_id": v.AccountID, "status": v.Status, "reported_at": ts(v.ReportedAt),
		"payments": payments, "loss": v.Loss.String(), "currency": string(v.Loss.Currency), "description": v.Description,
		"advance": v.Advance, "advance_rule": v.AdvanceReason, "advance_amount": v.AdvanceAmount.String(), "compensated": v.Compensated.String(), "recovered": v.Recovered.String()}
	if l := v.Liability; l != nil {
		liab := map[string]any{"liable": l.Liable, "rule": l.Rule, "reasons": orEmpty(l.Reasons), "evidence": orEmpty(l.Evidence),
			"customer_share": l.CustomerShare.String(), "staff_key": l.StaffKey}
		if by.Holder() {
			delete(liab, "evidence")
		}
		out["liability"] = liab
	}
	if c := v.Closing; c != nil {
		out["closing"] = map[string]any{"outcome": c.Outcome, "compensated": c.Compensated.String(), "recovered": c.Recovered.String(), "staff_key": c.StaffKey}
	}
	if v.Refusal != nil {
		detail := v.Refusal.Error()
		if by.Holder() {
			// The figures of the institution's reserve are not the
			// holder's to see.
			detail = "the advance could not be paid yet; it stays due and the institution pays it"
		}
		out["refusal"] = map[string]any{"code": domain.ErrorCode(v.Refusal), "detail": detail}
	}
	if by.Holder() {
		if l, ok := out["liability"].(map[string]any); ok {
			delete(l, "staff_key")
		}
		if c, ok := out["closing"].(map[string]any); ok {
			delete(c, "staff_key")
		}
	}
	scrub(out, "", by)
	return out
}

func (s *Server) getReserve(w http.ResponseWriter, r *http.Request) {
	cur := r.URL.Query().Get("currency")
	if cur == "" {
		cur = string(domain.CNY)
	}
	v, err := s.svc.Reserve(r.Context(), actorOf(r), cur, 31)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, reserveJSON(v))
}

// reserveMovements serves the reserve's statement: provisions, top-ups,
// releases, compensation paid and recovered, each with the balance after.
func (s *Server) reserveMovements(w http.ResponseWriter, r *http.Request) {
	cur := r.URL.Query().Get("currency")
	if cur == "" {
		cur = string(domain.CNY)
	}
	c, err := domain.ParseCurrency(cur, "currency")
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	s.serveStatement(w, r, domain.ReserveAccountID(c), actorOf(r))
}

func reserveJSON(v ledger.ReserveView) map[string]any {
	closes := make([]map[string]any, len(v.Closes))
	for i, c := range v.Closes {
		closes[i] = closeJSON(c)
	}
	return map[string]any{"currency": string(v.Balance.Currency), "account_id": domain.ReserveAccountID(v.Balance.Currency),
		"balance": v.Balance.String(), "closes": closes}
}

func closeJSON(c domain.DayClosed) map[string]any {
	return map[string]any{"day": c.Day, "policy": c.Policy, "through_position": c.ThroughPosition,
		"fee_income": c.FeeIncome.String(), "volume": c.Volume.String(), "provisioned": c.Provisioned.String()}
}

func (s *Server) adjustReserve(w http.ResponseWriter, r *http.Request) {
	command(s, w, r, http.StatusCreated, func(ctx context.Context, by ledger.Actor, req adjustmentReq, idem ledger.Idem) (ledger.Outcome, error) {
		return s.svc.AdjustReserve(ctx, by, idem, req.Kind, req.Amount, req.Currency, req.Reason)
	}, func(out ledger.Outcome) (any, error) {
		e, out, err := find[domain.ReserveAdjusted](out)
		return map[string]any{"adjustment_id": e.AdjustmentID, "kind": e.Kind, "amount": e.Amount.String(),
			"currency": string(e.Amount.Currency), "reason": e.Reason, "debit_account": e.DebitAccount,
			"credit_account": e.CreditAccount, "log": refOf(out)}, err
	})
}

func (s *Server) closeReserveDay(w http.ResponseWriter, r *http.Request) {
	var req closeReq
	if _, err := decode(r, &req); err != nil {
		s.writeProblem(w, r, err)
		return
	}
	d, err := reserves.ParseDay(req.Day)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	if req.Currency == "" {
		req.Currency = string(domain.CNY)
	}
	cur, err := domain.ParseCurrency(req.Currency, "currency")
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	cl, err := s.svc.CloseDay(r.Context(), actorOf(r), cur, d)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, closeJSON(cl))
}

// yearOf reads the {year} path value.
func yearOf(r *http.Request) (int, error) {
	y, err := strconv.Atoi(r.PathValue("year"))
	if err != nil || y < 2000 || y > 9998 {
		return 0, domain.Invalid("year", "year must be a calendar year such as 2026")
	}
	return y, nil
}

// annualReport serves the annual report to the regulator (and finance and
// the auditor): JSON by default, CSV or HTML by ?format.
func (s *Server) annualReport(w http.ResponseWriter, r *http.Request) {
	year, err := yearOf(r)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	rep, err := s.svc.AnnualReport(r.Context(), actorOf(r), year)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	var buf bytes.Buffer
	switch f := r.URL.Query().Get("format"); f {
	case "", "json":
		writeJSON(w, http.StatusOK, rep)
		return
	case "csv":
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		err = reserves.WriteCSV(&buf, rep)
	case "html":
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		err = reserves.WriteHTML(&buf, rep, reserves.HTMLOptions{})
	default:
		s.writeProblem(w, r, domain.Invalid("format", "format must be json, csv or html"))
		return
	}
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf.Bytes())
}

// disclosureDelay is how long after a year's end its public disclosure is
// published (Art. 38 asks for it before 31 January): the first days of
// January leave time for the last closes.
const disclosureDelay = 7 * 24 * time.Hour

// disclosure serves the public page of a year's risk events, losses and
// compensation (Art. 38): no login, no personal data, no case ids, and
// only once the year has ended and its closes have had time to land.
func (s *Server) disclosure(w http.ResponseWriter, r *http.Request) {
	year, err := yearOf(r)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	loc := s.svc.Reserves().Location
	now := s.svc.Now()
	if published := publishedOn(year, loc); now.Before(published) {
		s.writeProblem(w, r, domain.Errorf(domain.CodeNotFound, "the disclosure of %d is published on %s", year, published.Format(time.DateOnly)))
		return
	}
	// The pages are rendered apart from this request, so a caller who
	// hangs up does not waste the fold, and all published years at once,
	// so a caller asking year after year folds the log once.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), renderTimeout)
	defer cancel()
	page, err := s.disclosures.page(year, func() (map[int][]byte, error) {
		var years []int
		for y := firstDisclosedYear; !now.Before(publishedOn(y, loc)); y++ {
			years = append(years, y)
		}
		reps, err := s.svc.AnnualReports(ctx, ledger.Scheduler, years)
		if err != nil {
			return nil, err
		}
		pages := make(map[int][]byte, len(reps))
		for y, rep := range reps {
			var buf bytes.Buffer
			if err := reserves.WriteHTML(&buf, rep, reserves.HTMLOptions{Public: true, Published: publishedOn(y, loc).Format(time.DateOnly)}); err != nil {
				return nil, err
			}
			pages[y] = buf.Bytes()
		}
		return pages, nil
	})
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(page)
}

// firstDisclosedYear is the first year a disclosure page can be asked
// for (yearOf refuses earlier ones).
const firstDisclosedYear = 2000

// renderTimeout bounds one fold of the log for the public pages.
const renderTimeout = 5 * time.Minute

// publishedOn is the day a year's disclosure is published.
func publishedOn(year int, loc *time.Location) time.Time {
	return time.Date(year+1, 1, 1, 0, 0, 0, 0, loc).Add(disclosureDelay)
}

// disclosurePages caches the public pages: a year's figures no longer
// change once it is published, and rendering them folds the whole log,
// which no anonymous caller may make the server do more than once per
// publication.
type disclosurePages struct {
	mu    sync.Mutex
	pages map[int][]byte
}

// page returns the year's page; on a miss, render makes the pages of every
// published year, all kept. mu is held while it renders, so concurrent
// first requests render once.
func (d *disclosurePages) page(year int, render func() (map[int][]byte, error)) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if p, ok := d.pages[year]; ok {
		return p, nil
	}
	pages, err := render()
	if err != nil {
		return nil, err
	}
	d.pages = pages
	p, ok := pages[year]
	if !ok {
		return nil, domain.Errorf(domain.CodeInternal, "the disclosure of %d was not rendered", year)
	}
	return p, nil
}

// reconcileEvery bounds how often the finance page reconciles: each run
// folds the whole log.
const reconcileEvery = time.Minute

// reconciled caches the last reconciliation for the finance page.
type reconciled struct {
	mu  sync.Mutex
	at  time.Time
	res reserves.Reconciliation
}

// get returns a reconciliation at most reconcileEvery old; mu is held
// while it runs, so concurrent requests run it once.
func (c *reconciled) get(now time.Time, run func() (reserves.Reconciliation, error)) (reserves.Reconciliation, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.at.IsZero() && now.Sub(c.at) < reconcileEvery {
		return c.res, nil
	}
	res, err := run()
	if err != nil {
		return reserves.Reconciliation{}, err
	}
	c.at, c.res = now, res
	return res, nil
}

var financePage = template.Must(template.New("finance").Parse(`<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Risk reserve and reconciliation</title>
<style>body{font-family:system-ui,sans-serif;max-width:56rem;margin:2rem auto;padding:0 1rem}
table{border-collapse:collapse}th,td{border:1px solid #777;padding:.25rem .5rem;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}.bad{color:#a00;font-weight:bold}</style></head>
<body><main>
<h1>Risk reserve and reconciliation</h1>
<p>Reserve ({{.Reserve.Balance.Currency}}): <strong id="reserve-balance">{{.Reserve.Balance}}</strong>.
Open loss cases: <span id="open-cases">{{.OpenCases}}</span>. Overdue disputes: <span id="overdue-disputes">{{.OverdueDisputes}}</span>.</p>
<h2>Reconciliation</h2>
<p>Log and read models compared at position {{.Rec.Through}} ({{.Rec.Accounts}} accounts).
{{if .Rec.Mismatches}}<span class="bad" id="mismatch-count">{{len .Rec.Mismatches}} mismatches</span>{{else}}<span id="mismatch-count">No mismatch.</span>{{end}}</p>
{{if .Rec.Mismatches}}<table id="mismatches"><thead><tr><th>Check</th><th>Subject</th><th>Log</th><th>Recorded</th><th>Detail</th></tr></thead><tbody>
{{range .Rec.Mismatches}}<tr><td>{{.Check}}</td><td>{{.Subject}}</td><td class="num">{{.Log}}</td><td class="num">{{.Recorded}}</td><td>{{.Detail}}</td></tr>
{{end}}</tbody></table>{{end}}
<h2>Last closes</h2>
<table id="closes"><thead><tr><th>Day</th><th>Fee income</th><th>Volume</th><th>Provisioned</th><th>Policy</th><th>Through</th></tr></thead><tbody>
{{range .Reserve.Closes}}<tr><td>{{.Day}}</td><td class="num">{{.FeeIncome}}</td><td class="num">{{.Volume}}</td><td class="num">{{.Provisioned}}</td><td>{{.Policy}}</td><td class="num">{{.ThroughPosition}}</td></tr>
{{end}}</tbody></table>
</main></body></html>
`))

// financePage is finance's page: the reserve, the last closes, the open
// cases and overdue disputes, and any mismatch the reconciliation finds.
func (s *Server) financePage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	by := actorOf(r)
	v, err := s.svc.Reserve(ctx, by, string(domain.CNY), 31)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	if err := s.catchUp(ctx); err != nil {
		s.writeProblem(w, r, err)
		return
	}
	rec, err := s.reconciled.get(s.svc.Now(), func() (reserves.Reconciliation, error) {
		rows, cp, err := s.rm.Accounts(ctx)
		if err != nil {
			return reserves.Reconciliation{}, err
		}
		projected := make(map[string]reserves.AccountTotals, len(rows))
		for id, a := range rows {
			projected[id] = reserves.AccountTotals{Currency: a.Currency, Debits: a.Debits, Credits: a.Credits}
		}
		p := s.svc.Reserves()
		return reserves.ReconcileLog(ctx, s.store, p.Location, projected, cp, map[string]reserves.Policy{p.Version: p})
	})
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	count := func(q projections.CaseQuery) (string, error) {
		rows, next, err := s.rm.Cases(ctx, q)
		n := strconv.Itoa(len(rows))
		if next != "" {
			n += "+"
		}
		return n, err
	}
	open, err := count(projections.CaseQuery{Kind: domain.CaseLoss, OpenOnly: true})
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	overdue, err := count(projections.CaseQuery{Kind: domain.CaseDispute, OverdueAt: s.svc.Now()})
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	var buf bytes.Buffer
	if err := financePage.Execute(&buf, map[string]any{"Reserve": v, "Rec": rec, "OpenCases": open, "OverdueDisputes": overdue}); err != nil {
		s.writeProblem(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf.Bytes())
}

// orEmpty renders a missing list as [], not null.
func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
