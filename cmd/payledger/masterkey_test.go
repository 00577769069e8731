package main

import (
	"bytes"
	"context"
	"encoding/base64"
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

// TestMasterKeyHandling: a fresh data directory gets a master key beside
// it (0600), which later starts reuse; a directory whose data keys exist
// is refused without its master key or with another; a key file readable
// by others or inside the data directory is refused; so is a key given
// twice.
func TestMasterKeyHandling(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	dir := filepath.Join(root, "data")
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	openWith := func(c Config) error {
		c.DataDir, c.TimeZone, c.Log = dir, "Asia/Shanghai", quiet
		m := &Main{Config: c}
		if err := m.Open(ctx); err != nil {
			return err
		}
		return m.Close()
	}
	wantErr := func(what string, err error, text string) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), text) {
			t.Errorf("%s: %v, want an error saying %q", what, err, text)
		}
	}
	if err := openWith(Config{}); err != nil {
		t.Fatal(err)
	}
	def := dir + ".master.key"
	st, err := os.Stat(def)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("the generated master key: %v %v", st, err)
	}
	if err := openWith(Config{}); err != nil {
		t.Fatalf("a second start with the generated key: %v", err)
	}
	if err := openWith(Config{MasterKey: def}); err != nil {
		t.Fatalf("the generated key given by --master-key: %v", err)
	}
	if err := os.Rename(def, filepath.Join(root, "moved.key")); err != nil {
		t.Fatal(err)
	}
	wantErr("data keys without a master key", openWith(Config{}), "no master key is given")
	if _, err := os.Stat(def); err == nil {
		t.Error("a new master key was generated for a directory whose data keys exist")
	}
	other := filepath.Join(root, "other.key")
	var out, errOut bytes.Buffer
	if err := run(ctx, []string{"keys", "master-key", "--out", other}, &out, &errOut); err != nil {
		t.Fatalf("keys master-key: %v %s", err, errOut.String())
	}
	wantErr("another master key", openWith(Config{MasterKey: other}), "does not open")
	raw, err := os.ReadFile(other)
	if err != nil {
		t.Fatal(err)
	}
	wantErr("another master key from the environment", openWith(Config{MasterKeyB64: strings.TrimSpace(string(raw))}), "does not open")
	moved, _ := os.ReadFile(filepath.Join(root, "moved.key"))
	if err := openWith(Config{MasterKeyB64: strings.TrimSpace(string(moved))}); err != nil {
		t.Fatalf("the right key from the environment: %v", err)
	}
	wantErr("a key given twice", openWith(Config{MasterKey: other, MasterKeyB64: base64.StdEncoding.EncodeToString(make([]byte, 32))}), "not both")
	if err := os.Chmod(filepath.Join(root, "moved.key"), 0o644); err != nil {
		t.Fatal(err)
	}
	wantErr("a key readable by others", openWith(Config{MasterKey: filepath.Join(root, "moved.key")}), "readable by others")
	inside := filepath.Join(dir, "master.key")
	if err := os.WriteFile(inside, moved, 0o600); err != nil {
		t.Fatal(err)
	}
	wantErr("a key inside the data directory", openWith(Config{MasterKey: inside}), "inside the data directory")
}

// TestRotateMasterKey: rotation rewraps every data key, refused while a
// server has the data directory open; afterwards the data opens under the
// new key only, erased keys stay erased, and a copy of personaldata.db
// from before opens only under the old key (which destroying makes final).
func TestRotateMasterKey(t *testing.T) {
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
	if _, err := m.PersonalData.Seal("ACC2", "EV2", "Zhang Min"); err != nil {
		t.Fatal(err)
	}
	if err := m.PersonalData.Erase("ACC2"); err != nil {
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
		return run(ctx, []string{"keys", "rotate-master-key", "--data", dir, "--new", newKey}, &out, &errOut)
	}
	if err := rotate(); err == nil || !strings.Contains(err.Error(), "is held") {
		t.Fatalf("rotation beside a running server: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(filepath.Join(dir, personalDataFile))
	if err != nil {
		t.Fatal(err)
	}
	copyPath := filepath.Join(root, "copy.db")
	if err := os.WriteFile(copyPath, before, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := rotate(); err != nil || !strings.Contains(out.String(), "1 data keys") {
		t.Fatalf("rotate: %v %s%s", err, out.String(), errOut.String())
	}
	openWith := func(path string, key []byte) (*personaldata.Store, error) {
		return personaldata.Open(path, key, time.Now, ledger.CryptoRand)
	}
	oldKey, err := loadMasterKey(dir+".master.key", dir)
	if err != nil {
		t.Fatal(err)
	}
	next, err := loadMasterKey(newKey, dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := openWith(filepath.Join(dir, personalDataFile), oldKey); !errors.Is(err, personaldata.ErrWrongMasterKey) {
		t.Fatalf("the old key after rotation: %v", err)
	}
	st, err := openWith(filepath.Join(dir, personalDataFile), next)
	if err != nil {
		t.Fatal(err)
	}
	if plain, err := st.Open("ACC1", "EV1", sealed); err != nil || plain != "Li Wei" {
		t.Errorf("a field after rotation: %q %v", plain, err)
	}
	if s, err := st.StateOf("ACC2"); err != nil || s != personaldata.Erased {
		t.Errorf("an erased key after rotation: %v %v", s, err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := openWith(copyPath, next); !errors.Is(err, personaldata.ErrWrongMasterKey) {
		t.Errorf("a copy from before the rotation opened under the new key: %v", err)
	}
}
