//go:build unix

package filelock

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// Exclusive takes an exclusive advisory lock on path+".lock" (created 0600)
// until unlock is called; ErrHeld when another process holds it. The
// kernel drops the lock when the process dies, so a crash never leaves it
// behind.
func Exclusive(path string) (unlock func() error, err error) {
	f, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s.lock", ErrHeld, path)
		}
		return nil, fmt.Errorf("lock %s.lock: %w", path, err)
	}
	return f.Close, nil
}
