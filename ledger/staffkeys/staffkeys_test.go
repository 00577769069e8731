package staffkeys

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock advances one second per reading so every stamp is distinct and
// predictable.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(time.Second)
	return c.now
}

func newClock() *fakeClock {
	return &fakeClock{now: time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)}
}

func seededReader(seed byte) io.Reader {
	var s [32]byte
	s[0] = seed
	return rand.NewChaCha8(s)
}

func openAt(t *testing.T, path string, clock *fakeClock, seed byte) *Store {
	t.Helper()
	s, err := Open(path, clock.Now, seededReader(seed))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func openTemp(t *testing.T) (*Store, string, *fakeClock) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "staffkeys.db")
	clock := newClock()
	return openAt(t, path, clock, 1), path, clock
}

func TestCreateAuthenticateList(t *testing.T) {
	ctx := context.Background()
	s, _, _ := openTemp(t)
	token, k, err := s.Create(ctx, RoleFunding, "treasury desk")
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if !strings.HasPrefix(k.ID, "key_") || len(k.ID) != 4+26 {
		t.Fatalf("id %q: want key_ + 26-char ULID", k.ID)
	}
	if want := "plk_" + strings.TrimPrefix(k.ID, "key_") + "_"; !strings.HasPrefix(token, want) || len(token) != tokenLen {
		t.Fatalf("token %q: want prefix %q and length %d", token, want, tokenLen)
	}
	if k.Role != RoleFunding || k.Label != "treasury desk" || k.CreatedAt.IsZero() || !k.Active() || k.Uses != 0 {
		t.Fatalf("created key = %+v", k)
	}

	for i := int64(1); i <= 2; i++ {
		got, err := s.Authenticate(ctx, token)
		if err != nil {
			t.Fatalf("Authenticate #%d: %v", i, err)
		}
		if got.ID != k.ID || got.Role != RoleFunding || got.Uses != i || got.LastUsedAt.IsZero() || !got.LastUsedAt.After(k.CreatedAt) {
			t.Fatalf("Authenticate #%d = %+v", i, got)
		}
	}

	_, k2, err := s.Create(ctx, RoleAuditor, "")
	if err != nil {
		t.Fatalf("Create second: %v", err)
	}
	keys, err := s.List(ctx)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(keys) != 2 || keys[0].ID != k.ID || keys[1].ID != k2.ID {
		t.Fatalf("List = %+v, want %s then %s", keys, k.ID, k2.ID)
	}
	if keys[0].Uses != 2 || keys[0].LastUsedAt.IsZero() || !keys[0].CreatedAt.Equal(k.CreatedAt) {
		t.Fatalf("listed first key = %+v", keys[0])
	}
	if keys[1].Uses != 0 || !keys[1].LastUsedAt.IsZero() {
		t.Fatalf("listed unused key = %+v", keys[1])
	}
}

func TestTokenNotInDatabaseFiles(t *testing.T) {
	ctx := context.Background()
	s, path, _ := openTemp(t)
	var tokens []string
	for _, r := range Roles() {
		token, _, err := s.Create(ctx, r, "label "+string(r))
		if err != nil {
			t.Fatalf("Create %s: %v", r, err)
		}
		if _, err := s.Authenticate(ctx, token); err != nil {
			t.Fatalf("Authenticate: %v", err)
		}
		tokens = append(tokens, token)
	}
	checked := 0
	for _, p := range []string{path, path + "-wal"} {
		data, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatalf("read %s: %v", p, err)
		}
		checked++
		for _, tok := range tokens {
			secret := tok[strings.LastIndexByte(tok, '_')+1:]
			if bytes.Contains(data, []byte(tok)) || bytes.Contains(data, []byte(secret)) {
				t.Fatalf("%s contains a token or its secret", filepath.Base(p))
			}
		}
	}
	if checked == 0 {
		t.Fatal("no database file to check")
	}
}

func TestFileMode(t *testing.T) {
	ctx := context.Background()
	s, path, _ := openTemp(t)
	if _, _, err := s.Create(ctx, RoleOperator, "mode"); err != nil {
		t.Fatalf("Create: %v", err)
	}
	for _, p := range []string{path, path + "-wal"} {
		fi, err := os.Stat(p)
		if errors.Is(err, os.ErrNotExist) && p != path {
			continue
		}
		if err != nil {
			t.Fatalf("stat: %v", err)
		}
		if m := fi.Mode().Perm(); m != 0o600 {
			t.Fatalf("%s mode = %o, want 600", filepath.Base(p), m)
		}
	}
}

func TestRejectedTokens(t *testing.T) {
	ctx := context.Background()
	s, _, _ := openTemp(t)
	token, k, err := s.Create(ctx, RoleFinance, "finance")
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	revokedToken, rk, err := s.Create(ctx, RoleCompliance, "to revoke")
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if _, err := s.Revoke(ctx, rk.ID); err != nil {
		t.Fatalf("Revoke: %v", err)
	}

	sep := strings.LastIndexByte(token, '_')
	flip := []byte(token)
	if flip[sep+1] == 'A' {
		flip[sep+1] = 'B'
	} else {
		flip[sep+1] = 'A'
	}
	other, err := Open(filepath.Join(t.TempDir(), "other.db"), newClock().Now, seededReader(9))
	if err != nil {
		t.Fatalf("Open other: %v", err)
	}
	defer other.Close()
	unknown, _, err := other.Create(ctx, RoleFinance, "elsewhere")
	if err != nil {
		t.Fatalf("Create elsewhere: %v", err)
	}

	cases := map[string]string{
		"revoked":              revokedToken,
		"unknown id":           unknown,
		"wrong secret":         string(flip),
		"secret of other key":  token[:sep] + revokedToken[strings.LastIndexByte(revokedToken, '_'):],
		"truncated":            token[:len(token)-1],
		"extra byte":           token + "A",
		"lowercase id":         "plk_" + strings.ToLower(token[4:sep]) + token[sep:],
		"garbage":              "not a key at all",
		"empty":                "",
		"prefix only":          "plk_",
		"key id not token":     k.ID,
		"over-long":            token + strings.Repeat("x", 300),
		"bad base64":           token[:sep+1] + strings.Repeat("!", secretLen),
		"bearer prefix kept":   "Bearer " + token,
		"id with no separator": "plk_" + token[4:sep] + "x" + token[sep+1:],
	}
	for name, tok := range cases {
		got, err := s.Authenticate(ctx, tok)
		if err != ErrInvalidKey { //nolint:errorlint // the sentinel itself, unwrapped, so no detail leaks
			t.Errorf("%s: Authenticate = %+v, %v; want exactly ErrInvalidKey", name, got, err)
		}
	}
	keys, err := s.List(ctx)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	for _, k := range keys {
		if k.Uses != 0 {
			t.Errorf("rejected tokens counted a use of %s: %+v", k.ID, k)
		}
	}
	if _, err := s.Authenticate(ctx, token); err != nil {
		t.Fatalf("the real token stopped working: %v", err)
	}
}

func TestRevoke(t *testing.T) {
	ctx := context.Background()
	s, _, _ := openTemp(t)
	token, k, err := s.Create(ctx, RoleRegulator, "regulator")
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	r1, err := s.Revoke(ctx, k.ID)
	if err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	if r1.RevokedAt.IsZero() || r1.Active() || r1.ID != k.ID || r1.Role != RoleRegulator {
		t.Fatalf("Revoke = %+v", r1)
	}
	r2, err := s.Revoke(ctx, k.ID)
	if err != nil {
		t.Fatalf("second Revoke: %v", err)
	}
	if !r2.RevokedAt.Equal(r1.RevokedAt) {
		t.Fatalf("second Revoke moved RevokedAt from %v to %v", r1.RevokedAt, r2.RevokedAt)
	}
	if _, err := s.Authenticate(ctx, token); err != ErrInvalidKey {
		t.Fatalf("Authenticate revoked = %v, want ErrInvalidKey", err)
	}
	for _, id := range []string{"key_01ARZ3NDEKTSV4RRFFQ69G5FAV", "", "nonsense", strings.Repeat("k", 10000)} {
		if _, err := s.Revoke(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Revoke(%.20q) = %v, want ErrNotFound", id, err)
		}
	}
	var created, revoked int
	rows, err := s.db.QueryContext(ctx, "SELECT action FROM key_events WHERE key_id = ?", k.ID)
	if err != nil {
		t.Fatalf("query key_events: %v", err)
	}
	defer rows.Close()
	for rows.Next() {
		var a string
		if err := rows.Scan(&a); err != nil {
			t.Fatalf("scan: %v", err)
		}
		switch a {
		case "created":
			created++
		case "revoked":
			revoked++
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("rows: %v", err)
	}
	if created != 1 || revoked != 1 {
		t.Fatalf("key_events: %d created, %d revoked; want 1 and 1", created, revoked)
	}
}

// TestTwoStores simulates the CLI and the server holding the same file open.
func TestTwoStores(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "staffkeys.db")
	clock := newClock()
	server := openAt(t, path, clock, 1)
	cli := openAt(t, path, clock, 2)

	token, k, err := cli.Create(ctx, RoleOperator, "front office")
	if err != nil {
		t.Fatalf("cli Create: %v", err)
	}
	got, err := server.Authenticate(ctx, token)
	if err != nil || got.ID != k.ID || got.Role != RoleOperator {
		t.Fatalf("server Authenticate = %+v, %v", got, err)
	}
	keys, err := cli.List(ctx)
	if err != nil || len(keys) != 1 || keys[0].Uses != 1 {
		t.Fatalf("cli List after a use = %+v, %v", keys, err)
	}
	if _, err := cli.Revoke(ctx, k.ID); err != nil {
		t.Fatalf("cli Revoke: %v", err)
	}
	if _, err := server.Authenticate(ctx, token); err != ErrInvalidKey {
		t.Fatalf("server Authenticate after cli Revoke = %v, want ErrInvalidKey", err)
	}

	// Concurrent writers in both stores must wait for each other, not fail.
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for _, st := range []*Store{server, cli} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				if _, _, err := st.Create(ctx, RoleFinance, "concurrent"); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent Create: %v", err)
	}
	keys, err = server.List(ctx)
	if err != nil || len(keys) != 41 {
		t.Fatalf("List = %d keys, %v; want 41", len(keys), err)
	}
}

func TestReopenKeepsKeys(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "staffkeys.db")
	clock := newClock()
	s, err := Open(path, clock.Now, seededReader(1))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	token, k, err := s.Create(ctx, RoleFunding, "")
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s2 := openAt(t, path, clock, 2)
	got, err := s2.Authenticate(ctx, token)
	if err != nil || got.ID != k.ID {
		t.Fatalf("Authenticate after reopen = %+v, %v", got, err)
	}
}

func TestParseRole(t *testing.T) {
	want := []Role{"operator", "funding", "finance", "compliance", "regulator", "auditor"}
	if got := Roles(); len(got) != len(want) {
		t.Fatalf("Roles() = %v", got)
	}
	for i, r := range Roles() {
		if r != want[i] {
			t.Fatalf("Roles()[%d] = %q, want %q", i, r, want[i])
		}
		got, err := ParseRole(string(r))
		if err != nil || got != r {
			t.Fatalf("ParseRole(%q) = %q, %v", r, got, err)
		}
	}
	for _, bad := range []string{"", "admin", "Funding", " funding", "funding "} {
		_, err := ParseRole(bad)
		if err == nil {
			t.Fatalf("ParseRole(%q) accepted", bad)
		}
		for _, r := range want {
			if !strings.Contains(err.Error(), string(r)) {
				t.Fatalf("ParseRole(%q) error %q does not name %q", bad, err, r)
			}
		}
	}
}

func TestCreateValidates(t *testing.T) {
	ctx := context.Background()
	s, _, _ := openTemp(t)
	if _, _, err := s.Create(ctx, Role("admin"), ""); err == nil || !strings.Contains(err.Error(), "operator") {
		t.Fatalf("Create unknown role = %v, want an error naming the roles", err)
	}
	if _, _, err := s.Create(ctx, RoleFunding, strings.Repeat("é", MaxLabelRunes)); err != nil {
		t.Fatalf("Create with a %d-rune label: %v", MaxLabelRunes, err)
	}
	for _, bad := range []string{strings.Repeat("a", MaxLabelRunes+1), "two\nlines", "tab\there", "\xff"} {
		if _, _, err := s.Create(ctx, RoleFunding, bad); err == nil {
			t.Fatalf("Create accepted label %q", bad)
		}
	}
	keys, err := s.List(ctx)
	if err != nil || len(keys) != 1 {
		t.Fatalf("List = %d keys, %v; want only the valid one", len(keys), err)
	}
}
