package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/store"
)

func blobKeys(infos []store.BlobInfo) []string {
	keys := make([]string, len(infos))
	for i, b := range infos {
		keys[i] = b.Key
	}
	return keys
}

func testBlobs(t *testing.T, s store.Store) {
	if _, _, err := s.GetBlob(ctx(t), "certs/a.crt"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a missing blob: err = %v, want ErrNotFound", err)
	}
	before := time.Now().Add(-time.Second)
	for _, k := range []string{"certs/a/a.crt", "certs/a/a.key", "certs/ab/ab.crt", "certs_other", "acme/users/x.json", "100%_x"} {
		if err := s.PutBlob(ctx(t), k, []byte("value of "+k)); err != nil {
			t.Fatal(err)
		}
	}
	v, modified, err := s.GetBlob(ctx(t), "certs/a/a.key")
	if err != nil || string(v) != "value of certs/a/a.key" || modified.Before(before) || modified.After(time.Now().Add(time.Second)) {
		t.Fatalf("GetBlob = %q, %v, %v", v, modified, err)
	}
	// A second put replaces the value.
	if err := s.PutBlob(ctx(t), "certs/a/a.key", []byte{0, 1, 2, 0xff}); err != nil {
		t.Fatal(err)
	}
	if v, _, _ := s.GetBlob(ctx(t), "certs/a/a.key"); !bytes.Equal(v, []byte{0, 1, 2, 0xff}) {
		t.Errorf("after a replace: %v", v)
	}
	// An empty value is a value.
	if err := s.PutBlob(ctx(t), "empty", nil); err != nil {
		t.Fatal(err)
	}
	if v, _, err := s.GetBlob(ctx(t), "empty"); err != nil || v == nil || len(v) != 0 {
		t.Errorf("empty blob: %v, %v", v, err)
	}

	for _, tc := range []struct{ prefix, want string }{
		{"certs/a/", "[certs/a/a.crt certs/a/a.key]"},
		{"certs/a", "[certs/a/a.crt certs/a/a.key certs/ab/ab.crt]"},
		{"certs", "[certs/a/a.crt certs/a/a.key certs/ab/ab.crt certs_other]"},
		{"100%", "[100%_x]"},
		{"10_%", "[]"},
		{"nothing/", "[]"},
	} {
		got, err := s.ListBlobs(ctx(t), tc.prefix)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(blobKeys(got)) != tc.want {
			t.Errorf("ListBlobs(%q) = %v, want %s", tc.prefix, blobKeys(got), tc.want)
		}
	}
	infos, _ := s.ListBlobs(ctx(t), "certs/a/a.key")
	if len(infos) != 1 || infos[0].Size != 4 || infos[0].Modified.Before(before) {
		t.Errorf("info = %+v, want 4 bytes and a modification time", infos)
	}

	// Deleting a "directory" takes what lies under it, not its siblings
	// that merely share the prefix.
	n, err := s.DeleteBlobs(ctx(t), "certs/a")
	if err != nil || n != 2 {
		t.Fatalf("DeleteBlobs(certs/a) = %d, %v; want 2", n, err)
	}
	all, _ := s.ListBlobs(ctx(t), "")
	if got := fmt.Sprint(blobKeys(all)); got != "[100%_x acme/users/x.json certs/ab/ab.crt certs_other empty]" {
		t.Errorf("left after the delete: %s", got)
	}
	if n, err := s.DeleteBlobs(ctx(t), "certs_other"); err != nil || n != 1 {
		t.Errorf("DeleteBlobs(file) = %d, %v", n, err)
	}
	if n, err := s.DeleteBlobs(ctx(t), "gone"); err != nil || n != 0 {
		t.Errorf("DeleteBlobs(missing) = %d, %v; want 0 and no error", n, err)
	}

	big := make([]byte, store.MaxBlobBytes+1)
	if err := s.PutBlob(ctx(t), "big", big); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("a blob over the bound: err = %v", err)
	}
	if err := s.PutBlob(ctx(t), "", []byte("x")); err == nil {
		t.Error("an empty key was accepted")
	}
}

func testLocks(t *testing.T, s store.Store) {
	const lease = time.Minute
	ok, err := s.TryLock(ctx(t), "issue_cert_a", "one", lease)
	if err != nil || !ok {
		t.Fatalf("a free lock: %v, %v", ok, err)
	}
	if ok, err := s.TryLock(ctx(t), "issue_cert_a", "two", lease); err != nil || ok {
		t.Fatalf("a held lock was taken by another owner: %v, %v", ok, err)
	}
	if ok, err := s.TryLock(ctx(t), "issue_cert_b", "two", lease); err != nil || !ok {
		t.Fatalf("another name is another lock: %v, %v", ok, err)
	}
	if ok, err := s.TryLock(ctx(t), "issue_cert_a", "one", lease); err != nil || !ok {
		t.Fatalf("the holder taking its lock again: %v, %v", ok, err)
	}
	if err := s.RefreshLock(ctx(t), "issue_cert_a", "one", lease); err != nil {
		t.Fatalf("refresh by the holder: %v", err)
	}
	if err := s.RefreshLock(ctx(t), "issue_cert_a", "two", lease); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("refresh by another owner: err = %v, want ErrNotFound", err)
	}
	// Unlocking someone else's lock changes nothing.
	if err := s.Unlock(ctx(t), "issue_cert_a", "two"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.TryLock(ctx(t), "issue_cert_a", "three", lease); ok {
		t.Fatal("an unlock by a non-holder freed the lock")
	}
	if err := s.Unlock(ctx(t), "issue_cert_a", "one"); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.TryLock(ctx(t), "issue_cert_a", "three", lease); err != nil || !ok {
		t.Fatalf("a released lock: %v, %v", ok, err)
	}
	if err := s.Unlock(ctx(t), "never_taken", "one"); err != nil {
		t.Errorf("unlocking a free lock: %v", err)
	}

	// A holder that stops refreshing loses the lock when its lease ends.
	if ok, _ := s.TryLock(ctx(t), "short", "crashed", 50*time.Millisecond); !ok {
		t.Fatal("short lock not taken")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		ok, err := s.TryLock(ctx(t), "short", "next", lease)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a lock whose lease ran out was never taken over")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := s.RefreshLock(ctx(t), "short", "crashed", lease); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the old holder refreshed a lock taken over: err = %v", err)
	}
	if _, err := s.TryLock(ctx(t), "x", "", lease); err == nil {
		t.Error("a lock without an owner was accepted")
	}
}

func testLockRace(t *testing.T, s store.Store) {
	const racers = 8
	for round := range 5 {
		name := fmt.Sprint("race-", round)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var winners []string
		for i := range racers {
			wg.Go(func() {
				owner := fmt.Sprint("instance-", i)
				ok, err := s.TryLock(t.Context(), name, owner, time.Minute)
				if err != nil {
					t.Error(err)
					return
				}
				if ok {
					mu.Lock()
					winners = append(winners, owner)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if len(winners) != 1 {
			t.Fatalf("round %d: winners %v, want exactly one", round, slices.Sorted(slices.Values(winners)))
		}
	}
}
