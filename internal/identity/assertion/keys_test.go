package assertion

import (
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/store"
)

func TestAKeyRetiredLongerAgoThanATokenLivesIsNoLongerPublished(t *testing.T) {
	old := &store.SigningKey{ID: "x", RetireAt: time.Now().Add(-AssertionLifetime - keyPublishSlack - time.Second)}
	if published(old, time.Now()) {
		t.Error("published")
	}
	recent := &store.SigningKey{ID: "y", RetireAt: time.Now().Add(-AssertionLifetime)}
	if !published(recent, time.Now()) {
		t.Error("a key whose tokens may still be valid is not published")
	}
}

// Two rotations in a row: each key signs in turn, from the retirement of
// the one before it, and never before.
func TestBackToBackRotationsSignWithEachKeyInTurn(t *testing.T) {
	t0 := time.Now()
	k := func(id string, retire time.Time) *signingKey {
		return &signingKey{rec: &store.SigningKey{ID: id, RetireAt: retire}}
	}
	ring := keyRing{signers: []*signingKey{k("one", t0.Add(time.Minute)), k("two", t0.Add(2*time.Minute)), k("three", time.Time{})}}
	for _, tt := range []struct {
		at   time.Duration
		want string
	}{{0, "one"}, {time.Minute - 1, "one"}, {time.Minute, "two"}, {90 * time.Second, "two"}, {2 * time.Minute, "three"}, {time.Hour, "three"}} {
		if got := ring.current(t0.Add(tt.at)); got == nil || got.rec.ID != tt.want {
			t.Errorf("at +%s the signing key is %v, want %s", tt.at, got, tt.want)
		}
	}
}
