package domain

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"golang.org/x/crypto/argon2"
)

// Factor methods a customer can enrol.
const (
	MethodPassword    = "password"
	MethodTOTP        = "totp"
	MethodCertificate = "certificate"
	MethodESignature  = "e_signature"
	MethodBiometric   = "biometric"
)

// Factor categories (R5). Independence is counted by category: two proofs
// of one category count once.
const (
	CategoryKnowledge  = "knowledge"
	CategoryPossession = "possession"
	CategoryInherence  = "inherence"
)

// Verification levels (R10), from weakest to strongest.
const (
	LevelSingleFactor         = "single_factor"
	LevelTwoFactor            = "two_factor"
	LevelTwoFactorCertificate = "two_factor_certificate"
)

// CategoryOf returns the category of a method, or false for an unknown
// method.
func CategoryOf(method string) (string, bool) {
	switch method {
	case MethodPassword:
		return CategoryKnowledge, true
	case MethodTOTP, MethodCertificate, MethodESignature:
		return CategoryPossession, true
	case MethodBiometric:
		return CategoryInherence, true
	}
	return "", false
}

// Argon2id parameters for password hashes (RFC 9106's second recommended
// option, with memory lowered to 19 MiB as OWASP suggests for servers).
const (
	argonTime    = 2
	argonMemory  = 19 * 1024
	argonThreads = 1
	argonKeyLen  = 32
	// MinPasswordLength is the shortest password accepted at enrolment.
	MinPasswordLength = 8
	// SaltLength is the number of random salt bytes the caller supplies.
	SaltLength = 16
)

// HashPassword returns an argon2id hash in the PHC string format. The salt
// comes from the caller (the domain has no randomness): it must be
// SaltLength random bytes.
func HashPassword(password string, salt []byte) (string, error) {
	if len(salt) != SaltLength {
		return "", fmt.Errorf("hash password: salt must be %d bytes", SaltLength)
	}
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

// VerifyPassword checks password against a PHC argon2id hash in constant
// time, using the parameters recorded in the hash so that old hashes keep
// verifying after the defaults change.
func VerifyPassword(phc, password string) (bool, error) {
	parts := strings.Split(phc, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false, fmt.Errorf("verify password: not an argon2id hash")
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false, fmt.Errorf("verify password: unsupported argon2 version %q", parts[2])
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil {
		return false, fmt.Errorf("verify password: parameters %q: %w", parts[3], err)
	}
	if m == 0 || m > 1<<20 || t == 0 || t > 16 || p == 0 {
		return false, fmt.Errorf("verify password: parameters %q out of range", parts[3])
	}
	salt, err := base64.RawStdEncoding.DecodeString(parts[4])
	if err != nil {
		return false, fmt.Errorf("verify password: salt: %w", err)
	}
	want, err := base64.RawStdEncoding.DecodeString(parts[5])
	if err != nil || len(want) == 0 || len(want) > 64 {
		return false, fmt.Errorf("verify password: key is malformed")
	}
	got := argon2.IDKey([]byte(password), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// TOTP parameters (RFC 6238): 30-second steps, 6 digits, HMAC-SHA1 (what
// authenticator apps implement), and one step of clock drift either way.
const (
	TOTPStep   = 30 * time.Second
	TOTPDigits = 6
	TOTPSkew   = 1
)

// TOTPStepAt returns the RFC 6238 time step that contains t.
func TOTPStepAt(t time.Time) int64 { return t.Unix() / int64(TOTPStep/time.Second) }

// TOTPCode returns the code of a base32 secret at a time step. Clients and
// tests use it to produce codes; the server uses it to check them. It
// computes exactly what hotp.GenerateCodeCustom computes with six digits
// and HMAC-SHA1 (totp_test.go compares them), without its per-call
// formatting and allocations.
func TOTPCode(secret string, step int64) (string, error) {
	if step < 0 {
		return "", fmt.Errorf("totp: negative step")
	}
	key, err := totpKey(secret)
	if err != nil {
		return "", err
	}
	mac := newTOTPMAC(key)
	c := mac.code(step)
	return string(c[:]), nil
}

// totpKey decodes a base32 seed the way hotp.GenerateCodeCustom does:
// surrounding space trimmed, missing padding added, lower case accepted.
func totpKey(secret string) ([]byte, error) {
	secret = strings.TrimSpace(secret)
	if n := len(secret) % 8; n != 0 {
		secret += strings.Repeat("=", 8-n)
	}
	key, err := base32.StdEncoding.DecodeString(strings.ToUpper(secret))
	if err != nil {
		return nil, otp.ErrValidateSecretInvalidBase32
	}
	return key, nil
}

// totpMAC computes the codes of one seed: RFC 4226 HOTP with HMAC-SHA1
// (crypto/hmac), dynamic truncation and six decimal digits.
type totpMAC struct {
	mac     hash.Hash
	counter [8]byte
	sum     [sha1.Size]byte
}

func newTOTPMAC(key []byte) totpMAC {
	return totpMAC{mac: hmac.New(sha1.New, key)}
}

// code returns the six-digit code of a (non-negative) step.
func (m *totpMAC) code(step int64) [TOTPDigits]byte {
	binary.BigEndian.PutUint64(m.counter[:], uint64(step))
	m.mac.Reset()
	m.mac.Write(m.counter[:])
	sum := m.mac.Sum(m.sum[:0])
	off := sum[len(sum)-1] & 0xf
	v := (uint32(sum[off])&0x7f)<<24 | uint32(sum[off+1])<<16 | uint32(sum[off+2])<<8 | uint32(sum[off+3])
	v %= 1000000
	var c [TOTPDigits]byte
	for i := TOTPDigits - 1; i >= 0; i-- {
		c[i] = byte('0' + v%10)
		v /= 10
	}
	return c
}

// MatchTOTP returns the step whose code equals code, searching now's step
// and TOTPSkew steps either side, newest last. Steps at or before
// lastUsed are never accepted, so a code works once (R7).
func MatchTOTP(secret, code string, now time.Time, lastUsed int64) (int64, bool, error) {
	if len(code) != TOTPDigits {
		return 0, false, nil
	}
	var mac totpMAC
	keyed := false
	cur := TOTPStepAt(now)
	for s := cur - TOTPSkew; s <= cur+TOTPSkew; s++ {
		if s <= lastUsed {
			continue
		}
		if s < 0 {
			return 0, false, fmt.Errorf("totp: negative step")
		}
		if !keyed { // the seed is decoded only when a step needs it
			key, err := totpKey(secret)
			if err != nil {
				return 0, false, err
			}
			mac, keyed = newTOTPMAC(key), true
		}
		want := mac.code(s)
		if subtle.ConstantTimeCompare(want[:], []byte(code)) == 1 {
			return s, true, nil
		}
	}
	return 0, false, nil
}

// VerifySignature checks an Ed25519 signature over msg. A key of the wrong
// size is a failed proof, not a crash.
func VerifySignature(publicKey, msg, sig []byte) bool {
	if len(publicKey) != ed25519.PublicKeySize || len(sig) != ed25519.SignatureSize {
		return false
	}
	return ed25519.Verify(publicKey, msg, sig)
}

// SecretOpener opens secrets sealed with the server key (TOTP seeds). It is
// deterministic, so the domain stays pure; sealing happens at the edge where
// randomness lives.
type SecretOpener interface {
	Open(sealed []byte) ([]byte, error)
}
