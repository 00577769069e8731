// Package sqlrows writes many rows with few statements: multi-row
// INSERTs of 1, 2, 4, ... MaxRows rows, prepared once, through which a
// batch goes in the largest statements that fit. Executing one statement
// per row spent most of a batch's time outside SQLite's B-tree
// (database/sql, binding, statement setup), for the read models' rows and
// for the event log's index rows alike.
//
// It imports nothing of the project, so both the log and the read models
// can use it.
package sqlrows

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/bits"
	"strings"
)

// Sizes is the number of statement sizes: 1, 2, 4, ... MaxRows rows.
const Sizes = 7

// MaxRows bounds the rows of one statement: 64 rows of up to 12 columns
// stay far below SQLite's 32,766 parameters.
const MaxRows = 1 << (Sizes - 1)

// Values returns the VALUES list of rows rows of cols parameters each:
// "(?, ?), (?, ?)" for rows 2 and cols 2.
func Values(rows, cols int) string {
	tuple := "(" + strings.Repeat("?, ", cols-1) + "?)"
	return strings.Repeat(tuple+", ", rows-1) + tuple
}

// Statements holds one multi-row statement per size: Statements[i] takes
// 1<<i rows.
type Statements [Sizes]*sql.Stmt

// Prepare prepares build(rows) on db for every size.
func Prepare(ctx context.Context, db *sql.DB, build func(rows int) string) (Statements, error) {
	var s Statements
	for i := range s {
		st, err := db.PrepareContext(ctx, build(1<<i))
		if err != nil {
			return s, errors.Join(err, s.Close())
		}
		s[i] = st
	}
	return s, nil
}

// Close closes the statements prepared.
func (s *Statements) Close() error {
	var errs []error
	for _, st := range s {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	return errors.Join(errs...)
}

// Exec writes rows 0 to n-1 within tx, in order, in the largest statements
// that fit (64, 32, ... 1 rows). values appends row i's values to args.
// after runs for each statement with the rows it took (first, count), its
// result and its error, and returns the error to stop with, if any (after
// wraps errs with the rows' names, or checks the result).
func (s *Statements) Exec(ctx context.Context, tx *sql.Tx, n int, values func(args []any, i int) []any,
	after func(first, count int, res sql.Result, err error) error) error {
	var handles [Sizes]*sql.Stmt // this transaction's; closed when it ends
	var args []any
	for first := 0; first < n; {
		i := min(bits.Len(uint(n-first))-1, Sizes-1)
		count := 1 << i
		args = args[:0]
		for r := first; r < first+count; r++ {
			args = values(args, r)
		}
		if handles[i] == nil {
			handles[i] = tx.StmtContext(ctx, s[i])
		}
		res, err := handles[i].ExecContext(ctx, args...)
		if err := after(first, count, res, err); err != nil {
			return err
		}
		first += count
	}
	return nil
}

// Wrap returns an after for Exec that only names the rows of a failed
// statement: name(first, count) says which.
func Wrap(name func(first, count int) string) func(int, int, sql.Result, error) error {
	return func(first, count int, _ sql.Result, err error) error {
		if err != nil {
			return fmt.Errorf("%s: %w", name(first, count), err)
		}
		return nil
	}
}
