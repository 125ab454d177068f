// Package pat makes and recognises moat's personal access tokens: scripts
// send them as "Authorization: Bearer moat_pat_…" to routes with
// bearer: true. The store keeps only a token's SHA-256, so a copy of the
// database opens nothing; the token itself is shown once, at creation.
package pat

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strings"
)

// Prefix starts every personal access token, so secret scanners and people
// can tell one apart from an ID token.
const Prefix = "moat_pat_"

// secretLen is the random part's length in bytes (256 bits).
const secretLen = 32

// tokenLen is the length of a well-formed token.
var tokenLen = len(Prefix) + base64.RawURLEncoding.EncodedLen(secretLen)

// New returns a fresh token and the hash to store for it.
func New() (token, hash string) {
	b := make([]byte, secretLen)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	token = Prefix + base64.RawURLEncoding.EncodeToString(b)
	return token, Hash(token)
}

// Hash is what the store keeps for token: hex SHA-256. A fast hash is
// enough because the token has 256 random bits; nothing to brute-force.
func Hash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// Valid reports whether s has the shape of a personal access token, so a
// malformed one is refused before any store lookup.
func Valid(s string) bool {
	if len(s) != tokenLen || !strings.HasPrefix(s, Prefix) {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(s[len(Prefix):])
	return err == nil
}
