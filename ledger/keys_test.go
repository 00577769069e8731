package ledger_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/payledger/payledger/ledger"
)

func testKeys(t *testing.T, seed byte) *ledger.Keys {
	t.Helper()
	master := bytes.Repeat([]byte{seed}, ledger.KeySize)
	k, err := ledger.NewKeys(master, newRand(seed))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestKeysSealOpen(t *testing.T) {
	k := testKeys(t, 1)
	plain := []byte("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")
	sealed, err := k.Seal(plain)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, plain) {
		t.Fatal("sealed bytes contain the plain text")
	}
	got, err := k.Open(sealed)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	again, err := k.Seal(plain)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(again, sealed) {
		t.Error("two seals of the same secret are identical: nonce reused")
	}
	// The same master key (another process, another node) opens it.
	if got, err := testKeys(t, 1).Open(sealed); err != nil || !bytes.Equal(got, plain) {
		t.Errorf("same master, other Keys: %q, %v", got, err)
	}

	tamper := func(i int) []byte {
		b := bytes.Clone(sealed)
		b[i] ^= 0x01
		return b
	}
	cases := []struct {
		name   string
		sealed []byte
		keys   *ledger.Keys
	}{
		{"nonce flipped", tamper(0), k},
		{"ciphertext flipped", tamper(len(sealed) / 2), k},
		{"tag flipped", tamper(len(sealed) - 1), k},
		{"truncated", sealed[:len(sealed)-1], k},
		{"shorter than a nonce", sealed[:5], k},
		{"empty", nil, k},
		{"other master key", sealed, testKeys(t, 2)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got, err := tc.keys.Open(tc.sealed); err == nil {
				t.Errorf("Open succeeded with %q", got)
			}
		})
	}
}

func TestKeysDerivedTokens(t *testing.T) {
	a, a2, b := testKeys(t, 1), testKeys(t, 1), testKeys(t, 2)
	n := "6222020200112233445"
	if a.BankToken(n) != a2.BankToken(n) || a.BankToken(n) == b.BankToken(n) || a.BankToken(n) == a.BankToken(n+"0") {
		t.Error("bank tokens must be deterministic per master key and number")
	}
	if bytes.Contains([]byte(a.BankToken(n)), []byte(n[len(n)-8:])) {
		t.Error("bank token leaks digits")
	}
	if _, err := ledger.NewKeys(make([]byte, ledger.KeySize-1), newRand(1)); err == nil {
		t.Error("NewKeys accepted a short master key")
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nested", "dir", "server.key")
	key, err := ledger.LoadOrCreateKey(path, newRand(1))
	if err != nil {
		t.Fatal(err)
	}
	if len(key) != ledger.KeySize {
		t.Fatalf("key has %d bytes", len(key))
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := st.Mode().Perm(); perm != 0o600 {
		t.Errorf("key file mode %o, want 600", perm)
	}
	if st, err := os.Stat(filepath.Dir(path)); err != nil || st.Mode().Perm()&0o077 != 0 {
		t.Errorf("key directory mode %v, %v: readable by others", st.Mode().Perm(), err)
	}
	// Reloading returns the stored key, whatever the random source.
	again, err := ledger.LoadOrCreateKey(path, newRand(99))
	if err != nil || !bytes.Equal(again, key) {
		t.Fatalf("reload: %x, %v; want %x", again, err, key)
	}
	// A file of the wrong size is refused rather than silently replaced.
	bad := filepath.Join(t.TempDir(), "server.key")
	if err := os.WriteFile(bad, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ledger.LoadOrCreateKey(bad, newRand(1)); err == nil {
		t.Error("a short key file was accepted")
	}
	if b, _ := os.ReadFile(bad); string(b) != "short" {
		t.Error("a bad key file was overwritten")
	}
}
