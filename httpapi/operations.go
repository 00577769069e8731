package httpapi

import (
	"encoding/hex"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/staffkeys"
)

// redacted are payload fields that stay in the log but are never served:
// password hashes, sealed seeds, session-token hashes, bank tokens and
// payment challenges.
var redacted = []string{"password_hash", "sealed_secret", "token_hash", "bank_account_token", "challenge"}

// personal are payload fields masked for the auditor role, at any depth;
// a deposit's reference names the customer's bank transfer.
var personal = []string{"holder_name", "phone", "last4", "bank_account_last4", "device_id", "label", "description", "identity_check", "reason"}

// staffOnly are the fields a holder does not see of the staff's actions:
// which key acted and its identity check; and of an action a staff key
// made, its reason, which may name an investigation the holder must not
// be tipped off about.
var staffOnly = []string{"staff_key", "identity_check"}

// withheld replaces what a holder is not shown.
const withheld = "[withheld]"

// scrub redacts secrets for everyone, staff-only fields for the holder and
// personal data for the auditor, at any depth of an event's payload.
func scrub(payload map[string]any, eventType string, by ledger.Actor) {
	if by.Holder() {
		if _, byStaff := payload["staff_key"]; byStaff {
			if _, ok := payload["reason"]; ok {
				payload["reason"] = withheld
			}
		}
		for _, k := range staffOnly {
			delete(payload, k)
		}
	}
	auditor := by.Role == staffkeys.RoleAuditor
	// A deposit's reference names the customer's bank transfer, and a
	// device registration's the device.
	if auditor && (eventType == domain.TypeFundsDeposited || payload["change"] == domain.ChangeKindDevice || payload["purpose"] == domain.ChangeKindDevice) {
		if _, ok := payload["reference"]; ok {
			payload["reference"] = masked
		}
	}
	var walk func(v any)
	walk = func(v any) {
		switch t := v.(type) {
		case map[string]any:
			for k, child := range t {
				switch {
				case slices.Contains(redacted, k):
					t[k] = "[redacted]"
				case auditor && slices.Contains(personal, k):
					t[k] = masked
				default:
					walk(child)
				}
			}
		case []any:
			for _, child := range t {
				walk(child)
			}
		}
	}
	walk(payload)
}

// resolve opens, in a payload of eventID of accountID's stream, the
// strings that are the event's own sealed fields (sealed; the auditor's
// are masked already), with the account's key only. Any other string is
// left as written, so a text a holder chose that looks sealed opens
// nothing and tells nothing of another account's key.
func (s *Server) resolve(v any, eventID, accountID string, sealed map[string]bool) {
	if len(sealed) == 0 {
		return
	}
	switch t := v.(type) {
	case map[string]any:
		for k, child := range t {
			if str, ok := child.(string); ok {
				if sealed[str] {
					t[k] = s.svc.ResolvePersonal(eventID, str, accountID)
				}
				continue
			}
			s.resolve(child, eventID, accountID, sealed)
		}
	case []any:
		for i, child := range t {
			if str, ok := child.(string); ok {
				if sealed[str] {
					t[i] = s.svc.ResolvePersonal(eventID, str, accountID)
				}
				continue
			}
			s.resolve(child, eventID, accountID, sealed)
		}
	}
}

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
		scrub(payload, e.Type, by)
		s.resolve(payload, e.ID, id, ledger.SealedFields(e))
		ops = append(ops, map[string]any{"event_id": e.ID, "version": e.Version, "position": e.Position, "type": e.Type,
			"schema_version": e.SchemaVersion, "occurred_at": ts(e.OccurredAt), "correlation_id": e.CorrelationID,
			"payload": payload, "prev_hash": hex.EncodeToString(e.PrevHash[:]), "hash": hex.EncodeToString(e.Hash[:])})
	}
	writeJSON(w, http.StatusOK, map[string]any{"account_id": id, "operations": ops, "next_cursor": next})
}
