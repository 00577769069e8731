package tests

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

// readmeBlock returns the shell block that follows marker in README.md.
func readmeBlock(t *testing.T, marker string) string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), marker)
	if !ok {
		t.Fatalf("README.md has no %q", marker)
	}
	_, rest, _ = strings.Cut(rest, "```sh\n")
	block, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatal("the README's curl session is not closed")
	}
	return block
}

// TestReadmeCurlSession runs the README's curl session, as pasted, against
// the built binary: only the build, the server's start and stop, and the
// address and data directory are the test's own.
func TestReadmeCurlSession(t *testing.T) {
	for _, tool := range []string{"bash", "curl", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed to run the README's session (.ci/run installs it): %v", tool, err)
		}
	}
	block := readmeBlock(t, "<!-- curl-session")
	var lines []string
	for _, l := range strings.Split(block, "\n") {
		switch {
		case strings.HasPrefix(l, "go build "), strings.Contains(l, " serve "), l == "sleep 1", l == "kill %1":
			continue // the test builds and runs the server itself
		}
		lines = append(lines, l)
	}
	dir := t.TempDir()
	srv := start(t, dir)
	script := strings.NewReplacer("./payledger", binary, "./data", dir, "http://127.0.0.1:8080", srv.url).Replace(strings.Join(lines, "\n"))
	cmd := exec.Command("bash", "-c", "set -euo pipefail\n"+script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the README's session failed: %v\n%s", err, out)
	}
	for _, want := range []string{`"status": "completed"`, `"verification_level": "single_factor"`, `"usable_from"`,
		`{"type":"FundsDeposited","direction":"credit","amount":"100.00","balance_after":"100.00"}`,
		`{"type":"PaymentConfirmed","direction":"debit","amount":"12.50","balance_after":"87.50"}`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the session's output lacks %s:\n%s", want, out)
		}
	}
	srv.stop(t, syscall.SIGTERM)
}

// TestReadmeCommandsParse checks every flag the README's command table
// gives against the binary's own flags.
func TestReadmeCommandsParse(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `payledger (\\w+)[^|]*?(.*)\\|.*\\|$")
	flag := regexp.MustCompile(`--([a-z-]+)`)
	checked := 0
	for _, m := range row.FindAllStringSubmatch(string(b), -1) {
		cmd := m[1]
		args := []string{cmd}
		if cmd == "keys" {
			args = []string{"keys", "create"}
			if sub := regexp.MustCompile("`payledger keys ([a-z-]+)").FindStringSubmatch(m[0]); sub != nil && sub[1] != "list" {
				args = []string{"keys", sub[1]}
			}
		}
		out, _ := exec.Command(binary, append(args, "-h")...).CombinedOutput()
		for _, f := range flag.FindAllStringSubmatch(m[0], -1) {
			if !strings.Contains(string(out), "-"+f[1]) {
				t.Errorf("README: payledger %s --%s, but `payledger %s -h` does not list it:\n%s", cmd, f[1], strings.Join(args, " "), out)
			}
			checked++
		}
	}
	if checked < 20 {
		t.Fatalf("checked only %d flags; has the table's layout changed?", checked)
	}
}
