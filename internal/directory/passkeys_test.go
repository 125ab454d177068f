package directory

import (
	"context"
	"errors"
	"testing"

	"github.com/moat-dev/moat/internal/store"
)

func TestAPersonRemovesOnlyTheirOwnPasskeyAndAnAdminResetsAll(t *testing.T) {
	d := newDirectory(t)
	ctx := context.Background()
	alice, _, err := d.CreateUser(ctx, Actor{Name: "test"}, NewUser{Email: "alice@example.com", Mode: ModeLink})
	if err != nil {
		t.Fatal(err)
	}
	bob, _, err := d.CreateUser(ctx, Actor{Name: "test"}, NewUser{Email: "bob@example.com", Mode: ModeLink})
	if err != nil {
		t.Fatal(err)
	}
	add := func(u *store.User, cred, host string) *store.Passkey {
		p := &store.Passkey{UserID: u.ID, CredentialID: cred, RPID: host, Name: "key " + cred, Record: []byte("sealed")}
		if err := d.Store.AddPasskey(ctx, p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	laptop := add(alice, "c1", "dash.example.com")
	add(alice, "c2", "reports.example.com")
	bobs := add(bob, "c3", "dash.example.com")

	if _, err := d.RemovePasskey(ctx, Actor{Name: alice.Email}, alice.ID, bobs.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("alice removing bob's passkey: %v, want not found", err)
	}
	if _, err := d.RemovePasskey(ctx, Actor{Name: alice.Email}, alice.ID, laptop.ID); err != nil {
		t.Fatal(err)
	}
	if list, _ := d.Passkeys(ctx, alice.ID); len(list) != 1 || list[0].CredentialID != "c2" {
		t.Fatalf("alice's passkeys after removing one: %+v", list)
	}
	if _, n, err := d.ResetPasskeys(ctx, Actor{Name: "root@example.com"}, alice.ID); err != nil || n != 1 {
		t.Fatalf("reset: %d, %v; want 1 removed", n, err)
	}
	if list, _ := d.Passkeys(ctx, bob.ID); len(list) != 1 {
		t.Error("resetting alice's passkeys touched bob's")
	}
	for action, actor := range map[string]string{"passkey.remove": alice.Email, "passkey.reset": "root@example.com"} {
		ev, _ := d.Store.ListAudit(ctx, store.AuditFilter{Action: action})
		if len(ev) != 1 || ev[0].Actor != actor || ev[0].Subject != alice.Email {
			t.Errorf("%s audit events %+v, want one by %s about alice", action, ev, actor)
		}
	}
	if _, _, err := d.ResetPasskeys(ctx, Actor{Name: "root@example.com"}, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("resetting an unknown user's passkeys: %v", err)
	}
}
