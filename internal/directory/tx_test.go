package directory

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/auth/mfa"
	"github.com/moat-dev/moat/internal/auth/password"
	"github.com/moat-dev/moat/internal/store"
	"github.com/moat-dev/moat/internal/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// errAuditDown is the audit write that fails.
var errAuditDown = errors.New("audit log unwritable (test)")

// auditFails is a store whose audit writes fail, inside a transaction and
// outside.
type auditFails struct{ store.Store }

func (s auditFails) InTx(ctx context.Context, fn func(tx store.Tx) error) error {
	return s.Store.InTx(ctx, func(tx store.Tx) error { return fn(auditFailsTx{tx}) })
}

func (auditFails) Audit(context.Context, *store.AuditEvent) error { return errAuditDown }

type auditFailsTx struct{ store.Tx }

func (auditFailsTx) Audit(context.Context, *store.AuditEvent) error { return errAuditDown }

// engines are the two stores the directory runs on.
var engines = []struct {
	name string
	open func(t *testing.T) store.Store
}{
	{"sqlite", func(t *testing.T) store.Store {
		st, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "moat.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		return st
	}},
	{"postgres", func(t *testing.T) store.Store {
		st, err := store.Open(t.Context(), storetest.Postgres(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		return st
	}},
}

// directoryOn returns a directory on st whose Ended hook records what it
// is told.
func directoryOn(st store.Store, ended *[]Ended) *Directory {
	fast := password.NewLimiter(1, time.Second)
	return &Directory{Store: st, AdminGroup: "moat-admins", MFA: mfa.New(st, nil, nil),
		Passwords: Passwords{Limiter: fast, Policy: password.Policy{MinLength: 12}},
		Ended:     func(e Ended) { *ended = append(*ended, e) }, Logger: slog.New(slog.DiscardHandler)}
}

// seeded is a user with two sessions, a personal access token, a pending
// set-password link, a second factor and a passkey, made through a working
// directory.
type seeded struct {
	user               *store.User
	token              *store.Token
	link               string
	sessionA, sessionB string
	passkey            *store.Passkey
}

func seed(t *testing.T, d *Directory, email string) seeded {
	t.Helper()
	ctx := t.Context()
	admin := Actor{Name: "seed"}
	u, issued, err := d.CreateUser(ctx, admin, NewUser{Email: email, Groups: []string{"staff"}, Mode: ModeLink})
	if err != nil {
		t.Fatal(err)
	}
	_, tok, err := d.CreateToken(ctx, admin, u.ID, "ci", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	s := seeded{user: u, token: tok, link: issued.Link}
	for i, h := range []*string{&s.sessionA, &s.sessionB} {
		sum := sha256.Sum256(fmt.Appendf(nil, "%s session %d", email, i))
		*h = hex.EncodeToString(sum[:])
		if err := d.Store.CreateSession(ctx, &store.Session{IDHash: *h, UserID: u.ID, Email: email, ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Store.PutTOTP(ctx, &store.TOTP{UserID: u.ID, Secret: []byte("sealed"), Confirmed: true, RecoveryCodes: []string{"r1"}}); err != nil {
		t.Fatal(err)
	}
	s.passkey = &store.Passkey{UserID: u.ID, CredentialID: "cred-" + u.ID, RPID: "dash.example.com", Name: "laptop", Record: []byte("sealed")}
	if err := d.Store.AddPasskey(ctx, s.passkey); err != nil {
		t.Fatal(err)
	}
	return s
}

// state renders everything a directory change may touch: users, groups,
// sessions, tokens, second factors and the whole audit log.
func state(t *testing.T, st store.Store) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	users, _, err := st.ListUsers(ctx, store.UserFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range users {
		fmt.Fprintf(&b, "user %s %q groups %v disabled %v must-change %v hash %s updated %v\n", u.Email, u.Name, u.Groups, u.Disabled, u.MustChangePassword, u.PasswordHash, u.UpdatedAt.UnixNano())
		sessions, err := st.ListSessions(ctx, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range sessions {
			fmt.Fprintf(&b, "  live session %s\n", s.IDHash)
		}
		toks, err := st.ListTokens(ctx, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, tk := range toks {
			fmt.Fprintf(&b, "  token %s %s %q revoked %v\n", tk.Kind, tk.Hash, tk.Name, !tk.RevokedAt.IsZero())
		}
		if _, err := st.GetTOTP(ctx, u.ID); err == nil {
			b.WriteString("  totp\n")
		} else if !errors.Is(err, store.ErrNotFound) {
			t.Fatal(err)
		}
		keys, err := st.ListPasskeys(ctx, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			fmt.Fprintf(&b, "  passkey %s %s\n", k.Name, k.RPID)
		}
	}
	events, err := st.ListAudit(ctx, store.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		fmt.Fprintf(&b, "audit %s %s %s\n", e.Action, e.Subject, e.Detail)
	}
	return b.String()
}

// directoryWrites are every write of the directory, each made on a seeded
// user by d.
var directoryWrites = []struct {
	name   string
	action string // the audit event it records when it works
	// prepare, when set, readies the seeded user for the write, through
	// a working directory.
	prepare func(ctx context.Context, d *Directory, s seeded) error
	write   func(ctx context.Context, d *Directory, s seeded) error
}{
	{"create a user", "user.create", nil, func(ctx context.Context, d *Directory, s seeded) error {
		_, _, err := d.CreateUser(ctx, Actor{Name: "admin"}, NewUser{Email: "new-" + s.user.Email, Groups: []string{"staff"}, Mode: ModeLink})
		return err
	}},
	{"import a user", "user.import", nil, func(ctx context.Context, d *Directory, s seeded) error {
		_, err := d.ImportUser(ctx, Actor{Name: "cli"}, ImportedUser{Email: "imported-" + s.user.Email, PasswordHash: "$firebase-scrypt$x", From: "firebase"})
		return err
	}},
	{"change groups", "user.groups", nil, func(ctx context.Context, d *Directory, s seeded) error {
		_, err := d.UpdateUser(ctx, Actor{Name: "admin"}, s.user.ID, nil, []string{"customer-a"}, true)
		return err
	}},
	{"rename", "user.update", nil, func(ctx context.Context, d *Directory, s seeded) error {
		name := "Ada L."
		_, err := d.UpdateUser(ctx, Actor{Name: "admin"}, s.user.ID, &name, nil, false)
		return err
	}},
	{"disable", "user.disable", nil, func(ctx context.Context, d *Directory, s seeded) error {
		_, _, err := d.SetDisabled(ctx, Actor{Name: "admin"}, s.user.ID, true)
		return err
	}},
	{"enable", "user.enable", func(ctx context.Context, d *Directory, s seeded) error {
		_, _, err := d.SetDisabled(ctx, Actor{Name: "admin"}, s.user.ID, true)
		return err
	}, func(ctx context.Context, d *Directory, s seeded) error {
		_, _, err := d.SetDisabled(ctx, Actor{Name: "admin"}, s.user.ID, false)
		return err
	}},
	{"delete", "user.delete", nil, func(ctx context.Context, d *Directory, s seeded) error {
		_, _, err := d.DeleteUser(ctx, Actor{Name: "admin"}, s.user.ID)
		return err
	}},
	{"reset the password with a one-time password", "user.reset_password", nil, func(ctx context.Context, d *Directory, s seeded) error {
		_, _, _, err := d.ResetPassword(ctx, Actor{Name: "admin"}, s.user.ID, ModePassword, "")
		return err
	}},
	{"reset the password with a link", "user.reset_password", nil, func(ctx context.Context, d *Directory, s seeded) error {
		_, _, _, err := d.ResetPassword(ctx, Actor{Name: "admin"}, s.user.ID, ModeLink, "")
		return err
	}},
	{"sign out everywhere", "session.revoke_all", nil, func(ctx context.Context, d *Directory, s seeded) error {
		_, _, err := d.RevokeUserSessions(ctx, Actor{Name: "admin"}, s.user.ID)
		return err
	}},
	{"end one session", "session.revoke", nil, func(ctx context.Context, d *Directory, s seeded) error {
		_, err := d.RevokeSession(ctx, Actor{Name: "admin"}, s.sessionA, "")
		return err
	}},
	{"create a token", "token.create", nil, func(ctx context.Context, d *Directory, s seeded) error {
		_, _, err := d.CreateToken(ctx, Actor{Name: "admin"}, s.user.ID, "deploy", time.Hour)
		return err
	}},
	{"revoke a token", "token.revoke", nil, func(ctx context.Context, d *Directory, s seeded) error {
		_, err := d.RevokeToken(ctx, Actor{Name: "admin"}, s.user.ID, s.token.ID)
		return err
	}},
	{"reset the second factor", "mfa.remove", nil, func(ctx context.Context, d *Directory, s seeded) error {
		_, err := d.ResetMFA(ctx, Actor{Name: "admin"}, s.user.ID)
		return err
	}},
	{"remove a passkey", "passkey.remove", nil, func(ctx context.Context, d *Directory, s seeded) error {
		_, err := d.RemovePasskey(ctx, Actor{Name: s.user.Email}, s.user.ID, s.passkey.ID)
		return err
	}},
	{"reset passkeys", "passkey.reset", nil, func(ctx context.Context, d *Directory, s seeded) error {
		_, _, err := d.ResetPasskeys(ctx, Actor{Name: "admin"}, s.user.ID)
		return err
	}},
	{"set the password by link", "password.set_by_link", nil, func(ctx context.Context, d *Directory, s seeded) error {
		ok, err := d.SetPasswordByLink(ctx, Actor{}, s.link, "a brand new passphrase")
		if err == nil && !ok {
			err = errors.New("the link did not work")
		}
		return err
	}},
}

// Issue 9: a user change and its audit event were separate writes, so a
// crash or a failed audit write in between kept the change without its
// event. Every directory write now runs in one transaction with its
// event: when the event cannot be written, the change is rolled back
// whole, nothing is ended on this instance, and the caller gets the error.
func TestAFailingAuditRollsBackTheChange(t *testing.T) {
	for _, eng := range engines {
		t.Run(eng.name, func(t *testing.T) {
			st := eng.open(t)
			for i, w := range directoryWrites {
				t.Run(w.name, func(t *testing.T) {
					ctx := t.Context()
					var ended []Ended
					working := directoryOn(st, &ended)
					s := seed(t, working, fmt.Sprintf("user%d@example.com", i))
					if w.prepare != nil {
						if err := w.prepare(ctx, working, s); err != nil {
							t.Fatal(err)
						}
					}
					before := state(t, st)
					broken := directoryOn(auditFails{st}, &ended)
					broken.MFA = mfa.New(auditFails{st}, nil, nil)
					ended = nil
					if err := w.write(ctx, broken, s); !errors.Is(err, errAuditDown) {
						t.Fatalf("with the audit write failing: %v, want the audit error", err)
					}
					if after := state(t, st); after != before {
						t.Errorf("the change was kept without its audit event:\nbefore:\n%s\nafter:\n%s", before, after)
					}
					if len(ended) != 0 {
						t.Errorf("a rolled-back change ended %+v on this instance", ended)
					}
				})
			}
		})
	}
}

// Each directory write commits with its audit event, and only then tells
// the sign-in what it ended.
func TestAChangeCommitsWithItsAuditAndThenEndsWhatItEnded(t *testing.T) {
	for _, eng := range engines {
		t.Run(eng.name, func(t *testing.T) {
			st := eng.open(t)
			for i, w := range directoryWrites {
				t.Run(w.name, func(t *testing.T) {
					ctx := t.Context()
					var ended []Ended
					d := directoryOn(st, &ended)
					s := seed(t, d, fmt.Sprintf("ok%d@example.com", i))
					if w.prepare != nil {
						if err := w.prepare(ctx, d, s); err != nil {
							t.Fatal(err)
						}
					}
					ended = nil
					if err := w.write(ctx, d, s); err != nil {
						t.Fatal(err)
					}
					events, err := st.ListAudit(ctx, store.AuditFilter{Action: w.action})
					if err != nil {
						t.Fatal(err)
					}
					if !slices.ContainsFunc(events, func(e *store.AuditEvent) bool { return strings.Contains(e.Subject, s.user.Email) }) {
						t.Errorf("no %s audit event about %s", w.action, s.user.Email)
					}
					var sessions, tokens, users []string
					for _, e := range ended {
						sessions, tokens, users = append(sessions, e.Sessions...), append(tokens, e.Tokens...), append(users, e.Users...)
					}
					switch w.action {
					case "user.disable", "user.delete", "user.reset_password", "session.revoke_all", "password.set_by_link":
						slices.Sort(sessions)
						if want := slices.Sorted(slices.Values([]string{s.sessionA, s.sessionB})); !slices.Equal(sessions, want) || !slices.Equal(users, []string{s.user.ID}) {
							t.Errorf("ended sessions %v of users %v, want %v of %s", sessions, users, want, s.user.ID)
						}
					case "session.revoke":
						if !slices.Equal(sessions, []string{s.sessionA}) {
							t.Errorf("ended sessions %v, want %s", sessions, s.sessionA)
						}
					case "token.revoke":
						if !slices.Equal(tokens, []string{s.token.Hash}) {
							t.Errorf("ended tokens %v, want %s", tokens, s.token.Hash)
						}
					default:
						if len(sessions)+len(tokens) != 0 {
							t.Errorf("%s ended sessions %v and tokens %v", w.name, sessions, tokens)
						}
					}
				})
			}
		})
	}
}
