package tests

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/internal/apiclient"
)

// TestSensitiveChangesOverHTTP drives the binary through R1's sensitive
// changes: a reserved phone change with a password and a TOTP from another
// device, and a password reset with a TOTP and a biometric attestation
// over the change's challenge (the password cannot authorise its own
// reset), after which the old password no longer logs in and the new one
// does; the new password is in no file and no log.
func TestSensitiveChangesOverHTTP(t *testing.T) {
	ctx := context.Background()
	provider := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{42}, ed25519.SeedSize))
	dir := t.TempDir()
	srv := start(t, dir, "--biometric-provider-key", base64.StdEncoding.EncodeToString(provider.Public().(ed25519.PublicKey)))
	operator := apiclient.New(srv.url).As(staffKey(t, dir, "operator"))
	c := operator
	expect := func(status int, method, path string, body any, key string) apiclient.Response {
		t.Helper()
		r, err := c.Expect(ctx, status, method, path, body, key)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	const oldPassword, newPassword = "a long passphrase", "another long passphrase, brand new"
	id, pw := openAccount(t, ctx, operator, "Li Wei", "personal", oldPassword)
	base := "/v1/accounts/" + id
	enrol := func(factor map[string]any) apiclient.Response {
		return expect(http.StatusCreated, "POST", base+"/factors", map[string]any{"identity_check": "e2e-check", "factor": factor}, "")
	}
	totp := enrol(map[string]any{"method": "totp", "device_id": "token-1"})
	bio := enrol(map[string]any{"method": "biometric", "device_id": "phone-1"}).Str("factor_id")
	step := domain.TOTPStepAt(time.Now())
	code := func(step int64) map[string]any {
		t.Helper()
		c, err := domain.TOTPCode(totp.Str("totp_secret"), step)
		if err != nil {
			t.Fatal(err)
		}
		return map[string]any{"factor_id": totp.Str("factor_id"), "code": c}
	}
	login := func(password string, status int) apiclient.Response {
		t.Helper()
		return expect(status, "POST", base+"/sessions", map[string]any{"device_id": "laptop-1",
			"proofs": []any{map[string]any{"factor_id": pw, "password": password}}}, "")
	}
	// The holder's session logs in with the TOTP alone, so resetting the
	// password (which ends the sessions that used it) leaves it open.
	c = apiclient.New(srv.url)
	c = c.As(expect(http.StatusCreated, "POST", base+"/sessions", map[string]any{"device_id": "laptop-1",
		"proofs": []any{code(step - 1)}}, "").Str("token"))
	lastOp := func() map[string]any {
		t.Helper()
		ops := expect(http.StatusOK, "GET", base+"/operations?limit=100", nil, "").List("operations")
		// A change is followed by the notice to the holder (and by the
		// use of the device signature that sent it).
		if ops[len(ops)-1]["type"] == "DeviceUsed" {
			ops = ops[:len(ops)-1]
		}
		if n := ops[len(ops)-1]; n["type"] != "HolderNotified" {
			t.Fatalf("the last operation is %v, not the holder's notice", n["type"])
		}
		return ops[len(ops)-2]
	}

	// The reserved phone: a password alone is not enough; password + TOTP is.
	weak := expect(http.StatusUnprocessableEntity, "PUT", base+"/phone", map[string]any{"phone": "+8613800138000", "device_id": "laptop-1",
		"proofs": []any{map[string]any{"factor_id": pw, "password": oldPassword}}}, "")
	if weak.Str("code") != "insufficient_verification" || weak.Body["required_categories"] != float64(2) {
		t.Fatalf("password-only phone change: %s", weak.Raw)
	}
	// The TOTP is the second factor because the registered laptop signs
	// the change (R6); the demo shows the refusal from a claimed device.
	lap := registerLaptop(t, ctx, c, id, "laptop-1")
	ph := expect(http.StatusOK, "PUT", base+"/phone", lap.sign(map[string]any{"phone": "+8613800138000",
		"proofs": []any{map[string]any{"factor_id": pw, "password": oldPassword}, code(step)}}, domain.ChangeKindPhone, "+8613800138000"), "")
	if ph.Str("phone") != "+8613800138000" {
		t.Fatalf("phone change: %s", ph.Raw)
	}
	if op := lastOp(); op["type"] != "PhoneChanged" || op["payload"].(map[string]any)["phone"] != "+8613800138000" {
		t.Fatalf("last operation %v", op)
	}

	// The password cannot authorise its own reset, not even beside others.
	self := expect(http.StatusUnprocessableEntity, "POST", base+"/factors/"+pw+"/reset", map[string]any{"password": newPassword,
		"device_id": "laptop-1", "proofs": []any{map[string]any{"factor_id": pw, "password": oldPassword}, code(step + 1)}}, "")
	if self.Str("code") != "factor_not_independent" || self.Str("field") != "proofs" {
		t.Fatalf("self reset: %s", self.Raw)
	}
	// R19 applies to the new routes through the shared decoder.
	fb := expect(http.StatusBadRequest, "POST", base+"/factors/"+pw+"/reset", map[string]any{"password": newPassword,
		"device_id": "laptop-1", "bank_password": "98765", "proofs": []any{code(step + 1)}}, "")
	if fb.Str("code") != "forbidden_field" || fb.Str("field") != "bank_password" {
		t.Fatalf("forbidden field: %s", fb.Raw)
	}

	// A TOTP (possession) and a biometric attestation (inherence) over the
	// change's challenge at the account's current version reset it.
	version := int64(expect(http.StatusOK, "GET", base, nil, "").Body["version"].(float64))
	challenge := domain.ChangeChallenge(domain.ChangeKindCredentialReset, id, version, pw)
	body := lap.sign(map[string]any{"password": newPassword, "version": version,
		"proofs": []any{code(step + 1), map[string]any{"factor_id": bio, "attestation": base64.StdEncoding.EncodeToString(ed25519.Sign(provider, challenge))}}},
		domain.ChangeKindCredentialReset, pw)
	reset := expect(http.StatusOK, "POST", base+"/factors/"+pw+"/reset", body, "reset-password-1")
	if reset.Str("method") != "password" || len(reset.Body["categories"].([]any)) != 2 {
		t.Fatalf("reset: %s", reset.Raw)
	}
	again := expect(http.StatusOK, "POST", base+"/factors/"+pw+"/reset", body, "reset-password-1")
	if !bytes.Equal(again.Raw, reset.Raw) || again.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay differs:\n%s\n%s", reset.Raw, again.Raw)
	}
	// Without the key, the same attestation no longer fits: the version
	// moved on.
	if r := expect(http.StatusConflict, "POST", base+"/factors/"+pw+"/reset", body, ""); r.Str("code") != "version_conflict" {
		t.Fatalf("stale version: %s", r.Raw)
	}

	if r := login(oldPassword, http.StatusUnauthorized); r.Str("code") != "authentication_failed" {
		t.Fatalf("old password: %s", r.Raw)
	}
	login(newPassword, http.StatusCreated)

	srv.stop(t, syscall.SIGTERM)
	for _, f := range []string{"events.db", "events.db-wal", "readmodels.db", "readmodels.db-wal"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(newPassword)) || bytes.Contains(b, []byte(oldPassword)) || bytes.Contains(b, []byte("98765")) {
			t.Fatalf("%s contains a password", f)
		}
	}
	if logs := srv.stderr.String(); strings.Contains(logs, newPassword) || strings.Contains(logs, oldPassword) {
		t.Fatal("the server log contains a password")
	}
	// The log still verifies after the changes.
	if out := runCmd(t, "verify", "--data", dir); !strings.Contains(out, "every hash chain intact") {
		t.Fatalf("verify: %s", out)
	}
}
