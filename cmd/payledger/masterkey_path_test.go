package main

import (
	"crypto/rand"
	"encoding/base64"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMasterKeyInsideDataDirByAnotherPath: a master key inside the data
// directory is refused also when either path reaches it another way: a
// file whose name starts with "..", the data directory named through a
// symbolic link, or the key file a symbolic link into the directory.
func TestMasterKeyInsideDataDirByAnotherPath(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "data")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	key := []byte(base64.StdEncoding.EncodeToString(make([]byte, 32)) + "\n")
	for _, name := range []string{"master.key", "..master.key"} {
		if err := os.WriteFile(filepath.Join(dir, name), key, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(dir, filepath.Join(root, "data-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "master.key"), filepath.Join(root, "key-link")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ what, key, dir string }{
		{"a name starting with ..", filepath.Join(dir, "..master.key"), dir},
		{"the data directory through a link", filepath.Join(dir, "master.key"), filepath.Join(root, "data-link")},
		{"the key through a link", filepath.Join(root, "key-link"), dir},
	} {
		if _, err := loadMasterKey(c.key, c.dir); err == nil || !strings.Contains(err.Error(), "inside the data directory") {
			t.Errorf("%s: %v, want the key refused as inside the data directory", c.what, err)
		}
	}
	outside := filepath.Join(root, "data.master.key")
	if err := os.WriteFile(outside, key, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadMasterKey(outside, filepath.Join(root, "data-link")); err != nil {
		t.Errorf("a key beside the directory: %v", err)
	}
}

// TestMasterKeyGeneratedBesideDot: serve run inside its data directory
// (--data .) generates the master key beside the directory, not in it
// as "..master.key".
func TestMasterKeyGeneratedBesideDot(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "data")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	c := Config{DataDir: ".", Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Rand: rand.Reader}
	if _, err := c.masterKey(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "data.master.key")); err != nil {
		t.Errorf("no master key beside the directory: %v", err)
	}
	if names, _ := filepath.Glob(filepath.Join(dir, "*master.key")); len(names) > 0 {
		t.Errorf("a master key generated inside the data directory: %v", names)
	}
}
