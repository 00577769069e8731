package httpapi

import (
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/staffkeys"
)

// redacted are payload fields that stay in the log but are never served:
// password hashes, sealed seeds, session-token hashes, bank tokens and
// payment challenges.
var redacted = []string{"password_hash", "sealed_secret", "token_hash", "bank_account_token", "challenge"}

// personal are payload fields masked for the auditor role.
var personal = []string{"holder_name", "phone", "last4", "bank_account_last4", "device_id", "description", "reference"}

// operations serves the account's own event log (R1), oldest first, with
// each event's hash-chain links (R3).
func (s *Server) operations(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	by := actorOf(r)
	if err := s.svc.AuthorizeRead(r.Context(), by, ledger.OpReadOperations, id); err != nil {
		s.writeProblem(w, r, err)
		return
	}
	q := r.URL.Query()
	from, limit := int64(1), 100
	var err error
	if v := q.Get("cursor"); v != "" {
		if from, err = strconv.ParseInt(v, 10, 64); err != nil || from < 1 {
			s.writeProblem(w, r, domain.Invalid("cursor", "cursor is not one this API returned"))
			return
		}
	}
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > 100 {
			s.writeProblem(w, r, domain.Invalid("limit", "limit must be 1 to 100"))
			return
		}
	}
	evs, err := s.store.ReadStream(r.Context(), domain.AccountStream(id), from, limit+1)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	next := ""
	if len(evs) > limit {
		next = strconv.FormatInt(evs[limit].Version, 10)
		evs = evs[:limit]
	}
	ops := make([]map[string]any, 0, len(evs))
	for _, e := range evs {
		var payload map[string]any
		if err := json.Unmarshal(e.Payload, &payload); err != nil {
			s.writeProblem(w, r, domain.Errorf(domain.CodeInternal, "event at position %d has a malformed payload", e.Position))
			return
		}
		for _, k := range redacted {
			if _, ok := payload[k]; ok {
				payload[k] = "[redacted]"
			}
		}
		for _, k := range personal {
			if _, ok := payload[k]; ok && by.Role == staffkeys.RoleAuditor {
				payload[k] = masked
			}
		}
		ops = append(ops, map[string]any{"event_id": e.ID, "version": e.Version, "position": e.Position, "type": e.Type,
			"schema_version": e.SchemaVersion, "occurred_at": ts(e.OccurredAt), "correlation_id": e.CorrelationID,
			"payload": payload, "prev_hash": hex.EncodeToString(e.PrevHash[:]), "hash": hex.EncodeToString(e.Hash[:])})
	}
	writeJSON(w, http.StatusOK, map[string]any{"account_id": id, "operations": ops, "next_cursor": next})
}
