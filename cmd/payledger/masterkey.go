package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

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

// openPersonalData opens the data keys' store under the configured master
// key: the data directory's personaldata.db, or, with a PostgreSQL log,
// the key store in the same database, which every server of that log
// shares (after importing a personaldata.db the data directory still has).
func (m *Main) openPersonalData(ctx context.Context) error {
	c := &m.Config
	dsn, logSchema, err := dataKeysDSN(c.Store, c.DataKeys, c.DataDir, c.PostgresOpts.Schema)
	if err != nil {
		return err
	}
	if dsn != "" && c.MasterKey == "" && c.MasterKeyB64 == "" {
		// masterKey would make a key beside this data directory, which
		// cannot open keys other servers of the log made.
		schema := personalDataSchema(dsn, logSchema)
		if _, err := os.Stat(defaultMasterKeyPath(c.DataDir)); errors.Is(err, os.ErrNotExist) {
			exists, err := personaldata.PostgresExists(ctx, dsn, schema)
			if err != nil {
				return fmt.Errorf("open the data keys: %w", err)
			}
			if exists {
				return fmt.Errorf("the data keys in PostgreSQL schema %s exist, but no master key is given: pass --master-key FILE (or $%s) with the key every server of this log uses",
					schema, masterKeyEnv)
			}
		}
	}
	master, err := c.masterKey()
	if err != nil {
		return err
	}
	if dsn != "" {
		m.PersonalData, err = openPostgresKeys(ctx, dsn, logSchema, c.DataDir, master, false, c.Clock, c.Rand, c.Log)
		return err
	}
	if m.PersonalData, err = personaldata.Open(filepath.Join(c.DataDir, personalDataFile), master, c.Clock, c.Rand); err != nil {
		return fmt.Errorf("open the data keys: %w", err)
	}
	return nil
}

// dataKeysDSN is the PostgreSQL database of the data keys, "" for the
// data directory's personaldata.db: --data-keys when given (a log on
// KurrentDB or SQLite served by several processes, or kept apart),
// else the log's own database when the log is on PostgreSQL. logSchema
// is what personalDataSchema names the keys' schema after.
func dataKeysDSN(store, dataKeys, dataDir, storeSchema string) (dsn, logSchema string, err error) {
	if dataKeys != "" {
		if !strings.HasPrefix(dataKeys, "postgres://") && !strings.HasPrefix(dataKeys, "postgresql://") {
			return "", "", fmt.Errorf("--data-keys %q: want a postgres:// URL", redactStore(dataKeys))
		}
		return dataKeys, "", nil
	}
	spec, err := parseStore(store, dataDir)
	if err != nil {
		return "", "", err
	}
	return spec.postgresDSN, storeSchema, nil
}

// dataKeysFlagUsage is the help text of --data-keys.
const dataKeysFlagUsage = "keep the customers' data keys in this PostgreSQL database (postgres://...; schema <search_path>_personaldata) instead of the data directory; every process serving one log needs the same (env PAYLEDGER_DATA_KEYS); default: the log's database when --store is postgres://"

// personalDataSchema is the PostgreSQL schema of the data keys beside a log
// in logSchema (PostgresOpts.Schema, else the DSN's search_path):
// "<log schema>_personaldata", so that two ledgers in one database keep
// their keys apart, and personaldata.DefaultSchema for a log in the
// default schema.
func personalDataSchema(dsn, logSchema string) string {
	if logSchema == "" {
		if cfg, err := pgx.ParseConfig(dsn); err == nil {
			first, _, _ := strings.Cut(cfg.RuntimeParams["search_path"], ",")
			logSchema = strings.Trim(strings.TrimSpace(first), `"`)
		}
	}
	if logSchema == "" || logSchema == "public" || logSchema == "$user" {
		return personaldata.DefaultSchema
	}
	return logSchema + "_personaldata"
}

// openPostgresKeys opens the key store in the log's PostgreSQL database
// (exclusive: for a rotation of the master key) and imports into it the
// data directory's personaldata.db, when there is one, in one
// transaction, leaving the file renamed: a deployment that moved its log
// to PostgreSQL keeps every key it made before. A failed import changes
// nothing and fails the open.
func openPostgresKeys(ctx context.Context, dsn, logSchema, dataDir string, master []byte, exclusive bool,
	clock func() time.Time, rnd io.Reader, log *slog.Logger) (*personaldata.Store, error) {
	schema := personalDataSchema(dsn, logSchema)
	st, err := personaldata.OpenPostgres(ctx, dsn, personaldata.PostgresOptions{Schema: schema, Exclusive: exclusive}, master, clock, rnd)
	if errors.Is(err, personaldata.ErrWrongMasterKey) {
		return nil, fmt.Errorf("open the data keys: %w: every server of one PostgreSQL log needs the same master key (--master-key FILE or $%s)", err, masterKeyEnv)
	}
	if err != nil {
		return nil, fmt.Errorf("open the data keys: %w", err)
	}
	local := filepath.Join(dataDir, personalDataFile)
	if _, err := os.Stat(local); errors.Is(err, os.ErrNotExist) {
		return st, nil
	} else if err != nil {
		return nil, errors.Join(fmt.Errorf("open the data keys: %w", err), st.Close())
	}
	if err := importLocalKeys(st, local, master, clock, rnd, log); err != nil {
		return nil, errors.Join(err, st.Close())
	}
	return st, nil
}

// importLocalKeys imports the file at local into st and renames it.
func importLocalKeys(st *personaldata.Store, local string, master []byte, clock func() time.Time, rnd io.Reader, log *slog.Logger) error {
	src, err := personaldata.Open(local, master, clock, rnd)
	if err != nil {
		return fmt.Errorf("import the data keys of %s into PostgreSQL: %w", local, err)
	}
	res, err := st.Import(src)
	if cerr := src.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("import the data keys of %s into PostgreSQL (nothing was imported; the file is unchanged): %w", local, err)
	}
	renamed := local + ".imported-" + clock().UTC().Format("20060102T150405Z")
	if err := os.Rename(local, renamed); err != nil {
		return fmt.Errorf("the data keys of %s are imported into PostgreSQL, but the file could not be renamed (rename it before the next start): %w", local, err)
	}
	if log != nil {
		log.Warn("imported the data keys of the data directory into the PostgreSQL key store; the file is renamed. It still holds the keys as they were, like a backup: an erasure from now on does not reach it, so destroy it once the servers run on PostgreSQL",
			slog.String("file", renamed), slog.Int("keys", res.Keys), slog.Int("erasures", res.Erased),
			slog.Int("already_there", res.Known), slog.Int("pending_erasures", res.Pending))
	}
	return nil
}
