package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/payledger/payledger/checkpoints"
)

// maxProofFile bounds a proof document read by proof verify.
const maxProofFile = 1 << 20

// cmdProof checks a proof document the server served, with only the
// public key: payledger proof verify --public-key F --proof F.
func cmdProof(_ context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "verify" {
		args = args[1:]
	} else if len(args) == 0 || (args[0] != "-h" && args[0] != "--help") {
		return errors.New("proof: usage: payledger proof verify --public-key FILE --proof FILE [--event-hash HEX] [--kept FILE]")
	}
	fs := flag.NewFlagSet("proof verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	pubPath := fs.String("public-key", "", "the checkpoint signing key's public key file (payledger keys signing-key writes FILE.pub)")
	proofPath := fs.String("proof", "", "the proof document (GET /v1/proofs/...), or - for standard input")
	eventHash := fs.String("event-hash", "", "inclusion: the hash of the event you hold, which the proof must be about")
	kept := fs.String("kept", "", "a checkpoint you kept earlier (its JSON): the proof must start from it (consistency) or be against it (inclusion)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *pubPath == "" || *proofPath == "" || fs.NArg() > 0 {
		return errors.New("proof verify needs --public-key FILE and --proof FILE")
	}
	pub, err := checkpoints.LoadPublicKey(*pubPath)
	if err != nil {
		return err
	}
	var p checkpoints.Proof
	if err := readJSONFile(*proofPath, &p); err != nil {
		return fmt.Errorf("proof: %w", err)
	}
	if err := p.Verify(pub); err != nil {
		return fmt.Errorf("proof: FAILED: %w", err)
	}
	if *eventHash != "" && !strings.EqualFold(*eventHash, p.EventHash) {
		return fmt.Errorf("proof: FAILED: the proof is about the event hash %s, not %s", p.EventHash, *eventHash)
	}
	if *kept != "" {
		var k checkpoints.Checkpoint
		if err := readJSONFile(*kept, &k); err != nil {
			return fmt.Errorf("proof: the kept checkpoint: %w", err)
		}
		against := p.Checkpoint
		if p.Kind == checkpoints.KindConsistency {
			against = *p.From
		}
		if k.Size != against.Size || k.Root != against.Root {
			return fmt.Errorf("proof: FAILED: the proof is against the checkpoint of %d events (root %s), not the one kept (%d events, root %s)",
				against.Size, against.Root, k.Size, k.Root)
		}
	}
	c := p.Checkpoint
	if p.Kind == checkpoints.KindInclusion {
		fmt.Fprintf(stdout, "proof: ok: the event at position %d (hash %s) is in the log of %d events signed %s by key %s\n",
			p.Position, p.EventHash, c.Size, c.Time.Format(time.RFC3339Nano), c.KeyID)
		return nil
	}
	fmt.Fprintf(stdout, "proof: ok: the log of %d events signed %s is a prefix of the log of %d events signed %s, by key %s\n",
		p.From.Size, p.From.Time.Format(time.RFC3339Nano), c.Size, c.Time.Format(time.RFC3339Nano), c.KeyID)
	return nil
}

// readJSONFile decodes a JSON document of at most maxProofFile bytes from
// path (- is standard input).
func readJSONFile(path string, v any) error {
	var r io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	raw, err := io.ReadAll(io.LimitReader(r, maxProofFile+1))
	if err != nil {
		return err
	}
	if len(raw) > maxProofFile {
		return fmt.Errorf("%s is larger than %d bytes", path, maxProofFile)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	return dec.Decode(v)
}
