// Package httpapi serves the ledger's HTTP API (shared/API.md): JSON in and
// out, amounts as decimal strings, errors as problem+json with stable codes,
// and Idempotency-Key on every POST.
package httpapi

import (
	"context"
	_ "embed"
	"encoding/base64"
	"log/slog"
	"net/http"
	"time"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/eventstore"
	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/projections"
)

// OpenAPI is the API contract served at /v1/openapi.json.
//
//go:embed openapi.json
var OpenAPI []byte

// readWait bounds how long a read waits for the projections to reach the
// log head, so that a balance read after a write sees it.
const readWait = 5 * time.Second

// Server holds the HTTP handlers.
type Server struct {
	svc   *ledger.Service
	store eventstore.Store
	rm    *projections.ReadModels
	log   *slog.Logger
	mux   *http.ServeMux
}

// New returns the API server.
func New(svc *ledger.Service, store eventstore.Store, rm *projections.ReadModels, log *slog.Logger) *Server {
	s := &Server{svc: svc, store: store, rm: rm, log: log, mux: http.NewServeMux()}
	s.routes()
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

func (s *Server) routes() {
	m := s.mux
	m.HandleFunc("GET /v1/openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(OpenAPI)
	})
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "checkpoint": s.rm.Checkpoint()})
	})
	m.HandleFunc("POST /v1/accounts", s.openAccount)
	m.HandleFunc("GET /v1/accounts/{id}", s.getAccount)
	m.HandleFunc("POST /v1/accounts/{id}/factors", s.enrollFactor)
	m.HandleFunc("POST /v1/accounts/{id}/factors/{fid}/revoke", s.revokeFactor)
	m.HandleFunc("POST /v1/accounts/{id}/factors/{fid}/loss-report", s.reportLoss)
	m.HandleFunc("POST /v1/accounts/{id}/factors/{fid}/reset", s.resetCredential)
	m.HandleFunc("POST /v1/accounts/{id}/sessions", s.login)
	m.HandleFunc("POST /v1/accounts/{id}/bank-account", s.bindBank)
	m.HandleFunc("POST /v1/accounts/{id}/deposits", s.deposit)
	m.HandleFunc("POST /v1/accounts/{id}/payments", s.initiatePayment)
	m.HandleFunc("POST /v1/accounts/{id}/payments/{pid}/confirm", s.confirmPayment)
	m.HandleFunc("POST /v1/accounts/{id}/withdrawals", s.withdraw)
	m.HandleFunc("PUT /v1/accounts/{id}/limits", s.adjustLimit)
	m.HandleFunc("PUT /v1/accounts/{id}/identity", s.changeIdentity)
	m.HandleFunc("PUT /v1/accounts/{id}/phone", s.changePhone)
	m.HandleFunc("POST /v1/accounts/{id}/suspend", s.status(s.svc.Suspend))
	m.HandleFunc("POST /v1/accounts/{id}/reactivate", s.status(s.svc.Reactivate))
	m.HandleFunc("POST /v1/accounts/{id}/close", s.status(s.svc.Close))
	m.HandleFunc("GET /v1/accounts/{id}/balance", s.balance)
	m.HandleFunc("GET /v1/accounts/{id}/statement", s.statement)
	m.HandleFunc("GET /v1/accounts/{id}/operations", s.operations)
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.writeProblem(w, r, domain.Errorf(domain.CodeNotFound, "no route %s %s", r.Method, r.URL.Path))
	})
}

// command runs a write: decode, idempotency, execute, render. render turns
// the outcome into the success body; a recorded refusal becomes a problem.
func command[T any](s *Server, w http.ResponseWriter, r *http.Request, status int,
	run func(ctx context.Context, req T, idem ledger.Idem) (ledger.Outcome, error),
	render func(out ledger.Outcome) (any, error)) {
	var req T
	body, err := decode(r, &req)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	idem, err := idemOf(s.svc.Keys(), r, body)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	out, err := run(r.Context(), req, idem)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	if out.Replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	if out.Refusal != nil {
		s.writeProblem(w, r, out.Refusal)
		return
	}
	resp, err := render(out)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	writeJSON(w, status, resp)
}

// logRef is attached to every write response: where the events landed.
type logRef struct {
	EventIDs     []string `json:"event_ids"`
	LastPosition int64    `json:"last_position"`
	Version      int64    `json:"version"`
}

func refOf(out ledger.Outcome) logRef {
	ref := logRef{EventIDs: make([]string, 0, len(out.Events))}
	for _, e := range out.Events {
		ref.EventIDs = append(ref.EventIDs, e.ID)
		ref.LastPosition, ref.Version = e.Position, e.Version
	}
	return ref
}

// find returns the first decoded event of type T in an outcome.
func find[T domain.Event](out ledger.Outcome) (T, ledger.Outcome, error) {
	for _, e := range out.Decoded {
		if v, ok := e.(T); ok {
			return v, out, nil
		}
	}
	var zero T
	return zero, out, domain.Errorf(domain.CodeInternal, "expected %s in the outcome", zero.EventType())
}

type proofJSON struct {
	FactorID    string `json:"factor_id"`
	Password    string `json:"password,omitempty"`
	Code        string `json:"code,omitempty"`
	Signature   string `json:"signature,omitempty"`
	Attestation string `json:"attestation,omitempty"`
}

func proofsOf(in []proofJSON) ([]domain.Proof, error) {
	out := make([]domain.Proof, 0, len(in))
	for _, p := range in {
		pr := domain.Proof{FactorID: p.FactorID, Password: p.Password, Code: p.Code}
		if p.FactorID == "" {
			return nil, domain.Invalid("proofs", "every proof needs a factor_id")
		}
		var err error
		if p.Signature != "" {
			if pr.Signature, err = base64.StdEncoding.DecodeString(p.Signature); err != nil {
				return nil, domain.Invalid("proofs", "signature must be base64")
			}
		}
		if p.Attestation != "" {
			if pr.Attestation, err = base64.StdEncoding.DecodeString(p.Attestation); err != nil {
				return nil, domain.Invalid("proofs", "attestation must be base64")
			}
		}
		out = append(out, pr)
	}
	return out, nil
}

func ts(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
