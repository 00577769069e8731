package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/payledger/payledger/checkpoints"
	"github.com/payledger/payledger/ledger/personaldata"
	"github.com/payledger/payledger/ledger/staffkeys"
)

const keysUsage = `usage:
  payledger keys create --role ROLE [--label TEXT] [--data ./data]   make a key and print its token once
  payledger keys list   [--data ./data]                              show every key (never tokens)
  payledger keys revoke [--data ./data] ID                           stop a key from authenticating
  payledger keys signing-key --out FILE                              make the key that signs checkpoints of the log
                                                                     (keep it apart from the data directory) and
                                                                     print its public key, also written to FILE.pub
  payledger keys master-key --out FILE                               make the key that wraps the customers' data keys
                                                                     (give it to serve with --master-key; keep it
                                                                     apart from the data directory and its backups)
  payledger keys rotate-master-key --new FILE [--master-key FILE] [--data ./data] [--store postgres://...]
                                                                     wrap every data key with a new master key
                                                                     (stop every server first); with a PostgreSQL
                                                                     log, the keys in its database
roles: %s
`

// staffKeysFile is the key database's name inside the data directory.
const staffKeysFile = "staffkeys.db"

// cmdKeys manages staff API keys in DIR/staffkeys.db, which the running
// server reads too, so a change takes effect on the server's next request.
func cmdKeys(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		printKeysUsage(stderr)
		return errors.New("keys needs a subcommand: create, list, revoke, signing-key, master-key or rotate-master-key")
	}
	switch args[0] {
	case "create":
		return cmdKeysCreate(ctx, args[1:], stdout, stderr)
	case "list":
		return cmdKeysList(ctx, args[1:], stdout, stderr)
	case "revoke":
		return cmdKeysRevoke(ctx, args[1:], stdout, stderr)
	case "signing-key":
		return cmdKeysSigning(args[1:], stdout, stderr)
	case "master-key":
		return cmdKeysMaster(args[1:], stdout, stderr)
	case "rotate-master-key":
		return cmdKeysRotateMaster(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		printKeysUsage(stdout)
		return nil
	}
	printKeysUsage(stderr)
	return fmt.Errorf("unknown keys subcommand %q: use create, list, revoke, signing-key, master-key or rotate-master-key", args[0])
}

func printKeysUsage(w io.Writer) {
	fmt.Fprintf(w, keysUsage, roleNames())
}

func roleNames() string {
	names := make([]string, 0, len(staffkeys.Roles()))
	for _, r := range staffkeys.Roles() {
		names = append(names, string(r))
	}
	return strings.Join(names, ", ")
}

func keysFlags(name string, stderr io.Writer) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("keys "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("data", "./data", "data directory holding "+staffKeysFile)
	return fs, dir
}

func openKeys(dir string) (*staffkeys.Store, error) {
	return staffkeys.Open(filepath.Join(dir, staffKeysFile), time.Now, rand.Reader)
}

// openExistingKeys opens the key database for list and revoke, which must
// not create an empty one when the data directory is mistyped.
func openExistingKeys(dir string) (*staffkeys.Store, error) {
	path := filepath.Join(dir, staffKeysFile)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no staff key store at %s: check --data, or make the first key with `payledger keys create --role ROLE --data %s`", path, dir)
	} else if err != nil {
		return nil, fmt.Errorf("staff key store %s: %w", path, err)
	}
	return openKeys(dir)
}

// closeKeys closes the store and keeps the first error, so a failed close
// is reported rather than silently dropped.
func closeKeys(s *staffkeys.Store, err *error) {
	if cerr := s.Close(); cerr != nil && *err == nil {
		*err = cerr
	}
}

func cmdKeysCreate(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	fs, dir := keysFlags("create", stderr)
	roleFlag := fs.String("role", "", "the key's role: "+roleNames())
	label := fs.String("label", "", fmt.Sprintf("who or what the key is for (at most %d characters)", staffkeys.MaxLabelRunes))
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("keys create: unexpected argument %q; put text in --label", fs.Arg(0))
	}
	if *roleFlag == "" {
		return fmt.Errorf("keys create needs --role, one of %s", roleNames())
	}
	role, err := staffkeys.ParseRole(*roleFlag)
	if err != nil {
		return fmt.Errorf("keys create: %w", err)
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return fmt.Errorf("keys create: data directory: %w", err)
	}
	store, err := openKeys(*dir)
	if err != nil {
		return err
	}
	defer closeKeys(store, &err)
	token, k, err := store.Create(ctx, role, *label)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "created key %s with role %s", k.ID, k.Role)
	if k.Label != "" {
		fmt.Fprintf(stdout, " (%s)", k.Label)
	}
	fmt.Fprintln(stdout)
	fmt.Fprintln(stdout, "token, shown only this once (it is not stored and cannot be recovered); put it in a secret manager now:")
	fmt.Fprintln(stdout, token)
	return nil
}

func cmdKeysList(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	fs, dir := keysFlags("list", stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("keys list: unexpected argument %q", fs.Arg(0))
	}
	store, err := openExistingKeys(*dir)
	if err != nil {
		return err
	}
	defer closeKeys(store, &err)
	keys, err := store.List(ctx)
	if err != nil {
		return err
	}
	if len(keys) == 0 {
		fmt.Fprintln(stdout, "no staff keys yet; make one with `payledger keys create --role ROLE`")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tROLE\tLABEL\tCREATED\tLAST USED\tUSES\tSTATUS")
	for _, k := range keys {
		status := "active"
		if !k.Active() {
			status = "revoked at " + stamp(k.RevokedAt)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n",
			k.ID, k.Role, orDash(k.Label), stamp(k.CreatedAt), stamp(k.LastUsedAt), k.Uses, status)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("keys list: write: %w", err)
	}
	return nil
}

// stamp formats a time for the key table, "never" for the zero time.
func stamp(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func cmdKeysRevoke(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	fs, dir := keysFlags("revoke", stderr)
	var id string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		id, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	rest := fs.Args()
	if id == "" && len(rest) > 0 {
		id, rest = rest[0], rest[1:]
	}
	if id == "" {
		return errors.New("keys revoke needs the key's ID (key_...); `payledger keys list` shows them")
	}
	if len(rest) > 0 {
		return fmt.Errorf("keys revoke: unexpected argument %q; revoke one key at a time", rest[0])
	}
	store, err := openExistingKeys(*dir)
	if err != nil {
		return err
	}
	defer closeKeys(store, &err)
	k, err := store.Revoke(ctx, id)
	if errors.Is(err, staffkeys.ErrNotFound) {
		return fmt.Errorf("keys revoke: no key %q in %s; `payledger keys list` shows the IDs", id, filepath.Join(*dir, staffKeysFile))
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "key %s (role %s) is revoked since %s; its token no longer authenticates\n", k.ID, k.Role, stamp(k.RevokedAt))
	return nil
}

// cmdKeysSigning makes the Ed25519 key that signs checkpoints of the log.
func cmdKeysSigning(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("keys signing-key", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "file for the private key (mode 0600, never inside the data directory)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("keys signing-key needs --out FILE")
	}
	pub, err := checkpoints.CreateKey(*out, rand.Reader)
	if err != nil {
		return err
	}
	line := checkpoints.EncodePublicKey(pub)
	if err := os.WriteFile(*out+".pub", []byte(line+"\n"), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "signing key written to %s; its public key (also in %s.pub, give it to whoever checks the log):\n%s\n", *out, *out, line)
	return nil
}

// cmdKeysMaster makes the master key that wraps the customers' data keys
// (R20).
func cmdKeysMaster(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("keys master-key", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "file for the master key (mode 0600, never inside the data directory)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("keys master-key needs --out FILE")
	}
	if err := writeMasterKey(*out, rand.Reader); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "master key written to %s; give it to serve with --master-key %s, and back it up apart from the data directory: without it no personal data can be read\n", *out, *out)
	return nil
}

// cmdKeysRotateMaster wraps every data key of a stopped server's data
// directory, or of a PostgreSQL log's database that no server has open,
// with a new master key, in one transaction.
func cmdKeysRotateMaster(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("keys rotate-master-key", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := Config{Rand: rand.Reader, Log: slog.New(slog.NewTextHandler(stderr, nil))}
	fs.StringVar(&c.DataDir, "data", "./data", "data directory")
	fs.StringVar(&c.MasterKey, "master-key", os.Getenv("PAYLEDGER_MASTER_KEY_FILE"),
		"file of the current master key (default: $"+masterKeyEnv+", else DATA.master.key)")
	newPath := fs.String("new", "", "file of the new master key (payledger keys master-key --out FILE makes one)")
	store := addStoreFlag(fs)
	dataKeys := fs.String("data-keys", os.Getenv("PAYLEDGER_DATA_KEYS"), dataKeysFlagUsage)
	if err := fs.Parse(args); err != nil {
		return err
	}
	c.MasterKeyB64 = os.Getenv(masterKeyEnv)
	if *newPath == "" {
		return errors.New("keys rotate-master-key needs --new FILE")
	}
	dsn, logSchema, err := dataKeysDSN(*store, *dataKeys, c.DataDir, "")
	if err != nil {
		return fmt.Errorf("keys rotate-master-key: %w", err)
	}
	path := filepath.Join(c.DataDir, personalDataFile)
	if _, err := os.Stat(path); err != nil && dsn == "" {
		return fmt.Errorf("keys rotate-master-key: no data keys in %s: %w", c.DataDir, err)
	}
	if dsn != "" && c.MasterKey == "" && c.MasterKeyB64 == "" {
		// masterKey would make a new key when the default file is missing.
		if _, err := os.Stat(defaultMasterKeyPath(c.DataDir)); err != nil {
			return fmt.Errorf("keys rotate-master-key: give the current master key with --master-key FILE or $%s: %w", masterKeyEnv, err)
		}
	}
	old, err := c.masterKey()
	if err != nil {
		return err
	}
	next, err := loadMasterKey(*newPath, c.DataDir)
	if err != nil {
		return err
	}
	if bytes.Equal(old, next) {
		return errors.New("keys rotate-master-key: the new master key is the current one")
	}
	var st *personaldata.Store
	where := c.DataDir
	if dsn != "" {
		// Exclusive: refused while any server has the keys open, since it
		// would go on with the old master key.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		st, err = openPostgresKeys(ctx, dsn, logSchema, c.DataDir, old, true, time.Now, rand.Reader, c.Log)
		cancel()
		if errors.Is(err, personaldata.ErrLocked) {
			return fmt.Errorf("keys rotate-master-key: %w", err)
		}
		where = redactStore(dsn)
	} else {
		st, err = personaldata.Open(path, old, time.Now, rand.Reader)
	}
	if err != nil {
		return err
	}
	n, err := st.Rewrap(next)
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d data keys of %s are now wrapped by the master key in %s: serve with --master-key %s from now on, and destroy the old key;"+
		" copies from before (backups of the data directory or of the database, WAL archives) can then no longer be read\n", n, where, *newPath, *newPath)
	return nil
}
