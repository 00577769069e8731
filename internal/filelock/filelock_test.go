//go:build unix

package filelock

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestExclusive: a second lock on the same file, from another process,
// fails with ErrHeld until the first is released.
func TestExclusive(t *testing.T) {
	if os.Getenv("FILELOCK_CHILD") != "" {
		if _, err := Exclusive(os.Getenv("FILELOCK_CHILD")); errors.Is(err, ErrHeld) {
			os.Exit(3)
		} else if err != nil {
			os.Exit(4)
		}
		os.Exit(0)
	}
	path := filepath.Join(t.TempDir(), "db")
	unlock, err := Exclusive(path)
	if err != nil {
		t.Fatal(err)
	}
	child := func() int {
		cmd := exec.Command(os.Args[0], "-test.run=^TestExclusive$")
		cmd.Env = append(os.Environ(), "FILELOCK_CHILD="+path)
		err := cmd.Run()
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return exit.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	}
	if code := child(); code != 3 {
		t.Fatalf("another process locked a held file: exit %d", code)
	}
	if err := unlock(); err != nil {
		t.Fatal(err)
	}
	if code := child(); code != 0 {
		t.Fatalf("another process could not lock a released file: exit %d", code)
	}
	if st, err := os.Stat(path + ".lock"); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("lock file: %v %v", st, err)
	}
}
