//go:build !unix

package ledger_test

import (
	"testing"
	"time"
)

// processCPU is not measured here: -1 leaves out the cpu-ns/op metric.
func processCPU(*testing.B) time.Duration { return -1 }
