// Package merkle is the Merkle tree over the log's event hashes, in the
// form of RFC 9162 (Certificate Transparency 2.0), section 2.1: a leaf is
// hashed as SHA-256(0x00 || event hash) and a node as SHA-256(0x01 ||
// left || right), so that no leaf can pass for a node. A signed tree head
// (a checkpoint: the log's length and the root) lets anyone check, with an
// inclusion proof, that an event is in the log, and with a consistency
// proof, that a log they saw earlier is a prefix of the log now, without
// trusting the server that keeps it.
//
// It uses only the standard library and must never import the project:
// a regulator's verifier can be built from it alone.
package merkle

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"math/bits"
)

// Hash is a SHA-256 digest.
type Hash = [32]byte

// EmptyRoot is the root of the tree of no leaves: SHA-256 of nothing.
var EmptyRoot = Hash(sha256.Sum256(nil))

// LeafHash is the tree's hash of one leaf (an event's hash).
func LeafHash(leaf Hash) Hash { return leafHash(leaf[:]) }

// leafHash is RFC 9162's leaf hash of any data: SHA-256(0x00 || data).
func leafHash(data []byte) Hash {
	h := sha256.New()
	h.Write([]byte{0x00})
	h.Write(data)
	var out Hash
	h.Sum(out[:0])
	return out
}

// NodeHash is the tree's hash of an inner node: SHA-256(0x01 || left ||
// right).
func NodeHash(left, right Hash) Hash {
	var b [1 + 64]byte
	b[0] = 0x01
	copy(b[1:], left[:])
	copy(b[33:], right[:])
	return sha256.Sum256(b[:])
}

// split is the largest power of two smaller than n (n >= 2).
func split(n uint64) uint64 {
	return 1 << (bits.Len64(n-1) - 1)
}

// Split is where the tree of n leaves (n >= 2) divides: its left subtree
// holds the largest power of two of them smaller than n. A store that
// keeps subtree roots computes proofs with it as InclusionProof does.
func Split(n uint64) uint64 { return split(n) }

// Root is the Merkle tree hash of leaves (RFC 9162 MTH).
func Root(leaves []Hash) Hash {
	switch len(leaves) {
	case 0:
		return EmptyRoot
	case 1:
		return LeafHash(leaves[0])
	}
	k := split(uint64(len(leaves)))
	return NodeHash(Root(leaves[:k]), Root(leaves[k:]))
}

// Builder computes the root of a growing list of leaves in O(log n)
// memory: it keeps the roots of the perfect subtrees the leaves so far
// make (the tree's right frontier).
type Builder struct {
	size     uint64
	frontier []Hash // frontier[i]: root of a perfect subtree of 2^i leaves, where bit i of size is set
}

// Add appends a leaf.
func (b *Builder) Add(leaf Hash) {
	h := LeafHash(leaf)
	i := 0
	for ; b.size&(1<<i) != 0; i++ {
		h = NodeHash(b.frontier[i], h)
	}
	if i == len(b.frontier) {
		b.frontier = append(b.frontier, h)
	} else {
		b.frontier[i] = h
	}
	b.size++
}

// Size is the number of leaves added.
func (b *Builder) Size() uint64 { return b.size }

// Frontier returns what the builder keeps: the roots of its perfect
// subtrees, smallest first, one per bit set in Size. With the size it is
// all that is needed to go on adding leaves (Resume).
func (b *Builder) Frontier() []Hash {
	var out []Hash
	for i := 0; i < len(b.frontier); i++ {
		if b.size&(1<<i) != 0 {
			out = append(out, b.frontier[i])
		}
	}
	return out
}

// Resume returns a builder that goes on from a tree of size leaves whose
// frontier is as Frontier gave it.
func Resume(size uint64, frontier []Hash) (*Builder, error) {
	if bits.OnesCount64(size) != len(frontier) {
		return nil, fmt.Errorf("merkle: a frontier of %d hashes for %d leaves", len(frontier), size)
	}
	b := &Builder{size: size, frontier: make([]Hash, bits.Len64(size))}
	j := 0
	for i := range b.frontier {
		if size&(1<<i) != 0 {
			b.frontier[i] = frontier[j]
			j++
		}
	}
	return b, nil
}

// Root is the root of the leaves added so far.
func (b *Builder) Root() Hash {
	if b.size == 0 {
		return EmptyRoot
	}
	var root Hash
	have := false
	for i := 0; i < len(b.frontier); i++ {
		if b.size&(1<<i) == 0 {
			continue
		}
		if !have {
			root, have = b.frontier[i], true
		} else {
			root = NodeHash(b.frontier[i], root)
		}
	}
	return root
}

// Errors of the proofs.
var (
	ErrIndex = errors.New("merkle: leaf index or tree sizes out of range")
	ErrProof = errors.New("merkle: the proof does not verify")
)

// InclusionProof is the audit path of leaf index in the tree of leaves
// (RFC 9162 PATH).
func InclusionProof(leaves []Hash, index uint64) ([]Hash, error) {
	if index >= uint64(len(leaves)) {
		return nil, ErrIndex
	}
	return path(index, leaves), nil
}

func path(m uint64, d []Hash) []Hash {
	n := uint64(len(d))
	if n == 1 {
		return nil
	}
	k := split(n)
	if m < k {
		return append(path(m, d[:k]), Root(d[k:]))
	}
	return append(path(m-k, d[k:]), Root(d[:k]))
}

// VerifyInclusion checks that leaf is at index in the tree of size leaves
// whose root is root (RFC 9162 section 2.1.3.2).
func VerifyInclusion(leaf Hash, index, size uint64, proof []Hash, root Hash) error {
	return verifyInclusionHashed(LeafHash(leaf), index, size, proof, root)
}

// verifyInclusionHashed is VerifyInclusion given the leaf's tree hash.
func verifyInclusionHashed(leafHash Hash, index, size uint64, proof []Hash, root Hash) error {
	if index >= size {
		return ErrIndex
	}
	// The path of a leaf has exactly as many nodes as its level below the
	// point where it and the last leaf part, plus the perfect subtrees on
	// the right edge above it.
	inner := bits.Len64(index ^ (size - 1))
	if len(proof) != inner+bits.OnesCount64(index>>inner) {
		return ErrProof
	}
	fn, sn := index, size-1
	r := leafHash
	for _, p := range proof {
		if sn == 0 {
			return ErrProof
		}
		if fn&1 == 1 || fn == sn {
			r = NodeHash(p, r)
			for fn&1 == 0 && fn != 0 {
				fn >>= 1
				sn >>= 1
			}
		} else {
			r = NodeHash(r, p)
		}
		fn >>= 1
		sn >>= 1
	}
	if sn != 0 || r != root {
		return ErrProof
	}
	return nil
}

// ConsistencyProof proves that the tree of the first m leaves is a prefix
// of the tree of all leaves (RFC 9162 PROOF), for 0 < m <= len(leaves).
func ConsistencyProof(leaves []Hash, m uint64) ([]Hash, error) {
	n := uint64(len(leaves))
	if m == 0 || m > n {
		return nil, ErrIndex
	}
	return subproof(m, leaves, true), nil
}

func subproof(m uint64, d []Hash, b bool) []Hash {
	n := uint64(len(d))
	if m == n {
		if b {
			return nil
		}
		return []Hash{Root(d)}
	}
	k := split(n)
	if m <= k {
		return append(subproof(m, d[:k], b), Root(d[k:]))
	}
	return append(subproof(m-k, d[k:], false), Root(d[:k]))
}

// VerifyConsistency checks that the tree of size1 leaves with root1 is a
// prefix of the tree of size2 leaves with root2 (RFC 9162 section
// 2.1.4.2).
func VerifyConsistency(size1, size2 uint64, root1, root2 Hash, proof []Hash) error {
	switch {
	case size1 == 0 || size1 > size2:
		return ErrIndex
	case size1 == size2:
		if len(proof) != 0 || root1 != root2 {
			return ErrProof
		}
		return nil
	case len(proof) == 0 || len(proof) > 128:
		return ErrProof
	}
	if size1&(size1-1) == 0 { // a power of two: the old root is the first node
		proof = append([]Hash{root1}, proof...)
	}
	fn, sn := size1-1, size2-1
	for fn&1 == 1 {
		fn >>= 1
		sn >>= 1
	}
	fr, sr := proof[0], proof[0]
	for _, c := range proof[1:] {
		if sn == 0 {
			return ErrProof
		}
		if fn&1 == 1 || fn == sn {
			fr = NodeHash(c, fr)
			sr = NodeHash(c, sr)
			for fn&1 == 0 && fn != 0 {
				fn >>= 1
				sn >>= 1
			}
		} else {
			sr = NodeHash(sr, c)
		}
		fn >>= 1
		sn >>= 1
	}
	if sn != 0 || fr != root1 || sr != root2 {
		return ErrProof
	}
	return nil
}

// String renders a hash as hex, for messages.
func String(h Hash) string { return fmt.Sprintf("%x", h[:]) }
