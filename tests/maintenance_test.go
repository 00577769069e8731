package tests

import (
	"context"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/payledger/payledger/internal/apiclient"
)

var digestLine = regexp.MustCompile(`verify: event-log digest ([0-9a-f]{64})`)

// TestMaintenanceBesideLiveServer: verify only reads, so it runs while the
// server writes and gives the same digest as after the server stopped;
// rebuild writes, so the server's lock on the log refuses it with a clear
// message, and the server keeps serving.
func TestMaintenanceBesideLiveServer(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	srv := start(t, dir)
	c := apiclient.New(srv.url).As(staffKey(t, dir, "operator"))
	id, _ := openAccount(t, ctx, c, "Li Na", "personal", "a long passphrase")
	funding := apiclient.New(srv.url).As(staffKey(t, dir, "funding"))
	if _, err := funding.Expect(ctx, http.StatusCreated, "POST", "/v1/accounts/"+id+"/deposits", map[string]any{"amount": "10.00", "currency": "CNY", "reference": "bank-1"}, ""); err != nil {
		t.Fatal(err)
	}
	// The operator's read is recorded too, in the key's own stream:
	// opening, factor and deposit in the account's, the read in the key's.
	checkBalances(t, ctx, c, map[string]string{id: "10.00"})

	live := runCmd(t, "verify", "--data", dir)
	if !strings.Contains(live, "4 events in 2 streams, every hash chain intact") {
		t.Fatalf("verify beside the server: %s", live)
	}
	out, err := exec.Command(binary, "rebuild", "--data", dir).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "open elsewhere") || !strings.Contains(string(out), "stop the server") {
		t.Fatalf("rebuild beside the server: err %v, output %s", err, out)
	}
	srv.stop(t, syscall.SIGTERM)
	stopped := runCmd(t, "verify", "--data", dir)
	if !strings.Contains(stopped, "stream and id indexes consistent (4 events indexed on disk") {
		t.Fatalf("verify after a clean stop (the index flushed): %s", stopped)
	}
	a, b := digestLine.FindStringSubmatch(live), digestLine.FindStringSubmatch(stopped)
	if a == nil || b == nil || a[1] != b[1] {
		t.Fatalf("digests differ: beside the server %q, after it stopped %q", live, stopped)
	}
	if out := runCmd(t, "rebuild", "--data", dir); !strings.Contains(out, "identical read models") {
		t.Fatalf("rebuild after the server stopped: %s", out)
	}
}
