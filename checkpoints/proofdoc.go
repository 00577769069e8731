package checkpoints

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/payledger/payledger/eventstore/merkle"
)

// Proof is a self-contained proof document: what GET /v1/proofs/... serve
// and `payledger proof verify` checks with only the public key.
//
// An inclusion proof shows that the event at Position, whose hash is
// EventHash, is leaf Position-1 of the tree whose root Checkpoint signs.
// A consistency proof shows that the tree From signs is a prefix of the
// tree Checkpoint signs. Path is RFC 9162's inclusion path or consistency
// proof, in hex.
type Proof struct {
	Kind       string      `json:"kind"`
	Position   uint64      `json:"position,omitempty"`
	EventHash  string      `json:"event_hash,omitempty"`
	From       *Checkpoint `json:"from,omitempty"`
	Checkpoint Checkpoint  `json:"checkpoint"`
	Path       []string    `json:"path"`
}

// Kinds of Proof.
const (
	KindInclusion   = "inclusion"
	KindConsistency = "consistency"
)

// ErrNoCheckpoint means no checkpoint of the size asked for was signed.
var ErrNoCheckpoint = errors.New("checkpoints: no checkpoint of that size was signed")

// checkpointAt is the checkpoint of size, or the latest when size is 0.
func (s *Signer) checkpointAt(size uint64) (Checkpoint, error) {
	if size == 0 {
		if c, ok := s.Latest(); ok {
			return c, nil
		}
		return Checkpoint{}, ErrNoCheckpoint
	}
	c, ok, err := s.CheckpointOfSize(size)
	if err == nil && !ok {
		err = ErrNoCheckpoint
	}
	return c, err
}

// InclusionDoc proves the event at position in the checkpoint of size
// (the latest when size is 0).
func (s *Signer) InclusionDoc(ctx context.Context, position, size uint64) (Proof, error) {
	c, err := s.checkpointAt(size)
	if err != nil {
		return Proof{}, err
	}
	if position == 0 || position > c.Size {
		return Proof{}, ErrProofRange
	}
	path, leaf, err := s.InclusionProof(ctx, position-1, c.Size)
	if err != nil {
		return Proof{}, err
	}
	return Proof{Kind: KindInclusion, Position: position, EventHash: merkle.String(leaf), Checkpoint: c, Path: hexes(path)}, nil
}

// ConsistencyDoc proves the checkpoint of size from a prefix of the
// checkpoint of size to (the latest when to is 0).
func (s *Signer) ConsistencyDoc(ctx context.Context, from, to uint64) (Proof, error) {
	old, err := s.checkpointAt(from)
	if err != nil || from == 0 {
		return Proof{}, errors.Join(ErrNoCheckpoint, err)
	}
	c, err := s.checkpointAt(to)
	if err != nil {
		return Proof{}, err
	}
	path, err := s.ConsistencyProof(ctx, old.Size, c.Size)
	if err != nil {
		return Proof{}, err
	}
	return Proof{Kind: KindConsistency, From: &old, Checkpoint: c, Path: hexes(path)}, nil
}

func hexes(hs []merkle.Hash) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = merkle.String(h)
	}
	return out
}

// maxPath bounds a proof's path: a tree of 2^64 leaves needs 128 hashes.
const maxPath = 130

func unhex(name, s string) (merkle.Hash, error) {
	var h merkle.Hash
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(h) {
		return h, fmt.Errorf("checkpoints: %s %q is not 32 bytes of hex", name, s)
	}
	copy(h[:], b)
	return h, nil
}

// Verify checks the proof with only pub: the checkpoints' signatures,
// then RFC 9162's verification of the path against their roots.
func (p Proof) Verify(pub ed25519.PublicKey) error {
	root, err := verifyNamed(p.Checkpoint, pub)
	if err != nil {
		return fmt.Errorf("the checkpoint of %d events: %w", p.Checkpoint.Size, err)
	}
	if len(p.Path) > maxPath {
		return fmt.Errorf("checkpoints: a path of %d hashes", len(p.Path))
	}
	path := make([]merkle.Hash, len(p.Path))
	for i, s := range p.Path {
		if path[i], err = unhex("path hash", s); err != nil {
			return err
		}
	}
	switch p.Kind {
	case KindInclusion:
		leaf, err := unhex("event_hash", p.EventHash)
		if err != nil {
			return err
		}
		if p.Position == 0 || p.Position > p.Checkpoint.Size {
			return fmt.Errorf("checkpoints: position %d is not in a log of %d events", p.Position, p.Checkpoint.Size)
		}
		return merkle.VerifyInclusion(leaf, p.Position-1, p.Checkpoint.Size, path, root)
	case KindConsistency:
		if p.From == nil {
			return errors.New("checkpoints: a consistency proof without its from checkpoint")
		}
		old, err := verifyNamed(*p.From, pub)
		if err != nil {
			return fmt.Errorf("the checkpoint of %d events: %w", p.From.Size, err)
		}
		return merkle.VerifyConsistency(p.From.Size, p.Checkpoint.Size, old, root, path)
	}
	return fmt.Errorf("checkpoints: unknown proof kind %q", p.Kind)
}

// verifyNamed is c.Verify(pub) for a checkpoint that also names pub as its
// key: its key_id is printed as the signer's, so it must be pub's.
func verifyNamed(c Checkpoint, pub ed25519.PublicKey) (merkle.Hash, error) {
	if id := KeyID(pub); c.KeyID != id {
		return merkle.Hash{}, fmt.Errorf("checkpoints: the checkpoint names key %q, not the key %s it is checked with", c.KeyID, id)
	}
	return c.Verify(pub)
}
