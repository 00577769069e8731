package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/payledger/payledger/checkpoints"
	"github.com/payledger/payledger/domain"
)

// Prover is what the proof routes need of the checkpoint signer.
type Prover interface {
	Latest() (checkpoints.Checkpoint, bool)
	InclusionDoc(ctx context.Context, position, size uint64) (checkpoints.Proof, error)
	ConsistencyDoc(ctx context.Context, from, to uint64) (checkpoints.Proof, error)
}

// proofSlots bounds the proofs computed at once: each reads up to two
// blocks of the log, and the routes are public.
const proofSlots = 4

// SetCheckpoints gives the server the checkpoint signer, whose latest
// checkpoint and proofs the /v1/proofs routes serve.
func (s *Server) SetCheckpoints(p Prover) {
	s.latestCheckpoint = p.Latest
	s.prover = p
	s.proofSlots = make(chan struct{}, proofSlots)
}

// eventProof serves an inclusion proof of the event at a log position
// against the latest checkpoint, or the one of ?size=N.
func (s *Server) eventProof(w http.ResponseWriter, r *http.Request) {
	pos, err := strconv.ParseUint(r.PathValue("position"), 10, 64)
	if err != nil || pos == 0 {
		s.writeProblem(w, r, domain.Invalid("position", "a log position is a whole number from 1"))
		return
	}
	size, ok := s.sizeParam(w, r, "size")
	if !ok {
		return
	}
	s.serveProof(w, r, func(ctx context.Context) (checkpoints.Proof, error) { return s.prover.InclusionDoc(ctx, pos, size) })
}

// consistencyProof serves a consistency proof between the checkpoint of
// ?from=N and the latest one, or the one of ?to=M.
func (s *Server) consistencyProof(w http.ResponseWriter, r *http.Request) {
	from, ok := s.sizeParam(w, r, "from")
	if !ok {
		return
	}
	if from == 0 {
		s.writeProblem(w, r, domain.Invalid("from", "from is the size of a signed checkpoint, a whole number from 1"))
		return
	}
	to, ok := s.sizeParam(w, r, "to")
	if !ok {
		return
	}
	s.serveProof(w, r, func(ctx context.Context) (checkpoints.Proof, error) { return s.prover.ConsistencyDoc(ctx, from, to) })
}

// sizeParam reads an optional checkpoint size from the query (0 if absent).
func (s *Server) sizeParam(w http.ResponseWriter, r *http.Request, name string) (uint64, bool) {
	raw := r.URL.Query().Get(name)
	if raw == "" {
		return 0, true
	}
	n, err := strconv.ParseUint(raw, 10, 64)
	if err != nil {
		s.writeProblem(w, r, domain.Invalid(name, name+" is the size of a signed checkpoint, a whole number"))
		return 0, false
	}
	return n, true
}

func (s *Server) serveProof(w http.ResponseWriter, r *http.Request, make func(context.Context) (checkpoints.Proof, error)) {
	if s.prover == nil {
		s.writeProblem(w, r, domain.Errorf(domain.CodeNotFound, "this server signs no checkpoints (serve --checkpoint-key)"))
		return
	}
	select {
	case s.proofSlots <- struct{}{}:
		defer func() { <-s.proofSlots }()
	default:
		s.writeProblem(w, r, domain.Errorf(domain.CodeRateLimited, "too many proofs are being computed; retry in 1 s").
			With("retry_after", 1))
		return
	}
	p, err := make(r.Context())
	switch {
	case errors.Is(err, checkpoints.ErrNoCheckpoint):
		s.writeProblem(w, r, domain.Errorf(domain.CodeNotFound, "no checkpoint of that size was signed; GET /v1/proofs/checkpoints/latest names the latest"))
	case errors.Is(err, checkpoints.ErrProofRange):
		s.writeProblem(w, r, domain.Errorf(domain.CodeNotFound, "the checkpoint does not cover that position; a newer checkpoint may"))
	case err != nil:
		s.writeProblem(w, r, err)
	default:
		writeJSON(w, http.StatusOK, p)
	}
}

// latestCheckpointHandler serves the last signed checkpoint of the log:
// public, for anyone who keeps checkpoints to check the log against later.
func (s *Server) latestCheckpointHandler(w http.ResponseWriter, r *http.Request) {
	if s.latestCheckpoint == nil {
		s.writeProblem(w, r, domain.Errorf(domain.CodeNotFound, "this server signs no checkpoints (serve --checkpoint-key)"))
		return
	}
	c, ok := s.latestCheckpoint()
	if !ok {
		s.writeProblem(w, r, domain.Errorf(domain.CodeNotFound, "no checkpoint has been signed yet"))
		return
	}
	root, err := c.RootHash()
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"size": c.Size, "root": c.Root, "time": c.Time.UTC().Format(time.RFC3339Nano),
		"key_id": c.KeyID, "signature": c.Signature, "statement": string(checkpoints.Statement(c.Size, root, c.Time))})
}
