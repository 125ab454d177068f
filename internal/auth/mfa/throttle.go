package mfa

import (
	"sync"
	"time"
)

// Limits on wrong codes per account, as for passwords (issue 3 point 5):
// three free, then a doubling wait from one second up to thirty, and a
// lock of fifteen minutes after ten. A six-digit code with ±1 step gives an
// attacker 3 in a million per guess, about 40 guesses an hour here.
const (
	freeFailures = 3
	baseDelay    = time.Second
	maxDelay     = 30 * time.Second
	lockAfter    = 10
	lockFor      = 15 * time.Minute
	maxKeys      = 100000
)

type failures struct {
	n           int
	last        time.Time
	lockedUntil time.Time
}

// throttle counts wrong codes per account, in memory (per instance).
type throttle struct {
	mu      sync.Mutex
	entries map[string]*failures
}

func newThrottle() *throttle { return &throttle{entries: map[string]*failures{}} }

// wait returns how long key must wait before its next attempt, and whether
// it is locked.
func (t *throttle) wait(key string, now time.Time) (time.Duration, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.entries[key]
	if f == nil {
		return 0, false
	}
	if now.Before(f.lockedUntil) {
		return f.lockedUntil.Sub(now), true
	}
	if now.Sub(f.last) > lockFor {
		delete(t.entries, key)
		return 0, false
	}
	if f.n < freeFailures {
		return 0, false
	}
	d := baseDelay
	for i := freeFailures; i < f.n && d < maxDelay; i++ {
		d *= 2
	}
	d = min(d, maxDelay)
	if now.Before(f.last.Add(d)) {
		return f.last.Add(d).Sub(now), false
	}
	return 0, false
}

// fail counts a failure and reports whether it just locked key.
func (t *throttle) fail(key string, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.entries[key]
	if f == nil {
		if len(t.entries) >= maxKeys {
			for k, e := range t.entries {
				if !now.Before(e.lockedUntil) {
					delete(t.entries, k)
					break
				}
			}
		}
		f = &failures{}
		t.entries[key] = f
	}
	f.n++
	f.last = now
	if f.n >= lockAfter {
		f.n = 0
		f.lockedUntil = now.Add(lockFor)
		return true
	}
	return false
}

func (t *throttle) reset(key string) {
	t.mu.Lock()
	delete(t.entries, key)
	t.mu.Unlock()
}
