//go:build !unix

package sqlite

// lockFile is a no-op where flock is unavailable: there, the operator must
// make sure only one process opens the file.
func lockFile(string) (func() error, error) { return func() error { return nil }, nil }

// syncDir is a no-op where directories cannot be opened for syncing.
func syncDir(string) error { return nil }
