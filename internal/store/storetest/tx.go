package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/store"
)

// directoryChanges are the writes the directory makes, each of which must
// commit together with its audit event or not at all. Each gets a user of
// its own (email, with a session, a token and a second factor) and
// changes it through tx.
var directoryChanges = []struct {
	name   string
	action string
	change func(ctx context.Context, tx store.Tx, u *store.User) error
}{
	{"create a user", "user.create", func(ctx context.Context, tx store.Tx, u *store.User) error {
		return tx.CreateUser(ctx, &store.User{Email: "new-" + u.Email, Groups: []string{"staff"}})
	}},
	{"change a user's groups and disable it", "user.update", func(ctx context.Context, tx store.Tx, u *store.User) error {
		v, err := tx.GetUser(ctx, u.ID)
		if err != nil {
			return err
		}
		v.Groups, v.Disabled = []string{"customer-a"}, true
		return tx.UpdateUser(ctx, v)
	}},
	{"delete a user", "user.delete", func(ctx context.Context, tx store.Tx, u *store.User) error {
		return tx.DeleteUser(ctx, u.ID)
	}},
	{"set a password", "user.password", func(ctx context.Context, tx store.Tx, u *store.User) error {
		ok, err := tx.SetPasswordHash(ctx, u.ID, u.PasswordHash, "$argon2id$new", true)
		if err == nil && !ok {
			err = errors.New("the password hash was not swapped")
		}
		return err
	}},
	{"create a token", "token.create", func(ctx context.Context, tx store.Tx, u *store.User) error {
		return tx.CreateToken(ctx, &store.Token{Hash: "new-" + u.Email, UserID: u.ID, Name: "ci"})
	}},
	{"revoke a token", "token.revoke", func(ctx context.Context, tx store.Tx, u *store.User) error {
		toks, err := tx.ListTokens(ctx, u.ID)
		if err != nil {
			return err
		}
		return tx.RevokeToken(ctx, toks[0].ID, time.Now())
	}},
	{"revoke a user's sessions", "session.revoke_all", func(ctx context.Context, tx store.Tx, u *store.User) error {
		_, err := tx.RevokeUserSessions(ctx, u.ID, time.Now())
		return err
	}},
	{"revoke one session", "session.revoke", func(ctx context.Context, tx store.Tx, u *store.User) error {
		return tx.RevokeSession(ctx, "session-"+u.Email, time.Now())
	}},
	{"reset a second factor", "mfa.reset", func(ctx context.Context, tx store.Tx, u *store.User) error {
		return tx.DeleteTOTP(ctx, u.ID)
	}},
	{"enrol a second factor", "mfa.enrol", func(ctx context.Context, tx store.Tx, u *store.User) error {
		return tx.PutTOTP(ctx, &store.TOTP{UserID: u.ID, Secret: []byte("other"), Confirmed: true, RecoveryCodes: []string{"n1", "n2"}})
	}},
}

// directoryUser creates a user with a session, a token and a second
// factor, for one directory change to work on.
func directoryUser(t *testing.T, s store.Store, email string) *store.User {
	t.Helper()
	u := mustUser(t, s, email, "staff")
	if err := s.CreateSession(ctx(t), &store.Session{IDHash: "session-" + email, UserID: u.ID, Email: email, ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateToken(ctx(t), &store.Token{Hash: "token-" + email, UserID: u.ID, Name: "old"}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutTOTP(ctx(t), &store.TOTP{UserID: u.ID, Secret: []byte("s"), Confirmed: true, RecoveryCodes: []string{"r1"}}); err != nil {
		t.Fatal(err)
	}
	return u
}

// directoryState renders everything a directory change may touch for u,
// and the audit events about u.
func directoryState(t *testing.T, s store.Store, u *store.User) string {
	t.Helper()
	c := context.Background()
	out := ""
	for _, email := range []string{u.Email, "new-" + u.Email} {
		v, err := s.GetUserByEmail(c, email)
		switch {
		case errors.Is(err, store.ErrNotFound):
			out += fmt.Sprintf("user %s: none\n", email)
		case err != nil:
			t.Fatal(err)
		default:
			out += fmt.Sprintf("user %+v\n", *v)
		}
	}
	toks, err := s.ListTokens(c, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range toks {
		out += fmt.Sprintf("token %s %s revoked %v\n", tok.Hash, tok.Name, tok.RevokedAt)
	}
	sessions, err := s.ListSessions(c, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range sessions {
		out += fmt.Sprintf("live session %s\n", x.IDHash)
	}
	if totp, err := s.GetTOTP(c, u.ID); err == nil {
		out += fmt.Sprintf("totp %s %v %v\n", totp.Secret, totp.Confirmed, totp.RecoveryCodes)
	} else if !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	events, err := s.ListAudit(c, store.AuditFilter{Subject: u.Email})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		out += fmt.Sprintf("audit %s %s\n", e.Action, e.Detail)
	}
	return out
}

// testChangeCommitsWithItsAudit: each directory change and its audit event
// are both stored when the transaction commits.
func testChangeCommitsWithItsAudit(t *testing.T, s store.Store) {
	for i, dc := range directoryChanges {
		u := directoryUser(t, s, fmt.Sprintf("commit%d@example.com", i))
		before := directoryState(t, s, u)
		err := s.InTx(ctx(t), func(tx store.Tx) error {
			if err := dc.change(ctx(t), tx, u); err != nil {
				return err
			}
			return tx.Audit(ctx(t), &store.AuditEvent{Actor: "admin@example.com", Action: dc.action, Subject: u.Email})
		})
		if err != nil {
			t.Errorf("%s: %v", dc.name, err)
			continue
		}
		after := directoryState(t, s, u)
		if after == before {
			t.Errorf("%s: nothing changed", dc.name)
		}
		events, _ := s.ListAudit(ctx(t), store.AuditFilter{Subject: u.Email, Action: dc.action})
		if len(events) != 1 {
			t.Errorf("%s: %d audit events, want 1", dc.name, len(events))
		}
	}
}

// testChangeRollsBackWithItsAudit: when anything in the transaction fails
// (the audit insert itself, or a later step) neither the change nor its
// audit event is stored.
func testChangeRollsBackWithItsAudit(t *testing.T, s store.Store) {
	type change = func(context.Context, store.Tx) error
	failures := []struct {
		name string
		run  func(t *testing.T, change change, event *store.AuditEvent) error
	}{
		{"the audit insert fails at the database", func(t *testing.T, change change, event *store.AuditEvent) error {
			// The change is sent, then the context ends before the audit
			// insert: the insert fails in the driver, as it does when the
			// database goes away between the two.
			c, cancel := context.WithCancel(context.Background())
			defer cancel()
			return s.InTx(c, func(tx store.Tx) error {
				if err := change(c, tx); err != nil {
					t.Fatalf("the change itself failed: %v", err)
				}
				cancel()
				return tx.Audit(c, event)
			})
		}},
		{"the audit event is refused", func(t *testing.T, change change, event *store.AuditEvent) error {
			return s.InTx(ctx(t), func(tx store.Tx) error {
				if err := change(ctx(t), tx); err != nil {
					t.Fatalf("the change itself failed: %v", err)
				}
				event.Action = ""
				return tx.Audit(ctx(t), event)
			})
		}},
		{"a step after the audit fails", func(t *testing.T, change change, event *store.AuditEvent) error {
			return s.InTx(ctx(t), func(tx store.Tx) error {
				if err := change(ctx(t), tx); err != nil {
					t.Fatalf("the change itself failed: %v", err)
				}
				if err := tx.Audit(ctx(t), event); err != nil {
					return err
				}
				return errors.New("the caller gives up")
			})
		}},
	}
	for fi, f := range failures {
		for i, dc := range directoryChanges {
			u := directoryUser(t, s, fmt.Sprintf("rollback%d-%d@example.com", fi, i))
			before := directoryState(t, s, u)
			// The event is about the change's user, so one left behind
			// shows in the state.
			event := &store.AuditEvent{Actor: "admin@example.com", Action: dc.action, Subject: u.Email}
			err := f.run(t, func(c context.Context, tx store.Tx) error { return dc.change(c, tx, u) }, event)
			if err == nil {
				t.Errorf("%s, %s: InTx succeeded", f.name, dc.name)
			}
			if after := directoryState(t, s, u); after != before {
				t.Errorf("%s, %s: the failed transaction left changes:\nbefore:\n%safter:\n%s", f.name, dc.name, before, after)
			}
		}
	}
}

// testTxSeesItsOwnWrites: reads through tx see what it wrote (on SQLite
// they must not go to the read pool), and no one else does until it
// commits.
func testTxSeesItsOwnWrites(t *testing.T, s store.Store) {
	err := s.InTx(ctx(t), func(tx store.Tx) error {
		if err := tx.CreateUser(ctx(t), &store.User{Email: "inside@example.com", Groups: []string{"g"}}); err != nil {
			return err
		}
		u, err := tx.GetUserByEmail(ctx(t), "inside@example.com")
		if err != nil {
			return fmt.Errorf("the transaction cannot read its own write: %w", err)
		}
		if groups, err := tx.ListGroups(ctx(t)); err != nil || len(groups["g"]) != 1 {
			return fmt.Errorf("groups inside = %v, %v", groups, err)
		}
		if _, err := s.GetUser(ctx(t), u.ID); !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("another reader saw the uncommitted user: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetUserByEmail(ctx(t), "inside@example.com"); err != nil {
		t.Errorf("after commit: %v", err)
	}
}
