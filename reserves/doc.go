// Package reserves holds the institution's rules for its risk-reserve
// fund and loss compensation (Art. 37 of the payment rules, see
// docs/rules.md R21-R24): how a day's close provisions the reserve, when a
// reported loss is compensated in advance, who bears a loss, and how the
// annual figures and the reconciliation are computed from the log.
//
// Its rules are pure, like domain's: no clock, no randomness. Decisions
// take the state folded from the reserve's and the cases' streams and
// return domain events, which the ledger package appends. Books folds
// decoded events, and FoldLog feeds it the log through the eventstore
// port, so a report and a reconciliation are reproducible from the log
// alone.
//
// It imports domain and the eventstore port; it must never import the
// ledger, httpapi, projections or a store adapter.
package reserves
