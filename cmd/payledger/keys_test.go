package main

import (
	"bytes"
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func runKeys(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), append([]string{"keys"}, args...), &out, &errb)
	return out.String(), errb.String(), err
}

func TestKeysCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")

	out, errOut, err := runKeys(t, "create", "--role", "funding", "--label", "treasury desk", "--data", dir)
	if err != nil {
		t.Fatalf("create: %v\n%s", err, errOut)
	}
	token := regexp.MustCompile(`(?m)^plk_[0-9A-Z]{26}_[A-Za-z0-9_-]{43}$`).FindString(out)
	id := regexp.MustCompile(`key_[0-9A-Z]{26}`).FindString(out)
	if token == "" || id == "" || !strings.Contains(out, "funding") || !strings.Contains(out, "only this once") {
		t.Fatalf("create output lacks the id, role, token line or warning:\n%s", out)
	}

	out, errOut, err = runKeys(t, "list", "--data", dir)
	if err != nil {
		t.Fatalf("list: %v\n%s", err, errOut)
	}
	if strings.Contains(out, token) || strings.Contains(out, token[len(token)-43:]) {
		t.Fatalf("list printed the token:\n%s", out)
	}
	if !strings.Contains(out, id) || !strings.Contains(out, "treasury desk") || !strings.Contains(out, "active") {
		t.Fatalf("list output lacks the key:\n%s", out)
	}

	// The ID before the flags, as an operator is likely to type it.
	out, errOut, err = runKeys(t, "revoke", id, "--data", dir)
	if err != nil {
		t.Fatalf("revoke: %v\n%s", err, errOut)
	}
	if !strings.Contains(out, id) || !strings.Contains(out, "revoked") {
		t.Fatalf("revoke output:\n%s", out)
	}
	// And after them; revoking again is harmless.
	if _, errOut, err := runKeys(t, "revoke", "--data", dir, id); err != nil {
		t.Fatalf("second revoke: %v\n%s", err, errOut)
	}

	out, _, err = runKeys(t, "list", "--data", dir)
	if err != nil {
		t.Fatalf("list after revoke: %v", err)
	}
	if !strings.Contains(out, "revoked at ") || strings.Contains(out, "active") {
		t.Fatalf("list after revoke does not show the key revoked:\n%s", out)
	}

	_, _, err = runKeys(t, "create", "--role", "admin", "--data", dir)
	if err == nil {
		t.Fatal("create with an unknown role succeeded")
	}
	for _, r := range []string{"operator", "funding", "finance", "compliance", "regulator", "auditor"} {
		if !strings.Contains(err.Error(), r) {
			t.Fatalf("unknown-role error %q does not name %q", err, r)
		}
	}
}

func TestKeysCommandErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no subcommand", nil, "create, list, revoke, signing-key, master-key or rotate-master-key"},
		{"unknown subcommand", []string{"rotate"}, "create, list, revoke, signing-key, master-key or rotate-master-key"},
		{"missing role", []string{"create", "--data", dir}, "--role"},
		{"revoke without id", []string{"revoke", "--data", dir}, "keys list"},
		{"list with no store", []string{"list", "--data", filepath.Join(dir, "typo")}, "no staff key store"},
		{"revoke unknown", []string{"revoke", "key_01ARZ3NDEKTSV4RRFFQ69G5FAV", "--data", dir}, "no staff key store"},
	} {
		_, _, err := runKeys(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one mentioning %q", tc.name, err, tc.want)
		}
	}
	if _, _, err := runKeys(t, "create", "--role", "auditor", "--data", dir); err != nil {
		t.Fatalf("create: %v", err)
	}
	if _, _, err := runKeys(t, "revoke", "key_01ARZ3NDEKTSV4RRFFQ69G5FAV", "--data", dir); err == nil || !strings.Contains(err.Error(), "no key") {
		t.Fatalf("revoke unknown id: err = %v", err)
	}
}
