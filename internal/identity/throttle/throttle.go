package throttle

import (
	"context"
	"net/netip"
	"sync"
	"time"
)

// Throttle counts failed attempts per key (an account, a client address)
// and says how long the next attempt must wait. The process holds one per
// kind of key (passwords per account and per client, second-factor codes
// per account), so a reload keeps the counts. The memory implementation
// counts per instance; an implementation on Redis or the store counts for
// the whole cluster. An error means the counts could not be read or
// written: the caller answers 503 rather than guess.
type Throttle interface {
	// Wait returns how long key must wait before its next attempt, and
	// whether that is because it is locked.
	Wait(ctx context.Context, key string, now time.Time) (wait time.Duration, locked bool, err error)
	// Fail counts a failure of key and reports whether it just locked key.
	Fail(ctx context.Context, key string, now time.Time) (locked bool, err error)
	// Reset forgets key's failures, after a success.
	Reset(ctx context.Context, key string) error
	// Sweep forgets what has aged out; the process calls it every few
	// seconds.
	Sweep(now time.Time)
}

// Limits shape the brute-force protection of one kind of key: the first
// Free failures cost nothing, each further one doubles the wait before the
// next attempt (from Base up to Max), and LockAfter failures lock the key
// for LockFor. Failures are forgotten after LockFor without another.
type Limits struct {
	Free      int
	Base, Max time.Duration
	LockAfter int
	LockFor   time.Duration
}

// Brute-force limits (issue 3 point 5). An account sees at most ~10
// password guesses or second-factor codes per 15 minutes (a six-digit code
// with ±1 step gives 3 in a million per guess); one address a few more,
// for offices behind one NAT.
var (
	Accounts = Limits{Free: 3, Base: time.Second, Max: 30 * time.Second, LockAfter: 10, LockFor: 15 * time.Minute}
	Clients  = Limits{Free: 10, Base: time.Second, Max: 30 * time.Second, LockAfter: 50, LockFor: 15 * time.Minute}
)

// maxThrottleKeys bounds the memory the counters take.
const maxThrottleKeys = 100000

type failures struct {
	n           int
	last        time.Time
	lockedUntil time.Time
}

// memory is the memory Throttle: failures per key, per instance.
type memory struct {
	lim     Limits
	mu      sync.Mutex
	entries map[string]*failures
}

// NewMemory is a Throttle under l that counts in this instance's memory.
func NewMemory(l Limits) Throttle {
	return &memory{lim: l, entries: make(map[string]*failures)}
}

// Wait implements Throttle.
func (t *memory) Wait(_ context.Context, key string, now time.Time) (time.Duration, bool, error) {
	d, locked := t.wait(key, now)
	return d, locked, nil
}

func (t *memory) wait(key string, now time.Time) (time.Duration, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.entries[key]
	if f == nil {
		return 0, false
	}
	if now.Before(f.lockedUntil) {
		return f.lockedUntil.Sub(now), true
	}
	if now.Sub(f.last) > t.lim.LockFor {
		delete(t.entries, key)
		return 0, false
	}
	if f.n < t.lim.Free {
		return 0, false
	}
	if d := t.delay(f.n); now.Before(f.last.Add(d)) {
		return f.last.Add(d).Sub(now), false
	}
	return 0, false
}

func (t *memory) delay(n int) time.Duration {
	d := t.lim.Base
	for i := t.lim.Free; i < n && d < t.lim.Max; i++ {
		d *= 2
	}
	return min(d, t.lim.Max)
}

// Fail implements Throttle.
func (t *memory) Fail(_ context.Context, key string, now time.Time) (bool, error) {
	return t.fail(key, now), nil
}

func (t *memory) fail(key string, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.entries[key]
	if f == nil {
		if len(t.entries) >= maxThrottleKeys {
			t.evictOldest()
		}
		f = &failures{}
		t.entries[key] = f
	}
	f.n++
	f.last = now
	if f.n >= t.lim.LockAfter {
		f.n = 0
		f.lockedUntil = now.Add(t.lim.LockFor)
		return true
	}
	return false
}

// Reset implements Throttle.
func (t *memory) Reset(_ context.Context, key string) error {
	t.mu.Lock()
	delete(t.entries, key)
	t.mu.Unlock()
	return nil
}

// evictOldest makes room when the table is full: it drops a batch of
// unlocked entries (map order is random, so no attacker picks which), to
// keep each insertion cheap.
func (t *memory) evictOldest() {
	n := max(1, len(t.entries)/100)
	now := time.Now()
	for k, f := range t.entries {
		if n == 0 {
			return
		}
		if !now.Before(f.lockedUntil) {
			delete(t.entries, k)
			n--
		}
	}
}

// Sweep implements Throttle.
func (t *memory) Sweep(now time.Time) {
	t.mu.Lock()
	for k, f := range t.entries {
		if now.After(f.lockedUntil) && now.Sub(f.last) > t.lim.LockFor {
			delete(t.entries, k)
		}
	}
	t.mu.Unlock()
}

// ClientKey is the throttling key of a client address: the address for
// IPv4, its /64 for IPv6 (one host usually holds a whole /64).
func ClientKey(ip netip.Addr) string {
	if !ip.IsValid() {
		return "unknown"
	}
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}
