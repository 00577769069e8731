package ledger

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/eventstore"
	"github.com/payledger/payledger/ledger/personaldata"
)

// An account's aggregate is saved as a snapshot beside the log every
// SnapshotEvery events, off the write path, so that loading a cold account
// reads the snapshot and the events after it instead of its whole history.
// A snapshot is trusted only when the log's event at its version has the
// hash it names and its schema is the aggregate's current one; otherwise
// it is ignored (and counted) and the stream is read in full.

const (
	// defaultSnapshotEvery is Config.SnapshotEvery's default.
	defaultSnapshotEvery = 200
	// snapshotSavers bounds the snapshots being saved at once; one more is
	// skipped (the next append past the interval tries again).
	snapshotSavers = 2
	// snapshotSaveTimeout bounds one save.
	snapshotSaveTimeout = 10 * time.Second
	// snapshotBehind is how many events past its snapshot an aggregate
	// must be for its eviction from the cache, or the Service's close, to
	// save a new one: fewer cost a load little.
	snapshotBehind = 8
	// evictSnapshotBudget bounds the saving of one evicted batch.
	evictSnapshotBudget = 30 * time.Second
)

// snapshotPayload is what an account's snapshot holds: the aggregate and
// its idempotency keys, so that a request retried across the snapshot is
// still answered as the first time.
type snapshotPayload struct {
	Account json.RawMessage `json:"account"`
	Keys    []keySnapshot   `json:"keys"`
}

type keySnapshot struct {
	Key      string  `json:"key"`
	BodyHash string  `json:"body_hash"`
	Versions []int64 `json:"versions"`
}

// SnapshotStats counts the account snapshots this Service saved, loaded
// and refused (a hash that does not match the log, another schema, a
// payload that does not decode).
type SnapshotStats struct {
	Saved, Loaded, Rejected int64
}

// SnapshotStats returns the counters.
func (s *Service) SnapshotStats() SnapshotStats {
	return SnapshotStats{Saved: s.snaps.saved.Load(), Loaded: s.snaps.loaded.Load(), Rejected: s.snaps.rejected.Load()}
}

// restoreSnapshot loads the account's snapshot into ent when the log
// vouches for it; a snapshot it does not trust is reported and left, and
// ent stays empty for the caller to fold the whole stream.
func (s *Service) restoreSnapshot(ctx context.Context, ent *entry, stream string) error {
	snap, ok, err := s.cfg.Store.LoadSnapshot(ctx, stream)
	if err != nil || !ok {
		return err
	}
	if reason := s.checkSnapshot(ctx, snap); reason != "" {
		s.reject(stream, reason)
		return nil
	}
	payload, reason := s.openSnapshot(snap)
	if reason != "" {
		s.reject(stream, reason)
		return nil
	}
	var p snapshotPayload
	if err := json.Unmarshal(payload, &p); err != nil {
		s.reject(stream, "payload: "+err.Error())
		return nil
	}
	acct, err := domain.RestoreAccount(p.Account, s.cfg.Policy.Location)
	if err != nil || acct.Version != snap.Version {
		s.reject(stream, fmt.Sprintf("account: version %d, snapshot %d, %v", acctVersion(acct), snap.Version, err))
		return nil
	}
	if s.cfg.PersonalData != nil && !personaldata.Sealed(string(snap.Payload)) && !acct.Erased() {
		s.reject(stream, "a snapshot in clear of an account whose personal data is not erased")
		return nil
	}
	ent.acct, ent.keys = acct, keyBook{}
	for _, k := range p.Keys {
		if ent.keys.keys == nil {
			ent.keys.keys = map[string]keyRecord{}
		}
		ent.keys.keys[k.Key] = keyRecord{bodyHash: k.BodyHash, versions: k.Versions}
		ent.keys.order = append(ent.keys.order, k.Key)
	}
	ent.snapVersion, ent.lastHash = snap.Version, snap.EventHash
	s.snaps.loaded.Add(1)
	return nil
}

// snapshotAD is the associated data of a sealed snapshot: its stream and
// version, so that a sealed snapshot does not open as another.
func snapshotAD(stream string, version int64) string {
	return fmt.Sprintf("snapshot\x00%s\x00%d", stream, version)
}

// openSnapshot returns a snapshot's payload, opened when the service seals
// personal data, or why it cannot be used: written in clear, or sealed
// with a key that was erased or does not open it.
func (s *Service) openSnapshot(snap eventstore.Snapshot) ([]byte, string) {
	pd := s.cfg.PersonalData
	if pd == nil {
		return snap.Payload, ""
	}
	owner := strings.TrimPrefix(snap.Stream, "account-")
	if !personaldata.Sealed(string(snap.Payload)) {
		// Only an erased account's snapshot is saved in clear: its
		// aggregate holds no personal data any more (restoreSnapshot
		// checks that it says so).
		if st, err := pd.StateOf(owner); err != nil || st != personaldata.Erased {
			return nil, "the snapshot is not sealed with the account's data key"
		}
		return snap.Payload, ""
	}
	plain, err := pd.Open(owner, snapshotAD(snap.Stream, snap.Version), string(snap.Payload))
	if err != nil {
		return nil, "sealed payload: " + err.Error()
	}
	return []byte(plain), ""
}

func acctVersion(a *domain.Account) int64 {
	if a == nil {
		return 0
	}
	return a.Version
}

func (s *Service) reject(stream, reason string) {
	s.snaps.rejected.Add(1)
	if s.cfg.OnSnapshotRejected != nil {
		s.cfg.OnSnapshotRejected(stream, reason)
	}
}

// checkSnapshot returns why a snapshot cannot be trusted, or "".
func (s *Service) checkSnapshot(ctx context.Context, snap eventstore.Snapshot) string {
	if snap.Schema != domain.AccountSnapshotSchema {
		return fmt.Sprintf("schema %d, the aggregate's is %d", snap.Schema, domain.AccountSnapshotSchema)
	}
	evs, err := s.cfg.Store.ReadStream(ctx, snap.Stream, snap.Version, 1)
	switch {
	case err != nil:
		return "reading its event: " + err.Error()
	case len(evs) != 1 || evs[0].Version != snap.Version:
		return fmt.Sprintf("the stream has no event %d", snap.Version)
	case evs[0].Hash != snap.EventHash:
		return fmt.Sprintf("the hash of event %d differs from the log's", snap.Version)
	}
	return ""
}

// maybeSnapshot saves ent's aggregate when SnapshotEvery events have been
// folded since the last snapshot. ent.mu is held: the payload is made here,
// consistent; the save runs on its own.
func (s *Service) maybeSnapshot(ent *entry, stream string) {
	if s.cfg.SnapshotEvery < 0 || ent.acct == nil || ent.acct.Version-ent.snapVersion < int64(s.cfg.SnapshotEvery) {
		return
	}
	select {
	case s.snaps.savers <- struct{}{}:
	default:
		return // busy: a later append tries again
	}
	s.saveSnapshot(ent, stream)
}

// saveSnapshot makes ent's snapshot payload and saves it on its own; the
// caller holds ent.mu and a saver's slot, which the save gives back.
func (s *Service) saveSnapshot(ent *entry, stream string) {
	snap, err := s.makeSnapshot(ent, stream)
	if err != nil {
		<-s.snaps.savers
		return
	}
	go func() {
		defer func() { <-s.snaps.savers }()
		ctx, cancel := context.WithTimeout(context.Background(), snapshotSaveTimeout)
		defer cancel()
		if s.cfg.Store.SaveSnapshot(ctx, snap) == nil {
			s.snaps.saved.Add(1)
		}
	}()
}

// makeSnapshot returns ent's snapshot, its aggregate and idempotency keys
// (sealed when the service seals personal data), and records it as ent's
// latest; ent.mu is held.
func (s *Service) makeSnapshot(ent *entry, stream string) (eventstore.Snapshot, error) {
	acct, err := ent.acct.MarshalSnapshot()
	var payload []byte
	if err == nil {
		p := snapshotPayload{Account: acct, Keys: make([]keySnapshot, 0, len(ent.keys.order))}
		for _, k := range ent.keys.order {
			r := ent.keys.keys[k]
			p.Keys = append(p.Keys, keySnapshot{Key: k, BodyHash: r.bodyHash, Versions: r.versions})
		}
		payload, err = json.Marshal(p)
	}
	if pd := s.cfg.PersonalData; err == nil && pd != nil && !ent.acct.Erased() {
		// The aggregate holds the holder's name and phone: a snapshot is
		// sealed with the account's data key like its events' fields.
		var sealed string
		sealed, err = pd.Seal(ent.acct.ID, snapshotAD(stream, ent.acct.Version), string(payload))
		payload = []byte(sealed)
	}
	if err != nil {
		return eventstore.Snapshot{}, err
	}
	snap := eventstore.Snapshot{Stream: stream, Version: ent.acct.Version, EventHash: ent.lastHash,
		Schema: domain.AccountSnapshotSchema, Payload: payload}
	ent.snapVersion = snap.Version
	return snap, nil
}

// behind returns how many events ent's aggregate is past its last
// snapshot, or 0 when it holds none; ent.mu is held.
func (e *entry) behind() int64 {
	if e.acct == nil || !e.acct.Exists() {
		return 0
	}
	return e.acct.Version - e.snapVersion
}

// settledSnapshot saves ent's snapshot now, when it is at least
// snapshotBehind events behind; ent is locked here, and whether it was
// saved is returned.
func (s *Service) settledSnapshot(ctx context.Context, ent *entry, id string, wait bool) (bool, error) {
	if wait {
		ent.mu.Lock()
	} else if !ent.mu.TryLock() {
		return false, nil // in use: the command holding it is not done
	}
	if ent.behind() < snapshotBehind {
		ent.mu.Unlock()
		return false, nil
	}
	snap, err := s.makeSnapshot(ent, domain.AccountStream(id))
	ent.mu.Unlock()
	if err != nil {
		return false, nil // the account's data key is gone: no snapshot to keep
	}
	sctx, cancel := context.WithTimeout(ctx, snapshotSaveTimeout)
	defer cancel()
	if err := s.cfg.Store.SaveSnapshot(sctx, snap); err != nil {
		return false, err
	}
	s.snaps.saved.Add(1)
	return true, nil
}

// snapshotEvicted saves, on its own, the snapshots of aggregates the cache
// just dropped that were at least snapshotBehind events past theirs, so
// that their next load reads a short tail. One batch at a time, within
// evictSnapshotBudget; a batch arriving while one is saved is dropped
// (snapshots are advisory). The command that made room does not wait.
func (s *Service) snapshotEvicted(batch []evicted) {
	select {
	case s.snaps.evictor <- struct{}{}:
	default:
		return
	}
	go func() {
		defer func() { <-s.snaps.evictor }()
		ctx, cancel := context.WithTimeout(context.Background(), evictSnapshotBudget)
		defer cancel()
		for _, ev := range batch {
			if ctx.Err() != nil {
				return
			}
			// The entry left the map; a command that took it just before
			// may still hold it, and is waited for.
			if _, err := s.settledSnapshot(ctx, ev.ent, ev.id, true); err != nil {
				return
			}
		}
	}()
}

// SaveSnapshots saves the snapshots of up to max cached accounts that are
// at least a few events past theirs, furthest behind first, until ctx is
// done, and waits for the saves already under way. An account in use is
// skipped. A server calls it once it takes no more commands and before it
// closes the store, so that the accounts it served load after a restart
// from a snapshot with a short tail. The snapshots stay advisory: a crash
// before it only makes the next loads read more of the streams.
func (s *Service) SaveSnapshots(ctx context.Context, maxAccounts int) (int, error) {
	if s.cfg.SnapshotEvery < 0 {
		return 0, nil
	}
	type cand struct {
		id     string
		ent    *entry
		behind int64
	}
	var cands []cand
	s.cache.mu.Lock()
	for id, ent := range s.cache.entries {
		if ent.mu.TryLock() {
			if b := ent.behind(); b >= snapshotBehind {
				cands = append(cands, cand{id, ent, b})
			}
			ent.mu.Unlock()
		}
	}
	s.cache.mu.Unlock()
	slices.SortFunc(cands, func(a, b cand) int { return cmp.Compare(b.behind, a.behind) })
	cands = cands[:min(len(cands), max(maxAccounts, 0))]
	saved := 0
	var err error
	for _, c := range cands {
		if err = ctx.Err(); err != nil {
			break
		}
		var ok bool
		if ok, err = s.settledSnapshot(ctx, c.ent, c.id, false); err != nil {
			break
		}
		if ok {
			saved++
		}
	}
	// The saves started by appends and evictions end before the store
	// closes: taking every saver's slot waits for them.
	held := 0
	defer func() {
		for range held {
			<-s.snaps.savers
		}
	}()
	for range snapshotSavers {
		select {
		case s.snaps.savers <- struct{}{}:
			held++
		case <-ctx.Done():
			return saved, errors.Join(err, ctx.Err())
		}
	}
	select {
	case s.snaps.evictor <- struct{}{}:
		<-s.snaps.evictor
	case <-ctx.Done():
		return saved, errors.Join(err, ctx.Err())
	}
	return saved, err
}
