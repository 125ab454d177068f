package password

import (
	"context"
	"errors"
	"runtime"
	"time"
)

// ErrBusy is returned by Limiter.Do when every slot stayed taken for the
// whole wait: answer 429/503 rather than queue more hashing.
var ErrBusy = errors.New("too many password checks at once")

// Limiter bounds how many password hashes run at once, so a login flood
// takes at most Slots cores and leaves the rest to proxied traffic. The
// zero value is not usable; use NewLimiter.
type Limiter struct {
	slots chan struct{}
	wait  time.Duration
}

// NewLimiter returns a limiter with n slots (GOMAXPROCS when n <= 0) where
// a caller waits at most wait for a slot (2 s when wait <= 0).
func NewLimiter(n int, wait time.Duration) *Limiter {
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	if wait <= 0 {
		wait = 2 * time.Second
	}
	return &Limiter{slots: make(chan struct{}, n), wait: wait}
}

// Do runs fn in a slot. It returns ErrBusy if no slot frees up within the
// limiter's wait, or the context's error if it ends first.
func (l *Limiter) Do(ctx context.Context, fn func()) error {
	timer := time.NewTimer(l.wait)
	defer timer.Stop()
	select {
	case l.slots <- struct{}{}:
	case <-timer.C:
		return ErrBusy
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-l.slots }()
	fn()
	return nil
}

// InUse is how many slots are taken now (for metrics).
func (l *Limiter) InUse() int { return len(l.slots) }

// Verify is password.Verify in a slot of l.
func (l *Limiter) Verify(ctx context.Context, pw, phc string) (ok, needsRehash bool, err error) {
	if lerr := l.Do(ctx, func() { ok, needsRehash, err = Verify(pw, phc) }); lerr != nil {
		return false, false, lerr
	}
	return ok, needsRehash, err
}

// Hash is password.Hash in a slot of l.
func (l *Limiter) Hash(ctx context.Context, pw string, p Params) (phc string, err error) {
	if lerr := l.Do(ctx, func() { phc, err = Hash(pw, p) }); lerr != nil {
		return "", lerr
	}
	return phc, err
}
