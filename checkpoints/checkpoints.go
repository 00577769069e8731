// Package checkpoints signs the log: a checkpoint is an Ed25519 signature
// over the log's length and the Merkle root of every event hash in log
// order (eventstore/merkle), at a time. A regulator who kept a checkpoint
// can later check, with only the public key, that the log is still the
// same up to that length (payledger verify --checkpoints) and that an
// event is in it (an inclusion proof). The signing key is kept apart from
// the data directory and never enters the log.
//
// It imports the eventstore port and eventstore/merkle; it must never
// import the ledger, httpapi, projections or a store adapter.
package checkpoints

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/payledger/payledger/eventstore"
	"github.com/payledger/payledger/eventstore/merkle"
)

// Checkpoint is one signed statement of the log.
type Checkpoint struct {
	Size      uint64    `json:"size"`
	Root      string    `json:"root"`
	Time      time.Time `json:"time"`
	KeyID     string    `json:"key_id"`
	Signature string    `json:"signature"`
}

// statementHeader starts every signed statement, so that a signature made
// for anything else never passes for a checkpoint.
const statementHeader = "payledger/checkpoint/v1"

// Statement is the exact text a checkpoint's signature covers:
//
//	"payledger/checkpoint/v1\n" + size + "\n" + hex(root) + "\n" + time + "\n"
//
// with size in decimal and time in RFC 3339 UTC with nanoseconds.
func Statement(size uint64, root merkle.Hash, at time.Time) []byte {
	return []byte(statementHeader + "\n" + strconv.FormatUint(size, 10) + "\n" + hex.EncodeToString(root[:]) + "\n" +
		at.UTC().Format(time.RFC3339Nano) + "\n")
}

// KeyID names a public key: the first 8 bytes of its SHA-256, in hex.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// Sign makes the checkpoint of a log of size events with root at.
func Sign(priv ed25519.PrivateKey, size uint64, root merkle.Hash, at time.Time) Checkpoint {
	at = at.UTC()
	return Checkpoint{Size: size, Root: hex.EncodeToString(root[:]), Time: at, KeyID: KeyID(priv.Public().(ed25519.PublicKey)),
		Signature: base64.StdEncoding.EncodeToString(ed25519.Sign(priv, Statement(size, root, at)))}
}

// ErrSignature means a checkpoint's signature does not verify with the key.
var ErrSignature = errors.New("checkpoints: the signature does not verify with this public key")

// RootHash decodes the checkpoint's root.
func (c Checkpoint) RootHash() (merkle.Hash, error) {
	var root merkle.Hash
	b, err := hex.DecodeString(c.Root)
	if err != nil || len(b) != len(root) {
		return root, fmt.Errorf("checkpoints: root %q is not 32 bytes of hex", c.Root)
	}
	copy(root[:], b)
	return root, nil
}

// Verify checks the checkpoint's signature with pub and returns its root.
func (c Checkpoint) Verify(pub ed25519.PublicKey) (merkle.Hash, error) {
	root, err := c.RootHash()
	if err != nil {
		return root, err
	}
	sig, err := base64.StdEncoding.DecodeString(c.Signature)
	if err != nil || !ed25519.Verify(pub, Statement(c.Size, root, c.Time), sig) {
		return root, ErrSignature
	}
	return root, nil
}

// Keys are files of one line: a private key is the base64 of its 32-byte
// seed, a public key the base64 of its 32 bytes.

// CreateKey writes a new private key to path (mode 0600, refusing to
// overwrite) and returns its public key.
func CreateKey(path string, rand io.Reader) (ed25519.PublicKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("checkpoints: create the signing key: %w", err)
	}
	if _, err := fmt.Fprintln(f, base64.StdEncoding.EncodeToString(priv.Seed())); err != nil {
		_ = f.Close()
		return nil, err
	}
	return pub, f.Close()
}

// LoadKey reads a private key from path, refusing a file that others than
// its owner may read (a signing key that leaked would sign a rewritten
// log).
func LoadKey(path string) (ed25519.PrivateKey, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("checkpoints: signing key: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("checkpoints: signing key %s is readable by others (mode %04o): chmod 600 it", path, st.Mode().Perm())
	}
	seed, err := readLine(path, ed25519.SeedSize)
	if err != nil {
		return nil, err
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// LoadPublicKey reads a public key from path.
func LoadPublicKey(path string) (ed25519.PublicKey, error) {
	b, err := readLine(path, ed25519.PublicKeySize)
	return ed25519.PublicKey(b), err
}

// EncodePublicKey is a public key as its file holds it.
func EncodePublicKey(pub ed25519.PublicKey) string { return base64.StdEncoding.EncodeToString(pub) }

func readLine(path string, size int) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("checkpoints: %w", err)
	}
	if len(raw) > 1024 {
		return nil, fmt.Errorf("checkpoints: %s is not a key file", path)
	}
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil || len(b) != size {
		return nil, fmt.Errorf("checkpoints: %s does not hold a base64 key of %d bytes", path, size)
	}
	return b, nil
}

// File names of a data directory's checkpoints: the log of every
// checkpoint signed, one JSON line each, and the frontier of the last one
// (unsigned: it is checked against the last checkpoint's root before use).
const (
	LogFile      = "checkpoints.jsonl"
	frontierFile = "checkpoints.frontier"
	exportPrefix = "checkpoint-"
)

// maxCheckpoints bounds the checkpoints Read holds in memory: five years
// of one a minute is 2.6 million. Past it Read fails rather than leave
// the later ones out; the signer indexes its own log without the bound.
const maxCheckpoints = 3_000_000

// errTooMany is Read's failure past maxCheckpoints.
var errTooMany = fmt.Errorf("checkpoints: more than %d checkpoints to read at once; check against the export directory's newer ones, or sign less often (--checkpoint-every)", maxCheckpoints)

// Read returns the checkpoints of dir, smallest size first: those of its
// log file and those exported one per file (checkpoint-*.json).
func Read(dir string) ([]Checkpoint, error) {
	var out []Checkpoint
	if f, err := os.Open(filepath.Join(dir, LogFile)); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if len(out) == maxCheckpoints {
				_ = f.Close()
				return nil, errTooMany
			}
			var c Checkpoint
			if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
				_ = f.Close()
				return nil, fmt.Errorf("checkpoints: %s: %w", LogFile, err)
			}
			out = append(out, c)
		}
		err := sc.Err()
		_ = f.Close()
		if err != nil {
			return nil, fmt.Errorf("checkpoints: %s: %w", LogFile, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("checkpoints: %w", err)
	}
	names, err := filepath.Glob(filepath.Join(dir, exportPrefix+"*.json"))
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		if len(out) >= maxCheckpoints {
			return nil, errTooMany
		}
		b, err := os.ReadFile(n)
		if err != nil {
			return nil, fmt.Errorf("checkpoints: %w", err)
		}
		var c Checkpoint
		if err := json.Unmarshal(b, &c); err != nil {
			return nil, fmt.Errorf("checkpoints: %s: %w", n, err)
		}
		out = append(out, c)
	}
	slices.SortStableFunc(out, func(a, b Checkpoint) int {
		switch {
		case a.Size < b.Size:
			return -1
		case a.Size > b.Size:
			return 1
		}
		return a.Time.Compare(b.Time)
	})
	return out, nil
}

// LogReader is what a Signer reads of the log.
type LogReader interface {
	Head(ctx context.Context) (int64, error)
	ReadAll(ctx context.Context, after int64, limit int) ([]eventstore.Event, error)
}

// Signer follows the log and signs checkpoints of it into a data
// directory's log of checkpoints, and a copy of each into ExportDir when
// set (storage the server cannot rewrite). Its Merkle tree resumes from
// the last checkpoint's frontier, so a restart reads only the events since.
type Signer struct {
	log       LogReader
	priv      ed25519.PrivateKey
	dir       string
	exportDir string
	clock     func() time.Time

	mu      sync.Mutex
	builder *merkle.Builder
	latest  *Checkpoint
	// blocks are the roots of the log's complete blocks of blockSize
	// events (savedBlocks of them in the blocks file), upper[k] the roots
	// of its aligned runs of 2^(k+1) blocks, tail the hashes of the events
	// after the last complete block (proofs.go).
	blocks      []merkle.Hash
	upper       [][]merkle.Hash
	savedBlocks int
	tail        []merkle.Hash
	ix          index
}

// NewSigner opens the checkpoints of dir (creating nothing yet).
func NewSigner(log LogReader, priv ed25519.PrivateKey, dir, exportDir string, clock func() time.Time) (*Signer, error) {
	s := &Signer{log: log, priv: priv, dir: dir, exportDir: exportDir, clock: clock, builder: &merkle.Builder{}}
	var err error
	if s.ix, err = indexLog(dir); err != nil {
		return nil, err
	}
	if len(s.ix.sizes) == 0 {
		return s, nil
	}
	last, err := s.at(len(s.ix.sizes) - 1)
	if err != nil {
		return nil, err
	}
	root, err := last.Verify(priv.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, fmt.Errorf("checkpoints: the last checkpoint of %s: %w", dir, err)
	}
	s.latest = &last
	blocks, err := loadBlocks(dir)
	if err != nil {
		return nil, err
	}
	want := int(last.Size / blockSize)
	if b, ok := s.resume(last.Size, root); ok && len(blocks) >= want {
		// Blocks past the last checkpoint were written by a signer that
		// stopped before recording it; they are dropped and made again.
		if len(blocks) > want {
			if err := os.Truncate(filepath.Join(dir, blocksFile), int64(32*want)); err != nil {
				return nil, err
			}
		}
		s.builder, s.savedBlocks = b, want
		for _, h := range blocks[:want] {
			s.addBlock(h)
		}
		return s, nil
	}
	// Without a frontier and blocks that match the last checkpoint, the
	// tree and the blocks are made again from the whole log.
	if err := os.Remove(filepath.Join(dir, blocksFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	return s, nil
}

// frontierState is the frontier file's JSON.
type frontierState struct {
	Size     uint64   `json:"size"`
	Frontier []string `json:"frontier"`
}

// resume rebuilds the tree from the frontier file when it matches the last
// checkpoint; otherwise the Signer reads the whole log again.
func (s *Signer) resume(size uint64, root merkle.Hash) (*merkle.Builder, bool) {
	raw, err := os.ReadFile(filepath.Join(s.dir, frontierFile))
	if err != nil {
		return nil, false
	}
	var f frontierState
	if json.Unmarshal(raw, &f) != nil || f.Size != size {
		return nil, false
	}
	hashes := make([]merkle.Hash, len(f.Frontier))
	for i, h := range f.Frontier {
		b, err := hex.DecodeString(h)
		if err != nil || len(b) != 32 {
			return nil, false
		}
		copy(hashes[i][:], b)
	}
	b, err := merkle.Resume(size, hashes)
	if err != nil || b.Root() != root {
		return nil, false
	}
	return b, true
}

// Latest returns the last checkpoint signed, if any.
func (s *Signer) Latest() (Checkpoint, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.latest == nil {
		return Checkpoint{}, false
	}
	return *s.latest, true
}

// Checkpoint reads the log up to its head, and signs and records a
// checkpoint of it when the log grew since the last one (or when there is
// none yet); it returns the latest checkpoint.
func (s *Signer) Checkpoint(ctx context.Context) (Checkpoint, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	head, err := s.log.Head(ctx)
	if err != nil {
		return Checkpoint{}, err
	}
	if size := s.builder.Size(); uint64(len(s.tail)) != size%blockSize {
		// A resumed tree: the events after its last complete block.
		if s.tail, err = s.leaves(ctx, size-size%blockSize, size); err != nil {
			return Checkpoint{}, err
		}
	}
	for pos := int64(s.builder.Size()); pos < head; {
		evs, err := s.log.ReadAll(ctx, pos, eventstore.MaxReadBatch)
		if err != nil {
			return Checkpoint{}, err
		}
		if len(evs) == 0 {
			return Checkpoint{}, fmt.Errorf("checkpoints: the log ends at %d before its head %d", pos, head)
		}
		for _, e := range evs {
			if e.Position != pos+1 {
				return Checkpoint{}, fmt.Errorf("checkpoints: position %d follows %d", e.Position, pos)
			}
			s.addLeaf(e.Hash)
			pos = e.Position
		}
	}
	if s.latest != nil && s.latest.Size == s.builder.Size() {
		return *s.latest, nil
	}
	c := Sign(s.priv, s.builder.Size(), s.builder.Root(), s.clock())
	if err := s.record(c); err != nil {
		return Checkpoint{}, err
	}
	s.latest = &c
	return c, nil
}

// record appends c to the log of checkpoints (synced), exports it, and
// keeps the frontier it was made from.
func (s *Signer) record(c Checkpoint) error {
	line, err := json.Marshal(c)
	if err != nil {
		return err
	}
	// The blocks go first: a checkpoint on record always has its blocks.
	if err := appendBlocks(s.dir, s.blocks, s.savedBlocks); err != nil {
		return err
	}
	s.savedBlocks = len(s.blocks)
	line = append(line, '\n')
	if err := appendSynced(filepath.Join(s.dir, LogFile), line); err != nil {
		return err
	}
	s.ix.add(c.Size, int64(len(line)))
	if s.exportDir != "" {
		name := filepath.Join(s.exportDir, fmt.Sprintf("%s%020d.json", exportPrefix, c.Size))
		if err := writeNew(name, line[:len(line)-1]); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("checkpoints: export: %w", err)
		}
	}
	f := frontierState{Size: c.Size}
	for _, h := range s.builder.Frontier() {
		f.Frontier = append(f.Frontier, hex.EncodeToString(h[:]))
	}
	raw, err := json.Marshal(f)
	if err != nil {
		return err
	}
	tmp := filepath.Join(s.dir, frontierFile+".tmp")
	if err := os.WriteFile(tmp, raw, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(s.dir, frontierFile))
}

func appendSynced(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("checkpoints: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		_ = f.Close()
		return fmt.Errorf("checkpoints: %w", err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("checkpoints: %w", err)
	}
	return f.Close()
}

// writeNew writes a file that must not exist yet: an exported checkpoint
// is never rewritten.
func writeNew(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// Problem is why a log does not extend a checkpoint.
type Problem struct {
	Checkpoint Checkpoint
	Detail     string
}

func (p Problem) Error() string {
	return fmt.Sprintf("checkpoint of %d events signed %s (key %s): %s", p.Checkpoint.Size,
		p.Checkpoint.Time.Format(time.RFC3339), p.Checkpoint.KeyID, p.Detail)
}

// Checker verifies, while the log is read in order, that it extends every
// checkpoint: the same leaves up to each checkpoint's size. Feed it every
// event hash in position order with Add; then Done.
type Checker struct {
	pub   ed25519.PublicKey
	cps   []Checkpoint
	roots []merkle.Hash
	next  int
	b     merkle.Builder
	// Checked counts the checkpoints the log was found to extend.
	Checked int
}

// NewChecker checks every checkpoint's signature with pub first.
func NewChecker(pub ed25519.PublicKey, cps []Checkpoint) (*Checker, error) {
	c := &Checker{pub: pub, cps: cps, roots: make([]merkle.Hash, len(cps))}
	for i, cp := range cps {
		root, err := cp.Verify(pub)
		if err != nil {
			return nil, Problem{Checkpoint: cp, Detail: err.Error()}
		}
		c.roots[i] = root
		if i > 0 && cps[i-1].Size == cp.Size && !bytes.Equal(c.roots[i-1][:], root[:]) {
			return nil, Problem{Checkpoint: cp, Detail: "two signed checkpoints of the same size have different roots: the log was forked"}
		}
	}
	// A checkpoint of the empty log is matched before any event.
	for c.next < len(cps) && cps[c.next].Size == 0 {
		if c.roots[c.next] != merkle.EmptyRoot {
			return nil, Problem{Checkpoint: cps[c.next], Detail: "a checkpoint of no events with a root other than the empty tree's"}
		}
		c.next++
		c.Checked++
	}
	return c, nil
}

// Add takes the next event hash of the log; it fails at the first
// checkpoint the log no longer matches.
func (c *Checker) Add(hash merkle.Hash) error {
	c.b.Add(hash)
	for c.next < len(c.cps) && c.cps[c.next].Size == c.b.Size() {
		if c.b.Root() != c.roots[c.next] {
			return Problem{Checkpoint: c.cps[c.next], Detail: fmt.Sprintf(
				"the log's first %d events are not the ones signed: an event up to position %d (after position %d, the last checkpoint it still matched) was rewritten, removed, inserted or reordered",
				c.b.Size(), c.b.Size(), c.lastMatched())}
		}
		c.next++
		c.Checked++
	}
	return nil
}

func (c *Checker) lastMatched() uint64 {
	if c.next == 0 {
		return 0
	}
	return c.cps[c.next-1].Size
}

// Done fails when a checkpoint is longer than the log: events were removed
// from its end.
func (c *Checker) Done() error {
	if c.next < len(c.cps) {
		cp := c.cps[c.next]
		return Problem{Checkpoint: cp, Detail: fmt.Sprintf("the log has %d events, fewer than the %d signed: it was truncated", c.b.Size(), cp.Size)}
	}
	return nil
}
