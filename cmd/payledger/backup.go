package main

import (
	"archive/tar"
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/payledger/payledger/checkpoints"
	"github.com/payledger/payledger/internal/sqlitedsn"
)

// backupOrder is what a backup copies, in this order: the checkpoints
// before the read models before the log, so that in the copy nothing is
// ahead of the log (a checkpoint no longer than it, read models no further
// than its head, which catch up on the next start). Snapshots are left out:
// they are derived, and a restored server makes new ones.
var backupOrder = []struct {
	name     string
	database bool
}{
	{checkpoints.LogFile, false},
	{"checkpoints.frontier", false},
	{"server.key", false},
	{staffKeysFile, true},
	{"readmodels.db", true},
	{"events.db", true},
	// After the log: every event in the copy has its data key in it (keys
	// are made before the events they seal). The master key that wraps
	// them is never in a backup. A PostgreSQL log keeps them in its
	// database, whose own backups hold both.
	{personalDataFile, true},
}

// maxBackupFile bounds one file restored from a backup.
const maxBackupFile = 1 << 40

// cmdBackup writes a consistent copy of a data directory to a tar file,
// also while the server runs: each database is copied by SQLite itself
// (VACUUM INTO) from one read transaction.
func cmdBackup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("data", "./data", "data directory")
	to := fs.String("to", "", "the backup file to write (a tar archive; must not exist)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *to == "" {
		return errors.New("backup needs --to FILE")
	}
	if _, err := os.Stat(filepath.Join(*dir, "events.db")); err != nil {
		return fmt.Errorf("backup: no event log in %s (a PostgreSQL log and its data keys are backed up with the database's own tools): %w", *dir, err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(*to), ".payledger-backup-")
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer os.RemoveAll(tmp)
	start := time.Now()
	var names []string
	for _, f := range backupOrder {
		src, dst := filepath.Join(*dir, f.name), filepath.Join(tmp, f.name)
		if _, err := os.Stat(src); errors.Is(err, os.ErrNotExist) {
			continue
		}
		if f.database {
			err = vacuumInto(ctx, src, dst)
		} else {
			err = copyFile(src, dst)
		}
		if err != nil {
			return fmt.Errorf("backup %s: %w", f.name, err)
		}
		names = append(names, f.name)
	}
	if err := writeTar(*to, tmp, names); err != nil {
		return err
	}
	st, err := os.Stat(*to)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "backup: %s written (%d bytes, %s) in %s; restore it with payledger restore --from %s --data NEWDIR, then run verify\n",
		*to, st.Size(), strings.Join(names, ", "), time.Since(start).Round(time.Millisecond), *to)
	return nil
}

// vacuumInto copies a database as of one read transaction, beside writers.
func vacuumInto(ctx context.Context, src, dst string) error {
	db, err := sql.Open("sqlite", sqlitedsn.File(src).BusyTimeout(10*time.Second).String())
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "VACUUM INTO ?", dst); err != nil {
		return err
	}
	return os.Chmod(dst, 0o600)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}

// writeTar packs the files of dir named in names into a new tar file.
func writeTar(path, dir string, names []string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	tw := tar.NewWriter(f)
	for _, n := range names {
		if err := addToTar(tw, filepath.Join(dir, n), n); err != nil {
			_ = f.Close()
			_ = os.Remove(path)
			return fmt.Errorf("backup: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		_ = f.Close()
		return fmt.Errorf("backup: %w", err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("backup: %w", err)
	}
	return f.Close()
}

func addToTar(tw *tar.Writer, path, name string) error {
	in, err := os.Open(path)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: st.Size(), ModTime: st.ModTime(), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	_, err = io.Copy(tw, in)
	return err
}

// cmdRestore unpacks a backup into a new data directory.
func cmdRestore(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	fs.SetOutput(stderr)
	from := fs.String("from", "", "the backup file (payledger backup)")
	dir := fs.String("data", "", "the data directory to restore into (must not exist yet)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *from == "" || *dir == "" {
		return errors.New("restore needs --from FILE and --data NEWDIR")
	}
	if _, err := os.Stat(*dir); err == nil {
		return fmt.Errorf("restore: %s exists: restore into a new directory, never over a live one", *dir)
	}
	f, err := os.Open(*from)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer f.Close()
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	known := map[string]bool{}
	for _, b := range backupOrder {
		known[b.name] = true
	}
	tr := tar.NewReader(f)
	var names []string
	for i := 0; i <= len(backupOrder); i++ {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		// Only the files a backup writes, by their plain names: nothing
		// in the archive can reach outside the new directory.
		if !known[h.Name] || h.Typeflag != tar.TypeReg || h.Size < 0 || h.Size > maxBackupFile {
			return fmt.Errorf("restore: %s holds %q, which no backup writes", *from, h.Name)
		}
		out, err := os.OpenFile(filepath.Join(*dir, h.Name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		if _, err := io.CopyN(out, tr, h.Size); err != nil {
			_ = out.Close()
			return fmt.Errorf("restore %s: %w", h.Name, err)
		}
		if err := out.Close(); err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		names = append(names, h.Name)
	}
	fmt.Fprintf(stdout, "restore: %s restored into %s (%s); check it with payledger verify --data %s and payledger rebuild --data %s\n",
		*from, *dir, strings.Join(names, ", "), *dir, *dir)
	return nil
}
