// Package password hashes and checks the built-in directory's passwords:
// argon2id in PHC strings (the parameters travel with each hash, so they
// can change without breaking old hashes), hashes imported from Firebase
// (checked in Firebase's modified scrypt until the first sign-in rehashes
// them to argon2id), a policy for new passwords, and a limiter that keeps a
// login flood from eating every core.
package password

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// MaxLength bounds a password's length in bytes, so an attacker cannot make
// moat hash megabytes (argon2 reads the whole input first).
const MaxLength = 256

// Params are argon2id's cost parameters.
type Params struct {
	Memory      uint32 // KiB
	Iterations  uint32
	Parallelism uint8
	SaltLen     uint32
	KeyLen      uint32
}

// DefaultParams are OWASP's recommended argon2id minimum (m=19 MiB, t=2,
// p=1). Each check holds 19 MiB while it runs. Measured on the 2-core
// reference machine (shared, load average above 20): about 50 ms of CPU per
// check (BenchmarkVerify's cpu-ms/op), so a Limiter of 2 slots admits at
// most about 40 sign-ins a second and never holds more than 38 MiB.
// OWASP's equal-strength alternatives (12 MiB/t=3, 9 MiB/t=4) cost the same
// CPU here.
var DefaultParams = Params{Memory: 19 * 1024, Iterations: 2, Parallelism: 1, SaltLen: 16, KeyLen: 32}

// Errors of Hash and Verify.
var (
	ErrTooLong   = fmt.Errorf("password is longer than %d bytes", MaxLength)
	ErrMalformed = errors.New("malformed password hash")
)

var b64 = base64.RawStdEncoding

// Hash returns the argon2id PHC string of pw under p:
// $argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>.
func Hash(pw string, p Params) (string, error) {
	if len(pw) > MaxLength {
		return "", ErrTooLong
	}
	if p.Memory < 8*uint32(p.Parallelism) || p.Iterations < 1 || p.Parallelism < 1 || p.SaltLen < 8 || p.KeyLen < 16 {
		return "", fmt.Errorf("hash password: invalid parameters %+v", p)
	}
	salt := make([]byte, p.SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	key := argon2.IDKey([]byte(pw), salt, p.Iterations, p.Memory, p.Parallelism, p.KeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.Memory, p.Iterations, p.Parallelism,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// Bounds on what a stored hash may ask for, so a tampered row cannot make
// one Verify allocate gigabytes or spin for minutes.
const (
	maxMemory     = 1 << 20 // 1 GiB in KiB
	maxIterations = 64
)

// decode parses a PHC argon2id string.
func decode(phc string) (p Params, salt, key []byte, err error) {
	parts := strings.Split(phc, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" || parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return p, nil, nil, ErrMalformed
	}
	var m, t, par uint64
	for _, kv := range strings.Split(parts[3], ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return p, nil, nil, ErrMalformed
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return p, nil, nil, ErrMalformed
		}
		switch k {
		case "m":
			m = n
		case "t":
			t = n
		case "p":
			par = n
		default:
			return p, nil, nil, ErrMalformed
		}
	}
	if m == 0 || m > maxMemory || t == 0 || t > maxIterations || par == 0 || par > 255 || m < 8*par {
		return p, nil, nil, ErrMalformed
	}
	if salt, err = b64.DecodeString(parts[4]); err != nil || len(salt) < 8 || len(salt) > 64 {
		return p, nil, nil, ErrMalformed
	}
	if key, err = b64.DecodeString(parts[5]); err != nil || len(key) < 16 || len(key) > 128 {
		return p, nil, nil, ErrMalformed
	}
	p = Params{Memory: uint32(m), Iterations: uint32(t), Parallelism: uint8(par), SaltLen: uint32(len(salt)), KeyLen: uint32(len(key))}
	return p, salt, key, nil
}

// Verify reports whether pw matches the PHC string, comparing in constant
// time, and whether the hash should be redone because its parameters
// differ from DefaultParams. Use VerifyWith for other current parameters.
func Verify(pw, phc string) (ok, needsRehash bool, err error) {
	return VerifyWith(pw, phc, DefaultParams)
}

// VerifyWith is Verify against the given current parameters. A hash
// imported from Firebase (see FirebaseHash) is checked in its own form and
// always needs a rehash when it matches.
func VerifyWith(pw, phc string, current Params) (ok, needsRehash bool, err error) {
	if strings.HasPrefix(phc, firebasePrefix) {
		return verifyFirebase(pw, phc)
	}
	p, salt, key, err := decode(phc)
	if err != nil {
		return false, false, err
	}
	if len(pw) > MaxLength {
		// Same work as a real check, then no: the length must not show.
		pw = pw[:MaxLength]
		defer func() { ok, needsRehash = false, false }()
	}
	got := argon2.IDKey([]byte(pw), salt, p.Iterations, p.Memory, p.Parallelism, uint32(len(key)))
	ok = subtle.ConstantTimeCompare(got, key) == 1
	needsRehash = ok && (p.Memory != current.Memory || p.Iterations != current.Iterations ||
		p.Parallelism != current.Parallelism || p.KeyLen != current.KeyLen || p.SaltLen != current.SaltLen)
	return ok, needsRehash, nil
}

// DummyHash returns a hash under p of a random password nobody knows.
// Verify a password against it for an unknown or disabled user, so the
// answer takes as long as for a real one and the timing shows nothing.
//
// It runs no argon2: a verification costs what p says whatever the stored
// key is, so a random key serves as well as a derived one (no password
// derives it but with chance 2^-8·KeyLen), and start-up does not pay for one
// hash (issue 13: it was half of moat's start-up).
func DummyHash(p Params) string {
	salt, key := make([]byte, p.SaltLen), make([]byte, p.KeyLen)
	_, _ = rand.Read(salt)
	_, _ = rand.Read(key)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.Memory, p.Iterations, p.Parallelism,
		b64.EncodeToString(salt), b64.EncodeToString(key))
}
