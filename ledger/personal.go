package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/eventstore"
	"github.com/payledger/payledger/ledger/personaldata"
)

// UnreadableText is what a read shows of a sealed field that does not
// open (altered, or copied from another event); the log stays the
// authority and a read never fails on it.
const UnreadableText = "[unreadable]"

const (
	// exportRecords bounds the records of one page of an export, and
	// exportScan the events one page reads to find them.
	exportRecords = 100
	exportScan    = 5000
)

// PersonalRecord is one event's personal data, opened.
type PersonalRecord struct {
	EventID    string
	Version    int64
	Type       string
	OccurredAt time.Time
	// Fields maps each field of personal data (as named in the payload)
	// to its value, domain.ErasedText once erased.
	Fields map[string]string
	// ByStaff is set when a staff key made the event: its reason is the
	// staff's, which a holder is not shown (it may name an investigation).
	ByStaff bool
}

// PersonalExport is what an account's log holds of its holder's personal
// data: the current values and, page by page, every event that carries
// some.
type PersonalExport struct {
	AccountID  string
	Erased     bool
	HolderName string
	Phone      string
	BankLast4  string
	BankHolder string
	Devices    []domain.Device
	Records    []PersonalRecord
	// NextCursor is the stream version to read the next page from; 0
	// when the stream is read to its end.
	NextCursor int64
}

// ExportPersonalData returns a page of the account's personal data (R20:
// the customer can view their data), starting at stream version from
// (1 for the first page). A staff export is recorded as a read.
func (s *Service) ExportPersonalData(ctx context.Context, by Actor, accountID string, from int64) (PersonalExport, error) {
	if err := s.AuthorizeRead(ctx, by, OpExportPersonalData, accountID); err != nil {
		return PersonalExport{}, err
	}
	if from < 1 {
		return PersonalExport{}, domain.Invalid("cursor", "cursor is not one this API returned")
	}
	ent := s.cache.lock(accountID)
	if err := s.load(ctx, ent, accountID); err != nil {
		ent.mu.Unlock()
		return PersonalExport{}, err
	}
	a := ent.acct
	if !a.Exists() {
		s.cache.drop(accountID, ent)
		ent.mu.Unlock()
		return PersonalExport{}, domain.Errorf(domain.CodeNotFound, "account %s not found", accountID)
	}
	out := PersonalExport{AccountID: accountID, Erased: a.Erased(), HolderName: a.HolderName, Phone: a.Phone, Devices: a.Devices()}
	if b, ok := a.BankAccount(); ok {
		out.BankLast4, out.BankHolder = b.Last4, b.HolderName
	}
	ent.mu.Unlock()
	stream := domain.AccountStream(accountID)
	evs, err := s.cfg.Store.ReadStream(ctx, stream, from, exportScan)
	if err != nil {
		return PersonalExport{}, fmt.Errorf("export personal data of %s: %w", accountID, err)
	}
	for _, e := range evs {
		if len(out.Records) == exportRecords {
			out.NextCursor = e.Version
			return out, nil
		}
		d, err := s.decode(accountID, e)
		if err != nil {
			return PersonalExport{}, fmt.Errorf("export personal data of %s at version %d: %w", accountID, e.Version, err)
		}
		fields := map[string]string{}
		if _, _, err := domain.MapPersonal(d, func(name, v string) (string, error) {
			if name != "bank_account_token" { // sealed, but never served (R19)
				fields[name] = v
			}
			return v, nil
		}); err != nil {
			return PersonalExport{}, err
		}
		if len(fields) > 0 {
			staff, _ := d.(interface{ ByStaff() bool })
			out.Records = append(out.Records, PersonalRecord{EventID: e.ID, Version: e.Version, Type: e.Type, OccurredAt: e.OccurredAt, Fields: fields,
				ByStaff: staff != nil && staff.ByStaff()})
		}
	}
	if len(evs) == exportScan {
		out.NextCursor = evs[len(evs)-1].Version + 1
	}
	return out, nil
}

// ErasePersonalData erases the account's personal data by destroying its
// data key (R20, crypto-shredding), for a compliance key, once no
// retention rule needs it (domain.ErasePersonalData: the account closed
// and its last operation domain.RetentionYears old). The erasure is an
// event first, then the key is destroyed: an erasure whose key survived a
// failure is completed by the next load of the account (completeErasure)
// or the next request for it. A stream with personal
// data in clear (older than the encryption) is refused, since destroying
// the key would not make that data unreadable.
func (s *Service) ErasePersonalData(ctx context.Context, by Actor, accountID string, idem Idem, reference string) (Outcome, error) {
	if err := Authorize(by, OpErasePersonalData, accountID); err != nil {
		return Outcome{}, err
	}
	pd := s.cfg.PersonalData
	if pd == nil {
		return Outcome{}, domain.Errorf(domain.CodeInternal, "this server keeps no data keys, so it cannot erase personal data")
	}
	if err := s.checkSealed(ctx, accountID); err != nil {
		return Outcome{}, err
	}
	// Marked before the event, so that a stop between the event and the
	// key's erasure is completed at the next start (CompleteErasures).
	if err := pd.MarkErasing(accountID); err != nil {
		return Outcome{}, domain.Errorf(domain.CodeStorageUnavailable, "the erasure of %s could not be started (%v); nothing was recorded", accountID, err)
	}
	out, err := s.Execute(ctx, by, OpErasePersonalData, accountID, idem, func(*domain.Account, time.Time, domain.Balance) (domain.Command, error) {
		return domain.ErasePersonalData{Reference: reference, Staff: by.staff("")}, nil
	})
	var coded *domain.Error
	if errors.As(err, &coded) && coded.Code == domain.CodePersonalDataErased {
		// The event is in the log: make sure the key is gone too (Erase
		// keeps the first erasure's time and drops the mark made above).
		if eerr := pd.Erase(accountID); eerr != nil {
			return Outcome{}, fmt.Errorf("complete the erasure of %s: %w", accountID, eerr)
		}
		return Outcome{}, err
	}
	if err != nil {
		// Not appended: a mark left by a failing Unmark is dropped at the
		// next start, which finds the account not erased.
		_ = pd.Unmark(accountID)
		return Outcome{}, err
	}
	if err := pd.Erase(accountID); err != nil {
		return Outcome{}, domain.Errorf(domain.CodeStorageUnavailable,
			"the erasure of %s is recorded but its data key could not be destroyed yet (%v); repeat the request to complete it", accountID, err)
	}
	s.resnapshot(accountID)
	return out, nil
}

// maxPendingErasures bounds the pending erasures one start completes;
// each is an erasure a failure or a stop interrupted.
const maxPendingErasures = 10000

// CompleteErasures completes the erasures that were marked in the key
// store but whose key was not erased (the process stopped or the store
// failed between the event and the key's erasure): it loads each account,
// which erases the key of one the log says is erased (completeErasure),
// and drops the mark of one whose event was never appended. The server
// runs it at start, before it serves anything, so a payee's statement
// never opens an erased payer's description. It returns how many accounts
// it looked at.
func (s *Service) CompleteErasures(ctx context.Context) (int, error) {
	pd := s.cfg.PersonalData
	if pd == nil {
		return 0, nil
	}
	owners, err := pd.PendingErasures(maxPendingErasures)
	if err != nil {
		return 0, err
	}
	for _, id := range owners {
		ent := s.cache.lock(id)
		err := s.load(ctx, ent, id)
		if err == nil && !ent.acct.Exists() {
			s.cache.drop(id, ent)
		}
		ent.mu.Unlock()
		if err != nil {
			return 0, fmt.Errorf("complete the erasure of %s: %w", id, err)
		}
		// Erased in the log, the load has erased the key; not erased, the
		// event was never appended. Either way the mark is done.
		if err := pd.Unmark(id); err != nil {
			return 0, err
		}
	}
	return len(owners), nil
}

// completeErasure destroys the data key of a loaded account whose log
// says it is erased while its key is still live (the erasure was appended
// and the server failed or stopped before the key was destroyed), and
// replaces its snapshot, so the personal data it still opened is gone
// before anything is served from it. ent is locked. A key store that
// cannot destroy the key fails the load rather than serve the data.
func (s *Service) completeErasure(ent *entry, accountID string) error {
	pd := s.cfg.PersonalData
	if pd == nil || !ent.acct.Erased() {
		return nil
	}
	st, err := pd.StateOf(accountID)
	if err == nil && st == personaldata.Erased {
		return nil
	}
	if err == nil {
		err = pd.Erase(accountID)
	}
	if err != nil {
		return domain.Errorf(domain.CodeStorageUnavailable,
			"account %s is erased in the log but its data key could not be destroyed yet (%v)", accountID, err)
	}
	if s.cfg.SnapshotEvery >= 0 {
		select {
		case s.snaps.savers <- struct{}{}:
			s.saveSnapshot(ent, domain.AccountStream(accountID))
		default:
		}
	}
	return nil
}

// checkSealed refuses an erasure while the account's stream holds a field
// of personal data in clear.
func (s *Service) checkSealed(ctx context.Context, accountID string) error {
	stream := domain.AccountStream(accountID)
	from := int64(1)
	for batch := 0; batch < maxLoadBatches; batch++ {
		evs, err := s.cfg.Store.ReadStream(ctx, stream, from, loadBatch)
		if err != nil {
			return fmt.Errorf("read account %s: %w", accountID, err)
		}
		for _, e := range evs {
			d, err := domain.DecodeEvent(e.Type, e.SchemaVersion, e.Payload)
			if err != nil {
				return fmt.Errorf("read account %s at version %d: %w", accountID, e.Version, err)
			}
			inClear := ""
			if _, _, err := domain.MapPersonal(d, func(name, v string) (string, error) {
				if !personaldata.Sealed(v) && inClear == "" {
					inClear = name
				}
				return v, nil
			}); err != nil {
				return err
			}
			if inClear != "" {
				return domain.Errorf(domain.CodePersonalDataInClear,
					"event %d of account %s (%s) holds %s in clear, written before personal data was sealed; destroying the key would not erase it",
					e.Version, accountID, e.Type, inClear).With("version", e.Version)
			}
		}
		if len(evs) < loadBatch {
			return nil
		}
		from = evs[len(evs)-1].Version + 1
	}
	return fmt.Errorf("read account %s: more than %d events", accountID, maxLoadBatches*loadBatch)
}

// resnapshot replaces an erased account's snapshot, sealed with the key
// that no longer exists, by one of its erased state, so that no copy of
// its former state stays beside the log. A failure only leaves the old,
// unreadable snapshot, which loads then refuse.
func (s *Service) resnapshot(accountID string) {
	if s.cfg.SnapshotEvery < 0 {
		return
	}
	ent := s.cache.lock(accountID)
	defer ent.mu.Unlock()
	if ent.acct == nil || !ent.acct.Erased() {
		return
	}
	select {
	case s.snaps.savers <- struct{}{}:
	default:
		return
	}
	s.saveSnapshot(ent, domain.AccountStream(accountID))
}

// ResolvePersonal returns text from a read model or a payload of eventID
// with each sealed field in it opened (domain.ErasedText once erased,
// UnreadableText when it does not open) with the key of one of owners (the
// account the event belongs to, and for a statement's entry its
// counterparty); a field sealed for anyone else reads UnreadableText.
func (s *Service) ResolvePersonal(eventID, text string, owners ...string) string {
	if s.cfg.PersonalData == nil {
		return text
	}
	return s.cfg.PersonalData.Resolve(owners, eventID, text, domain.ErasedText, UnreadableText)
}

// SealedFields returns the sealed texts of an event's fields of personal
// data: the only strings of its payload a read opens (a string a customer
// chose that looks sealed is not one of them). It is empty for an event
// that does not decode.
func SealedFields(e eventstore.Event) map[string]bool {
	d, err := domain.DecodeEvent(e.Type, e.SchemaVersion, e.Payload)
	if err != nil {
		return nil
	}
	out := map[string]bool{}
	if _, _, err := domain.MapPersonal(d, func(_, v string) (string, error) {
		if personaldata.Sealed(v) {
			out[v] = true
		}
		return v, nil
	}); err != nil {
		return nil
	}
	return out
}
