package kurrent

import (
	"context"
	"fmt"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/payledger/payledger/eventstore"
)

// The v4 client finds its node once per connection: when that fails (the
// server is down), its connection goroutine ends, every later call
// answers ErrorCodeConnectionClosed for good, and a call that was handing
// its request over at that moment waits forever, whatever its context;
// closing the client then would make that waiting call panic. So the
// store calls the client only through do: a call returns to its caller
// when its context ends even if the client never answers, a client that
// answers "closed" is replaced by a new one for the next call (so the
// store comes back with the server), and a client is closed only once no
// call is in it. A call stuck in a dead client is left there: at most
// the calls in flight when the server went away.

// conn is one client of the server and the calls in it; guarded by
// Store.mu.
type conn struct {
	c        *esdb.Client
	inflight int
	retired  bool // takes no new calls; closed when inflight drops to 0
}

// do runs fn on the current client and returns its error, or ctx's when
// ctx ends first.
func (s *Store) do(ctx context.Context, fn func(*esdb.Client) error) error {
	k, err := s.acquire()
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() {
		err := fn(k.c)
		s.release(k, err)
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// acquire returns the current client, making one when the last was
// retired, and counts the call in it.
func (s *Store) acquire() (*conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, eventstore.ErrClosed
	}
	if s.cur == nil {
		c, err := esdb.NewClient(s.cfg)
		if err != nil {
			return nil, fmt.Errorf("kurrent store: a new client: %w", err)
		}
		s.cur = &conn{c: c}
	}
	s.cur.inflight++
	return s.cur, nil
}

// release ends a call in k; a client that answered "closed" is retired.
func (s *Store) release(k *conn, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k.inflight--
	if codeOf(err) == esdb.ErrorCodeConnectionClosed && s.cur == k {
		s.cur, k.retired = nil, true
	}
	if k.retired && k.inflight == 0 {
		_ = k.c.Close()
	}
}
