package postgres_test

import (
	"context"
	"errors"
	"testing"

	"github.com/payledger/payledger/eventstore"
	"github.com/payledger/payledger/eventstore/postgres"
)

// TestExclusive: a second exclusive Store on a log is refused while the
// first holds it; a Store that is not exclusive opens and reads beside
// it. When the first's lock connection dies, a new exclusive Store opens,
// and from then on every append of the first fails (fenced) while the new
// one writes; nothing the first tried is stored.
func TestExclusive(t *testing.T) {
	ctx := context.Background()
	excl := postgres.DefaultOptions()
	excl.Exclusive = true
	a := openSchema(t, t.Name(), excl)
	defer a.Close()
	if _, err := a.Append(ctx, "s", eventstore.NoStream, []eventstore.EventData{event()}); err != nil {
		t.Fatal(err)
	}
	dsnOpts := excl
	dsnOpts.Schema = a.Schema()
	if b, err := postgres.Open(ctx, pgtestDSN(t), dsnOpts); !errors.Is(err, postgres.ErrLocked) {
		if b != nil {
			b.Close()
		}
		t.Fatalf("a second exclusive Open: %v, want ErrLocked", err)
	}
	reader := openSchema(t, t.Name(), postgres.DefaultOptions())
	if h, err := reader.Head(ctx); err != nil || h != 1 {
		t.Fatalf("a reader beside the writer: head %d, %v", h, err)
	}
	reader.Close()

	// The first writer's lock goes with its connection.
	conn := sqlConn(t, a)
	var killed bool
	if err := conn.QueryRow(ctx, `SELECT pg_terminate_backend($1)`, int32(a.LockConnPID())).Scan(&killed); err != nil || !killed {
		t.Fatalf("terminate the lock connection: %v %v", killed, err)
	}
	// Until another writer takes the lease, the first still writes.
	if _, err := a.Append(ctx, "s", 1, []eventstore.EventData{event()}); err != nil {
		t.Fatalf("append before another writer came: %v", err)
	}
	b, err := postgres.Open(ctx, pgtestDSN(t), dsnOpts)
	if err != nil {
		t.Fatalf("exclusive Open after the first lost its lock: %v", err)
	}
	defer b.Close()
	late := event()
	_, err = a.Append(ctx, "s", 2, []eventstore.EventData{late})
	if !errors.Is(err, eventstore.ErrUnavailable) {
		t.Fatalf("the fenced writer's append: %v, want ErrUnavailable", err)
	}
	if _, err := b.Append(ctx, "s", 2, []eventstore.EventData{event()}); err != nil {
		t.Fatalf("the new writer's append: %v", err)
	}
	all, err := b.ReadAll(ctx, 0, 10)
	if err != nil || len(all) != 3 {
		t.Fatalf("log: %d events, %v; want 3", len(all), err)
	}
	for _, e := range all {
		if e.ID == late.ID {
			t.Fatal("the fenced writer's event was stored")
		}
	}
}

// TestShared: shared writers open and append beside each other; an
// exclusive Open is refused while one is open, and a shared Open while an
// exclusive writer holds the log. A shared writer whose lock connection
// died is fenced once an exclusive writer took the lease.
func TestShared(t *testing.T) {
	ctx := context.Background()
	shared := postgres.DefaultOptions()
	shared.Shared = true
	a := openSchema(t, t.Name(), shared)
	defer a.Close()
	opts := shared
	opts.Schema = a.Schema()
	b, err := postgres.Open(ctx, pgtestDSN(t), opts)
	if err != nil {
		t.Fatalf("a second shared Open: %v", err)
	}
	for i, s := range []*postgres.Store{a, b} {
		if _, err := s.Append(ctx, "s", int64(i), []eventstore.EventData{event()}); err != nil {
			t.Fatalf("shared writer %d: %v", i, err)
		}
	}
	excl := opts
	excl.Shared, excl.Exclusive = false, true
	if c, err := postgres.Open(ctx, pgtestDSN(t), excl); !errors.Is(err, postgres.ErrLocked) {
		if c != nil {
			c.Close()
		}
		t.Fatalf("an exclusive Open beside shared writers: %v, want ErrLocked", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	// a's lock goes with its connection: an exclusive writer can now take
	// the lease, and a, still running, must not write after it.
	conn := sqlConn(t, a)
	var killed bool
	if err := conn.QueryRow(ctx, `SELECT pg_terminate_backend($1)`, int32(a.LockConnPID())).Scan(&killed); err != nil || !killed {
		t.Fatalf("terminate the lock connection: %v %v", killed, err)
	}
	c, err := postgres.Open(ctx, pgtestDSN(t), excl)
	if err != nil {
		t.Fatalf("exclusive Open after the shared writers left: %v", err)
	}
	defer c.Close()
	if _, err := a.Append(ctx, "s", 2, []eventstore.EventData{event()}); !errors.Is(err, eventstore.ErrUnavailable) {
		t.Fatalf("the fenced shared writer's append: %v, want ErrUnavailable", err)
	}
	if d, err := postgres.Open(ctx, pgtestDSN(t), opts); !errors.Is(err, postgres.ErrLocked) {
		if d != nil {
			d.Close()
		}
		t.Fatalf("a shared Open beside an exclusive writer: %v, want ErrLocked", err)
	}
	if _, err := c.Append(ctx, "s", 2, []eventstore.EventData{event()}); err != nil {
		t.Fatalf("the exclusive writer's append: %v", err)
	}
}

// TestSharedFencesLostExclusive: an exclusive writer whose lock connection
// died keeps appending until another writer takes the log. A shared
// writer that opens then must fence it as an exclusive one would: the
// exclusive process's caches assume it is the only writer (it credits a
// payee from its cache, unconditioned), so both writing at once could
// pay a payee another node suspended.
func TestSharedFencesLostExclusive(t *testing.T) {
	ctx := context.Background()
	excl := postgres.DefaultOptions()
	excl.Exclusive = true
	a := openSchema(t, t.Name(), excl)
	defer a.Close()
	if _, err := a.Append(ctx, "s", eventstore.NoStream, []eventstore.EventData{event()}); err != nil {
		t.Fatal(err)
	}
	conn := sqlConn(t, a)
	var killed bool
	if err := conn.QueryRow(ctx, `SELECT pg_terminate_backend($1)`, int32(a.LockConnPID())).Scan(&killed); err != nil || !killed {
		t.Fatalf("terminate the lock connection: %v %v", killed, err)
	}
	shared := postgres.DefaultOptions()
	shared.Shared, shared.Schema = true, a.Schema()
	b, err := postgres.Open(ctx, pgtestDSN(t), shared)
	if err != nil {
		t.Fatalf("shared Open after the exclusive writer lost its lock: %v", err)
	}
	defer b.Close()
	c, err := postgres.Open(ctx, pgtestDSN(t), shared)
	if err != nil {
		t.Fatalf("a second shared Open: %v", err)
	}
	defer c.Close()
	late := event()
	if _, err := a.Append(ctx, "s", 1, []eventstore.EventData{late}); !errors.Is(err, eventstore.ErrUnavailable) {
		t.Fatalf("the exclusive writer's append after a shared writer opened: %v, want ErrUnavailable", err)
	}
	// The shared writers do not fence each other.
	for i, s := range []*postgres.Store{b, c} {
		if _, err := s.Append(ctx, "s", int64(1+i), []eventstore.EventData{event()}); err != nil {
			t.Fatalf("shared writer %d: %v", i, err)
		}
	}
	all, err := b.ReadAll(ctx, 0, 10)
	if err != nil || len(all) != 3 {
		t.Fatalf("log: %d events, %v; want 3", len(all), err)
	}
	for _, e := range all {
		if e.ID == late.ID {
			t.Fatal("the fenced exclusive writer's event was stored")
		}
	}
}
