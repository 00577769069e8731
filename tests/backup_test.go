package tests

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/payledger/payledger/internal/apiclient"
)

// TestBackupUnderLoad: a backup taken while deposits keep arriving is a
// consistent copy: restored, its log is a prefix of the live one whose
// chains verify, its read models rebuild identical, and a server on it
// shows the balance its own log holds.
func TestBackupUnderLoad(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	srv := start(t, dir)
	operator := apiclient.New(srv.url).As(staffKey(t, dir, "operator"))
	funding := apiclient.New(srv.url).As(staffKey(t, dir, "funding"))
	id, _ := openAccount(t, ctx, operator, "Lu Ping", "personal", "a long passphrase")
	var n atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := funding.Expect(ctx, http.StatusCreated, "POST", "/v1/accounts/"+id+"/deposits",
				map[string]any{"amount": "1.00", "currency": "CNY", "reference": fmt.Sprint("bank-", i)}, ""); err != nil {
				t.Error(err)
				return
			}
			n.Add(1)
		}
	}()
	for n.Load() < 20 {
		time.Sleep(5 * time.Millisecond)
	}
	file := filepath.Join(t.TempDir(), "backup.tar")
	out := runCmd(t, "backup", "--data", dir, "--to", file)
	if !strings.Contains(out, "events.db") || !strings.Contains(out, "readmodels.db") || !strings.Contains(out, "personaldata.db") {
		t.Fatalf("backup: %s", out)
	}
	for n.Load() < 40 {
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	srv.stop(t, syscall.SIGTERM)

	restored := filepath.Join(t.TempDir(), "restored")
	runCmd(t, "restore", "--from", file, "--data", restored)
	live, copied := readLog(t, dir), readLog(t, restored)
	if len(copied) < 20 || len(copied) >= len(live) {
		t.Fatalf("restored %d events of %d", len(copied), len(live))
	}
	deposits := 0
	for i, e := range copied {
		if e.ID != live[i].ID || e.Hash != live[i].Hash {
			t.Fatalf("restored event %d is not the live log's", i+1)
		}
		if e.Type == "FundsDeposited" {
			deposits++
		}
	}
	if out := runCmd(t, "verify", "--data", restored); !strings.Contains(out, "every hash chain intact") {
		t.Fatalf("verify of the restore: %s", out)
	}
	if out := runCmd(t, "rebuild", "--data", restored); !strings.Contains(out, "ok (identical read models)") {
		t.Fatalf("rebuild of the restore: %s", out)
	}
	// The backup holds the data keys, never the master key that wraps
	// them: the restored server is given the original's.
	again := start(t, restored, "--master-key", dir+".master.key")
	checkBalances(t, ctx, apiclient.New(again.url).As(staffKey(t, restored, "operator")), map[string]string{id: fmt.Sprintf("%d.00", deposits)})
	// A restore never writes over a directory.
	if out, err := runCmdErr("restore", "--from", file, "--data", restored); err == nil || !strings.Contains(out, "exists") {
		t.Fatalf("restore over a directory: %v %s", err, out)
	}
}

// runCmdErr runs the binary and returns its output and error.
func runCmdErr(args ...string) (string, error) {
	out, err := exec.Command(binary, args...).CombinedOutput()
	return string(out), err
}
