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

// keyRing is the signing keys known to this instance.
type keyRing struct {
	mu      sync.RWMutex
	current *signingKey
	all     []*signingKey
	jwks    []byte // cached /_moat/jwks.json body
}

// KeyInfo describes one signing key for `moat keys list`.
type KeyInfo struct {
	ID        string
	Algorithm string
	CreatedAt time.Time
	RetireAt  time.Time // zero while the key signs
	// Published reports whether /_moat/jwks.json still lists the key.
	Published bool
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
	for _, r := range recs {
		out = append(out, KeyInfo{ID: r.ID, Algorithm: r.Algorithm, CreatedAt: r.CreatedAt, RetireAt: r.RetireAt, Published: published(r, now)})
	}
	return out, nil
}

// RotateKey adds a new signing key to st and retires every key that was
// signing; the retired keys stay published until the tokens they signed
// have expired. Running instances pick the new key up within a minute.
// It returns the new key's id.
func RotateKey(ctx context.Context, st store.Store, ik *instancekey.Key) (string, error) {
	old, err := st.ListSigningKeys(ctx)
	if err != nil {
		return "", fmt.Errorf("rotate signing key: %w", err)
	}
	k, err := newSigningKey(ik)
	if err != nil {
		return "", fmt.Errorf("rotate signing key: %w", err)
	}
	if err := st.AddSigningKey(ctx, k); err != nil {
		return "", fmt.Errorf("rotate signing key: %w", err)
	}
	now := time.Now()
	for _, o := range old {
		if o.RetireAt.IsZero() {
			if err := st.RetireSigningKey(ctx, o.ID, now); err != nil {
				return "", fmt.Errorf("rotate signing key: retire %s: %w", o.ID, err)
			}
		}
	}
	return k.ID, nil
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
	var ring []*signingKey
	var current *signingKey
	for _, r := range recs {
		if !published(r, now) {
			continue
		}
		k, err := s.openKey(r)
		if err != nil {
			s.logger.Error("signing key unusable", "kid", r.ID, "err", err)
			continue
		}
		ring = append(ring, k)
		if current == nil && r.RetireAt.IsZero() && k.priv != nil {
			current = k
		}
	}
	if current == nil {
		return errors.New("load signing keys: no current key can be opened with this instance key (is MOAT_SECRET_KEY the same on every instance?)")
	}
	jwks, err := marshalJWKS(ring)
	if err != nil {
		return err
	}
	s.keys.mu.Lock()
	changed := s.keys.current == nil || s.keys.current.rec.ID != current.rec.ID
	s.keys.current, s.keys.all, s.keys.jwks = current, ring, jwks
	s.keys.mu.Unlock()
	if changed {
		s.clear()
	}
	return nil
}

func (s *Signer) openKey(r *store.SigningKey) (*signingKey, error) {
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
	if !r.RetireAt.IsZero() {
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
