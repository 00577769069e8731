package projections

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// dialect is what differs between the two backends of ReadModels. Every
// query is written once, with ? placeholders, and rebound for PostgreSQL,
// so both backends run the same queries and the same Digest.
type dialect interface {
	// rebind turns the ? placeholders of q into the backend's.
	rebind(q string) string
	// readTxOptions are those of a read transaction that must see one
	// state of every table it reads (storedBalances reads four).
	readTxOptions() *sql.TxOptions
	// insertEntriesVerb starts the multi-row insert of entries.
	insertEntriesVerb() string
	// resetStatements empty the read models, in Rebuild's transaction.
	resetStatements() []string
	// setWriteMode applies a writeMode to the writer's connection.
	setWriteMode(ctx context.Context, w *sql.DB, m writeMode) error
	// fence runs first in every write transaction and fails it when this
	// process is no longer the read models' only projector.
	fence(ctx context.Context, tx *sql.Tx) error
	// release gives up the projector's lock before Close closes w.
	release(w *sql.DB) error
}

// sqliteDialect is the embedded backend: one file, whose single writer
// the file's write lock already enforces.
type sqliteDialect struct{}

func (sqliteDialect) rebind(q string) string { return q }

// readTxOptions: a SQLite transaction reads one snapshot of the WAL
// already, and the driver accepts only the default options.
func (sqliteDialect) readTxOptions() *sql.TxOptions { return nil }

// insertEntriesVerb: OR ROLLBACK, since a duplicate key can only be a bug
// (the checkpoint already filters redelivery) and must fail the whole
// batch anyway; unlike the default ABORT it also spares SQLite a statement
// journal for every multi-row statement.
func (sqliteDialect) insertEntriesVerb() string { return "INSERT OR ROLLBACK" }

func (sqliteDialect) resetStatements() []string {
	return []string{
		"DELETE FROM entries",
		"DELETE FROM entries_archive",
		"DELETE FROM balances",
		"DELETE FROM cases",
		"UPDATE checkpoint SET position = 0 WHERE id = 1",
		"UPDATE balances_flushed SET position = 0 WHERE id = 1",
	}
}

func (sqliteDialect) setWriteMode(ctx context.Context, w *sql.DB, m writeMode) error {
	q := fmt.Sprintf("PRAGMA synchronous = %s; PRAGMA wal_autocheckpoint = %d", m.synchronous, m.checkpointPages)
	if _, err := w.ExecContext(ctx, q); err != nil {
		return fmt.Errorf("projections: set synchronous=%s and a WAL checkpoint every %d pages: %w", m.synchronous, m.checkpointPages, err)
	}
	return nil
}

func (sqliteDialect) fence(context.Context, *sql.Tx) error { return nil }

func (sqliteDialect) release(*sql.DB) error { return nil }

// postgresDialect is the PostgreSQL backend, in one schema, whose
// projector holds the session advisory lock lockKey names.
type postgresDialect struct {
	lockKey string
}

// rebind numbers the placeholders: ? becomes $1, $2, ... No query of this
// package has a ? inside a literal.
func (postgresDialect) rebind(q string) string {
	n := strings.Count(q, "?")
	if n == 0 {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 3*n)
	i := 0
	for {
		j := strings.IndexByte(q, '?')
		if j < 0 {
			b.WriteString(q)
			return b.String()
		}
		i++
		b.WriteString(q[:j])
		b.WriteByte('$')
		b.WriteString(strconv.Itoa(i))
		q = q[j+1:]
	}
}

// readTxOptions: at PostgreSQL's default READ COMMITTED each statement
// would see another state, and a batch committed between reading the
// checkpoint and the entries would be counted twice.
func (postgresDialect) readTxOptions() *sql.TxOptions {
	return &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true}
}

// insertEntriesVerb: a duplicate key fails the statement, and with it the
// batch's transaction.
func (postgresDialect) insertEntriesVerb() string { return "INSERT" }

func (postgresDialect) resetStatements() []string {
	return []string{
		"TRUNCATE entries, entries_archive, balances, cases",
		"UPDATE checkpoint SET position = 0 WHERE id = 1",
		"UPDATE balances_flushed SET position = 0 WHERE id = 1",
	}
}

// setWriteMode: the write modes tune SQLite's WAL; PostgreSQL commits
// every batch durably either way.
func (postgresDialect) setWriteMode(context.Context, *sql.DB, writeMode) error { return nil }

// fence takes the projector's lock for the transaction too. It is granted
// at once while this session still holds the session lock taken at open
// (advisory locks are reentrant within a session); it fails when another
// session holds it, which can only happen after this process lost its
// session (a dropped connection that database/sql replaced) and another
// projector opened the schema: this one must then stop writing.
func (d postgresDialect) fence(ctx context.Context, tx *sql.Tx) error {
	var ok bool
	if err := tx.QueryRowContext(ctx, "SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))", d.lockKey).Scan(&ok); err != nil {
		return fmt.Errorf("take the projector's lock: %w", err)
	}
	if !ok {
		return fmt.Errorf("%w: another process took them over", ErrLocked)
	}
	return nil
}

// release unlocks at once: the server drops a closed session's locks only
// once its backend has exited, after Close returned, so a process that
// reopens right away would otherwise find them still held. The lock goes
// with the session anyway, so failing to unlock is no error.
func (postgresDialect) release(w *sql.DB) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _ = w.ExecContext(ctx, "SELECT pg_advisory_unlock_all()")
	return nil
}
