package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/payledger/payledger/eventstore"
	"github.com/payledger/payledger/eventstore/postgres"
	"github.com/payledger/payledger/eventstore/sqlite"
)

// runOut runs one payledger command and returns its standard output.
func runOut(t *testing.T, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	if err := run(context.Background(), args, &out, &errOut); err != nil {
		t.Fatalf("payledger %s: %v\n%s\n%s", strings.Join(args, " "), err, out.String(), errOut.String())
	}
	return out.String()
}

// copyLog appends every event of src, in log order, to a new SQLite log
// at path: the same ids, payloads, times, versions and positions, so the
// same hashes.
func copyLog(t *testing.T, src eventstore.Store, path string) {
	t.Helper()
	ctx := context.Background()
	dst, err := sqlite.Open(path, sqlite.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	var pos int64
	for {
		evs, err := src.ReadAll(ctx, pos, eventstore.MaxReadBatch)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			return
		}
		for _, e := range evs {
			res, err := dst.Append(ctx, e.Stream, e.Version-1, []eventstore.EventData{e.EventData})
			if err != nil {
				t.Fatal(err)
			}
			if got := res.Events[0]; got.Position != e.Position || got.Hash != e.Hash {
				t.Fatalf("the copy of position %d landed at %d with hash %x, not %x", e.Position, got.Position, got.Hash, e.Hash)
			}
			pos = e.Position
		}
	}
}

// TestFinanceCommandsOnPostgres: after the demo on PostgreSQL, rebuild,
// reconcile, report annual, digest and close read the log through
// --store and print what they print on an identical SQLite log; the
// reading ones run beside a serving process, rebuild and close refuse to.
func TestFinanceCommandsOnPostgres(t *testing.T) {
	store := pgStoreURL(t, true)
	out := runOut(t, "demo", "--store", store)
	if !strings.HasSuffix(out, "demo: ok\n") {
		t.Fatalf("demo did not end with ok:\n%s", out)
	}
	// The data keys stay in the database, and their master key with them.
	keyRe := regexp.MustCompile(`under the master key in (\S+):`)
	mk := keyRe.FindStringSubmatch(out)
	if mk == nil {
		t.Fatalf("demo did not say where the master key of the database's data keys is:\n%s", out)
	}
	t.Cleanup(func() { _ = os.RemoveAll(filepath.Dir(mk[1])) })
	ctx := context.Background()
	pg, err := postgres.Open(ctx, store, postgres.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	sqDir := t.TempDir()
	sqLog := filepath.Join(sqDir, "events.db")
	copyLog(t, pg, sqLog)
	if err := pg.Close(); err != nil {
		t.Fatal(err)
	}
	pgDir := t.TempDir()
	digestRe := regexp.MustCompile(`verify: event-log digest ([0-9a-f]{64})`)
	pgVerifyOut := runOut(t, "verify", "--store", store)
	pgVerify := digestRe.FindStringSubmatch(pgVerifyOut)
	sqVerify := digestRe.FindStringSubmatch(runOut(t, "verify", "--data", sqDir))
	if pgVerify == nil || sqVerify == nil || pgVerify[1] != sqVerify[1] {
		t.Fatalf("the copy is not the same log: digests %q and %q", pgVerify, sqVerify)
	}

	// rebuild: the same read models from either log (the PostgreSQL one's
	// read models are in --data, which starts empty).
	rmRe := regexp.MustCompile(`read-model digest after  (\S+)`)
	pgRebuild := runOut(t, "rebuild", "--data", pgDir, "--store", store)
	sqRebuild := runOut(t, "rebuild", "--data", sqDir)
	pgRM, sqRM := rmRe.FindStringSubmatch(pgRebuild), rmRe.FindStringSubmatch(sqRebuild)
	if pgRM == nil || sqRM == nil || pgRM[1] != sqRM[1] || !strings.Contains(pgRebuild, "rebuild: ok (identical read models)") {
		t.Fatalf("rebuild --store:\n%s\nrebuild on the SQLite copy:\n%s", pgRebuild, sqRebuild)
	}

	// A server holds the log from here (as serve opens it): the commands
	// that only read still run; rebuild and close refuse.
	holder, err := postgres.Open(ctx, store, postgres.Options{Exclusive: true})
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()

	pgRec := runOut(t, "reconcile", "--data", pgDir, "--store", store, "--json")
	sqRec := runOut(t, "reconcile", "--data", sqDir, "--json")
	if pgRec != sqRec || !strings.Contains(pgRec, `"through"`) {
		t.Fatalf("reconcile --store:\n%s\nreconcile on the SQLite copy:\n%s", pgRec, sqRec)
	}
	year := time.Now().Year() - 1
	for _, format := range []string{"json", "csv"} {
		pgRep := runOut(t, "report", "annual", "--year", strconv.Itoa(year), "--format", format, "--store", store, "--data", pgDir)
		sqRep := runOut(t, "report", "annual", "--year", strconv.Itoa(year), "--format", format, "--data", sqDir)
		if pgRep != sqRep || len(pgRep) < 100 {
			t.Fatalf("report annual --format %s --store:\n%s\non the SQLite copy:\n%s", format, pgRep, sqRep)
		}
	}
	rootRe := regexp.MustCompile(`digest: \d+ \(.*\): (\d+) events, positions \d+-\d+, merkle root ([0-9a-f]{64})`)
	var roots []string
	for _, y := range []int{year, year + 1} {
		pgDig := rootRe.FindStringSubmatch(runOut(t, "digest", "--year", strconv.Itoa(y), "--store", store, "--data", pgDir))
		sqDig := rootRe.FindStringSubmatch(runOut(t, "digest", "--year", strconv.Itoa(y), "--data", sqDir))
		if pgDig == nil || sqDig == nil || pgDig[2] != sqDig[2] || pgDig[1] != sqDig[1] {
			t.Fatalf("digest --year %d: %q on PostgreSQL, %q on the SQLite copy", y, pgDig, sqDig)
		}
		roots = append(roots, pgDig[2])
	}
	if roots[0] == roots[1] {
		t.Fatalf("two years of the demo give the same merkle root %s", roots[0])
	}

	day := time.Now().In(shanghai(t)).AddDate(0, 0, -2).Format("2006-01-02")
	for _, args := range [][]string{
		{"close", "--day", day, "--data", pgDir, "--store", store, "--master-key", mk[1]},
		{"rebuild", "--data", pgDir, "--store", store},
	} {
		var out, errOut bytes.Buffer
		err := run(ctx, args, &out, &errOut)
		if !errors.Is(err, postgres.ErrLocked) {
			t.Fatalf("%s beside a server: %v, want ErrLocked\n%s", args[0], err, out.String())
		}
	}
	if err := holder.Close(); err != nil {
		t.Fatal(err)
	}
	closeRe := regexp.MustCompile(`close: (\S+ CNY closed through position \d+: .*)`)
	pgClose := closeRe.FindStringSubmatch(runOut(t, "close", "--day", day, "--data", pgDir, "--store", store, "--master-key", mk[1]))
	sqClose := closeRe.FindStringSubmatch(runOut(t, "close", "--day", day, "--data", sqDir))
	if pgClose == nil || sqClose == nil || pgClose[1] != sqClose[1] {
		t.Fatalf("close --store: %q; on the SQLite copy: %q", pgClose, sqClose)
	}
	// The close is in the PostgreSQL log now, and reconcile still finds
	// no mismatch.
	countRe := regexp.MustCompile(`verify: (\d+) events in`)
	before, after := countRe.FindStringSubmatch(pgVerifyOut), countRe.FindStringSubmatch(runOut(t, "verify", "--store", store))
	if before == nil || after == nil {
		t.Fatal("verify printed no event count")
	}
	if n, _ := strconv.Atoi(before[1]); strconv.Itoa(n+1) != after[1] {
		t.Fatalf("close --store left %s events; before it %s", after[1], before[1])
	}
	if out := runOut(t, "reconcile", "--data", pgDir, "--store", store); !strings.Contains(out, "reconcile: ok") {
		t.Fatalf("reconcile after close --store:\n%s", out)
	}
}

func shanghai(t *testing.T) *time.Location {
	loc, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		t.Fatal(err)
	}
	return loc
}
