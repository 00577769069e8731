package checkpoints

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"os"
	"path/filepath"
	"sort"

	"github.com/payledger/payledger/eventstore/merkle"
)

// Proofs are computed from the roots of the log's complete blocks of
// blockSize events, which the Signer keeps in checkpoints.blocks (32 bytes
// a block: a three-hundredth of a byte per event), and from the events of
// at most two blocks read back from the log: a proof costs the same at
// ten million events as at ten thousand.
const (
	blockSize  = 1024
	blocksFile = "checkpoints.blocks"
)

// ErrProofRange means a proof was asked for beyond the signed log.
var ErrProofRange = errors.New("checkpoints: the proof asks for events or sizes beyond the last checkpoint")

// loadBlocks reads the block roots kept beside the checkpoints.
func loadBlocks(dir string) ([]merkle.Hash, error) {
	raw, err := os.ReadFile(filepath.Join(dir, blocksFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if len(raw)%32 != 0 {
		return nil, fmt.Errorf("checkpoints: %s is %d bytes, not whole block roots", blocksFile, len(raw))
	}
	out := make([]merkle.Hash, len(raw)/32)
	for i := range out {
		copy(out[i][:], raw[32*i:])
	}
	return out, nil
}

// appendBlocks writes the block roots from index from on.
func appendBlocks(dir string, blocks []merkle.Hash, from int) error {
	if from >= len(blocks) {
		return nil
	}
	buf := make([]byte, 0, 32*(len(blocks)-from))
	for _, b := range blocks[from:] {
		buf = append(buf, b[:]...)
	}
	return appendSynced(filepath.Join(dir, blocksFile), buf)
}

// addLeaf folds one event hash into the tree and the blocks; mu is held.
func (s *Signer) addLeaf(h merkle.Hash) {
	s.builder.Add(h)
	s.tail = append(s.tail, h)
	if len(s.tail) == blockSize {
		s.addBlock(merkle.Root(s.tail))
		s.tail = s.tail[:0]
	}
}

// addBlock keeps a complete block's root and the roots of the aligned runs
// of blocks it completes, so a proof finds any perfect subtree above the
// blocks without hashing it again.
func (s *Signer) addBlock(root merkle.Hash) {
	s.blocks = append(s.blocks, root)
	level := s.blocks
	for k := 0; len(level)%2 == 0; k++ {
		if k == len(s.upper) {
			s.upper = append(s.upper, nil)
		}
		n := len(level)
		s.upper[k] = append(s.upper[k], merkle.NodeHash(level[n-2], level[n-1]))
		level = s.upper[k]
	}
}

// prover computes proofs from a copy of the signer's block roots, so a
// proof never holds the signer's lock while it reads the log.
type prover struct {
	log    LogReader
	blocks []merkle.Hash
	upper  [][]merkle.Hash
	// hashes counts the inner nodes a proof computed (tests bound it).
	hashes int
}

// prover returns a prover over the blocks signed so far and the latest
// checkpoint's size (0 without one); mu is not held.
func (s *Signer) prover() (prover, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var size uint64
	if s.latest != nil {
		size = s.latest.Size
	}
	// The levels only ever grow by append, so their prefixes stay valid.
	p := prover{log: s.log, blocks: s.blocks[:len(s.blocks):len(s.blocks)], upper: make([][]merkle.Hash, len(s.upper))}
	for k, l := range s.upper {
		p.upper[k] = l[:len(l):len(l)]
	}
	return p, size
}

// leaves reads the event hashes at positions a+1 to b (b-a <= blockSize).
func (s *Signer) leaves(ctx context.Context, a, b uint64) ([]merkle.Hash, error) {
	p := prover{log: s.log}
	return p.leaves(ctx, a, b)
}

func (p *prover) leaves(ctx context.Context, a, b uint64) ([]merkle.Hash, error) {
	out := make([]merkle.Hash, 0, b-a)
	for pos := a; pos < b; {
		evs, err := p.log.ReadAll(ctx, int64(pos), int(b-pos))
		if err != nil {
			return nil, err
		}
		if len(evs) == 0 {
			return nil, fmt.Errorf("checkpoints: the log ends at %d before %d", pos, b)
		}
		for _, e := range evs {
			if uint64(e.Position) != pos+1 || pos >= b {
				return nil, fmt.Errorf("checkpoints: position %d follows %d", e.Position, pos)
			}
			out = append(out, e.Hash)
			pos++
		}
	}
	return out, nil
}

// rangeRoot is the Merkle root of the events at indexes a to b-1, as
// RFC 9162 MTH over them: from block roots where a range covers whole
// blocks, from the events themselves otherwise.
func (p *prover) rangeRoot(ctx context.Context, a, b uint64) (merkle.Hash, error) {
	n := b - a
	switch {
	case n == 0:
		return merkle.EmptyRoot, nil
	case n == blockSize && a%blockSize == 0 && a/blockSize < uint64(len(p.blocks)):
		return p.blocks[a/blockSize], nil
	case n > blockSize && n&(n-1) == 0 && a%n == 0 && p.upperHas(n, a):
		return p.upper[bits.TrailingZeros64(n/blockSize)-1][a/n], nil
	case n <= blockSize:
		ls, err := p.leaves(ctx, a, b)
		if err != nil {
			return merkle.Hash{}, err
		}
		return merkle.Root(ls), nil
	}
	k := merkle.Split(n)
	left, err := p.rangeRoot(ctx, a, a+k)
	if err != nil {
		return left, err
	}
	right, err := p.rangeRoot(ctx, a+k, b)
	if err != nil {
		return right, err
	}
	p.hashes++
	return merkle.NodeHash(left, right), nil
}

// upperHas reports whether the run of n events from a (n a power of two
// above blockSize, a aligned to it) is a run of blocks already hashed.
func (p *prover) upperHas(n, a uint64) bool {
	k := bits.TrailingZeros64(n/blockSize) - 1
	return k < len(p.upper) && a/n < uint64(len(p.upper[k]))
}

// InclusionProof proves the event at index (its position - 1) in the tree
// of the first size events; size is at most the last checkpoint's. It
// returns the proof and the event's hash (the leaf).
func (s *Signer) InclusionProof(ctx context.Context, index, size uint64) ([]merkle.Hash, merkle.Hash, error) {
	p, signed := s.prover()
	if size > signed || index >= size {
		return nil, merkle.Hash{}, ErrProofRange
	}
	leaf, err := p.leaves(ctx, index, index+1)
	if err != nil {
		return nil, merkle.Hash{}, err
	}
	proof, err := p.path(ctx, index, 0, size)
	return proof, leaf[0], err
}

// path is RFC 9162's PATH(m, D[a:b]).
func (p *prover) path(ctx context.Context, m, a, b uint64) ([]merkle.Hash, error) {
	if b-a == 1 {
		return nil, nil
	}
	k := merkle.Split(b - a)
	var out []merkle.Hash
	var sibling merkle.Hash
	var err error
	if m < a+k {
		if out, err = p.path(ctx, m, a, a+k); err == nil {
			sibling, err = p.rangeRoot(ctx, a+k, b)
		}
	} else {
		if out, err = p.path(ctx, m, a+k, b); err == nil {
			sibling, err = p.rangeRoot(ctx, a, a+k)
		}
	}
	return append(out, sibling), err
}

// ConsistencyProof proves the tree of the first from events a prefix of
// the tree of the first to, both at most the last checkpoint's size.
func (s *Signer) ConsistencyProof(ctx context.Context, from, to uint64) ([]merkle.Hash, error) {
	p, signed := s.prover()
	if to > signed || from == 0 || from > to {
		return nil, ErrProofRange
	}
	return p.subproof(ctx, from, 0, to, true)
}

// subproof is RFC 9162's SUBPROOF(m, D[a:b], complete).
func (p *prover) subproof(ctx context.Context, m, a, b uint64, complete bool) ([]merkle.Hash, error) {
	n := b - a
	if m == n {
		if complete {
			return nil, nil
		}
		r, err := p.rangeRoot(ctx, a, b)
		return []merkle.Hash{r}, err
	}
	k := merkle.Split(n)
	var out []merkle.Hash
	var node merkle.Hash
	var err error
	if m <= k {
		if out, err = p.subproof(ctx, m, a, a+k, complete); err == nil {
			node, err = p.rangeRoot(ctx, a+k, b)
		}
	} else {
		if out, err = p.subproof(ctx, m-k, a+k, b, false); err == nil {
			node, err = p.rangeRoot(ctx, a, a+k)
		}
	}
	return append(out, node), err
}

// maxLine bounds one checkpoint's JSON line in the log of checkpoints.
const maxLine = 4096

// index is where each checkpoint of the log file starts, by size, so a
// proof finds its checkpoints without reading the whole file.
type index struct {
	sizes   []uint64
	offsets []int64
	end     int64
}

// indexLog reads the offsets of dir's log of checkpoints.
func indexLog(dir string) (index, error) {
	var ix index
	f, err := os.Open(filepath.Join(dir, LogFile))
	if errors.Is(err, os.ErrNotExist) {
		return ix, nil
	}
	if err != nil {
		return ix, fmt.Errorf("checkpoints: %w", err)
	}
	defer f.Close()
	r := bufio.NewReader(f)
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, io.EOF) && len(line) == 0 {
			return ix, nil
		}
		if err != nil {
			return ix, fmt.Errorf("checkpoints: %s at byte %d: %w", LogFile, ix.end, err)
		}
		var c struct {
			Size uint64 `json:"size"`
		}
		if err := json.Unmarshal(line, &c); err != nil {
			return ix, fmt.Errorf("checkpoints: %s at byte %d: %w", LogFile, ix.end, err)
		}
		if n := len(ix.sizes); n > 0 && c.Size <= ix.sizes[n-1] {
			return ix, fmt.Errorf("checkpoints: %s at byte %d: a checkpoint of %d events after one of %d", LogFile, ix.end, c.Size, ix.sizes[n-1])
		}
		ix.add(c.Size, int64(len(line)))
	}
}

func (ix *index) add(size uint64, length int64) {
	ix.sizes = append(ix.sizes, size)
	ix.offsets = append(ix.offsets, ix.end)
	ix.end += length
}

// CheckpointOfSize returns the checkpoint the signer recorded for a log of
// size events; ok is false when it signed none of that size.
func (s *Signer) CheckpointOfSize(size uint64) (c Checkpoint, ok bool, err error) {
	s.mu.Lock()
	i := sort.Search(len(s.ix.sizes), func(i int) bool { return s.ix.sizes[i] >= size })
	found := i < len(s.ix.sizes) && s.ix.sizes[i] == size
	s.mu.Unlock()
	if !found {
		return c, false, nil
	}
	c, err = s.at(i)
	return c, err == nil, err
}

// at reads the i-th checkpoint of the log file.
func (s *Signer) at(i int) (Checkpoint, error) {
	var c Checkpoint
	s.mu.Lock()
	off, end, size := s.ix.offsets[i], s.ix.end, s.ix.sizes[i]
	if i+1 < len(s.ix.offsets) {
		end = s.ix.offsets[i+1]
	}
	s.mu.Unlock()
	if end-off > maxLine {
		return c, fmt.Errorf("checkpoints: the checkpoint of size %d is %d bytes", size, end-off)
	}
	f, err := os.Open(filepath.Join(s.dir, LogFile))
	if err != nil {
		return c, fmt.Errorf("checkpoints: %w", err)
	}
	defer f.Close()
	buf := make([]byte, end-off)
	if _, err := f.ReadAt(buf, off); err != nil {
		return c, fmt.Errorf("checkpoints: %w", err)
	}
	if err := json.Unmarshal(buf, &c); err != nil || c.Size != size {
		return c, fmt.Errorf("checkpoints: the checkpoint of size %d does not read back: %v", size, err)
	}
	return c, nil
}
