package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/payledger/payledger/checkpoints"
	"github.com/payledger/payledger/eventstore"
	"github.com/payledger/payledger/eventstore/sqlite"
	"github.com/payledger/payledger/projections"
)

// lockedHint adds what to do when the event store is held by another
// process (a running server): the one case an operator meets most.
func lockedHint(err error) error {
	if errors.Is(err, sqlite.ErrLocked) {
		return fmt.Errorf("%w: stop the server that uses this data directory first (verify can run beside it)", err)
	}
	return err
}

// cmdRebuild empties the read models and replays the log from position 0
// (R4). It prints the digest before and after, which must match when the
// read models were intact.
func cmdRebuild(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("rebuild", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("data", "./data", "data directory (its readmodels.db is rebuilt, without --read-models)")
	storeFlag := addStoreFlag(fs)
	rmFlag := addReadModelsFlag(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("rebuild: unexpected arguments %q", fs.Args())
	}
	store, err := openRebuildLog(ctx, *storeFlag, *dir, stderr)
	if err != nil {
		return fmt.Errorf("rebuild: %w", err)
	}
	defer store.Close()
	rm, err := openReadModels(ctx, *rmFlag, *dir)
	if err != nil {
		return fmt.Errorf("rebuild: %w", err)
	}
	defer rm.Close()
	// Read models of another log are what a rebuild replaces: the digests
	// below then differ and say so.
	if err := rm.CatchUp(ctx, store); err != nil && !errors.Is(err, projections.ErrAheadOfLog) {
		return fmt.Errorf("catch up before rebuild: %w", err)
	}
	before, err := rm.Digest(ctx)
	if err != nil {
		return err
	}
	start := time.Now()
	head, err := store.Head(ctx)
	if err != nil {
		return err
	}
	stop := showProgress(stderr, head, "rebuild: events replayed", rm.Checkpoint)
	err = rm.Rebuild(ctx, store)
	stop()
	if err != nil {
		return err
	}
	after, err := rm.Digest(ctx)
	if err != nil {
		return err
	}
	totals, err := rm.Totals(ctx)
	if err != nil {
		return err
	}
	if err := totals.Check(); err != nil {
		return fmt.Errorf("ledger does not balance after rebuild: %w", err)
	}
	fmt.Fprintf(stdout, "rebuild: replayed to position %d in %s\n", rm.Checkpoint(), time.Since(start).Round(time.Millisecond))
	fmt.Fprintf(stdout, "rebuild: read-model digest before %s\nrebuild: read-model digest after  %s\n", before, after)
	if before != after {
		return fmt.Errorf("rebuild produced different read models: the stored ones were stale or damaged and are now replaced")
	}
	fmt.Fprintln(stdout, "rebuild: ok (identical read models)")
	return nil
}

// cmdVerify walks the whole global log and checks every stream's hash chain
// and the version and position order (R3). It prints a digest over the log
// that a regulator can compare with an earlier one. It only reads, without
// the writer's lock, so it runs beside a live server too.
func cmdVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("data", "./data", "data directory")
	cpDir := fs.String("checkpoints", "", "also check that the log extends every signed checkpoint in this directory")
	pubPath := fs.String("public-key", "", "public key of the checkpoints' signing key (with --checkpoints)")
	store := addStoreFlag(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	var check *checkpoints.Checker
	if *cpDir != "" {
		if *pubPath == "" {
			return errors.New("verify: --checkpoints needs --public-key, the key they are checked with")
		}
		pub, err := checkpoints.LoadPublicKey(*pubPath)
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		cps, err := checkpoints.Read(*cpDir)
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		if len(cps) == 0 {
			return fmt.Errorf("verify: no checkpoint in %s", *cpDir)
		}
		if check, err = checkpoints.NewChecker(pub, cps); err != nil {
			return fmt.Errorf("verify: %w", err)
		}
	}
	log, _, err := openReadLog(ctx, *store, *dir)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	defer log.Close()
	var checked atomic.Int64
	head, err := log.Head(ctx)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	stop := showProgress(stderr, head, "verify: events checked", checked.Load)
	n, streams, digest, err := verifyLogAgainst(ctx, log, &checked, check)
	stop()
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	if check != nil {
		if err := check.Done(); err != nil {
			return fmt.Errorf("verify: %w", err)
		}
	}
	fmt.Fprintf(stdout, "verify: %d events in %d streams, every hash chain intact\n", n, streams)
	// The SQLite file keeps its own stream and id indexes, which are
	// checked here; PostgreSQL's are its unique constraints, which it
	// checks on every insert.
	if r, ok := log.(*sqlite.Reader); ok {
		indexed, err := r.CheckIndexes(ctx)
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		rest := ""
		if int64(indexed) < n {
			// A running server keeps the newest events' index entries in
			// memory and writes them in batches; a stopped one has flushed.
			rest = fmt.Sprintf(", %d newer ones indexed in the running server's memory", n-int64(indexed))
		}
		fmt.Fprintf(stdout, "verify: stream and id indexes consistent (%d events indexed on disk%s)\n", indexed, rest)
	}
	fmt.Fprintf(stdout, "verify: event-log digest %s (keep it: the same log always gives the same digest)\n", digest)
	if check != nil {
		fmt.Fprintf(stdout, "verify: ok %d events, %d checkpoints\n", n, check.Checked)
	}
	return nil
}

// logReader is what verifyLog needs: a Store or a sqlite.Reader.
type logReader interface {
	Head(ctx context.Context) (int64, error)
	ReadAll(ctx context.Context, after int64, limit int) ([]eventstore.Event, error)
}

type chainState struct {
	version int64
	hash    [32]byte
}

// verifyLog checks the global log from position 1 and returns the event
// count, stream count and the digest (SHA-256 chained over event hashes in
// position order).
// progress, when not nil, is kept at the position checked so far.
func verifyLog(ctx context.Context, store logReader, progress *atomic.Int64) (int64, int, string, error) {
	return verifyLogAgainst(ctx, store, progress, nil)
}

// verifyLogAgainst is verifyLog that also feeds every event hash, in log
// order, to check (when not nil): the log must extend every signed
// checkpoint.
func verifyLogAgainst(ctx context.Context, store logReader, progress *atomic.Int64, check *checkpoints.Checker) (int64, int, string, error) {
	head, err := store.Head(ctx)
	if err != nil {
		return 0, 0, "", err
	}
	chains := map[string]chainState{}
	var digest [32]byte
	var n, pos int64
	for pos < head {
		evs, err := store.ReadAll(ctx, pos, eventstore.MaxReadBatch)
		if err != nil {
			return n, len(chains), "", err
		}
		if len(evs) == 0 {
			return n, len(chains), "", fmt.Errorf("log ends at position %d but head is %d: events are missing", pos, head)
		}
		for _, e := range evs {
			if e.Position <= pos {
				return n, len(chains), "", fmt.Errorf("position %d follows %d: the log is reordered", e.Position, pos)
			}
			c := chains[e.Stream]
			if e.Version != c.version+1 {
				return n, len(chains), "", fmt.Errorf("stream %s: version %d follows %d: an event is missing or reordered", e.Stream, e.Version, c.version)
			}
			if _, err := eventstore.VerifyChain(c.hash, []eventstore.Event{e}); err != nil {
				return n, len(chains), "", err
			}
			chains[e.Stream] = chainState{version: e.Version, hash: e.Hash}
			if check != nil {
				if err := check.Add(e.Hash); err != nil {
					return n, len(chains), "", fmt.Errorf("%w; the event there is stream %s version %d at position %d", err, e.Stream, e.Version, e.Position)
				}
			}
			digest = sha256.Sum256(append(digest[:], e.Hash[:]...))
			pos = e.Position
			n++
		}
		if progress != nil {
			progress.Store(pos)
		}
	}
	return n, len(chains), hex.EncodeToString(digest[:]), nil
}
