package main

import (
	"os"
	"runtime/debug"
)

const (
	// defaultGCPercent replaces Go's GOGC=100 when GOGC is not set. The
	// ledger allocates many short-lived objects per command (decoded
	// events, SQL arguments) and keeps a modest live heap (the aggregate
	// cache, the live log tail), so collecting when the heap has grown by
	// 400% instead of 100% costs memory it can afford and saves CPU per
	// payment (measured with payledger bench, GOGC unset against GOGC=100,
	// in alternating pairs; figures in docs/performance.md).
	defaultGCPercent = 400
	// defaultMemoryLimit is the soft memory limit set when GOMEMLIMIT is
	// not: near it the collector runs as often as it must, whatever the
	// GC percent, so the higher percent cannot grow the heap without bound.
	defaultMemoryLimit = 1 << 30
)

// tuneGC applies the defaults above, leaving whatever the operator set in
// GOGC or GOMEMLIMIT alone.
func tuneGC() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(defaultGCPercent)
	}
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
}
