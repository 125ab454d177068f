package login

import (
	"context"

	"github.com/moat-dev/moat/internal/auth/password"
)

// hasher checks the passwords typed into the sign-in under the process's
// password.Limiter (so a reload does not open a second set of slots).
// Setting a password is the directory's (directory.Passwords).
type hasher struct {
	limiter *password.Limiter
	// dummy is the hash an unknown user's password is checked against.
	dummy string
}

func newHasher(l *password.Limiter) hasher {
	return hasher{limiter: l, dummy: password.DummyHash(password.DefaultParams)}
}

// verify checks pw against hash; rehash is a new hash of pw when the
// stored one was made with other parameters than today's.
func (h hasher) verify(ctx context.Context, hash, pw string) (ok bool, rehash string, err error) {
	ok, needsRehash, err := h.limiter.Verify(ctx, pw, hash)
	if err != nil || !ok || !needsRehash {
		return ok, "", err
	}
	rehash, err = h.limiter.Hash(ctx, pw, password.DefaultParams)
	if err != nil {
		return true, "", nil // the old hash still works; try again next time
	}
	return true, rehash, nil
}

// verifyDummy does the work of one verification for a user who does not
// exist (or has no password), so the answer's timing matches a real one.
func (h hasher) verifyDummy(ctx context.Context, pw string) error {
	_, _, err := h.limiter.Verify(ctx, pw, h.dummy)
	return err
}
