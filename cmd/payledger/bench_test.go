package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestBenchSmall runs the bench command with tiny settings and checks the
// summary line's exact format, that payments were confirmed and that no
// run reported errors.
func TestBenchSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("bench runs two small ledgers")
	}
	traceFile := filepath.Join(t.TempDir(), "bench.trace")
	out := runBench(t, "--duration", "300ms", "--baseline-duration", "200ms", "--clients", "4", "--accounts", "20",
		"--trace", traceFile)
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	last := lines[len(lines)-1]
	re := regexp.MustCompile(`^bench: payments_per_s=(\d+) p50_ms=(\d+\.\d{2}) p99_ms=(\d+\.\d{2}) baseline_payments_per_s=(\d+) speedup=(\d+\.\d{2})$`)
	m := re.FindStringSubmatch(last)
	if m == nil {
		t.Fatalf("last line %q does not match %s", last, re)
	}
	if n, _ := strconv.Atoi(m[1]); n <= 0 {
		t.Errorf("payments_per_s = %d, want > 0", n)
	}
	if b, _ := strconv.Atoi(m[4]); b <= 0 {
		t.Errorf("baseline_payments_per_s = %d, want > 0", b)
	}
	runs := regexp.MustCompile(`(?m)^bench: (group-commit|baseline): payments=(\d+) refusals=(\d+) errors=(\d+) `).FindAllStringSubmatch(out, -1)
	if len(runs) != 2 {
		t.Fatalf("found %d run summaries, want 2", len(runs))
	}
	for _, r := range runs {
		if r[4] != "0" {
			t.Errorf("%s run reported %s errors", r[1], r[4])
		}
	}
	if got := strings.Count(out, "ledger verified"); got != 2 {
		t.Errorf("%d runs verified the ledger, want 2", got)
	}
	// The disk is measured before the runs and again before the baseline.
	disks := regexp.MustCompile(`(?m)^bench: (disk|disk before the baseline): \d+ writes of 16 KiB each followed by fsync in the data directory: p50_us=(\d+) p99_us=(\d+)$`).FindAllStringSubmatch(out, -1)
	if len(disks) != 2 || disks[0][1] != "disk" || disks[1][1] != "disk before the baseline" {
		t.Errorf("disk fsync lines: %q, want one before the runs and one before the baseline", disks)
	}
	for _, disk := range disks {
		if mustAtoi(t, disk[2]) > mustAtoi(t, disk[3]) {
			t.Errorf("%s: fsync p50 %s µs above p99 %s µs", disk[1], disk[2], disk[3])
		}
	}
	// The execution trace of the group-commit run: Go's trace format
	// starts with its version header.
	if b, err := os.ReadFile(traceFile); err != nil {
		t.Errorf("trace: %v", err)
	} else if !bytes.HasPrefix(b, []byte("go 1.")) || len(b) < 1024 {
		t.Errorf("trace file holds %d bytes starting %q, want a Go execution trace", len(b), b[:min(len(b), 16)])
	}
}

// TestStartProfiles: a trace that cannot be written fails the start and
// stops the CPU profile already started, so a later start succeeds.
func TestStartProfiles(t *testing.T) {
	dir := t.TempDir()
	if _, err := startProfiles(filepath.Join(dir, "cpu"), filepath.Join(dir, "missing", "trace")); err == nil {
		t.Fatal("an unwritable trace file gave no error")
	}
	stop, err := startProfiles(filepath.Join(dir, "cpu2"), filepath.Join(dir, "trace"))
	if err != nil {
		t.Fatalf("start after a failed start: %v", err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"cpu2", "trace"} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v, want a non-empty file", name, err)
		}
	}
}

// runBench runs the bench command with args and a temporary data
// directory, and returns what it printed.
func runBench(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	args = append([]string{"bench", "--data", t.TempDir()}, args...)
	if err := run(ctx, args, &stdout, &stderr); err != nil {
		t.Fatalf("bench: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	t.Log("\n" + stdout.String())
	return stdout.String()
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestMeasureFsync measures a real file's write+fsync latency.
func TestMeasureFsync(t *testing.T) {
	dir := t.TempDir()
	l, err := measureFsync(dir, 20)
	if err != nil {
		t.Fatal(err)
	}
	if l.p50 <= 0 || l.p50 > l.p99 {
		t.Errorf("p50 %v, p99 %v: want 0 < p50 <= p99", l.p50, l.p99)
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
		t.Errorf("the probe left %d files behind (%v)", len(entries), err)
	}
	if _, err := measureFsync(filepath.Join(dir, "missing"), 1); err == nil {
		t.Error("a missing directory gave no error")
	}
}

// TestBenchOpenLoop offers a fixed rate: every scheduled payment is served
// (paid, refused or failed) exactly once, the backlog included, so the
// count is the schedule's.
func TestBenchOpenLoop(t *testing.T) {
	if testing.Short() {
		t.Skip("bench runs two small ledgers")
	}
	out := runBench(t, "--duration", "500ms", "--baseline-duration", "100ms", "--clients", "4", "--accounts", "40",
		"--rate", "120")
	if !strings.Contains(out, "bench: group-commit: open loop, 120 payments/s offered") {
		t.Error("no open-loop line")
	}
	m := regexp.MustCompile(`(?m)^bench: group-commit: payments=(\d+) refusals=(\d+) errors=(\d+) elapsed=(\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatal("no group-commit summary")
	}
	served := mustAtoi(t, m[1]) + mustAtoi(t, m[2]) + mustAtoi(t, m[3])
	if served != 60 { // 0.5 s × 120/s
		t.Errorf("served %d payments (%s paid, %s refused, %s failed), want the 60 scheduled", served, m[1], m[2], m[3])
	}
	if m[3] != "0" {
		t.Errorf("%s errors", m[3])
	}
	// An open loop does not run ahead of its schedule: the last start is
	// due at about 0.5 s.
	if el, err := time.ParseDuration(m[4]); err != nil || el < 450*time.Millisecond {
		t.Errorf("elapsed %s (%v), want at least the scheduled 0.5 s", m[4], err)
	}
}

// TestBenchFlags refuses settings the workload cannot run with.
func TestBenchFlags(t *testing.T) {
	for _, args := range [][]string{
		{"bench", "--clients", "0"},
		{"bench", "--accounts", "1"},
		{"bench", "--clients", "8", "--accounts", "4"},
		{"bench", "--duration", "0s"},
		{"bench", "extra"},
		{"bench", "--rate", "-1"},
		{"bench", "--history", "-1"},
	} {
		var stdout, stderr bytes.Buffer
		if err := run(context.Background(), args, &stdout, &stderr); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}

func TestPercentile(t *testing.T) {
	var lat []time.Duration
	for i := 1; i <= 100; i++ {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	if p := percentile(lat, 0.5); p != 50*time.Millisecond {
		t.Errorf("p50 = %v", p)
	}
	if p := percentile(lat, 0.99); p != 99*time.Millisecond {
		t.Errorf("p99 = %v", p)
	}
	if p := percentile(nil, 0.5); p != 0 {
		t.Errorf("empty p50 = %v", p)
	}
}

// TestBenchHistory runs the history mode on a tiny log and checks that it
// prints every measurement, with the log as large as asked and no payment
// refused or failed.
func TestBenchHistory(t *testing.T) {
	if testing.Short() {
		t.Skip("bench builds a small ledger")
	}
	out := runBench(t, "--history", "5000", "--clients", "4", "--accounts", "20")
	num := `(\d+(?:\.\d+)?)`
	for _, want := range []string{
		`^bench: disk: \d+ writes of 16 KiB each followed by fsync in the data directory: p50_us=\d+ p99_us=\d+$`,
		// A busy machine can let a challenge expire (the clock runs at x1000).
		`^bench: history: build: events=(\d+) payments=\d+ refusals=\d+ errors=0 rounds=\d+ `,
		`^bench: history: log bytes=\d+ .* bytes_per_payment=\d+ bytes_per_event=\d+;`,
		`^bench: history: cold balance p50_ms=` + num + ` p99_ms=` + num + ` n=10 `,
		`^bench: history: warm balance p50_ms=` + num + ` p99_ms=` + num + ` n=10 `,
		`^bench: history: statement page p50_ms=` + num + ` p99_ms=` + num + ` n=40 entries_per_page=` + num,
		`^bench: history: first payment cold p50_ms=` + num + ` p99_ms=` + num + ` warm p50_ms=` + num + ` p99_ms=` + num + ` cold_over_warm_p50=` + num + ` n=10 `,
		`^bench: history: rebuild events=\d+ elapsed=\S+ events_per_s=[1-9]\d*`,
		`^bench: history: verify events=\d+ streams=20 elapsed=\S+ events_per_s=[1-9]\d*`,
		`^bench: history: target cold balance p99 .*: (met|missed)$`,
		`^bench: history: target statement page p99 .*: (met|missed)$`,
		`^bench: history: target first payment cold p50 .*: (met|missed)$`,
		`^bench: history: target rebuild .*: (met|missed)$`,
		`^bench: history: target log bytes per payment .*: (met|missed)$`,
	} {
		re := regexp.MustCompile("(?m)" + want)
		if !re.MatchString(out) {
			t.Errorf("no line matches %s", want)
		}
	}
	m := regexp.MustCompile(`(?m)^bench: history: build: events=(\d+) `).FindStringSubmatch(out)
	if m == nil {
		t.Fatal("no build line")
	}
	// Each payment appends two events: the log ends within one of 5000.
	if n := mustAtoi(t, m[1]); n < 5000 || n > 5001 {
		t.Errorf("the log holds %d events, want 5000", n)
	}
	// The payments spread over the five simulated years: the statements
	// of random months found entries.
	if s := regexp.MustCompile(`entries_per_page=0\.0 `).FindString(out); s != "" {
		t.Errorf("statement pages were empty: %s", s)
	}
}

// TestHistoryClock: the clock runs at historySpeed from where it was set,
// and a jump never moves it back.
func TestHistoryClock(t *testing.T) {
	c := newHistoryClock(benchEpoch)
	if d := c.Now().Sub(benchEpoch); d < 0 || d > time.Hour {
		t.Errorf("a new clock reads %v after its start", d)
	}
	later := benchEpoch.AddDate(1, 0, 0)
	c.jump(later)
	if now := c.Now(); now.Before(later) || now.Sub(later) > time.Hour {
		t.Errorf("after a jump to %v the clock reads %v", later, now)
	}
	c.jump(benchEpoch)
	if now := c.Now(); now.Before(later) {
		t.Errorf("a jump back moved the clock to %v", now)
	}
	if d := c.realUntil(c.Now().Add(historySpeed * time.Second)); d < 900*time.Millisecond || d > time.Second {
		t.Errorf("realUntil of %d virtual seconds = %v, want about 1s", historySpeed, d)
	}
}
