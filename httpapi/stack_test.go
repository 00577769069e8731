package httpapi_test

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/eventstore/sqlite"
	"github.com/payledger/payledger/httpapi"
	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/personaldata"
	"github.com/payledger/payledger/ledger/staffkeys"
	"github.com/payledger/payledger/projections"
)

// clock is the injected time: fixed at start, then 1 ms later at every
// read, and moved on explicitly for TOTP steps.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(time.Millisecond)
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func (c *clock) Peek() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// lockedRand is a deterministic, concurrency-safe random source.
type lockedRand struct {
	mu sync.Mutex
	r  *rand.ChaCha8
}

func (l *lockedRand) Read(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.Read(p)
}

type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// stack is a running server, its staff key store and its log.
type stack struct {
	URL   string
	keys  *staffkeys.Store
	store *sqlite.Store
	api   *httpapi.Server
	dir   string
}

// head is the log's head position.
func (s *stack) head(t *testing.T) int64 {
	t.Helper()
	h, err := s.store.Head(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// key creates a staff key of role and returns its token.
func (s *stack) key(t *testing.T, role staffkeys.Role) string {
	t.Helper()
	tok, _, err := s.keys.Create(context.Background(), role, "test "+string(role))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// newStack wires the real store, read models, write path and HTTP API the
// way cmd/payledger's Main.Open does, with an injected clock and entropy.
func newStack(t *testing.T, clk *clock) *stack {
	t.Helper()
	return newStackWith(t, clk, true, 0)
}

// newStackWith is newStack with the projection running live or not, and
// the write path's CloseWait (0: the default).
func newStackWith(t *testing.T, clk *clock, live bool, closeWait time.Duration) *stack {
	t.Helper()
	dir := t.TempDir()
	rnd := &lockedRand{r: rand.NewChaCha8([32]byte{'p', 'a', 'y', 'l', 'e', 'd', 'g', 'e', 'r'})}
	loc, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		t.Fatal(err)
	}
	master, err := ledger.LoadOrCreateKey(filepath.Join(dir, "server.key"), rnd)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := ledger.NewKeys(master, rnd)
	if err != nil {
		t.Fatal(err)
	}
	staff, err := staffkeys.Open(filepath.Join(dir, "staffkeys.db"), clk.Now, rnd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { staff.Close() })
	pdMaster := make([]byte, personaldata.KeySize)
	if _, err := rnd.Read(pdMaster); err != nil {
		t.Fatal(err)
	}
	pd, err := personaldata.Open(filepath.Join(dir, "personaldata.db"), pdMaster, clk.Now, rnd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pd.Close() })
	store, err := sqlite.Open(filepath.Join(dir, "events.db"), sqlite.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	rm, err := projections.Open(filepath.Join(dir, "readmodels.db"))
	if err != nil {
		store.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := rm.CatchUp(ctx, store); err != nil {
		t.Fatal(err)
	}
	svc, err := ledger.New(ledger.Config{Store: store, Balances: rm, Policy: domain.DefaultPolicy(loc), Keys: keys,
		Clock: clk.Now, NewID: ledger.NewULIDSource(clk.Now, rnd), Rand: rnd, CloseWait: closeWait,
		SoleWriter: true, StaffKeys: staff, PersonalData: pd})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if live {
			_ = rm.Run(ctx, store)
		}
	}()
	api := httpapi.New(svc, store, rm, slog.New(slog.NewTextHandler(testLogWriter{t}, nil)))
	srv := httptest.NewServer(api)
	t.Cleanup(func() {
		srv.Close()
		cancel()
		<-done
		if err := rm.Close(); err != nil {
			t.Error(err)
		}
		if err := store.Close(); err != nil {
			t.Error(err)
		}
	})
	return &stack{URL: srv.URL, keys: staff, store: store, api: api, dir: dir}
}
