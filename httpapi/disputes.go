package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/staffkeys"
	"github.com/payledger/payledger/projections"
)

type disputeReq struct {
	Kind        string `json:"kind"`
	PaymentID   string `json:"payment_id"`
	Subject     string `json:"subject"`
	Description string `json:"description"`
}

type assignReq struct {
	Assignee string `json:"assignee"`
}

type answerReq struct {
	Answer string `json:"answer"`
}

type resolveReq struct {
	Outcome    string `json:"outcome"`
	Resolution string `json:"resolution"`
}

type withdrawDisputeReq struct {
	Reason string `json:"reason"`
}

// disputeStep runs a dispute command and renders the dispute.
func disputeStep[T any](s *Server, w http.ResponseWriter, r *http.Request, status int,
	run func(ctx context.Context, by ledger.Actor, req T, idem ledger.Idem) (ledger.DisputeView, error)) {
	viewStep(s, w, r, status, run, func(v ledger.DisputeView, by ledger.Actor) (any, bool) { return disputeJSON(v, by), v.Replayed })
}

func (s *Server) openDispute(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	disputeStep(s, w, r, http.StatusCreated, func(ctx context.Context, by ledger.Actor, req disputeReq, idem ledger.Idem) (ledger.DisputeView, error) {
		return s.svc.OpenDispute(ctx, by, id, idem, ledger.DisputeRequest{Kind: req.Kind, PaymentID: req.PaymentID, Subject: req.Subject, Description: req.Description})
	})
}

func (s *Server) getDispute(w http.ResponseWriter, r *http.Request) {
	by := actorOf(r)
	v, err := s.svc.Dispute(r.Context(), by, r.PathValue("dispute"))
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, disputeJSON(v, by))
}

func (s *Server) assignDispute(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("dispute")
	disputeStep(s, w, r, http.StatusOK, func(ctx context.Context, by ledger.Actor, req assignReq, idem ledger.Idem) (ledger.DisputeView, error) {
		return s.svc.AssignDispute(ctx, by, id, idem, req.Assignee)
	})
}

func (s *Server) answerDispute(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("dispute")
	disputeStep(s, w, r, http.StatusOK, func(ctx context.Context, by ledger.Actor, req answerReq, idem ledger.Idem) (ledger.DisputeView, error) {
		return s.svc.AnswerDispute(ctx, by, id, idem, req.Answer)
	})
}

func (s *Server) resolveDispute(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("dispute")
	disputeStep(s, w, r, http.StatusOK, func(ctx context.Context, by ledger.Actor, req resolveReq, idem ledger.Idem) (ledger.DisputeView, error) {
		return s.svc.ResolveDispute(ctx, by, id, idem, req.Outcome, req.Resolution)
	})
}

func (s *Server) withdrawDispute(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("dispute")
	// Only the dispute's holder may withdraw it: known once it is loaded,
	// and checked before the body is read, as the edge does for accounts.
	if _, err := s.svc.Dispute(r.Context(), actorOf(r), id); err != nil {
		s.writeProblem(w, r, err)
		return
	}
	disputeStep(s, w, r, http.StatusOK, func(ctx context.Context, by ledger.Actor, req withdrawDisputeReq, idem ledger.Idem) (ledger.DisputeView, error) {
		return s.svc.WithdrawDispute(ctx, by, id, idem, req.Reason)
	})
}

// disputeJSON renders a dispute for its caller: a holder does not see
// which staff keys acted, the auditor no personal data.
func disputeJSON(v ledger.DisputeView, by ledger.Actor) map[string]any {
	o := v.Opened
	answers := make([]map[string]any, len(v.Answers))
	for i, a := range v.Answers {
		answers[i] = map[string]any{"answer": a.Answer, "staff_key": a.StaffKey}
	}
	out := map[string]any{"dispute_id": o.DisputeID, "account_id": o.AccountID, "kind": o.Kind, "payment_id": o.PaymentID,
		"subject": o.Subject, "description": o.Description, "status": v.Status, "opened_at": ts(v.OpenedAt),
		"due_by": ts(o.DueBy), "overdue": v.Overdue, "assignee": v.Assignee, "answers": answers}
	if res := v.Resolution; res != nil {
		rm := map[string]any{"outcome": res.Outcome, "resolution": res.Resolution}
		if res.StaffKey != "" {
			rm["staff_key"] = res.StaffKey
		}
		out["resolution"] = rm
	}
	if by.Holder() {
		for _, a := range answers {
			delete(a, "staff_key")
		}
		if res, ok := out["resolution"].(map[string]any); ok {
			delete(res, "staff_key")
		}
	}
	scrub(out, "", by)
	// The subject and the answers may name the holder's affairs too.
	if by.Role == staffkeys.RoleAuditor {
		out["subject"] = masked
		if v.Assignee != "" {
			out["assignee"] = masked
		}
		for _, a := range answers {
			a["answer"] = masked
		}
		if res, ok := out["resolution"].(map[string]any); ok {
			res["resolution"] = masked
		}
	}
	return out
}

// listCases serves the staff's lists of loss cases or disputes:
// ?status=open (the default) or all, and for disputes ?overdue=true.
func (s *Server) listCases(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		cq := projections.CaseQuery{Kind: kind, After: q.Get("cursor"), Limit: 100}
		switch q.Get("status") {
		case "", "open":
			cq.OpenOnly = true
		case "all":
		default:
			s.writeProblem(w, r, domain.Invalid("status", `status must be "open" or "all"`))
			return
		}
		switch q.Get("overdue") {
		case "":
		case "true":
			if kind != domain.CaseDispute {
				s.writeProblem(w, r, domain.Invalid("overdue", "only disputes have a service time"))
				return
			}
			cq.OverdueAt = s.svc.Now()
		default:
			s.writeProblem(w, r, domain.Invalid("overdue", `overdue must be "true" or absent`))
			return
		}
		if len(cq.After) > 40 {
			s.writeProblem(w, r, domain.Invalid("cursor", "cursor is not one this API returned"))
			return
		}
		if err := s.svc.AuthorizeList(r.Context(), actorOf(r), kind+"_list"); err != nil {
			s.writeProblem(w, r, err)
			return
		}
		if err := s.catchUp(r.Context()); err != nil {
			s.writeProblem(w, r, err)
			return
		}
		rows, next, err := s.rm.Cases(r.Context(), cq)
		if err != nil {
			s.writeProblem(w, r, err)
			return
		}
		now := s.svc.Now()
		items := make([]map[string]any, len(rows))
		for i, c := range rows {
			item := map[string]any{"id": c.CaseID, "account_id": c.AccountID, "status": c.Status, "opened_at": ts(c.OpenedAt)}
			if !c.DueBy.IsZero() {
				item["due_by"] = ts(c.DueBy)
				item["overdue"] = c.EndedAt.IsZero() && now.After(c.DueBy)
			}
			if !c.EndedAt.IsZero() {
				item["ended_at"] = ts(c.EndedAt)
			}
			items[i] = item
		}
		writeJSON(w, http.StatusOK, map[string]any{"kind": kind, "items": items, "next_cursor": next, "as_of": ts(now.Truncate(time.Millisecond))})
	}
}
