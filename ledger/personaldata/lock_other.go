//go:build !unix

package personaldata

// lockFile is a no-op where flock is unavailable: there, the operator must
// make sure only one process opens the file.
func lockFile(string) (func() error, error) { return func() error { return nil }, nil }
