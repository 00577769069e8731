package main

import (
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/schollz/progressbar/v3"
)

// isTerminal reports whether w is a terminal, where progress is drawn;
// elsewhere (a pipe, a file, CI) long commands stay quiet until they end.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// showProgress draws a bar of total steps on stderr when it is a terminal,
// reading current five times a second, until the returned stop is called.
func showProgress(stderr io.Writer, total int64, what string, current func() int64) (stop func()) {
	if total <= 0 || !isTerminal(stderr) {
		return func() {}
	}
	bar := progressbar.NewOptions64(total, progressbar.OptionSetWriter(stderr), progressbar.OptionSetDescription(what),
		progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true), progressbar.OptionClearOnFinish(),
		progressbar.OptionThrottle(200*time.Millisecond))
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = bar.Set64(min(current(), total))
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
		_ = bar.Finish()
	}
}

// progressReporter adapts showProgress to a callback that learns its total
// only once the work has started (a store migrating its file inside Open):
// the bar appears at the first report. report must be called from one
// goroutine, and stop after its last call.
func progressReporter(stderr io.Writer, what string) (report func(done, total int64), stop func()) {
	var cur atomic.Int64
	stopBar := func() {}
	started := false
	report = func(done, total int64) {
		cur.Store(done)
		if !started {
			started = true
			stopBar = showProgress(stderr, total, what, cur.Load)
		}
	}
	return report, func() { stopBar() }
}
