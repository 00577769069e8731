package merkle

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"
)

func h(t *testing.T, s string) Hash {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 32 {
		t.Fatalf("bad hex %q", s)
	}
	return Hash(b)
}

// rootOfData is Root over leaves given as arbitrary data (the published
// vectors hash data of any length, where the log hashes event hashes).
func rootOfData(data [][]byte) Hash {
	switch len(data) {
	case 0:
		return EmptyRoot
	case 1:
		return leafHash(data[0])
	}
	k := split(uint64(len(data)))
	return NodeHash(rootOfData(data[:k]), rootOfData(data[k:]))
}

// TestPublishedVectors: the hashes, roots, audit paths and consistency
// proofs of the RFC 6962 test vectors of the Certificate Transparency
// project (merkle_tree_test.cc, and rfc6962_test.go of transparency-dev),
// so that this tree is the one other implementations compute.
func TestPublishedVectors(t *testing.T) {
	if got := hex.EncodeToString(EmptyRoot[:]); got != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Errorf("empty root %s", got)
	}
	if got := leafHash([]byte("L123456")); got != h(t, "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56") {
		t.Errorf("leaf hash %x", got)
	}
	node := sha256.Sum256(append(append([]byte{1}, "N123"...), "N456"...))
	if node != h(t, "aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb") {
		t.Errorf("node hash %x", node)
	}
	var inputs [][]byte
	for _, s := range []string{"", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"} {
		b, _ := hex.DecodeString(s)
		inputs = append(inputs, b)
	}
	roots := []string{
		"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
		"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
		"aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
		"d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
		"4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
		"76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
		"ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
		"5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
	}
	for i := range roots {
		if got := rootOfData(inputs[:i+1]); got != h(t, roots[i]) {
			t.Errorf("root of %d leaves %x, want %s", i+1, got, roots[i])
		}
	}
	// The audit paths (leaf index 1-based in the source) check with this
	// verifier against those roots; the leaf is given by its leaf hash.
	for _, p := range []struct {
		leaf, size uint64
		path       []string
	}{
		{1, 8, []string{"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7", "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e", "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"}},
		{6, 8, []string{"bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b", "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0", "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
		{3, 3, []string{"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"}},
		{2, 5, []string{"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d", "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e", "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"}},
	} {
		var path []Hash
		for _, s := range p.path {
			path = append(path, h(t, s))
		}
		if err := verifyInclusionHashed(leafHash(inputs[p.leaf-1]), p.leaf-1, p.size, path, h(t, roots[p.size-1])); err != nil {
			t.Errorf("path of leaf %d in %d: %v", p.leaf, p.size, err)
		}
	}
	for _, c := range []struct {
		m, n  uint64
		proof []string
	}{
		{1, 8, []string{"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7", "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e", "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"}},
		{6, 8, []string{"0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a", "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0", "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
		{2, 5, []string{"5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e", "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"}},
	} {
		var proof []Hash
		for _, s := range c.proof {
			proof = append(proof, h(t, s))
		}
		if err := VerifyConsistency(c.m, c.n, h(t, roots[c.m-1]), h(t, roots[c.n-1]), proof); err != nil {
			t.Errorf("consistency %d -> %d: %v", c.m, c.n, err)
		}
	}
}

func leaves(n int, salt string) []Hash {
	out := make([]Hash, n)
	for i := range out {
		out[i] = sha256.Sum256([]byte(fmt.Sprintf("%s-%d", salt, i)))
	}
	return out
}

// TestBuilderMatchesRoot: the incremental builder gives Root at every size.
func TestBuilderMatchesRoot(t *testing.T) {
	ls := leaves(1100, "b")
	var b Builder
	if b.Root() != EmptyRoot {
		t.Fatal("empty builder")
	}
	if _, err := Resume(3, []Hash{{}}); err == nil {
		t.Fatal("a frontier of the wrong length resumed")
	}
	for i, l := range ls {
		if i%37 == 5 {
			// Resuming from the frontier changes nothing.
			r, err := Resume(b.Size(), b.Frontier())
			if err != nil {
				t.Fatal(err)
			}
			b = *r
		}
		b.Add(l)
		if i < 300 || i == 999 || i == 1000 || i == 1099 {
			if got, want := b.Root(), Root(ls[:i+1]); got != want || b.Size() != uint64(i+1) {
				t.Fatalf("size %d: builder %x, root %x", i+1, got, want)
			}
		}
	}
}

// TestInclusionProofs: every leaf of trees of 1 to 70 leaves, and of 1,000
// and 1,001, is proven in its tree; a proof fails for another leaf,
// another index, another size, a tampered path or another root.
func TestInclusionProofs(t *testing.T) {
	sizes := []int{1000, 1001}
	for n := 1; n <= 70; n++ {
		sizes = append(sizes, n)
	}
	for _, n := range sizes {
		ls := leaves(n, fmt.Sprint("i", n))
		root := Root(ls)
		for i := 0; i < n; i++ {
			if n > 70 && i%97 != 0 && i != n-1 {
				continue
			}
			p, err := InclusionProof(ls, uint64(i))
			if err != nil {
				t.Fatal(err)
			}
			if err := VerifyInclusion(ls[i], uint64(i), uint64(n), p, root); err != nil {
				t.Fatalf("leaf %d of %d: %v", i, n, err)
			}
			other := ls[(i+1)%n]
			if n > 1 && VerifyInclusion(other, uint64(i), uint64(n), p, root) == nil {
				t.Fatalf("leaf %d of %d: another leaf verified", i, n)
			}
			if n > 1 && VerifyInclusion(ls[i], uint64((i+1)%n), uint64(n), p, root) == nil {
				t.Fatalf("leaf %d of %d: another index verified", i, n)
			}
			if VerifyInclusion(ls[i], uint64(i), uint64(2*n), p, root) == nil {
				t.Fatalf("leaf %d of %d: twice the size verified", i, n)
			}
			if n > 1 && VerifyInclusion(ls[i], uint64(i), uint64(n), p[:len(p)-1], root) == nil {
				t.Fatalf("leaf %d of %d: a shorter path verified", i, n)
			}
			for j := range p {
				bad := append([]Hash(nil), p...)
				bad[j][0] ^= 1
				if VerifyInclusion(ls[i], uint64(i), uint64(n), bad, root) == nil {
					t.Fatalf("leaf %d of %d: a tampered path verified", i, n)
				}
			}
			if VerifyInclusion(ls[i], uint64(i), uint64(n), append(p, root), root) == nil {
				t.Fatalf("leaf %d of %d: a longer path verified", i, n)
			}
		}
	}
	if _, err := InclusionProof(leaves(3, "x"), 3); !errors.Is(err, ErrIndex) {
		t.Fatalf("index out of range: %v", err)
	}
}

// TestConsistencyProofs: every prefix of trees of 1 to 70 leaves, and of
// 1,000 and 1,001, is proven consistent; a forked log, a wrong root or a
// tampered proof fails.
func TestConsistencyProofs(t *testing.T) {
	pairs := [][2]int{{1000, 1001}, {1, 1001}, {512, 1000}, {999, 1000}, {1001, 1001}}
	for n := 1; n <= 70; n++ {
		for m := 1; m <= n; m++ {
			pairs = append(pairs, [2]int{m, n})
		}
	}
	for _, pr := range pairs {
		m, n := pr[0], pr[1]
		ls := leaves(n, fmt.Sprint("c", n))
		r1, r2 := Root(ls[:m]), Root(ls)
		p, err := ConsistencyProof(ls, uint64(m))
		if err != nil {
			t.Fatal(err)
		}
		if err := VerifyConsistency(uint64(m), uint64(n), r1, r2, p); err != nil {
			t.Fatalf("%d -> %d: %v", m, n, err)
		}
		if m == n {
			continue
		}
		// A log whose first m leaves were rewritten is not a prefix.
		fork := append([]Hash(nil), ls...)
		fork[m-1][0] ^= 1
		if VerifyConsistency(uint64(m), uint64(n), Root(fork[:m]), r2, p) == nil {
			t.Fatalf("%d -> %d: a forked old root verified", m, n)
		}
		if VerifyConsistency(uint64(m), uint64(n), r1, Root(fork), p) == nil {
			t.Fatalf("%d -> %d: a forked new root verified", m, n)
		}
		for j := range p {
			bad := append([]Hash(nil), p...)
			bad[j][31] ^= 1
			if VerifyConsistency(uint64(m), uint64(n), r1, r2, bad) == nil {
				t.Fatalf("%d -> %d: a tampered proof verified", m, n)
			}
		}
	}
	if _, err := ConsistencyProof(leaves(3, "x"), 0); !errors.Is(err, ErrIndex) {
		t.Fatalf("size 0: %v", err)
	}
	if VerifyConsistency(3, 2, EmptyRoot, EmptyRoot, nil) == nil {
		t.Fatal("a shrinking log verified")
	}
}
