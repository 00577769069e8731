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
	"github.com/payledger/payledger/eventstore/kurrent"
	"github.com/payledger/payledger/eventstore/postgres"
	"github.com/payledger/payledger/eventstore/sqlite"
	"github.com/payledger/payledger/internal/filelock"
	"github.com/payledger/payledger/reserves"
)

// storeSpec is where the event log lives, from --store: the embedded
// SQLite file (the default, events.db in the data directory, or
// sqlite:PATH), a PostgreSQL database (postgres://...) or a KurrentDB
// node or cluster (kurrentdb://, kurrentdb+discover:// or esdb://).
type storeSpec struct {
	sqlitePath  string // set for the embedded store
	postgresDSN string // set for PostgreSQL
	kurrentURL  string // set for KurrentDB
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
	case kurrent.IsURL(v):
		// Read now, so that a malformed URL is refused before anything
		// is opened; its message never holds the password.
		if _, _, err := kurrent.ParseURL(v); err != nil {
			return storeSpec{}, fmt.Errorf("--store: %w", err)
		}
		return storeSpec{kurrentURL: v}, nil
	}
	return storeSpec{}, fmt.Errorf("--store %q: want sqlite:PATH, a postgres:// URL or a kurrentdb:// URL", redactStore(v))
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
	if s.kurrentURL != "" {
		return kurrent.Redact(s.kurrentURL)
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
	if spec.kurrentURL != "" {
		// KurrentDB has no writer's lease: every process that opens the
		// log may append, so Open runs the Service as one writer among
		// several (SoleWriter false), with or without --shared-log.
		st, err := kurrent.Open(ctx, spec.kurrentURL, c.KurrentOpts)
		if err != nil {
			return nil, fmt.Errorf("open the event log: %w", err)
		}
		return st, nil
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
		return nil, errors.New("--shared-log needs a postgres:// or kurrentdb:// --store: the embedded SQLite log has one writing process")
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

// soleWriter is ledger.Config.SoleWriter for a Service on st: false when
// the log is shared with other processes (--shared-log on PostgreSQL) and
// always on KurrentDB, which has no writer's lease, so that any process
// may append to the log at any time.
func soleWriter(sharedLog bool, st eventstore.Store) bool {
	_, onKurrent := st.(*kurrent.Store)
	return !sharedLog && !onKurrent
}

// storeFlagUsage is the help text of --store for the commands that take it.
const storeFlagUsage = "the event log: postgres://..., kurrentdb://... or sqlite:PATH (env PAYLEDGER_STORE); default events.db in --data"

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
// takes no lock, PostgreSQL through a store that neither takes the
// writer's lease nor migrates, or KurrentDB through a store that appends
// nothing (its Open only completes the index of the log's last append,
// which any writer would). All run beside a serving process. It returns
// the spec too, whose String names the log in messages.
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
	if spec.kurrentURL != "" {
		st, err := kurrent.Open(ctx, spec.kurrentURL, kurrent.Options{})
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
// KurrentDB has no lease to refuse with, and every server of its log has
// read models of its own: rebuild holds the lock a server of the data
// directory holds on its data keys (personaldata.db.lock), so that it
// refuses to run beside that server and that server does not start
// while it runs.
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
	if spec.kurrentURL != "" {
		// No server uses a data directory that does not exist (read
		// models elsewhere, --read-models postgres://).
		unlock := func() error { return nil }
		if _, err := os.Stat(dataDir); err == nil {
			unlock, err = filelock.Exclusive(filepath.Join(dataDir, personalDataFile))
			if errors.Is(err, filelock.ErrHeld) {
				return nil, fmt.Errorf("%w: a server uses the data directory %s; stop it first", err, dataDir)
			}
			if err != nil {
				return nil, err
			}
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("data directory: %w", err)
		}
		st, err := kurrent.Open(ctx, spec.kurrentURL, kurrent.Options{})
		if err != nil {
			return nil, errors.Join(err, unlock())
		}
		return lockedLog{st, unlock}, nil
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

// lockedLog is a log opened under a file lock, released by Close.
type lockedLog struct {
	eventstore.Store
	unlock func() error
}

// Close closes the log, then releases the lock.
func (l lockedLog) Close() error {
	return errors.Join(l.Store.Close(), l.unlock())
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
	case *kurrent.Store:
		// Each append is one write to the log stream, its transaction.
		s := st.Stats()
		return logStats{Transactions: s.Appends, Appends: s.Appends, Events: s.Events}
	}
	return logStats{}
}

// cmdMigrate applies the event log's schema: PostgreSQL's embedded
// migrations, or the embedded store's conversion of an older file (which
// opening it does). The KurrentDB adapter writes plain streams and needs
// no schema: migrate only opens the log, so that it fails when the server
// cannot be reached (a deployment's readiness check), and says so.
func cmdMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	store := fs.String("store", os.Getenv("PAYLEDGER_STORE"), "the event log: postgres://..., kurrentdb://... or sqlite:PATH (default: PAYLEDGER_STORE)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("migrate: unexpected arguments %q", fs.Args())
	}
	if *store == "" {
		return errors.New("migrate: give --store postgres://..., kurrentdb://... or sqlite:PATH (or set PAYLEDGER_STORE)")
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
	if spec.kurrentURL != "" {
		st, err := kurrent.Open(ctx, spec.kurrentURL, kurrent.Options{})
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		head, err := st.Head(ctx)
		if cerr := st.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("migrate %s: %w", spec, err)
		}
		fmt.Fprintf(stdout, "migrate: %s needs no schema (the KurrentDB adapter writes plain streams); nothing to apply; its log holds %d events\n", spec, head)
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
