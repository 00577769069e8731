// Package httpapi serves the ledger's HTTP API: JSON in and out, amounts
// as decimal strings, errors as problem+json with stable codes, bearer
// credentials (holder sessions, staff keys) on every route but the public
// ones, and Idempotency-Key on every POST and PUT. What a caller may do is
// decided by the ledger (ledger.Authorize); this package authenticates and
// slows down guessing. It must never be imported by domain, ledger or
// eventstore.
package httpapi

import (
	"context"
	_ "embed"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/payledger/payledger/checkpoints"
	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/eventstore"
	"github.com/payledger/payledger/internal/ratelimit"
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
	// byAddr and byAccount count failed authentications (a wrong login,
	// a bad token) per client address and per account named in the path.
	byAddr, byAccount *ratelimit.Limiter
	metrics           *metrics
	metricsPublic     bool
	disclosures       disclosurePages
	reconciled        reconciled
	// latestCheckpoint returns the last signed checkpoint of the log (nil
	// when the server signs none).
	latestCheckpoint func() (checkpoints.Checkpoint, bool)
	prover           Prover
	proofSlots       chan struct{}
}

// Failure budgets: an address may fail 20 times, then once a 6 s; an
// account's logins 10 times, then once a minute. R9's lock still applies.
const (
	addrBurst     = 20
	addrEvery     = 6 * time.Second
	accountBurst  = 10
	accountEvery  = time.Minute
	limiterKeys   = 100000
	maxAuthHeader = 400
)

// New returns the API server.
func New(svc *ledger.Service, store eventstore.Store, rm *projections.ReadModels, log *slog.Logger) *Server {
	s := &Server{svc: svc, store: store, rm: rm, log: log, mux: http.NewServeMux(),
		byAddr:    ratelimit.New(addrBurst, addrEvery, limiterKeys, svc.Now),
		byAccount: ratelimit.New(accountBurst, accountEvery, limiterKeys, svc.Now)}
	s.metrics = newMetrics(s)
	s.routes()
	return s
}

// SetFailureLimits replaces the failure budgets per address and per
// account (tests that make many failures on purpose raise them).
func (s *Server) SetFailureLimits(byAddr, byAccount *ratelimit.Limiter) {
	s.byAddr, s.byAccount = byAddr, byAccount
}

type actorKey struct{}

// actorOf returns the authenticated caller of r (the zero Actor when the
// request carried no credentials).
func actorOf(r *http.Request) ledger.Actor {
	a, _ := r.Context().Value(actorKey{}).(ledger.Actor)
	return a
}

// ServeHTTP authenticates the request, refuses it while its address (or,
// for a login, its account) has no failures left, and routes it; a known
// path with another method answers 405 with Allow.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	// Everything under /v1/ but the API's own description is about
	// someone's money or case: no cache may keep it.
	if strings.HasPrefix(r.URL.Path, "/v1/") && r.URL.Path != "/v1/openapi.json" {
		w.Header().Set("Cache-Control", "no-store")
	}
	addr := clientAddr(r)
	// Handler finds the route but does not set the path values, so a
	// matched request is served by the mux itself below.
	h, pattern := s.mux.Handler(r)
	op, known := Routes[pattern]
	// Only a login's failures count against the account it names: a bad
	// token naming an account must not lock its holder out.
	account := ""
	if op == ledger.OpLogin {
		account = pathAccount(r.URL.Path)
	}
	by, authErr := s.authenticate(r)
	rec := &statusWriter{ResponseWriter: w}
	defer func() { s.observe(r, pattern, rec.status, time.Since(start), by) }()
	if !by.Holder() && !by.Staff() && op != "" {
		// Only requests without valid credentials are throttled, and
		// never the public documents: a holder's own session keeps
		// working while a stranger guesses.
		if err := s.throttled(addr, account); err != nil {
			s.metrics.authFailures.WithLabelValues("throttled").Inc()
			s.writeProblem(rec, r, err)
			return
		}
	}
	switch {
	case authErr != nil:
		s.writeProblem(rec, r, authErr)
	case pattern == "":
		s.unrouted(rec, r, h)
	case !known:
		s.writeProblem(rec, r, domain.Errorf(domain.CodeInternal, "route %s has no access rule", pattern))
	case op == ledger.OpReadMetrics && s.metricsPublic:
		s.mux.ServeHTTP(rec, r)
	default:
		r = r.WithContext(context.WithValue(r.Context(), actorKey{}, by))
		if op != "" {
			// Refused callers are turned away before their body is read;
			// the ledger checks again for every command.
			if err := ledger.Authorize(by, op, pathAccount(r.URL.Path)); err != nil {
				s.writeProblem(rec, r, err)
				break
			}
		}
		s.mux.ServeHTTP(rec, r)
	}
	// A failure is a credential that did not verify: a bearer token, or
	// a login's proofs; a request with no credentials guessed nothing.
	// A login to an account that does not exist counts too, so that ids
	// cannot be probed at the rate of the server.
	loginFailed := account != "" && (rec.status == http.StatusUnauthorized || rec.status == http.StatusLocked || rec.status == http.StatusNotFound)
	if authErr != nil || loginFailed {
		kind := "credentials"
		if loginFailed {
			kind = "login"
		}
		s.metrics.authFailures.WithLabelValues(kind).Inc()
		s.byAddr.Take(addr)
		if account != "" {
			s.byAccount.Take(account)
		}
	}
}

// authenticate reads Authorization: Bearer. No header is the public
// caller; a header that is not a valid credential is refused.
func (s *Server) authenticate(r *http.Request) (ledger.Actor, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return ledger.Actor{}, nil
	}
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || len(h) > maxAuthHeader {
		return ledger.Actor{}, domain.Errorf(domain.CodeUnauthenticated, "Authorization must be \"Bearer \" and a session token or staff key")
	}
	return s.svc.Authenticate(r.Context(), strings.TrimSpace(tok))
}

// throttled refuses a request from an address, or naming an account, that
// has used up its failures.
func (s *Server) throttled(addr, account string) error {
	wait := time.Duration(0)
	if ok, w := s.byAddr.Allow(addr); !ok {
		wait = w
	}
	if account != "" {
		if ok, w := s.byAccount.Allow(account); !ok && w > wait {
			wait = w
		}
	}
	if wait == 0 {
		return nil
	}
	secs := int((wait + time.Second - 1) / time.Second)
	return domain.Errorf(domain.CodeRateLimited, "too many failed attempts from this address or against this account; retry in %d s", secs).
		With("retry_after", secs)
}

// unrouted answers a request no route matched: 405 with Allow when the
// path exists with other methods (the mux's own answer says which), else
// 404, both as problems.
func (s *Server) unrouted(w http.ResponseWriter, r *http.Request, h http.Handler) {
	probe := &probeWriter{header: http.Header{}}
	h.ServeHTTP(probe, r)
	if probe.status == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", probe.header.Get("Allow"))
		s.writeProblem(w, r, domain.Errorf(domain.CodeMethodNotAllowed, "%s is not served on %s; use %s", r.Method, r.URL.Path, probe.header.Get("Allow")))
		return
	}
	s.writeProblem(w, r, domain.Errorf(domain.CodeNotFound, "no route %s %s", r.Method, r.URL.Path))
}

// clientAddr is the client's IP address (the TCP peer).
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// pathAccount is the account id of an /v1/accounts/{id}/... path, or "".
func pathAccount(path string) string {
	rest, ok := strings.CutPrefix(path, "/v1/accounts/")
	if !ok {
		return ""
	}
	id, _, _ := strings.Cut(rest, "/")
	if len(id) > 40 {
		return ""
	}
	return id
}

// statusWriter remembers the status written.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// probeWriter captures what the mux's own not-found handler would write.
type probeWriter struct {
	header http.Header
	status int
}

func (p *probeWriter) Header() http.Header         { return p.header }
func (p *probeWriter) WriteHeader(code int)        { p.status = code }
func (p *probeWriter) Write(b []byte) (int, error) { return len(b), nil }

func (s *Server) routes() {
	m := s.mux
	m.HandleFunc("GET /v1/openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(OpenAPI)
	})
	m.HandleFunc("GET /metrics", s.serveMetrics)
	m.HandleFunc("GET /healthz", s.health)
	m.HandleFunc("POST /v1/accounts", s.openAccount)
	m.HandleFunc("GET /v1/accounts/{id}", s.getAccount)
	m.HandleFunc("POST /v1/accounts/{id}/factors", s.enrollFactor)
	m.HandleFunc("POST /v1/accounts/{id}/factors/{fid}/revoke", s.revokeFactor)
	m.HandleFunc("POST /v1/accounts/{id}/factors/{fid}/loss-report", s.reportLoss)
	m.HandleFunc("POST /v1/accounts/{id}/factors/{fid}/reset", s.resetCredential)
	m.HandleFunc("POST /v1/accounts/{id}/sessions", s.login)
	m.HandleFunc("DELETE /v1/sessions/current", s.logout)
	m.HandleFunc("POST /v1/accounts/{id}/devices", s.registerDevice)
	m.HandleFunc("POST /v1/accounts/{id}/devices/{did}/revoke", s.revokeDevice)
	m.HandleFunc("POST /v1/accounts/{id}/unlock", s.unlock)
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
	m.HandleFunc("GET /v1/accounts/{id}/personal-data", s.personalData)
	m.HandleFunc("POST /v1/accounts/{id}/erasure", s.erasePersonalData)
	m.HandleFunc("POST /v1/accounts/{id}/loss-cases", s.reportLossCase)
	m.HandleFunc("GET /v1/loss-cases/{case}", s.getLossCase)
	m.HandleFunc("POST /v1/loss-cases/{case}/investigation", s.investigateLoss)
	m.HandleFunc("POST /v1/loss-cases/{case}/liability", s.determineLiability)
	m.HandleFunc("POST /v1/loss-cases/{case}/settlement", s.settleLoss)
	m.HandleFunc("POST /v1/loss-cases/{case}/close", s.closeLossCase)
	m.HandleFunc("GET /v1/reserve", s.getReserve)
	m.HandleFunc("GET /v1/reserve/movements", s.reserveMovements)
	m.HandleFunc("POST /v1/reserve/adjustments", s.adjustReserve)
	m.HandleFunc("POST /v1/reserve/closes", s.closeReserveDay)
	m.HandleFunc("GET /v1/reports/annual/{year}", s.annualReport)
	m.HandleFunc("GET /disclosures/{year}", s.disclosure)
	m.HandleFunc("GET /v1/loss-cases", s.listCases(domain.CaseLoss))
	m.HandleFunc("POST /v1/accounts/{id}/disputes", s.openDispute)
	m.HandleFunc("GET /v1/disputes", s.listCases(domain.CaseDispute))
	m.HandleFunc("GET /v1/disputes/{dispute}", s.getDispute)
	m.HandleFunc("POST /v1/disputes/{dispute}/assignment", s.assignDispute)
	m.HandleFunc("POST /v1/disputes/{dispute}/answers", s.answerDispute)
	m.HandleFunc("POST /v1/disputes/{dispute}/resolution", s.resolveDispute)
	m.HandleFunc("POST /v1/disputes/{dispute}/withdrawal", s.withdrawDispute)
	m.HandleFunc("GET /v1/finance", s.financePage)
	m.HandleFunc("GET /v1/proofs/checkpoints/latest", s.latestCheckpointHandler)
	m.HandleFunc("GET /v1/proofs/events/{position}", s.eventProof)
	m.HandleFunc("GET /v1/proofs/consistency", s.consistencyProof)
}

// Routes maps every route to the ledger operation it performs ("" for the
// public documents), so a test can check each against the access table.
var Routes = map[string]ledger.Op{
	"GET /v1/openapi.json":                             "",
	"GET /healthz":                                     "",
	"GET /metrics":                                     ledger.OpReadMetrics,
	"POST /v1/accounts":                                ledger.OpOpenAccount,
	"GET /v1/accounts/{id}":                            ledger.OpViewAccount,
	"POST /v1/accounts/{id}/factors":                   ledger.OpEnrollFactor,
	"POST /v1/accounts/{id}/factors/{fid}/revoke":      ledger.OpRevokeFactor,
	"POST /v1/accounts/{id}/factors/{fid}/loss-report": ledger.OpReportLoss,
	"POST /v1/accounts/{id}/factors/{fid}/reset":       ledger.OpResetCredential,
	"POST /v1/accounts/{id}/sessions":                  ledger.OpLogin,
	"DELETE /v1/sessions/current":                      ledger.OpLogout,
	"POST /v1/accounts/{id}/devices":                   ledger.OpRegisterDevice,
	"POST /v1/accounts/{id}/devices/{did}/revoke":      ledger.OpRevokeDevice,
	"POST /v1/accounts/{id}/unlock":                    ledger.OpUnlock,
	"POST /v1/accounts/{id}/bank-account":              ledger.OpBindBankAccount,
	"POST /v1/accounts/{id}/deposits":                  ledger.OpDeposit,
	"POST /v1/accounts/{id}/payments":                  ledger.OpInitiatePayment,
	"POST /v1/accounts/{id}/payments/{pid}/confirm":    ledger.OpConfirmPayment,
	"POST /v1/accounts/{id}/withdrawals":               ledger.OpWithdraw,
	"PUT /v1/accounts/{id}/limits":                     ledger.OpAdjustLimit,
	"PUT /v1/accounts/{id}/identity":                   ledger.OpChangeIdentity,
	"PUT /v1/accounts/{id}/phone":                      ledger.OpChangePhone,
	"POST /v1/accounts/{id}/suspend":                   ledger.OpSuspend,
	"POST /v1/accounts/{id}/reactivate":                ledger.OpReactivate,
	"POST /v1/accounts/{id}/close":                     ledger.OpClose,
	"GET /v1/accounts/{id}/balance":                    ledger.OpReadBalance,
	"GET /v1/accounts/{id}/statement":                  ledger.OpReadStatement,
	"GET /v1/accounts/{id}/operations":                 ledger.OpReadOperations,
	"GET /v1/accounts/{id}/personal-data":              ledger.OpExportPersonalData,
	"POST /v1/accounts/{id}/erasure":                   ledger.OpErasePersonalData,
	"POST /v1/accounts/{id}/loss-cases":                ledger.OpReportLossCase,
	"GET /v1/loss-cases/{case}":                        ledger.OpViewLossCase,
	"POST /v1/loss-cases/{case}/investigation":         ledger.OpInvestigateLoss,
	"POST /v1/loss-cases/{case}/liability":             ledger.OpDetermineLiability,
	"POST /v1/loss-cases/{case}/settlement":            ledger.OpSettleLoss,
	"POST /v1/loss-cases/{case}/close":                 ledger.OpCloseLossCase,
	"GET /v1/reserve":                                  ledger.OpReadReserve,
	"GET /v1/reserve/movements":                        ledger.OpReadReserve,
	"POST /v1/reserve/adjustments":                     ledger.OpAdjustReserve,
	"POST /v1/reserve/closes":                          ledger.OpCloseDay,
	"GET /v1/reports/annual/{year}":                    ledger.OpReadAnnualReport,
	"GET /disclosures/{year}":                          "",
	"GET /v1/loss-cases":                               ledger.OpListCases,
	"POST /v1/accounts/{id}/disputes":                  ledger.OpOpenDispute,
	"GET /v1/disputes":                                 ledger.OpListCases,
	"GET /v1/disputes/{dispute}":                       ledger.OpViewDispute,
	"POST /v1/disputes/{dispute}/assignment":           ledger.OpHandleDispute,
	"POST /v1/disputes/{dispute}/answers":              ledger.OpHandleDispute,
	"POST /v1/disputes/{dispute}/resolution":           ledger.OpHandleDispute,
	"POST /v1/disputes/{dispute}/withdrawal":           ledger.OpWithdrawDispute,
	"GET /v1/finance":                                  ledger.OpReadReserve,
	"GET /v1/proofs/checkpoints/latest":                "",
	"GET /v1/proofs/events/{position}":                 "",
	"GET /v1/proofs/consistency":                       "",
}

// command runs a write: decode, idempotency, execute, render. render turns
// the outcome into the success body; a recorded refusal becomes a problem.
func command[T any](s *Server, w http.ResponseWriter, r *http.Request, status int,
	run func(ctx context.Context, by ledger.Actor, req T, idem ledger.Idem) (ledger.Outcome, error),
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
	out, err := run(r.Context(), actorOf(r), req, idem)
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
	if out.Replayed && shownOnce(out) {
		s.writeProblem(w, r, domain.Errorf(domain.CodeSecretShownOnce,
			"this Idempotency-Key already answered with a secret (a session token or a TOTP seed), which is shown only once; send the request again with a new key"))
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

// shownOnce reports whether an outcome's reply carried a secret: a session
// or a TOTP seed.
func shownOnce(out ledger.Outcome) bool {
	for _, e := range out.Decoded {
		switch v := e.(type) {
		case domain.LoginSucceeded:
			return true
		case domain.FactorEnrolled:
			if v.Method == domain.MethodTOTP {
				return true
			}
		case domain.CredentialReset:
			if v.Method == domain.MethodTOTP {
				return true
			}
		}
	}
	return false
}

// maxHealthyLag is how far the read models may be behind the log before
// the server reports itself degraded: reads wait for them, and they fail
// (503 unavailable) when the wait is too long.
const maxHealthyLag = 100000

// health answers 200 ok, or 503 degraded with the reasons an operator can
// act on: the log could not be written (disk full, read-only, failing) and
// has not been since, or the read models are far behind the log.
func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	var reasons []string
	if p := s.svc.StorageProblem(); p != "" {
		reasons = append(reasons, "storage: the event log cannot be written: "+p)
	}
	ctx, cancel := context.WithTimeout(r.Context(), time.Second)
	defer cancel()
	cp := s.rm.Checkpoint()
	head, err := s.store.Head(ctx)
	switch {
	case err != nil:
		reasons = append(reasons, "storage: the event log cannot be read: "+err.Error())
	case head-cp > maxHealthyLag:
		reasons = append(reasons, fmt.Sprintf("projection: the read models are %d events behind the log", head-cp))
	}
	if len(reasons) > 0 {
		s.writeProblem(w, r, domain.Errorf(domain.CodeDegraded, "%s", strings.Join(reasons, "; ")).
			With("reasons", reasons).With("checkpoint", cp))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "checkpoint": cp})
}
