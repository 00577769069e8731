package main

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/payledger/payledger/ledger/personaldata"
)

// personalDataFile is the data keys' store inside the data directory.
const personalDataFile = "personaldata.db"

// masterKeyEnv holds the master key itself (base64), for deployments that
// inject secrets as environment variables; --master-key names a file.
const masterKeyEnv = "PAYLEDGER_MASTER_KEY"

// defaultMasterKeyPath is where serve keeps a master key it generated:
// beside the data directory, not in it, so that a copy of the directory
// (a backup) does not carry the key that opens its personal data.
func defaultMasterKeyPath(dataDir string) string {
	// Absolute first: "." would give "..master.key", inside the directory.
	if abs, err := filepath.Abs(dataDir); err == nil {
		dataDir = abs
	}
	return filepath.Clean(dataDir) + ".master.key"
}

// masterKey returns the master key that wraps the data keys: from
// $PAYLEDGER_MASTER_KEY, from the --master-key file, or, for a data
// directory with no data keys yet and neither given, from a file it
// generates beside the directory (with a warning to move it). A key file
// readable by others or inside the data directory is refused, and so is a
// data directory whose keys exist while no master key is given.
func (c *Config) masterKey() ([]byte, error) {
	if c.MasterKeyB64 != "" && c.MasterKey != "" {
		return nil, fmt.Errorf("give the master key either in $%s or with --master-key, not both", masterKeyEnv)
	}
	if c.MasterKeyB64 != "" {
		k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(c.MasterKeyB64))
		if err != nil || len(k) != personaldata.KeySize {
			return nil, fmt.Errorf("$%s must be %d bytes in base64 (payledger keys master-key --out FILE makes one)", masterKeyEnv, personaldata.KeySize)
		}
		return k, nil
	}
	path := c.MasterKey
	if path == "" {
		path = defaultMasterKeyPath(c.DataDir)
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			if _, err := os.Stat(filepath.Join(c.DataDir, personalDataFile)); err == nil {
				return nil, fmt.Errorf("%s holds data keys, but no master key is given: pass --master-key FILE (or $%s) with the key they were made under",
					filepath.Join(c.DataDir, personalDataFile), masterKeyEnv)
			}
			if err := writeMasterKey(path, c.Rand); err != nil {
				return nil, err
			}
			c.Log.Warn("generated the master key of personal data beside the data directory; keep it apart from the directory's backups (a secret store, or --master-key FILE) and back it up: without it no personal data can be read",
				slog.String("path", path))
		}
	}
	return loadMasterKey(path, c.DataDir)
}

// loadMasterKey reads a master key file: one line of base64, mode 0600,
// outside the data directory.
func loadMasterKey(path, dataDir string) ([]byte, error) {
	absKey, err1 := realPath(path)
	absData, err2 := realPath(dataDir)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	if rel, err := filepath.Rel(absData, absKey); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return nil, fmt.Errorf("master key %s is inside the data directory %s: keep it apart from the data it protects", path, dataDir)
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("master key %s is readable by others (mode %04o): chmod 600 it, and consider it leaked", path, st.Mode().Perm())
	}
	if st.Size() > 1024 {
		return nil, fmt.Errorf("master key %s is not a key file", path)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil || len(k) != personaldata.KeySize {
		return nil, fmt.Errorf("master key %s must hold %d bytes in base64", path, personaldata.KeySize)
	}
	return k, nil
}

// realPath is path made absolute with its symbolic links resolved (as far
// as it exists), so that no link hides a key inside the data directory.
func realPath(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		return r, nil
	}
	return abs, nil
}

// writeMasterKey makes a new master key file at path (mode 0600); it never
// replaces one.
func writeMasterKey(path string, rnd io.Reader) error {
	k := make([]byte, personaldata.KeySize)
	if _, err := io.ReadFull(rnd, k); err != nil {
		return fmt.Errorf("generate the master key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create the master key: %w", err)
	}
	_, err = f.WriteString(base64.StdEncoding.EncodeToString(k) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write the master key %s: %w", path, err)
	}
	return nil
}

// openPersonalData opens the data keys' store of the data directory under
// the configured master key.
func (m *Main) openPersonalData() error {
	c := &m.Config
	master, err := c.masterKey()
	if err != nil {
		return err
	}
	if m.PersonalData, err = personaldata.Open(filepath.Join(c.DataDir, personalDataFile), master, c.Clock, c.Rand); err != nil {
		return fmt.Errorf("open the data keys: %w", err)
	}
	return nil
}
