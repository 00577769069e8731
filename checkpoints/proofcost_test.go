package checkpoints

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"slices"
	"testing"

	"github.com/payledger/payledger/eventstore"
	"github.com/payledger/payledger/eventstore/merkle"
)

// synthLog serves a hash for any position without storing the log.
type synthLog struct{ size int64 }

func (l synthLog) Head(context.Context) (int64, error) { return l.size, nil }

func (l synthLog) ReadAll(_ context.Context, after int64, limit int) ([]eventstore.Event, error) {
	var out []eventstore.Event
	for p := after; p < l.size && len(out) < limit; p++ {
		out = append(out, eventstore.Event{Position: p + 1, Hash: synthHash(p)})
	}
	return out, nil
}

func synthHash(p int64) merkle.Hash {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(p))
	return sha256.Sum256(b[:])
}

// TestProofCostIsBounded: the routes are public, so a proof's work must
// not grow with the log: above the blocks, an inclusion or consistency
// proof hashes at most a few nodes per level of the tree, at a million
// events as at a billion, because the signer keeps every aligned run of
// blocks' root. The proofs still equal those computed from the block
// roots alone.
func TestProofCostIsBounded(t *testing.T) {
	ctx := context.Background()
	for _, blocks := range []int{1 << 10, 1<<20 + 5} {
		size := uint64(blocks) * blockSize
		s := &Signer{}
		for i := 0; i < blocks; i++ {
			var root merkle.Hash
			binary.BigEndian.PutUint64(root[:], uint64(i))
			s.addBlock(root)
		}
		p, _ := s.prover()
		p.log = synthLog{size: int64(size)}
		bare := prover{log: p.log, blocks: p.blocks}
		for _, m := range []uint64{0, size / 3, size - 1} {
			p.hashes = 0
			got, err := p.path(ctx, m, 0, size)
			if err != nil {
				t.Fatal(err)
			}
			if p.hashes > 2*64 {
				t.Errorf("inclusion of %d in %d blocks hashed %d nodes above the blocks", m, blocks, p.hashes)
			}
			if blocks <= 1<<10 {
				want, err := bare.path(ctx, m, 0, size)
				if err != nil || !slices.Equal(got, want) {
					t.Fatalf("inclusion of %d differs from the one made without the upper levels", m)
				}
			}
		}
		p.hashes = 0
		if _, err := p.subproof(ctx, size/2+blockSize+7, 0, size, true); err != nil {
			t.Fatal(err)
		}
		if p.hashes > 2*64 {
			t.Errorf("a consistency proof in %d blocks hashed %d nodes above the blocks", blocks, p.hashes)
		}
	}
}
