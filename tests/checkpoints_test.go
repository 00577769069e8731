package tests

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/payledger/payledger/checkpoints"
	"github.com/payledger/payledger/eventstore"
	"github.com/payledger/payledger/eventstore/merkle"
	"github.com/payledger/payledger/eventstore/sqlite"
	"github.com/payledger/payledger/internal/apiclient"
)

// readLog returns every event of the log in dir.
func readLog(t *testing.T, dir string) []eventstore.Event {
	t.Helper()
	ctx := context.Background()
	r, err := sqlite.OpenReader(filepath.Join(dir, "events.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var out []eventstore.Event
	for after := int64(0); ; {
		evs, err := r.ReadAll(ctx, after, eventstore.MaxReadBatch)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			return out
		}
		out = append(out, evs...)
		after = evs[len(evs)-1].Position
	}
}

// readLogHash is the hash, hex, of the event at position pos of dir's log.
func readLogHash(t *testing.T, dir string, pos int64) string {
	t.Helper()
	r, err := sqlite.OpenReader(filepath.Join(dir, "events.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	evs, err := r.ReadAll(context.Background(), pos-1, 1)
	if err != nil || len(evs) != 1 {
		t.Fatalf("event %d: %v", pos, err)
	}
	return hex.EncodeToString(evs[0].Hash[:])
}

// forge writes evs, in that order, as a new log in a new directory: each
// event re-appended at the end of its stream, so the store recomputes
// every hash and the chains verify, as an insider with write access to
// the data directory would do.
func forge(t *testing.T, evs []eventstore.Event) string {
	t.Helper()
	dir := t.TempDir()
	s, err := sqlite.Open(filepath.Join(dir, "events.db"), sqlite.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, e := range evs {
		if _, err := s.Append(context.Background(), e.Stream, eventstore.Any, []eventstore.EventData{e.EventData}); err != nil {
			t.Fatalf("forge: %v", err)
		}
	}
	return dir
}

// TestCheckpointsCatchRewrites: serve signs checkpoints of the log with a
// key kept outside the data directory, serves the latest publicly and
// exports each; verify with them passes on the real log, and fails, naming
// the checkpoint and the position, on a log an insider rewrote (one
// deposit changed, every hash recomputed), truncated, reordered or cut an
// event from, though every hash chain of those logs is intact.
func TestCheckpointsCatchRewrites(t *testing.T) {
	ctx := context.Background()
	dir, keyDir, cpDir := t.TempDir(), t.TempDir(), t.TempDir()
	keyPath := filepath.Join(keyDir, "signing.key")
	out := runCmd(t, "keys", "signing-key", "--out", keyPath)
	if !strings.Contains(out, "public key") {
		t.Fatalf("signing-key: %s", out)
	}
	pubPath := keyPath + ".pub"
	srv := start(t, dir, "--checkpoint-key", keyPath, "--checkpoint-dir", cpDir, "--checkpoint-every", "50ms")
	operator := apiclient.New(srv.url).As(staffKey(t, dir, "operator"))
	funding := apiclient.New(srv.url).As(staffKey(t, dir, "funding"))
	var firstID string
	for _, name := range []string{"Qian Yu", "Ma Lin", "Hu Jie"} {
		id, _ := openAccount(t, ctx, operator, name, "personal", "a long passphrase")
		if firstID == "" {
			firstID = id
		}
		for _, amount := range []string{"20000.00", "15.00"} {
			if _, err := funding.Expect(ctx, http.StatusCreated, "POST", "/v1/accounts/"+id+"/deposits",
				map[string]any{"amount": amount, "currency": "CNY", "reference": "bank-" + name + amount}, ""); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The latest checkpoint is public and verifies with the public key.
	resp, err := apiclient.New(srv.url).Expect(ctx, http.StatusOK, "GET", "/v1/proofs/checkpoints/latest", nil, "")
	if err != nil {
		t.Fatal(err)
	}
	var latest checkpoints.Checkpoint
	if err := json.Unmarshal(resp.Raw, &latest); err != nil {
		t.Fatal(err)
	}
	pub, err := checkpoints.LoadPublicKey(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := latest.Verify(ed25519.PublicKey(pub)); err != nil || latest.Size == 0 {
		t.Fatalf("latest checkpoint %+v: %v", latest, err)
	}

	// Proofs: an event is in the latest checkpoint, and a checkpoint kept
	// earlier is a prefix of a later one; payledger proof verify checks
	// both with only the public key, and fails on a changed document.
	kept := filepath.Join(keyDir, "kept.json")
	if err := os.WriteFile(kept, resp.Raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := funding.Expect(ctx, http.StatusCreated, "POST", "/v1/accounts/"+firstID+"/deposits",
		map[string]any{"amount": "1.00", "currency": "CNY", "reference": "bank-after-kept"}, ""); err != nil {
		t.Fatal(err)
	}
	var grown checkpoints.Checkpoint
	// Wait for a checkpoint of the whole log as it is now, so that the
	// attacks below have one short of the final length to be caught by.
	for deadline := time.Now().Add(10 * time.Second); grown.Size <= latest.Size || grown.Size != uint64(len(readLog(t, dir))); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint after the kept one")
		}
		r, err := apiclient.New(srv.url).Expect(ctx, http.StatusOK, "GET", "/v1/proofs/checkpoints/latest", nil, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(r.Raw, &grown); err != nil {
			t.Fatal(err)
		}
	}
	files := 0
	proofFile := func(path string) string {
		t.Helper()
		files++
		r, err := apiclient.New(srv.url).Expect(ctx, http.StatusOK, "GET", path, nil, "")
		if err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(keyDir, fmt.Sprint("proof-", files, ".json"))
		if err := os.WriteFile(f, r.Raw, 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	consistency := proofFile(fmt.Sprint("/v1/proofs/consistency?from=", latest.Size))
	out = runCmd(t, "proof", "verify", "--public-key", pubPath, "--proof", consistency, "--kept", kept)
	if !strings.Contains(out, fmt.Sprintf("proof: ok: the log of %d events", latest.Size)) {
		t.Fatalf("proof verify (consistency): %s", out)
	}
	inclusion := proofFile("/v1/proofs/events/2")
	var p checkpoints.Proof
	if raw, err := os.ReadFile(inclusion); err != nil || json.Unmarshal(raw, &p) != nil {
		t.Fatal(err)
	}
	opening := readLogHash(t, dir, 2)
	out = runCmd(t, "proof", "verify", "--public-key", pubPath, "--proof", inclusion, "--event-hash", opening)
	if !strings.Contains(out, "proof: ok: the event at position 2 (hash "+opening+")") {
		t.Fatalf("proof verify (inclusion): %s", out)
	}
	p.EventHash = readLogHash(t, dir, 3)
	if raw, err := json.Marshal(p); err != nil || os.WriteFile(inclusion, raw, 0o600) != nil {
		t.Fatal(err)
	}
	for name, args := range map[string][]string{
		"changed event":    {"--proof", inclusion},
		"not the kept one": {"--proof", consistency, "--kept", inclusion},
		"the wrong event":  {"--proof", proofFile("/v1/proofs/events/3"), "--event-hash", opening},
	} {
		out, err := exec.Command(binary, append([]string{"proof", "verify", "--public-key", pubPath}, args...)...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "FAILED") {
			t.Errorf("proof verify with %s: %v\n%s", name, err, out)
		}
	}
	if _, err := funding.Expect(ctx, http.StatusCreated, "POST", "/v1/accounts/"+firstID+"/deposits",
		map[string]any{"amount": "2.00", "currency": "CNY", "reference": "bank-last"}, ""); err != nil {
		t.Fatal(err)
	}
	srv.stop(t, syscall.SIGTERM) // signs a last checkpoint of everything

	real := readLog(t, dir)
	ok := runCmd(t, "verify", "--data", dir, "--checkpoints", cpDir, "--public-key", pubPath)
	m := regexp.MustCompile(`verify: ok (\d+) events, (\d+) checkpoints\n$`).FindStringSubmatch(ok)
	if m == nil || m[1] != strconv.Itoa(len(real)) || m[2] == "0" || m[2] == "1" {
		t.Fatalf("verify of the real log:\n%s", ok)
	}

	// The year's digest is the root over its events, and a checkpoint
	// covers them.
	loc, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		t.Fatal(err)
	}
	year := time.Now().In(loc).Year()
	var yearHashes []merkle.Hash
	for _, e := range real {
		if e.OccurredAt.In(loc).Year() == year {
			yearHashes = append(yearHashes, e.Hash)
		}
	}
	root := merkle.Root(yearHashes)
	digest := runCmd(t, "digest", "--year", strconv.Itoa(year), "--data", dir)
	if !strings.Contains(digest, "merkle root "+hex.EncodeToString(root[:])) || !strings.Contains(digest, "covered by the checkpoint of") {
		t.Fatalf("digest:\n%s", digest)
	}

	// The attacks: each forged log's chains are intact, so verify without
	// the checkpoints passes, and with them fails.
	firstDeposit := -1
	for i, e := range real {
		if e.Type == "FundsDeposited" {
			firstDeposit = i
			break
		}
	}
	rewritten := append([]eventstore.Event(nil), real...)
	rewritten[firstDeposit].Payload = []byte(strings.Replace(string(real[firstDeposit].Payload), `"20000.00"`, `"2000000.00"`, 1))
	if string(rewritten[firstDeposit].Payload) == string(real[firstDeposit].Payload) {
		t.Fatalf("the deposit's payload %s has no 20000.00", real[firstDeposit].Payload)
	}
	swapped := append([]eventstore.Event(nil), real...)
	i := 1
	for swapped[i].Stream == swapped[i+1].Stream {
		i++
	}
	swapped[i], swapped[i+1] = swapped[i+1], swapped[i]
	// Cut the last event of a stream whose last event is not the log's
	// last, where a checkpoint the shortened log still reaches covers it.
	signed, err := checkpoints.Read(cpDir)
	if err != nil {
		t.Fatal(err)
	}
	reached := func(j int) bool {
		for _, c := range signed {
			if c.Size >= uint64(j+1) && c.Size <= uint64(len(real)-1) {
				return true
			}
		}
		return false
	}
	cut := -1
	for j := len(real) - 2; j >= 0 && cut < 0; j-- {
		last := reached(j)
		for _, later := range real[j+1:] {
			if later.Stream == real[j].Stream {
				last = false
				break
			}
		}
		if last {
			cut = j
		}
	}
	if cut < 0 {
		t.Fatalf("no event to cut under the checkpoints %v", signed)
	}
	removed := append(append([]eventstore.Event(nil), real[:cut]...), real[cut+1:]...)
	for name, evs := range map[string][]eventstore.Event{
		"rewritten": rewritten, "truncated": real[:len(real)-1], "swapped": swapped, "removed": removed,
	} {
		forged := forge(t, evs)
		if out := runCmd(t, "verify", "--data", forged); !strings.Contains(out, "every hash chain intact") {
			t.Fatalf("%s: the forged log's chains do not verify on their own:\n%s", name, out)
		}
		out, err := exec.Command(binary, "verify", "--data", forged, "--checkpoints", cpDir, "--public-key", pubPath).CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || !strings.Contains(string(out), "checkpoint of") {
			t.Fatalf("%s: verify with checkpoints: %v\n%s", name, err, out)
		}
		t.Logf("%s: %s", name, out)
		if name != "truncated" && !strings.Contains(string(out), "at position") {
			t.Errorf("%s: verify does not name the position:\n%s", name, out)
		}
	}
}
