package checkpoints

import (
	"context"
	"crypto/ed25519"
	"testing"
	"time"
)

// TestProofNamesItsKey: proof verify prints the document's key_id as the
// key that signed it; a document whose checkpoints name another key than
// the one they verify with must not verify, or the output names a key
// that signed nothing.
func TestProofNamesItsKey(t *testing.T) {
	ctx := context.Background()
	priv := key(t)
	pub := priv.Public().(ed25519.PublicKey)
	log := &fakeLog{}
	now := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	s, err := NewSigner(log, priv, t.TempDir(), "", func() time.Time { now = now.Add(time.Second); return now })
	if err != nil {
		t.Fatal(err)
	}
	signedAt(t, s, log, []int{10, 20})
	other := KeyID(key(t).Public().(ed25519.PublicKey))
	inc, err := s.InclusionDoc(ctx, 3, 0)
	if err != nil {
		t.Fatal(err)
	}
	inc.Checkpoint.KeyID = other
	if inc.Verify(pub) == nil {
		t.Errorf("an inclusion proof whose checkpoint names key %s verified with key %s", other, KeyID(pub))
	}
	cons, err := s.ConsistencyDoc(ctx, 10, 20)
	if err != nil {
		t.Fatal(err)
	}
	from := *cons.From
	from.KeyID = other
	cons.From = &from
	if cons.Verify(pub) == nil {
		t.Errorf("a consistency proof whose from checkpoint names key %s verified with key %s", other, KeyID(pub))
	}
}
