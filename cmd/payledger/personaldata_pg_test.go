package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/personaldata"
)

// TestPersonalDataOnPostgres: with a PostgreSQL log, serve keeps the data
// keys in the same database, importing the data directory's
// personaldata.db (renamed afterwards, said in the log) so that no key
// made before is lost; another process of that database opens the keys;
// rotate-master-key --store refuses while a server runs and rewraps the
// database's keys once it stopped; a server given no master key is
// refused without one being generated.
func TestPersonalDataOnPostgres(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	dir := filepath.Join(root, "data")
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	m := &Main{Config: Config{DataDir: dir, TimeZone: "Asia/Shanghai", Log: quiet}}
	if err := m.Open(ctx); err != nil {
		t.Fatal(err)
	}
	sealed, err := m.PersonalData.Seal("ACC1", "EV1", "Li Wei")
	if err != nil {
		t.Fatal(err)
	}
	erased, err := m.PersonalData.Seal("ACC2", "EV2", "Zhang Min")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.PersonalData.Erase("ACC2"); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}

	store := pgStoreURL(t, true)
	var logBuf bytes.Buffer
	m = &Main{Config: Config{DataDir: dir, TimeZone: "Asia/Shanghai", Store: store, Log: slog.New(slog.NewTextHandler(&logBuf, nil))}}
	if err := m.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = m.Close() }()
	if _, err := os.Stat(filepath.Join(dir, personalDataFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the imported file is still in place: %v", err)
	}
	if renamed, _ := filepath.Glob(filepath.Join(dir, personalDataFile+".imported-*")); len(renamed) != 1 {
		t.Errorf("the imported file renamed: %v", renamed)
	}
	if !strings.Contains(logBuf.String(), "imported the data keys") || !strings.Contains(logBuf.String(), "keys=1") {
		t.Errorf("the log does not tell of the import:\n%s", logBuf.String())
	}
	if plain, err := m.PersonalData.Open("ACC1", "EV1", sealed); err != nil || plain != "Li Wei" {
		t.Fatalf("an imported key: %q %v", plain, err)
	}
	if _, err := m.PersonalData.Open("ACC2", "EV2", erased); !errors.Is(err, personaldata.ErrErased) {
		t.Fatalf("an imported erasure: %v", err)
	}
	master, err := loadMasterKey(dir+".master.key", dir)
	if err != nil {
		t.Fatal(err)
	}
	other, err := openPostgresKeys(ctx, store, "", t.TempDir(), master, false, time.Now, ledger.CryptoRand, quiet)
	if err != nil {
		t.Fatalf("a second process's key store: %v", err)
	}
	if plain, err := other.Open("ACC1", "EV1", sealed); err != nil || plain != "Li Wei" {
		t.Errorf("the second process opens: %q %v", plain, err)
	}
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}

	newKey := filepath.Join(root, "new.key")
	var out, errOut bytes.Buffer
	if err := run(ctx, []string{"keys", "master-key", "--out", newKey}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	rotate := func() error {
		out.Reset()
		errOut.Reset()
		return run(ctx, []string{"keys", "rotate-master-key", "--data", dir, "--store", store, "--new", newKey}, &out, &errOut)
	}
	if err := rotate(); !errors.Is(err, personaldata.ErrLocked) || !strings.Contains(err.Error(), "stop every server") {
		t.Fatalf("rotation beside a running server: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := rotate(); err != nil || !strings.Contains(out.String(), "1 data keys") {
		t.Fatalf("rotate: %v %s%s", err, out.String(), errOut.String())
	}
	if _, err := openPostgresKeys(ctx, store, "", t.TempDir(), master, false, time.Now, ledger.CryptoRand, quiet); !errors.Is(err, personaldata.ErrWrongMasterKey) {
		t.Fatalf("the old master key after the rotation: %v", err)
	}
	// A server with no master key is refused, rather than given a new key
	// that cannot open the keys in the database.
	bare := filepath.Join(root, "bare")
	m = &Main{Config: Config{DataDir: bare, TimeZone: "Asia/Shanghai", Store: store, Log: quiet}}
	if err := m.Open(ctx); err == nil || !strings.Contains(err.Error(), "no master key is given") {
		_ = m.Close()
		t.Fatalf("a server without the master key: %v", err)
	}
	if _, err := os.Stat(bare + ".master.key"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a master key was generated for a log whose keys exist: %v", err)
	}
	m = &Main{Config: Config{DataDir: dir, TimeZone: "Asia/Shanghai", Store: store, MasterKey: newKey, Log: quiet}}
	if err := m.Open(ctx); err != nil {
		t.Fatal(err)
	}
	if plain, err := m.PersonalData.Open("ACC1", "EV1", sealed); err != nil || plain != "Li Wei" {
		t.Fatalf("after the rotation: %q %v", plain, err)
	}
}
