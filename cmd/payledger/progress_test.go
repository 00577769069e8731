package main

import (
	"bytes"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

// TestProgressOnlyOnATerminal: progress is drawn on a terminal and nowhere
// else, so a pipe or CI's log gets only the command's result lines.
func TestProgressOnlyOnATerminal(t *testing.T) {
	var buf bytes.Buffer
	var n atomic.Int64
	stop := showProgress(&buf, 100, "test", n.Load)
	n.Store(50)
	time.Sleep(300 * time.Millisecond)
	stop()
	if buf.Len() != 0 {
		t.Fatalf("progress written to a buffer: %q", buf.String())
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if isTerminal(w) || isTerminal(&buf) {
		t.Fatal("a pipe or a buffer taken for a terminal")
	}
	tty, err := os.OpenFile("/dev/tty", os.O_WRONLY, 0)
	if err != nil {
		t.Logf("no terminal to check the other way (%v)", err)
		return
	}
	defer tty.Close()
	if !isTerminal(tty) {
		t.Fatal("/dev/tty not taken for a terminal")
	}
}

// TestProgressReporter: a reporter whose work never reports stops cleanly,
// and one that reports stays quiet off a terminal like showProgress.
func TestProgressReporter(t *testing.T) {
	var buf bytes.Buffer
	_, stop := progressReporter(&buf, "test")
	stop()
	report, stop := progressReporter(&buf, "test")
	for i := range int64(5) {
		report(i*25, 100)
	}
	stop()
	if buf.Len() != 0 {
		t.Fatalf("progress written to a buffer: %q", buf.String())
	}
}
