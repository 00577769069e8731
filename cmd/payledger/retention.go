package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/payledger/payledger/checkpoints"
	"github.com/payledger/payledger/eventstore"
)

// retentionYears is how long events are kept from the operation (R2).
const retentionYears = 5

// cmdRetention checks that a store keeps its events: the log starts at
// its first position, it is at least as long as the last signed
// checkpoint in the data directory, and every append-only guard the store
// relies on is in place. It fails when one is not.
func cmdRetention(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "check" {
		args = args[1:]
	} else if len(args) == 0 || (args[0] != "-h" && args[0] != "--help") {
		return errors.New("retention: usage: payledger retention check [--data ./data] [--store postgres://...|kurrentdb://...]")
	}
	fs := flag.NewFlagSet("retention check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("data", "./data", "data directory")
	store := addStoreFlag(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("retention check: unexpected arguments %q", fs.Args())
	}
	log, spec, err := openReadLog(ctx, *store, *dir)
	if err != nil {
		return fmt.Errorf("retention: %w", err)
	}
	defer log.Close()
	rl, ok := log.(retentionLog)
	if !ok {
		return fmt.Errorf("retention: %s reports no retention guards", spec)
	}
	return retentionCheck(ctx, spec.String(), rl, *dir, stdout)
}

// retentionLog is what the check reads of a store.
type retentionLog interface {
	eventstore.RetentionReporter
	Head(ctx context.Context) (int64, error)
	ReadAll(ctx context.Context, after int64, limit int) ([]eventstore.Event, error)
}

func retentionCheck(ctx context.Context, name string, log retentionLog, dir string, w io.Writer) error {
	var problems []string
	head, err := log.Head(ctx)
	if err != nil {
		return fmt.Errorf("retention: %w", err)
	}
	if head == 0 {
		fmt.Fprintf(w, "retention: %s: no events yet\n", name)
	} else {
		first, err := log.ReadAll(ctx, 0, 1)
		if err != nil {
			return fmt.Errorf("retention: %w", err)
		}
		last, err := log.ReadAll(ctx, head-1, 1)
		if err != nil {
			return fmt.Errorf("retention: %w", err)
		}
		switch {
		case len(first) == 0 || len(last) == 0:
			problems = append(problems, fmt.Sprintf("the log's head is %d but its events cannot be read", head))
		case first[0].Position != 1:
			problems = append(problems, fmt.Sprintf("the oldest event is at position %d: positions 1 to %d are gone", first[0].Position, first[0].Position-1))
		default:
			oldest := first[0].OccurredAt.UTC()
			fmt.Fprintf(w, "retention: %s: %d events; the oldest (position 1, stream %s) occurred %s, the newest (position %d) %s\n",
				name, head, first[0].Stream, oldest.Format(time.RFC3339), head, last[0].OccurredAt.UTC().Format(time.RFC3339))
			fmt.Fprintf(w, "retention: every event is kept at least %d years from its operation: the oldest until %s\n",
				retentionYears, oldest.AddDate(retentionYears, 0, 0).Format("2006-01-02"))
		}
	}
	if cps, err := checkpoints.Read(dir); err != nil {
		return fmt.Errorf("retention: %w", err)
	} else if len(cps) > 0 {
		if c := cps[len(cps)-1]; c.Size > uint64(head) {
			problems = append(problems, fmt.Sprintf("the log has %d events, fewer than the %d of the checkpoint signed %s", head, c.Size, c.Time.Format(time.RFC3339)))
		} else {
			fmt.Fprintf(w, "retention: the log holds the %d events of the last signed checkpoint (%s); payledger verify --checkpoints checks they are unchanged\n",
				c.Size, c.Time.Format(time.RFC3339))
		}
	}
	if c, ok := log.(interface {
		CheckContiguous(ctx context.Context, head int64) error
	}); ok {
		if err := c.CheckContiguous(ctx, head); err != nil {
			problems = append(problems, err.Error())
		} else {
			fmt.Fprintf(w, "retention: positions 1 to %d all stored, none missing\n", head)
		}
	}
	guards, err := log.RetentionGuards(ctx)
	if err != nil {
		return fmt.Errorf("retention: %w", err)
	}
	if len(guards) == 0 {
		problems = append(problems, "the store reports no append-only guard")
	}
	for _, g := range guards {
		state := "present"
		if !g.Present {
			state = "MISSING"
			problems = append(problems, "guard "+g.Name+" is missing: events could be deleted or rewritten")
		}
		fmt.Fprintf(w, "retention: guard %s: %s\n", g.Name, state)
	}
	if len(problems) > 0 {
		return fmt.Errorf("retention: FAILED: %s", strings.Join(problems, "; "))
	}
	fmt.Fprintf(w, "retention: ok %d events, %d guards\n", head, len(guards))
	return nil
}
