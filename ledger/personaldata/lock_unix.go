//go:build unix

package personaldata

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lockFile takes an exclusive advisory lock on path+".lock" while the Store
// is open: a process that caches unwrapped keys under one master key must
// not share the file with one that rewraps them under another. The kernel
// drops the lock when the process dies.
func lockFile(path string) (unlock func() error, err error) {
	f, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("personaldata: lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s.lock is held (is the server running?)", ErrLocked, path)
		}
		return nil, fmt.Errorf("personaldata: lock %s.lock: %w", path, err)
	}
	return f.Close, nil
}
