package httpapi

import (
	"net/http"
	"time"

	"github.com/payledger/payledger/checkpoints"
	"github.com/payledger/payledger/domain"
)

// SetCheckpoints gives the server the signer's latest checkpoint, which
// GET /v1/proofs/checkpoints/latest serves.
func (s *Server) SetCheckpoints(latest func() (checkpoints.Checkpoint, bool)) {
	s.latestCheckpoint = latest
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
