//go:build !unix

package sqlite

import "errors"

// ErrLocked is returned by Open when another Store has the database file
// open. Only unix builds take the lock (see lock_unix.go).
var ErrLocked = errors.New("the event store is open elsewhere (one writer per file)")

// lockFile is a no-op where flock is unavailable: there, the operator must
// make sure only one process opens the file.
func lockFile(string) (func() error, error) { return func() error { return nil }, nil }
