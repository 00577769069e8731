// Package filelock takes the advisory lock that keeps a second process off
// a file one process owns (the event log, the personal-data key store).
// It imports nothing of the project.
package filelock

import "errors"

// ErrHeld means another process holds the lock.
var ErrHeld = errors.New("the lock is held by another process")
