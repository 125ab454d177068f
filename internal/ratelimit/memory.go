package ratelimit

import (
	"context"
	"hash/maphash"
	"sync"
	"time"
)

// DefaultMaxKeys bounds the keys a Memory counter holds: about 200 bytes
// each, so some 50 MiB at most.
const DefaultMaxKeys = 1 << 18

const shards = 64

// evictSample is how many entries a full shard examines to make room.
const evictSample = 16

// Memory is a Counter held in this process: sharded maps with a bounded
// number of keys. When a shard is full, a small sample of its entries is
// examined and stale ones (or, failing that, the one idle longest) are
// dropped, so memory stays bounded under a flood of distinct keys; a live
// ban is dropped last.
type Memory struct {
	seed   maphash.Seed
	shards [shards]memShard
	perCap int
	now    func() time.Time
}

type memShard struct {
	mu sync.Mutex
	m  map[string]*memEntry
}

type window struct {
	start     int64 // index of the current fixed window (time / interval)
	cur, prev int64
	interval  time.Duration
}

type memEntry struct {
	rate, ban   window
	bannedUntil time.Time
	lastSeen    time.Time
}

// NewMemory returns a Memory counter holding at most maxKeys keys (0 means
// DefaultMaxKeys).
func NewMemory(maxKeys int) *Memory {
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	m := &Memory{seed: maphash.MakeSeed(), perCap: max(1, maxKeys/shards), now: time.Now}
	for i := range m.shards {
		m.shards[i].m = map[string]*memEntry{}
	}
	return m
}

// Hit implements Counter.
func (m *Memory) Hit(_ context.Context, key string, lim Limit) (Result, error) {
	now := m.now()
	s := &m.shards[maphash.String(m.seed, key)%shards]
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.m[key]
	if e == nil {
		if len(s.m) >= m.perCap {
			s.evict(now)
		}
		e = &memEntry{}
		s.m[key] = e
	}
	e.lastSeen = now
	if now.Before(e.bannedUntil) {
		return Result{Banned: true, BanLeft: e.bannedUntil.Sub(now), Exceeded: true}, nil
	}
	n := e.rate.hit(now, lim.Interval)
	res := Result{Count: n, Exceeded: n > lim.Count}
	if lim.BanCount > 0 {
		bn := n
		if lim.BanInterval > 0 && lim.BanInterval != lim.Interval {
			bn = e.ban.hit(now, lim.BanInterval)
		}
		if bn > lim.BanCount {
			// The ban starts the key afresh: when it ends, the client
			// gets a full allowance again.
			e.bannedUntil = now.Add(lim.BanDuration)
			e.rate, e.ban = window{}, window{}
			res.Banned, res.BanLeft, res.Exceeded = true, lim.BanDuration, true
		}
	}
	return res, nil
}

// hit counts one request at now and returns the sliding estimate.
func (w *window) hit(now time.Time, interval time.Duration) int64 {
	if interval <= 0 {
		interval = time.Second
	}
	idx := now.UnixNano() / int64(interval)
	switch {
	case w.interval != interval || idx > w.start+1 || idx < w.start:
		*w = window{start: idx, interval: interval}
	case idx == w.start+1:
		w.prev, w.cur, w.start = w.cur, 0, idx
	}
	w.cur++
	elapsed := time.Duration(now.UnixNano() - idx*int64(interval))
	return slide(w.prev, w.cur, elapsed, interval)
}

// stale reports whether e no longer affects any decision.
func (e *memEntry) stale(now time.Time) bool {
	if now.Before(e.bannedUntil) {
		return false
	}
	iv := max(e.rate.interval, e.ban.interval)
	return now.Sub(e.lastSeen) > 2*iv
}

// evict makes room in a full shard; the caller holds s.mu.
func (s *memShard) evict(now time.Time) {
	var victim string
	var victimEntry *memEntry
	n := 0
	for k, e := range s.m { // map order is random: a cheap sample
		if e.stale(now) {
			delete(s.m, k)
			return
		}
		banned := now.Before(e.bannedUntil)
		if victimEntry == nil || (now.Before(victimEntry.bannedUntil) && !banned) ||
			(now.Before(victimEntry.bannedUntil) == banned && e.lastSeen.Before(victimEntry.lastSeen)) {
			victim, victimEntry = k, e
		}
		if n++; n >= evictSample {
			break
		}
	}
	if victimEntry != nil {
		delete(s.m, victim)
	}
}

// Len returns the number of keys held.
func (m *Memory) Len() int {
	n := 0
	for i := range m.shards {
		m.shards[i].mu.Lock()
		n += len(m.shards[i].m)
		m.shards[i].mu.Unlock()
	}
	return n
}

// Close implements Counter.
func (m *Memory) Close() error { return nil }
