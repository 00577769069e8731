package projections

import (
	"bufio"
	"context"
	"flag"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

var (
	statementFile = flag.String("statement-file", "",
		"read-model file (from payledger bench --history) to time statement pages on; TestStatementPagesOnFile skips without it")
	statementSamples = flag.Int("statement-samples", 1000, "statement pages TestStatementPagesOnFile times")
	statementMonths  = flag.Int("statement-months", 1, "months each page of TestStatementPagesOnFile asks for")
)

// TestStatementPagesOnFile times statement pages of random accounts and
// random months of the history bench's five years (2030 to 2034) on an
// existing read-model file, as the history bench's reads phase does, and
// counts the bytes the process read from the disk meanwhile
// (/proc/self/io), so that run after dropping the operating system's page
// cache it gives the disk reads a page costs. Open upgrades an older file
// first, and reports how long that took. A smaller log than the bench's
// 10 M events has fewer entries an account-month: -statement-months
// widens the period to fill the pages as 10 M events do.
//
//	go test ./projections -run TestStatementPagesOnFile -v -statement-file /tmp/hist/history-N/readmodels.db
func TestStatementPagesOnFile(t *testing.T) {
	if *statementFile == "" {
		t.Skip("no -statement-file")
	}
	ctx := context.Background()
	start := time.Now()
	r, err := Open(*statementFile)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.Close() }()
	t.Logf("open: %v", time.Since(start))
	accounts, _, err := r.Accounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, 0, len(accounts))
	for id := range accounts {
		if !strings.HasPrefix(id, "clearing") {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	if len(ids) == 0 {
		t.Fatal("no accounts")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	epoch := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	readBefore := procIO(t, "read_bytes")
	times := make([]time.Duration, 0, *statementSamples)
	entries := 0
	for range *statementSamples {
		id := ids[rng.IntN(len(ids))]
		from := epoch.AddDate(0, rng.IntN(60), 0)
		s := time.Now()
		page, err := r.Statement(ctx, StatementQuery{AccountID: id, From: from, To: from.AddDate(0, *statementMonths, 0), Limit: DefaultStatementLimit})
		times = append(times, time.Since(s))
		if err != nil {
			t.Fatal(err)
		}
		entries += len(page.Entries)
	}
	read := procIO(t, "read_bytes") - readBefore
	slices.Sort(times)
	pct := func(p float64) float64 {
		return float64(times[min(len(times)-1, int(p*float64(len(times))))].Microseconds()) / 1000
	}
	n := len(times)
	t.Logf("statement pages: n=%d p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f entries_per_page=%.1f disk_read_kib_per_page=%.1f",
		n, pct(0.5), pct(0.9), pct(0.99), pct(1), float64(entries)/float64(n), float64(read)/1024/float64(n))
}

// procIO is the counter field of /proc/self/io: read_bytes is what this
// process made the kernel read from the disk, wchar what it passed to
// write calls (the page cache writes it back later).
func procIO(t testing.TB, field string) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/io")
	if err != nil {
		t.Skipf("no /proc/self/io: %v", err)
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+": "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc/self/io", field)
	return 0
}
