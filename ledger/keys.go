package ledger

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// KeySize is the length of the server key.
const KeySize = 32

// Keys derives the server's secrets from one master key: the AES-GCM key
// that seals TOTP seeds (R8: no secret in the clear in the log), the HMAC
// key that tokenises bank account numbers (R19) and the one that binds an
// Idempotency-Key to its request. Session tokens are random (access.go).
type Keys struct {
	aead cipher.AEAD
	bank []byte
	idem []byte
	rand io.Reader
}

// NewKeys derives the sub-keys from master. rnd supplies nonces; tests pass
// a deterministic reader.
func NewKeys(master []byte, rnd io.Reader) (*Keys, error) {
	if len(master) != KeySize {
		return nil, fmt.Errorf("server key must be %d bytes, got %d", KeySize, len(master))
	}
	block, err := aes.NewCipher(derive(master, "seal"))
	if err != nil {
		return nil, fmt.Errorf("server key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("server key: %w", err)
	}
	return &Keys{aead: aead, bank: derive(master, "bank"), idem: derive(master, "idempotency"), rand: rnd}, nil
}

func derive(master []byte, purpose string) []byte {
	m := hmac.New(sha256.New, master)
	m.Write([]byte("payledger/" + purpose))
	return m.Sum(nil)
}

// LoadOrCreateKey reads the master key at path, creating it with mode 0600
// from rnd when missing. Losing this file makes TOTP seeds unreadable, so it
// belongs in backups with the data directory.
func LoadOrCreateKey(path string, rnd io.Reader) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		if len(b) != KeySize {
			return nil, fmt.Errorf("server key %s: want %d bytes, found %d", path, KeySize, len(b))
		}
		return b, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read server key: %w", err)
	}
	key := make([]byte, KeySize)
	if _, err := io.ReadFull(rnd, key); err != nil {
		return nil, fmt.Errorf("generate server key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create key directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create server key: %w", err)
	}
	if _, err := f.Write(key); err != nil {
		f.Close()
		return nil, fmt.Errorf("write server key: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, fmt.Errorf("sync server key: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("close server key: %w", err)
	}
	return key, nil
}

// Seal encrypts plain with a fresh nonce.
func (k *Keys) Seal(plain []byte) ([]byte, error) {
	nonce := make([]byte, k.aead.NonceSize())
	if _, err := io.ReadFull(k.rand, nonce); err != nil {
		return nil, fmt.Errorf("seal: nonce: %w", err)
	}
	return k.aead.Seal(nonce, nonce, plain, []byte("payledger/totp")), nil
}

// Open decrypts what Seal produced; it implements domain.SecretOpener.
func (k *Keys) Open(sealed []byte) ([]byte, error) {
	n := k.aead.NonceSize()
	if len(sealed) < n {
		return nil, errors.New("open: sealed secret too short")
	}
	plain, err := k.aead.Open(nil, sealed[:n], sealed[n:], []byte("payledger/totp"))
	if err != nil {
		return nil, fmt.Errorf("open sealed secret: %w", err)
	}
	return plain, nil
}

// BankToken tokenises a bank account number (R19): a keyed hash, so the
// number cannot be recovered from the log by guessing.
func (k *Keys) BankToken(number string) string {
	m := hmac.New(sha256.New, k.bank)
	m.Write([]byte(number))
	return "bat_" + base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:18])
}

// BodyHash binds an Idempotency-Key to its request. It is keyed: the hash
// is stored in the log, and a request body can carry guessable data (a bank
// account number), which an unkeyed hash would let anyone with the log
// recover by trying candidates (R19).
func (k *Keys) BodyHash(parts ...[]byte) string {
	m := hmac.New(sha256.New, k.idem)
	for _, p := range parts {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(p)))
		m.Write(n[:])
		m.Write(p)
	}
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// NewTOTPSecret returns a fresh base32 TOTP seed (160 bits, RFC 4226's
// recommended length).
func (k *Keys) NewTOTPSecret() (string, error) {
	b := make([]byte, 20)
	if _, err := io.ReadFull(k.rand, b); err != nil {
		return "", fmt.Errorf("totp seed: %w", err)
	}
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b), nil
}

// CryptoRand is the production source of randomness.
var CryptoRand io.Reader = rand.Reader
