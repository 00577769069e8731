package httpapi

import (
	"context"
	"net/http"
	"strconv"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/ledger"
)

// personalData serves an export of the account's personal data (R20): the
// current values and, page by page, every event that holds some, opened
// (or "[erased]").
func (s *Server) personalData(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	from := int64(1)
	if v := r.URL.Query().Get("cursor"); v != "" {
		var err error
		if from, err = strconv.ParseInt(v, 10, 64); err != nil || from < 1 {
			s.writeProblem(w, r, domain.Invalid("cursor", "cursor is not one this API returned"))
			return
		}
	}
	x, err := s.svc.ExportPersonalData(r.Context(), actorOf(r), id, from)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	devices := make([]map[string]any, 0, len(x.Devices))
	for _, d := range x.Devices {
		devices = append(devices, map[string]any{"device_id": d.ID, "label": d.Label})
	}
	records := make([]map[string]any, 0, len(x.Records))
	for _, rec := range x.Records {
		if actorOf(r).Holder() {
			if _, ok := rec.Fields["reason"]; ok && rec.ByStaff {
				rec.Fields["reason"] = withheld // as the operations log does (scrub)
			}
			// The operator's identity check is staff-only, as in scrub.
			delete(rec.Fields, "identity_check")
			if len(rec.Fields) == 0 {
				continue
			}
		}
		records = append(records, map[string]any{"event_id": rec.EventID, "version": rec.Version, "type": rec.Type,
			"occurred_at": ts(rec.OccurredAt), "fields": rec.Fields})
	}
	next := ""
	if x.NextCursor > 0 {
		next = strconv.FormatInt(x.NextCursor, 10)
	}
	resp := map[string]any{"account_id": x.AccountID, "erased": x.Erased, "holder_name": x.HolderName, "phone": x.Phone,
		"devices": devices, "records": records, "next_cursor": next}
	if x.BankLast4 != "" {
		resp["bank_account"] = map[string]any{"holder_name": x.BankHolder, "last4": x.BankLast4}
	}
	writeJSON(w, http.StatusOK, resp)
}

// erasureReq names the erasure request in compliance's own records; free
// text is refused so that no personal data enters the erasure's event.
type erasureReq struct {
	Reference string `json:"reference"`
}

// erasePersonalData destroys the account's data key (R20), for compliance,
// once no retention rule needs the data.
func (s *Server) erasePersonalData(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	command(s, w, r, http.StatusOK, func(ctx context.Context, by ledger.Actor, req erasureReq, idem ledger.Idem) (ledger.Outcome, error) {
		return s.svc.ErasePersonalData(ctx, by, id, idem, req.Reference)
	}, func(out ledger.Outcome) (any, error) {
		e, out, err := find[domain.PersonalDataErased](out)
		return map[string]any{"account_id": id, "erased": true, "reference": e.Reference, "log": refOf(out)}, err
	})
}
