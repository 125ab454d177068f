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
