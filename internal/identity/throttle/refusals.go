package throttle

import (
	"sync"
	"time"
)

// Bounds of the refusals a Service remembers.
const (
	// maxRefusals bounds the keys remembered (about 100 bytes each).
	maxRefusals = 10_000
	// maxRefusalAge bounds how long a refusal is trusted without asking
	// the counter again: another instance may have seen a success reset
	// the count meanwhile.
	maxRefusalAge = time.Minute
)

// refusals remembers, per key, until when a budget refuses it. A refused
// key's count only grows until its window has passed, so the refusal
// holds at least that long, and a flood from a refused client costs this
// instance a map lookup rather than a round trip to Redis or the database.
type refusals struct {
	mu    sync.Mutex
	until map[string]refusal
}

// refusal is until when a key is refused, and until when this instance
// trusts that without asking the counter again (at most maxRefusalAge).
type refusal struct{ until, trust time.Time }

// get returns how much longer key is refused; 0 when nothing is known or
// the refusal is no longer trusted.
func (r *refusals) get(key string, now time.Time) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	f, ok := r.until[key]
	if !ok {
		return 0
	}
	if !now.Before(f.trust) {
		delete(r.until, key)
		return 0
	}
	return f.until.Sub(now)
}

// set remembers that key is refused until then.
func (r *refusals) set(key string, until time.Time) {
	now := time.Now()
	f := refusal{until: until, trust: until}
	if limit := now.Add(maxRefusalAge); f.trust.After(limit) {
		f.trust = limit
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.until[key]; !ok && len(r.until) >= maxRefusals {
		r.evict(now)
	}
	r.until[key] = f
}

// drop forgets key.
func (r *refusals) drop(key string) {
	r.mu.Lock()
	delete(r.until, key)
	r.mu.Unlock()
}

// sweep forgets what has run out.
func (r *refusals) sweep(now time.Time) {
	r.mu.Lock()
	for k, f := range r.until {
		if !now.Before(f.trust) {
			delete(r.until, k)
		}
	}
	r.mu.Unlock()
}

// evict makes room; the caller holds r.mu. It drops what has run out, else
// a batch of keys (map order is random, so no client picks which):
// forgetting a refusal costs only a round trip to the counter.
func (r *refusals) evict(now time.Time) {
	n := len(r.until)
	for k, f := range r.until {
		if !now.Before(f.trust) {
			delete(r.until, k)
		}
	}
	batch := max(1, n/100) - (n - len(r.until))
	for k := range r.until {
		if batch <= 0 {
			return
		}
		delete(r.until, k)
		batch--
	}
}
