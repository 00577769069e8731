package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/payledger/payledger/eventstore"
)

// benchAppend measures one-event appends from many goroutines to many
// streams (Any, so no conflicts) and reports durable events per second.
func benchAppend(b *testing.B, group bool, observe func(time.Duration)) {
	opts := DefaultOptions()
	opts.GroupCommit = group
	opts.ObserveSync = observe
	s, err := Open(filepath.Join(b.TempDir(), "events.db"), opts)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	payload := []byte(`{"amount":"12.34","currency":"EUR","account":"01J0000000000000000000000"}`)
	now := time.Now()
	var worker atomic.Int64
	b.SetParallelism(16) // 16 × GOMAXPROCS appending goroutines
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		w := worker.Add(1)
		i := 0
		for pb.Next() {
			stream := fmt.Sprintf("acc-%d-%d", w, i%64)
			i++
			e := eventstore.EventData{ID: ulid.Make().String(), Type: "Deposited", SchemaVersion: 1, OccurredAt: now, Payload: payload}
			if _, err := s.Append(context.Background(), stream, eventstore.Any, []eventstore.EventData{e}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	elapsed := time.Since(start)
	b.StopTimer()
	st := s.Stats()
	b.ReportMetric(float64(st.Events)/elapsed.Seconds(), "events/s")
	if st.Transactions > 0 {
		b.ReportMetric(float64(st.Events)/float64(st.Transactions), "events/tx")
	}
}

func BenchmarkAppendGroupCommit(b *testing.B)   { benchAppend(b, true, nil) }
func BenchmarkAppendNoGroupCommit(b *testing.B) { benchAppend(b, false, nil) }

// BenchmarkAppendGroupCommitObserved is BenchmarkAppendGroupCommit with a
// sync observer as cheap as serve's histogram, to show that observing each
// transaction's fsync costs the write path nothing measurable.
func BenchmarkAppendGroupCommitObserved(b *testing.B) {
	var n, total atomic.Int64
	benchAppend(b, true, func(d time.Duration) { n.Add(1); total.Add(int64(d)) })
	if n.Load() > 0 {
		b.ReportMetric(float64(total.Load())/float64(n.Load())/1e3, "us/sync")
	}
}

// legacyEventsTable is the one-row-per-event table of schemas 1 and 2.
const legacyEventsTable = `CREATE TABLE events (
	position        INTEGER PRIMARY KEY,
	id              TEXT    NOT NULL UNIQUE,
	stream          TEXT    NOT NULL,
	version         INTEGER NOT NULL CHECK (version >= 1),
	type            TEXT    NOT NULL,
	schema_version  INTEGER NOT NULL,
	occurred_at     TEXT    NOT NULL,
	causation_id    TEXT    NOT NULL DEFAULT '',
	correlation_id  TEXT    NOT NULL DEFAULT '',
	idempotency_key TEXT    NOT NULL DEFAULT '',
	payload         BLOB    NOT NULL,
	prev_hash       BLOB    NOT NULL CHECK (length(prev_hash) = 32),
	hash            BLOB    NOT NULL CHECK (length(hash) = 32)
)`

const sqlLegacyInsert = `INSERT INTO events (id, stream, version, type, schema_version, occurred_at,
	causation_id, correlation_id, idempotency_key, payload, prev_hash, hash)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

// BenchmarkInsertFloor is the floor under a one-row-per-event SQLite log
// through this driver, as schemas 1 and 2 kept it: bare INSERTs of
// event-sized rows (no stream index, no hashing, no Go-side work) in
// 200-row transactions at synchronous=FULL. Compare its ns/op with
// BenchmarkAppendGroupCommit's, which packs events into segments.
func BenchmarkInsertFloor(b *testing.B) {
	db, err := sql.Open("sqlite", dsn(filepath.Join(b.TempDir(), "floor.db"), false, "FULL"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, legacyEventsTable); err != nil {
		b.Fatal(err)
	}
	payload := []byte(`{"amount":"12.34","currency":"EUR","account":"01J0000000000000000000000"}`)
	hash := make([]byte, 32)
	occurred := time.Now().UTC().Format(time.RFC3339Nano)
	b.ReportAllocs()
	b.ResetTimer()
	var tx *sql.Tx
	var ins *sql.Stmt
	for i := range b.N {
		if i%200 == 0 {
			if tx != nil {
				if err := tx.Commit(); err != nil {
					b.Fatal(err)
				}
			}
			if tx, err = db.BeginTx(ctx, nil); err != nil {
				b.Fatal(err)
			}
			if ins, err = tx.PrepareContext(ctx, sqlLegacyInsert); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := ins.ExecContext(ctx, ulid.Make().String(), fmt.Sprintf("acc-%d", i%2048), i/2048+1, "Deposited", 1,
			occurred, "", "", "", payload, hash, hash); err != nil {
			b.Fatal(err)
		}
	}
	if tx != nil {
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
}
