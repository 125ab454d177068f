// Package ratelimit counts requests in sliding windows and keeps bans, for
// the throttle and rate_based_ban actions of security policies.
//
// One Counter interface has two implementations: Memory (the default, one
// instance) and Redis (counts and bans shared by every instance). The server
// creates the Counter once and hands it to each policy engine it builds, so
// counts and bans survive a configuration reload.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"
)

// Limit says how requests under one key are counted and when the key is
// banned. Keys are opaque; the policy engine builds them (hashed, bounded).
type Limit struct {
	// Count requests are allowed per Interval; the next one exceeds.
	Count    int64
	Interval time.Duration
	// BanCount > 0 enables bans: once more than BanCount requests arrive
	// within BanInterval, the key is banned for BanDuration.
	BanCount    int64
	BanInterval time.Duration
	BanDuration time.Duration
}

// Result is the outcome of one Hit.
type Result struct {
	// Count is the number of requests in the sliding window, this one
	// included (an estimate weighted across two fixed windows).
	Count int64
	// Exceeded is true when Count is above the limit.
	Exceeded bool
	// Banned is true when the key is banned, by this request or before it.
	// A banned request is not counted.
	Banned bool
	// BanLeft is how long the ban still lasts.
	BanLeft time.Duration
}

// Counter counts requests and keeps bans. Implementations are safe for
// concurrent use.
type Counter interface {
	// Hit records one request under key and reports the outcome.
	Hit(ctx context.Context, key string, lim Limit) (Result, error)
	// Close releases the counter's resources.
	Close() error
}

// ErrUnavailable is returned (wrapped) when a shared counter cannot be
// reached; the caller applies counters_fail.
var ErrUnavailable = errors.New("rate-limit counters unavailable")

// Open returns the counter that the `counters:` setting names: in memory
// for "", Redis for a redis://, rediss:// or unix:// URL.
func Open(spec string) (Counter, error) {
	if spec == "" {
		return NewMemory(0), nil
	}
	u, err := url.Parse(spec)
	if err != nil {
		return nil, errors.New("parse counters URL: invalid URL") // never echo: it may hold a password
	}
	switch u.Scheme {
	case "redis", "rediss", "unix":
		return NewRedis(spec)
	}
	return nil, fmt.Errorf("counters: unsupported scheme %q: use redis://, rediss:// or unix://", u.Scheme)
}

// slide computes the sliding-window estimate from the previous and current
// fixed windows: prev weighted by the part of it still inside the window.
func slide(prev, cur int64, elapsed, interval time.Duration) int64 {
	if elapsed >= interval {
		return cur
	}
	return cur + int64(float64(prev)*float64(interval-elapsed)/float64(interval))
}
