package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// migrations holds the schema, one file per version (NNNN_name.sql),
// applied in order and recorded in schema_migrations.
//
//go:embed migrations/*.sql
var migrations embed.FS

// migration is one embedded schema step.
type migration struct {
	version int
	name    string
	sql     string
}

// loadMigrations returns the embedded migrations in version order; the
// versions must be 1, 2, 3, ... without gaps.
func loadMigrations() ([]migration, error) {
	files, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, f := range files {
		base := strings.TrimSuffix(strings.TrimPrefix(f, "migrations/"), ".sql")
		num, name, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v < 1 {
			return nil, fmt.Errorf("migration file %s: want NNNN_name.sql", f)
		}
		body, err := migrations.ReadFile(f)
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: name, sql: string(body)})
	}
	slices.SortFunc(out, func(a, b migration) int { return a.version - b.version })
	for i, m := range out {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration %d (%s): versions must run 1, 2, 3, ... without gaps", m.version, m.name)
		}
	}
	return out, nil
}

// SchemaVersion is the schema version this build writes and reads: the
// last embedded migration.
func SchemaVersion() int {
	ms, err := loadMigrations()
	if err != nil || len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].version
}

// Migrate applies to the database at dsn the embedded migrations it has not
// applied yet, all in one transaction under an advisory lock (so two
// processes migrating at once apply each step once), creating the schema
// opts.Schema names when it is missing. It returns the versions applied,
// none when the schema was current. A database at a later version than
// this build knows is refused.
func Migrate(ctx context.Context, dsn string, opts Options) ([]int, error) {
	ms, err := loadMigrations()
	if err != nil {
		return nil, err
	}
	cfg, err := connConfig(dsn, opts.Schema)
	if err != nil {
		return nil, err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("migrate: connect: %w", err)
	}
	defer conn.Close(context.Background())
	if opts.Schema != "" {
		if _, err := conn.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{opts.Schema}.Sanitize()); err != nil {
			return nil, fmt.Errorf("migrate: create schema %s: %w", opts.Schema, err)
		}
	}
	var applied []int
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('payledger/migrate/' || current_schema(), 0))`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    integer     PRIMARY KEY,
			name       text        NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
			return err
		}
		var cur int
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&cur); err != nil {
			return err
		}
		if cur > len(ms) {
			return fmt.Errorf("the database's schema is at version %d, this build knows only up to %d", cur, len(ms))
		}
		for _, m := range ms[cur:] {
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return fmt.Errorf("migration %d (%s): %w", m.version, m.name, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.version, m.name); err != nil {
				return err
			}
			applied = append(applied, m.version)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	return applied, nil
}

// checkSchema fails unless the database has every migration of this build
// and none beyond, telling the operator to run payledger migrate.
func checkSchema(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) error {
	want := SchemaVersion()
	var cur int
	err := q.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&cur)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" { // undefined_table
		return fmt.Errorf("the database has no payledger schema: run payledger migrate --store ... first")
	}
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	switch {
	case cur < want:
		return fmt.Errorf("the database's schema is at version %d, this build needs %d: run payledger migrate --store ... first", cur, want)
	case cur > want:
		return fmt.Errorf("the database's schema is at version %d, later than this build's %d", cur, want)
	}
	return nil
}
