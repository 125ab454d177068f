package directory

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/auth/password"
	"github.com/moat-dev/moat/internal/store"
)

// A person a provider vouched for gets one account at their first
// sign-in, however many sign-ins race to create it, and a disabled account
// is refused.
func TestAFirstSignInWithAProviderCreatesOneAccount(t *testing.T) {
	d := newDirectory(t)
	ctx := context.Background()
	users := make([]*store.User, 4)
	var wg sync.WaitGroup
	for i := range users {
		wg.Go(func() {
			u, err := d.ProviderUser(ctx, Actor{ClientIP: "192.0.2.1"}, "ada@example.com", "Ada", "google")
			if err != nil {
				t.Error(err)
			}
			users[i] = u
		})
	}
	wg.Wait()
	for _, u := range users {
		if u == nil || u.ID != users[0].ID || u.PasswordHash != "" || u.Name != "Ada" {
			t.Fatalf("racing first sign-ins got %+v, want one account without a password", users)
		}
	}
	events, _ := d.Store.ListAudit(ctx, store.AuditFilter{Action: "user.create"})
	if len(events) != 1 || events[0].Actor != "ada@example.com" || events[0].ClientIP != "192.0.2.1" || events[0].Detail != "first sign-in with google" {
		t.Fatalf("audit = %+v, want one user.create by ada from her address", events)
	}
	if _, _, err := d.SetDisabled(ctx, Actor{Name: "admin"}, users[0].ID, true); err != nil {
		t.Fatal(err)
	}
	if _, err := d.ProviderUser(ctx, Actor{}, "ada@example.com", "Ada", "google"); !errors.Is(err, ErrDisabled) {
		t.Fatalf("a disabled account signing in: %v, want ErrDisabled", err)
	}
}

// A password change keeps to the policy, ends every session of the user,
// and loses to an admin's reset made after the current password was
// checked.
func TestAPasswordChangeKeepsThePolicyAndLosesToAResetInBetween(t *testing.T) {
	ctx := context.Background()
	var ended []Ended
	d := newDirectory(t)
	d.Ended = func(e Ended) { ended = append(ended, e) }
	u, _, err := d.CreateUser(ctx, Actor{Name: "admin"}, NewUser{Email: "ada@example.com", Password: "the first passphrase"})
	if err != nil {
		t.Fatal(err)
	}
	sess := &store.Session{IDHash: "a", UserID: u.ID, Email: u.Email, ExpiresAt: time.Now().Add(time.Hour)}
	if err := d.Store.CreateSession(ctx, sess); err != nil {
		t.Fatal(err)
	}
	me := Actor{UserID: u.ID, Name: u.Email}
	var pe *password.PolicyError
	if _, _, err := d.ChangePassword(ctx, me, u, "short"); !errors.As(err, &pe) {
		t.Fatalf("a short password: %v, want a policy error", err)
	}
	changed, n, err := d.ChangePassword(ctx, me, u, "the second passphrase")
	if err != nil || n != 1 || changed.PasswordHash == u.PasswordHash || changed.MustChangePassword {
		t.Fatalf("ChangePassword = %+v, %d, %v", changed, n, err)
	}
	if len(ended) != 1 || !slices.Equal(ended[0].Sessions, []string{"a"}) || !slices.Equal(ended[0].Users, []string{u.ID}) {
		t.Fatalf("ended %+v, want the session and the user", ended)
	}
	// u still carries the first hash: the check it stands for is stale.
	if _, _, err := d.ChangePassword(ctx, me, u, "the third passphrase"); !errors.Is(err, ErrStalePassword) {
		t.Fatalf("a change over a stale check: %v, want ErrStalePassword", err)
	}
	if got, _ := d.User(ctx, u.ID); got.PasswordHash != changed.PasswordHash {
		t.Fatal("the stale change replaced the password")
	}
}

// An event that changes nothing is written with its actor ("anonymous"
// for nobody), and a store that cannot take it fails nobody.
func TestRecordWritesTheEventAndNeverFails(t *testing.T) {
	d := newDirectory(t)
	ctx := context.Background()
	d.Record(ctx, Actor{ClientIP: "192.0.2.1", RequestID: "r1"}, "login.failure", "", "passkey: invalid")
	events, _ := d.Store.ListAudit(ctx, store.AuditFilter{Action: "login.failure"})
	if len(events) != 1 || events[0].Actor != "anonymous" || events[0].ClientIP != "192.0.2.1" || events[0].Detail != "passkey: invalid" {
		t.Fatalf("audit = %+v", events)
	}
	broken := *d
	broken.Store = auditFails{d.Store}
	broken.Record(ctx, Actor{Name: "ada@example.com"}, "logout", "ada@example.com", "") // logs, returns
}

// Issue 12 #5: a provider's group with a comma would reach the app as two.
func TestKeepProviderGroupsDropsWhatTheHeaderCannotCarry(t *testing.T) {
	d := newDirectory(t)
	if got := d.KeepProviderGroups("google", "ada@example.com", []string{"customer-a", "moat-ops,staff", "data team"}); !slices.Equal(got, []string{"customer-a", "data team"}) {
		t.Fatalf("kept %v", got)
	}
}
