// Package personaldata keeps the per-customer data keys that seal the
// personal data in events (R20), wrapped by a master key, outside the
// event log, so that erasing a key (crypto-shredding) makes the customer's
// data unreadable while the log stays as it was. The keys live in a SQLite
// file (personaldata.db, one process at a time: Open) or in a schema of
// a PostgreSQL database that several processes share (OpenPostgres,
// postgres.go); one Store type serves both through a small dialect.
//
// A sealed field is the text "pd1:<owner>:<base64url(nonce|ciphertext)>":
// AES-256-GCM under the owner's data key with the event's id as associated
// data, so a sealed field copied into another event does not open.
//
// It imports nothing of the project: the ledger decides which fields are
// personal and whose key seals them.
package personaldata

import (
	"bytes"
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
	"sync/atomic"
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
	// ErrRotated: the master key was rotated since this process read the
	// key store's check value, so a key it would wrap now could not be
	// opened by the others: it must restart with the new master key.
	ErrRotated = errors.New("personaldata: the master key was rotated since this process opened the key store; restart it with the new master key")
)

// Store is the key store. It is safe for concurrent use. One process opens
// a SQLite file at a time (the server); a PostgreSQL schema is shared by
// several, which learn of each other's erasures (postgres.go).
type Store struct {
	db     *sql.DB
	d      dialect
	path   string // names the store in messages: the file or the schema
	unlock func() error
	clock  func() time.Time
	pg     *pgSide // the PostgreSQL side (listener, lock); nil for SQLite

	masterMu sync.RWMutex // guards master and check, which Rewrap replaces
	master   cipher.AEAD
	// check is the stored check value as this process last read or wrote
	// it: a new key is stored only while the store still holds it, so that
	// no process wraps a key under a master key rotated away (fence).
	check []byte

	randMu sync.Mutex // serialises reads from rnd, which need not be goroutine-safe
	rnd    io.Reader

	dbMu sync.Mutex // serialises key creation and erasure

	mu     sync.RWMutex
	keys   map[string]cipher.AEAD
	erased map[string]bool
	// epoch counts the invalidations of the cache (another process's
	// erasure, a lost listener): a key read from the database before one is
	// not cached after it.
	epoch uint64
	// caching is false while a PostgreSQL store cannot hear the others'
	// erasures: every key is then read from the database.
	caching atomic.Bool
}

// dialect is what differs between the SQL of the two backends.
type dialect struct {
	// dollar: placeholders are $1, $2, ... instead of ?.
	dollar bool
	// forShare locks the row a statement reads until the transaction ends.
	forShare string
}

var (
	sqliteDialect   = dialect{}
	postgresDialect = dialect{dollar: true, forShare: " FOR SHARE"}
)

// q rewrites a statement written with ? placeholders for the dialect; no
// statement of this package has a ? anywhere else.
func (d dialect) q(query string) string {
	if !d.dollar || !strings.Contains(query, "?") {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			fmt.Fprintf(&b, "$%d", n)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Open opens (or creates, mode 0600) the key store at path with the master
// key. A store created under another master key is refused.
func Open(path string, master []byte, clock func() time.Time, rnd io.Reader) (*Store, error) {
	aead, err := checkArgs(master, clock, rnd)
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
	s := newStore(db, sqliteDialect, path, aead, clock, rnd)
	s.unlock = unlock
	s.caching.Store(true)
	if err := s.init(); err != nil {
		return nil, errors.Join(err, db.Close(), unlock())
	}
	return s, nil
}

func newStore(db *sql.DB, d dialect, path string, master cipher.AEAD, clock func() time.Time, rnd io.Reader) *Store {
	return &Store{db: db, d: d, path: path, unlock: func() error { return nil }, master: master, clock: clock, rnd: rnd,
		keys: map[string]cipher.AEAD{}, erased: map[string]bool{}}
}

// checkArgs validates what both Opens take.
func checkArgs(master []byte, clock func() time.Time, rnd io.Reader) (cipher.AEAD, error) {
	if len(master) != KeySize {
		return nil, fmt.Errorf("personaldata: the master key must be %d bytes, got %d", KeySize, len(master))
	}
	if clock == nil || rnd == nil {
		return nil, errors.New("personaldata: clock and rnd are required")
	}
	return newAEAD(master)
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
		if err := s.verifyCheck(check); err != nil {
			return err
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
	s.check = check
	return nil
}

// verifyCheck refuses a check value the master key does not open, and
// remembers it for the fence otherwise.
func (s *Store) verifyCheck(check []byte) error {
	if plain, err := s.openWith(s.master, check, []byte(checkText)); err != nil || string(plain) != checkText {
		return fmt.Errorf("%w (%s)", ErrWrongMasterKey, s.path)
	}
	s.check = check
	return nil
}

// Close closes the file or the connections.
func (s *Store) Close() error {
	var err error
	if s.pg != nil {
		err = s.pg.close()
	}
	if derr := s.db.Close(); err == nil {
		err = derr
	}
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

// currentCheck returns the check value the fence expects.
func (s *Store) currentCheck() []byte {
	s.masterMu.RLock()
	defer s.masterMu.RUnlock()
	return s.check
}

// rewrapBatch bounds the keys one query of Rewrap reads.
const rewrapBatch = 1000

// Rewrap wraps every live data key with newMaster instead of the current
// master key, in one transaction, and returns how many it rewrapped; the
// old wrapped bytes are overwritten (SQLite: secure_delete; PostgreSQL
// keeps them in dead rows until VACUUM and in its WAL). Once the old
// master key is destroyed, a copy from before (a backup, a WAL archive)
// can no longer be read, which also makes the erasures since that copy
// final in it. A PostgreSQL store must have been opened with
// PostgresOptions.Exclusive, so that no server holds the old master key.
func (s *Store) Rewrap(newMaster []byte) (int, error) {
	if len(newMaster) != KeySize {
		return 0, fmt.Errorf("personaldata: the new master key must be %d bytes, got %d", KeySize, len(newMaster))
	}
	if s.pg != nil && !s.pg.exclusive {
		return 0, fmt.Errorf("%w: rewrapping %s needs the key store opened exclusively (PostgresOptions.Exclusive), with every server stopped", ErrLocked, s.path)
	}
	next, err := newAEAD(newMaster)
	if err != nil {
		return 0, err
	}
	s.dbMu.Lock()
	defer s.dbMu.Unlock()
	old := s.masterKey()
	check, err := s.sealWith(next, []byte(checkText), []byte(checkText))
	if err != nil {
		return 0, err
	}
	ctx := context.Background()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("personaldata: rewrap: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	// The check value first: its row lock makes a key creation that has
	// read the old value finish before the keys are read, and one that has
	// not refuse (ErrRotated) instead of adding a key under the old master.
	if _, err := tx.ExecContext(ctx, s.d.q("UPDATE meta SET value = ? WHERE name = 'check'"), check); err != nil {
		return 0, fmt.Errorf("personaldata: rewrap: %w", err)
	}
	n, after := 0, ""
	for {
		rows, err := tx.QueryContext(ctx, s.d.q("SELECT owner, wrapped FROM data_keys WHERE owner > ? AND wrapped IS NOT NULL ORDER BY owner LIMIT ?"), after, rewrapBatch)
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
			if _, err := tx.ExecContext(ctx, s.d.q("UPDATE data_keys SET wrapped = ? WHERE owner = ?"), w, r.owner); err != nil {
				return 0, fmt.Errorf("personaldata: rewrap %s: %w", r.owner, err)
			}
			n++
		}
		if len(batch) < rewrapBatch {
			break
		}
		after = batch[len(batch)-1].owner
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("personaldata: rewrap: %w", err)
	}
	s.masterMu.Lock()
	s.master, s.check = next, check
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
	k, erased, epoch := s.keys[owner], s.erased[owner], s.epoch
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
	wrapped, erasedAt, err := s.readKey(ctx, s.db, owner)
	switch {
	case err == nil:
		return s.unwrap(owner, wrapped, erasedAt, epoch)
	case !errors.Is(err, sql.ErrNoRows):
		return nil, err
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
	if wrapped, erasedAt, err = s.createKey(ctx, owner, raw); err != nil {
		return nil, err
	}
	return s.unwrap(owner, wrapped, erasedAt, epoch)
}

// querier is what readKey needs of a database or a transaction.
type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// readKey reads owner's row: sql.ErrNoRows when it has none.
func (s *Store) readKey(ctx context.Context, q querier, owner string) (wrapped []byte, erasedAt sql.NullString, err error) {
	err = q.QueryRowContext(ctx, s.d.q("SELECT wrapped, erased_at FROM data_keys WHERE owner = ?"), owner).Scan(&wrapped, &erasedAt)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		err = fmt.Errorf("personaldata: read the data key of %s: %w", owner, err)
	}
	return wrapped, erasedAt, err
}

// unwrap turns owner's row into its key (or ErrErased) and caches it.
func (s *Store) unwrap(owner string, wrapped []byte, erasedAt sql.NullString, epoch uint64) (cipher.AEAD, error) {
	if erasedAt.Valid {
		s.remember(owner, nil, true, epoch)
		return nil, ErrErased
	}
	raw, err := s.openWith(s.masterKey(), wrapped, wrapAD(owner))
	if err != nil {
		return nil, fmt.Errorf("personaldata: unwrap the data key of %s (was the master key rotated since this process started?): %w", owner, err)
	}
	return s.remember(owner, raw, false, epoch)
}

// createKey stores raw, wrapped, as owner's key unless another process
// stored one first, and returns the row as it then is (the winner's key,
// or an erasure): two processes sealing for a new owner at once end with
// one key. It is fenced on the check value, so a process whose master key
// was rotated away adds no key the others cannot unwrap.
func (s *Store) createKey(ctx context.Context, owner string, raw []byte) ([]byte, sql.NullString, error) {
	var none sql.NullString
	master, check := s.masterKey(), s.currentCheck()
	w, err := s.sealWith(master, raw, wrapAD(owner))
	if err != nil {
		return nil, none, err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, none, fmt.Errorf("personaldata: store the data key of %s: %w", owner, err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	var stored []byte
	if err := tx.QueryRowContext(ctx, "SELECT value FROM meta WHERE name = 'check'"+s.d.forShare).Scan(&stored); err != nil {
		return nil, none, fmt.Errorf("personaldata: store the data key of %s: read the check value: %w", owner, err)
	}
	if !bytes.Equal(stored, check) {
		return nil, none, fmt.Errorf("%w (%s)", ErrRotated, s.path)
	}
	if _, err := tx.ExecContext(ctx, s.d.q("INSERT INTO data_keys (owner, wrapped, created_at) VALUES (?, ?, ?) ON CONFLICT (owner) DO NOTHING"),
		owner, w, s.clock().UTC().Format(time.RFC3339Nano)); err != nil {
		return nil, none, fmt.Errorf("personaldata: store the data key of %s: %w", owner, err)
	}
	wrapped, erasedAt, err := s.readKey(ctx, tx, owner)
	if err != nil {
		return nil, none, fmt.Errorf("personaldata: read back the data key of %s: %w", owner, err)
	}
	if err := tx.Commit(); err != nil {
		return nil, none, fmt.Errorf("personaldata: store the data key of %s: %w", owner, err)
	}
	return wrapped, erasedAt, nil
}

// remember caches owner's key (or its erasure) unless the cache was
// invalidated since epoch was read, and returns the key either way.
func (s *Store) remember(owner string, raw []byte, erased bool, epoch uint64) (cipher.AEAD, error) {
	var k cipher.AEAD
	if !erased {
		var err error
		if k, err = newAEAD(raw); err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if epoch != s.epoch || !s.caching.Load() {
		return k, nil
	}
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

// forget drops owner's cached key, or every cached key when owner is
// empty, and invalidates the reads under way.
func (s *Store) forget(owner string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.epoch++
	if owner == "" {
		clear(s.keys)
		clear(s.erased)
		return
	}
	delete(s.keys, owner)
	delete(s.erased, owner)
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
	if err := s.eraseIn(ctx, tx, owner, now); err != nil {
		return fmt.Errorf("personaldata: erase the data key of %s: %w", owner, err)
	}
	if _, err := tx.ExecContext(ctx, s.d.q("DELETE FROM pending_erasures WHERE owner = ?"), owner); err != nil {
		return fmt.Errorf("personaldata: erase the data key of %s: %w", owner, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("personaldata: erase the data key of %s: %w", owner, err)
	}
	s.mu.Lock()
	s.epoch++
	delete(s.keys, owner)
	s.erased[owner] = true
	s.mu.Unlock()
	return nil
}

// eraseIn clears owner's wrapped key in tx, keeping the first erasure's
// time, and on PostgreSQL tells the other processes at commit, which drop
// their cached copy of the key.
func (s *Store) eraseIn(ctx context.Context, tx *sql.Tx, owner, at string) error {
	if _, err := tx.ExecContext(ctx, s.d.q(`INSERT INTO data_keys (owner, wrapped, created_at, erased_at) VALUES (?, NULL, ?, ?)
		ON CONFLICT (owner) DO UPDATE SET wrapped = NULL, erased_at = COALESCE(data_keys.erased_at, excluded.erased_at)`), owner, at, at); err != nil {
		return err
	}
	if s.pg != nil {
		if _, err := tx.ExecContext(ctx, "SELECT pg_notify($1, $2)", erasureChannel, s.pg.schema+":"+owner); err != nil {
			return err
		}
	}
	return nil
}

// MarkErasing records, durably, that owner's erasure is under way: the
// caller appends the erasure's event next and then calls Erase, or Unmark
// when the event was not appended.
func (s *Store) MarkErasing(owner string) error {
	s.dbMu.Lock()
	defer s.dbMu.Unlock()
	if _, err := s.db.ExecContext(context.Background(), s.d.q("INSERT INTO pending_erasures (owner, since) VALUES (?, ?) ON CONFLICT (owner) DO NOTHING"),
		owner, s.clock().UTC().Format(time.RFC3339Nano)); err != nil {
		return fmt.Errorf("personaldata: mark the erasure of %s: %w", owner, err)
	}
	return nil
}

// Unmark drops owner's pending erasure: its event was not appended.
func (s *Store) Unmark(owner string) error {
	s.dbMu.Lock()
	defer s.dbMu.Unlock()
	if _, err := s.db.ExecContext(context.Background(), s.d.q("DELETE FROM pending_erasures WHERE owner = ?"), owner); err != nil {
		return fmt.Errorf("personaldata: unmark the erasure of %s: %w", owner, err)
	}
	return nil
}

// PendingErasures returns up to limit owners whose erasure was marked and
// neither erased nor unmarked, oldest first.
func (s *Store) PendingErasures(limit int) ([]string, error) {
	rows, err := s.db.QueryContext(context.Background(), s.d.q("SELECT owner FROM pending_erasures ORDER BY since, owner LIMIT ?"), limit)
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
