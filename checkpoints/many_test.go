package checkpoints

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/payledger/payledger/eventstore/merkle"
)

// TestMoreThanAMillionCheckpoints: serve signs a checkpoint every minute
// while the log grows, about 525,600 a year, and events are kept five
// years: a restarted signer finds its latest checkpoint and any earlier
// one by size past a million lines (it once stopped reading there).
func TestMoreThanAMillionCheckpoints(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a million lines")
	}
	dir := t.TempDir()
	priv := key(t)
	f, err := os.Create(filepath.Join(dir, LogFile))
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	line := func(c Checkpoint) {
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(append(b, '\n'))
	}
	for i := uint64(1); i < maxCheckpoints; i++ {
		fmt.Fprintf(w, "{\"size\":%d}\n", i)
	}
	line(Sign(priv, maxCheckpoints, merkle.Hash{1}, at))
	line(Sign(priv, maxCheckpoints+1, merkle.Hash{2}, at.Add(time.Minute)))
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	s, err := NewSigner(&fakeLog{}, priv, dir, "", func() time.Time { return at })
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := s.Latest(); c.Size != maxCheckpoints+1 {
		t.Errorf("the latest checkpoint after a restart is the one of %d events, not the last signed (%d events)", c.Size, maxCheckpoints+1)
	}
	if _, ok, err := s.CheckpointOfSize(maxCheckpoints + 1); !ok || err != nil {
		t.Errorf("the checkpoint of %d events is not found: %v %v", maxCheckpoints+1, ok, err)
	}
}
