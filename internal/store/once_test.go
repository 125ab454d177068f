package store

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
)

// TestOncePasskeyChallengeHashIsTheOneTheLastReleaseWrote pins the stored
// form of a passkey challenge: during a rolling upgrade an instance of the
// previous release (which stored sha256("moat passkey challenge|" +
// challenge)) and one of this release must refuse each other's spent
// challenges.
func TestOncePasskeyChallengeHashIsTheOneTheLastReleaseWrote(t *testing.T) {
	sum := sha256.Sum256([]byte("moat passkey challenge|c1"))
	if got, want := onceHash(OncePasskeyChallenge, "c1"), hex.EncodeToString(sum[:]); got != want {
		t.Errorf("onceHash = %s, want %s", got, want)
	}
	if onceHash(OnceOIDCState, "c1") == onceHash(OncePasskeyChallenge, "c1") {
		t.Error("an OIDC state and a passkey challenge of the same text hash alike")
	}
}
