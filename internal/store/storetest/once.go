package storetest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/store"
)

func testUseOnce(t *testing.T, s store.Store) {
	later := time.Now().Add(5 * time.Minute)
	if ok, err := s.UseOnce(ctx(t), store.OncePasskeyChallenge, "c1", later); err != nil || !ok {
		t.Fatalf("first use: %v, %v; want true", ok, err)
	}
	if ok, err := s.UseOnce(ctx(t), store.OncePasskeyChallenge, "c1", later); err != nil || ok {
		t.Errorf("second use: %v, %v; want false", ok, err)
	}
	// An expired record is swept by the next use of any token; the
	// token's own expiry has refused it long before.
	if ok, _ := s.UseOnce(ctx(t), store.OncePasskeyChallenge, "old", time.Now().Add(-time.Minute)); !ok {
		t.Fatal("first use of old")
	}
	if ok, _ := s.UseOnce(ctx(t), store.OnceOIDCState, "other", later); !ok {
		t.Fatal("first use of other")
	}
	if ok, _ := s.UseOnce(ctx(t), store.OncePasskeyChallenge, "old", later); !ok {
		t.Error("an expired record was not swept")
	}
	if _, err := s.UseOnce(ctx(t), store.OnceOIDCState, "", later); err == nil {
		t.Error("an empty token was accepted")
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	fresh := 0
	for range 8 {
		wg.Go(func() {
			ok, err := s.UseOnce(context.Background(), store.OnceOIDCState, "race", later)
			if err != nil {
				t.Error(err)
			}
			if ok {
				mu.Lock()
				fresh++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if fresh != 1 {
		t.Errorf("%d of 8 concurrent uses of one token were first, want exactly 1", fresh)
	}
}

// testUseOnceKinds: a passkey challenge and an OIDC state that happen to
// be the same string are two tokens, each spent once.
func testUseOnceKinds(t *testing.T, s store.Store) {
	later := time.Now().Add(5 * time.Minute)
	for _, kind := range []store.OnceKind{store.OncePasskeyChallenge, store.OnceOIDCState} {
		if ok, err := s.UseOnce(ctx(t), kind, "same", later); err != nil || !ok {
			t.Errorf("first use as %q: %v, %v; want true", kind, ok, err)
		}
	}
	for _, kind := range []store.OnceKind{store.OncePasskeyChallenge, store.OnceOIDCState} {
		if ok, err := s.UseOnce(ctx(t), kind, "same", later); err != nil || ok {
			t.Errorf("second use as %q: %v, %v; want false", kind, ok, err)
		}
	}
}
