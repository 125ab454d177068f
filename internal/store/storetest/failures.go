package storetest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/store"
)

func testFailures(t *testing.T, s store.Store) {
	const window = time.Hour
	if f, err := s.GetFailures(ctx(t), "account:alice"); err != nil || f != (store.Failures{}) {
		t.Fatalf("a key never counted: %+v, %v; want the zero state", f, err)
	}
	start := time.Now().Add(-time.Second)
	for want := int64(1); want <= 3; want++ {
		f, err := s.CountFailure(ctx(t), "account:alice", window)
		if err != nil || f.Count != want || f.Last.Before(start) || !f.LockedUntil.IsZero() {
			t.Fatalf("failure %d: %+v, %v", want, f, err)
		}
	}
	if f, err := s.CountFailure(ctx(t), "account:bob", window); err != nil || f.Count != 1 {
		t.Fatalf("another key counts apart: %+v, %v", f, err)
	}
	if f, _ := s.GetFailures(ctx(t), "account:alice"); f.Count != 3 {
		t.Errorf("get: %+v, want 3 failures", f)
	}

	// A lock outlasts a reset (a success does not lift it) and a shorter
	// lock does not cut it.
	if err := s.LockFailures(ctx(t), "account:alice", time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := s.LockFailures(ctx(t), "account:alice", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.ResetFailures(ctx(t), "account:alice"); err != nil {
		t.Fatal(err)
	}
	f, err := s.GetFailures(ctx(t), "account:alice")
	if err != nil || f.Count != 0 || time.Until(f.LockedUntil) < 59*time.Minute {
		t.Fatalf("after lock and reset: %+v, %v; want no failures, locked for an hour", f, err)
	}
	if f, _ := s.CountFailure(ctx(t), "account:alice", window); f.Count != 1 || f.LockedUntil.IsZero() {
		t.Errorf("counting on a locked key: %+v, want count 1 and the lock", f)
	}
	// A lock on a key never counted.
	if err := s.LockFailures(ctx(t), "client:192.0.2.1", time.Hour); err != nil {
		t.Fatal(err)
	}
	if f, _ := s.GetFailures(ctx(t), "client:192.0.2.1"); f.Count != 0 || f.LockedUntil.IsZero() {
		t.Errorf("a lock alone: %+v", f)
	}
	// The admin's unlock forgets both.
	if err := s.UnlockFailures(ctx(t), "account:alice"); err != nil {
		t.Fatal(err)
	}
	if f, _ := s.GetFailures(ctx(t), "account:alice"); f != (store.Failures{}) {
		t.Errorf("after unlock: %+v", f)
	}
	if err := s.UnlockFailures(ctx(t), "account:nobody"); err != nil {
		t.Errorf("unlocking a key never counted: %v", err)
	}
	if _, err := s.CountFailure(ctx(t), "", window); err == nil {
		t.Error("an empty key was counted")
	}
	if _, err := s.CountFailure(ctx(t), "k", 0); err == nil {
		t.Error("a zero window was accepted")
	}
}

func testFailureWindow(t *testing.T, s store.Store) {
	const window = 100 * time.Millisecond
	for range 3 {
		if _, err := s.CountFailure(ctx(t), "short", window); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.LockFailures(ctx(t), "locked", window); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CountFailure(ctx(t), "long", time.Hour); err != nil {
		t.Fatal(err)
	}
	// Once the window has passed without a failure the count is gone.
	deadline := time.Now().Add(5 * time.Second)
	for {
		f, err := s.GetFailures(ctx(t), "short")
		if err != nil {
			t.Fatal(err)
		}
		if f.Count == 0 && f.Last.IsZero() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("failures outlived their window: %+v", f)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if f, _ := s.CountFailure(ctx(t), "short", window); f.Count != 1 {
		t.Errorf("a failure after the window: count %d, want it to start again at 1", f.Count)
	}
	for {
		f, _ := s.GetFailures(ctx(t), "locked")
		if f.LockedUntil.IsZero() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a lock outlived its duration: %+v", f)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The sweep removes what has run out and keeps the rest.
	n, err := s.DeleteExpiredFailures(ctx(t), time.Now().Add(time.Second))
	if err != nil || n != 2 {
		t.Errorf("swept %d, %v; want 2 (short, locked)", n, err)
	}
	if f, _ := s.GetFailures(ctx(t), "long"); f.Count != 1 {
		t.Errorf("the sweep took a live count: %+v", f)
	}
}

// testFailureRace: callers counting one key at once each get a count of
// their own, so no budget is exceeded by a race.
func testFailureRace(t *testing.T, s store.Store) {
	const workers, each = 8, 20
	var wg sync.WaitGroup
	var mu sync.Mutex
	var counts []int64
	for range workers {
		wg.Go(func() {
			for range each {
				f, err := s.CountFailure(context.Background(), "account:target", time.Hour)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				counts = append(counts, f.Count)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.Sort(counts)
	for i, c := range counts {
		if c != int64(i+1) {
			t.Fatalf("counts %v: want each of 1…%d once", fmt.Sprint(counts[max(0, i-3):min(len(counts), i+3)]), workers*each)
		}
	}
	if len(counts) != workers*each {
		t.Errorf("%d counts, want %d", len(counts), workers*each)
	}
}
