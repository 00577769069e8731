package reserves

import (
	"encoding/csv"
	"fmt"
	"html/template"
	"io"
	"strconv"
	"strings"

	"github.com/shopspring/decimal"
)

// WriteCSV writes the report as rows of year, currency, figure, count,
// amount and the cases behind it (separated by spaces).
func WriteCSV(w io.Writer, r AnnualReport) error {
	cw := csv.NewWriter(w)
	year := strconv.Itoa(r.Year)
	rows := [][]string{{"year", "currency", "figure", "count", "amount", "cases"}}
	for _, k := range RiskKinds {
		rows = append(rows, []string{year, "", "risk_events_" + k, strconv.Itoa(r.RiskEvents.ByKind[k]), "", strings.Join(r.RiskEvents.Cases[k], " ")})
	}
	for _, c := range r.Currencies {
		fig := func(name string, f Figure) []string {
			return []string{year, c.Currency, name, strconv.Itoa(f.Count), f.Amount, strings.Join(f.Cases, " ")}
		}
		amount := func(name, v string, cases []string) []string {
			return []string{year, c.Currency, name, "", v, strings.Join(cases, " ")}
		}
		rows = append(rows,
			fig("customer_losses", c.CustomerLosses),
			fig("compensation_paid", c.CompensationPaid),
			fig("recovered", c.Recovered),
			amount("reserve_provisioned", c.ReserveProvisioned, c.ProvisionDays),
			amount("reserve_topped_up", c.ReserveToppedUp, c.Adjustments),
			amount("reserve_released", c.ReserveReleased, nil),
			amount("reserve_used", c.ReserveUsed, c.CompensationPaid.Cases),
			amount("reserve_balance_year_open", c.ReserveBalanceYearOpen, nil),
			amount("reserve_balance_year_end", c.ReserveBalanceYearEnd, nil),
			amount("fee_income", c.FeeIncome, nil),
			amount("payment_volume", c.PaymentVolume, nil),
		)
	}
	rows = append(rows, []string{year, "", "disputes_opened", strconv.Itoa(r.Disputes.Opened), "", ""},
		[]string{year, "", "disputes_errors", strconv.Itoa(r.Disputes.Errors), "", ""},
		[]string{year, "", "disputes_complaints", strconv.Itoa(r.Disputes.Complaints), "", ""})
	for _, o := range []string{OutcomeUpheld, OutcomePartiallyUpheld, OutcomeRejected, OutcomeWithdrawn} {
		rows = append(rows, []string{year, "", "disputes_resolved_" + o, strconv.Itoa(r.Disputes.Resolved[o]), "", ""})
	}
	rows = append(rows, []string{year, "", "log_positions", strconv.FormatInt(r.Log.Events, 10),
		fmt.Sprintf("%d-%d", r.Log.FirstPosition, r.Log.LastPosition), "through " + strconv.FormatInt(r.Log.Through, 10)},
		[]string{year, "", "log_merkle_root", "", r.Log.MerkleRoot, ""})
	if err := cw.WriteAll(rows); err != nil {
		return err
	}
	return cw.Error()
}

// HTMLOptions shape the HTML report. Public leaves out the cases behind
// the figures (the disclosure page names no case); Published is the date
// the page says it was published, if any.
type HTMLOptions struct {
	Public    bool
	Published string
}

// bar is one bar of the report's chart.
type bar struct {
	Label  string
	Amount string
	Width  int
	Y      int
}

// chart scales the year's main amounts to bars of at most 300 pixels.
func chart(c CurrencyReport) []bar {
	items := []struct{ label, amount string }{
		{"Customer losses", c.CustomerLosses.Amount},
		{"Compensation paid", c.CompensationPaid.Amount},
		{"Reserve provisioned", c.ReserveProvisioned},
		{"Reserve used", c.ReserveUsed},
		{"Reserve at year end", c.ReserveBalanceYearEnd},
	}
	largest := decimal.Zero
	for _, it := range items {
		if d, err := decimal.NewFromString(it.amount); err == nil && d.GreaterThan(largest) {
			largest = d
		}
	}
	out := make([]bar, len(items))
	for i, it := range items {
		w := 0
		if d, err := decimal.NewFromString(it.amount); err == nil && largest.IsPositive() && d.IsPositive() {
			w = int(d.Mul(decimal.NewFromInt(300)).Div(largest).IntPart())
			w = max(w, 1)
		}
		out[i] = bar{Label: it.label, Amount: it.amount, Width: w, Y: i * 28}
	}
	return out
}

var reportPage = template.Must(template.New("report").Funcs(template.FuncMap{"chart": chart, "join": strings.Join}).Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Risk events, customer losses and compensation in {{.R.Year}}</title>
<style>
body{font-family:system-ui,sans-serif;max-width:48rem;margin:2rem auto;padding:0 1rem;line-height:1.5;color:#111}
table{border-collapse:collapse;width:100%;margin:1rem 0}
th,td{border:1px solid #777;padding:.3rem .6rem;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}
caption{text-align:left;font-weight:bold}
</style>
</head>
<body>
<main>
<h1>Risk events, customer losses and compensation in {{.R.Year}}</h1>
{{if .O.Published}}<p>Published <time datetime="{{.O.Published}}" id="published">{{.O.Published}}</time>.</p>{{end}}
<p>Figures for the calendar year {{.R.Year}} in the {{.R.TimeZone}} time zone, computed from the ledger's event log{{if not .O.Public}}
(positions {{.R.Log.FirstPosition}} to {{.R.Log.LastPosition}}, {{.R.Log.Events}} events){{end}}.
A loss the institution cannot show its customer caused is compensated in full, in advance, from the risk reserve.</p>
<p>Merkle root of the year's events (RFC 9162, over their hashes in log order): <code id="merkle-root">{{.R.Log.MerkleRoot}}</code>.</p>
<table id="risk-events">
<caption>Risk events</caption>
<thead><tr><th scope="col">Kind</th><th scope="col">Count</th>{{if not .O.Public}}<th scope="col">Cases</th>{{end}}</tr></thead>
<tbody>
{{range $k := .Kinds}}<tr><th scope="row">{{$k}}</th><td class="num" data-figure="risk_{{$k}}">{{index $.R.RiskEvents.ByKind $k}}</td>{{if not $.O.Public}}<td>{{join (index $.R.RiskEvents.Cases $k) " "}}</td>{{end}}</tr>
{{end}}<tr><th scope="row">total</th><td class="num" data-figure="risk_total">{{.R.RiskEvents.Total}}</td>{{if not .O.Public}}<td></td>{{end}}</tr>
</tbody>
</table>
<table id="disputes">
<caption>Errors disputed and complaints (Art. 41)</caption>
<tbody>
<tr><th scope="row">Opened</th><td class="num" data-figure="disputes_opened">{{.R.Disputes.Opened}}</td></tr>
<tr><th scope="row">About an error in a payment</th><td class="num" data-figure="disputes_errors">{{.R.Disputes.Errors}}</td></tr>
<tr><th scope="row">Complaints</th><td class="num" data-figure="disputes_complaints">{{.R.Disputes.Complaints}}</td></tr>
{{range $o, $n := .R.Disputes.Resolved}}<tr><th scope="row">Resolved: {{$o}}</th><td class="num" data-figure="disputes_resolved_{{$o}}">{{$n}}</td></tr>
{{end}}</tbody>
</table>
{{range $c := .R.Currencies}}
<section>
<h2>In {{$c.Currency}}</h2>
<table id="figures-{{$c.Currency}}">
<caption>Losses, compensation and the risk reserve ({{$c.Currency}})</caption>
<thead><tr><th scope="col">Figure</th><th scope="col">Count</th><th scope="col">Amount</th>{{if not $.O.Public}}<th scope="col">Cases</th>{{end}}</tr></thead>
<tbody>
<tr><th scope="row">Customer risk losses</th><td class="num" data-figure="losses_count">{{$c.CustomerLosses.Count}}</td><td class="num" data-figure="losses_amount">{{$c.CustomerLosses.Amount}}</td>{{if not $.O.Public}}<td>{{join $c.CustomerLosses.Cases " "}}</td>{{end}}</tr>
<tr><th scope="row">Compensation paid</th><td class="num" data-figure="compensation_count">{{$c.CompensationPaid.Count}}</td><td class="num" data-figure="compensation_amount">{{$c.CompensationPaid.Amount}}</td>{{if not $.O.Public}}<td>{{join $c.CompensationPaid.Cases " "}}</td>{{end}}</tr>
<tr><th scope="row">Recovered from customers</th><td class="num" data-figure="recovered_count">{{$c.Recovered.Count}}</td><td class="num" data-figure="recovered_amount">{{$c.Recovered.Amount}}</td>{{if not $.O.Public}}<td>{{join $c.Recovered.Cases " "}}</td>{{end}}</tr>
<tr><th scope="row">Reserve provisioned</th><td></td><td class="num" data-figure="reserve_provisioned">{{$c.ReserveProvisioned}}</td>{{if not $.O.Public}}<td></td>{{end}}</tr>
<tr><th scope="row">Reserve topped up</th><td></td><td class="num" data-figure="reserve_topped_up">{{$c.ReserveToppedUp}}</td>{{if not $.O.Public}}<td>{{join $c.Adjustments " "}}</td>{{end}}</tr>
<tr><th scope="row">Reserve released</th><td></td><td class="num" data-figure="reserve_released">{{$c.ReserveReleased}}</td>{{if not $.O.Public}}<td></td>{{end}}</tr>
<tr><th scope="row">Reserve used</th><td></td><td class="num" data-figure="reserve_used">{{$c.ReserveUsed}}</td>{{if not $.O.Public}}<td></td>{{end}}</tr>
<tr><th scope="row">Reserve balance at year end</th><td></td><td class="num" data-figure="reserve_balance">{{$c.ReserveBalanceYearEnd}}</td>{{if not $.O.Public}}<td></td>{{end}}</tr>
</tbody>
</table>
<figure>
<svg role="img" aria-labelledby="chart-title-{{$c.Currency}}" width="560" height="140" viewBox="0 0 560 140">
<title id="chart-title-{{$c.Currency}}">Losses, compensation and the reserve in {{$c.Currency}}</title>
{{range $b := chart $c}}<g><text x="0" y="{{$b.Y}}" dy="16" font-size="13">{{$b.Label}}</text><rect x="160" y="{{$b.Y}}" width="{{$b.Width}}" height="20" fill="#2b6cb0"></rect><text x="{{$b.Width}}" dx="166" y="{{$b.Y}}" dy="16" font-size="13">{{$b.Amount}}</text></g>
{{end}}</svg>
<figcaption>The year's losses, compensation and reserve in {{$c.Currency}}.</figcaption>
</figure>
</section>
{{end}}
</main>
</body>
</html>
`))

// WriteHTML writes the report as a plain, accessible page.
func WriteHTML(w io.Writer, r AnnualReport, o HTMLOptions) error {
	return reportPage.Execute(w, struct {
		R     AnnualReport
		O     HTMLOptions
		Kinds []string
	}{r, o, RiskKinds})
}
