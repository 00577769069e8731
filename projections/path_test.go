package projections

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/payledger/payledger/domain"
)

// TestOpenAwkwardPath: a read-model file whose name holds a '%' (here one
// that a file URI would decode "%41" into "A") and spaces is created under
// that exact name and reopened with its checkpoint, not under a decoded
// name. ('?' and '#' are still refused, see TestOpenRejectsBadPath.)
func TestOpenAwkwardPath(t *testing.T) {
	dir := t.TempDir()
	name := "read models 100%41.db"
	path := filepath.Join(dir, name)
	l := newLedger(t)
	l.open("alice", domain.CNY)
	l.deposit("alice", "5.00", domain.CNY)
	rm, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := rm.CatchUp(context.Background(), l.store); err != nil {
		t.Fatal(err)
	}
	cp := rm.Checkpoint()
	if err := rm.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("no file under the exact name: %v", err)
	}
	rm, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer rm.Close()
	if got := rm.Checkpoint(); got != cp || cp == 0 {
		t.Fatalf("checkpoint %d after reopening, want %d (> 0)", got, cp)
	}
}
