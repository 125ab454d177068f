// Package attempts counts failed attempts — wrong passwords, second-factor
// and recovery codes — under a key, and keeps locks on keys, for every moat
// instance at once: a budget is the same for one instance or ten, and
// neither a restart nor a reload resets it.
//
// One Counter interface has three implementations. Redis (when counters:
// names one) and Store (moat's database otherwise: with SQLite the one
// instance's counts survive its restarts, with PostgreSQL every instance
// shares them) count for the whole cluster; Memory counts in this process
// alone, for tests and tools that have neither.
//
// The sign-in throttle (internal/identity/throttle) is its user: the rules
// — budgets per account and client, per client, per known device, the
// account's slow-down and the lock of a distributed attack — are there;
// this package only counts.
//
// An error from a Counter means the counts could not be read or written
// (ErrUnavailable when Redis or the database did not answer). A sign-in
// that cannot check its budget must not proceed: it answers 503 rather
// than guess, unless counters_fail: open has the throttle count in the
// instance's memory while Redis is down.
package attempts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/moat-dev/moat/internal/store"
)

// State is what a Counter knows about a key.
type State struct {
	// Count is the number of failures within the window (see Fail); 0 once
	// it has passed or after Reset.
	Count int64
	// SinceLast is how long ago the last failure was counted (0 when Count
	// is 0): with Count, what a growing delay is computed from.
	SinceLast time.Duration
	// Locked is how much longer the key's lock lasts; 0 when it is not
	// locked.
	Locked time.Duration
}

// Counter counts failures under keys and keeps locks on them. Keys are the
// caller's (see the package comment); any string works, long ones are
// hashed. Implementations are safe for concurrent use, and Redis and Store
// by many instances at once.
type Counter interface {
	// Fail counts one failure of key and returns the key's state with it:
	// Count is this failure's rank, unique among concurrent callers on
	// every instance. The count is forgotten once window passes without
	// another failure of key.
	Fail(ctx context.Context, key string, window time.Duration) (State, error)
	// Get returns key's state without counting; the zero State for a key
	// with no failures and no lock.
	Get(ctx context.Context, key string) (State, error)
	// Reset forgets key's failures, after a success. A lock stays.
	Reset(ctx context.Context, key string) error
	// Lock locks key for d from now; a lock that lasts longer already is
	// kept.
	Lock(ctx context.Context, key string, d time.Duration) error
	// Unlock lifts key's lock and forgets its failures: an admin's unlock.
	Unlock(ctx context.Context, key string) error
	// Sweep forgets the keys whose failures and lock have run out; the
	// process calls it every few minutes. Redis needs none (its keys
	// expire), and does nothing.
	Sweep(ctx context.Context) error
}

// ErrUnavailable is returned (wrapped) when the counts could not be read or
// written: Redis or the database did not answer.
var ErrUnavailable = errors.New("failure counters unavailable")

// Open returns the Counter for the `counters:` setting: Redis for a
// redis://, rediss:// or unix:// URL, else st, the store every instance
// shares (counters: "" means no Redis).
func Open(counters string, st store.Store) (Counter, error) {
	if counters == "" {
		if st == nil {
			return nil, errors.New("failure counters: no Redis and no store")
		}
		return NewStore(st), nil
	}
	u, err := url.Parse(counters)
	if err != nil {
		return nil, errors.New("failure counters: invalid URL") // never echo: it may hold a password
	}
	switch u.Scheme {
	case "redis", "rediss", "unix":
		return NewRedis(counters)
	}
	return nil, fmt.Errorf("failure counters: unsupported scheme %q: use redis://, rediss:// or unix://", u.Scheme)
}

// maxKeyBytes bounds the keys stored: a longer key (an attacker's 10 KB
// "email") is stored as its SHA-256, so it is still counted, in bounded
// space.
const maxKeyBytes = 200

// storedKey is the form a key is stored in, the same for every
// implementation so an admin's Unlock finds what Fail counted.
func storedKey(key string) string {
	if len(key) <= maxKeyBytes {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// checkArgs refuses what no caller should pass: an empty key, a window or
// lock that is not positive.
func checkArgs(op, key string, d time.Duration) error {
	if key == "" {
		return fmt.Errorf("%s: the key is empty", op)
	}
	if d <= 0 {
		return fmt.Errorf("%s %q: the duration must be positive, not %v", op, key, d)
	}
	return nil
}
