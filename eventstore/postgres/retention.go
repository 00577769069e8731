package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/payledger/payledger/eventstore"
)

var _ eventstore.RetentionReporter = (*Store)(nil)

// Trigger type bits of pg_trigger.tgtype: the retention trigger must be a
// BEFORE statement trigger on DELETE, UPDATE and TRUNCATE.
const (
	tgRow      = 1
	tgBefore   = 2
	tgDelete   = 8
	tgUpdate   = 16
	tgTruncate = 32
)

// RetentionGuards reports what refuses deleting and rewriting events
// here: the trigger on events, in place, enabled and covering DELETE,
// UPDATE and TRUNCATE; its function still raising; and the session's
// session_replication_role at origin, since under replica (settable per
// role or database) ordinary triggers do not fire.
func (s *Store) RetentionGuards(ctx context.Context) ([]eventstore.Guard, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("retention guards: %w", eventstore.ErrClosed)
	}
	var tgtype int16
	var enabled, src string
	err := s.pool.QueryRow(ctx, `SELECT t.tgtype, t.tgenabled::text, p.prosrc
		FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
		WHERE t.tgrelid = 'events'::regclass AND t.tgname = 'events_retained'`).Scan(&tgtype, &enabled, &src)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("retention guards: %w", err)
	}
	found := err == nil
	want := int16(tgBefore | tgDelete | tgUpdate | tgTruncate)
	trigger := found && tgtype&(want|tgRow) == want && (enabled == "O" || enabled == "A")
	raises := found && strings.Contains(strings.ToUpper(src), "RAISE EXCEPTION") && !strings.Contains(strings.ToUpper(src), "RETURN")
	var role string
	if err := s.pool.QueryRow(ctx, `SELECT current_setting('session_replication_role')`).Scan(&role); err != nil {
		return nil, fmt.Errorf("retention guards: %w", err)
	}
	return []eventstore.Guard{
		{Name: "events_retained trigger (before update, delete, truncate; enabled)", Present: trigger},
		{Name: "payledger_events_retained() raises", Present: raises},
		{Name: "session_replication_role = origin", Present: role == "origin"},
	}, nil
}
