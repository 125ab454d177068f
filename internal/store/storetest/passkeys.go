package storetest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/store"
)

func mustPasskey(t *testing.T, s store.Store, userID, credID, rpID, name string) *store.Passkey {
	t.Helper()
	p := &store.Passkey{UserID: userID, CredentialID: credID, RPID: rpID, Name: name, Record: []byte("sealed " + credID)}
	if err := s.AddPasskey(ctx(t), p); err != nil {
		t.Fatalf("add passkey %s: %v", credID, err)
	}
	return p
}

func testPasskeys(t *testing.T, s store.Store) {
	alice := mustUser(t, s, "alice@example.com")
	bob := mustUser(t, s, "bob@example.com")
	first := mustPasskey(t, s, alice.ID, "cred-1", "dash.example.com", "Laptop")
	second := mustPasskey(t, s, alice.ID, "cred-2", "other.example.com", "Phone")
	mustPasskey(t, s, bob.ID, "cred-3", "dash.example.com", "Key")
	if first.ID == "" || len(first.ID) < 32 || first.CreatedAt.IsZero() || first.ID == second.ID {
		t.Fatalf("ids and times not set: %+v %+v", first, second)
	}
	if err := s.AddPasskey(ctx(t), &store.Passkey{UserID: bob.ID, CredentialID: "cred-1", RPID: "dash.example.com", Record: []byte("x")}); !errors.Is(err, store.ErrDuplicate) {
		t.Errorf("a credential id stored twice (for another user): err = %v, want ErrDuplicate", err)
	}
	list, err := s.ListPasskeys(ctx(t), alice.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].CredentialID != "cred-1" || list[1].CredentialID != "cred-2" {
		t.Fatalf("alice's passkeys = %+v, want cred-1 then cred-2", list)
	}
	got := list[0]
	if got.UserID != alice.ID || got.RPID != "dash.example.com" || got.Name != "Laptop" || string(got.Record) != "sealed cred-1" ||
		got.SignCount != 0 || !got.LastUsed.IsZero() || !got.CreatedAt.Equal(first.CreatedAt) {
		t.Errorf("round trip: got %+v, want %+v", got, first)
	}
	byCred, err := s.GetPasskeyByCredentialID(ctx(t), "cred-3")
	if err != nil || byCred.UserID != bob.ID {
		t.Errorf("by credential id: %+v, %v", byCred, err)
	}
	if _, err := s.GetPasskeyByCredentialID(ctx(t), "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown credential id: %v, want ErrNotFound", err)
	}
	if err := s.DeletePasskey(ctx(t), bob.ID, first.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleting another user's passkey: %v, want ErrNotFound", err)
	}
	if err := s.DeletePasskey(ctx(t), alice.ID, first.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeletePasskey(ctx(t), alice.ID, first.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second delete: %v, want ErrNotFound", err)
	}
	if n, err := s.DeleteUserPasskeys(ctx(t), bob.ID); err != nil || n != 1 {
		t.Errorf("delete bob's passkeys: %d, %v; want 1", n, err)
	}
	if list, _ := s.ListPasskeys(ctx(t), bob.ID); len(list) != 0 {
		t.Errorf("bob still has %d passkeys", len(list))
	}
	if err := s.DeleteUser(ctx(t), alice.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetPasskeyByCredentialID(ctx(t), "cred-2"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a deleted user's passkey is still found: %v", err)
	}
}

func testPasskeyCounter(t *testing.T, s store.Store) {
	u := mustUser(t, s, "alice@example.com")
	p := mustPasskey(t, s, u.ID, "cred-1", "dash.example.com", "Laptop")
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name  string
		count uint32
		want  bool
	}{
		{"zero where zero is stored (no counter) is accepted", 0, true},
		{"again zero is accepted", 0, true},
		{"a higher counter is accepted", 5, true},
		{"the same counter again is refused", 5, false},
		{"a lower counter (a clone) is refused", 3, false},
		{"zero after a counter is refused", 0, false},
		{"a higher counter still works", 6, true},
	} {
		ok, err := s.AdvancePasskey(ctx(t), p.ID, tc.count, at)
		if err != nil || ok != tc.want {
			t.Errorf("%s: ok = %v, %v; want %v", tc.name, ok, err, tc.want)
		}
	}
	got, _ := s.GetPasskeyByCredentialID(ctx(t), "cred-1")
	if got.SignCount != 6 || !got.LastUsed.Equal(at) {
		t.Errorf("after uses: count %d, last used %v; want 6 at %v", got.SignCount, got.LastUsed, at)
	}
	if _, err := s.AdvancePasskey(ctx(t), "nope", 9, at); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown passkey: %v, want ErrNotFound", err)
	}
}

func testPasskeyCounterConcurrent(t *testing.T, s store.Store) {
	u := mustUser(t, s, "alice@example.com")
	p := mustPasskey(t, s, u.ID, "cred-1", "dash.example.com", "Laptop")
	var wg sync.WaitGroup
	var mu sync.Mutex
	accepted := 0
	for range 8 {
		wg.Go(func() {
			ok, err := s.AdvancePasskey(context.Background(), p.ID, 7, time.Now())
			if err != nil {
				t.Error(err)
			}
			if ok {
				mu.Lock()
				accepted++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if accepted != 1 {
		t.Errorf("%d of 8 concurrent uses of one counter accepted, want exactly 1", accepted)
	}
}
