package ledger_test

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/personaldata"
	"github.com/payledger/payledger/ledger/staffkeys"
)

// TestPersonalDataOldAndNewEvents: events written before sealing existed
// (a service without a key store) still load and export with their data
// as written, but their account cannot be erased, since destroying a key
// would not touch them; an account opened with sealing holds no clear
// name in the log, is erased five years after its close, and then reads
// "[erased]" on every node, cold or cached.
func TestPersonalDataOldAndNewEvents(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 61)
	e.runProjection(t)
	pd, err := personaldata.Open(filepath.Join(t.TempDir(), "personaldata.db"), bytes.Repeat([]byte{3}, personaldata.KeySize), e.clock.Now, e.rnd)
	if err != nil {
		t.Fatal(err)
	}
	defer pd.Close()
	compliance := staffActor(staffkeys.RoleCompliance)
	old := e.node(t, nil)
	oldID := openAccount(t, old, "Li Wei", domain.KindPersonal, ledger.EnrollRequest{Method: domain.MethodPassword, Password: "a long passphrase"}).AccountID
	if _, err := old.Close(ctx, operatorActor, oldID, ledger.Idem{}, "moving"); err != nil {
		t.Fatal(err)
	}

	sealed := e.node(t, func(c *ledger.Config) { c.PersonalData = pd })
	v, err := sealed.Account(ctx, operatorActor, oldID)
	if err != nil || v.HolderName != "Li Wei" {
		t.Fatalf("an old account: %q %v", v.HolderName, err)
	}
	x, err := sealed.ExportPersonalData(ctx, compliance, oldID, 1)
	if err != nil || len(x.Records) == 0 || x.Records[0].Fields["holder_name"] != "Li Wei" {
		t.Fatalf("export of an old account: %+v %v", x, err)
	}

	newID := openAccount(t, sealed, "Zhang Min", domain.KindPersonal, ledger.EnrollRequest{Method: domain.MethodPassword, Password: "a long passphrase"}).AccountID
	for _, ev := range readStream(t, e.store, newID) {
		if bytes.Contains(ev.Payload, []byte("Zhang")) {
			t.Fatalf("%s holds the name in clear: %s", ev.Type, ev.Payload)
		}
	}
	if _, err := sealed.Close(ctx, operatorActor, newID, ledger.Idem{}, "moving"); err != nil {
		t.Fatal(err)
	}
	_, err = sealed.ErasePersonalData(ctx, compliance, newID, ledger.Idem{}, "dsr-1")
	wantCode(t, "erasure a day after the close", err, domain.CodePersonalDataRetained)
	e.clock.Advance(5*366*24*time.Hour + 24*time.Hour)

	head := e.head(t)
	_, err = sealed.ErasePersonalData(ctx, compliance, oldID, ledger.Idem{}, "dsr-2")
	wantCode(t, "erasure of an account with data in clear", err, domain.CodePersonalDataInClear)
	if e.head(t) != head {
		t.Errorf("a refused erasure appended")
	}

	if _, err := sealed.ErasePersonalData(ctx, compliance, newID, ledger.Idem{}, "dsr-1"); err != nil {
		t.Fatal(err)
	}
	cold := e.node(t, func(c *ledger.Config) { c.PersonalData = pd })
	for name, s := range map[string]*ledger.Service{"cached": sealed, "cold": cold} {
		v, err := s.Account(ctx, operatorActor, newID)
		if err != nil || v.HolderName != domain.ErasedText {
			t.Errorf("%s node after the erasure: %q %v", name, v.HolderName, err)
		}
	}
	_, err = cold.ErasePersonalData(ctx, compliance, newID, ledger.Idem{}, "dsr-3")
	wantCode(t, "a second erasure", err, domain.CodePersonalDataErased)
}
