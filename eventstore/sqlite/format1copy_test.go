package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/payledger/payledger/eventstore"
)

// rewriteFormat1 writes at dst (which must not exist) the log at src (closed,
// or at least not written during the copy) as the build before format 2
// would have stored the same events: schema 3, no dictionaries, every event
// in format-1 segments cut by that build's bounds, the same indexes keyed
// by stream names and id texts. It returns how many events it copied.
func rewriteFormat1(t testing.TB, src, dst string) int64 {
	t.Helper()
	ctx := context.Background()
	if _, err := os.Stat(dst); err == nil {
		t.Fatalf("rewrite format 1: %s exists", dst)
	}
	s, err := Open(dst, DefaultOptions()) // the schema and the page size of a new log
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := OpenReader(src)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	db, err := sql.Open("sqlite", "file:"+dst+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, schema4Indexes); err != nil {
		t.Fatal(err)
	}
	ins, err := tx.PrepareContext(ctx, sqlInsertSegment)
	if err != nil {
		t.Fatal(err)
	}
	// The id index as it is in src (up to its indexed_upto; Open indexes
	// the rest from the segments, as it would after a crash), by id text.
	var upto int64
	if err := r.db.QueryRowContext(ctx, sqlGetUpto).Scan(&upto); err != nil {
		t.Fatal(err)
	}
	insID, err := tx.PrepareContext(ctx, `INSERT INTO id_index (id, position) VALUES (?, ?)`)
	if err != nil {
		t.Fatal(err)
	}
	var seg []eventstore.Event
	var recsLen int
	flush := func() {
		if len(seg) == 0 {
			return
		}
		if _, err := ins.ExecContext(ctx, seg[0].Position, seg[len(seg)-1].Position, segment1Bytes(seg)); err != nil {
			t.Fatal(err)
		}
		seg, recsLen = seg[:0], 0
	}
	var n int64
	for after := int64(0); ; {
		batch, err := r.ReadAll(ctx, after, eventstore.MaxReadBatch)
		if err != nil {
			t.Fatal(err)
		}
		if len(batch) == 0 {
			break
		}
		for i := range batch {
			e := &batch[i]
			if !segment1Fits(seg, recsLen, e) {
				flush()
			}
			seg = append(seg, *e)
			recsLen += len(appendRecord1(nil, e))
			if e.Position <= upto {
				if _, err := insID.ExecContext(ctx, e.ID, e.Position); err != nil {
					t.Fatal(err)
				}
			}
		}
		n += int64(len(batch))
		after = batch[len(batch)-1].Position
	}
	flush()
	// The stream index as it is in src, by stream name.
	if _, err := tx.ExecContext(ctx, `ATTACH DATABASE ? AS src`, src); err != nil {
		t.Fatal(err)
	}
	var oldSrc int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM pragma_table_info('stream_index', 'src') WHERE name = 'stream' AND type = 'TEXT'`).
		Scan(&oldSrc); err != nil {
		t.Fatal(err)
	}
	copyStreams := `INSERT INTO main.stream_index (stream, version, position)
		SELECT st.name, i.version, i.position FROM src.stream_index i JOIN src.streams st ON st.id = i.stream ORDER BY st.name, i.version`
	if oldSrc > 0 {
		copyStreams = `INSERT INTO main.stream_index (stream, version, position) SELECT stream, version, position FROM src.stream_index ORDER BY stream, version`
	}
	for _, q := range []string{
		copyStreams,
		`UPDATE main.meta SET value = (SELECT value FROM src.meta WHERE key = 'indexed_upto') WHERE key = 'indexed_upto'`,
		`UPDATE main.meta SET value = '3' WHERE key = 'schema_version'`,
		`DROP TRIGGER main.dictionaries_no_delete`,
		`DROP TRIGGER main.dictionaries_no_update`,
		`DROP TABLE main.dictionaries`,
	} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `DETACH DATABASE src`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `VACUUM`); err != nil {
		t.Fatal(err)
	}
	return n
}

// logSizes is what a log file stores: its events, its segments' bytes and
// the file's bytes once vacuumed.
type logSizes struct {
	events, segments, segmentBytes, fileBytes int64
	// tables is each table's and index's pages in the vacuumed copy, in
	// bytes an event (SQLite's dbstat).
	tables string
}

func (z logSizes) String() string {
	return fmt.Sprintf("%d events in %d segments: %.1f segment bytes and %.1f file bytes an event (pages an event: %s)",
		z.events, z.segments, float64(z.segmentBytes)/float64(z.events), float64(z.fileBytes)/float64(z.events), z.tables)
}

// measureLog measures the log at path: its segments as stored, and the
// size of a vacuumed copy (written to copyPath, which must not exist), so
// that free pages left by the writer do not count.
func measureLog(t testing.TB, path, copyPath string) logSizes {
	t.Helper()
	ctx := context.Background()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var z logSizes
	if err := db.QueryRowContext(ctx, `SELECT COALESCE(MAX(last_position), 0), COUNT(*), COALESCE(SUM(length(events)), 0) FROM segments`).
		Scan(&z.events, &z.segments, &z.segmentBytes); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `VACUUM INTO ?`, copyPath); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(copyPath)
	if err != nil {
		t.Fatal(err)
	}
	z.fileBytes = fi.Size()
	cp, err := sql.Open("sqlite", "file:"+copyPath+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Close()
	rows, err := cp.QueryContext(ctx, `SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY SUM(pgsize) DESC`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var tables []string
	for rows.Next() {
		var name string
		var size int64
		if err := rows.Scan(&name, &size); err != nil {
			t.Fatal(err)
		}
		if 100*size >= z.fileBytes { // the tables of 1% of the file and up
			tables = append(tables, fmt.Sprintf("%s %.1f", name, float64(size)/float64(max(z.events, 1))))
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	z.tables = strings.Join(tables, ", ")
	return z
}

// schema4Indexes replaces the indexes of a new (empty) log with those of
// schemas 3 and 4: keyed by the stream's name and the id's text, no streams
// table.
var schema4Indexes = `DROP TRIGGER stream_index_no_delete; DROP TRIGGER stream_index_no_update;
DROP TRIGGER id_index_no_delete; DROP TRIGGER id_index_no_update;
DROP TRIGGER streams_no_delete; DROP TRIGGER streams_no_update;
DROP TABLE stream_index; DROP TABLE id_index; DROP TABLE streams;
CREATE TABLE stream_index (
	stream   TEXT    NOT NULL,
	version  INTEGER NOT NULL,
	position INTEGER NOT NULL,
	PRIMARY KEY (stream, version)
) WITHOUT ROWID;
CREATE TABLE id_index (
	id       TEXT    PRIMARY KEY,
	position INTEGER NOT NULL
) WITHOUT ROWID;
` + retentionTriggers("stream_index") + retentionTriggers("id_index")
