// Package instancekey holds moat's instance key: 32 random bytes that
// encrypt secrets at rest in the store (signing keys, TOTP secrets, refresh
// tokens) and from which moat derives its other local keys (CSRF tokens).
//
// The key is configuration: MOAT_SECRET_KEY (base64 of 32 bytes) or the file
// named by secret_key_file, one of them, the same on every instance sharing
// a store (`moat keys init` makes one). Only the laptop case stays
// zero-config: on the embedded default store (SQLite in data_dir) with no key
// given, moat keeps the key in data_dir/instance.key and creates that file
// when the store is brand-new (a data_dir/instance.key an older moat left
// beside a shared store is still read, and checked). Anything else without a
// key, or with a key that cannot open the store's current signing key, is
// refused with a one-line error saying what to do, so sealed data is never
// written with a stray key.
package instancekey

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/store"
)

// EnvVar names the environment variable that carries the key.
const EnvVar = "MOAT_SECRET_KEY"

// FileName is the key file's name inside data_dir (embedded default only).
const FileName = "instance.key"

// Size is the key's length in bytes (AES-256).
const Size = 32

// maxFileBytes bounds a key file: base64 of 32 bytes plus a newline is 45.
const maxFileBytes = 1 << 10

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

// Generate returns a new random key in the form MOAT_SECRET_KEY and
// secret_key_file take: standard base64 of Size bytes.
func Generate() (string, error) {
	raw := make([]byte, Size)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("instance key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(raw), nil
}

// WriteFile writes a new random key to path (mode 0600) and refuses to
// replace a file that exists: overwriting a key loses every secret sealed
// with it.
func WriteFile(path string) error {
	encoded, err := Generate()
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("instance key: %s already exists; moat never overwrites a key (every secret sealed with it would be lost): remove it first if you really mean to start over", path)
	}
	if err != nil {
		return fmt.Errorf("instance key: %w", err)
	}
	_, err = f.WriteString(encoded + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("instance key: write %s: %w", path, err)
	}
	return nil
}

// Source says where an instance's key comes from.
type Source struct {
	// Env is the value of MOAT_SECRET_KEY ("" when unset).
	Env string
	// File is secret_key_file ("" when unset).
	File string
	// DataDir is data_dir, where the embedded default keeps instance.key.
	DataDir string
	// Embedded reports whether the store is the embedded default (SQLite
	// in data_dir, no store: set). Only then may moat keep the key in
	// data_dir, and create it for a brand-new store.
	Embedded bool
	// Store describes the store in messages (never with a password).
	Store string
}

// SourceFor returns the Source that cfg and the environment describe.
func SourceFor(cfg *config.Config) Source {
	return Source{
		Env:      strings.TrimSpace(os.Getenv(EnvVar)),
		File:     cfg.SecretKeyFile,
		DataDir:  cfg.DataDir,
		Embedded: cfg.Store == "",
		Store:    describeStore(cfg),
	}
}

// SigningKeys is what Load needs of the store: its signing keys, whose
// private parts are sealed with the instance key.
type SigningKeys interface {
	ListSigningKeys(ctx context.Context) ([]*store.SigningKey, error)
}

// ForConfig is Load with the Source that cfg and the environment describe.
func ForConfig(ctx context.Context, cfg *config.Config, st SigningKeys) (*Key, error) {
	return Load(ctx, SourceFor(cfg), st)
}

// Load returns the instance key src names and checks it against st: a key
// that cannot open the store's current signing key is refused, because
// everything it sealed would be unreadable to the other instances and to
// the next start. With no key given it reads data_dir/instance.key, and
// creates that file only for the embedded default store while st holds no
// signing key (a brand-new store); any other store without that file needs
// a key from MOAT_SECRET_KEY or secret_key_file.
func Load(ctx context.Context, src Source, st SigningKeys) (*Key, error) {
	if st == nil {
		return nil, errors.New("instance key: no store to check the key against")
	}
	keys, err := st.ListSigningKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("instance key: read the store's signing keys: %w", err)
	}
	k, err := src.read(len(keys) == 0)
	if err != nil {
		return nil, err
	}
	if err := k.opens(keys, src); err != nil {
		return nil, err
	}
	return k, nil
}

// read finds the key src names. brandNew reports whether the store holds
// no signing key yet.
func (src Source) read(brandNew bool) (*Key, error) {
	switch {
	case src.Env != "" && src.File != "":
		return nil, fmt.Errorf("instance key: both %s and secret_key_file (%s) are set: keep one", EnvVar, src.File)
	case src.Env != "":
		raw, err := decode(src.Env)
		if err != nil {
			return nil, fmt.Errorf("instance key: %s: %w", EnvVar, err)
		}
		return New(raw)
	case src.File != "":
		k, err := readFile(src.File)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("instance key: secret_key_file %s does not exist: make it with `moat keys init --file %s` (once, then give the same file to every instance)", src.File, src.File)
		}
		if err != nil {
			return nil, fmt.Errorf("instance key: secret_key_file %s: %w", src.File, err)
		}
		return k, nil
	}
	// data_dir/instance.key: the embedded default's key, or one an older
	// moat kept there beside a shared store (still checked against it).
	path := filepath.Join(src.DataDir, FileName)
	k, err := readFile(path)
	switch {
	case err == nil:
		return k, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("instance key: %s: %w", path, err)
	case !src.Embedded:
		return nil, fmt.Errorf("instance key: none given, and the store %s may be shared by several instances: run `moat keys init` once and give every instance the same key as %s or secret_key_file", src.Store, EnvVar)
	case !brandNew:
		return nil, fmt.Errorf("instance key: %s is missing but the store %s already holds secrets sealed with a key: restore that file, or set %s or secret_key_file to the key the store was created with", path, src.Store, EnvVar)
	}
	return create(src.DataDir, path)
}

// opens checks that k opens the store's current signing key: the newest
// one not retired, the one every instance signs with.
func (k *Key) opens(keys []*store.SigningKey, src Source) error {
	var current *store.SigningKey
	for _, r := range keys {
		if r.RetireAt.IsZero() && (current == nil || r.CreatedAt.After(current.CreatedAt)) {
			current = r
		}
	}
	if current == nil {
		return nil
	}
	if _, err := k.Open(current.PrivateKey, SigningKeyAAD(current.ID)); err != nil {
		return fmt.Errorf("instance key: the key from %s cannot open the store's signing key %s: it is not the key this store was created with; give this instance the same %s or secret_key_file as the others", src.origin(), current.ID, EnvVar)
	}
	return nil
}

// origin names where the key came from, for messages.
func (src Source) origin() string {
	switch {
	case src.Env != "":
		return EnvVar
	case src.File != "":
		return "secret_key_file " + src.File
	}
	return filepath.Join(src.DataDir, FileName)
}

// describeStore names cfg's store without its password.
func describeStore(cfg *config.Config) string {
	if cfg.Store == "" {
		return "at " + cfg.StoreDSN()
	}
	if i := strings.Index(cfg.Store, "://"); i >= 0 {
		rest := cfg.Store[i+3:]
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			rest = rest[at+1:]
		}
		if j := strings.IndexAny(rest, "/?"); j >= 0 {
			rest = rest[:j]
		}
		return cfg.Store[:i+3] + rest
	}
	return "at " + cfg.Store
}

// SigningKeyAAD binds a sealed signing key to its key id, so a sealed key
// copied to another record does not open.
func SigningKeyAAD(kid string) []byte { return []byte("moat signing key " + kid) }

func readFile(path string) (*Key, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxFileBytes {
		return nil, fmt.Errorf("longer than %d bytes: a key file holds one line of base64", maxFileBytes)
	}
	raw, err := decode(strings.TrimSpace(string(data)))
	if err != nil {
		return nil, err
	}
	return New(raw)
}

// create writes a fresh key to path, for a brand-new embedded store.
func create(dataDir, path string) (*Key, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("instance key: create data_dir: %w", err)
	}
	err := WriteFile(path)
	if err != nil {
		if _, statErr := os.Stat(path); statErr == nil {
			// Another process created it first: use theirs.
			return readFile(path)
		}
		return nil, err
	}
	return readFile(path)
}

func decode(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if raw, err := enc.DecodeString(s); err == nil {
			if len(raw) != Size {
				return nil, fmt.Errorf("need base64 of %d bytes, got %d bytes (make one with `moat keys init`)", Size, len(raw))
			}
			return raw, nil
		}
	}
	return nil, errors.New("not valid base64 (make a key with `moat keys init`)")
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
