package directory

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/auth/password"
	"github.com/moat-dev/moat/internal/store"
)

func newDirectory(t *testing.T) *Directory {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "moat.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	fast := password.NewLimiter(1, time.Second)
	return &Directory{Store: st, AdminGroup: "moat-admins", Passwords: Passwords{Limiter: fast, Policy: password.Policy{MinLength: 12}}}
}

// Issue 11: a token's kind was a "moat:" name prefix decoded in four
// places (sign-in, console, account page, CLI), so a personal token named
// "moat:set-password" was hidden and a name decided what a row opened. The
// kind is a column now: names are only labels.
func TestATokensKindIsAColumnNotANamePrefix(t *testing.T) {
	d := newDirectory(t)
	ctx := context.Background()
	u, _, err := d.CreateUser(ctx, Actor{Name: "test"}, NewUser{Email: "alice@example.com", Mode: ModeLink})
	if err != nil {
		t.Fatal(err)
	}
	_, tok, err := d.CreateToken(ctx, Actor{Name: "test"}, u.ID, "moat:set-password", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	list, err := d.Tokens(ctx, u.ID)
	if err != nil || len(list) != 1 || list[0].ID != tok.ID || list[0].Kind != store.TokenPersonal {
		t.Fatalf("personal tokens = %+v, %v; want the one named like a link", list, err)
	}
	all, _ := d.Store.ListTokens(ctx, u.ID)
	var link *store.Token
	for _, x := range all {
		if x.Kind == store.TokenSetPassword {
			link = x
		}
	}
	if link == nil {
		t.Fatal("the set-password link was not stored as one")
	}
	if _, err := d.RevokeToken(ctx, Actor{Name: "test"}, u.ID, link.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoking a link as a personal token: %v, want not found", err)
	}
}

// An actor cannot lock themselves out: disable, delete or leave the admin
// group of their own account.
func TestAnActorCannotLockThemselvesOut(t *testing.T) {
	d := newDirectory(t)
	ctx := context.Background()
	u, _, err := d.CreateUser(ctx, Actor{Name: "test"}, NewUser{Email: "root@example.com", Groups: []string{"moat-admins"}})
	if err != nil {
		t.Fatal(err)
	}
	me := Actor{UserID: u.ID, Name: u.Email}
	var rf *Refusal
	if _, _, err := d.SetDisabled(ctx, me, u.ID, true); !errors.As(err, &rf) || rf.Kind != Conflict {
		t.Errorf("disable self: %v", err)
	}
	if _, _, err := d.DeleteUser(ctx, me, u.ID); !errors.As(err, &rf) || rf.Kind != Conflict {
		t.Errorf("delete self: %v", err)
	}
	if _, err := d.UpdateUser(ctx, me, u.ID, nil, []string{"staff"}, true); !errors.As(err, &rf) || rf.Kind != Conflict {
		t.Errorf("leave the admin group: %v", err)
	}
	if _, _, err := d.SetDisabled(ctx, Actor{Name: "cli"}, u.ID, true); err != nil {
		t.Errorf("the CLI disabling the admin: %v", err)
	}
}
