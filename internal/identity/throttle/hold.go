package throttle

import (
	"context"
	"time"
)

// Bounds of the hold on refused attempts.
const (
	// MaxHold is the longest a refused attempt's answer waits.
	MaxHold = time.Second
	// maxHeld bounds the answers waiting at once (a goroutine and a
	// connection's buffers each): past it, answers go at once.
	maxHeld = 1024
)

// Hold slows the answers to sign-in attempts the throttle refused: each
// waits up to Max (less when the refusal ends sooner) before it is
// written. A client hammering the sign-in over a few connections then gets
// a few answers a second rather than thousands, which had taken the cores
// from signed-in traffic (a flood from one address raised signed-in p99
// 2.4–2.9×). The wait holds no hashing slot and no store connection. One
// Hold serves the whole process, so a reload does not open a second set
// of slots; create it with NewHold.
type Hold struct {
	// Max is the longest an answer waits (MaxHold); 0 answers at once.
	Max   time.Duration
	slots chan struct{}
}

// NewHold returns a Hold of MaxHold.
func NewHold() *Hold {
	return &Hold{Max: MaxHold, slots: make(chan struct{}, maxHeld)}
}

// Wait holds for min(d, h.Max), unless maxHeld answers wait already or
// ctx ends; it reports whether it held.
func (h *Hold) Wait(ctx context.Context, d time.Duration) bool {
	d = min(d, h.Max)
	if d <= 0 {
		return false
	}
	select {
	case h.slots <- struct{}{}:
	default:
		return false
	}
	defer func() { <-h.slots }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	return true
}
