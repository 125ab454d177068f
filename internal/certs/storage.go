package certs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/moat-dev/moat/internal/store"
)

// Store is where certificates live: moat's store, which store.Store
// satisfies, so that every instance on one database serves the same
// certificates and one of them at a time orders or renews each.
type Store interface {
	PutBlob(ctx context.Context, key string, value []byte) error
	GetBlob(ctx context.Context, key string) ([]byte, time.Time, error)
	ListBlobs(ctx context.Context, prefix string) ([]store.BlobInfo, error)
	DeleteBlobs(ctx context.Context, key string) (int, error)
	TryLock(ctx context.Context, name, owner string, ttl time.Duration) (bool, error)
	RefreshLock(ctx context.Context, name, owner string, ttl time.Duration) error
	Unlock(ctx context.Context, name, owner string) error
}

// Sealer encrypts and authenticates a blob (instancekey.Key), bound to
// its name by aad, so the database holds no private key in the clear and a
// blob cannot be passed off under another name.
type Sealer interface {
	Seal(plaintext, aad []byte) ([]byte, error)
	Open(ciphertext, aad []byte) ([]byte, error)
}

// keyPrefix puts every blob and lock of this package under tls/ in the
// store, beside whatever else may share it.
const keyPrefix = "tls/"

// Lock timing. A holder refreshes its lease every lockLease/3; one that
// crashed blocks the others for at most lockLease. Waiters ask again every
// lockPoll: locks guard rare, slow work (ordering a certificate), so a
// second of delay costs nothing.
var (
	lockLease = time.Minute
	lockPoll  = time.Second
)

// storage is certmagic.Storage (a key/value store with file-system
// semantics and a cluster-wide lock) on top of moat's store. certmagic
// keeps there the ACME account, the certificates and their keys, and the
// answers to pending challenges, so that whichever instance the CA reaches
// can answer it.
type storage struct {
	st     Store
	sealer Sealer
	owner  string // this process's name on the locks it holds
	logger *slog.Logger

	mu   sync.Mutex
	held map[string]context.CancelFunc // lock name → stops its refresher
}

var _ certmagic.Storage = (*storage)(nil)

func newStorage(st Store, sealer Sealer, logger *slog.Logger) *storage {
	host, _ := os.Hostname()
	var b [6]byte
	_, _ = rand.Read(b[:])
	return &storage{
		st:     st,
		sealer: sealer,
		owner:  fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b[:])),
		logger: logger,
		held:   map[string]context.CancelFunc{},
	}
}

// String names the storage in certmagic's logs.
func (s *storage) String() string { return "moat store" }

func (s *storage) Store(ctx context.Context, key string, value []byte) error {
	sealed, err := s.sealer.Seal(value, blobAAD(key))
	if err != nil {
		return fmt.Errorf("seal %s: %w", key, err)
	}
	return s.st.PutBlob(ctx, keyPrefix+key, sealed)
}

func (s *storage) Load(ctx context.Context, key string) ([]byte, error) {
	v, _, err := s.st.GetBlob(ctx, keyPrefix+key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fs.ErrNotExist
	}
	if err != nil {
		return nil, err
	}
	plain, err := s.sealer.Open(v, blobAAD(key))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", errUnsealable, key, err)
	}
	return plain, nil
}

// errUnsealable: a stored blob does not open with this instance's key
// (corrupted, or sealed by an instance with another key, which moat refuses
// at start-up).
var errUnsealable = errors.New("a stored certificate blob does not open with the instance key")

// blobAAD binds a sealed blob to its name.
func blobAAD(key string) []byte { return []byte("moat tls " + key) }

// Delete deletes key and, if it is a directory, everything under it.
func (s *storage) Delete(ctx context.Context, key string) error {
	_, err := s.st.DeleteBlobs(ctx, keyPrefix+key)
	return err
}

func (s *storage) Exists(ctx context.Context, key string) bool {
	_, err := s.Stat(ctx, key)
	return err == nil
}

// Stat describes key: a file when a blob has exactly that key, a directory
// when blobs lie under key + "/". A file's Size is what the store holds:
// the sealed value, a little longer than what Load returns.
func (s *storage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	infos, err := s.st.ListBlobs(ctx, keyPrefix+key)
	if err != nil {
		return certmagic.KeyInfo{}, err
	}
	dir := certmagic.KeyInfo{Key: key}
	for _, b := range infos {
		rest := strings.TrimPrefix(b.Key, keyPrefix+key)
		switch {
		case rest == "":
			return certmagic.KeyInfo{Key: key, Modified: b.Modified, Size: b.Size, IsTerminal: true}, nil
		case strings.HasPrefix(rest, "/"):
			if b.Modified.After(dir.Modified) {
				dir.Modified = b.Modified
			}
			dir.Size++
		}
	}
	if dir.Size == 0 {
		return certmagic.KeyInfo{}, fs.ErrNotExist
	}
	dir.Size = 0
	return dir, nil
}

// List lists the keys in the directory dir: its immediate entries, or with
// recursive every file and directory below it, as certmagic's FileStorage
// does.
func (s *storage) List(ctx context.Context, dir string, recursive bool) ([]string, error) {
	infos, err := s.st.ListBlobs(ctx, keyPrefix+dir+"/")
	if err != nil {
		return nil, err
	}
	var keys []string
	seen := map[string]bool{}
	add := func(k string) {
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	for _, b := range infos {
		rest := strings.TrimPrefix(b.Key, keyPrefix+dir+"/")
		parts := strings.Split(rest, "/")
		if !recursive {
			add(dir + "/" + parts[0])
			continue
		}
		for i := range parts {
			add(dir + "/" + strings.Join(parts[:i+1], "/"))
		}
	}
	if len(keys) == 0 {
		return nil, fs.ErrNotExist
	}
	return keys, nil
}

// Lock waits until this process holds the lock called name, or ctx ends.
// While it is held, its lease is refreshed in the background.
func (s *storage) Lock(ctx context.Context, name string) error {
	lockName := keyPrefix + name
	waiting := false
	for {
		ok, err := s.st.TryLock(ctx, lockName, s.owner, lockLease)
		if err != nil {
			return err
		}
		if ok {
			break
		}
		if !waiting {
			waiting = true
			s.logger.Info("waiting for another instance to finish with the certificate lock", "lock", name)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for lock %s: %w", name, ctx.Err())
		case <-time.After(lockPoll):
		}
	}
	refreshCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	s.mu.Lock()
	if prev := s.held[name]; prev != nil {
		prev()
	}
	s.held[name] = stop
	s.mu.Unlock()
	go s.refresh(refreshCtx, lockName)
	s.logger.Info("took the certificate lock", "lock", name, "owner", s.owner)
	return nil
}

// refresh extends the lease on lockName until ctx ends. If the lock was
// lost (the store was unreachable for a whole lease), it says so and
// stops: certmagic checks the store again before it writes, so the worst
// case is a second order, not a broken certificate.
func (s *storage) refresh(ctx context.Context, lockName string) {
	t := time.NewTicker(lockLease / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.st.RefreshLock(ctx, lockName, s.owner, lockLease); err != nil && ctx.Err() == nil {
			s.logger.Warn("could not extend the certificate lock", "lock", strings.TrimPrefix(lockName, keyPrefix), "err", err)
			if errors.Is(err, store.ErrNotFound) {
				return
			}
		}
	}
}

// Unlock releases the lock called name.
func (s *storage) Unlock(ctx context.Context, name string) error {
	s.mu.Lock()
	if stop := s.held[name]; stop != nil {
		stop()
		delete(s.held, name)
	}
	s.mu.Unlock()
	if err := s.st.Unlock(ctx, keyPrefix+name, s.owner); err != nil {
		return err
	}
	s.logger.Info("released the certificate lock", "lock", name)
	return nil
}
