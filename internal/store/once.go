package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"
)

// OnceKind is what a single-use token is for. Each kind hashes its tokens
// under its own name, so a token of one kind can never spend, or be
// refused as, a token of another.
type OnceKind string

// The kinds of single-use tokens.
const (
	// OncePasskeyChallenge is the challenge of a WebAuthn ceremony: it
	// finishes one ceremony (internal/auth/passkey).
	OncePasskeyChallenge OnceKind = "moat passkey challenge"
	// OnceOIDCState is the state of a sign-in with a provider: its
	// callback is redeemed once (internal/identity/login).
	OnceOIDCState OnceKind = "moat oidc state"
)

// Once keeps the single-use tokens already spent, for every instance of
// the cluster. Store embeds it.
type Once interface {
	// UseOnce records token, of kind, as spent until expires and reports
	// whether it was unspent: a token is accepted once, on whichever
	// instance it reaches first. Only a hash of kind and token is stored.
	// Records past their expiry are deleted on the way; expires must be
	// no earlier than the token's own expiry, or a token could be spent
	// again after its record is gone.
	UseOnce(ctx context.Context, kind OnceKind, token string, expires time.Time) (bool, error)
}

// onceHash is the stored form of a token of kind.
func onceHash(kind OnceKind, token string) string {
	sum := sha256.Sum256([]byte(string(kind) + "|" + token))
	return hex.EncodeToString(sum[:])
}

// UseOnce inserts with ON CONFLICT DO NOTHING, so a second use is a row
// not inserted rather than an error (which would abort a PostgreSQL
// transaction). The table is passkey_challenges, named for its first kind
// (schema 7): renaming it would refuse the previous release during a
// rolling upgrade, and the stored hashes of passkey challenges are those
// that release wrote.
func (s *sqlStore) UseOnce(ctx context.Context, kind OnceKind, token string, expires time.Time) (bool, error) {
	if kind == "" || token == "" {
		return false, fmt.Errorf("use once: empty kind or token")
	}
	var fresh bool
	err := s.e.inTx(ctx, func(q querier) error {
		if _, err := q.exec(ctx, `DELETE FROM passkey_challenges WHERE expires_at < $1`, ts(now())); err != nil {
			return err
		}
		n, err := q.exec(ctx, `INSERT INTO passkey_challenges (hash, expires_at) VALUES ($1, $2) ON CONFLICT (hash) DO NOTHING`, onceHash(kind, token), ts(expires))
		fresh = n > 0
		return err
	})
	if err != nil {
		return false, fmt.Errorf("use once (%s): %w", kind, err)
	}
	return fresh, nil
}
