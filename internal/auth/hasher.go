package auth

// TEMPORARY stand-in until internal/auth/password lands; same shape.

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"

	"github.com/moat-dev/moat/internal/config"
)

type hasher struct {
	minLength int
	sem       chan struct{}
	dummy     string
}

func newHasher(cfg *config.Config) *hasher {
	h := &hasher{minLength: cfg.Identity.Passwords.MinLength, sem: make(chan struct{}, 2)}
	h.dummy, _ = h.hashNow("dummy password for unknown users")
	return h
}

func (h *hasher) acquire(ctx context.Context) error {
	select {
	case h.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (h *hasher) release() { <-h.sem }

func (h *hasher) hashNow(pw string) (string, error) {
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	key := argon2.IDKey([]byte(pw), salt, 1, 19*1024, 1, 32)
	return "$argon2id$v=19$m=19456,t=1,p=1$" + base64.RawStdEncoding.EncodeToString(salt) + "$" + base64.RawStdEncoding.EncodeToString(key), nil
}

// verify checks pw against hash; rehash is a new hash when the parameters
// changed.
func (h *hasher) verify(ctx context.Context, hash, pw string) (ok bool, rehash string, err error) {
	if err := h.acquire(ctx); err != nil {
		return false, "", err
	}
	defer h.release()
	parts := strings.Split(hash, "$")
	if len(parts) != 6 {
		return false, "", errors.New("bad hash")
	}
	salt, _ := base64.RawStdEncoding.DecodeString(parts[4])
	want, _ := base64.RawStdEncoding.DecodeString(parts[5])
	got := argon2.IDKey([]byte(pw), salt, 1, 19*1024, 1, 32)
	return subtle.ConstantTimeCompare(got, want) == 1, "", nil
}

func (h *hasher) verifyDummy(ctx context.Context, pw string) error {
	_, _, err := h.verify(ctx, h.dummy, pw)
	return err
}

func (h *hasher) hash(ctx context.Context, pw string) (string, error) {
	if err := h.acquire(ctx); err != nil {
		return "", err
	}
	defer h.release()
	return h.hashNow(pw)
}

// check applies the password policy; the error is shown to the user.
func (h *hasher) check(pw, email string) error {
	if len([]rune(pw)) < h.minLength {
		return fmt.Errorf("at least %d characters", h.minLength)
	}
	return nil
}
