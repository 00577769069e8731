package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/payledger/payledger/internal/pgmigrate"
)

// migrations holds the schema, one file per version (NNNN_name.sql),
// applied in order and recorded in schema_migrations.
//
//go:embed migrations/*.sql
var migrations embed.FS

// loadMigrations returns the embedded migrations in version order.
func loadMigrations() ([]pgmigrate.Migration, error) {
	return pgmigrate.Load(migrations, "migrations")
}

// SchemaVersion is the schema version this build writes and reads: the
// last embedded migration.
func SchemaVersion() int {
	ms, err := loadMigrations()
	if err != nil || len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].Version
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
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return fmt.Errorf("migration %d (%s): %w", m.Version, m.Name, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.Version, m.Name); err != nil {
				return err
			}
			applied = append(applied, m.Version)
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
