// Package sqlitedsn builds the connection strings payledger opens its SQLite
// files with through modernc.org/sqlite: the path as a file: URI, escaped so
// that any file name opens that very file, followed by the settings every
// new connection applies (pragmas, and the driver's _txlock). One builder
// keeps the escaping and the spelling of each setting in one place instead
// of one copy per store.
//
// Every store depends on it, so it must never import a payledger package.
package sqlitedsn

import (
	"strconv"
	"strings"
	"time"
)

// DSN is a connection string being built: a file URI and its settings, in
// the order they were added (the driver applies pragmas in that order). The
// zero DSN is not usable; start from File. A DSN is a value: adding a
// setting returns a new one and leaves the receiver as it was, so a common
// prefix can be shared by a writer's and a reader's strings.
type DSN struct {
	s       string
	hasArgs bool
}

// uriEscaper escapes what a SQLite file URI reserves in a path: '%' starts
// an escape, '?' the query and '#' the fragment; anything else (spaces
// included) SQLite takes literally.
var uriEscaper = strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23")

// File starts the connection string of the database file at path.
func File(path string) DSN {
	return DSN{s: "file:" + uriEscaper.Replace(path)}
}

// add appends one key=value query argument.
func (d DSN) add(key, value string) DSN {
	sep := "&"
	if !d.hasArgs {
		sep = "?"
	}
	return DSN{s: d.s + sep + key + "=" + value, hasArgs: true}
}

// Pragma adds PRAGMA name(value), run on every new connection.
func (d DSN) Pragma(name, value string) DSN {
	return d.add("_pragma", name+"("+value+")")
}

// BusyTimeout makes a connection wait up to t for another connection's lock
// instead of failing at once (busy_timeout, in milliseconds).
func (d DSN) BusyTimeout(t time.Duration) DSN {
	return d.Pragma("busy_timeout", strconv.FormatInt(t.Milliseconds(), 10))
}

// JournalMode sets journal_mode, for example "WAL".
func (d DSN) JournalMode(mode string) DSN { return d.Pragma("journal_mode", mode) }

// Synchronous sets the synchronous level: "FULL", "NORMAL" or "OFF".
func (d DSN) Synchronous(level string) DSN { return d.Pragma("synchronous", level) }

// TxLockImmediate makes BEGIN take the write lock at once (the driver's
// _txlock=immediate), so two writers never deadlock upgrading a read lock.
func (d DSN) TxLockImmediate() DSN { return d.add("_txlock", "immediate") }

// QueryOnly forbids the connection any write (query_only(1)).
func (d DSN) QueryOnly() DSN { return d.Pragma("query_only", "1") }

// MmapSize reads up to bytes of the database file through a memory map
// (mmap_size).
func (d DSN) MmapSize(bytes int64) DSN {
	return d.Pragma("mmap_size", strconv.FormatInt(bytes, 10))
}

// CacheSize sets cache_size: pages when positive, KiB when negative.
func (d DSN) CacheSize(n int) DSN { return d.Pragma("cache_size", strconv.Itoa(n)) }

// WALAutocheckpoint sets wal_autocheckpoint, in pages.
func (d DSN) WALAutocheckpoint(pages int) DSN {
	return d.Pragma("wal_autocheckpoint", strconv.Itoa(pages))
}

// TempStore sets temp_store: "DEFAULT", "FILE" or "MEMORY".
func (d DSN) TempStore(where string) DSN { return d.Pragma("temp_store", where) }

// PageSize sets page_size, which only a new database file takes.
func (d DSN) PageSize(bytes int) DSN { return d.Pragma("page_size", strconv.Itoa(bytes)) }

// String is the connection string, for sql.Open("sqlite", ...).
func (d DSN) String() string { return d.s }
