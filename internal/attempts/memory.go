package attempts

import (
	"context"
	"sync"
	"time"
)

// DefaultMaxKeys bounds the keys a Memory counter holds (about 300 bytes
// each, so some 30 MiB at most).
const DefaultMaxKeys = 100_000

// Memory is a Counter held in this process: right for one instance that
// needs nothing to survive it (tests, tools), wrong for a cluster, where
// each instance would give an attacker a budget of its own. The number of
// keys is bounded: when full, keys that have run out go first, then a
// random batch of unlocked ones.
type Memory struct {
	maxKeys int
	now     func() time.Time

	mu sync.Mutex
	m  map[string]*memEntry
}

type memEntry struct {
	n           int64
	last        time.Time
	expires     time.Time // when n is forgotten
	lockedUntil time.Time
}

// NewMemory returns a Memory counter holding at most maxKeys keys (0 means
// DefaultMaxKeys).
func NewMemory(maxKeys int) *Memory {
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	return &Memory{maxKeys: maxKeys, now: time.Now, m: map[string]*memEntry{}}
}

// Fail implements Counter.
func (m *Memory) Fail(_ context.Context, key string, window time.Duration) (State, error) {
	if err := checkArgs("count failure", key, window); err != nil {
		return State{}, err
	}
	key = storedKey(key)
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.m[key]
	if e == nil {
		if len(m.m) >= m.maxKeys {
			m.evict(now)
		}
		e = &memEntry{}
		m.m[key] = e
	}
	if !now.Before(e.expires) {
		e.n = 0
	}
	e.n++
	e.last = now
	e.expires = later(e.expires, now.Add(window))
	return e.state(now), nil
}

// Get implements Counter.
func (m *Memory) Get(_ context.Context, key string) (State, error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if e := m.m[storedKey(key)]; e != nil {
		return e.state(now), nil
	}
	return State{}, nil
}

// Reset implements Counter.
func (m *Memory) Reset(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e := m.m[storedKey(key)]; e != nil {
		e.n, e.last, e.expires = 0, time.Time{}, time.Time{}
	}
	return nil
}

// Lock implements Counter.
func (m *Memory) Lock(_ context.Context, key string, d time.Duration) error {
	if err := checkArgs("lock", key, d); err != nil {
		return err
	}
	key = storedKey(key)
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.m[key]
	if e == nil {
		if len(m.m) >= m.maxKeys {
			m.evict(now)
		}
		e = &memEntry{}
		m.m[key] = e
	}
	e.lockedUntil = later(e.lockedUntil, now.Add(d))
	return nil
}

// Unlock implements Counter.
func (m *Memory) Unlock(_ context.Context, key string) error {
	m.mu.Lock()
	delete(m.m, storedKey(key))
	m.mu.Unlock()
	return nil
}

// Sweep implements Counter.
func (m *Memory) Sweep(context.Context) error {
	now := m.now()
	m.mu.Lock()
	for k, e := range m.m {
		if e.done(now) {
			delete(m.m, k)
		}
	}
	m.mu.Unlock()
	return nil
}

// evict makes room; the caller holds m.mu. It drops what has run out,
// else a batch of unlocked keys (map order is random, so no attacker picks
// which), and only then locked ones: a flood of new keys cannot lift a
// lock cheaply.
func (m *Memory) evict(now time.Time) {
	batch := max(1, len(m.m)/100)
	for _, locked := range []bool{false, true} {
		for k, e := range m.m {
			if batch == 0 {
				return
			}
			if e.done(now) || now.Before(e.lockedUntil) == locked {
				delete(m.m, k)
				batch--
			}
		}
	}
}

func (e *memEntry) done(now time.Time) bool {
	return !now.Before(e.expires) && !now.Before(e.lockedUntil)
}

func (e *memEntry) state(now time.Time) State {
	var s State
	if now.Before(e.expires) {
		s.Count, s.SinceLast = e.n, max(0, now.Sub(e.last))
	}
	if now.Before(e.lockedUntil) {
		s.Locked = e.lockedUntil.Sub(now)
	}
	return s
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
