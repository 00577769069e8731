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
// dictionaries table exists from schema 4 on, streams from schema 5 on.
var guardedTables = []string{"segments", "stream_index", "id_index", "dictionaries", "streams"}

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
		if n == 0 && (table == "dictionaries" || table == "streams") {
			continue // a schema-3 log has no dictionaries, a schema-4 one no streams, to guard
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

// CheckContiguous reports an error unless the log's segments cover
// positions 1 to head with no gap and no overlap: a segment deleted from
// the middle (its guard dropped, then restored) leaves a gap that reads
// from the ends do not show.
func (r *Reader) CheckContiguous(ctx context.Context, head int64) error {
	const q = `SELECT first_position, prev FROM (
		SELECT first_position, LAG(last_position, 1, 0) OVER (ORDER BY first_position) AS prev FROM segments)
	WHERE first_position != prev + 1 LIMIT 1`
	var first, prev int64
	switch err := r.db.QueryRowContext(ctx, q).Scan(&first, &prev); {
	case err == nil:
		return fmt.Errorf("the segment at position %d follows one that ends at %d: positions %d to %d are gone", first, prev, prev+1, first-1)
	case !errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("retention: %w", err)
	}
	var last sql.NullInt64
	if err := r.db.QueryRowContext(ctx, "SELECT MAX(last_position) FROM segments").Scan(&last); err != nil {
		return fmt.Errorf("retention: %w", err)
	}
	if last.Int64 != head {
		return fmt.Errorf("the segments end at position %d, the log's head is %d", last.Int64, head)
	}
	return nil
}
