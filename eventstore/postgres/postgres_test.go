package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/oklog/ulid/v2"

	"github.com/payledger/payledger/eventstore"
	"github.com/payledger/payledger/eventstore/postgres"
	"github.com/payledger/payledger/eventstore/storetest"
	"github.com/payledger/payledger/internal/pgtest"
)

// openSchema migrates and opens the store in the schema named by key.
func openSchema(t testing.TB, key string, opts postgres.Options) *postgres.Store {
	t.Helper()
	dsn, schema := pgtest.Schema(t, key)
	opts.Schema = schema
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := postgres.Migrate(ctx, dsn, opts); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	s, err := postgres.Open(ctx, dsn, opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return s
}

// factory opens a store in a schema of its own per directory, so reopening
// the same directory sees the same log.
func factory(opts postgres.Options) storetest.Factory {
	return func(t testing.TB, dir string) eventstore.Store {
		t.Helper()
		return openSchema(t, dir, opts)
	}
}

// sqlConn connects to the store's schema behind its back.
func sqlConn(t testing.TB, s *postgres.Store) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["search_path"] = s.Schema()
	conn, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// tamper tries, with SQL behind the store's back, to delete, truncate and
// rewrite events; each must hit the retention trigger.
func tamper(t testing.TB, st eventstore.Store) error {
	t.Helper()
	conn := sqlConn(t, st.(*postgres.Store))
	ctx := context.Background()
	for _, q := range []string{
		"DELETE FROM events",
		"DELETE FROM events WHERE position = 1",
		"TRUNCATE events",
		"UPDATE events SET payload = '\\x7b7d'::bytea WHERE position = 1",
		"UPDATE events SET stream = 'elsewhere'",
	} {
		_, err := conn.Exec(ctx, q)
		if err == nil {
			return fmt.Errorf("%s succeeded", q)
		}
		if err = postgres.MapRetentionError(err); !errors.Is(err, eventstore.ErrDeleteForbidden) {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	_, err := conn.Exec(ctx, "DELETE FROM events WHERE position = 2")
	return postgres.MapRetentionError(err)
}

func TestConformance(t *testing.T) {
	storetest.RunWithOptions(t, factory(postgres.DefaultOptions()), storetest.Options{Tamper: tamper})
}

// TestConformanceTinyBatches forces many small transactions and a request
// larger than MaxBatchEvents, to exercise the batch boundaries.
func TestConformanceTinyBatches(t *testing.T) {
	opts := postgres.DefaultOptions()
	opts.MaxBatchEvents = 3
	opts.QueueSize = 2
	storetest.Run(t, factory(opts))
}

func event() eventstore.EventData {
	id := ulid.Make().String()
	return eventstore.EventData{ID: id, Type: "T", SchemaVersion: 1, OccurredAt: time.Date(2030, 1, 2, 3, 4, 5, 6789, time.UTC),
		Payload: []byte(`{"id":"` + id + `"}`)}
}

// TestRetentionTrigger: UPDATE, DELETE and TRUNCATE of events fail in the
// database whoever sends them, also on an empty table and in a
// transaction of their own, and leave every event as it was.
func TestRetentionTrigger(t *testing.T) {
	s := openSchema(t, t.Name(), postgres.DefaultOptions())
	defer s.Close()
	ctx := context.Background()
	conn := sqlConn(t, s)
	try := func(q string) {
		t.Helper()
		_, err := conn.Exec(ctx, q)
		if !errors.Is(postgres.MapRetentionError(err), eventstore.ErrDeleteForbidden) {
			t.Fatalf("%s: %v, want the retention trigger's refusal", q, err)
		}
	}
	try("DELETE FROM events") // empty: a statement trigger still fires
	if _, err := s.Append(ctx, "acc-1", eventstore.NoStream, []eventstore.EventData{event(), event()}); err != nil {
		t.Fatal(err)
	}
	before, err := s.ReadAll(ctx, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	try("UPDATE events SET payload = '\\x00'::bytea")
	try("UPDATE events SET hash = prev_hash WHERE version = 2")
	try("DELETE FROM events WHERE version = 2")
	try("TRUNCATE events")
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "DELETE FROM events")
		return err
	})
	if !errors.Is(postgres.MapRetentionError(err), eventstore.ErrDeleteForbidden) {
		t.Fatalf("DELETE in a transaction: %v", err)
	}
	after, err := s.ReadAll(ctx, 0, 10)
	if err != nil || len(after) != 2 {
		t.Fatalf("after the attempts: %d events, %v", len(after), err)
	}
	for i := range after {
		if after[i].Hash != before[i].Hash || string(after[i].Payload) != string(before[i].Payload) {
			t.Fatalf("event %d changed", i)
		}
	}
	if _, err := eventstore.VerifyChain([32]byte{}, after); err != nil {
		t.Fatal(err)
	}
	if postgres.MapRetentionError(nil) != nil {
		t.Error("MapRetentionError(nil) != nil")
	}
	other := errors.New("other")
	if postgres.MapRetentionError(other) != other {
		t.Error("MapRetentionError changed an unrelated error")
	}
}

// TestMigrations: the schema's versions are recorded in schema_migrations,
// a second Migrate applies nothing, Open refuses a database that was not
// migrated and one migrated by a later build.
func TestMigrations(t *testing.T) {
	ctx := context.Background()
	dsn, schema := pgtest.Schema(t, t.Name())
	opts := postgres.DefaultOptions()
	opts.Schema = schema
	if _, err := postgres.Open(ctx, dsn, opts); err == nil {
		t.Fatal("Open accepted a database without the schema")
	}
	applied, err := postgres.Migrate(ctx, dsn, opts)
	if err != nil {
		t.Fatal(err)
	}
	want := postgres.SchemaVersion()
	if want < 1 || len(applied) != want || applied[0] != 1 || applied[len(applied)-1] != want {
		t.Fatalf("first Migrate applied %v, want 1..%d", applied, want)
	}
	if again, err := postgres.Migrate(ctx, dsn, opts); err != nil || len(again) != 0 {
		t.Fatalf("second Migrate applied %v (%v), want nothing", again, err)
	}
	s, err := postgres.Open(ctx, dsn, opts)
	if err != nil {
		t.Fatal(err)
	}
	conn := sqlConn(t, s)
	var n, top int
	if err := conn.QueryRow(ctx, "SELECT count(*), max(version) FROM schema_migrations").Scan(&n, &top); err != nil {
		t.Fatal(err)
	}
	if n != want || top != want {
		t.Fatalf("schema_migrations holds %d rows up to %d, want %d", n, top, want)
	}
	s.Close()
	if _, err := conn.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, 'from the future')", want+1); err != nil {
		t.Fatal(err)
	}
	if _, err := postgres.Open(ctx, dsn, opts); err == nil {
		t.Fatal("Open accepted a schema later than the build's")
	}
	if _, err := postgres.Migrate(ctx, dsn, opts); err == nil {
		t.Fatal("Migrate accepted a schema later than the build's")
	}
}

// TestBatchIsolation: appends gathered into one transaction are decided
// each on its own; a conflicting one and an id reuse fail alone while the
// others of the same transaction commit.
func TestBatchIsolation(t *testing.T) {
	s := openSchema(t, t.Name(), postgres.DefaultOptions())
	defer s.Close()
	ctx := context.Background()
	first := event()
	if _, err := s.Append(ctx, "taken", eventstore.NoStream, []eventstore.EventData{first}); err != nil {
		t.Fatal(err)
	}
	// Hold the writer in a transaction so the next requests queue up and
	// are taken together.
	hold := make(chan struct{})
	held := make(chan struct{}, 1)
	var once sync.Once
	s.SetBeforeCommit(func() {
		once.Do(func() {
			held <- struct{}{}
			<-hold
		})
	})
	go func() { _, _ = s.Append(ctx, "opener", eventstore.NoStream, []eventstore.EventData{event()}) }()
	<-held
	type result struct {
		name string
		err  error
	}
	reqs := []struct {
		name, stream string
		expected     int64
		events       []eventstore.EventData
		want         error
	}{
		{"fresh", "a", eventstore.NoStream, []eventstore.EventData{event(), event()}, nil},
		{"conflict", "taken", eventstore.NoStream, []eventstore.EventData{event()}, eventstore.ErrVersionConflict},
		{"reuse", "b", eventstore.NoStream, []eventstore.EventData{first}, eventstore.ErrIDReused},
		{"next", "taken", 1, []eventstore.EventData{event()}, nil},
		{"any", "c", eventstore.Any, []eventstore.EventData{event()}, nil},
	}
	results := make(chan result, len(reqs))
	for _, r := range reqs {
		go func() {
			_, err := s.Append(ctx, r.stream, r.expected, r.events)
			results <- result{r.name, err}
		}()
	}
	// The requests are queued once the queue's length says so; the writer
	// is held, so they all go into the next transaction.
	waitQueued(t, s, len(reqs))
	close(hold)
	got := map[string]error{}
	for range reqs {
		r := <-results
		got[r.name] = r.err
	}
	for _, r := range reqs {
		if r.want == nil && got[r.name] != nil || r.want != nil && !errors.Is(got[r.name], r.want) {
			t.Errorf("%s: %v, want %v", r.name, got[r.name], r.want)
		}
	}
	st := s.Stats()
	if st.Transactions != 3 {
		t.Errorf("%d transactions, want 3 (the first, the held one, the batch)", st.Transactions)
	}
	all, err := s.ReadAll(ctx, 0, 100)
	if err != nil || len(all) != 6 {
		t.Fatalf("log holds %d events (%v), want 6", len(all), err)
	}
}

// waitQueued waits until n appends wait in s's queue.
func waitQueued(t *testing.T, s *postgres.Store, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for s.Queued() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d appends queued, want %d", s.Queued(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// pgtestDSN is the test server's connection string.
func pgtestDSN(t testing.TB) string { return pgtest.DSN(t) }

// TestRetentionGuards: the guards are reported present on a migrated
// schema, and each is reported missing once neutered behind the store's
// back: the trigger disabled, narrowed or dropped, its function replaced
// by one that lets the change through.
func TestRetentionGuards(t *testing.T) {
	ctx := context.Background()
	s := openSchema(t, t.Name(), postgres.DefaultOptions())
	defer s.Close()
	conn := sqlConn(t, s)
	exec := func(q string) {
		t.Helper()
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	check := func(what string, want ...bool) {
		t.Helper()
		gs, err := s.RetentionGuards(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(gs) != len(want) {
			t.Fatalf("%s: %d guards, want %d", what, len(gs), len(want))
		}
		for i, g := range gs {
			if g.Present != want[i] {
				t.Errorf("%s: guard %s present %v, want %v", what, g.Name, g.Present, want[i])
			}
		}
	}
	check("migrated", true, true, true)
	exec("ALTER TABLE events DISABLE TRIGGER events_retained")
	check("trigger disabled", false, true, true)
	exec("ALTER TABLE events ENABLE TRIGGER events_retained")
	check("trigger enabled again", true, true, true)
	exec(`CREATE OR REPLACE FUNCTION payledger_events_retained() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END; $$`)
	check("function neutered", true, false, true)
	exec("DROP TRIGGER events_retained ON events")
	exec("CREATE TRIGGER events_retained BEFORE DELETE ON events FOR EACH STATEMENT EXECUTE FUNCTION payledger_events_retained()")
	check("trigger narrowed to DELETE", false, false, true)
	exec("DROP TRIGGER events_retained ON events")
	check("trigger dropped", false, false, true)
}

// TestOccurredAtRange: the first and last instants the port accepts (years
// 1 and 9999, to the nanosecond) come back as appended, so the hash over
// their RFC 3339 text holds after a read.
func TestOccurredAtRange(t *testing.T) {
	ctx := context.Background()
	s := openSchema(t, t.Name(), postgres.DefaultOptions())
	defer s.Close()
	in := []eventstore.EventData{event(), event(), event()}
	in[0].OccurredAt = time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC)
	in[1].OccurredAt = time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)
	in[2].OccurredAt = time.Date(1969, 12, 31, 23, 59, 59, 999999001, time.FixedZone("-0130", -5400))
	if _, err := s.Append(ctx, "edge", eventstore.NoStream, in); err != nil {
		t.Fatal(err)
	}
	got, err := s.ReadStream(ctx, "edge", 1, 10)
	if err != nil || len(got) != 3 {
		t.Fatalf("read %d events, %v", len(got), err)
	}
	for i, e := range got {
		if !e.OccurredAt.Equal(in[i].OccurredAt) || e.OccurredAt.Location() != time.UTC {
			t.Errorf("event %d occurred at %v, want %v in UTC", i, e.OccurredAt, in[i].OccurredAt.UTC())
		}
	}
	if _, err := eventstore.VerifyChain([32]byte{}, got); err != nil {
		t.Fatal(err)
	}
}

// TestTextFieldsRefused: a stream name or text field PostgreSQL cannot hold
// (a NUL byte, invalid UTF-8) is refused as an invalid append and stores
// nothing, while payloads take any bytes.
func TestTextFieldsRefused(t *testing.T) {
	ctx := context.Background()
	s := openSchema(t, t.Name(), postgres.DefaultOptions())
	defer s.Close()
	bad := func(f func(*eventstore.EventData)) []eventstore.EventData {
		e := event()
		f(&e)
		return []eventstore.EventData{e}
	}
	for name, c := range map[string]struct {
		stream string
		events []eventstore.EventData
	}{
		"NUL in the stream":          {"acc\x00", []eventstore.EventData{event()}},
		"invalid UTF-8 stream":       {"acc\xff", []eventstore.EventData{event()}},
		"NUL in the idempotency key": {"acc", bad(func(e *eventstore.EventData) { e.IdempotencyKey = "k\x00" })},
		"invalid UTF-8 causation":    {"acc", bad(func(e *eventstore.EventData) { e.CausationID = "\xc3\x28" })},
		"NUL in the type":            {"acc", bad(func(e *eventstore.EventData) { e.Type = "T\x00" })},
	} {
		if _, err := s.Append(ctx, c.stream, eventstore.Any, c.events); !errors.Is(err, eventstore.ErrInvalidAppend) {
			t.Errorf("%s: %v, want ErrInvalidAppend", name, err)
		}
	}
	ok := event()
	ok.Payload = []byte{0, 0xff, 0xfe}
	ok.IdempotencyKey = "clé-\u00e9"
	if _, err := s.Append(ctx, "acc", eventstore.NoStream, []eventstore.EventData{ok}); err != nil {
		t.Fatalf("valid append: %v", err)
	}
	if h, err := s.Head(ctx); err != nil || h != 1 {
		t.Fatalf("head %d (%v), want 1", h, err)
	}
}
