package domain

import (
	"encoding/base32"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
)

// hotpCode is the reference: the library TOTPCode used before it computed
// codes itself.
func hotpCode(secret string, step int64) (string, error) {
	if step < 0 {
		return "", errors.New("totp: negative step")
	}
	return hotp.GenerateCodeCustom(secret, uint64(step), hotp.ValidateOpts{Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
}

// randomSecret returns a seed in one of the spellings clients send, or an
// invalid one.
func randomSecret(r *rand.Rand) string {
	raw := make([]byte, 1+r.IntN(100)) // past 64 bytes HMAC hashes the key first
	for i := range raw {
		raw[i] = byte(r.IntN(256))
	}
	s := base32.StdEncoding.EncodeToString(raw)
	switch r.IntN(8) {
	case 0:
		s = strings.TrimRight(s, "=")
	case 1:
		s = strings.ToLower(strings.TrimRight(s, "="))
	case 2:
		s = " \t" + s + "\n"
	case 3: // U+017F LATIN SMALL LETTER LONG S upper-cases to 'S'
		s = strings.ReplaceAll(strings.TrimRight(s, "="), "S", "ſ")
	case 4: // invalid
		s = s[:len(s)/2] + "!1" + s[len(s)/2:]
	case 5:
		s = ""
	}
	return s
}

// TestTOTPCodeMatchesHOTP: TOTPCode gives the library's code, or fails
// where it fails, for generated seeds and steps.
func TestTOTPCodeMatchesHOTP(t *testing.T) {
	r := rand.New(rand.NewPCG(6238, 4226))
	var valid, invalid int
	for range 20000 {
		secret := randomSecret(r)
		step := r.Int64N(math.MaxInt64)
		switch r.IntN(4) {
		case 0:
			step = TOTPStepAt(time.Unix(r.Int64N(4e9), 0))
		case 1:
			step = -r.Int64N(3)
		}
		want, werr := hotpCode(secret, step)
		got, err := TOTPCode(secret, step)
		if (err != nil) != (werr != nil) || got != want {
			t.Fatalf("TOTPCode(%q, %d) = %q, %v; hotp: %q, %v", secret, step, got, err, want, werr)
		}
		if werr != nil && step >= 0 && !errors.Is(err, otp.ErrValidateSecretInvalidBase32) {
			t.Fatalf("TOTPCode(%q, %d) error %v, want %v", secret, step, err, otp.ErrValidateSecretInvalidBase32)
		}
		if werr == nil {
			valid++
		} else {
			invalid++
		}
	}
	if valid < 1000 || invalid < 1000 {
		t.Fatalf("generated %d valid and %d invalid cases; want both", valid, invalid)
	}
}

// refMatchTOTP is MatchTOTP as it was written over the library code.
func refMatchTOTP(secret, code string, now time.Time, lastUsed int64) (int64, bool, error) {
	if len(code) != TOTPDigits {
		return 0, false, nil
	}
	cur := TOTPStepAt(now)
	for s := cur - TOTPSkew; s <= cur+TOTPSkew; s++ {
		if s <= lastUsed {
			continue
		}
		want, err := hotpCode(secret, s)
		if err != nil {
			return 0, false, err
		}
		if want == code {
			return s, true, nil
		}
	}
	return 0, false, nil
}

// TestMatchTOTPMatchesReference: MatchTOTP answers as the reference for
// right, neighbouring, reused, wrong and malformed codes and bad seeds.
func TestMatchTOTPMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 9))
	var matched int
	for range 20000 {
		secret := randomSecret(r)
		now := time.Unix(r.Int64N(4e9)-1e8, 0) // some before 1970: negative steps
		cur := TOTPStepAt(now)
		code := "123456"
		if c, err := hotpCode(secret, max(cur+int64(r.IntN(5))-2, 0)); err == nil {
			code = c
		}
		switch r.IntN(6) {
		case 0:
			code = code[:5]
		case 1:
			code = code + "0"
		}
		lastUsed := cur + int64(r.IntN(5)) - 3
		if r.IntN(3) == 0 {
			lastUsed = 0
		}
		wantStep, wantOK, werr := refMatchTOTP(secret, code, now, lastUsed)
		step, ok, err := MatchTOTP(secret, code, now, lastUsed)
		if step != wantStep || ok != wantOK || (err != nil) != (werr != nil) {
			t.Fatalf("MatchTOTP(%q, %q, %v, %d) = %d, %v, %v; reference %d, %v, %v",
				secret, code, now, lastUsed, step, ok, err, wantStep, wantOK, werr)
		}
		if ok {
			matched++
		}
	}
	if matched < 1000 {
		t.Fatalf("only %d generated codes matched", matched)
	}
}
