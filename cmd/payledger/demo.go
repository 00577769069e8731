package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

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
	m := Main{Config: Config{Addr: "127.0.0.1:0", DataDir: *dir, TimeZone: "Asia/Shanghai",
		Log: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}}
	if err := m.Open(ctx); err != nil {
		return err
	}
	defer m.Close()
	fmt.Fprintf(stdout, "payledger demo: server at %s, store in %s\n", m.URL, *dir)
	staff, err := demoStaff(ctx, m.StaffKeys)
	if err != nil {
		return err
	}
	if _, err := demo.Run(ctx, apiclient.New(m.URL), staff, stdout, time.Now); err != nil {
		return err
	}
	n, streams, digest, err := verifyLog(ctx, m.Store, nil)
	if err != nil {
		return fmt.Errorf("verify after demo: %w", err)
	}
	fmt.Fprintf(stdout, "\nThe log: %d events in %d streams, every hash chain intact, event-log digest %s\n", n, streams, digest)
	if keep {
		fmt.Fprintf(stdout, "The store is kept in %s: try `payledger verify --data %s` or `payledger serve --data %s`.\n", *dir, *dir, *dir)
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
	return demo.Staff{Operator: op, Funding: fund}, nil
}
