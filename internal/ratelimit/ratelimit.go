// Package ratelimit keeps token buckets by key (a client address, an
// account id) to slow down guessing: each failure takes a token, tokens
// come back at a fixed rate, and a key with no token left is refused until
// one returns. It holds a bounded number of keys. It imports nothing of
// the project.
package ratelimit

import (
	"sync"
	"time"
)

// Limiter is a set of token buckets with one burst and refill interval.
type Limiter struct {
	mu      sync.Mutex
	burst   int64
	every   time.Duration
	maxKeys int
	clock   func() time.Time
	buckets map[string]*bucket
}

// bucket holds the tokens of one key as of at.
type bucket struct {
	tokens int64
	at     time.Time
}

// New returns a limiter whose buckets hold burst tokens and regain one
// every interval; it remembers at most maxKeys keys.
func New(burst int, every time.Duration, maxKeys int, clock func() time.Time) *Limiter {
	if burst < 1 {
		burst = 1
	}
	if maxKeys < 1 {
		maxKeys = 1
	}
	return &Limiter{burst: int64(burst), every: every, maxKeys: maxKeys, clock: clock, buckets: map[string]*bucket{}}
}

// refill brings b up to now and returns when its next token comes.
func (l *Limiter) refill(b *bucket, now time.Time) time.Duration {
	if b.tokens >= l.burst {
		b.at = now
		return 0
	}
	gained := int64(now.Sub(b.at) / l.every)
	if gained > 0 {
		b.tokens = min(l.burst, b.tokens+gained)
		b.at = b.at.Add(time.Duration(gained) * l.every)
		if b.tokens == l.burst {
			b.at = now
		}
	}
	if b.tokens > 0 {
		return 0
	}
	return l.every - now.Sub(b.at)
}

// Allow reports whether key has a token left, without taking it, and
// otherwise how long until one returns.
func (l *Limiter) Allow(key string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		return true, 0
	}
	wait := l.refill(b, l.clock())
	return wait == 0, wait
}

// Take takes one token of key (a failure), if it has one.
func (l *Limiter) Take(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock()
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= l.maxKeys {
			l.evict(now)
		}
		b = &bucket{tokens: l.burst, at: now}
		l.buckets[key] = b
	}
	l.refill(b, now)
	if b.tokens > 0 {
		b.tokens--
	}
}

// evict drops the buckets that have refilled; when none has, it drops
// one key in ten, so that the memory stays bounded under a flood of keys.
func (l *Limiter) evict(now time.Time) {
	for k, b := range l.buckets {
		if l.refill(b, now); b.tokens >= l.burst {
			delete(l.buckets, k)
		}
	}
	n := l.maxKeys / 10
	for k := range l.buckets {
		if len(l.buckets) < l.maxKeys || n <= 0 {
			break
		}
		delete(l.buckets, k)
		n--
	}
}

// Len returns the number of keys held.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
