package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/eventstore/sqlite"
	"github.com/payledger/payledger/internal/apiclient"
	"github.com/payledger/payledger/ledger/personaldata"
	"github.com/payledger/payledger/ledger/staffkeys"
)

// stepClock is an injected clock: fixed, a millisecond later at every
// read, moved on by the test.
type stepClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(time.Millisecond)
	return c.now
}

func (c *stepClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type lockedRand struct {
	mu sync.Mutex
	r  *rand.ChaCha8
}

func (l *lockedRand) Read(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.Read(p)
}

// grepData reports every file under dir holding one of needles, as raw
// bytes: the databases, their -wal, -shm and journal files, the keys and
// checkpoints.
func grepData(t *testing.T, dir string, needles ...string) []string {
	t.Helper()
	var hits []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			if os.IsNotExist(err) { // a journal deleted while walking
				return nil
			}
			return err
		}
		for _, n := range needles {
			if bytes.Contains(b, []byte(n)) {
				hits = append(hits, filepath.Base(path)+": "+n)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hits
}

// logHits reports every event of the stopped data directory's log whose
// payload holds one of needles. events.db stores its segments compressed,
// so grepData cannot see the payloads: they are read back through the
// log's own reader.
func logHits(t *testing.T, dir string, needles ...string) []string {
	t.Helper()
	log, err := sqlite.OpenReader(filepath.Join(dir, "events.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	var hits []string
	for after := int64(0); ; {
		evs, err := log.ReadAll(context.Background(), after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			for _, n := range needles {
				if bytes.Contains(e.Payload, []byte(n)) {
					hits = append(hits, fmt.Sprintf("%s at %d: %s", e.Type, e.Position, n))
				}
			}
		}
		if len(evs) < 1000 {
			return hits
		}
		after = evs[len(evs)-1].Position
	}
}

// TestErasureLeavesNoPersonalData is R20 end to end on the real server:
// a holder's name, phone, bank account number and the operator's identity
// check (a document number) go through opening,
// changes, a payment and a close; five years later compliance erases
// them. Afterwards no byte of them is in any file of the data directory
// nor in any payload of the log (compressed in its file), while the server
// runs and after it stopped; balances and statements are
// unchanged; verify passes against the checkpoints signed before the
// erasure; rebuild gives identical read models; and a restarted server
// still reads the data as erased.
func TestErasureLeavesNoPersonalData(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	dir := filepath.Join(root, "data")
	cpKey, cpDir := filepath.Join(root, "signing.key"), filepath.Join(root, "checkpoints")
	var out, errOut bytes.Buffer
	if err := run(ctx, []string{"keys", "signing-key", "--out", cpKey}, &out, &errOut); err != nil {
		t.Fatalf("signing key: %v %s", err, errOut.String())
	}
	clk := &stepClock{now: time.Date(2026, 3, 2, 1, 0, 0, 0, time.UTC)}
	rnd := &lockedRand{r: rand.NewChaCha8([32]byte{'e', 'r', 'a', 's', 'e'})}
	config := Config{Addr: "127.0.0.1:0", DataDir: dir, TimeZone: "Asia/Shanghai", Clock: clk.Now, Rand: rnd,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), CheckpointKey: cpKey, CheckpointDir: cpDir, CheckpointEvery: time.Hour,
		SnapshotEvery: 5}
	m := &Main{Config: config}
	if err := m.Open(ctx); err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			m.Close()
		}
	}()
	key := func(m *Main, role staffkeys.Role) *apiclient.Client { return staffClient(t, ctx, m, role) }
	operator, funding, compliance := key(m, staffkeys.RoleOperator), key(m, staffkeys.RoleFunding), key(m, staffkeys.RoleCompliance)
	expect := expecter(t, ctx)
	const (
		name, phone, bankNumber = "Ouyang Xiaoming", "+8613912345678", "6222020200112233445"
		description             = "birthday dumplings"
		password                = "a long passphrase"
		idCheck                 = "ID card 110101199003071234 Ouyang"
	)
	open := func(name string) (string, string) {
		r := expect(operator, http.StatusCreated, "POST", "/v1/accounts", map[string]any{"holder_name": name, "currency": "CNY",
			"identity_check": idCheck, "factor": map[string]any{"method": "password", "password": password}})
		return r.Str("id"), r.Obj("first_factor")["factor_id"].(string)
	}
	id, pw := open(name)
	bob, _ := open("Wang Fang")
	base := "/v1/accounts/" + id
	_, cert, _ := ed25519.GenerateKey(rnd)
	certID := expect(operator, http.StatusCreated, "POST", base+"/factors", map[string]any{"identity_check": idCheck,
		"factor": map[string]any{"method": "certificate", "public_key": base64.StdEncoding.EncodeToString(cert.Public().(ed25519.PublicKey))}}).Str("factor_id")
	holder := apiclient.New(m.URL).As(expect(apiclient.New(m.URL), http.StatusCreated, "POST", base+"/sessions",
		map[string]any{"device_id": "laptop-1", "proofs": []any{map[string]any{"factor_id": pw, "password": password}}}).Str("token"))
	stepUp := func(kind, subject string) map[string]any {
		version := int64(expect(holder, http.StatusOK, "GET", base, nil).Body["version"].(float64))
		sig := ed25519.Sign(cert, domain.ChangeChallenge(kind, id, version, subject))
		return map[string]any{"device_id": "laptop-1", "version": version, "proofs": []any{
			map[string]any{"factor_id": pw, "password": password},
			map[string]any{"factor_id": certID, "signature": base64.StdEncoding.EncodeToString(sig)}}}
	}
	body := stepUp(domain.ChangeKindPhone, phone)
	body["phone"] = phone
	expect(holder, http.StatusOK, "PUT", base+"/phone", body)
	body = stepUp(domain.ChangeKindBankAccount, bankNumber)
	body["bank_account_number"], body["holder_name"] = bankNumber, name
	expect(holder, http.StatusCreated, "POST", base+"/bank-account", body)
	expect(funding, http.StatusCreated, "POST", base+"/deposits", map[string]any{"amount": "30.00", "currency": "CNY", "reference": "bank-1"})
	pay := expect(holder, http.StatusCreated, "POST", base+"/payments", map[string]any{"payee_account_id": bob, "amount": "30.00", "currency": "CNY",
		"channel": "app", "terminal": "desktop", "device_id": "laptop-1", "description": description}).Str("payment_id")
	expect(holder, http.StatusOK, "POST", base+"/payments/"+pay+"/confirm", map[string]any{"device_id": "laptop-1",
		"proofs": []any{map[string]any{"factor_id": pw, "password": password}}})
	dispute := expect(holder, http.StatusCreated, "POST", base+"/disputes", map[string]any{"kind": "complaint",
		"subject": "A complaint by " + name, "description": "Ouyang Xiaoming was kept waiting"}).Str("dispute_id")
	expect(compliance, http.StatusOK, "POST", "/v1/disputes/"+dispute+"/answers", map[string]any{"answer": "Sorry, Mr Ouyang Xiaoming"})
	expect(holder, http.StatusOK, "POST", base+"/close", map[string]any{})
	needles := []string{name, "Xiaoming", phone, "13912345678", bankNumber, description, idCheck, "110101199003071234"}
	if hits := grepData(t, dir, needles...); len(hits) > 0 {
		t.Fatalf("personal data in clear before any erasure: %v", hits)
	}
	if x := expect(compliance, http.StatusOK, "GET", base+"/personal-data", nil); x.Str("holder_name") != name || x.Str("phone") != phone {
		t.Fatalf("export: %s", x.Raw)
	}

	since := "?from=2026-01-01T00:00:00Z&to=2027-01-01T00:00:00Z"
	amounts := func(acct string) string {
		var b strings.Builder
		for _, e := range expect(compliance, http.StatusOK, "GET", "/v1/accounts/"+acct+"/statement"+since, nil).List("entries") {
			b.WriteString(e["type"].(string) + " " + e["direction"].(string) + " " + e["amount"].(string) + " " + e["balance_after"].(string) + ";")
		}
		return b.String()
	}
	balance := func(acct string) string {
		return expect(compliance, http.StatusOK, "GET", "/v1/accounts/"+acct+"/balance", nil).Str("available")
	}
	stmtA, stmtB, balA, balB := amounts(id), amounts(bob), balance(id), balance(bob)
	if balB != "30.00" || !strings.Contains(stmtB, "30.00") {
		t.Fatalf("bob: %s %s", balB, stmtB)
	}
	logBefore, err := m.Store.ReadAll(ctx, 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.signer.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}

	clk.Advance(5*365*24*time.Hour + 3*24*time.Hour)
	expect(compliance, http.StatusOK, "POST", base+"/erasure", map[string]any{"reference": "dsr-2031-0077"})

	// While the server runs.
	if hits := grepData(t, dir, needles...); len(hits) > 0 {
		t.Errorf("after the erasure, while running: %v", hits)
	}
	if a, b, ba, bb := amounts(id), amounts(bob), balance(id), balance(bob); a != stmtA || b != stmtB || ba != balA || bb != balB {
		t.Errorf("amounts changed by the erasure:\n%s %s %s %s\n%s %s %s %s", stmtA, stmtB, balA, balB, a, b, ba, bb)
	}
	for _, e := range expect(compliance, http.StatusOK, "GET", "/v1/accounts/"+bob+"/statement"+since, nil).List("entries") {
		if e["description"] != domain.ErasedText {
			t.Errorf("bob's statement shows the payer's description %v", e["description"])
		}
	}
	if d := expect(compliance, http.StatusOK, "GET", "/v1/disputes/"+dispute, nil); d.Str("subject") != domain.ErasedText ||
		d.Str("description") != domain.ErasedText || d.List("answers")[0]["answer"] != domain.ErasedText {
		t.Errorf("the dispute after the erasure: %s", d.Raw)
	}
	// Nothing new about the erased customer can be recorded: an answer
	// to their dispute would need their key.
	if r := expect(compliance, http.StatusConflict, "POST", "/v1/disputes/"+dispute+"/answers", map[string]any{"answer": "Closing this"}); r.Str("code") != domain.CodePersonalDataErased {
		t.Errorf("an answer to an erased customer's dispute: %s", r.Raw)
	}
	if v := expect(compliance, http.StatusOK, "GET", base, nil); v.Str("holder_name") != domain.ErasedText || v.Str("bank_account_last4") != domain.ErasedText {
		t.Errorf("account after erasure: %s", v.Raw)
	}
	logAfter, err := m.Store.ReadAll(ctx, 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	// The log's segments are compressed, so the file grep alone could miss
	// a name stored in clear: every payload, as the store gives it back,
	// is checked too.
	for _, e := range logAfter {
		for _, n := range needles {
			if bytes.Contains(e.Payload, []byte(n)) {
				t.Errorf("%s at position %d holds %q in clear", e.Type, e.Position, n)
			}
		}
	}
	erasures := 0
	for _, e := range logAfter[len(logBefore):] {
		switch e.Type {
		case domain.TypePersonalDataErased:
			erasures++
		case domain.TypeStaffRead: // compliance's reads above
		default:
			t.Errorf("the erasure appended a %s", e.Type)
		}
	}
	if erasures != 1 {
		t.Errorf("%d erasure events", erasures)
	}
	for i, e := range logBefore {
		if logAfter[i].ID != e.ID || logAfter[i].Hash != e.Hash || !bytes.Equal(logAfter[i].Payload, e.Payload) {
			t.Fatalf("event %d changed in the erasure", e.Position)
		}
	}

	// After the server stopped.
	stopped = true
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if hits := grepData(t, dir, needles...); len(hits) > 0 {
		t.Errorf("after the erasure, stopped: %v", hits)
	}
	if hits := logHits(t, dir, needles...); len(hits) > 0 {
		t.Errorf("after the erasure, stopped, in the log's payloads: %v", hits)
	}
	if hits := logHits(t, dir, "dsr-2031-0077"); len(hits) != 1 {
		t.Errorf("the log's payloads as read back do not hold the erasure's reference once: %v", hits)
	}
	if hits := grepData(t, dir, "test compliance"); len(hits) == 0 {
		t.Error("the walk does not find a staff key's label in staffkeys.db: it would miss personal data too")
	}
	out.Reset()
	if err := run(ctx, []string{"verify", "--data", dir, "--checkpoints", cpDir, "--public-key", cpKey + ".pub"}, &out, &errOut); err != nil ||
		!strings.Contains(out.String(), "verify: ok") {
		t.Fatalf("verify: %v\n%s%s", err, out.String(), errOut.String())
	}
	out.Reset()
	if err := run(ctx, []string{"rebuild", "--data", dir}, &out, &errOut); err != nil || !strings.Contains(out.String(), "ok (identical read models)") {
		t.Fatalf("rebuild: %v\n%s%s", err, out.String(), errOut.String())
	}

	// A restarted server (no cache, the snapshot replaced) reads it erased.
	m2 := &Main{Config: config}
	if err := m2.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	comp2 := key(m2, staffkeys.RoleCompliance)
	x := expect(comp2, http.StatusOK, "GET", base+"/personal-data", nil)
	if x.Body["erased"] != true || x.Str("holder_name") != domain.ErasedText || x.Str("phone") != domain.ErasedText {
		t.Errorf("export after restart: %s", x.Raw)
	}
	if s := m2.Service.SnapshotStats(); s.Rejected != 0 {
		t.Errorf("a restarted server refused %d snapshots", s.Rejected)
	}
	if r, err := comp2.Expect(ctx, http.StatusConflict, "POST", base+"/erasure", map[string]any{"reference": "dsr-2031-0078"}, ""); err != nil || r.Str("code") != "personal_data_erased" {
		t.Errorf("second erasure: %v %s", err, r.Raw)
	}
}

// TestErasureSealsFreeText: the operator's identity check (free text up to
// 100 characters, here a document number and a name) is sealed like the
// other personal data, so after the erasure it is in no payload of the log
// and no file of the data directory. The device id stays in clear (an
// identifier, R20): reading it back from the payloads shows that logHits
// sees what the compressed file hides from grepData.
func TestErasureSealsFreeText(t *testing.T) {
	const idCheck, device = "ID card 110101199003071234 Ouyang", "app-7f3a9c01"
	dir, _ := erasedAccount(t, idCheck, device, "6222020200112233445")
	if hits := logHits(t, dir, idCheck, "110101199003071234"); len(hits) > 0 {
		t.Errorf("after the erasure, in clear in the log's payloads: %v", hits)
	}
	if hits := grepData(t, dir, idCheck, "110101199003071234"); len(hits) > 0 {
		t.Errorf("after the erasure, in clear in the data directory's files: %v", hits)
	}
	if hits := logHits(t, dir, device); len(hits) == 0 {
		t.Errorf("the device id %q is in no payload read back: logHits does not see the payloads", device)
	}
}

// TestErasureInterruptedIsCompleted: the erasure marks itself in the key
// store, appends PersonalDataErased, then destroys the key. A key store
// that fails from the start refuses the erasure with nothing recorded. A
// stop between the event and the key's erasure (the data directory as it
// is then: the event in the log, the key live and marked) is completed at
// the next start, before anything is served, so the payee's statement read
// first shows no description; without the mark (a key store restored from
// before the erasure) the next load of the account completes it.
func TestErasureInterruptedIsCompleted(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	clk := &stepClock{now: time.Date(2026, 3, 2, 1, 0, 0, 0, time.UTC)}
	rnd := &lockedRand{r: rand.NewChaCha8([32]byte{'c', 'r', 'a', 's', 'h'})}
	config := Config{Addr: "127.0.0.1:0", DataDir: dir, TimeZone: "Asia/Shanghai", Clock: clk.Now, Rand: rnd,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	m := &Main{Config: config}
	if err := m.Open(ctx); err != nil {
		t.Fatal(err)
	}
	key := func(m *Main, role staffkeys.Role) *apiclient.Client { return staffClient(t, ctx, m, role) }
	expect := expecter(t, ctx)
	operator, funding, compliance := key(m, staffkeys.RoleOperator), key(m, staffkeys.RoleFunding), key(m, staffkeys.RoleCompliance)
	const name, password, description = "Ouyang Xiaoming", "a long passphrase", "birthday dumplings"
	open := func(name string) (string, string) {
		r := expect(operator, http.StatusCreated, "POST", "/v1/accounts", map[string]any{"holder_name": name, "currency": "CNY",
			"identity_check": "branch-1", "factor": map[string]any{"method": "password", "password": password}})
		return r.Str("id"), r.Obj("first_factor")["factor_id"].(string)
	}
	id, pw := open(name)
	bob, _ := open("Wang Fang")
	base := "/v1/accounts/" + id
	holder := apiclient.New(m.URL).As(expect(apiclient.New(m.URL), http.StatusCreated, "POST", base+"/sessions",
		map[string]any{"device_id": "laptop-1", "proofs": []any{map[string]any{"factor_id": pw, "password": password}}}).Str("token"))
	expect(funding, http.StatusCreated, "POST", base+"/deposits", map[string]any{"amount": "30.00", "currency": "CNY", "reference": "bank-1"})
	pay := expect(holder, http.StatusCreated, "POST", base+"/payments", map[string]any{"payee_account_id": bob, "amount": "30.00", "currency": "CNY",
		"channel": "app", "terminal": "desktop", "device_id": "laptop-1", "description": description}).Str("payment_id")
	expect(holder, http.StatusOK, "POST", base+"/payments/"+pay+"/confirm", map[string]any{"device_id": "laptop-1",
		"proofs": []any{map[string]any{"factor_id": pw, "password": password}}})
	expect(holder, http.StatusOK, "POST", base+"/close", map[string]any{})
	clk.Advance(5*365*24*time.Hour + 3*24*time.Hour)

	bobStatement := func(m *Main) []map[string]any {
		return expect(key(m, staffkeys.RoleCompliance), http.StatusOK, "GET", "/v1/accounts/"+bob+"/statement?from=2026-01-01T00:00:00Z&to=2027-01-01T00:00:00Z", nil).List("entries")
	}
	restart := func() *Main {
		m := &Main{Config: config}
		if err := m.Open(ctx); err != nil {
			t.Fatal(err)
		}
		return m
	}
	pdPath := filepath.Join(dir, personalDataFile)
	copyFile := func(from, to string) {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	// The key store fails before the erasure: refused, nothing recorded.
	if err := m.PersonalData.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := compliance.Expect(ctx, http.StatusServiceUnavailable, "POST", base+"/erasure", map[string]any{"reference": "dsr-1"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if r.Str("code") != domain.CodeStorageUnavailable {
		t.Errorf("the erasure with its key store failing: %s", r.Raw)
	}
	m.PersonalData = nil // closed above
	m.Close()
	m = restart()
	if x := expect(key(m, staffkeys.RoleCompliance), http.StatusOK, "GET", base+"/personal-data", nil); x.Body["erased"] != false || x.Str("holder_name") != name {
		t.Fatalf("a refused erasure recorded something: %s", x.Raw)
	}
	m.Close()

	// A stop between the event and the key's erasure: the erasure runs,
	// then the key store is put back as it was then, key live and marked.
	before := filepath.Join(t.TempDir(), "personaldata.db")
	copyFile(pdPath, before)
	m = restart()
	expect(key(m, staffkeys.RoleCompliance), http.StatusOK, "POST", base+"/erasure", map[string]any{"reference": "dsr-2"})
	m.Close()
	master, err := config.masterKey()
	if err != nil {
		t.Fatal(err)
	}
	copyFile(before, pdPath)
	pd, err := personaldata.Open(pdPath, master, clk.Now, rnd)
	if err != nil {
		t.Fatal(err)
	}
	if err := pd.MarkErasing(id); err != nil {
		t.Fatal(err)
	}
	if err := pd.Close(); err != nil {
		t.Fatal(err)
	}
	m = restart()
	for _, e := range bobStatement(m) { // before anything loads the payer
		if e["description"] == description {
			t.Errorf("after a restart, the payee's statement shows the erased payer's description %q", description)
		}
	}
	if st, err := m.PersonalData.StateOf(id); err != nil || st != personaldata.Erased {
		t.Errorf("the data key after the restart: %v %v", st, err)
	}
	if p, err := m.PersonalData.PendingErasures(10); err != nil || len(p) != 0 {
		t.Errorf("pending erasures after the restart: %v %v", p, err)
	}
	m.Close()

	// The same without the mark: the next load of the account completes it.
	copyFile(before, pdPath)
	m = restart()
	defer m.Close()
	x := expect(key(m, staffkeys.RoleCompliance), http.StatusOK, "GET", base+"/personal-data", nil)
	if x.Body["erased"] != true || bytes.Contains(x.Raw, []byte(name)) || bytes.Contains(x.Raw, []byte(description)) {
		t.Errorf("after a restart the account says erased but its data still opens: %s", x.Raw)
	}
	if st, err := m.PersonalData.StateOf(id); err != nil || st != personaldata.Erased {
		t.Errorf("the data key after the load: %v %v", st, err)
	}
	for _, e := range bobStatement(m) {
		if e["description"] == description {
			t.Errorf("the payee's statement still shows the erased payer's description %q", description)
		}
	}
}

// TestOperationsOpenOnlyTheEventsSealedFields: the operations route opens
// only the sealed fields of the account's own events, with the account's
// key. A holder's own unsealed string (a login's device_id) that looks
// like another account's sealed text is shown as written, whether that
// account was erased or not, so it tells no holder whether another
// account's personal data was erased; the account's own sealed fields
// still open.
func TestOperationsOpenOnlyTheEventsSealedFields(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	clk := &stepClock{now: time.Date(2026, 3, 2, 1, 0, 0, 0, time.UTC)}
	rnd := &lockedRand{r: rand.NewChaCha8([32]byte{'o', 'r', 'a'})}
	m := &Main{Config: Config{Addr: "127.0.0.1:0", DataDir: dir, TimeZone: "Asia/Shanghai", Clock: clk.Now, Rand: rnd,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}}
	if err := m.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	key := func(role staffkeys.Role) *apiclient.Client { return staffClient(t, ctx, m, role) }
	expect := expecter(t, ctx)
	operator, compliance := key(staffkeys.RoleOperator), key(staffkeys.RoleCompliance)
	const password = "a long passphrase"
	open := func(name string) (string, string) {
		r := expect(operator, http.StatusCreated, "POST", "/v1/accounts", map[string]any{"holder_name": name, "currency": "CNY",
			"identity_check": "branch-1", "factor": map[string]any{"method": "password", "password": password}})
		return r.Str("id"), r.Obj("first_factor")["factor_id"].(string)
	}
	login := func(id, pw, device string) *apiclient.Client {
		return apiclient.New(m.URL).As(expect(apiclient.New(m.URL), http.StatusCreated, "POST", "/v1/accounts/"+id+"/sessions",
			map[string]any{"device_id": device, "proofs": []any{map[string]any{"factor_id": pw, "password": password}}}).Str("token"))
	}
	erased, epw := open("Erased Person")
	live, _ := open("Live Person")
	expect(login(erased, epw, "d-1"), http.StatusOK, "POST", "/v1/accounts/"+erased+"/close", map[string]any{})
	clk.Advance(5*365*24*time.Hour + 3*24*time.Hour)
	expect(compliance, http.StatusOK, "POST", "/v1/accounts/"+erased+"/erasure", map[string]any{"reference": "dsr-1"})

	attacker, apw := open("Curious Holder")
	var ops []map[string]any
	for _, target := range []string{erased, live} {
		device := "pd1:" + target + ":" + strings.Repeat("A", 30)
		h := login(attacker, apw, device)
		ops = expect(h, http.StatusOK, "GET", "/v1/accounts/"+attacker+"/operations", nil).List("operations")
		if got := ops[len(ops)-1]["payload"].(map[string]any)["device_id"]; got != device {
			t.Errorf("a holder's device_id %q naming account %s reads %q", device, target, got)
		}
	}
	if got := ops[0]["payload"].(map[string]any)["holder_name"]; got != "Curious Holder" {
		t.Errorf("the account's own sealed holder_name reads %q", got)
	}
}
