package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/payledger/payledger/eventstore"
)

// guardedTables are the tables whose rows retentionTriggers protect; the
// dictionaries table exists from schema 4 on.
var guardedTables = []string{"segments", "stream_index", "id_index", "dictionaries"}

// RetentionGuards reports, for each guarded table, whether its no-delete
// and no-update triggers are in the database and still abort.
func (r *Reader) RetentionGuards(ctx context.Context) ([]eventstore.Guard, error) {
	return retentionGuards(ctx, r.db)
}

func retentionGuards(ctx context.Context, db *sql.DB) ([]eventstore.Guard, error) {
	var out []eventstore.Guard
	for _, table := range guardedTables {
		var n int
		if err := db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?", table).Scan(&n); err != nil {
			return nil, fmt.Errorf("retention guards: %w", err)
		}
		if n == 0 && table == "dictionaries" {
			continue // a schema-3 log has no dictionaries to guard
		}
		for _, op := range []string{"delete", "update"} {
			name := table + "_no_" + op
			var body string
			err := db.QueryRowContext(ctx, "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ? AND tbl_name = ?", name, table).Scan(&body)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return nil, fmt.Errorf("retention guards: %w", err)
			}
			// A trigger of that name that no longer aborts guards nothing:
			// it must be the one retentionTriggers creates, word for word
			// (a WHEN clause, a WHERE under the RAISE, a RAISE in a string
			// or a comment would each keep the words and abort nothing).
			present := err == nil && strings.Join(strings.Fields(body), " ") == guardSQL(table, op)
			out = append(out, eventstore.Guard{Name: name, Present: present})
		}
	}
	return out, nil
}

// guardSQL is a retention trigger as sqlite_master keeps it (IF NOT EXISTS
// dropped), with its whitespace collapsed: what retentionTriggers makes.
func guardSQL(table, op string) string {
	return "CREATE TRIGGER " + table + "_no_" + op + " BEFORE " + strings.ToUpper(op) + " ON " + table +
		" BEGIN SELECT RAISE(ABORT, '" + retentionMarker + " (R2): " + op + " forbidden'); END"
}
