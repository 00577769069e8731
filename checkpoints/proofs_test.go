package checkpoints

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/payledger/payledger/eventstore/merkle"
)

// signedAt grows log to each size in turn and signs a checkpoint of it.
func signedAt(t *testing.T, s *Signer, log *fakeLog, sizes []int) map[uint64]Checkpoint {
	t.Helper()
	out := map[uint64]Checkpoint{}
	for _, n := range sizes {
		grow(log, n-len(log.hashes))
		c, err := s.Checkpoint(context.Background())
		if err != nil || c.Size != uint64(n) {
			t.Fatalf("checkpoint of %d: %+v %v", n, c, err)
		}
		out[c.Size] = c
	}
	return out
}

// TestProofs: the signer's inclusion and consistency proofs, made from
// block roots and at most a few blocks of the log, equal RFC 9162's over
// the whole list of leaves and verify against the signed roots, also
// after a restart; a tampered leaf or a forked log fails.
func TestProofs(t *testing.T) {
	ctx := context.Background()
	priv := key(t)
	pub := priv.Public().(ed25519.PublicKey)
	dir := t.TempDir()
	log := &fakeLog{}
	now := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { now = now.Add(time.Second); return now }
	s, err := NewSigner(log, priv, dir, "", clock)
	if err != nil {
		t.Fatal(err)
	}
	sizes := []int{1, 2, 3, 1000, 1001, 1024, 2048, 2500, 5000}
	cps := signedAt(t, s, log, sizes)
	restarted, err := NewSigner(log, priv, dir, "", clock)
	if err != nil {
		t.Fatal(err)
	}
	for name, signer := range map[string]*Signer{"running": s, "restarted": restarted} {
		for _, n := range sizes {
			c, ok, err := signer.CheckpointOfSize(uint64(n))
			if err != nil || !ok || c != cps[uint64(n)] {
				t.Fatalf("%s: checkpoint of size %d: %+v %v %v", name, n, c, ok, err)
			}
			root, err := c.Verify(pub)
			if err != nil {
				t.Fatal(err)
			}
			for _, i := range []int{0, 1, n / 2, 1023, 1024, 2047, n - 1} {
				if i < 0 || i >= n {
					continue
				}
				log.read = 0
				proof, leaf, err := signer.InclusionProof(ctx, uint64(i), uint64(n))
				if err != nil {
					t.Fatalf("%s: inclusion of %d in %d: %v", name, i, n, err)
				}
				if log.read > 2*blockSize+1 {
					t.Errorf("%s: inclusion of %d in %d read %d events", name, i, n, log.read)
				}
				want, _ := merkle.InclusionProof(log.hashes[:n], uint64(i))
				if leaf != log.hashes[i] || !slices.Equal(proof, want) {
					t.Fatalf("%s: inclusion of %d in %d differs from RFC 9162's", name, i, n)
				}
				if err := merkle.VerifyInclusion(leaf, uint64(i), uint64(n), proof, root); err != nil {
					t.Fatalf("%s: inclusion of %d in %d: %v", name, i, n, err)
				}
				tampered := leaf
				tampered[0] ^= 1
				if merkle.VerifyInclusion(tampered, uint64(i), uint64(n), proof, root) == nil {
					t.Fatalf("%s: a tampered event %d verified in %d", name, i, n)
				}
			}
			// The documents the routes serve pass the stand-alone verifier
			// (payledger proof verify runs Proof.Verify) with only pub.
			for _, pos := range []uint64{1, uint64(n)} {
				doc, err := signer.InclusionDoc(ctx, pos, uint64(n))
				if err != nil || doc.Verify(pub) != nil {
					t.Fatalf("%s: the inclusion document of %d in %d: %v", name, pos, n, err)
				}
			}
			for _, m := range sizes {
				if m > n {
					break
				}
				if doc, err := signer.ConsistencyDoc(ctx, uint64(m), uint64(n)); err != nil || doc.Verify(pub) != nil {
					t.Fatalf("%s: the consistency document %d..%d: %v", name, m, n, err)
				}
				proof, err := signer.ConsistencyProof(ctx, uint64(m), uint64(n))
				if err != nil {
					t.Fatalf("%s: consistency %d..%d: %v", name, m, n, err)
				}
				want, _ := merkle.ConsistencyProof(log.hashes[:n], uint64(m))
				old, _ := cps[uint64(m)].Verify(pub)
				if !slices.Equal(proof, want) || merkle.VerifyConsistency(uint64(m), uint64(n), old, root, proof) != nil {
					t.Fatalf("%s: consistency %d..%d differs from RFC 9162's or fails", name, m, n)
				}
			}
		}
	}

	// A log forked at event 1500 after the checkpoint of 1001: its proofs
	// cannot reach back to the checkpoints signed before the fork.
	forked := &fakeLog{hashes: slices.Clone(log.hashes)}
	forked.hashes[1500][0] ^= 1
	fs, err := NewSigner(forked, priv, t.TempDir(), "", clock)
	if err != nil {
		t.Fatal(err)
	}
	fc := signedAt(t, fs, forked, []int{5000})[5000]
	froot, _ := fc.Verify(pub)
	for _, m := range []uint64{1001, 2048, 2500} {
		proof, err := fs.ConsistencyProof(ctx, min(m, 1001), 5000)
		if err != nil {
			t.Fatal(err)
		}
		old, _ := cps[m].Verify(pub)
		if m > 1500 && merkle.VerifyConsistency(m, 5000, old, froot, proof) == nil {
			t.Errorf("the fork verified as an extension of the checkpoint of %d", m)
		}
		if m == 1001 && merkle.VerifyConsistency(m, 5000, old, froot, proof) != nil {
			t.Errorf("the fork after 1500 does not extend the checkpoint of 1001")
		}
	}
	p, leaf, err := fs.InclusionProof(ctx, 1500, 5000)
	if err != nil || leaf != forked.hashes[1500] {
		t.Fatal(err)
	}
	root, _ := cps[5000].Verify(pub)
	if merkle.VerifyInclusion(leaf, 1500, 5000, p, root) == nil {
		t.Error("the forked log's event verified against the honest root")
	}

	for _, bad := range [][2]uint64{{5000, 5000}, {0, 5001}, {10, 6000}} {
		if _, _, err := s.InclusionProof(ctx, bad[0], bad[1]); !errors.Is(err, ErrProofRange) {
			t.Errorf("inclusion %v: %v", bad, err)
		}
	}
	for _, bad := range [][2]uint64{{0, 10}, {11, 10}, {10, 5001}} {
		if _, err := s.ConsistencyProof(ctx, bad[0], bad[1]); !errors.Is(err, ErrProofRange) {
			t.Errorf("consistency %v: %v", bad, err)
		}
	}
	if _, ok, err := s.CheckpointOfSize(4); ok || err != nil {
		t.Errorf("a checkpoint of a size never signed: %v %v", ok, err)
	}
}

// TestProofDocuments: the documents the server serves verify with only the
// public key after a JSON round trip, and any changed field fails.
func TestProofDocuments(t *testing.T) {
	ctx := context.Background()
	priv := key(t)
	pub := priv.Public().(ed25519.PublicKey)
	log := &fakeLog{}
	now := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	s, err := NewSigner(log, priv, t.TempDir(), "", func() time.Time { now = now.Add(time.Second); return now })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.InclusionDoc(ctx, 1, 0); !errors.Is(err, ErrNoCheckpoint) {
		t.Fatalf("a proof before any checkpoint: %v", err)
	}
	signedAt(t, s, log, []int{1000, 1001, 2500})
	roundTrip := func(p Proof) Proof {
		raw, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		var back Proof
		if err := json.Unmarshal(raw, &back); err != nil {
			t.Fatal(err)
		}
		return back
	}
	inc, err := s.InclusionDoc(ctx, 1001, 0)
	if err != nil || inc.Checkpoint.Size != 2500 || inc.EventHash != merkle.String(log.hashes[1000]) {
		t.Fatalf("inclusion: %+v %v", inc, err)
	}
	cons, err := s.ConsistencyDoc(ctx, 1000, 2500)
	if err != nil || cons.From.Size != 1000 {
		t.Fatalf("consistency: %+v %v", cons, err)
	}
	for _, p := range []Proof{inc, cons} {
		if err := roundTrip(p).Verify(pub); err != nil {
			t.Fatalf("%s: %v", p.Kind, err)
		}
		other := key(t).Public().(ed25519.PublicKey)
		if roundTrip(p).Verify(other) == nil {
			t.Errorf("%s verified with another key", p.Kind)
		}
	}
	flip := func(h string) string { b := []byte(h); b[0] ^= 1; return string(b) }
	tampered := map[string]func(p *Proof){
		"event hash": func(p *Proof) { p.EventHash = merkle.String(log.hashes[999]) },
		"position":   func(p *Proof) { p.Position = 1000 },
		"path":       func(p *Proof) { p.Path[0] = flip(p.Path[0]) },
		"short path": func(p *Proof) { p.Path = p.Path[1:] },
		"size":       func(p *Proof) { p.Checkpoint.Size = 2499 },
		"root":       func(p *Proof) { p.Checkpoint.Root = merkle.String(merkle.Root(log.hashes[:2499])) },
	}
	for name, change := range tampered {
		p := roundTrip(inc)
		change(&p)
		if p.Verify(pub) == nil {
			t.Errorf("inclusion with a changed %s verified", name)
		}
	}
	p := roundTrip(cons)
	forged := Sign(key(t), 1000, merkle.Root(log.hashes[:1000]), now)
	p.From = &forged
	if p.Verify(pub) == nil {
		t.Error("consistency from a checkpoint signed by another key verified")
	}
	p = roundTrip(cons)
	p.Path[1] = flip(p.Path[1])
	if p.Verify(pub) == nil {
		t.Error("consistency with a changed path verified")
	}
	if _, err := s.ConsistencyDoc(ctx, 999, 0); !errors.Is(err, ErrNoCheckpoint) {
		t.Errorf("consistency from a size never signed: %v", err)
	}
	if _, err := s.InclusionDoc(ctx, 2501, 0); !errors.Is(err, ErrProofRange) {
		t.Errorf("inclusion past the checkpoint: %v", err)
	}
}
