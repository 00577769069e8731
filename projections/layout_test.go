package projections

import (
	"context"
	"database/sql"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/internal/pgtest"
)

// version4EntriesSQL turns a file's entries into the layout of schema
// version 4, word for word that version's table and index: rows keyed by
// (position, seq) in log order, and the narrow statement index.
const version4EntriesSQL = `
CREATE TABLE entries_v4 (
	account_id    TEXT NOT NULL,
	time_ns       INTEGER NOT NULL,
	position      INTEGER NOT NULL,
	seq           INTEGER NOT NULL,
	event_id      TEXT NOT NULL,
	type          TEXT NOT NULL,
	amount        TEXT NOT NULL,
	currency      TEXT NOT NULL,
	counterparty  TEXT NOT NULL,
	balance_after TEXT NOT NULL,
	description   TEXT NOT NULL,
	ref           TEXT NOT NULL,
	PRIMARY KEY (position, seq)
) WITHOUT ROWID;
INSERT INTO entries_v4 SELECT account_id, time_ns, position, seq, event_id, type, amount, currency,
	counterparty, balance_after, description, ref FROM entries ORDER BY position, seq;
DROP TABLE entries;
ALTER TABLE entries_v4 RENAME TO entries;
CREATE INDEX entries_by_account ON entries (account_id, time_ns, position, seq);
PRAGMA user_version = 4;
`

// sqliteObjects returns the names and SQL of the file's tables and
// indexes on entries.
func sqliteObjects(t *testing.T, db *sql.DB) map[string]string {
	t.Helper()
	rows, err := db.Query("SELECT name, coalesce(sql, '') FROM sqlite_master WHERE tbl_name = 'entries'")
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

// TestUpgradeFromLogOrderedEntries opens a version 4 file, whose
// statement rows are in log order, and checks that Open clusters them by
// account in place: the same digest, statements and balances as before,
// the new table and index, and the upgraded file then applies more of the
// log to the same digest as a file built from scratch.
func TestUpgradeFromLogOrderedEntries(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	caseWorkload(l)
	path := filepath.Join(t.TempDir(), "rm.db")
	r := openRM(t, path)
	// Balances rows are not flushed, so Open completes them from the
	// entries after the flush position, through entries_by_position.
	catchUp(t, r, l.store)
	want, wantStatements := digest(t, r), statements(t, r, layoutAccounts)
	wantAccounts := accountsText(r)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}

	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(version4EntriesSQL); err != nil {
		t.Fatal(err)
	}
	old := sqliteObjects(t, db)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := old["entries_by_account"]; !ok || !strings.Contains(old["entries"], "PRIMARY KEY (position, seq)") {
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
	now := sqliteObjects(t, r.readDB)
	if _, ok := now["entries_by_account"]; ok {
		t.Errorf("the old statement index is still there: %v", now)
	}
	if _, ok := now["entries_by_position"]; !ok || !strings.Contains(now["entries"], "PRIMARY KEY (account_id, time_ns, position, seq)") {
		t.Fatalf("the upgraded file has %v", now)
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

// TestPostgresUpgradeToCoveringIndex opens a PostgreSQL schema at
// migration 1 (the narrow statement index) holding read models, and
// checks that migration 2 replaces the index with the covering one and
// changes no row: the same digest and statements.
func TestPostgresUpgradeToCoveringIndex(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	caseWorkload(l)
	r := postgresBackend.open(t, "upgrade")
	catchUp(t, r, l.store)
	want, wantStatements := digest(t, r), statements(t, r, layoutAccounts)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}

	dsn, schema := pgtest.Schema(t, "upgrade")
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	name := pgx.Identifier{schema}.Sanitize()
	if _, err := conn.Exec(ctx, `DROP INDEX `+name+`.entries_by_account;
		CREATE INDEX entries_by_account ON `+name+`.entries (account_id, time_ns, position, seq);
		DELETE FROM `+name+`.readmodels_migrations WHERE version >= 2`); err != nil {
		t.Fatal(err)
	}
	indexdef := func() string {
		t.Helper()
		var def string
		if err := conn.QueryRow(ctx, "SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND indexname = 'entries_by_account'",
			schema).Scan(&def); err != nil {
			t.Fatal(err)
		}
		return def
	}
	if def := indexdef(); strings.Contains(def, "INCLUDE") {
		t.Fatalf("the migration 1 index is %s", def)
	}

	r = postgresBackend.openRM(t, "upgrade")
	if def := indexdef(); !strings.Contains(def, "INCLUDE (event_id, type, amount, currency, counterparty, balance_after, description, ref)") {
		t.Fatalf("after the upgrade the statement index is %s", def)
	}
	if got := digest(t, r); got != want {
		t.Fatalf("digest after the upgrade %s, want %s", got, want)
	}
	if got := statements(t, r, layoutAccounts); !reflect.DeepEqual(got, wantStatements) {
		t.Fatalf("statements after the upgrade differ")
	}
	// The same log into SQLite gives the same digest.
	lite := newRM(t)
	catchUp(t, lite, l.store)
	if got := digest(t, lite); got != want {
		t.Fatalf("SQLite digest %s, PostgreSQL %s", got, want)
	}
}
