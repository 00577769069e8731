//go:build !unix

package sqlite

// syncDir is a no-op where directories cannot be opened for syncing.
func syncDir(string) error { return nil }
