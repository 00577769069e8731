package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"github.com/payledger/payledger/eventstore"
	"github.com/payledger/payledger/eventstore/postgres"
	"github.com/payledger/payledger/eventstore/sqlite"
	"github.com/payledger/payledger/reserves"
)

// storeSpec is where the event log lives, from --store: the embedded
// SQLite file (the default, events.db in the data directory, or
// sqlite:PATH) or a PostgreSQL database (postgres://...).
type storeSpec struct {
	sqlitePath  string // set for the embedded store
	postgresDSN string // set for PostgreSQL
}

// parseStore reads a --store value; empty means the data directory's
// events.db.
func parseStore(v, dataDir string) (storeSpec, error) {
	switch {
	case v == "":
		return storeSpec{sqlitePath: filepath.Join(dataDir, "events.db")}, nil
	case strings.HasPrefix(v, "sqlite:"):
		path := strings.TrimPrefix(v, "sqlite:")
		if path == "" {
			return storeSpec{}, errors.New("--store sqlite:PATH needs the path of the log's file")
		}
		return storeSpec{sqlitePath: path}, nil
	case strings.HasPrefix(v, "postgres://"), strings.HasPrefix(v, "postgresql://"):
		return storeSpec{postgresDSN: v}, nil
	}
	return storeSpec{}, fmt.Errorf("--store %q: want sqlite:PATH or a postgres:// URL", redactStore(v))
}

// redactStore hides a password in a store URL for messages.
func redactStore(v string) string {
	if at := strings.LastIndex(v, "@"); at >= 0 {
		if scheme := strings.Index(v, "://"); scheme >= 0 && scheme < at {
			return v[:scheme+3] + "…" + v[at:]
		}
	}
	return v
}

// String names the store for messages, without a password.
func (s storeSpec) String() string {
	if s.postgresDSN != "" {
		return redactStore(s.postgresDSN)
	}
	return "sqlite:" + s.sqlitePath
}

// openLog opens the event log the Config names.
func (m *Main) openLog(ctx context.Context) (eventstore.Store, error) {
	c := &m.Config
	spec, err := parseStore(c.Store, c.DataDir)
	if err != nil {
		return nil, err
	}
	if spec.postgresDSN != "" {
		opts := c.PostgresOpts
		if reflect.ValueOf(opts).IsZero() { // Options holds a func, so == cannot tell
			opts = postgres.DefaultOptions()
		}
		hist := m.syncHistogram()
		opts.ObserveSync = func(d time.Duration) { hist.Observe(d.Seconds()) }
		// The Service's caches assume that no other process appends
		// (SoleWriter), so this process takes the writer's lease, unless
		// it shares the log with other processes that know of each other.
		opts.Exclusive, opts.Shared = !c.SharedLog, c.SharedLog
		st, err := postgres.Open(ctx, spec.postgresDSN, opts)
		if errors.Is(err, postgres.ErrLocked) && c.SharedLog {
			return nil, fmt.Errorf("open the event log: %w: a payledger process serves it alone (serve without --shared-log, close or rebuild)", err)
		}
		if errors.Is(err, postgres.ErrLocked) {
			return nil, fmt.Errorf("open the event log: %w: another payledger process serves it; start every process with --shared-log to serve it from several", err)
		}
		if err != nil {
			return nil, fmt.Errorf("open the event log: %w", err)
		}
		return st, nil
	}
	if c.SharedLog {
		return nil, errors.New("--shared-log needs a postgres:// --store: the embedded SQLite log has one writing process")
	}
	opts := m.storeOptions()
	stopProgress := func() {}
	if c.Progress != nil && opts.MigrateProgress == nil {
		opts.MigrateProgress, stopProgress = progressReporter(c.Progress, "migrate the event log: events packed")
	}
	st, err := sqlite.Open(spec.sqlitePath, opts)
	stopProgress()
	if err != nil {
		return nil, lockedHint(err)
	}
	return st, nil
}

// storeFlagUsage is the help text of --store for the commands that take it.
const storeFlagUsage = "the event log: postgres://... or sqlite:PATH (env PAYLEDGER_STORE); default events.db in --data"

// addStoreFlag registers --store, which falls back to PAYLEDGER_STORE.
func addStoreFlag(fs *flag.FlagSet) *string {
	return fs.String("store", os.Getenv("PAYLEDGER_STORE"), storeFlagUsage)
}

// logForReading is the event log as the commands that only read it see it.
type logForReading interface {
	reserves.LogReader
	Close() error
}

// openReadLog opens the log that --store names (store; empty: dataDir's
// events.db) for reading only: the SQLite file through its reader, which
// takes no lock, or PostgreSQL through a store that neither takes the
// writer's lease nor migrates. Both run beside a serving process. It
// returns the spec too, whose String names the log in messages.
func openReadLog(ctx context.Context, store, dataDir string) (logForReading, storeSpec, error) {
	spec, err := parseStore(store, dataDir)
	if err != nil {
		return nil, spec, err
	}
	if spec.postgresDSN != "" {
		st, err := postgres.Open(ctx, spec.postgresDSN, postgres.DefaultOptions())
		if err != nil {
			return nil, spec, err
		}
		return st, spec, nil
	}
	r, err := sqlite.OpenReader(spec.sqlitePath)
	if err != nil {
		return nil, spec, err
	}
	return r, spec, nil
}

// openRebuildLog opens the log that --store names as a writer's store,
// which refuses to open while a server holds the log: rebuild replaces
// the read models that server answers from. The SQLite file must exist (a
// typo in the path must not create an empty log and rebuild from it).
func openRebuildLog(ctx context.Context, store, dataDir string, stderr io.Writer) (eventstore.Store, error) {
	spec, err := parseStore(store, dataDir)
	if err != nil {
		return nil, err
	}
	if spec.postgresDSN != "" {
		opts := postgres.DefaultOptions()
		opts.Exclusive = true
		st, err := postgres.Open(ctx, spec.postgresDSN, opts)
		if errors.Is(err, postgres.ErrLocked) {
			return nil, fmt.Errorf("%w: stop the server that serves this log first", err)
		}
		if err != nil {
			return nil, err
		}
		return st, nil
	}
	if _, err := os.Stat(spec.sqlitePath); err != nil {
		return nil, fmt.Errorf("no event store at %s: %w", spec.sqlitePath, err)
	}
	opts := sqlite.DefaultOptions()
	var stop func()
	opts.MigrateProgress, stop = progressReporter(stderr, "migrate the event log: events packed")
	st, err := sqlite.Open(spec.sqlitePath, opts)
	stop()
	if err != nil {
		return nil, lockedHint(err)
	}
	return st, nil
}

// logStats are the writer counters every adapter keeps.
type logStats struct {
	Transactions, Appends, Events int64
}

// storeStats reads the log's writer counters.
func storeStats(st eventstore.Store) logStats {
	switch st := st.(type) {
	case *sqlite.Store:
		s := st.Stats()
		return logStats{Transactions: s.Transactions, Appends: s.Appends, Events: s.Events}
	case *postgres.Store:
		s := st.Stats()
		return logStats{Transactions: s.Transactions, Appends: s.Appends, Events: s.Events}
	}
	return logStats{}
}

// cmdMigrate applies the event log's schema: PostgreSQL's embedded
// migrations, or the embedded store's conversion of an older file (which
// opening it does).
func cmdMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	store := fs.String("store", os.Getenv("PAYLEDGER_STORE"), "the event log: postgres://... or sqlite:PATH (default: PAYLEDGER_STORE)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("migrate: unexpected arguments %q", fs.Args())
	}
	if *store == "" {
		return errors.New("migrate: give --store postgres://... or sqlite:PATH (or set PAYLEDGER_STORE)")
	}
	spec, err := parseStore(*store, "")
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if spec.sqlitePath != "" {
		opts := sqlite.DefaultOptions()
		var stop func()
		opts.MigrateProgress, stop = progressReporter(stderr, "migrate the event log: events packed")
		st, err := sqlite.Open(spec.sqlitePath, opts)
		stop()
		if err != nil {
			return fmt.Errorf("migrate: %w", lockedHint(err))
		}
		if err := st.Close(); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		fmt.Fprintf(stdout, "migrate: %s is at the current schema\n", spec)
		return nil
	}
	applied, err := postgres.Migrate(ctx, spec.postgresDSN, postgres.Options{})
	if err != nil {
		return fmt.Errorf("migrate %s: %w", spec, err)
	}
	if len(applied) == 0 {
		fmt.Fprintf(stdout, "migrate: %s is at schema version %d; nothing to apply\n", spec, postgres.SchemaVersion())
		return nil
	}
	fmt.Fprintf(stdout, "migrate: %s: applied %v; now at schema version %d\n", spec, applied, postgres.SchemaVersion())
	return nil
}
