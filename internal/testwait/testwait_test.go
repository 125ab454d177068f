package testwait

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestUntilReturnsOnceTheConditionHolds(t *testing.T) {
	var calls atomic.Int32
	took, ok := Until(10*time.Second, func() bool { return calls.Add(1) == 3 })
	if !ok || calls.Load() != 3 {
		t.Fatalf("ok %v after %d calls", ok, calls.Load())
	}
	if took >= 10*time.Second {
		t.Errorf("took %v", took)
	}
}

func TestUntilGivesUpAfterTheLimit(t *testing.T) {
	took, ok := Until(20*time.Millisecond, func() bool { return false })
	if ok || took < 20*time.Millisecond {
		t.Fatalf("ok %v after %v, want false after the limit", ok, took)
	}
}
