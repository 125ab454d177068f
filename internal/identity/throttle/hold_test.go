package throttle

import (
	"context"
	"testing"
	"time"
)

// A refused answer waits at most Max, and not at all once maxHeld answers
// wait or holding is off.
func TestAHoldWaitsBoundedAndNeverPastItsSlots(t *testing.T) {
	h := NewHold()
	h.Max = 50 * time.Millisecond
	start := time.Now()
	if !h.Wait(context.Background(), time.Hour) || time.Since(start) < h.Max {
		t.Fatal("a refusal of an hour was not held for Max")
	}
	for range maxHeld {
		h.slots <- struct{}{}
	}
	if h.Wait(context.Background(), time.Second) {
		t.Fatal("an answer was held past maxHeld")
	}
	off := NewHold()
	off.Max = 0
	if off.Wait(context.Background(), time.Second) {
		t.Fatal("a hold of Max 0 held")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if !NewHold().Wait(ctx, time.Second) {
		t.Fatal("a hold whose request ended did not report that it held")
	}
}
