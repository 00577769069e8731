package main

import (
	"bytes"
	"context"
	"errors"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/payledger/payledger/eventstore/postgres"
	"github.com/payledger/payledger/internal/pgtest"
	"github.com/payledger/payledger/projections"
)

func TestParseReadModels(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", "sqlite:" + filepath.Join("d", "readmodels.db")},
		{"sqlite:/var/lib/rm.db", "sqlite:/var/lib/rm.db"},
		{"postgres://u@h/db?search_path=rm", "postgres://u@h/db?search_path=rm"},
		{"postgresql://u@h/db", "postgresql://u@h/db"},
	} {
		got, err := parseReadModels(c.in, "d")
		if err != nil || got != c.want {
			t.Errorf("parseReadModels(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"sqlite:", "mysql://u:secret@h/db", "readmodels.db"} {
		_, err := parseReadModels(bad, "d")
		if err == nil {
			t.Errorf("parseReadModels(%q) succeeded", bad)
		} else if strings.Contains(err.Error(), "secret") {
			t.Errorf("parseReadModels(%q): %v shows the password", bad, err)
		}
	}
}

// pgSchemaURL returns a URL of a fresh, empty schema on the test server
// whose search_path names it (dropped after the test).
func pgSchemaURL(t *testing.T, key string) string {
	t.Helper()
	dsn, schema := pgtest.Schema(t, t.Name()+"/"+key)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// TestReadModelsOnPostgres: the demo serves from PostgreSQL read models
// (--read-models, as serve takes it) over a PostgreSQL log; rebuilding
// them gives the rows the live projector wrote and what a rebuild of a
// SQLite copy of the log gives; reconcile reads them beside a projector
// and prints what it prints on the SQLite copy; rebuild refuses while a
// projector holds them; PAYLEDGER_READ_MODELS stands in for the flag.
func TestReadModelsOnPostgres(t *testing.T) {
	store := pgStoreURL(t, true)
	rmURL := pgSchemaURL(t, "readmodels")
	if out := runOut(t, "demo", "--store", store, "--read-models", rmURL); !strings.HasSuffix(out, "demo: ok\n") {
		t.Fatalf("demo did not end with ok:\n%s", out)
	}
	ctx := context.Background()
	pg, err := postgres.Open(ctx, store, postgres.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	sqDir := t.TempDir()
	copyLog(t, pg, filepath.Join(sqDir, "events.db"))
	if err := pg.Close(); err != nil {
		t.Fatal(err)
	}

	rmRe := regexp.MustCompile(`read-model digest before (\S+)\nrebuild: read-model digest after  (\S+)`)
	pgRebuild := runOut(t, "rebuild", "--store", store, "--read-models", rmURL)
	sqRebuild := runOut(t, "rebuild", "--data", sqDir)
	pgRM, sqRM := rmRe.FindStringSubmatch(pgRebuild), rmRe.FindStringSubmatch(sqRebuild)
	if pgRM == nil || sqRM == nil || pgRM[2] != sqRM[2] || !strings.Contains(pgRebuild, "rebuild: ok (identical read models)") {
		t.Fatalf("rebuild --read-models postgres:\n%s\nrebuild on the SQLite copy:\n%s", pgRebuild, sqRebuild)
	}
	// The SQLite log into new PostgreSQL read models of their own (which
	// rebuild first builds by catching up): the same rows again.
	rm2 := pgSchemaURL(t, "readmodels2")
	var out, errOut bytes.Buffer
	err = run(ctx, []string{"rebuild", "--data", sqDir, "--read-models", rm2}, &out, &errOut)
	if m := rmRe.FindStringSubmatch(out.String()); err != nil || m == nil || m[2] != sqRM[2] {
		t.Fatalf("rebuild from the SQLite copy into another schema: %v\n%s", err, out.String())
	}

	// A projector holds the read models from here, as serve does.
	holder, err := projections.OpenPostgres(ctx, rmURL, "")
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	out.Reset()
	err = run(ctx, []string{"rebuild", "--store", store, "--read-models", rmURL}, &out, &errOut)
	if !errors.Is(err, projections.ErrLocked) {
		t.Fatalf("rebuild beside a projector: %v, want ErrLocked\n%s", err, out.String())
	}
	pgRec := runOut(t, "reconcile", "--store", store, "--read-models", rmURL, "--json")
	sqRec := runOut(t, "reconcile", "--data", sqDir, "--json")
	if pgRec != sqRec || !strings.Contains(pgRec, `"through"`) {
		t.Fatalf("reconcile --read-models postgres:\n%s\nreconcile on the SQLite copy:\n%s", pgRec, sqRec)
	}
	t.Setenv(readModelsEnv, rmURL)
	if got := runOut(t, "reconcile", "--store", store, "--json"); got != pgRec {
		t.Fatalf("reconcile with %s:\n%s\nwith --read-models:\n%s", readModelsEnv, got, pgRec)
	}
	// Read models of another log are refused, not served.
	if err := run(ctx, []string{"reconcile", "--data", t.TempDir(), "--read-models", pgSchemaURL(t, "empty")}, &out, &errOut); err == nil ||
		!strings.Contains(err.Error(), "no read models there") {
		t.Fatalf("reconcile of a schema without read models: %v", err)
	}
}
