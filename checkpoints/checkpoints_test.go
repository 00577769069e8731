package checkpoints

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/payledger/payledger/eventstore"
	"github.com/payledger/payledger/eventstore/merkle"
)

// fakeLog is a log of event hashes; read counts the events read.
type fakeLog struct {
	hashes []merkle.Hash
	read   int
}

func (f *fakeLog) Head(context.Context) (int64, error) { return int64(len(f.hashes)), nil }

func (f *fakeLog) ReadAll(_ context.Context, after int64, limit int) ([]eventstore.Event, error) {
	var out []eventstore.Event
	for p := after; p < int64(len(f.hashes)) && len(out) < limit; p++ {
		out = append(out, eventstore.Event{Position: p + 1, Hash: f.hashes[p]})
	}
	f.read += len(out)
	return out, nil
}

func grow(f *fakeLog, n int) {
	for i := 0; i < n; i++ {
		f.hashes = append(f.hashes, sha256.Sum256([]byte(fmt.Sprint("event ", len(f.hashes)))))
	}
}

func key(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return priv
}

func TestSignAndVerify(t *testing.T) {
	priv := key(t)
	pub := priv.Public().(ed25519.PublicKey)
	root := sha256.Sum256([]byte("root"))
	at := time.Date(2026, 12, 6, 1, 2, 3, 4, time.UTC)
	c := Sign(priv, 42, root, at)
	if got, err := c.Verify(pub); err != nil || got != root {
		t.Fatalf("verify: %x %v", got, err)
	}
	for name, bad := range map[string]Checkpoint{
		"size": {Size: 43, Root: c.Root, Time: c.Time, Signature: c.Signature},
		"time": {Size: 42, Root: c.Root, Time: c.Time.Add(time.Nanosecond), Signature: c.Signature},
		"root": {Size: 42, Root: strings.Repeat("00", 32), Time: c.Time, Signature: c.Signature},
	} {
		if _, err := bad.Verify(pub); !errors.Is(err, ErrSignature) {
			t.Errorf("%s changed: %v", name, err)
		}
	}
	if _, err := c.Verify(key(t).Public().(ed25519.PublicKey)); !errors.Is(err, ErrSignature) {
		t.Errorf("another key: %v", err)
	}
}

func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "signing.key")
	pub, err := CreateKey(path, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := CreateKey(path, rand.Reader); err == nil {
		t.Fatal("a key file was overwritten")
	}
	priv, err := LoadKey(path)
	if err != nil || !priv.Public().(ed25519.PublicKey).Equal(pub) {
		t.Fatalf("load: %v", err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKey(path); err == nil || !strings.Contains(err.Error(), "readable by others") {
		t.Fatalf("a world-readable key loaded: %v", err)
	}
	pubPath := filepath.Join(dir, "signing.pub")
	if err := os.WriteFile(pubPath, []byte(EncodePublicKey(pub)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := LoadPublicKey(pubPath); err != nil || !got.Equal(pub) {
		t.Fatalf("public key: %v", err)
	}
}

// TestSignerResumes: checkpoints follow the log; a restarted signer reads
// only the events after its last complete block of blockSize; an export is
// written once.
func TestSignerResumes(t *testing.T) {
	ctx := context.Background()
	dir, export := t.TempDir(), t.TempDir()
	priv := key(t)
	log := &fakeLog{}
	grow(log, 2100)
	now := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { now = now.Add(time.Minute); return now }
	s, err := NewSigner(log, priv, dir, export, clock)
	if err != nil {
		t.Fatal(err)
	}
	c1, err := s.Checkpoint(ctx)
	if err != nil || c1.Size != 2100 {
		t.Fatalf("first: %+v %v", c1, err)
	}
	if again, err := s.Checkpoint(ctx); err != nil || again != c1 {
		t.Fatalf("nothing new: %+v %v", again, err)
	}
	grow(log, 1)
	log.read = 0
	s2, err := NewSigner(log, priv, dir, export, clock)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := s2.Checkpoint(ctx)
	if err != nil || c2.Size != 2101 || log.read != 2100-2*blockSize+1 {
		t.Fatalf("after a restart: %+v %v, read %d events", c2, err, log.read)
	}
	if root, _ := c2.Verify(priv.Public().(ed25519.PublicKey)); root != merkle.Root(log.hashes) {
		t.Fatal("the resumed tree's root is not the log's")
	}
	all, err := Read(export)
	if err != nil || len(all) != 2 || all[0] != c1 || all[1] != c2 {
		t.Fatalf("exported %+v %v", all, err)
	}
	logged, err := Read(dir)
	if err != nil || len(logged) != 2 {
		t.Fatalf("logged %+v %v", logged, err)
	}
}

// TestCheckerAttacks: a log that still holds what was signed passes; one
// with an event rewritten, removed or swapped, or truncated, fails and
// names the checkpoint; a checkpoint not signed by the key fails first.
func TestCheckerAttacks(t *testing.T) {
	priv := key(t)
	pub := priv.Public().(ed25519.PublicKey)
	log := &fakeLog{}
	grow(log, 3000)
	var cps []Checkpoint
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, n := range []int{0, 1, 2, 3, 1000, 1001, 2500} {
		cps = append(cps, Sign(priv, uint64(n), merkle.Root(log.hashes[:n]), at.Add(time.Duration(n)*time.Second)))
	}
	check := func(hashes []merkle.Hash) error {
		c, err := NewChecker(pub, cps)
		if err != nil {
			return err
		}
		for _, h := range hashes {
			if err := c.Add(h); err != nil {
				return err
			}
		}
		if err := c.Done(); err != nil {
			return err
		}
		if c.Checked != len(cps) {
			return fmt.Errorf("checked %d of %d", c.Checked, len(cps))
		}
		return nil
	}
	if err := check(log.hashes); err != nil {
		t.Fatalf("the honest log: %v", err)
	}
	rewritten := append([]merkle.Hash(nil), log.hashes...)
	rewritten[1500][0] ^= 1
	swapped := append([]merkle.Hash(nil), log.hashes...)
	swapped[10], swapped[11] = swapped[11], swapped[10]
	removed := append(append([]merkle.Hash(nil), log.hashes[:700]...), log.hashes[701:]...)
	for name, c := range map[string]struct {
		hashes []merkle.Hash
		size   uint64
	}{
		"rewritten": {rewritten, 2500}, "swapped": {swapped, 1000}, "removed": {removed, 1000}, "truncated": {log.hashes[:2499], 2500},
	} {
		err := check(c.hashes)
		var p Problem
		if !errors.As(err, &p) || p.Checkpoint.Size != c.size {
			t.Errorf("%s: %v, want a problem with the checkpoint of %d", name, err, c.size)
		}
	}
	forged := append([]Checkpoint(nil), cps...)
	forged[4] = Sign(key(t), 1000, merkle.Root(rewritten[:1000]), at)
	if _, err := NewChecker(pub, forged); err == nil {
		t.Error("a checkpoint signed by another key was accepted")
	}
}
