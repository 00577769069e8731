package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/payledger/payledger/eventstore"
)

// Dictionaries.
//
// A format-2 or -3 segment is small (segmentMaxRaw), so DEFLATE or zstd alone finds
// little to match in it; a preset dictionary holding records like the
// segment's (the JSON keys of each event type, its stream and id prefixes)
// gives it that. The writer trains one from the log itself rather than
// carrying one for some domain: once the log holds dictTrainEvents events
// it takes the last ones, keeps a few records of each event type (the most
// frequent types last, nearest the data) up to dictMaxBytes, and stores
// that as a row of the dictionaries table in the transaction whose
// segments first use it. It trains a new one whenever the log has grown
// fourfold since the last (a young log's first events may be set-up ones,
// unlike the rest), and then every dictRetrainEvents events, so a log
// whose events change keeps compressing. A segment names
// its dictionary by id; rows are never changed or deleted (the retention
// triggers), so readers cache them by id.

const (
	dictTrainEvents   = 1024
	dictRetrainEvents = 1 << 20
	dictMaxBytes      = 8192
	// dictSamples is how many records of each event type a dictionary
	// keeps.
	dictSamples = 4
	// maxCachedDicts bounds a dictCache; it starts over when full.
	maxCachedDicts = 256
)

const (
	sqlDictLatest = `SELECT id, trained_at, dict FROM dictionaries ORDER BY id DESC LIMIT 1`
	sqlDictGet    = `SELECT dict FROM dictionaries WHERE id = ?`
	sqlDictInsert = `INSERT INTO dictionaries (trained_at, dict) VALUES (?, ?)`
)

// segDict is a dictionary the writer compresses with.
type segDict struct {
	id   int64
	at   int64 // the head when it was trained
	data []byte
}

// dictCache holds the dictionaries loaded from db, which sees only
// committed rows (a segment naming a dictionary is committed with it or
// after it).
type dictCache struct {
	db *sql.DB
	mu sync.RWMutex
	m  map[int64][]byte
	// zd holds a zstd decoder per dictionary id (0: none) for format-3
	// segments; a decoder is safe for concurrent DecodeAll calls.
	zd map[int64]*zstd.Decoder
}

func newDictCache(db *sql.DB) *dictCache {
	return &dictCache{db: db, m: make(map[int64][]byte), zd: make(map[int64]*zstd.Decoder)}
}

// zstdDecoder returns the decoder of format-3 segments compressed with
// dictionary id (0: none).
func (c *dictCache) zstdDecoder(id int64) (*zstd.Decoder, error) {
	if c == nil {
		return nil, fmt.Errorf("%w: dictionary %d: no dictionaries", errSegment, id)
	}
	c.mu.RLock()
	dec, ok := c.zd[id]
	c.mu.RUnlock()
	if ok {
		return dec, nil
	}
	// Low memory: a decoder holds buffers per concurrent decode, and the
	// records of a segment are small. The cap limit makes DecodeAll stop
	// at the capacity it is given, the size the segment's header says.
	opts := []zstd.DOption{zstd.WithDecoderLowmem(true), zstd.WithDecodeAllCapLimit(true),
		zstd.WithDecoderMaxMemory(maxSegmentRaw), zstd.WithDecoderConcurrency(0)}
	if id != 0 {
		dict, err := c.get(id)
		if err != nil {
			return nil, err
		}
		opts = append(opts, zstd.WithDecoderDictRaw(uint32(id), dict))
	}
	dec, err := zstd.NewReader(nil, opts...)
	if err != nil {
		return nil, fmt.Errorf("zstd decoder for dictionary %d: %w", id, err)
	}
	c.mu.Lock()
	if len(c.zd) >= maxCachedDicts {
		clear(c.zd)
	}
	c.zd[id] = dec
	c.mu.Unlock()
	return dec, nil
}

// get returns dictionary id.
func (c *dictCache) get(id int64) ([]byte, error) {
	if c == nil {
		return nil, fmt.Errorf("%w: dictionary %d: no dictionaries", errSegment, id)
	}
	c.mu.RLock()
	d, ok := c.m[id]
	c.mu.RUnlock()
	if ok {
		return d, nil
	}
	if c.db == nil { // a cache of given dictionaries (tests)
		return nil, fmt.Errorf("%w: dictionary %d is not stored", errSegment, id)
	}
	if err := c.db.QueryRowContext(context.Background(), sqlDictGet, id).Scan(&d); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("%w: dictionary %d is not stored", errSegment, id)
		}
		return nil, fmt.Errorf("load dictionary %d: %w", id, err)
	}
	c.mu.Lock()
	if len(c.m) >= maxCachedDicts {
		clear(c.m)
	}
	c.m[id] = d
	c.mu.Unlock()
	return d, nil
}

// loadDict reads the latest dictionary for the writer (nil if none).
func (s *Store) loadDict(ctx context.Context) error {
	var d segDict
	err := s.wdb.QueryRowContext(ctx, sqlDictLatest).Scan(&d.id, &d.at, &d.data)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		s.dict = nil
	case err != nil:
		return fmt.Errorf("read the latest dictionary: %w", err)
	default:
		s.dict = &d
	}
	return nil
}

// txDict returns the dictionary t's segments use: the writer's, or a new
// one trained from the log's last events and stored in t when it is due.
func (s *Store) txDict(ctx context.Context, t *txn) (*segDict, error) {
	head := t.head
	// The first dictionaries learn from a young log (a server's first
	// events may be set-up ones): train again each time the log has grown
	// fourfold, then every dictRetrain events.
	due := s.dict == nil && head >= s.dictTrain ||
		s.dict != nil && (head >= 4*s.dict.at || head-s.dict.at >= s.dictRetrain)
	if !due {
		return s.dict, nil
	}
	events, err := readSegments(ctx, t.tx.StmtContext(ctx, s.segFromWStmt), s.dicts, head-s.dictTrain, head, int(s.dictTrain))
	if err != nil {
		return nil, fmt.Errorf("train a dictionary: %w", err)
	}
	data := trainDict(events)
	if len(data) == 0 {
		return s.dict, nil
	}
	res, err := t.tx.ExecContext(ctx, sqlDictInsert, head, data)
	if err != nil {
		return nil, fmt.Errorf("store a dictionary: %w", err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return nil, fmt.Errorf("store a dictionary: %w", err)
	}
	return &segDict{id: id, at: head, data: data}, nil
}

// trainDict builds a dictionary from events: up to dictSamples records of
// each type (the latest), without their hashes, the types in ascending
// order of frequency, cut to the last dictMaxBytes.
func trainDict(events []eventstore.Event) []byte {
	type typeSamples struct {
		name  string
		count int
		recs  [][]byte
	}
	byType := make(map[string]*typeSamples)
	for i := len(events) - 1; i >= 0; i-- {
		e := events[i]
		ts := byType[e.Type]
		if ts == nil {
			ts = &typeSamples{name: e.Type}
			byType[e.Type] = ts
		}
		ts.count++
		if len(ts.recs) < dictSamples {
			ts.recs = append(ts.recs, appendRecordFields(nil, &e, e.OccurredAt.Unix())) // no hashes
		}
	}
	types := make([]*typeSamples, 0, len(byType))
	for _, ts := range byType {
		types = append(types, ts)
	}
	slices.SortFunc(types, func(a, b *typeSamples) int { return cmp.Or(cmp.Compare(a.count, b.count), cmp.Compare(a.name, b.name)) })
	var dict []byte
	for _, ts := range types {
		for i := len(ts.recs) - 1; i >= 0; i-- { // oldest first
			dict = append(dict, ts.recs[i]...)
		}
	}
	if len(dict) > dictMaxBytes {
		dict = dict[len(dict)-dictMaxBytes:]
	}
	return dict
}
