package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/payledger/payledger/checkpoints"
	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/projections"
	"github.com/payledger/payledger/reserves"
)

// errMismatch makes reconcile exit non-zero after listing what it found.
var errMismatch = errors.New("reconciliation found mismatches")

// cmdClose closes calendar days of the reserve: provisions by the policy
// on each day's fees and volume, once per day.
func cmdClose(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("close", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c Config
	c.addFlags(fs, false)
	day := fs.String("day", "", "the day to close, such as 2026-03-01 (default: yesterday)")
	currency := fs.String("currency", "CNY", "the reserve's currency")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cur, err := domain.ParseCurrency(*currency, "--currency")
	if err != nil {
		return err
	}
	var d reserves.Day
	if *day != "" {
		if d, err = reserves.ParseDay(*day); err != nil {
			return err
		}
	}
	m := &Main{Config: c}
	if err := m.Open(ctx); err != nil {
		return err
	}
	defer m.Close()
	if d == "" {
		d = reserves.DayOf(m.Service.Now().AddDate(0, 0, -1), m.Service.Reserves().Location)
	}
	cl, err := m.Service.CloseDay(ctx, ledger.Scheduler, cur, d)
	if err != nil {
		return fmt.Errorf("close %s: %w", d, err)
	}
	fmt.Fprintf(stdout, "close: %s %s closed through position %d: fee income %s, volume %s, provisioned %s (policy %s)\n",
		cl.Day, cur, cl.ThroughPosition, cl.FeeIncome, cl.Volume, cl.Provisioned, cl.Policy)
	return nil
}

// cmdReport prints a report from the log alone: "annual --year Y".
func cmdReport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("report annual", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("data", "./data", "data directory")
	tz := fs.String("tz", "Asia/Shanghai", "time zone of the calendar year")
	year := fs.Int("year", 0, "calendar year, such as 2026 (default: last year)")
	format := fs.String("format", "json", "json, csv or html")
	store := addStoreFlag(fs)
	if len(args) == 0 || args[0] != "annual" {
		if err := fs.Parse(args); err != nil {
			return err // -h printed the flags
		}
		return errors.New(`report: the one report is "annual": payledger report annual --year 2026`)
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	loc, err := time.LoadLocation(*tz)
	if err != nil {
		return fmt.Errorf("time zone %q: %w", *tz, err)
	}
	if *year == 0 {
		*year = time.Now().In(loc).Year() - 1
	}
	if *year < 2000 || *year > 9998 {
		return fmt.Errorf("--year must be a calendar year such as 2026")
	}
	log, _, err := openReadLog(ctx, *store, *dir)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	defer log.Close()
	books, err := reserves.FoldLog(ctx, log, loc, 0, nil)
	if err != nil {
		return err
	}
	rep := books.Annual(*year)
	switch *format {
	case "json":
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	case "csv":
		return reserves.WriteCSV(stdout, rep)
	case "html":
		return reserves.WriteHTML(stdout, rep, reserves.HTMLOptions{})
	}
	return fmt.Errorf("--format must be json, csv or html, not %q", *format)
}

// cmdReconcile recomputes every account, the reserve and every close from
// the log alone and compares them with the read models at their
// checkpoint; it lists every mismatch and fails when there is one.
func cmdReconcile(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("reconcile", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("data", "./data", "data directory")
	tz := fs.String("tz", "Asia/Shanghai", "time zone of the calendar day")
	day := fs.String("day", "", "also print this day's close report, such as 2026-03-01")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	store := addStoreFlag(fs)
	rmFlag := addReadModelsFlag(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	loc, err := time.LoadLocation(*tz)
	if err != nil {
		return fmt.Errorf("time zone %q: %w", *tz, err)
	}
	rm, err := openReadModelsForReading(ctx, *rmFlag, *dir)
	if err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	defer rm.Close()
	log, _, err := openReadLog(ctx, *store, *dir)
	if err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	defer log.Close()
	res, err := reconcile(ctx, log, rm, loc)
	if err != nil {
		return err
	}
	if *day != "" {
		d, err := reserves.ParseDay(*day)
		if err != nil {
			return err
		}
		rep := res.Books.DayReport(domain.CNY, d)
		res.Day = &rep
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res.Reconciliation); err != nil {
			return err
		}
	} else {
		res.print(stdout)
	}
	if len(res.Mismatches) > 0 {
		return fmt.Errorf("%w: %d (listed above)", errMismatch, len(res.Mismatches))
	}
	return nil
}

// reconciliation is what reconcile found, printed for a terminal.
type reconciliation struct{ reserves.Reconciliation }

func reconcile(ctx context.Context, log reserves.LogReader, rm *projections.ReadModels, loc *time.Location) (reconciliation, error) {
	rows, cp, err := rm.Accounts(ctx)
	if err != nil {
		return reconciliation{}, err
	}
	projected := make(map[string]reserves.AccountTotals, len(rows))
	for id, r := range rows {
		projected[id] = reserves.AccountTotals{Currency: r.Currency, Debits: r.Debits, Credits: r.Credits}
	}
	policy := reserves.DefaultPolicy(loc)
	res, err := reserves.ReconcileLog(ctx, log, loc, projected, cp, map[string]reserves.Policy{policy.Version: policy})
	return reconciliation{res}, err
}

func (r reconciliation) print(w io.Writer) {
	fmt.Fprintf(w, "reconcile: log and read models compared at position %d, %d accounts\n", r.Through, r.Accounts)
	for c, b := range r.Reserves {
		fmt.Fprintf(w, "reconcile: risk reserve %s %s\n", c, b)
	}
	if r.Day != nil {
		fmt.Fprintf(w, "reconcile: day %s (%s, closed %v): opening %s, closing %s, fee income %s, volume %s\n",
			r.Day.Day, r.Day.Currency, r.Day.Closed, r.Day.Opening, r.Day.Closing, r.Day.FeeIncome, r.Day.Volume)
		for _, k := range reserves.MovementKinds {
			fmt.Fprintf(w, "reconcile:   %-22s %s\n", k, r.Day.Movements[k])
		}
	}
	for _, m := range r.Mismatches {
		fmt.Fprintln(w, "reconcile: MISMATCH", m)
	}
	if len(r.Mismatches) == 0 {
		fmt.Fprintln(w, "reconcile: ok (no mismatch)")
	}
}

// cmdDigest prints the Merkle root of a calendar year's events and the
// signed checkpoint that covers them, for the annual report.
func cmdDigest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("digest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("data", "./data", "data directory")
	tz := fs.String("tz", "Asia/Shanghai", "time zone of the calendar year")
	year := fs.Int("year", 0, "calendar year, such as 2026")
	store := addStoreFlag(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *year < 2000 || *year > 9998 {
		return errors.New("digest needs --year, a calendar year such as 2026")
	}
	loc, err := time.LoadLocation(*tz)
	if err != nil {
		return fmt.Errorf("time zone %q: %w", *tz, err)
	}
	log, _, err := openReadLog(ctx, *store, *dir)
	if err != nil {
		return fmt.Errorf("digest: %w", err)
	}
	defer log.Close()
	books, err := reserves.FoldLog(ctx, log, loc, 0, nil)
	if err != nil {
		return err
	}
	r := books.Annual(*year).Log
	fmt.Fprintf(stdout, "digest: %d (%s): %d events, positions %d-%d, merkle root %s\n", *year, loc, r.Events, r.FirstPosition, r.LastPosition, r.MerkleRoot)
	cps, err := checkpoints.Read(*dir)
	if err != nil {
		return err
	}
	for _, c := range cps {
		if c.Size >= uint64(r.LastPosition) && r.Events > 0 {
			fmt.Fprintf(stdout, "digest: covered by the checkpoint of %d events signed %s (key %s), root %s, signature %s\n",
				c.Size, c.Time.Format(time.RFC3339Nano), c.KeyID, c.Root, c.Signature)
			return nil
		}
	}
	fmt.Fprintln(stdout, "digest: no signed checkpoint in the data directory covers these events yet (serve --checkpoint-key signs them)")
	return nil
}
