package certs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/auth/instancekey"
	"github.com/moat-dev/moat/internal/config"
)

func TestStorageHasFileSemantics(t *testing.T) {
	logger, _ := newLogger()
	s := newStorage(newStore(t), sealer, logger)
	ctx := t.Context()
	for _, k := range []string{"certificates/ca/a.example/a.example.crt", "certificates/ca/a.example/a.example.key", "certificates/ca/ab.example/ab.example.crt", "acme/ca/users/x/x.json"} {
		if err := s.Store(ctx, k, []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	if v, err := s.Load(ctx, "acme/ca/users/x/x.json"); err != nil || string(v) != "acme/ca/users/x/x.json" {
		t.Errorf("Load = %q, %v", v, err)
	}
	if _, err := s.Load(ctx, "acme/ca/users/x"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load of a directory: err = %v, want fs.ErrNotExist", err)
	}

	file, err := s.Stat(ctx, "certificates/ca/a.example/a.example.key")
	if err != nil || !file.IsTerminal || file.Size <= int64(len("certificates/ca/a.example/a.example.key")) || file.Modified.IsZero() {
		t.Errorf("Stat(file) = %+v, %v", file, err)
	}
	dir, err := s.Stat(ctx, "certificates/ca/a.example")
	if err != nil || dir.IsTerminal || dir.Modified.IsZero() {
		t.Errorf("Stat(dir) = %+v, %v", dir, err)
	}
	// "certificates/ca/a" is a prefix of a key, not a directory.
	if _, err := s.Stat(ctx, "certificates/ca/a"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat(partial name): err = %v, want fs.ErrNotExist", err)
	}
	if !s.Exists(ctx, "certificates") || s.Exists(ctx, "certificates/ca/a") || s.Exists(ctx, "nothing") {
		t.Error("Exists disagrees with Stat")
	}

	for _, tc := range []struct {
		dir       string
		recursive bool
		want      string
	}{
		{"certificates/ca", false, "[certificates/ca/a.example certificates/ca/ab.example]"},
		{"certificates/ca/a.example", false, "[certificates/ca/a.example/a.example.crt certificates/ca/a.example/a.example.key]"},
		{"certificates", true, "[certificates/ca certificates/ca/a.example certificates/ca/a.example/a.example.crt certificates/ca/a.example/a.example.key certificates/ca/ab.example certificates/ca/ab.example/ab.example.crt]"},
	} {
		got, err := s.List(ctx, tc.dir, tc.recursive)
		if err != nil || fmt.Sprint(got) != tc.want {
			t.Errorf("List(%q, %v) = %v, %v; want %s", tc.dir, tc.recursive, got, err, tc.want)
		}
	}
	if _, err := s.List(ctx, "certificates/ca/a", false); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("List of no directory: err = %v, want fs.ErrNotExist", err)
	}

	if err := s.Delete(ctx, "certificates/ca/a.example"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.List(ctx, "certificates/ca", false); fmt.Sprint(got) != "[certificates/ca/ab.example]" {
		t.Errorf("after deleting a directory: %v", got)
	}
	if err := s.Delete(ctx, "certificates/ca/a.example"); err != nil {
		t.Errorf("deleting what is gone: %v", err)
	}
}

func TestStorageLockIsHeldByOneInstanceAtATime(t *testing.T) {
	st := newStore(t)
	logger, _ := newLogger()
	a, b := newStorage(st, sealer, logger), newStorage(st, sealer, logger)
	ctx := t.Context()
	if err := a.Lock(ctx, "issue_cert_a.example"); err != nil {
		t.Fatal(err)
	}
	// b waits while a holds it.
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if err := b.Lock(short, "issue_cert_a.example"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("b took a held lock: err = %v", err)
	}
	got := make(chan error, 1)
	go func() { got <- b.Lock(ctx, "issue_cert_a.example") }()
	if err := a.Unlock(ctx, "issue_cert_a.example"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("b did not take the lock a released")
	}
	if err := b.Unlock(ctx, "issue_cert_a.example"); err != nil {
		t.Fatal(err)
	}
}

func TestStorageLockOfACrashedInstanceExpires(t *testing.T) {
	saved := lockLease
	lockLease = 300 * time.Millisecond
	t.Cleanup(func() { lockLease = saved })
	st := newStore(t)
	logger, _ := newLogger()
	// A holder that refreshes keeps the lock past several leases.
	live, other := newStorage(st, sealer, logger), newStorage(st, sealer, logger)
	if err := live.Lock(t.Context(), "renew"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*lockLease)
	defer cancel()
	if err := other.Lock(ctx, "renew"); err == nil {
		t.Fatal("a refreshed lock was taken over")
	}
	// One that crashed (took the lock straight in the store, so nothing
	// refreshes it) loses it once the lease has run out.
	if ok, err := st.TryLock(t.Context(), keyPrefix+"obtain", "crashed", lockLease); !ok || err != nil {
		t.Fatal(ok, err)
	}
	wait, cancelWait := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancelWait()
	if err := other.Lock(wait, "obtain"); err != nil {
		t.Fatalf("the lock of a crashed holder was never freed: %v", err)
	}
}

// TestTheStoreHoldsNoPrivateKeyInTheClear pins that certificates and their
// keys are sealed with the instance key in the shared database, and that an
// instance with another key cannot read them.
func TestTheStoreHoldsNoPrivateKeyInTheClear(t *testing.T) {
	st := newStore(t)
	s, _ := newSource(t, config.TLS{SelfSigned: true}, st, []string{"dash.example.com"})
	if s.Kind() != "self_signed" {
		t.Fatalf("kind %q", s.Kind())
	}
	blobs, err := st.ListBlobs(context.Background(), keyPrefix)
	if err != nil || len(blobs) == 0 {
		t.Fatalf("ListBlobs: %v, %d blobs", err, len(blobs))
	}
	for _, b := range blobs {
		v, _, err := st.GetBlob(context.Background(), b.Key)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(v, []byte("PRIVATE KEY")) || bytes.Contains(v, []byte("CERTIFICATE")) {
			t.Errorf("%s is stored in the clear", b.Key)
		}
	}
	other, err := instancekey.New(bytes.Repeat([]byte{9}, instancekey.Size))
	if err != nil {
		t.Fatal(err)
	}
	logger, _ := newLogger()
	wrong := newStorage(st, other, logger)
	for _, b := range blobs {
		if _, err := wrong.Load(context.Background(), strings.TrimPrefix(b.Key, keyPrefix)); err == nil {
			t.Errorf("%s opened with another instance key", b.Key)
		}
	}
}
