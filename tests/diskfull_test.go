package tests

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/payledger/payledger/internal/apiclient"
)

// TestDiskFull runs the server on a small filesystem of its own and fills
// it: writes are refused as 503 storage_unavailable with Retry-After,
// /healthz reports degraded with the reason, and once space is freed the
// server writes again, reports ok, and the log verifies. It needs root to
// mount a tmpfs (CI runs as root) and says so when it cannot.
func TestDiskFull(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("SKIPPED: this test mounts a 16 MB tmpfs and needs root to (mount: %v: %s)", err, strings.TrimSpace(string(out)))
	}
	defer func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	}()
	ctx := context.Background()
	srv := start(t, dir)
	defer func() {
		if srv.cmd.ProcessState == nil {
			srv.stop(t, syscall.SIGTERM)
		}
	}()
	operator := apiclient.New(srv.url).As(staffKey(t, dir, "operator"))
	funding := apiclient.New(srv.url).As(staffKey(t, dir, "funding"))
	id, _ := openAccount(t, ctx, operator, "Li Wei", "personal", "a long passphrase")
	deposit := func(n int) apiclient.Response {
		t.Helper()
		r, err := funding.Do(ctx, "POST", "/v1/accounts/"+id+"/deposits",
			map[string]any{"amount": "1.00", "currency": "CNY", "reference": fmt.Sprint("bank-", n)}, "")
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := deposit(0); r.Status != http.StatusCreated {
		t.Fatalf("deposit before the disk fills: %d %s", r.Status, r.Raw)
	}

	// Fill the filesystem, then write until a write is refused.
	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	for i := 0; i < 16<<4; i++ { // at most the filesystem's size
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill: %v", err)
			}
			break
		}
	}
	f.Close()
	var refused apiclient.Response
	for n := 1; n <= 200; n++ {
		r := deposit(n)
		if r.Status == http.StatusServiceUnavailable {
			refused = r
			break
		}
		if r.Status != http.StatusCreated {
			t.Fatalf("deposit %d on a full disk: %d %s", n, r.Status, r.Raw)
		}
	}
	if refused.Str("code") != "storage_unavailable" || refused.Header.Get("Retry-After") == "" {
		t.Fatalf("a full disk was never reported: %d %s", refused.Status, refused.Raw)
	}
	health, err := apiclient.New(srv.url).Do(ctx, "GET", "/healthz", nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if health.Status != http.StatusServiceUnavailable || health.Str("code") != "degraded" || !strings.Contains(string(health.Raw), "storage:") {
		t.Fatalf("healthz on a full disk: %d %s", health.Status, health.Raw)
	}

	// Free the space: writes resume and the server is healthy again.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if r := deposit(1000); r.Status != http.StatusCreated {
		t.Fatalf("deposit after space was freed: %d %s", r.Status, r.Raw)
	}
	health, err = apiclient.New(srv.url).Do(ctx, "GET", "/healthz", nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if health.Status != http.StatusOK || health.Str("status") != "ok" {
		t.Fatalf("healthz after space was freed: %d %s", health.Status, health.Raw)
	}
	srv.stop(t, syscall.SIGTERM)
	if out := runCmd(t, "verify", "--data", dir); !strings.Contains(out, "every hash chain intact") {
		t.Fatalf("verify after the disk was full: %s", out)
	}
}
