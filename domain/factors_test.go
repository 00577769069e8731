package domain

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"
)

func TestHashPassword(t *testing.T) {
	salt := bytes.Repeat([]byte{0x42}, SaltLength)
	const pw = "correct horse battery staple"
	h, err := HashPassword(pw, salt)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Errorf("hash %q is not an argon2id PHC string with the documented parameters", h)
	}
	if strings.Contains(h, pw) {
		t.Error("hash contains the password")
	}
	tests := []struct {
		name     string
		password string
		want     bool
	}{
		{"Right", pw, true},
		{"Wrong", "correct horse battery stapler", false},
		{"Empty", "", false},
		{"CaseMatters", strings.ToUpper(pw), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ok, err := VerifyPassword(h, tc.password)
			if err != nil {
				t.Fatal(err)
			}
			if ok != tc.want {
				t.Errorf("VerifyPassword(%q) = %v, want %v", tc.password, ok, tc.want)
			}
		})
	}
	t.Run("SaltLength", func(t *testing.T) {
		for _, n := range []int{0, 8, SaltLength - 1, SaltLength + 1} {
			if _, err := HashPassword(pw, make([]byte, n)); err == nil {
				t.Errorf("salt of %d bytes accepted", n)
			}
		}
	})
}

// cheapHash builds a valid argon2id PHC hash with minimal cost parameters.
// VerifyPassword reads the parameters from the hash, so tests stay fast
// while exercising the real verification path.
func cheapHash(password string) string {
	salt := []byte("0123456789abcdef")
	key := argon2.IDKey([]byte(password), salt, 1, 8, 1, 32)
	b64 := base64.RawStdEncoding.EncodeToString
	return fmt.Sprintf("$argon2id$v=%d$m=8,t=1,p=1$%s$%s", argon2.Version, b64(salt), b64(key))
}

func TestVerifyPasswordUsesRecordedParameters(t *testing.T) {
	h := cheapHash("s3cret-pass")
	if ok, err := VerifyPassword(h, "s3cret-pass"); err != nil || !ok {
		t.Errorf("VerifyPassword = %v, %v; want true", ok, err)
	}
	if ok, err := VerifyPassword(h, "s3cret-pasS"); err != nil || ok {
		t.Errorf("wrong password: VerifyPassword = %v, %v; want false", ok, err)
	}
}

func TestVerifyPasswordMalformed(t *testing.T) {
	good := cheapHash("s3cret-pass")
	parts := strings.Split(good, "$") // "", argon2id, v=19, m=..., salt, key
	with := func(i int, v string) string {
		p := append([]string(nil), parts...)
		p[i] = v
		return strings.Join(p, "$")
	}
	tests := map[string]string{
		"Empty":         "",
		"Plain":         "s3cret-pass",
		"Bcrypt":        "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy",
		"Argon2i":       with(1, "argon2i"),
		"TooFewParts":   strings.Join(parts[:5], "$"),
		"TooManyParts":  good + "$extra",
		"OldVersion":    with(2, "v=16"),
		"NoVersion":     with(2, "version"),
		"BadParams":     with(3, "m=x,t=1,p=1"),
		"MemoryZero":    with(3, "m=0,t=1,p=1"),
		"MemoryHuge":    with(3, "m=4194304,t=1,p=1"),
		"TimeZero":      with(3, "m=8,t=0,p=1"),
		"TimeHuge":      with(3, "m=8,t=1000,p=1"),
		"ThreadsZero":   with(3, "m=8,t=1,p=0"),
		"ThreadsHuge":   with(3, "m=8,t=1,p=300"),
		"BadSalt":       with(4, "!!!"),
		"EmptyKey":      with(5, ""),
		"BadKey":        with(5, "***"),
		"KeyTooLong":    with(5, base64.RawStdEncoding.EncodeToString(make([]byte, 65))),
		"PaddedBase64":  with(5, base64.StdEncoding.EncodeToString(make([]byte, 31))),
		"OnlyDollars":   "$$$$$",
		"NegativeParam": with(3, "m=-8,t=1,p=1"),
	}
	for name, h := range tests {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("VerifyPassword panicked on %q: %v", h, r)
				}
			}()
			ok, err := VerifyPassword(h, "s3cret-pass")
			if err == nil || ok {
				t.Errorf("VerifyPassword(%q) = %v, %v; want false and an error", h, ok, err)
			}
		})
	}
}

func TestTOTPCodeRFC6238(t *testing.T) {
	// RFC 6238 appendix B, SHA-1 seed "12345678901234567890", last 6 of the
	// 8-digit reference values.
	const seed = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
	tests := []struct {
		unix int64
		want string
	}{
		{59, "287082"},
		{1111111109, "081804"},
		{1111111111, "050471"},
		{1234567890, "005924"},
		{2000000000, "279037"},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.unix), func(t *testing.T) {
			step := TOTPStepAt(time.Unix(tc.unix, 0))
			got, err := TOTPCode(seed, step)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("code at %d = %s, want %s", tc.unix, got, tc.want)
			}
		})
	}
	if _, err := TOTPCode(seed, -1); err == nil {
		t.Error("negative step accepted")
	}
	if _, err := TOTPCode("not base32 !!", 1); err == nil {
		t.Error("malformed secret accepted")
	}
}

func TestTOTPStepAt(t *testing.T) {
	at := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	s := TOTPStepAt(at)
	if TOTPStepAt(at.Add(29*time.Second)) != s || TOTPStepAt(at.Add(30*time.Second)) != s+1 || TOTPStepAt(at.Add(-time.Second)) != s-1 {
		t.Error("steps are not 30 seconds wide")
	}
	sh := time.FixedZone("CST", 8*3600)
	if TOTPStepAt(at.In(sh)) != s {
		t.Error("step depends on the time zone")
	}
}

func TestMatchTOTP(t *testing.T) {
	const secret = "JBSWY3DPEHPK3PXP"
	now := time.Date(2026, 11, 25, 10, 0, 10, 0, time.UTC)
	cur := TOTPStepAt(now)
	code := func(step int64) string {
		t.Helper()
		c, err := TOTPCode(secret, step)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	tests := []struct {
		name     string
		code     string
		lastUsed int64
		wantOK   bool
		wantStep int64
	}{
		{"Current", code(cur), 0, true, cur},
		{"PreviousStepSkew", code(cur - 1), 0, true, cur - 1},
		{"NextStepSkew", code(cur + 1), 0, true, cur + 1},
		{"TwoStepsOld", code(cur - 2), 0, false, 0},
		{"TwoStepsAhead", code(cur + 2), 0, false, 0},
		{"CurrentAlreadyUsed", code(cur), cur, false, 0},
		{"CurrentAfterNewerUse", code(cur), cur + 1, false, 0},
		{"PreviousAfterCurrentUse", code(cur - 1), cur, false, 0},
		{"NextAfterCurrentUse", code(cur + 1), cur, true, cur + 1},
		{"CurrentAfterPreviousUse", code(cur), cur - 1, true, cur},
		{"Wrong", "000000", 0, false, 0},
		{"TooShort", code(cur)[:5], 0, false, 0},
		{"TooLong", code(cur) + "0", 0, false, 0},
		{"Empty", "", 0, false, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "Wrong" && (tc.code == code(cur) || tc.code == code(cur-1) || tc.code == code(cur+1)) {
				t.Skip("000000 happens to be a valid code")
			}
			step, ok, err := MatchTOTP(secret, tc.code, now, tc.lastUsed)
			if err != nil {
				t.Fatal(err)
			}
			if ok != tc.wantOK || step != tc.wantStep {
				t.Errorf("MatchTOTP = %d, %v; want %d, %v", step, ok, tc.wantStep, tc.wantOK)
			}
		})
	}
	t.Run("MalformedSecret", func(t *testing.T) {
		if _, ok, err := MatchTOTP("not base32 !!", "123456", now, 0); ok || err == nil {
			t.Errorf("malformed secret: ok=%v err=%v; want an error", ok, err)
		}
	})
}

func TestVerifySignature(t *testing.T) {
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, ed25519.SeedSize))
	pub := priv.Public().(ed25519.PublicKey)
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, ed25519.SeedSize)).Public().(ed25519.PublicKey)
	msg := []byte("payment p1 challenge 0123456789")
	sig := ed25519.Sign(priv, msg)
	tests := []struct {
		name string
		key  []byte
		msg  []byte
		sig  []byte
		want bool
	}{
		{"Good", pub, msg, sig, true},
		{"WrongMessage", pub, []byte("payment p2 challenge 0123456789"), sig, false},
		{"OtherKey", other, msg, sig, false},
		{"KeyTooShort", pub[:31], msg, sig, false},
		{"KeyTooLong", append(append([]byte(nil), pub...), 0), msg, sig, false},
		{"NilKey", nil, msg, sig, false},
		{"SigTooShort", pub, msg, sig[:63], false},
		{"NilSig", pub, msg, nil, false},
		{"TamperedSig", pub, msg, append([]byte{sig[0] ^ 1}, sig[1:]...), false},
		{"NilMessage", pub, nil, sig, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := VerifySignature(tc.key, tc.msg, tc.sig); got != tc.want {
				t.Errorf("VerifySignature = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCategoryOf(t *testing.T) {
	tests := []struct {
		method string
		want   string
		ok     bool
	}{
		{MethodPassword, CategoryKnowledge, true},
		{MethodTOTP, CategoryPossession, true},
		{MethodCertificate, CategoryPossession, true},
		{MethodESignature, CategoryPossession, true},
		{MethodBiometric, CategoryInherence, true},
		{"sms", "", false},
		{"", "", false},
		{"Password", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.method, func(t *testing.T) {
			got, ok := CategoryOf(tc.method)
			if got != tc.want || ok != tc.ok {
				t.Errorf("CategoryOf(%q) = %q, %v; want %q, %v", tc.method, got, ok, tc.want, tc.ok)
			}
		})
	}
}
