package projections

import (
	"context"
	"database/sql"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/internal/pgtest"
)

// version4SQL turns a file into schema version 4, which kept every
// statement row in entries: the archived rows go back, the archive goes.
const version4SQL = `
INSERT INTO entries SELECT account_id, time_ns, position, seq, event_id, type, amount, currency,
	counterparty, balance_after, description, ref FROM entries_archive;
DROP TABLE entries_archive;
PRAGMA user_version = 4;
`

// entriesSplit returns the rows of entries and of entries_archive, and
// whether every archived row is at or before balances_flushed and every
// other row after it.
func entriesSplit(t *testing.T, db *sql.DB) (recent, archived int64, split bool) {
	t.Helper()
	var flushed, recentMin, archivedMax int64
	if err := db.QueryRow(`SELECT (SELECT position FROM balances_flushed WHERE id = 1),
		(SELECT count(*) FROM entries), (SELECT coalesce(min(position), 0) FROM entries),
		(SELECT count(*) FROM entries_archive), (SELECT coalesce(max(position), 0) FROM entries_archive)`).
		Scan(&flushed, &recent, &recentMin, &archived, &archivedMax); err != nil {
		t.Fatal(err)
	}
	return recent, archived, (recent == 0 || recentMin > flushed) && archivedMax <= flushed
}

// sqliteObjects returns the names and SQL of the file's tables and
// indexes of the statement rows.
func sqliteObjects(t *testing.T, db *sql.DB) map[string]string {
	t.Helper()
	rows, err := db.Query("SELECT name, coalesce(sql, '') FROM sqlite_master WHERE tbl_name IN ('entries', 'entries_archive')")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var name, text string
		if err := rows.Scan(&name, &text); err != nil {
			t.Fatal(err)
		}
		out[name] = text
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// statements reads every account's whole statement.
func statements(t *testing.T, r *ReadModels, ids []string) map[string][]Entry {
	t.Helper()
	out := map[string][]Entry{}
	for _, id := range ids {
		out[id] = allEntries(t, r, id)
	}
	return out
}

var layoutAccounts = []string{"a", "b", "c", "d", "e", "u", "sink", clearingCNY}

// TestUpgradeFromLogOrderedEntries opens a version 4 file, which kept
// every statement row in entries, and checks that Open moves those up to
// balances_flushed into entries_archive in place: the same digest,
// statements and balances as before, and the upgraded file then applies
// more of the log to the same digest as a file built from scratch.
func TestUpgradeFromLogOrderedEntries(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	caseWorkload(l)
	path := filepath.Join(t.TempDir(), "rm.db")
	r := openRM(t, path)
	// Flushes in the middle of the log, so that the file has rows on both
	// sides of balances_flushed.
	r.flushEvery = l.head() / 3
	applyChunks(t, r, l.store, 10)
	want, wantStatements := digest(t, r), statements(t, r, layoutAccounts)
	wantAccounts := accountsText(r)
	recent, archived, split := entriesSplit(t, r.readDB)
	if recent == 0 || archived == 0 || !split {
		t.Fatalf("before the downgrade: %d rows in entries and %d archived, split at the flush %v", recent, archived, split)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}

	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(version4SQL); err != nil {
		t.Fatal(err)
	}
	old := sqliteObjects(t, db)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := old["entries_archive"]; ok {
		t.Fatalf("the version 4 file has %v", old)
	}

	r = openRM(t, path)
	if got := digest(t, r); got != want {
		t.Fatalf("digest after the upgrade %s, want %s", got, want)
	}
	if got := accountsText(r); got != wantAccounts {
		t.Fatalf("balances after the upgrade:\n%s\nwant\n%s", got, wantAccounts)
	}
	if got := statements(t, r, layoutAccounts); !reflect.DeepEqual(got, wantStatements) {
		t.Fatalf("statements after the upgrade differ:\n%v\nwant\n%v", got, wantStatements)
	}
	var v int
	if err := r.readDB.QueryRow("PRAGMA user_version").Scan(&v); err != nil || v != schemaVersion {
		t.Fatalf("user_version %d (%v), want %d", v, err, schemaVersion)
	}
	if gotRecent, gotArchived, split := entriesSplit(t, r.readDB); gotRecent != recent || gotArchived != archived || !split {
		t.Fatalf("after the upgrade %d rows in entries and %d archived (split at the flush: %v), want %d and %d",
			gotRecent, gotArchived, split, recent, archived)
	}
	if !strings.Contains(sqliteObjects(t, r.readDB)["entries_archive"], "PRIMARY KEY (account_id, time_ns, position, seq)") {
		t.Fatal("the upgraded file's archive is not keyed by account")
	}

	// The upgraded file goes on from its checkpoint like any other.
	workload(l, 7)
	l.pay("a", "a", "0.75", domain.CNY)
	catchUp(t, r, l.store)
	fresh := newRM(t)
	catchUp(t, fresh, l.store)
	if got, want := digest(t, r), digest(t, fresh); got != want {
		t.Fatalf("digest of the upgraded file after more events %s, a new file's %s", got, want)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	// And reopening it upgrades nothing again.
	r = openRM(t, path)
	if got, want := digest(t, r), digest(t, fresh); got != want {
		t.Fatalf("digest after reopening %s, want %s", got, want)
	}
	totals, err := r.Totals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := totals.Check(); err != nil {
		t.Fatal(err)
	}
}

// TestPostgresUpgradeToArchive opens a PostgreSQL schema at migration 1
// (every statement row in entries) holding read models, and checks that
// migration 2 moves the rows up to balances_flushed into entries_archive
// and changes nothing a reader sees: the same digest and statements, the
// same as SQLite's.
func TestPostgresUpgradeToArchive(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	caseWorkload(l)
	r := postgresBackend.open(t, "upgrade")
	r.flushEvery = l.head() / 3
	applyChunks(t, r, l.store, 10)
	want, wantStatements := digest(t, r), statements(t, r, layoutAccounts)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}

	dsn, schema := pgtest.Schema(t, "upgrade")
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	name := pgx.Identifier{schema}.Sanitize()
	if _, err := db.ExecContext(ctx, `SET search_path = `+name+`;
		INSERT INTO entries SELECT account_id, time_ns, position, seq, event_id, type, amount, currency,
			counterparty, balance_after, description, ref FROM entries_archive;
		DROP TABLE entries_archive;
		DELETE FROM readmodels_migrations WHERE version >= 2`); err != nil {
		t.Fatal(err)
	}
	counts := func() (recent, archived int64, split bool) {
		t.Helper()
		conn, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = conn.Close() }()
		if _, err := conn.ExecContext(ctx, "SET search_path = "+name); err != nil {
			t.Fatal(err)
		}
		var flushed, recentMin, archivedMax int64
		if err := conn.QueryRowContext(ctx, `SELECT (SELECT position FROM balances_flushed WHERE id = 1),
			(SELECT count(*) FROM entries), (SELECT coalesce(min(position), 0) FROM entries),
			(SELECT count(*) FROM entries_archive), (SELECT coalesce(max(position), 0) FROM entries_archive)`).
			Scan(&flushed, &recent, &recentMin, &archived, &archivedMax); err != nil {
			t.Fatal(err)
		}
		return recent, archived, (recent == 0 || recentMin > flushed) && archivedMax <= flushed
	}

	r = postgresBackend.openRM(t, "upgrade")
	if got := digest(t, r); got != want {
		t.Fatalf("digest after the upgrade %s, want %s", got, want)
	}
	if got := statements(t, r, layoutAccounts); !reflect.DeepEqual(got, wantStatements) {
		t.Fatalf("statements after the upgrade differ")
	}
	if recent, archived, split := counts(); recent == 0 || archived == 0 || !split {
		t.Fatalf("after the upgrade %d rows in entries and %d archived, split at the flush %v", recent, archived, split)
	}
	// The same log into SQLite gives the same digest.
	lite := newRM(t)
	catchUp(t, lite, l.store)
	if got := digest(t, lite); got != want {
		t.Fatalf("SQLite digest %s, PostgreSQL %s", got, want)
	}
}
