// Package pgtest gives tests a PostgreSQL schema of their own on the test
// server: PAYLEDGER_TEST_POSTGRES names it (default the local server's
// database test). When the server cannot be reached the test is skipped
// with the reason, unless PAYLEDGER_REQUIRE_POSTGRES=1 (as in CI), where
// it fails.
package pgtest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultDSN is the test server when PAYLEDGER_TEST_POSTGRES is not set.
const DefaultDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// DSN returns the test server's connection string, skipping (or, with
// PAYLEDGER_REQUIRE_POSTGRES=1, failing) t when the server does not answer.
func DSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv("PAYLEDGER_TEST_POSTGRES")
	if dsn == "" {
		dsn = DefaultDSN
	}
	reach.Do(func() { reachErr = ping(dsn) })
	if reachErr != nil {
		msg := fmt.Sprintf("PostgreSQL at %s is not reachable (%v): set PAYLEDGER_TEST_POSTGRES to a server's URL", dsn, reachErr)
		if os.Getenv("PAYLEDGER_REQUIRE_POSTGRES") == "1" {
			t.Fatal(msg + "; PAYLEDGER_REQUIRE_POSTGRES=1 makes this a failure")
		}
		t.Skip(msg)
	}
	return dsn
}

var (
	reach    sync.Once
	reachErr error
)

func ping(dsn string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return conn.Ping(ctx)
}

// Schema returns a schema name for key, unique to this test binary's run
// and to key, created empty now and dropped (with everything in it) when
// the test ends. Calling it again with the same key in the same test
// returns the same schema without emptying it, so a store can be reopened.
func Schema(t testing.TB, key string) (dsn, schema string) {
	t.Helper()
	dsn = DSN(t)
	sum := sha256.Sum256([]byte(fmt.Sprintf("%d/%s", os.Getpid(), key)))
	schema = "plt_" + hex.EncodeToString(sum[:12])
	created.Lock()
	defer created.Unlock()
	if created.m[schema] {
		return dsn, schema
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect to %s: %v", dsn, err)
	}
	defer conn.Close(context.Background())
	// A schema left by a crashed run whose process had the same id goes.
	name := pgx.Identifier{schema}.Sanitize()
	if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+name+" CASCADE; CREATE SCHEMA "+name); err != nil {
		t.Fatalf("create schema %s: %v", schema, err)
	}
	if created.m == nil {
		created.m = make(map[string]bool)
	}
	created.m[schema] = true
	t.Cleanup(func() { Drop(t, dsn, schema) })
	return dsn, schema
}

var created struct {
	sync.Mutex
	m map[string]bool
}

// Drop removes schema and everything in it.
func Drop(t testing.TB, dsn, schema string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Errorf("drop schema %s: %v", schema, err)
		return
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
		t.Errorf("drop schema %s: %v", schema, err)
	}
}
