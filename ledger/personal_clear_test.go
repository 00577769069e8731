package ledger_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/personaldata"
)

// TestErasureOfALogWrittenInClear: an account written before personal data
// was sealed (a node without a key store) still reads under sealing, and
// five years after its close its erasure is refused as
// personal_data_in_clear rather than claimed, with no event appended.
func TestErasureOfALogWrittenInClear(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 31)
	e.runProjection(t)
	old := e.node(t, nil)
	h := openCertAccount(t, ctx, old, "Clear Holder", 1)
	pd, err := personaldata.Open(filepath.Join(t.TempDir(), "personaldata.db"), make([]byte, personaldata.KeySize), e.clock.Now, e.rnd)
	if err != nil {
		t.Fatal(err)
	}
	defer pd.Close()
	sealed := e.node(t, func(c *ledger.Config) { c.PersonalData = pd })
	if v, err := sealed.Account(ctx, h.actor(), h.id); err != nil || v.HolderName != "Clear Holder" {
		t.Fatalf("an account in clear under sealing: %+v %v", v, err)
	}
	if _, err := sealed.Close(ctx, h.actor(), h.id, ledger.Idem{}, "moving abroad"); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(5*366*24*time.Hour + 24*time.Hour)
	head := e.head(t)
	_, err = sealed.ErasePersonalData(ctx, complianceActor, h.id, ledger.Idem{}, "dsr-1")
	var de *domain.Error
	if !errors.As(err, &de) || de.Code != domain.CodePersonalDataInClear {
		t.Fatalf("erasure of an account in clear: %v, want %s", err, domain.CodePersonalDataInClear)
	}
	if e.head(t) != head {
		t.Error("a refused erasure appended an event")
	}
	if st, _ := pd.StateOf(h.id); st != personaldata.Live {
		t.Errorf("the key (made for the close's sealed reason) is %v after a refused erasure", st)
	}
}
