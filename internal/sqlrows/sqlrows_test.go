package sqlrows

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	_ "modernc.org/sqlite"
)

func TestValues(t *testing.T) {
	if got, want := Values(2, 3), "(?, ?, ?), (?, ?, ?)"; got != want {
		t.Errorf("Values(2, 3) = %q, want %q", got, want)
	}
	if got, want := Values(1, 1), "(?)"; got != want {
		t.Errorf("Values(1, 1) = %q, want %q", got, want)
	}
}

// TestExec writes 100 rows: statements of 64, 32 and 4 rows, in order, each
// row once; an error names the statement's rows and stops the rest.
func TestExec(t *testing.T) {
	ctx := context.Background()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	stmts, err := Prepare(ctx, db, func(rows int) string { return "INSERT INTO t (k, v) VALUES " + Values(rows, 2) })
	if err != nil {
		t.Fatal(err)
	}
	defer stmts.Close()
	write := func(keys []int) (counts []int, err error) {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback() }()
		err = stmts.Exec(ctx, tx, len(keys), func(args []any, i int) []any {
			return append(args, keys[i], fmt.Sprint("v", keys[i]))
		}, func(first, count int, res sql.Result, err error) error {
			counts = append(counts, count)
			if err != nil {
				return fmt.Errorf("rows %d to %d: %w", first, first+count-1, err)
			}
			if n, err := res.RowsAffected(); err != nil || n != int64(count) {
				return fmt.Errorf("rows %d to %d: %d affected (%v)", first, first+count-1, n, err)
			}
			return nil
		})
		if err == nil {
			err = tx.Commit()
		}
		return counts, err
	}
	keys := make([]int, 100)
	for i := range keys {
		keys[i] = i + 1
	}
	counts, err := write(keys)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{64, 32, 4}; !slices.Equal(counts, want) {
		t.Errorf("statement sizes %v, want %v", counts, want)
	}
	var n, sum int
	if err := db.QueryRow("SELECT COUNT(*), SUM(k) FROM t WHERE v = 'v' || k").Scan(&n, &sum); err != nil {
		t.Fatal(err)
	}
	if n != 100 || sum != 5050 {
		t.Errorf("%d rows summing to %d, want 100 and 5050", n, sum)
	}
	// Key 150 is written twice: the second statement (32 rows from 65) fails.
	dup := make([]int, 100)
	for i := range dup {
		dup[i] = 101 + i
	}
	dup[80] = 150
	counts, err = write(dup)
	if err == nil || !slices.Equal(counts, []int{64, 32}) {
		t.Fatalf("duplicate key: %v after statements %v, want a failure at the second", err, counts)
	}
	if got := err.Error(); !strings.HasPrefix(got, "rows 64 to 95: ") {
		t.Errorf("error %q does not name the statement's rows", got)
	}
}
