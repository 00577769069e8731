package projections

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/payledger/payledger/internal/pgmigrate"
)

// DefaultPostgresSchema holds the read models when the URL names no
// search_path: a schema of their own, so they can share a database with
// the PostgreSQL event log.
const DefaultPostgresSchema = "payledger_readmodels"

// ErrLocked is returned by OpenPostgres when another process projects into
// the same schema: two projectors would each apply every event.
var ErrLocked = errors.New("projections: the read models are open in another process")

// connectTimeout bounds each connection attempt when the URL sets none.
const connectTimeout = 10 * time.Second

// pgMigrations holds the PostgreSQL schema, one file per version
// (NNNN_name.sql), applied in order and recorded in
// readmodels_migrations: a name of its own, so that the event log's
// schema_migrations can live in the same schema.
//
//go:embed pgschema/*.sql
var pgMigrations embed.FS

// loadPGMigrations returns the embedded migrations in version order.
func loadPGMigrations() ([]pgmigrate.Migration, error) {
	return pgmigrate.Load(pgMigrations, "pgschema")
}

// OpenURL opens the read models that spec names: a postgres:// (or
// postgresql://) URL, sqlite:PATH, or a plain path of a SQLite file.
func OpenURL(ctx context.Context, spec string) (*ReadModels, error) {
	switch {
	case strings.HasPrefix(spec, "postgres://"), strings.HasPrefix(spec, "postgresql://"):
		return OpenPostgres(ctx, spec, "")
	case strings.HasPrefix(spec, "sqlite:"):
		return Open(strings.TrimPrefix(spec, "sqlite:"))
	}
	return Open(spec)
}

// IsPostgresURL reports whether spec names PostgreSQL read models.
func IsPostgresURL(spec string) bool {
	return strings.HasPrefix(spec, "postgres://") || strings.HasPrefix(spec, "postgresql://")
}

// OpenPostgres opens (creating if needed) the read models in schema of the
// PostgreSQL database at dsn, takes the projector's lock (ErrLocked when
// another process holds it) and loads balances and checkpoint into memory.
// An empty schema means the URL's search_path, or DefaultPostgresSchema.
//
// The lock is a session advisory lock on the writer's only connection,
// held until Close; every write transaction takes it again (see fence).
func OpenPostgres(ctx context.Context, dsn, schema string) (*ReadModels, error) {
	cfg, schema, name, err := pgConfig(dsn, schema)
	if err != nil {
		return nil, err
	}
	d := postgresDialect{lockKey: "payledger/readmodels/" + schema}
	r := newReadModels(name, stdlib.OpenDB(*cfg), d)
	if err := r.initPostgres(ctx, schema); err != nil {
		_ = r.writeDB.Close()
		return nil, err
	}
	if err := r.stmts.prepare(r.writeDB, d); err != nil {
		_ = r.writeDB.Close()
		return nil, fmt.Errorf("projections: open %s: %w", name, err)
	}
	r.readDB = openPGReaders(cfg)
	if err := r.load(); err != nil {
		_ = r.Close()
		return nil, err
	}
	return r, nil
}

// OpenPostgresReader opens the read models in schema (as OpenPostgres
// names it) for reading only, beside the process that projects into them:
// it takes no lock and creates nothing, and CatchUp, Run and Rebuild
// refuse. Reconciliation uses it while the server runs.
func OpenPostgresReader(ctx context.Context, dsn, schema string) (*ReadModels, error) {
	cfg, schema, name, err := pgConfig(dsn, schema)
	if err != nil {
		return nil, err
	}
	ms, err := loadPGMigrations()
	if err != nil {
		return nil, fmt.Errorf("projections: open %s: %w", name, err)
	}
	r := newReadModels(name, nil, postgresDialect{lockKey: "payledger/readmodels/" + schema})
	r.readDB = openPGReaders(cfg)
	var cur int
	err = r.readDB.QueryRowContext(ctx, "SELECT coalesce(max(version), 0) FROM readmodels_migrations").Scan(&cur)
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "42P01": // undefined_table
		err = errors.New("no read models there: serve or rebuild with --read-models creates them")
	case err == nil && cur != len(ms):
		err = fmt.Errorf("schema version %d, this build reads %d", cur, len(ms))
	}
	if err != nil {
		_ = r.readDB.Close()
		return nil, fmt.Errorf("projections: open %s: %w", name, err)
	}
	if err := r.load(); err != nil {
		_ = r.Close()
		return nil, err
	}
	return r, nil
}

// pgConfig parses dsn and settles the schema: schema, else the URL's
// search_path, else DefaultPostgresSchema. name names both in messages,
// without the password.
func pgConfig(dsn, schema string) (cfg *pgx.ConnConfig, _ string, name string, err error) {
	cfg, err = pgx.ParseConfig(dsn)
	if err != nil {
		return nil, "", "", fmt.Errorf("projections: parse %s: %w", redactDSN(dsn), err)
	}
	if schema == "" {
		schema = cfg.RuntimeParams["search_path"]
	}
	if schema == "" {
		schema = DefaultPostgresSchema
	}
	if len(schema) > 63 || strings.ContainsAny(schema, ",\" \x00") {
		return nil, "", "", fmt.Errorf("projections: read-model schema %q: want one schema name of at most 63 bytes", schema)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = connectTimeout
	}
	cfg.RuntimeParams["search_path"] = pgx.Identifier{schema}.Sanitize()
	cfg.RuntimeParams["application_name"] = "payledger read models"
	return cfg, schema, fmt.Sprintf("%s (schema %s)", redactDSN(dsn), schema), nil
}

// openPGReaders opens the pool of read connections.
func openPGReaders(cfg *pgx.ConnConfig) *sql.DB {
	rcfg := cfg.Copy()
	// The readers cannot write, whatever a bug asks of them.
	rcfg.RuntimeParams["default_transaction_read_only"] = "on"
	rd := stdlib.OpenDB(*rcfg)
	rd.SetMaxOpenConns(maxReaders)
	rd.SetMaxIdleConns(maxReaders)
	return rd
}

// initPostgres creates the schema, takes the projector's lock, then
// applies the migrations this schema has not had yet in one transaction.
func (r *ReadModels) initPostgres(ctx context.Context, schema string) error {
	ms, err := loadPGMigrations()
	if err != nil {
		return fmt.Errorf("projections: open %s: %w", r.path, err)
	}
	if _, err := r.writeDB.ExecContext(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{schema}.Sanitize()); err != nil {
		return fmt.Errorf("projections: open %s: create schema: %w", r.path, err)
	}
	var ok bool
	key := r.dialect.(postgresDialect).lockKey
	if err := r.writeDB.QueryRowContext(ctx, "SELECT pg_try_advisory_lock(hashtextextended($1, 0))", key).Scan(&ok); err != nil {
		return fmt.Errorf("projections: open %s: take the projector's lock: %w", r.path, err)
	}
	if !ok {
		return fmt.Errorf("%w: %s: stop the other payledger process that projects into it", ErrLocked, r.path)
	}
	tx, err := r.writeDB.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("projections: open %s: begin schema: %w", r.path, err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS readmodels_migrations (
		version    integer     PRIMARY KEY,
		name       text        NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("projections: open %s: create readmodels_migrations: %w", r.path, err)
	}
	var cur int
	if err := tx.QueryRowContext(ctx, "SELECT coalesce(max(version), 0) FROM readmodels_migrations").Scan(&cur); err != nil {
		return fmt.Errorf("projections: open %s: read schema version: %w", r.path, err)
	}
	if cur > len(ms) {
		return fmt.Errorf("projections: open %s: schema version %d, this build knows only up to %d: drop the schema and rebuild from the log", r.path, cur, len(ms))
	}
	for _, m := range ms[cur:] {
		if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
			return fmt.Errorf("projections: open %s: migration %d (%s): %w", r.path, m.Version, m.Name, err)
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO readmodels_migrations (version, name) VALUES ($1, $2)", m.Version, m.Name); err != nil {
			return fmt.Errorf("projections: open %s: record migration %d: %w", r.path, m.Version, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("projections: open %s: commit schema: %w", r.path, err)
	}
	return nil
}

// redactDSN names a connection string for messages, without its password.
func redactDSN(dsn string) string {
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return "the PostgreSQL connection string"
	}
	return fmt.Sprintf("postgres://%s@%s:%d/%s", cfg.User, cfg.Host, cfg.Port, cfg.Database)
}
