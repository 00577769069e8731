package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/payledger/payledger/checkpoints"
	"github.com/payledger/payledger/internal/apiclient"
	"github.com/payledger/payledger/internal/demo"
	"github.com/payledger/payledger/ledger/staffkeys"
)

// cmdDemo starts the real server on a loopback port with a temporary store
// (or --data) and walks the narrated scenario through its HTTP API.
func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("data", "", "keep the demo's store in this directory (default: a temporary one, removed afterwards)")
	store := fs.String("store", "", "the event log: postgres://... (migrated, and empty), kurrentdb://... (an empty namespace: ?namespace=NAME) or sqlite:PATH; default events.db in the data directory")
	readModels := fs.String("read-models", "", "the read models: postgres://... (a schema of their own, new or built from this --store) or sqlite:PATH; default readmodels.db in the data directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	keep := *dir != ""
	if !keep {
		tmp, err := os.MkdirTemp("", "payledger-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		*dir = tmp
	}
	clock, err := newDemoClock()
	if err != nil {
		return err
	}
	// The checkpoint key lives outside the data directory, as in production.
	keyDir, err := os.MkdirTemp("", "payledger-demo-key-")
	if err != nil {
		return err
	}
	// A PostgreSQL log keeps the data keys in its database, which outlives
	// the demo: their master key must too, or no server could open them.
	spec, err := parseStore(*store, *dir)
	if err != nil {
		return err
	}
	onPostgres := spec.postgresDSN != ""
	if !keep && !onPostgres {
		defer os.RemoveAll(keyDir)
	}
	keyPath := filepath.Join(keyDir, "signing.key")
	pub, err := checkpoints.CreateKey(keyPath, rand.Reader)
	if err != nil {
		return err
	}
	if err := os.WriteFile(keyPath+".pub", []byte(checkpoints.EncodePublicKey(pub)+"\n"), 0o644); err != nil {
		return err
	}
	// So does the master key of the customers' data keys.
	masterPath := filepath.Join(keyDir, "master.key")
	if err := writeMasterKey(masterPath, rand.Reader); err != nil {
		return err
	}
	m := Main{Config: Config{Addr: "127.0.0.1:0", DataDir: *dir, TimeZone: "Asia/Shanghai", Clock: clock.Now, Progress: stderr,
		Log:           slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		CheckpointKey: keyPath, CheckpointEvery: 24 * time.Hour, MasterKey: masterPath, Store: *store, ReadModels: *readModels}}
	if err := m.Open(ctx); err != nil {
		return err
	}
	defer m.Close()
	fmt.Fprintf(stdout, "payledger demo: server at %s, store in %s\n", m.URL, *dir)
	staff, err := demoStaff(ctx, m.StaffKeys)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "The server's clock starts on %s, so that the scenario can end the year.\n",
		clock.Now().Format("2 January 2006, 15:04 MST"))
	res, err := demo.Run(ctx, apiclient.New(m.URL), staff, stdout, clock.Now, clock.Advance)
	if err != nil {
		return err
	}
	if err := demoProofs(ctx, &m, staff, res, pub, stdout); err != nil {
		return fmt.Errorf("proofs: %w", err)
	}
	n, streams, digest, err := verifyLog(ctx, m.Store, nil)
	if err != nil {
		return fmt.Errorf("verify after demo: %w", err)
	}
	fmt.Fprintf(stdout, "\nThe log: %d events in %d streams, every hash chain intact, event-log digest %s\n", n, streams, digest)
	if keep {
		fmt.Fprintf(stdout, "The store is kept in %s, its checkpoint and master keys in %s: try `payledger verify --data %s --checkpoints %s --public-key %s.pub`"+
			" or `payledger serve --data %s --checkpoint-key %s --master-key %s`.\n", *dir, keyDir, *dir, *dir, keyPath, *dir, keyPath, masterPath)
	}
	if onPostgres && !keep {
		fmt.Fprintf(stdout, "The data keys stay in the PostgreSQL database, under the master key in %s: serve that log with --master-key %s.\n", masterPath, masterPath)
	}
	fmt.Fprintln(stdout, "demo: ok")
	return nil
}

// demoStaff creates the operator and funding keys the scenario acts with,
// as `payledger keys create` would.
func demoStaff(ctx context.Context, keys *staffkeys.Store) (demo.Staff, error) {
	op, _, err := keys.Create(ctx, staffkeys.RoleOperator, "demo operator")
	if err != nil {
		return demo.Staff{}, fmt.Errorf("demo: create the operator key: %w", err)
	}
	fund, _, err := keys.Create(ctx, staffkeys.RoleFunding, "demo funding desk")
	if err != nil {
		return demo.Staff{}, fmt.Errorf("demo: create the funding key: %w", err)
	}
	s := demo.Staff{Operator: op, Funding: fund}
	for _, k := range []struct {
		role staffkeys.Role
		dst  *string
	}{{staffkeys.RoleFinance, &s.Finance}, {staffkeys.RoleCompliance, &s.Compliance}, {staffkeys.RoleRegulator, &s.Regulator}} {
		if *k.dst, _, err = keys.Create(ctx, k.role, "demo "+string(k.role)); err != nil {
			return demo.Staff{}, fmt.Errorf("demo: create the %s key: %w", k.role, err)
		}
	}
	return s, nil
}

// demoClock is the real clock moved to the last morning of last year, and
// forward whenever the scenario says, so the demo can end a year in a
// minute.
type demoClock struct {
	offset atomic.Int64
}

func newDemoClock() (*demoClock, error) {
	loc, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		return nil, err
	}
	now := time.Now()
	start := time.Date(now.In(loc).Year()-1, 12, 31, 10, 0, 0, 0, loc)
	c := &demoClock{}
	c.offset.Store(int64(start.Sub(now)))
	return c, nil
}

// Now is the demo's time.
func (c *demoClock) Now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }

// Advance moves the demo's time forward by d.
func (c *demoClock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

// demoProofs signs two checkpoints around one more event and checks, as a
// regulator would with only the public key, that the account's opening is
// in the log and that the first checkpoint is a prefix of the second.
func demoProofs(ctx context.Context, m *Main, staff demo.Staff, res demo.Result, pub ed25519.PublicKey, w io.Writer) error {
	fmt.Fprintln(w, "\n== Proofs: the log signed, and checked with only the public key")
	first, err := m.signer.Checkpoint(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "The server signs a checkpoint: %d events, Merkle root %s..., key %s.\n", first.Size, first.Root[:16], first.KeyID)
	// An operator's read of the account is an event, so the log grows.
	if _, err := apiclient.New(m.URL).As(staff.Operator).Expect(ctx, http.StatusOK, "GET", "/v1/accounts/"+res.Payer, nil, ""); err != nil {
		return err
	}
	second, err := m.signer.Checkpoint(ctx)
	if err != nil {
		return err
	}
	check := func(path string) (checkpoints.Proof, error) {
		var p checkpoints.Proof
		r, err := apiclient.New(m.URL).Expect(ctx, http.StatusOK, "GET", path, nil, "")
		if err == nil {
			err = json.Unmarshal(r.Raw, &p)
		}
		if err == nil {
			err = p.Verify(pub)
		}
		return p, err
	}
	inc, err := check("/v1/proofs/events/1")
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "GET /v1/proofs/events/1 (public): the event at position 1, hash %s..., is in the checkpoint of %d events: %d hashes, verified.\n",
		inc.EventHash[:16], inc.Checkpoint.Size, len(inc.Path))
	cons, err := check(fmt.Sprint("/v1/proofs/consistency?from=", first.Size))
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "GET /v1/proofs/consistency?from=%d: the log of %d events is a prefix of the log of %d: %d hashes, verified.\n",
		first.Size, cons.From.Size, second.Size, len(cons.Path))
	fmt.Fprintln(w, "payledger proof verify --public-key FILE --proof FILE does the same for anyone who keeps the documents.")
	return nil
}
