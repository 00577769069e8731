//go:build !unix

package filelock

// Exclusive is a no-op where flock is unavailable: there, the operator must
// make sure only one process opens the file.
func Exclusive(string) (func() error, error) { return func() error { return nil }, nil }
