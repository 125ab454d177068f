package auth

import (
	"context"

	"github.com/moat-dev/moat/internal/auth/password"
	"github.com/moat-dev/moat/internal/config"
)

// hasher runs every password hash of the login flow under the process's
// password.Limiter (so a reload does not open a second set of slots), with
// the configuration's password policy.
type hasher struct {
	limiter *password.Limiter
	policy  password.Policy
	dummy   string
}

func newHasher(cfg *config.Config, p *Process) *hasher {
	return &hasher{
		limiter: p.Limiter,
		policy:  password.Policy{MinLength: cfg.Identity.Passwords.MinLength},
		dummy:   p.dummy,
	}
}

// verify checks pw against hash; rehash is a new hash of pw when the
// stored one was made with other parameters than today's.
func (h *hasher) verify(ctx context.Context, hash, pw string) (ok bool, rehash string, err error) {
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
func (h *hasher) verifyDummy(ctx context.Context, pw string) error {
	_, _, err := h.limiter.Verify(ctx, pw, h.dummy)
	return err
}

func (h *hasher) hash(ctx context.Context, pw string) (string, error) {
	return h.limiter.Hash(ctx, pw, password.DefaultParams)
}

// check applies the password policy; the error's text is shown to the user.
func (h *hasher) check(pw, email string) error { return h.policy.Check(pw, email) }
