package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
