// Package staffkeys is the durable store of the API keys that staff of the
// payment institution use to authenticate to the HTTP API, one role per key.
//
// The store is its own SQLite file (staffkeys.db in the data directory),
// opened at the same time by the running server, which authenticates
// requests, and by the `payledger keys` command, which creates, lists and
// revokes keys. Only the SHA-256 of each token is stored, so a copy of the
// file does not let anyone call the API.
//
// This package sits below the HTTP layer and the command: it must never
// import httpapi or cmd, so that both can depend on it.
package staffkeys

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/oklog/ulid/v2"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/payledger/payledger/internal/sqlitedsn"
)

// Role is what a key is allowed to do; each key has exactly one.
type Role string

const (
	RoleOperator   Role = "operator"   // open and look up accounts for a customer, suspend/close for risk, unlock
	RoleFunding    Role = "funding"    // post deposits (the only role that creates credits)
	RoleFinance    Role = "finance"    // finance staff
	RoleCompliance Role = "compliance" // compliance staff
	RoleRegulator  Role = "regulator"  // read only
	RoleAuditor    Role = "auditor"    // read only, personal data masked
)

// Roles returns all roles, in a fixed order.
func Roles() []Role {
	return []Role{RoleOperator, RoleFunding, RoleFinance, RoleCompliance, RoleRegulator, RoleAuditor}
}

// ParseRole returns the role named s, or an error that names the valid ones.
func ParseRole(s string) (Role, error) {
	for _, r := range Roles() {
		if string(r) == s {
			return r, nil
		}
	}
	return "", fmt.Errorf("staffkeys: unknown role %q: use one of %s", s, roleList())
}

func roleList() string {
	names := make([]string, 0, len(Roles()))
	for _, r := range Roles() {
		names = append(names, string(r))
	}
	return strings.Join(names, ", ")
}

// Key is a staff key as stored; it never carries the token or its hash.
type Key struct {
	ID         string // "key_" + 26-char ULID; not secret
	Role       Role
	Label      string // free text from the operator, at most MaxLabelRunes runes
	CreatedAt  time.Time
	RevokedAt  time.Time // zero while active
	LastUsedAt time.Time // zero if never used
	Uses       int64
}

// Active reports whether the key has not been revoked.
func (k Key) Active() bool { return k.RevokedAt.IsZero() }

var (
	// ErrInvalidKey is the single answer for a malformed, unknown or revoked
	// token, so that a caller cannot probe which of the three it is.
	ErrInvalidKey = errors.New("staffkeys: unknown, malformed or revoked key")
	// ErrNotFound is returned by Revoke for an id that names no key.
	ErrNotFound = errors.New("staffkeys: no such key")
)

const (
	// MaxLabelRunes bounds a key's label.
	MaxLabelRunes = 100
	// MaxTokenBytes bounds what Authenticate will parse; a real token is
	// tokenLen bytes.
	MaxTokenBytes = 200

	idPrefix      = "key_"
	tokenPrefix   = "plk_"
	secretBytes   = 32
	ulidLen       = 26
	secretLen     = 43 // base64.RawURLEncoding of secretBytes
	tokenLen      = len(tokenPrefix) + ulidLen + 1 + secretLen
	maxIDBytes    = 64
	schemaVersion = 1
)

// Store is the key database. It is safe for concurrent use, and several
// Stores (in several processes) may have the same file open.
type Store struct {
	db    *sql.DB
	path  string
	clock func() time.Time

	mu  sync.Mutex // serialises reads from rnd, which need not be goroutine-safe
	rnd io.Reader
}

// Open opens the key database at path, creating it with mode 0600 if it
// does not exist. clock stamps creations, revocations and uses; rnd supplies
// key ids' entropy and the tokens' secrets, so it must be crypto/rand.Reader
// outside tests.
func Open(path string, clock func() time.Time, rnd io.Reader) (*Store, error) {
	if path == "" {
		return nil, errors.New("staffkeys: open: empty path")
	}
	if clock == nil || rnd == nil {
		return nil, fmt.Errorf("staffkeys: open %s: clock and rnd must not be nil", path)
	}
	// Created here rather than by SQLite so that the token hashes are never
	// readable by other users, even for a moment; SQLite gives the -wal and
	// -shm files the same mode as the database file.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("staffkeys: create %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("staffkeys: create %s: %w", path, err)
	}
	// WAL lets the CLI and the server use the file at once, the busy timeout
	// makes one wait for the other's write instead of failing, FULL makes a
	// revocation durable before it is reported, and immediate transactions
	// take the write lock at BEGIN so two writers never deadlock on upgrade.
	dsn := sqlitedsn.File(path).BusyTimeout(10 * time.Second).JournalMode("WAL").Synchronous("FULL").TxLockImmediate()
	db, err := sql.Open("sqlite", dsn.String())
	if err != nil {
		return nil, fmt.Errorf("staffkeys: open %s: %w", path, err)
	}
	s := &Store{db: db, path: path, clock: clock, rnd: rnd}
	if err := s.initSchema(); err != nil {
		if cerr := db.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("staffkeys: close %s: %w", path, cerr))
		}
		return nil, err
	}
	return s, nil
}

func (s *Store) initSchema() error {
	ctx := context.Background()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("staffkeys: open %s: begin schema: %w", s.path, err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	var version int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("staffkeys: open %s: read schema version: %w", s.path, err)
	}
	switch version {
	case schemaVersion:
		return nil
	case 0:
	default:
		return fmt.Errorf("staffkeys: open %s: schema version %d is newer than this program's %d; run the payledger that wrote it", s.path, version, schemaVersion)
	}
	for _, stmt := range []string{
		`CREATE TABLE IF NOT EXISTS keys (
			seq          INTEGER PRIMARY KEY,
			id           TEXT    NOT NULL UNIQUE,
			role         TEXT    NOT NULL,
			label        TEXT    NOT NULL,
			token_sha256 BLOB    NOT NULL,
			created_at   INTEGER NOT NULL,
			revoked_at   INTEGER,
			last_used_at INTEGER,
			uses         INTEGER NOT NULL DEFAULT 0
		)`,
		`CREATE TABLE IF NOT EXISTS key_events (
			seq    INTEGER PRIMARY KEY,
			at     INTEGER NOT NULL,
			key_id TEXT    NOT NULL,
			action TEXT    NOT NULL CHECK (action IN ('created', 'revoked'))
		)`,
		fmt.Sprintf("PRAGMA user_version = %d", schemaVersion),
	} {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("staffkeys: open %s: create schema: %w", s.path, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("staffkeys: open %s: commit schema: %w", s.path, err)
	}
	return nil
}

// Close closes the database.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("staffkeys: close %s: %w", s.path, err)
	}
	return nil
}

// validLabel rejects labels that are too long or that would garble the
// `payledger keys list` table.
func validLabel(label string) error {
	if !utf8.ValidString(label) {
		return errors.New("staffkeys: label is not valid UTF-8")
	}
	if n := utf8.RuneCountInString(label); n > MaxLabelRunes {
		return fmt.Errorf("staffkeys: label is %d characters; shorten it to at most %d", n, MaxLabelRunes)
	}
	for _, r := range label {
		if unicode.IsControl(r) {
			return errors.New("staffkeys: label contains a control character (tab, newline, ...); use plain text")
		}
	}
	return nil
}

// Create makes a new key and returns its secret token, which is not stored
// and so can never be shown again. Token format: "plk_" + the key id without
// "key_" + "_" + base64.RawURLEncoding of 32 random bytes.
func (s *Store) Create(ctx context.Context, role Role, label string) (string, Key, error) {
	if _, err := ParseRole(string(role)); err != nil {
		return "", Key{}, err
	}
	if err := validLabel(label); err != nil {
		return "", Key{}, err
	}
	now := s.clock()
	s.mu.Lock()
	id, err := ulid.New(ulid.Timestamp(now), s.rnd)
	var secret [secretBytes]byte
	if err == nil {
		_, err = io.ReadFull(s.rnd, secret[:])
	}
	s.mu.Unlock()
	if err != nil {
		return "", Key{}, fmt.Errorf("staffkeys: create: read randomness: %w", err)
	}
	token := tokenPrefix + id.String() + "_" + base64.RawURLEncoding.EncodeToString(secret[:])
	hash := sha256.Sum256([]byte(token))
	k := Key{ID: idPrefix + id.String(), Role: role, Label: label, CreatedAt: fromNanos(now.UnixNano())}

	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return "", Key{}, fmt.Errorf("staffkeys: create %s: begin: %w", k.ID, err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if _, err := tx.ExecContext(ctx,
		"INSERT INTO keys (id, role, label, token_sha256, created_at) VALUES (?, ?, ?, ?, ?)",
		k.ID, string(role), label, hash[:], now.UnixNano()); err != nil {
		return "", Key{}, fmt.Errorf("staffkeys: create %s: %w", k.ID, err)
	}
	if err := logEvent(ctx, tx, now, k.ID, "created"); err != nil {
		return "", Key{}, err
	}
	if err := tx.Commit(); err != nil {
		return "", Key{}, fmt.Errorf("staffkeys: create %s: commit: %w", k.ID, err)
	}
	return token, k, nil
}

func logEvent(ctx context.Context, tx *sql.Tx, at time.Time, id, action string) error {
	if _, err := tx.ExecContext(ctx, "INSERT INTO key_events (at, key_id, action) VALUES (?, ?, ?)",
		at.UnixNano(), id, action); err != nil {
		return fmt.Errorf("staffkeys: record %s of %s: %w", action, id, err)
	}
	return nil
}

const keyColumns = "id, role, label, created_at, revoked_at, last_used_at, uses"

type scanner interface{ Scan(dest ...any) error }

func scanKey(row scanner, extra ...any) (Key, error) {
	var (
		k                 Key
		role              string
		created           int64
		revoked, lastUsed sql.NullInt64
	)
	dest := append([]any{&k.ID, &role, &k.Label, &created, &revoked, &lastUsed, &k.Uses}, extra...)
	if err := row.Scan(dest...); err != nil {
		return Key{}, err
	}
	k.Role = Role(role)
	k.CreatedAt = fromNanos(created)
	if revoked.Valid {
		k.RevokedAt = fromNanos(revoked.Int64)
	}
	if lastUsed.Valid {
		k.LastUsedAt = fromNanos(lastUsed.Int64)
	}
	return k, nil
}

// fromNanos is the stored form read back, in UTC so that a key reads the
// same in every process.
func fromNanos(n int64) time.Time { return time.Unix(0, n).UTC() }

// List returns every key, revoked ones included, oldest first.
func (s *Store) List(ctx context.Context) ([]Key, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT "+keyColumns+" FROM keys ORDER BY seq")
	if err != nil {
		return nil, fmt.Errorf("staffkeys: list: %w", err)
	}
	defer rows.Close()
	var keys []Key
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, fmt.Errorf("staffkeys: list: %w", err)
		}
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("staffkeys: list: %w", err)
	}
	return keys, nil
}

// Revoke makes the key's token stop authenticating from now on. Revoking a
// revoked key returns it unchanged, so a retried revocation is harmless; an
// id that names no key returns ErrNotFound.
func (s *Store) Revoke(ctx context.Context, id string) (Key, error) {
	if len(id) > maxIDBytes {
		return Key{}, fmt.Errorf("%w: id of %d bytes", ErrNotFound, len(id))
	}
	now := s.clock()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return Key{}, fmt.Errorf("staffkeys: revoke %s: begin: %w", id, err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	k, err := scanKey(tx.QueryRowContext(ctx, "SELECT "+keyColumns+" FROM keys WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return Key{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return Key{}, fmt.Errorf("staffkeys: revoke %s: %w", id, err)
	}
	if !k.Active() {
		return k, nil
	}
	if _, err := tx.ExecContext(ctx, "UPDATE keys SET revoked_at = ? WHERE id = ?", now.UnixNano(), id); err != nil {
		return Key{}, fmt.Errorf("staffkeys: revoke %s: %w", id, err)
	}
	if err := logEvent(ctx, tx, now, id, "revoked"); err != nil {
		return Key{}, err
	}
	if err := tx.Commit(); err != nil {
		return Key{}, fmt.Errorf("staffkeys: revoke %s: commit: %w", id, err)
	}
	k.RevokedAt = fromNanos(now.UnixNano())
	return k, nil
}

// parseToken returns the key id a well-formed token names.
func parseToken(token string) (string, bool) {
	if len(token) != tokenLen || !strings.HasPrefix(token, tokenPrefix) {
		return "", false
	}
	rest := token[len(tokenPrefix):]
	if rest[ulidLen] != '_' {
		return "", false
	}
	id, err := ulid.ParseStrict(rest[:ulidLen])
	if err != nil || id.String() != rest[:ulidLen] {
		return "", false
	}
	secret, err := base64.RawURLEncoding.Strict().DecodeString(rest[ulidLen+1:])
	if err != nil || len(secret) != secretBytes {
		return "", false
	}
	return idPrefix + id.String(), true
}

// Authenticate returns the active key whose token this is and records the
// use (Uses+1, LastUsedAt = clock()). A malformed, unknown or revoked token
// returns ErrInvalidKey; any other error is the database failing, which the
// caller should report as a server error rather than as a bad key.
func (s *Store) Authenticate(ctx context.Context, token string) (Key, error) {
	if len(token) > MaxTokenBytes {
		return Key{}, ErrInvalidKey
	}
	id, ok := parseToken(token)
	if !ok {
		return Key{}, ErrInvalidKey
	}
	var stored []byte
	k, err := scanKey(s.db.QueryRowContext(ctx, "SELECT "+keyColumns+", token_sha256 FROM keys WHERE id = ?", id), &stored)
	if errors.Is(err, sql.ErrNoRows) {
		return Key{}, ErrInvalidKey
	}
	if err != nil {
		return Key{}, fmt.Errorf("staffkeys: authenticate %s: %w", id, err)
	}
	hash := sha256.Sum256([]byte(token))
	if subtle.ConstantTimeCompare(hash[:], stored) != 1 || !k.Active() {
		return Key{}, ErrInvalidKey
	}
	now := s.clock()
	// The revoked_at condition closes the window between the read above and
	// a revocation committed by another process in between.
	var uses int64
	err = s.db.QueryRowContext(ctx,
		"UPDATE keys SET uses = uses + 1, last_used_at = ? WHERE id = ? AND revoked_at IS NULL RETURNING uses",
		now.UnixNano(), id).Scan(&uses)
	if errors.Is(err, sql.ErrNoRows) {
		return Key{}, ErrInvalidKey
	}
	if err != nil {
		return Key{}, fmt.Errorf("staffkeys: authenticate %s: record use: %w", id, err)
	}
	k.Uses = uses
	k.LastUsedAt = fromNanos(now.UnixNano())
	return k, nil
}
