package projections

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"math"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/shopspring/decimal"

	"github.com/payledger/payledger/domain"
)

// Statement page sizes.
const (
	// MaxStatementLimit bounds one statement page so no query returns an
	// unbounded result (R17 asks for any page fast, not everything at once).
	MaxStatementLimit = 100
	// DefaultStatementLimit is used when StatementQuery.Limit is 0.
	DefaultStatementLimit = 100
)

// Balance is an account's balance as of a log position.
type Balance struct {
	AccountID string
	// Available is credits minus debits. The clearing accounts go negative.
	Available domain.Money
	// AsOfPosition is the checkpoint the balance is valid at.
	AsOfPosition int64
	// Found is false when the account has neither been opened nor moved
	// money up to AsOfPosition; Available is then a zero with no currency.
	Found bool
}

// Balance returns the balance of accountID at the current checkpoint. It is
// served from memory, which always equals the committed SQL state.
func (r *ReadModels) Balance(ctx context.Context, accountID string) (Balance, error) {
	if err := ctx.Err(); err != nil {
		return Balance{}, fmt.Errorf("projections: balance of %s: %w", accountID, err)
	}
	r.mu.RLock()
	a, ok := r.accounts[accountID]
	cp := r.checkpoint
	r.mu.RUnlock()
	b := Balance{AccountID: accountID, AsOfPosition: cp, Found: ok}
	if ok {
		b.Available = domain.Money{Amount: a.balance, Currency: a.currency}
	} else {
		b.Available = domain.Money{Amount: decimal.Zero}
	}
	return b, nil
}

// BalanceAsOf returns the balance of accountID after its last money entry
// with time <= t (ordered by time, then position), for statements and
// audits of a past date. An account known now but without entries up to t
// has a zero balance. AsOfPosition is the checkpoint the answer was read at.
func (r *ReadModels) BalanceAsOf(ctx context.Context, accountID string, t time.Time) (Balance, error) {
	tx, err := r.readTx(ctx)
	if err != nil {
		return Balance{}, fmt.Errorf("projections: balance of %s as of %s: %w", accountID, t, err)
	}
	defer func() { _ = tx.Rollback() }()
	b := Balance{AccountID: accountID, Available: domain.Money{Amount: decimal.Zero}}
	if err := tx.QueryRowContext(ctx, "SELECT position FROM checkpoint WHERE id = 1").Scan(&b.AsOfPosition); err != nil {
		return Balance{}, fmt.Errorf("projections: balance of %s as of %s: checkpoint: %w", accountID, t, err)
	}
	var cur string
	err = tx.QueryRowContext(ctx, r.dialect.rebind("SELECT currency FROM balances WHERE account_id = ?"), accountID).Scan(&cur)
	if errors.Is(err, sql.ErrNoRows) {
		return b, nil
	}
	if err != nil {
		return Balance{}, fmt.Errorf("projections: balance of %s as of %s: account: %w", accountID, t, err)
	}
	b.Found = true
	b.Available.Currency = domain.Currency(cur)
	var after string
	upTo := toNanos(t, math.MaxInt64)
	err = tx.QueryRowContext(ctx, r.dialect.rebind(bothEntryTables(`SELECT balance_after, time_ns, position, seq FROM %s
		WHERE account_id = ? AND time_ns <= ?
		ORDER BY time_ns DESC, position DESC, seq DESC LIMIT 1`)+`
		ORDER BY time_ns DESC, position DESC, seq DESC LIMIT 1`), accountID, upTo, accountID, upTo).Scan(&after, new(int64), new(int64), new(int64))
	if errors.Is(err, sql.ErrNoRows) {
		return b, nil
	}
	if err != nil {
		return Balance{}, fmt.Errorf("projections: balance of %s as of %s: %w", accountID, t, err)
	}
	if b.Available.Amount, err = decimal.NewFromString(after); err != nil {
		return Balance{}, fmt.Errorf("projections: balance of %s as of %s: stored amount %q: %w", accountID, t, after, err)
	}
	return b, nil
}

// StatementQuery selects one page of an account's statement.
type StatementQuery struct {
	AccountID string
	// From and To bound entry times as [From, To); a zero time means
	// unbounded on that side. The 12-month policy (R17) is the HTTP
	// layer's.
	From, To time.Time
	// Limit is 1..100; 0 means 100.
	Limit int
	// Cursor is NextCursor of the previous page, or "" for the first.
	Cursor string
}

// StatementPage is one page of a statement.
type StatementPage struct {
	Entries []Entry
	// NextCursor continues strictly after the last entry; "" when there is
	// no more in the period.
	NextCursor string
}

// Entry is one line of an account's statement: one side of a double entry.
type Entry struct {
	EventID  string
	Position int64
	Time     time.Time
	// Type is the event type, e.g. "PaymentConfirmed".
	Type string
	// Direction is DirectionDebit (money out) or DirectionCredit (money in).
	Direction    string
	Amount       domain.Money
	Counterparty string
	// BalanceAfter is the account's balance right after this entry, in log
	// order.
	BalanceAfter domain.Money
	Description  string
	Ref          string
}

// Statement returns one page of accountID's entries in [From, To), ordered
// by (time, position), continuing after Cursor. Malformed input returns a
// *domain.Error with code invalid_request naming the field.
func (r *ReadModels) Statement(ctx context.Context, q StatementQuery) (StatementPage, error) {
	limit := q.Limit
	switch {
	case q.AccountID == "":
		return StatementPage{}, domain.Invalid("account_id", "account id is required")
	case limit == 0:
		limit = DefaultStatementLimit
	case limit < 0 || limit > MaxStatementLimit:
		return StatementPage{}, domain.Invalid("limit", fmt.Sprintf("limit %d must be between 1 and %d", q.Limit, MaxStatementLimit))
	}
	if !q.From.IsZero() && !q.To.IsZero() && q.To.Before(q.From) {
		return StatementPage{}, domain.Invalid("to", "to must not be before from")
	}
	from, to := toNanos(q.From, math.MinInt64), toNanos(q.To, math.MaxInt64)
	// Without a cursor start just before the first possible key at From.
	after := cursor{timeNs: from, position: math.MinInt64, seq: math.MinInt64}
	if q.Cursor != "" {
		c, err := decodeCursor(q.Cursor)
		if err != nil {
			return StatementPage{}, err
		}
		if c.timeNs >= from {
			after = c
		}
	}
	upper := "time_ns < ?"
	if q.To.IsZero() {
		upper = "time_ns <= ?" // unbounded: include the largest representable time
	}
	// Each table gives at most the page's rows, in order; the page is the
	// first of both.
	args := []any{q.AccountID, after.timeNs, after.position, after.seq, to, limit + 1}
	rows, err := r.readDB.QueryContext(ctx, r.dialect.rebind(bothEntryTables(`SELECT event_id, position, seq, time_ns, type, amount, currency,
			counterparty, balance_after, description, ref
		FROM %s
		WHERE account_id = ? AND (time_ns, position, seq) > (?, ?, ?) AND `+upper+`
		ORDER BY time_ns, position, seq
		LIMIT ?`)+`
		ORDER BY time_ns, position, seq
		LIMIT ?`), slices.Concat(args, args, []any{limit + 1})...)
	if err != nil {
		return StatementPage{}, fmt.Errorf("projections: statement of %s: %w", q.AccountID, err)
	}
	defer rows.Close()
	page := StatementPage{Entries: make([]Entry, 0, limit)}
	var last cursor
	more := false
	for rows.Next() {
		if len(page.Entries) == limit {
			more = true
			break
		}
		var (
			e                  Entry
			seq, ns            int64
			amt, cur, balAfter string
		)
		if err := rows.Scan(&e.EventID, &e.Position, &seq, &ns, &e.Type, &amt, &cur,
			&e.Counterparty, &balAfter, &e.Description, &e.Ref); err != nil {
			return StatementPage{}, fmt.Errorf("projections: statement of %s: %w", q.AccountID, err)
		}
		e.Time = time.Unix(0, ns).UTC()
		e.Direction = DirectionCredit
		if seq == seqDebit {
			e.Direction = DirectionDebit
		}
		a, err1 := decimal.NewFromString(amt)
		ba, err2 := decimal.NewFromString(balAfter)
		if err := errors.Join(err1, err2); err != nil {
			return StatementPage{}, fmt.Errorf("projections: statement of %s: stored amount at position %d: %w", q.AccountID, e.Position, err)
		}
		e.Amount = domain.Money{Amount: a, Currency: domain.Currency(cur)}
		e.BalanceAfter = domain.Money{Amount: ba, Currency: domain.Currency(cur)}
		page.Entries = append(page.Entries, e)
		last = cursor{timeNs: ns, position: e.Position, seq: seq}
	}
	if err := rows.Err(); err != nil {
		return StatementPage{}, fmt.Errorf("projections: statement of %s: %w", q.AccountID, err)
	}
	if more {
		page.NextCursor = last.encode()
	}
	return page, nil
}

// bothEntryTables is query, whose %s names the table, over entries_archive
// and entries: the union of both answers, for the caller to order and
// limit again (the rows after the last flush and those before it can
// interleave in time).
func bothEntryTables(query string) string {
	return `SELECT * FROM (` + fmt.Sprintf(query, "entries_archive") + `) AS archived
		UNION ALL SELECT * FROM (` + fmt.Sprintf(query, "entries") + `) AS recent`
}

// toNanos converts t to Unix nanoseconds, clamping to the int64 range and
// mapping the zero time to def (an open bound).
func toNanos(t time.Time, def int64) int64 {
	switch {
	case t.IsZero():
		return def
	case t.Before(minTime):
		return math.MinInt64
	case t.After(maxTime):
		return math.MaxInt64
	}
	return t.UnixNano()
}

// cursor is the key of the last entry of a page. It is opaque to clients:
// base64url of a version byte and the three key parts.
type cursor struct {
	timeNs, position, seq int64
}

const cursorVersion = 1

func (c cursor) encode() string {
	var b [1 + 8 + 8 + 1]byte
	b[0] = cursorVersion
	binary.BigEndian.PutUint64(b[1:], uint64(c.timeNs))
	binary.BigEndian.PutUint64(b[9:], uint64(c.position))
	b[17] = byte(c.seq)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func decodeCursor(s string) (cursor, error) {
	bad := domain.Invalid("cursor", "cursor is malformed; pass next_cursor of the previous page unchanged")
	if len(s) > 64 {
		return cursor{}, bad
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != 18 || b[0] != cursorVersion || b[17] > seqCredit {
		return cursor{}, bad
	}
	c := cursor{
		timeNs:   int64(binary.BigEndian.Uint64(b[1:])),
		position: int64(binary.BigEndian.Uint64(b[9:])),
		seq:      int64(b[17]),
	}
	if c.position < 1 {
		return cursor{}, bad
	}
	return c, nil
}

// Totals summarises the whole ledger per currency for reconciliation
// (R23, R25): in a consistent ledger Debits == Credits and Balances is zero
// in every currency, because every money event is one balanced double
// entry and the clearing account carries the other side of money from and
// to outside.
type Totals struct {
	// AsOfPosition is the checkpoint the totals were read at.
	AsOfPosition int64
	// Currencies is sorted by currency code.
	Currencies []CurrencyTotals
}

// CurrencyTotals are the totals of one currency.
type CurrencyTotals struct {
	Currency domain.Currency
	Debits   domain.Money
	Credits  domain.Money
	// Balances is the sum of all account balances (credits - debits).
	Balances domain.Money
	// Accounts is the number of accounts in the currency.
	Accounts int
}

// Check returns an error naming the first currency whose debits differ
// from its credits or whose balances do not sum to zero.
func (t Totals) Check() error {
	for _, c := range t.Currencies {
		if !c.Debits.Amount.Equal(c.Credits.Amount) {
			return fmt.Errorf("projections: ledger out of balance in %s at position %d: debits %s, credits %s",
				c.Currency, t.AsOfPosition, canonical(c.Debits.Amount), canonical(c.Credits.Amount))
		}
		if !c.Balances.Amount.IsZero() {
			return fmt.Errorf("projections: ledger out of balance in %s at position %d: balances sum to %s",
				c.Currency, t.AsOfPosition, canonical(c.Balances.Amount))
		}
	}
	return nil
}

// Totals reads the per-currency totals from the stored balances in one
// transaction, so they match one checkpoint. Sums are exact decimals done
// in Go; SQLite's SUM would go through floats.
func (r *ReadModels) Totals(ctx context.Context) (Totals, error) {
	tx, err := r.readTx(ctx)
	if err != nil {
		return Totals{}, fmt.Errorf("projections: totals: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	st, err := storedBalances(ctx, tx, r.dialect)
	if err != nil {
		return Totals{}, fmt.Errorf("projections: totals: %w", err)
	}
	t := Totals{AsOfPosition: st.checkpoint}
	by := map[domain.Currency]*CurrencyTotals{}
	for _, a := range st.accounts {
		cc := a.currency
		ct := by[cc]
		if ct == nil {
			ct = &CurrencyTotals{Currency: cc, Debits: domain.Zero(cc), Credits: domain.Zero(cc), Balances: domain.Zero(cc)}
			by[cc] = ct
		}
		ct.Debits.Amount = ct.Debits.Amount.Add(a.debits)
		ct.Credits.Amount = ct.Credits.Amount.Add(a.credits)
		ct.Balances.Amount = ct.Balances.Amount.Add(a.balance)
		ct.Accounts++
	}
	for _, ct := range by {
		t.Currencies = append(t.Currencies, *ct)
	}
	sort.Slice(t.Currencies, func(i, j int) bool { return t.Currencies[i].Currency < t.Currencies[j].Currency })
	return t, nil
}

// Digest returns the SHA-256 (hex) of the canonical content of all read
// models — balances by account, statement entries by key, then the
// checkpoint — read in one transaction. Two databases built from the same
// log, incrementally or by Rebuild, must have the same digest (R4).
func (r *ReadModels) Digest(ctx context.Context) (string, error) {
	tx, err := r.readTx(ctx)
	if err != nil {
		return "", fmt.Errorf("projections: digest: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	h := sha256.New()
	h.Write([]byte("payledger/readmodels/v1"))
	// Balances are hashed as complete rows, exactly as they would be stored
	// if all were current (see schemaSQL), whenever rows were flushed.
	st, err := storedBalances(ctx, tx, r.dialect)
	if err != nil {
		return "", fmt.Errorf("projections: digest balances: %w", err)
	}
	ids := make([]string, 0, len(st.accounts))
	for id := range st.accounts {
		ids = append(ids, id)
	}
	slices.Sort(ids) // the order of SQLite's BINARY collation: bytewise
	var row [7][]byte
	for _, id := range ids {
		a := st.accounts[id]
		row = [7][]byte{[]byte(id), []byte(a.currency), []byte(canonical(a.balance)), []byte(canonical(a.debits)),
			[]byte(canonical(a.credits)), strconv.AppendInt(nil, a.entries, 10), strconv.AppendInt(nil, a.lastPosition, 10)}
		digestRow(h, 'B', row[:])
	}
	if err := digestRows(ctx, tx, h, 'E', `SELECT account_id, time_ns, position, seq, event_id, type, amount, currency,
			counterparty, balance_after, description, ref FROM entries_archive
		UNION ALL SELECT account_id, time_ns, position, seq, event_id, type, amount, currency,
			counterparty, balance_after, description, ref FROM entries
		ORDER BY account_id, time_ns, position, seq`, entryCols); err != nil {
		return "", fmt.Errorf("projections: digest entries: %w", err)
	}
	if err := digestRows(ctx, tx, h, 'K', `SELECT case_id, kind, account_id, status, opened_ns, due_ns, ended_ns, last_position
		FROM cases ORDER BY case_id`, 8); err != nil {
		return "", fmt.Errorf("projections: digest cases: %w", err)
	}
	if err := digestRows(ctx, tx, h, 'C', "SELECT position FROM checkpoint WHERE id = 1", 1); err != nil {
		return "", fmt.Errorf("projections: digest checkpoint: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// digestRows hashes every row of query: a tag byte, then each column as
// its text form, length-prefixed so that no two contents hash alike.
func digestRows(ctx context.Context, tx *sql.Tx, h hash.Hash, tag byte, query string, cols int) error {
	rows, err := tx.QueryContext(ctx, query)
	if err != nil {
		return err
	}
	defer rows.Close()
	vals := make([]sql.RawBytes, cols)
	ptrs := make([]any, cols)
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	row := make([][]byte, cols)
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		for i, v := range vals {
			row[i] = v
		}
		digestRow(h, tag, row)
	}
	return rows.Err()
}

// digestRow hashes one row: the tag byte, then each column length-prefixed.
func digestRow(h hash.Hash, tag byte, cols [][]byte) {
	var n [8]byte
	h.Write([]byte{tag})
	for _, v := range cols {
		binary.BigEndian.PutUint64(n[:], uint64(len(v)))
		h.Write(n[:])
		h.Write(v)
	}
}

// AccountRow is one account's balance as the projection stores it.
type AccountRow struct {
	Currency domain.Currency
	Balance  decimal.Decimal
	Debits   decimal.Decimal
	Credits  decimal.Decimal
}

// Accounts reads every account's stored balance, debits and credits as of
// the checkpoint, which it returns too, in one transaction: what a
// reconciliation compares with the log.
func (r *ReadModels) Accounts(ctx context.Context) (map[string]AccountRow, int64, error) {
	tx, err := r.readTx(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("projections: accounts: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	st, err := storedBalances(ctx, tx, r.dialect)
	if err != nil {
		return nil, 0, fmt.Errorf("projections: accounts: %w", err)
	}
	out := make(map[string]AccountRow, len(st.accounts))
	for id, a := range st.accounts {
		out[id] = AccountRow{Currency: a.currency, Balance: a.balance, Debits: a.debits, Credits: a.credits}
	}
	return out, st.checkpoint, nil
}

// CaseRow is a loss case or dispute as staff list them.
type CaseRow struct {
	CaseID    string
	Kind      string
	AccountID string
	Status    string
	OpenedAt  time.Time
	// DueBy is when a dispute's answer is due; zero for a loss case.
	DueBy time.Time
	// EndedAt is when it was closed or resolved; zero while open.
	EndedAt time.Time
}

// CaseQuery selects cases: of one kind (domain.CaseLoss or
// domain.CaseDispute), open ones only or all, and with OverdueAt set only
// the open ones due before it. After is the last case id of the previous
// page.
type CaseQuery struct {
	Kind      string
	OpenOnly  bool
	OverdueAt time.Time
	After     string
	Limit     int
}

// MaxCasePage bounds one page of cases.
const MaxCasePage = 200

// Cases lists cases in the order they were opened (their ids are
// ULIDs); next is the cursor of the following page ("" at the end).
func (r *ReadModels) Cases(ctx context.Context, q CaseQuery) (rows []CaseRow, next string, err error) {
	if q.Limit <= 0 || q.Limit > MaxCasePage {
		q.Limit = MaxCasePage
	}
	where, args := "kind = ?", []any{q.Kind}
	if q.OpenOnly || !q.OverdueAt.IsZero() {
		where += " AND ended_ns = 0"
	}
	if !q.OverdueAt.IsZero() {
		where += " AND due_ns > 0 AND due_ns < ?"
		args = append(args, q.OverdueAt.UnixNano())
	}
	if q.After != "" {
		where += " AND case_id > ?"
		args = append(args, q.After)
	}
	args = append(args, q.Limit+1)
	res, err := r.readDB.QueryContext(ctx, r.dialect.rebind(`SELECT case_id, kind, account_id, status, opened_ns, due_ns, ended_ns
		FROM cases WHERE `+where+` ORDER BY case_id LIMIT ?`), args...)
	if err != nil {
		return nil, "", fmt.Errorf("projections: cases: %w", err)
	}
	defer res.Close()
	for res.Next() {
		var c CaseRow
		var opened, due, ended int64
		if err := res.Scan(&c.CaseID, &c.Kind, &c.AccountID, &c.Status, &opened, &due, &ended); err != nil {
			return nil, "", fmt.Errorf("projections: cases: %w", err)
		}
		c.OpenedAt = time.Unix(0, opened).UTC()
		if due != 0 {
			c.DueBy = time.Unix(0, due).UTC()
		}
		if ended != 0 {
			c.EndedAt = time.Unix(0, ended).UTC()
		}
		rows = append(rows, c)
	}
	if err := res.Err(); err != nil {
		return nil, "", fmt.Errorf("projections: cases: %w", err)
	}
	if len(rows) > q.Limit {
		rows = rows[:q.Limit]
		next = rows[len(rows)-1].CaseID
	}
	return rows, next, nil
}
