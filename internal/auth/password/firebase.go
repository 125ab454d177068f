package password

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/scrypt"
)

// firebasePrefix starts the encoded form of a password hash imported from
// Firebase Authentication or Identity Platform.
const firebasePrefix = "$firebase-scrypt$"

// FirebaseParams are a Firebase project's password hash parameters, as the
// console shows them (Authentication → Users → Password hash parameters).
type FirebaseParams struct {
	SignerKey     []byte // base64_signer_key, decoded
	SaltSeparator []byte // base64_salt_separator, decoded
	Rounds        int    // scrypt's r
	MemCost       int    // scrypt's N is 2^MemCost
}

// Bounds on Firebase parameters: the console offers rounds 1–8 and
// mem_cost 1–14, so one check holds at most 128·8·2^14 bytes (16 MiB), no
// more than an argon2id check, and a tampered row cannot ask for more.
const (
	maxFirebaseRounds  = 8
	maxFirebaseMemCost = 14
	maxFirebaseKey     = 256
	maxFirebaseSalt    = 64
)

// Validate reports what is wrong with p, in words an operator can act on.
func (p FirebaseParams) Validate() error {
	switch {
	case p.Rounds < 1 || p.Rounds > maxFirebaseRounds:
		return fmt.Errorf("rounds must be between 1 and %d, not %d", maxFirebaseRounds, p.Rounds)
	case p.MemCost < 1 || p.MemCost > maxFirebaseMemCost:
		return fmt.Errorf("mem cost must be between 1 and %d, not %d", maxFirebaseMemCost, p.MemCost)
	case len(p.SignerKey) == 0 || len(p.SignerKey) > maxFirebaseKey:
		return fmt.Errorf("the hash key must be 1 to %d bytes, not %d", maxFirebaseKey, len(p.SignerKey))
	case len(p.SaltSeparator) > maxFirebaseSalt:
		return fmt.Errorf("the salt separator must be at most %d bytes", maxFirebaseSalt)
	}
	return nil
}

// FirebaseHash returns the encoded form moat stores for a password hash
// exported from Firebase (passwordHash and salt of `firebase auth:export`):
//
//	$firebase-scrypt$r=8,m=14$<signer key>$<salt separator>$<salt>$<hash>
//
// (unpadded base64). Verify checks a password against it and always asks
// for a rehash when it matches, so the first sign-in replaces it with
// argon2id and the project's signer key leaves the row with it.
func FirebaseHash(p FirebaseParams, salt, hash []byte) (string, error) {
	if err := p.Validate(); err != nil {
		return "", fmt.Errorf("firebase hash: %w", err)
	}
	if len(salt) == 0 || len(salt) > maxFirebaseSalt {
		return "", fmt.Errorf("firebase hash: the salt must be 1 to %d bytes, not %d", maxFirebaseSalt, len(salt))
	}
	if len(hash) != len(p.SignerKey) {
		return "", fmt.Errorf("firebase hash: the hash is %d bytes but the hash key %d; is the hash key the project's?", len(hash), len(p.SignerKey))
	}
	return fmt.Sprintf("%sr=%d,m=%d$%s$%s$%s$%s", firebasePrefix, p.Rounds, p.MemCost,
		b64.EncodeToString(p.SignerKey), b64.EncodeToString(p.SaltSeparator),
		b64.EncodeToString(salt), b64.EncodeToString(hash)), nil
}

// FirebaseDigest computes Firebase's modified scrypt of pw: the scrypt key
// of pw with salt‖separator (N = 2^MemCost, r = Rounds, p = 1, 32 bytes)
// encrypts the signer key with AES-256-CTR under a zero IV. This is the
// passwordHash that `firebase auth:export` writes (see
// github.com/firebase/scrypt).
func FirebaseDigest(pw string, p FirebaseParams, salt []byte) ([]byte, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	s := make([]byte, 0, len(salt)+len(p.SaltSeparator))
	s = append(append(s, salt...), p.SaltSeparator...)
	key, err := scrypt.Key([]byte(pw), s, 1<<p.MemCost, p.Rounds, 1, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	out := make([]byte, len(p.SignerKey))
	cipher.NewCTR(block, make([]byte, aes.BlockSize)).XORKeyStream(out, p.SignerKey)
	return out, nil
}

// decodeFirebase parses the encoded form FirebaseHash writes.
func decodeFirebase(enc string) (p FirebaseParams, salt, hash []byte, err error) {
	parts := strings.Split(strings.TrimPrefix(enc, firebasePrefix), "$")
	if len(parts) != 5 {
		return p, nil, nil, ErrMalformed
	}
	for _, kv := range strings.Split(parts[0], ",") {
		k, v, ok := strings.Cut(kv, "=")
		n, err := strconv.Atoi(v)
		if !ok || err != nil {
			return p, nil, nil, ErrMalformed
		}
		switch k {
		case "r":
			p.Rounds = n
		case "m":
			p.MemCost = n
		default:
			return p, nil, nil, ErrMalformed
		}
	}
	fields := []*[]byte{&p.SignerKey, &p.SaltSeparator, &salt, &hash}
	for i, f := range fields {
		if *f, err = b64.DecodeString(parts[i+1]); err != nil {
			return p, nil, nil, ErrMalformed
		}
	}
	if p.Validate() != nil || len(salt) == 0 || len(salt) > maxFirebaseSalt || len(hash) != len(p.SignerKey) {
		return p, nil, nil, ErrMalformed
	}
	return p, salt, hash, nil
}

// verifyFirebase is Verify for an imported Firebase hash. A match always
// needs a rehash: moat keeps Firebase's form only until the user's first
// sign-in.
func verifyFirebase(pw, enc string) (ok, needsRehash bool, err error) {
	p, salt, hash, err := decodeFirebase(enc)
	if err != nil {
		return false, false, err
	}
	tooLong := len(pw) > MaxLength
	if tooLong {
		// Same work as a real check, then no: the length must not show.
		pw = pw[:MaxLength]
	}
	got, err := FirebaseDigest(pw, p, salt)
	if err != nil {
		return false, false, errors.Join(ErrMalformed, err)
	}
	ok = subtle.ConstantTimeCompare(got, hash) == 1 && !tooLong
	return ok, ok, nil
}
