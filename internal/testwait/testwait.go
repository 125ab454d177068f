// Package testwait polls a condition until it holds, for tests that wait
// on what another goroutine or process does instead of sleeping for a
// fixed time.
package testwait

import (
	"testing"
	"time"
)

// Polling starts at firstPause and doubles up to maxPause: a condition
// that holds soon is seen soon, and a long wait costs little.
const (
	firstPause = 5 * time.Millisecond
	maxPause   = 50 * time.Millisecond
)

// Until calls cond until it returns true or limit has passed, and reports
// how long that took and whether cond held.
func Until(limit time.Duration, cond func() bool) (time.Duration, bool) {
	start := time.Now()
	pause := firstPause
	for {
		if cond() {
			return time.Since(start), true
		}
		if time.Since(start) > limit {
			return time.Since(start), false
		}
		time.Sleep(pause)
		pause = min(2*pause, maxPause)
	}
}

// For is Until for a test: when cond does not hold within limit it fails
// t, naming what it waited for. It returns how long the wait took.
func For(t testing.TB, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	took, ok := Until(limit, cond)
	if !ok {
		t.Fatalf("%s: not within %s", what, limit)
	}
	return took
}
