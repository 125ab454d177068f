package attempts

import (
	"fmt"
	"testing"
	"time"
)

// TestMemoryStaysBounded: a flood of distinct keys does not grow the
// memory counter past its bound, and does not lift a lock.
func TestMemoryStaysBounded(t *testing.T) {
	m := NewMemory(1000)
	if err := m.Lock(t.Context(), "a:victim", time.Hour); err != nil {
		t.Fatal(err)
	}
	for i := range 20000 {
		if _, err := m.Fail(t.Context(), fmt.Sprint("c:", i), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(m.m); n > 1000 {
		t.Errorf("%d keys held, bound 1000", n)
	}
	if s, _ := m.Get(t.Context(), "a:victim"); s.Locked == 0 {
		t.Error("a flood of keys lifted a lock")
	}
}
