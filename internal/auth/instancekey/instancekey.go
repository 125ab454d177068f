// Package instancekey holds moat's instance key: 32 random bytes that
// encrypt secrets at rest in the store (signing keys, TOTP secrets, refresh
// tokens) and from which moat derives its other local keys (CSRF tokens).
//
// The key comes from the MOAT_SECRET_KEY environment variable (base64, 32
// bytes) or, when that is unset, from data_dir/instance.key, created with
// mode 0600 on first start. Every instance sharing one store must share the
// key: set MOAT_SECRET_KEY on all of them, or copy the file.
package instancekey

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// EnvVar names the environment variable that carries the key.
const EnvVar = "MOAT_SECRET_KEY"

// FileName is the key file's name inside data_dir.
const FileName = "instance.key"

// Size is the key's length in bytes (AES-256).
const Size = 32

// Key is the instance key. Its zero value is not usable; get one from Load
// or New.
type Key struct {
	raw  [Size]byte
	aead cipher.AEAD
}

// New returns a Key made of raw, which must be Size bytes.
func New(raw []byte) (*Key, error) {
	if len(raw) != Size {
		return nil, fmt.Errorf("instance key: need %d bytes, got %d", Size, len(raw))
	}
	k := &Key{}
	copy(k.raw[:], raw)
	block, err := aes.NewCipher(k.raw[:])
	if err != nil {
		return nil, fmt.Errorf("instance key: %w", err)
	}
	k.aead, err = cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("instance key: %w", err)
	}
	return k, nil
}

// Load returns the key from MOAT_SECRET_KEY, or else from
// dataDir/instance.key, creating that file (0600, and dataDir 0700) with a
// fresh random key when it does not exist.
func Load(dataDir string) (*Key, error) {
	if v := strings.TrimSpace(os.Getenv(EnvVar)); v != "" {
		raw, err := decode(v)
		if err != nil {
			return nil, fmt.Errorf("instance key: %s: %w", EnvVar, err)
		}
		return New(raw)
	}
	path := filepath.Join(dataDir, FileName)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return create(dataDir, path)
	}
	if err != nil {
		return nil, fmt.Errorf("instance key: %w", err)
	}
	raw, err := decode(strings.TrimSpace(string(data)))
	if err != nil {
		return nil, fmt.Errorf("instance key: %s: %w", path, err)
	}
	return New(raw)
}

func create(dataDir, path string) (*Key, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("instance key: create data_dir: %w", err)
	}
	raw := make([]byte, Size)
	if _, err := rand.Read(raw); err != nil {
		return nil, fmt.Errorf("instance key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		// Another process created it first: use theirs.
		return Load(dataDir)
	}
	if err != nil {
		return nil, fmt.Errorf("instance key: %w", err)
	}
	_, err = f.WriteString(base64.StdEncoding.EncodeToString(raw) + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return nil, fmt.Errorf("instance key: write %s: %w", path, err)
	}
	return New(raw)
}

func decode(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if raw, err := enc.DecodeString(s); err == nil {
			if len(raw) != Size {
				return nil, fmt.Errorf("need base64 of %d bytes, got %d bytes", Size, len(raw))
			}
			return raw, nil
		}
	}
	return nil, errors.New("not valid base64 (generate one with: openssl rand -base64 32)")
}

// Seal encrypts plaintext with AES-256-GCM. aad binds the ciphertext to its
// context (such as a key id), so it cannot be moved to another record.
func (k *Key) Seal(plaintext, aad []byte) ([]byte, error) {
	nonce := make([]byte, k.aead.NonceSize(), k.aead.NonceSize()+len(plaintext)+k.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return k.aead.Seal(nonce, nonce, plaintext, aad), nil
}

// Open decrypts what Seal returned for the same aad.
func (k *Key) Open(ciphertext, aad []byte) ([]byte, error) {
	n := k.aead.NonceSize()
	if len(ciphertext) < n+k.aead.Overhead() {
		return nil, errors.New("open sealed secret: too short")
	}
	out, err := k.aead.Open(nil, ciphertext[:n], ciphertext[n:], aad)
	if err != nil {
		return nil, errors.New("open sealed secret: wrong instance key or corrupted data")
	}
	return out, nil
}

// Derive returns a 32-byte key for purpose, independent of the instance key
// and of keys derived for other purposes.
func (k *Key) Derive(purpose string) []byte {
	m := hmac.New(sha256.New, k.raw[:])
	m.Write([]byte("moat derive: " + purpose))
	return m.Sum(nil)
}
