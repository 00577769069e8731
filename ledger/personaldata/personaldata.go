// Package personaldata keeps the per-customer data keys that seal the
// personal data in events (R20), wrapped by a master key, in their own
// SQLite file (personaldata.db) outside the event log, so that erasing a
// key (crypto-shredding) makes the customer's data unreadable while the
// log stays as it was.
//
// A sealed field is the text "pd1:<owner>:<base64url(nonce|ciphertext)>":
// AES-256-GCM under the owner's data key with the event's id as associated
// data, so a sealed field copied into another event does not open.
//
// It imports nothing of the project: the ledger decides which fields are
// personal and whose key seals them.
package personaldata

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/payledger/payledger/internal/filelock"
	"github.com/payledger/payledger/internal/sqlitedsn"
	_ "modernc.org/sqlite" // the SQLite driver
)

// Prefix starts every sealed field.
const Prefix = "pd1:"

// KeySize is the size of the master key and of each data key (AES-256).
const KeySize = 32

const (
	// schemaVersion 2 added pending_erasures.
	schemaVersion = 2
	// maxCached bounds the data keys kept unwrapped in memory; a tenth is
	// dropped when it is reached.
	maxCached = 100000
	// checkText is sealed with the master key when the file is created, so
	// that a wrong master key is refused at open instead of making every
	// field unreadable.
	checkText = "payledger/personaldata/master-key-check/v1"
)

// Errors a caller tells apart.
var (
	// ErrErased: the owner's data key was erased; its fields cannot be
	// read again.
	ErrErased = errors.New("personaldata: the data key was erased")
	// ErrNoKey: the owner has no data key although a field names it (the
	// key store was lost or replaced): never read as an erasure.
	ErrNoKey = errors.New("personaldata: no data key for the owner")
	// ErrWrongMasterKey: the master key does not open this key store.
	ErrWrongMasterKey = errors.New("personaldata: the master key does not open this key store")
	// ErrLocked: another process has the key store open.
	ErrLocked = errors.New("personaldata: the key store is open in another process")
)

// Store is the key store. It is safe for concurrent use; one process opens
// a file at a time (the server).
type Store struct {
	db     *sql.DB
	path   string
	unlock func() error
	clock  func() time.Time

	masterMu sync.RWMutex // guards master, which Rewrap replaces
	master   cipher.AEAD

	randMu sync.Mutex // serialises reads from rnd, which need not be goroutine-safe
	rnd    io.Reader

	dbMu sync.Mutex // serialises key creation and erasure

	mu     sync.RWMutex
	keys   map[string]cipher.AEAD
	erased map[string]bool
}

// Open opens (or creates, mode 0600) the key store at path with the master
// key. A store created under another master key is refused.
func Open(path string, master []byte, clock func() time.Time, rnd io.Reader) (*Store, error) {
	if len(master) != KeySize {
		return nil, fmt.Errorf("personaldata: the master key must be %d bytes, got %d", KeySize, len(master))
	}
	if clock == nil || rnd == nil {
		return nil, errors.New("personaldata: clock and rnd are required")
	}
	aead, err := newAEAD(master)
	if err != nil {
		return nil, err
	}
	// A process that caches unwrapped keys under one master key must not
	// share the file with one that rewraps them under another.
	unlock, err := filelock.Exclusive(path)
	if errors.Is(err, filelock.ErrHeld) {
		return nil, fmt.Errorf("%w: %s.lock is held (is the server running?)", ErrLocked, path)
	}
	if err != nil {
		return nil, fmt.Errorf("personaldata: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err == nil {
		err = f.Close()
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("personaldata: create %s: %w", path, err), unlock())
	}
	// A rollback journal, deleted after each commit, rather than a WAL that
	// would keep an erased key's page until a checkpoint; secure_delete
	// overwrites a wrapped key's bytes when its row is cleared; FULL makes
	// a new key durable before any event sealed with it is appended.
	dsn := sqlitedsn.File(path).BusyTimeout(10*time.Second).JournalMode("DELETE").Synchronous("FULL").
		Pragma("secure_delete", "ON").TxLockImmediate()
	db, err := sql.Open("sqlite", dsn.String())
	if err != nil {
		return nil, errors.Join(fmt.Errorf("personaldata: open %s: %w", path, err), unlock())
	}
	s := &Store{db: db, path: path, unlock: unlock, master: aead, clock: clock, rnd: rnd,
		keys: map[string]cipher.AEAD{}, erased: map[string]bool{}}
	if err := s.init(); err != nil {
		return nil, errors.Join(err, db.Close(), unlock())
	}
	return s, nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("personaldata: %w", err)
	}
	return cipher.NewGCM(block)
}

// pendingSchema holds the erasures under way: marked before the erasure's
// event is appended, dropped when the key is erased, so that one a failure
// or a stop interrupted is found and completed at the next start.
const pendingSchema = `CREATE TABLE pending_erasures (owner TEXT PRIMARY KEY, since TEXT NOT NULL)`

func (s *Store) init() error {
	ctx := context.Background()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("personaldata: open %s: %w", s.path, err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	var version int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("personaldata: open %s: %w", s.path, err)
	}
	switch version {
	case 1, schemaVersion:
		var check []byte
		if err := tx.QueryRowContext(ctx, "SELECT value FROM meta WHERE name = 'check'").Scan(&check); err != nil {
			return fmt.Errorf("personaldata: open %s: read the master key check: %w", s.path, err)
		}
		if plain, err := s.openWith(s.master, check, []byte(checkText)); err != nil || string(plain) != checkText {
			return fmt.Errorf("%w (%s)", ErrWrongMasterKey, s.path)
		}
		if version == schemaVersion {
			return nil
		}
		for _, stmt := range []string{pendingSchema, fmt.Sprintf("PRAGMA user_version = %d", schemaVersion)} {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("personaldata: open %s: upgrade the schema: %w", s.path, err)
			}
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("personaldata: open %s: %w", s.path, err)
		}
		return nil
	case 0:
	default:
		return fmt.Errorf("personaldata: open %s: schema version %d is newer than this program's %d", s.path, version, schemaVersion)
	}
	check, err := s.sealWith(s.master, []byte(checkText), []byte(checkText))
	if err != nil {
		return err
	}
	for _, stmt := range []string{
		`CREATE TABLE meta (name TEXT PRIMARY KEY, value BLOB NOT NULL)`,
		// wrapped is NULL once erased; erased_at says when.
		`CREATE TABLE data_keys (
			owner      TEXT PRIMARY KEY,
			wrapped    BLOB,
			created_at TEXT NOT NULL,
			erased_at  TEXT
		)`,
		pendingSchema,
		fmt.Sprintf("PRAGMA user_version = %d", schemaVersion),
	} {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("personaldata: open %s: create schema: %w", s.path, err)
		}
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO meta (name, value) VALUES ('check', ?)", check); err != nil {
		return fmt.Errorf("personaldata: open %s: %w", s.path, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("personaldata: open %s: %w", s.path, err)
	}
	return nil
}

// Close closes the file.
func (s *Store) Close() error {
	err := s.db.Close()
	if uerr := s.unlock(); err == nil {
		err = uerr
	}
	if err != nil {
		return fmt.Errorf("personaldata: close %s: %w", s.path, err)
	}
	return nil
}

// masterKey returns the current master key's cipher.
func (s *Store) masterKey() cipher.AEAD {
	s.masterMu.RLock()
	defer s.masterMu.RUnlock()
	return s.master
}

// rewrapBatch bounds the keys one query of Rewrap reads.
const rewrapBatch = 1000

// Rewrap wraps every live data key with newMaster instead of the current
// master key, in one transaction, and returns how many it rewrapped; the
// old wrapped bytes are overwritten (secure_delete). Once the old master
// key is destroyed, a copy of the file from before (a backup) can no
// longer be read, which also makes the erasures since that copy final in
// it.
func (s *Store) Rewrap(newMaster []byte) (int, error) {
	if len(newMaster) != KeySize {
		return 0, fmt.Errorf("personaldata: the new master key must be %d bytes, got %d", KeySize, len(newMaster))
	}
	next, err := newAEAD(newMaster)
	if err != nil {
		return 0, err
	}
	s.dbMu.Lock()
	defer s.dbMu.Unlock()
	old := s.masterKey()
	ctx := context.Background()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("personaldata: rewrap: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	n, after := 0, ""
	for {
		rows, err := tx.QueryContext(ctx, "SELECT owner, wrapped FROM data_keys WHERE owner > ? AND wrapped IS NOT NULL ORDER BY owner LIMIT ?", after, rewrapBatch)
		if err != nil {
			return 0, fmt.Errorf("personaldata: rewrap: %w", err)
		}
		type row struct {
			owner   string
			wrapped []byte
		}
		var batch []row
		for rows.Next() {
			var r row
			if err := rows.Scan(&r.owner, &r.wrapped); err != nil {
				rows.Close()
				return 0, fmt.Errorf("personaldata: rewrap: %w", err)
			}
			batch = append(batch, r)
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return 0, fmt.Errorf("personaldata: rewrap: %w", err)
		}
		for _, r := range batch {
			raw, err := s.openWith(old, r.wrapped, wrapAD(r.owner))
			if err != nil {
				return 0, fmt.Errorf("personaldata: rewrap: unwrap the data key of %s: %w", r.owner, err)
			}
			w, err := s.sealWith(next, raw, wrapAD(r.owner))
			if err != nil {
				return 0, err
			}
			if _, err := tx.ExecContext(ctx, "UPDATE data_keys SET wrapped = ? WHERE owner = ?", w, r.owner); err != nil {
				return 0, fmt.Errorf("personaldata: rewrap %s: %w", r.owner, err)
			}
			n++
		}
		if len(batch) < rewrapBatch {
			break
		}
		after = batch[len(batch)-1].owner
	}
	check, err := s.sealWith(next, []byte(checkText), []byte(checkText))
	if err != nil {
		return 0, err
	}
	if _, err := tx.ExecContext(ctx, "UPDATE meta SET value = ? WHERE name = 'check'", check); err != nil {
		return 0, fmt.Errorf("personaldata: rewrap: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("personaldata: rewrap: %w", err)
	}
	s.masterMu.Lock()
	s.master = next
	s.masterMu.Unlock()
	return n, nil
}

// sealWith encrypts plain under aead with a fresh nonce: nonce|ciphertext.
func (s *Store) sealWith(aead cipher.AEAD, plain, ad []byte) ([]byte, error) {
	out := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plain)+aead.Overhead())
	s.randMu.Lock()
	_, err := io.ReadFull(s.rnd, out)
	s.randMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("personaldata: nonce: %w", err)
	}
	return aead.Seal(out, out, plain, ad), nil
}

func (s *Store) openWith(aead cipher.AEAD, sealed, ad []byte) ([]byte, error) {
	if len(sealed) < aead.NonceSize()+aead.Overhead() {
		return nil, errors.New("personaldata: sealed text too short")
	}
	n := aead.NonceSize()
	return aead.Open(nil, sealed[:n], sealed[n:], ad)
}

// wrapAD binds a wrapped key to its owner, so that swapping two rows of
// the file does not swap customers' keys.
func wrapAD(owner string) []byte { return []byte("payledger/datakey/v1\x00" + owner) }

// key returns the owner's data key, creating it when create is set and it
// has none. It returns ErrErased for an erased key and ErrNoKey when there
// is none and create is not set.
func (s *Store) key(owner string, create bool) (cipher.AEAD, error) {
	s.mu.RLock()
	k, erased := s.keys[owner], s.erased[owner]
	s.mu.RUnlock()
	switch {
	case erased:
		return nil, ErrErased
	case k != nil:
		return k, nil
	}
	s.dbMu.Lock()
	defer s.dbMu.Unlock()
	ctx := context.Background()
	var wrapped []byte
	var erasedAt sql.NullString
	err := s.db.QueryRowContext(ctx, "SELECT wrapped, erased_at FROM data_keys WHERE owner = ?", owner).Scan(&wrapped, &erasedAt)
	switch {
	case err == nil && erasedAt.Valid:
		s.remember(owner, nil, true)
		return nil, ErrErased
	case err == nil:
		raw, err := s.openWith(s.masterKey(), wrapped, wrapAD(owner))
		if err != nil {
			return nil, fmt.Errorf("personaldata: unwrap the data key of %s: %w", owner, err)
		}
		return s.remember(owner, raw, false)
	case !errors.Is(err, sql.ErrNoRows):
		return nil, fmt.Errorf("personaldata: read the data key of %s: %w", owner, err)
	case !create:
		return nil, fmt.Errorf("%w %s", ErrNoKey, owner)
	}
	raw := make([]byte, KeySize)
	s.randMu.Lock()
	_, err = io.ReadFull(s.rnd, raw)
	s.randMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("personaldata: generate a data key: %w", err)
	}
	w, err := s.sealWith(s.masterKey(), raw, wrapAD(owner))
	if err != nil {
		return nil, err
	}
	if _, err := s.db.ExecContext(ctx, "INSERT INTO data_keys (owner, wrapped, created_at) VALUES (?, ?, ?)",
		owner, w, s.clock().UTC().Format(time.RFC3339Nano)); err != nil {
		return nil, fmt.Errorf("personaldata: store the data key of %s: %w", owner, err)
	}
	return s.remember(owner, raw, false)
}

func (s *Store) remember(owner string, raw []byte, erased bool) (cipher.AEAD, error) {
	var k cipher.AEAD
	if !erased {
		var err error
		if k, err = newAEAD(raw); err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.keys)+len(s.erased) >= maxCached {
		n := maxCached / 10
		for o := range s.keys {
			if n--; n < 0 {
				break
			}
			delete(s.keys, o)
		}
		clear(s.erased)
	}
	if erased {
		delete(s.keys, owner)
		s.erased[owner] = true
	} else {
		s.keys[owner] = k
	}
	return k, nil
}

// Seal encrypts plain with owner's data key (made on first use, durable
// before Seal returns) and eventID as associated data.
func (s *Store) Seal(owner, eventID, plain string) (string, error) {
	if !validOwner(owner) {
		return "", fmt.Errorf("personaldata: owner %q is not a valid id", owner)
	}
	k, err := s.key(owner, true)
	if err != nil {
		return "", err
	}
	ct, err := s.sealWith(k, []byte(plain), []byte(eventID))
	if err != nil {
		return "", err
	}
	return Prefix + owner + ":" + base64.RawURLEncoding.EncodeToString(ct), nil
}

// Sealed reports whether text is a sealed field.
func Sealed(text string) bool { return strings.HasPrefix(text, Prefix) }

// parse splits a sealed field into its owner and sealed bytes.
func parse(field string) (owner string, sealed []byte, err error) {
	rest, ok := strings.CutPrefix(field, Prefix)
	if !ok {
		return "", nil, errors.New("personaldata: not a sealed field")
	}
	owner, b64, ok := strings.Cut(rest, ":")
	if !ok || !validOwner(owner) {
		return "", nil, errors.New("personaldata: malformed sealed field")
	}
	if sealed, err = base64.RawURLEncoding.DecodeString(b64); err != nil {
		return "", nil, fmt.Errorf("personaldata: malformed sealed field: %w", err)
	}
	return owner, sealed, nil
}

// Open decrypts a sealed field of eventID that owner's key sealed. It
// returns ErrErased when the key was erased, and an error when the field
// names another owner or does not open (altered, or moved from another
// event).
func (s *Store) Open(owner, eventID, field string) (string, error) {
	o, sealed, err := parse(field)
	if err != nil {
		return "", err
	}
	if o != owner {
		return "", fmt.Errorf("personaldata: a field of %s's event is sealed for %s", owner, o)
	}
	k, err := s.key(owner, false)
	if err != nil {
		return "", err
	}
	plain, err := s.openWith(k, sealed, []byte(eventID))
	if err != nil {
		return "", fmt.Errorf("personaldata: a field of event %s does not open: %w", eventID, err)
	}
	return string(plain), nil
}

// Erase destroys owner's data key: the wrapped key is overwritten in the
// file (secure_delete) and only the time of the erasure is kept; a pending
// erasure of owner is done. Erasing an owner with no key records the
// erasure all the same.
func (s *Store) Erase(owner string) error {
	s.dbMu.Lock()
	defer s.dbMu.Unlock()
	ctx := context.Background()
	now := s.clock().UTC().Format(time.RFC3339Nano)
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("personaldata: erase the data key of %s: %w", owner, err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if _, err := tx.ExecContext(ctx, `INSERT INTO data_keys (owner, wrapped, created_at, erased_at) VALUES (?, NULL, ?, ?)
		ON CONFLICT (owner) DO UPDATE SET wrapped = NULL, erased_at = COALESCE(erased_at, excluded.erased_at)`, owner, now, now); err != nil {
		return fmt.Errorf("personaldata: erase the data key of %s: %w", owner, err)
	}
	if _, err := tx.ExecContext(ctx, "DELETE FROM pending_erasures WHERE owner = ?", owner); err != nil {
		return fmt.Errorf("personaldata: erase the data key of %s: %w", owner, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("personaldata: erase the data key of %s: %w", owner, err)
	}
	s.mu.Lock()
	delete(s.keys, owner)
	s.erased[owner] = true
	s.mu.Unlock()
	return nil
}

// MarkErasing records, durably, that owner's erasure is under way: the
// caller appends the erasure's event next and then calls Erase, or Unmark
// when the event was not appended.
func (s *Store) MarkErasing(owner string) error {
	s.dbMu.Lock()
	defer s.dbMu.Unlock()
	if _, err := s.db.ExecContext(context.Background(), "INSERT INTO pending_erasures (owner, since) VALUES (?, ?) ON CONFLICT (owner) DO NOTHING",
		owner, s.clock().UTC().Format(time.RFC3339Nano)); err != nil {
		return fmt.Errorf("personaldata: mark the erasure of %s: %w", owner, err)
	}
	return nil
}

// Unmark drops owner's pending erasure: its event was not appended.
func (s *Store) Unmark(owner string) error {
	s.dbMu.Lock()
	defer s.dbMu.Unlock()
	if _, err := s.db.ExecContext(context.Background(), "DELETE FROM pending_erasures WHERE owner = ?", owner); err != nil {
		return fmt.Errorf("personaldata: unmark the erasure of %s: %w", owner, err)
	}
	return nil
}

// PendingErasures returns up to limit owners whose erasure was marked and
// neither erased nor unmarked, oldest first.
func (s *Store) PendingErasures(limit int) ([]string, error) {
	rows, err := s.db.QueryContext(context.Background(), "SELECT owner FROM pending_erasures ORDER BY since, owner LIMIT ?", limit)
	if err != nil {
		return nil, fmt.Errorf("personaldata: read the pending erasures: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var o string
		if err := rows.Scan(&o); err != nil {
			return nil, fmt.Errorf("personaldata: read the pending erasures: %w", err)
		}
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("personaldata: read the pending erasures: %w", err)
	}
	return out, nil
}

// State is what the store knows of an owner's key.
type State int

// The states of an owner's key.
const (
	NoKey State = iota
	Live
	Erased
)

// StateOf returns the state of owner's key.
func (s *Store) StateOf(owner string) (State, error) {
	_, err := s.key(owner, false)
	switch {
	case err == nil:
		return Live, nil
	case errors.Is(err, ErrErased):
		return Erased, nil
	case errors.Is(err, ErrNoKey):
		return NoKey, nil
	}
	return NoKey, err
}

// validOwner accepts the ids the ledger names owners with: letters, digits,
// '-' and '_', at most 64 bytes; never ':'.
func validOwner(o string) bool {
	if o == "" || len(o) > 64 {
		return false
	}
	for i := 0; i < len(o); i++ {
		c := o[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// b64url reports whether c is in the unpadded base64url alphabet.
func b64url(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// Resolve replaces each sealed field inside text (a read model's copy of a
// field, possibly within a longer text) by its plain text, by erased when
// its key was erased, and by unreadable when it does not open. Only the
// keys of owners are tried: a field naming anyone else reads unreadable
// without its key being looked at, so a text a customer chose cannot ask
// whether another customer's key was erased. For reads only: an error is
// shown, not returned, since the log stays the authority.
func (s *Store) Resolve(owners []string, eventID, text, erased, unreadable string) string {
	if !strings.Contains(text, Prefix) {
		return text
	}
	var b strings.Builder
	for {
		i := strings.Index(text, Prefix)
		if i < 0 {
			b.WriteString(text)
			return b.String()
		}
		b.WriteString(text[:i])
		// The owner runs to the next ':', the sealed bytes to the first
		// byte outside base64url.
		j := i + len(Prefix)
		colon := strings.IndexByte(text[j:], ':')
		if colon < 0 {
			b.WriteString(text[i:])
			return b.String()
		}
		end := j + colon + 1
		for end < len(text) && b64url(text[end]) {
			end++
		}
		field := text[i:end]
		owner, _, err := parse(field)
		if err == nil && !slices.Contains(owners, owner) {
			err = errors.New("personaldata: a field sealed for another owner")
		}
		var plain string
		if err == nil {
			plain, err = s.Open(owner, eventID, field)
		}
		switch {
		case err == nil:
			b.WriteString(plain)
		case errors.Is(err, ErrErased):
			b.WriteString(erased)
		default:
			b.WriteString(unreadable)
		}
		text = text[end:]
	}
}
