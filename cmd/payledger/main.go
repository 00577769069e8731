// Command payledger is the ledger's one binary: serve (the main job), demo,
// rebuild, verify, bench, and finance's close, reconcile and report.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	_ "time/tzdata" // Asia/Shanghai must resolve on machines without a zoneinfo database
)

const usage = `payledger: an event-sourced payment-account ledger

usage:
  payledger serve   [--addr 127.0.0.1:8080] [--data ./data] [--tls-cert F --tls-key F | --tls-self-signed]
                    [--insecure-http] [--tz Asia/Shanghai] [--biometric-provider-key B64]
                    [--lock-after 5] [--lock-for 30m] [--challenge-ttl 5m] [--session-ttl 8h]
                    [--session-idle 15m] [--cooling-off 24h] [--policy FILE]
                    [--checkpoint-key FILE [--checkpoint-dir DIR] [--checkpoint-every 1m]]
                    [--store sqlite:PATH|postgres://...|kurrentdb://...]
                        run the HTTP API (the log in --data's events.db unless --store names another)
  payledger migrate --store postgres://...|kurrentdb://...|sqlite:PATH
                        apply the event log's schema (PostgreSQL: before the first serve, and after an upgrade;
                        KurrentDB needs none: checks the server answers)
  payledger demo    [--data DIR] [--store postgres://...|kurrentdb://...]
                        walk a narrated scenario through the real API on a temporary store
  payledger keys    create --role ROLE [--label TEXT] | list | revoke ID   [--data ./data]
                        manage staff API keys (roles: operator, funding, finance, compliance, regulator, auditor)
  payledger keys    signing-key --out FILE
                        make the key that signs checkpoints of the log (keep it outside the data directory)
  payledger verify  [--data ./data | --store postgres://...] [--checkpoints DIR --public-key FILE]
                        prove every hash chain and index of the log intact, and that it extends
                        every signed checkpoint; runs beside a server
  payledger retention check [--data ./data] [--store postgres://...|kurrentdb://...]
                        the oldest event and how long it is kept; fails when an append-only guard is missing
  payledger rebuild [--data ./data] [--store postgres://...|kurrentdb://...]
                        replay the log into fresh read models and check them; stop the server first
  payledger bench   [--duration 10s] [--clients 256] [--accounts 2000] [--rate N] [--store postgres://...]
                        measure confirmed payments per second (docs/performance.md)
  payledger bench   --history 10000000 [--data DIR]
                        build five simulated years of history, then time reads, a cold payment, rebuild and verify
  payledger digest  --year 2026 [--data ./data] [--store postgres://...|kurrentdb://...] [--tz Asia/Shanghai]
                        the Merkle root of a year's events and the signed checkpoint covering them
  payledger proof   verify --public-key FILE --proof FILE [--event-hash HEX] [--kept FILE]
                        check an inclusion or consistency proof (GET /v1/proofs/...) with only the public key
  payledger backup  --to FILE [--data ./data]
                        a consistent copy of the data directory, also while the server runs
  payledger restore --from FILE --data NEWDIR
                        unpack a backup into a new data directory (then run verify and rebuild)
  payledger close   [--day YYYY-MM-DD] [--currency CNY] [--data ./data] [--store postgres://...|kurrentdb://...] [--tz Asia/Shanghai]
                        close a day of the risk reserve (default yesterday); serve closes days itself;
                        refuses while a server holds the log
  payledger reconcile [--data ./data] [--store postgres://...|kurrentdb://...] [--tz Asia/Shanghai] [--day YYYY-MM-DD] [--json]
                        recompute every balance, the reserve and every close from the log and compare
  payledger report  annual [--year 2026] [--format json|csv|html] [--data ./data] [--store postgres://...|kurrentdb://...]
                    [--tz Asia/Shanghai]
                        the annual report of risk events, losses, compensation and the reserve

Run "payledger COMMAND -h" for a command's flags.
`

func main() {
	tuneGC()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "payledger:", err)
		os.Exit(1)
	}
}

var errUsage = errors.New("see usage above")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	switch args[0] {
	case "serve":
		return cmdServe(ctx, args[1:], stdout, stderr)
	case "demo":
		return cmdDemo(ctx, args[1:], stdout, stderr)
	case "rebuild":
		return cmdRebuild(ctx, args[1:], stdout, stderr)
	case "verify":
		return cmdVerify(ctx, args[1:], stdout, stderr)
	case "bench":
		return cmdBench(ctx, args[1:], stdout, stderr)
	case "keys":
		return cmdKeys(ctx, args[1:], stdout, stderr)
	case "close":
		return cmdClose(ctx, args[1:], stdout, stderr)
	case "reconcile":
		return cmdReconcile(ctx, args[1:], stdout, stderr)
	case "report":
		return cmdReport(ctx, args[1:], stdout, stderr)
	case "digest":
		return cmdDigest(ctx, args[1:], stdout, stderr)
	case "migrate":
		return cmdMigrate(ctx, args[1:], stdout, stderr)
	case "retention":
		return cmdRetention(ctx, args[1:], stdout, stderr)
	case "proof":
		return cmdProof(ctx, args[1:], stdout, stderr)
	case "backup":
		return cmdBackup(ctx, args[1:], stdout, stderr)
	case "restore":
		return cmdRestore(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}
