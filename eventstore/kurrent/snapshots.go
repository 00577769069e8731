package kurrent

import (
	"context"
	"fmt"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/payledger/payledger/eventstore"
)

// snapshotAttempts bounds SaveSnapshot's retries when another saver
// writes the same stream's snapshot at the same time.
const snapshotAttempts = 3

// SaveSnapshot appends s to its snapshot stream unless the latest kept
// there is at a later version. A new snapshot stream gets $maxCount 1, so
// KurrentDB keeps only the latest, when the user may write its metadata.
func (s *Store) SaveSnapshot(ctx context.Context, snap eventstore.Snapshot) error {
	if err := eventstore.ValidateSnapshot(snap); err != nil {
		return err
	}
	if s.isClosed() {
		return eventstore.ErrClosed
	}
	data, err := encodeSnapshot(snap)
	if err != nil {
		return err
	}
	name := s.names.snapshot(snap.Stream)
	for range snapshotAttempts {
		cur, rev, ok, err := s.lastSnapshot(ctx, snap.Stream)
		if err != nil {
			return err
		}
		expected := esdb.ExpectedRevision(esdb.NoStream{})
		if ok {
			if cur.Version >= snap.Version {
				return nil
			}
			expected = esdb.Revision(rev)
		}
		cctx, cancel := s.call(ctx)
		err = s.appendTo(cctx, name, expected, data)
		cancel()
		if codeOf(err) == esdb.ErrorCodeWrongExpectedVersion {
			continue // another saver wrote first: compare with theirs
		}
		if err != nil {
			return fmt.Errorf("kurrent store: save the snapshot of %s: %w", snap.Stream, s.readErr(err))
		}
		if ok {
			return nil
		}
		var meta esdb.StreamMetadata
		meta.SetMaxCount(1)
		cctx, cancel = s.call(ctx)
		err = s.do(cctx, func(c *esdb.Client) error {
			_, err := c.SetStreamMetadata(cctx, name, esdb.AppendToStreamOptions{ExpectedRevision: esdb.Any{}}, meta)
			return err
		})
		cancel()
		if codeOf(err) == esdb.ErrorCodeAccessDenied {
			// A deployment that keeps metadata writes to administrators
			// (docs/architecture.md) keeps every snapshot of the stream;
			// the latest is still the one loaded.
			return nil
		}
		if err != nil {
			return fmt.Errorf("kurrent store: the snapshot of %s is saved, its stream's $maxCount is not: %w", snap.Stream, err)
		}
		return nil
	}
	return fmt.Errorf("kurrent store: save the snapshot of %s: other savers wrote first %d times", snap.Stream, snapshotAttempts)
}

// LoadSnapshot returns stream's latest snapshot.
func (s *Store) LoadSnapshot(ctx context.Context, stream string) (eventstore.Snapshot, bool, error) {
	snap, _, ok, err := s.lastSnapshot(ctx, stream)
	return snap, ok, err
}

// lastSnapshot reads the latest snapshot of stream and its revision.
func (s *Store) lastSnapshot(ctx context.Context, stream string) (eventstore.Snapshot, uint64, bool, error) {
	rs, err := s.read(ctx, s.names.snapshot(stream), esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.End{}}, 1)
	if err != nil {
		return eventstore.Snapshot{}, 0, false, fmt.Errorf("kurrent store: load the snapshot of %s: %w", stream, err)
	}
	if len(rs) == 0 {
		return eventstore.Snapshot{}, 0, false, nil
	}
	snap, err := decodeSnapshot(rs[0].Event)
	if err != nil {
		return eventstore.Snapshot{}, 0, false, err
	}
	if snap.Stream != stream {
		return eventstore.Snapshot{}, 0, false, fmt.Errorf("%w: the snapshot stream of %s holds one of %s", errCorrupt, stream, snap.Stream)
	}
	return snap, rs[0].Event.EventNumber, true, nil
}
