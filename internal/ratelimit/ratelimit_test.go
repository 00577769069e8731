package ratelimit

import (
	"fmt"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestBucketEmptiesAndRefills(t *testing.T) {
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	l := New(3, 10*time.Second, 100, c.now)
	for i := 0; i < 3; i++ {
		if ok, _ := l.Allow("a"); !ok {
			t.Fatalf("failure %d refused before the burst was spent", i)
		}
		l.Take("a")
	}
	ok, wait := l.Allow("a")
	if ok || wait != 10*time.Second {
		t.Fatalf("after 3 failures: allow=%v wait=%v, want refused for 10s", ok, wait)
	}
	if ok, _ := l.Allow("b"); !ok {
		t.Fatal("another key is refused")
	}
	c.t = c.t.Add(4 * time.Second)
	if ok, wait := l.Allow("a"); ok || wait != 6*time.Second {
		t.Fatalf("4s later: allow=%v wait=%v, want refused for 6s", ok, wait)
	}
	c.t = c.t.Add(6 * time.Second)
	if ok, _ := l.Allow("a"); !ok {
		t.Fatal("a token did not come back after 10s")
	}
	l.Take("a")
	if ok, _ := l.Allow("a"); ok {
		t.Fatal("the returned token was not taken")
	}
	c.t = c.t.Add(time.Hour)
	for i := 0; i < 3; i++ {
		l.Take("a")
	}
	if ok, _ := l.Allow("a"); ok {
		t.Fatal("refill went past the burst")
	}
}

func TestKeysAreBounded(t *testing.T) {
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	l := New(2, time.Minute, 50, c.now)
	for i := 0; i < 1000; i++ {
		l.Take(fmt.Sprint("k", i))
		if n := l.Len(); n > 50 {
			t.Fatalf("%d keys held, bound 50", n)
		}
	}
}
