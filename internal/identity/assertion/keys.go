package assertion

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/moat-dev/moat/internal/auth/instancekey"
	"github.com/moat-dev/moat/internal/store"
)

// AssertionLifetime is how long an X-Moat-Assertion is valid (exp - iat).
const AssertionLifetime = 5 * time.Minute

// keyPublishSlack is how long past retire + AssertionLifetime a key stays in
// the JWKS, for clock skew between moat and the app.
const keyPublishSlack = time.Minute

// signingKey is a usable key: the store's record with its private part
// opened.
type signingKey struct {
	rec  *store.SigningKey
	priv *ecdsa.PrivateKey // nil when it could not be opened
	pub  *ecdsa.PublicKey
}

// SwitchDelay is how long after a rotation the new key starts to sign,
// given the JWKS cache lifetime maxAge (identity.jwks_max_age, the
// Cache-Control max-age of /_moat/jwks.json): twice that lifetime. The new
// key is in every instance's JWKS within a second of the rotation (the
// fan-out's KeysChanged; the key poll otherwise), so by the switch every
// copy an app cached before the rotation has expired, and an app that
// caches the JWKS as told never meets an unknown kid (issue 9: instances
// signed with a key before the others published it).
func SwitchDelay(maxAge time.Duration) time.Duration { return 2 * maxAge }

// keyRing is the signing keys known to this instance.
type keyRing struct {
	mu sync.RWMutex
	// signers are the keys that sign now or will, oldest first: the
	// first whose RetireAt is zero or still ahead signs (current).
	signers []*signingKey
	all     []*signingKey
	jwks    []byte // cached /_moat/jwks.json body
}

// current is the key that signs at now: the oldest of the signers not yet
// retired. A rotation leaves the previous key signing until its RetireAt,
// while the new one is only published.
func (r *keyRing) current(now time.Time) *signingKey {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, k := range r.signers {
		if signsAt(k.rec, now) {
			return k
		}
	}
	return nil
}

// signsAt reports whether k is not retired at now (it may still wait for
// an older key's RetireAt).
func signsAt(k *store.SigningKey, now time.Time) bool {
	return k.RetireAt.IsZero() || now.Before(k.RetireAt)
}

// KeyInfo describes one signing key for `moat keys list`.
type KeyInfo struct {
	ID        string
	Algorithm string
	CreatedAt time.Time
	// SignsFrom is when a key added by a rotation starts to sign, while
	// that is still ahead (it is only published until then); zero
	// otherwise.
	SignsFrom time.Time
	// RetireAt is when the key stops (or stopped) signing; zero while no
	// rotation has retired it.
	RetireAt time.Time
	// Published reports whether /_moat/jwks.json still lists the key.
	Published bool
}

// Signing reports whether the key signs at now.
func (k KeyInfo) Signing(now time.Time) bool {
	return !now.Before(k.SignsFrom) && (k.RetireAt.IsZero() || now.Before(k.RetireAt))
}

// ListKeys lists the signing keys in st, newest first.
func ListKeys(ctx context.Context, st store.Store) ([]KeyInfo, error) {
	recs, err := st.ListSigningKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list signing keys: %w", err)
	}
	sortKeys(recs)
	now := time.Now()
	out := make([]KeyInfo, 0, len(recs))
	for i, r := range recs {
		k := KeyInfo{ID: r.ID, Algorithm: r.Algorithm, CreatedAt: r.CreatedAt, RetireAt: r.RetireAt, Published: published(r, now)}
		// A key signs once every older key is retired.
		for _, older := range recs[i+1:] {
			if older.RetireAt.After(now) && older.RetireAt.After(k.SignsFrom) {
				k.SignsFrom = older.RetireAt
			}
		}
		out = append(out, k)
	}
	return out, nil
}

// RotateKey adds a new signing key to st, published at once, and retires
// every key that has no retirement yet at now + SwitchDelay(maxAge): the
// new key signs from then on, so every app has it in its JWKS before it
// meets a token it signed, and the retired keys stay published until the
// tokens they signed have expired. It returns the new key's id and when it
// starts to sign. Tell the running instances (fanout.KeysChanged) once it
// returns; they also read the keys again every minute.
func RotateKey(ctx context.Context, st store.Store, ik *instancekey.Key, maxAge time.Duration) (kid string, signsFrom time.Time, err error) {
	old, err := st.ListSigningKeys(ctx)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("rotate signing key: %w", err)
	}
	k, err := newSigningKey(ik)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("rotate signing key: %w", err)
	}
	if err := st.AddSigningKey(ctx, k); err != nil {
		return "", time.Time{}, fmt.Errorf("rotate signing key: %w", err)
	}
	// Whole milliseconds: what every store keeps exactly.
	signsFrom = time.Now().Add(SwitchDelay(maxAge)).Truncate(time.Millisecond)
	for _, o := range old {
		if o.RetireAt.IsZero() {
			if err := st.RetireSigningKey(ctx, o.ID, signsFrom); err != nil {
				return "", time.Time{}, fmt.Errorf("rotate signing key: retire %s: %w", o.ID, err)
			}
		}
	}
	return k.ID, signsFrom, nil
}

// newSigningKey makes a P-256 key with its private part sealed by ik.
func newSigningKey(ik *instancekey.Key) (*store.SigningKey, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		return nil, err
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(pubDER)
	kid := base64.RawURLEncoding.EncodeToString(sum[:12])
	sealed, err := ik.Seal(privDER, instancekey.SigningKeyAAD(kid))
	if err != nil {
		return nil, err
	}
	return &store.SigningKey{ID: kid, Algorithm: "ES256", PublicKey: pubDER, PrivateKey: sealed, CreatedAt: time.Now()}, nil
}

func sortKeys(recs []*store.SigningKey) {
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].CreatedAt.After(recs[j].CreatedAt) })
}

// published reports whether k belongs in the JWKS at now.
func published(k *store.SigningKey, now time.Time) bool {
	return k.RetireAt.IsZero() || now.Before(k.RetireAt.Add(AssertionLifetime+keyPublishSlack))
}

// Reload reads the signing keys from the store, creating the first one
// when there is none; the process calls it every keyReload so a rotation
// by the CLI or another instance takes effect.
func (s *Signer) Reload(ctx context.Context) error {
	recs, err := s.store.ListSigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("load signing keys: %w", err)
	}
	hasCurrent := false
	for _, r := range recs {
		hasCurrent = hasCurrent || r.RetireAt.IsZero()
	}
	if !hasCurrent {
		k, err := newSigningKey(s.key)
		if err != nil {
			return fmt.Errorf("create signing key: %w", err)
		}
		if err := s.store.AddSigningKey(ctx, k); err != nil {
			return fmt.Errorf("create signing key: %w", err)
		}
		s.logger.Info("created the first assertion signing key", "kid", k.ID)
		recs = append(recs, k)
	}
	sortKeys(recs)
	now := time.Now()
	var ring, signers []*signingKey
	for _, r := range recs {
		if !published(r, now) {
			continue
		}
		k, err := s.openKey(r, now)
		if err != nil {
			s.logger.Error("signing key unusable", "kid", r.ID, "err", err)
			continue
		}
		ring = append(ring, k)
		if k.priv != nil {
			signers = append(signers, k)
		}
	}
	slices.Reverse(signers) // oldest first
	if len(signers) == 0 || !signers[len(signers)-1].rec.RetireAt.IsZero() {
		return errors.New("load signing keys: no current key can be opened with this instance key (is MOAT_SECRET_KEY the same on every instance?)")
	}
	jwks, err := marshalJWKS(ring)
	if err != nil {
		return err
	}
	s.keys.mu.Lock()
	s.keys.signers, s.keys.all, s.keys.jwks = signers, ring, jwks
	s.keys.mu.Unlock()
	return nil
}

// openKey makes r usable: its public part always, its private part while
// it signs or will (not retired at now).
func (s *Signer) openKey(r *store.SigningKey, now time.Time) (*signingKey, error) {
	if r.Algorithm != "ES256" {
		return nil, fmt.Errorf("unsupported algorithm %q", r.Algorithm)
	}
	pubAny, err := x509.ParsePKIXPublicKey(r.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("parse public key: %w", err)
	}
	pub, ok := pubAny.(*ecdsa.PublicKey)
	if !ok {
		return nil, errors.New("public key is not ECDSA")
	}
	k := &signingKey{rec: r, pub: pub}
	if !signsAt(r, now) {
		return k, nil // retired keys are only published
	}
	der, err := s.key.Open(r.PrivateKey, instancekey.SigningKeyAAD(r.ID))
	if err != nil {
		return nil, err
	}
	privAny, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("parse private key: %w", err)
	}
	priv, ok := privAny.(*ecdsa.PrivateKey)
	if !ok {
		return nil, errors.New("private key is not ECDSA")
	}
	k.priv = priv
	return k, nil
}

type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
}

func marshalJWKS(ring []*signingKey) ([]byte, error) {
	keys := make([]jwk, 0, len(ring))
	for _, k := range ring {
		keys = append(keys, jwk{
			Kty: "EC", Crv: "P-256", Kid: k.rec.ID, Alg: "ES256", Use: "sig",
		})
		pt, err := k.pub.Bytes() // 0x04 || X || Y
		if err != nil || len(pt) != 65 {
			return nil, fmt.Errorf("encode key %s: %v", k.rec.ID, err)
		}
		keys[len(keys)-1].X, keys[len(keys)-1].Y = b64(pt[1:33]), b64(pt[33:])
	}
	return json.Marshal(map[string]any{"keys": keys})
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// keyRetention is how long a retired key is kept after it left the JWKS,
// for `moat keys list` and investigations.
const keyRetention = 7 * 24 * time.Hour

// DeleteOld removes keys retired long enough ago that no token they signed
// can be valid.
func (s *Signer) DeleteOld(ctx context.Context, now time.Time) {
	recs, err := s.store.ListSigningKeys(ctx)
	if err != nil {
		s.logger.Warn("list signing keys", "err", err)
		return
	}
	for _, r := range recs {
		if !r.RetireAt.IsZero() && now.Sub(r.RetireAt) > AssertionLifetime+keyPublishSlack+keyRetention {
			if err := s.store.DeleteSigningKey(ctx, r.ID); err != nil {
				s.logger.Warn("delete retired signing key", "kid", r.ID, "err", err)
			}
		}
	}
}
