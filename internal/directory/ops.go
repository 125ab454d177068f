package directory

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/moat-dev/moat/internal/auth/mfa"
	"github.com/moat-dev/moat/internal/auth/pat"
	"github.com/moat-dev/moat/internal/fanout"
	"github.com/moat-dev/moat/internal/identity/throttle"
	"github.com/moat-dev/moat/internal/store"
)

// Directory is the user directory's operations: each checks its input with
// the rules of this package, then writes the change and its audit event in
// one transaction (store.Store.InTx: both are stored or neither is), and
// once it has committed ends what the change ended through Ended. The
// console, the admin API, the account page and the CLI all call it, so a
// rule holds wherever a change is made.
type Directory struct {
	Store     store.Store
	Passwords Passwords
	// MFA removes second factors (ResetMFA); optional.
	MFA *mfa.Service
	// Throttle is the sign-in throttle, whose locks SignInLock reads and
	// UnlockSignIn lifts; optional.
	Throttle *throttle.Service
	// AdminGroup is identity.admin_group: an admin cannot leave it here.
	AdminGroup string
	// Ended, when set, is told what each committed change ended, to stop
	// it at once on this instance (the sign-in's Process: caches,
	// WebSockets). Without it (the CLI, which runs beside the instances)
	// the change is in the store only, and running instances follow
	// within seconds.
	Ended func(Ended)
	// Logger receives the audit lines (slog.Default when nil).
	Logger *slog.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Ended is what a committed change ended.
type Ended struct {
	// Sessions are the id hashes of the sessions revoked.
	Sessions []string
	// Tokens are the hashes of the personal access tokens revoked.
	Tokens []string
	// Users are the users whose every session ended (disabled, deleted,
	// password reset, signed out everywhere): what is cached of them
	// must be read again.
	Users []string
	// Changed are the users who changed without a revocation (groups,
	// name, an account enabled): who may enter where, and what apps are
	// told, may have changed, so every instance re-checks their sockets.
	Changed []string
}

func (e Ended) empty() bool {
	return len(e.Sessions)+len(e.Tokens)+len(e.Users)+len(e.Changed) == 0
}

// Events are the fan-out events that tell every instance what e ended.
func (e Ended) Events() []fanout.Event {
	var out []fanout.Event
	for _, h := range e.Sessions {
		out = append(out, fanout.Event{Kind: fanout.SessionRevoked, ID: h})
	}
	for _, h := range e.Tokens {
		out = append(out, fanout.Event{Kind: fanout.TokenRevoked, ID: h})
	}
	for _, id := range append(slices.Clone(e.Users), e.Changed...) {
		out = append(out, fanout.Event{Kind: fanout.UserChanged, ID: id})
	}
	return out
}

// Actor is who makes a change: the audit log's actor, and whose own account
// is protected from being locked out by them.
type Actor struct {
	// UserID is the actor's account ("" for the CLI).
	UserID string
	// Name is the audit actor: an email, or "cli".
	Name     string
	ClientIP string
	// RequestID ties the audit line to the request's other log lines.
	RequestID string
	// Via is added to the audit detail ("personal access token").
	Via string
}

// Credential modes for a new user or a password reset.
const (
	ModePassword = "password" // a one-time password shown once
	ModeLink     = "link"     // a one-time link to set a password
)

// Issued is a credential handed out once: a one-time password, or the
// token of a set-password link (the caller builds the link's URL).
type Issued struct {
	Mode     string
	Password string
	Link     string
	Expires  time.Time
}

// NewUser is what creating a user takes. Password, when set, is the
// user's own (the CLI's --password-stdin) rather than a one-time one.
type NewUser struct {
	Email    string
	Name     string
	Groups   []string
	Mode     string
	Password string
}

func (d *Directory) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

func (d *Directory) logger() *slog.Logger {
	if d.Logger != nil {
		return d.Logger
	}
	return slog.Default()
}

// change is one directory change in the making: the transaction its
// writes and audit events go through, and what it ends.
type change struct {
	tx     store.Tx
	d      *Directory
	a      Actor
	events []*store.AuditEvent
	ended  Ended
}

// maxConflicts bounds how often commit runs a change again after another
// change to the same user came first.
const maxConflicts = 5

// commit runs fn in one transaction with the audit events it records, so
// the change and its events are stored together or not at all (a crash or
// a failed audit write between them used to lose the event). fn must use
// c alone, never d.Store. Once committed, commit writes the events' log
// lines and stops what the change ended (Ended). A change to the same user
// by a sign-in or another admin in between (store.ErrConflict) runs fn
// again on a fresh read.
func (d *Directory) commit(ctx context.Context, a Actor, fn func(c *change) error) error {
	for attempt := 0; ; attempt++ {
		c := &change{d: d, a: a}
		err := d.Store.InTx(ctx, func(tx store.Tx) error {
			c.tx = tx
			return fn(c)
		})
		if errors.Is(err, store.ErrConflict) && attempt < maxConflicts {
			continue
		}
		if err != nil {
			return err
		}
		for _, e := range c.events {
			d.logger().Info("audit", "action", e.Action, "actor", e.Actor, "user", e.Subject, "client_ip", e.ClientIP, "request_id", a.RequestID, "detail", e.Detail)
		}
		if d.Ended != nil && !c.ended.empty() {
			d.Ended(c.ended)
		}
		return nil
	}
}

// audit records the change's audit event in its transaction.
func (c *change) audit(ctx context.Context, action, subject, detail string) error {
	if c.a.Via != "" {
		detail = strings.TrimSpace(detail + " (" + c.a.Via + ")")
	}
	e := &store.AuditEvent{Time: c.d.now(), Actor: c.a.Name, Action: action, Subject: subject, ClientIP: c.a.ClientIP, Detail: detail}
	if err := c.tx.Audit(ctx, e); err != nil {
		return fmt.Errorf("write audit event %s: %w", action, err)
	}
	c.events = append(c.events, e)
	return nil
}

// user loads a user by id within the change.
func (c *change) user(ctx context.Context, id string) (*store.User, error) {
	return userIn(ctx, c.tx, id)
}

// update reads the user, applies edit and writes it back; a sign-in or
// another admin changing the user in between makes it fail with
// store.ErrConflict, and commit run the change again.
func (c *change) update(ctx context.Context, id string, edit func(u *store.User) error) (*store.User, error) {
	u, err := c.user(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := edit(u); err != nil {
		return nil, err
	}
	return u, c.tx.UpdateUser(ctx, u)
}

// revokeAll ends every session of the user, and reports how many.
func (c *change) revokeAll(ctx context.Context, userID string) (int, error) {
	hashes, err := c.tx.RevokeUserSessions(ctx, userID, c.d.now())
	if err != nil {
		return 0, err
	}
	c.ended.Sessions = append(c.ended.Sessions, hashes...)
	c.ended.Users = append(c.ended.Users, userID)
	return len(hashes), nil
}

// revokeToken revokes a token (a personal access token or a link).
func (c *change) revokeToken(ctx context.Context, t *store.Token) error {
	if err := c.tx.RevokeToken(ctx, t.ID, c.d.now()); err != nil {
		return err
	}
	if t.Kind == store.TokenPersonal {
		c.ended.Tokens = append(c.ended.Tokens, t.Hash)
	}
	return nil
}

// User loads a user by id.
func (d *Directory) User(ctx context.Context, id string) (*store.User, error) {
	return userIn(ctx, d.Store, id)
}

func userIn(ctx context.Context, tx store.Tx, id string) (*store.User, error) {
	if id == "" || len(id) > 128 {
		return nil, refusal(NotFound, "admin.no_user", "no such user")
	}
	u, err := tx.GetUser(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, refusal(NotFound, "admin.no_user", "no such user")
	}
	return u, err
}

// UserByEmail loads a user by email address.
func (d *Directory) UserByEmail(ctx context.Context, email string) (*store.User, error) {
	email = store.NormalizeEmail(email)
	u, err := d.Store.GetUserByEmail(ctx, email)
	if errors.Is(err, store.ErrNotFound) {
		return nil, refusal(NotFound, "admin.no_user", "no user %s", email)
	}
	return u, err
}

// CreateUser creates a user who must choose a password at the first
// sign-in: with a one-time password or a set-password link (Mode), or with
// the password given (which must meet the policy, and need not change).
func (d *Directory) CreateUser(ctx context.Context, a Actor, in NewUser) (*store.User, *Issued, error) {
	email := store.NormalizeEmail(in.Email)
	if err := ValidEmail(email); err != nil {
		return nil, nil, err
	}
	name, err := CleanName(in.Name)
	if err != nil {
		return nil, nil, err
	}
	groups, err := CleanGroups(in.Groups)
	if err != nil {
		return nil, nil, err
	}
	mode, err := checkMode(in.Mode)
	if err != nil {
		return nil, nil, err
	}
	var hash string
	pw := in.Password
	if pw != "" {
		hash, err = d.Passwords.Hash(ctx, pw, email)
	} else {
		pw, hash, err = d.Passwords.OneTime(ctx)
	}
	if err != nil {
		return nil, nil, err
	}
	var u *store.User
	var out *Issued
	err = d.commit(ctx, a, func(c *change) error {
		u = &store.User{Email: email, Name: name, Groups: groups, MustChangePassword: in.Password == "", PasswordHash: hash}
		if err := c.tx.CreateUser(ctx, u); err != nil {
			if errors.Is(err, store.ErrDuplicate) {
				return refusal(Conflict, "admin.duplicate", "user %s already exists", email)
			}
			return err
		}
		detail := fmt.Sprintf("groups: %s; password chosen", strings.Join(u.Groups, ","))
		if in.Password == "" {
			var err error
			if out, err = c.issue(ctx, u, mode, pw); err != nil {
				return err
			}
			detail = fmt.Sprintf("groups: %s; %s", strings.Join(u.Groups, ","), modeDetail(mode))
		}
		return c.audit(ctx, "user.create", u.Email, detail)
	})
	if err != nil {
		return nil, nil, err
	}
	return u, out, nil
}

// ImportedUser is a user brought over from another identity system with
// the password hash it had there (a form internal/auth/password verifies,
// such as Firebase's modified scrypt, rehashed to argon2id at the first
// sign-in). From says where it came from, for the audit event.
type ImportedUser struct {
	Email        string
	Name         string
	Groups       []string
	PasswordHash string
	Disabled     bool
	From         string
}

// ImportUser creates a user with an imported password hash, by the same
// rules as CreateUser; a user that exists already is refused (Conflict)
// and left as it is.
func (d *Directory) ImportUser(ctx context.Context, a Actor, in ImportedUser) (*store.User, error) {
	email := store.NormalizeEmail(in.Email)
	if err := ValidEmail(email); err != nil {
		return nil, err
	}
	name, err := CleanName(in.Name)
	if err != nil {
		return nil, err
	}
	groups, err := CleanGroups(in.Groups)
	if err != nil {
		return nil, err
	}
	var u *store.User
	err = d.commit(ctx, a, func(c *change) error {
		u = &store.User{Email: email, Name: name, Groups: groups, PasswordHash: in.PasswordHash, Disabled: in.Disabled}
		if err := c.tx.CreateUser(ctx, u); err != nil {
			if errors.Is(err, store.ErrDuplicate) {
				return refusal(Conflict, "admin.duplicate", "user %s already exists", email)
			}
			return err
		}
		detail := fmt.Sprintf("from %s; groups: %s", in.From, strings.Join(u.Groups, ","))
		if u.Disabled {
			detail += "; disabled"
		}
		return c.audit(ctx, "user.import", u.Email, detail)
	})
	if err != nil {
		return nil, err
	}
	return u, nil
}

func checkMode(m string) (string, error) {
	switch m {
	case "", ModePassword:
		return ModePassword, nil
	case ModeLink:
		return ModeLink, nil
	}
	return "", refusal(Invalid, "admin.invalid_mode", "mode must be %s or %s", ModePassword, ModeLink)
}

func modeDetail(mode string) string {
	if mode == ModeLink {
		return "set-password link issued"
	}
	return "one-time password issued"
}

// issue hands out the credential for u: pw itself (already its password)
// or a set-password link, which replaces any earlier link of u.
func (c *change) issue(ctx context.Context, u *store.User, mode, pw string) (*Issued, error) {
	if mode == ModePassword {
		return &Issued{Mode: mode, Password: pw}, nil
	}
	if err := c.revokeLinks(ctx, u.ID); err != nil {
		return nil, err
	}
	tok, hash := NewSetPasswordLink()
	exp := c.d.now().Add(SetPasswordLinkTTL)
	if err := c.tx.CreateToken(ctx, &store.Token{Hash: hash, UserID: u.ID, Kind: store.TokenSetPassword, Name: "set-password link", ExpiresAt: exp}); err != nil {
		return nil, err
	}
	return &Issued{Mode: mode, Link: tok, Expires: exp}, nil
}

// revokeLinks revokes the user's unused set-password links.
func (c *change) revokeLinks(ctx context.Context, userID string) error {
	toks, err := c.tx.ListTokens(ctx, userID)
	if err != nil {
		return err
	}
	for _, t := range toks {
		if t.Kind == store.TokenSetPassword && t.RevokedAt.IsZero() {
			if err := c.revokeToken(ctx, t); err != nil {
				return err
			}
		}
	}
	return nil
}

// self refuses an actor acting on their own account in a way that would
// lock them out.
func self(a Actor, u *store.User, what string) error {
	if a.UserID != "" && a.UserID == u.ID {
		return refusal(Conflict, "admin.self", "you cannot %s your own account here", what)
	}
	return nil
}

// SetDisabled disables (ending every session) or enables a user, and
// reports how many sessions ended.
func (d *Directory) SetDisabled(ctx context.Context, a Actor, id string, disabled bool) (*store.User, int, error) {
	var u *store.User
	n := 0
	err := d.commit(ctx, a, func(c *change) error {
		changed := false
		var err error
		u, err = c.update(ctx, id, func(u *store.User) error {
			if disabled {
				if err := self(a, u, "disable"); err != nil {
					return err
				}
			}
			changed = u.Disabled != disabled
			u.Disabled = disabled
			return nil
		})
		if err != nil {
			return err
		}
		if !disabled {
			if !changed {
				return nil
			}
			c.ended.Changed = append(c.ended.Changed, u.ID)
			return c.audit(ctx, "user.enable", u.Email, "")
		}
		if n, err = c.revokeAll(ctx, u.ID); err != nil {
			return err
		}
		return c.audit(ctx, "user.disable", u.Email, fmt.Sprintf("%d session(s) ended", n))
	})
	if err != nil {
		return nil, 0, err
	}
	return u, n, nil
}

// DeleteUser deletes a user, ending their sessions first.
func (d *Directory) DeleteUser(ctx context.Context, a Actor, id string) (*store.User, int, error) {
	var u *store.User
	n := 0
	err := d.commit(ctx, a, func(c *change) error {
		var err error
		if u, err = c.user(ctx, id); err != nil {
			return err
		}
		if err := self(a, u, "delete"); err != nil {
			return err
		}
		// End the sessions first, so every instance sees them revoked (and
		// closes their WebSockets) before the rows go with the user.
		if n, err = c.revokeAll(ctx, u.ID); err != nil {
			return err
		}
		if err := c.tx.DeleteUser(ctx, u.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		return c.audit(ctx, "user.delete", u.Email, fmt.Sprintf("%d session(s) ended", n))
	})
	if err != nil {
		return nil, 0, err
	}
	return u, n, nil
}

// ResetPassword gives a user a new password and ends their sessions: a
// one-time password or link (Mode), or the password given.
func (d *Directory) ResetPassword(ctx context.Context, a Actor, id, mode, pw string) (*store.User, *Issued, int, error) {
	mode, err := checkMode(mode)
	if err != nil {
		return nil, nil, 0, err
	}
	cur, err := d.User(ctx, id)
	if err != nil {
		return nil, nil, 0, err
	}
	// Hash before the transaction: it must not hold the database while
	// argon2 runs.
	var hash string
	oneTime := pw == ""
	if oneTime {
		pw, hash, err = d.Passwords.OneTime(ctx)
	} else {
		hash, err = d.Passwords.Hash(ctx, pw, cur.Email)
	}
	if err != nil {
		return nil, nil, 0, err
	}
	var u *store.User
	var out *Issued
	n := 0
	err = d.commit(ctx, a, func(c *change) error {
		var err error
		u, err = c.update(ctx, id, func(u *store.User) error {
			u.PasswordHash, u.MustChangePassword = hash, oneTime
			return nil
		})
		if err != nil {
			return err
		}
		if n, err = c.revokeAll(ctx, u.ID); err != nil {
			return err
		}
		out = nil
		detail := "password chosen"
		if oneTime {
			if out, err = c.issue(ctx, u, mode, pw); err != nil {
				return err
			}
			detail = modeDetail(mode)
		}
		return c.audit(ctx, "user.reset_password", u.Email, fmt.Sprintf("%s; %d session(s) ended", detail, n))
	})
	if err != nil {
		return nil, nil, 0, err
	}
	return u, out, n, nil
}

// UpdateUser changes a user's name (when name is not nil) and groups (when
// setGroups), with the same rules as at creation. An actor cannot take
// themselves out of the admin group here.
func (d *Directory) UpdateUser(ctx context.Context, a Actor, id string, name *string, groups []string, setGroups bool) (*store.User, error) {
	var clean []string
	if setGroups {
		var err error
		if clean, err = CleanGroups(groups); err != nil {
			return nil, err
		}
	}
	var cleanN string
	if name != nil {
		var err error
		if cleanN, err = CleanName(*name); err != nil {
			return nil, err
		}
	}
	var u *store.User
	err := d.commit(ctx, a, func(c *change) error {
		var before []string
		var err error
		u, err = c.update(ctx, id, func(u *store.User) error {
			before = slices.Clone(u.Groups)
			if setGroups {
				if a.UserID == u.ID && d.AdminGroup != "" && slices.Contains(before, d.AdminGroup) && !slices.Contains(clean, d.AdminGroup) {
					return refusal(Conflict, "admin.self", "you cannot remove yourself from %s here", d.AdminGroup)
				}
				u.Groups = clean
			}
			if name != nil {
				u.Name = cleanN
			}
			return nil
		})
		if err != nil {
			return err
		}
		if setGroups && !slices.Equal(before, clean) || name != nil {
			// Who may enter where, and what apps are told, may have
			// changed: every instance re-checks the user's sockets.
			c.ended.Changed = append(c.ended.Changed, u.ID)
		}
		if setGroups && !slices.Equal(before, clean) {
			if err := c.audit(ctx, "user.groups", u.Email, fmt.Sprintf("groups: %s (were: %s)", strings.Join(clean, ","), strings.Join(before, ","))); err != nil {
				return err
			}
		}
		if name != nil {
			return c.audit(ctx, "user.update", u.Email, "name changed")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return u, nil
}

// RevokeUserSessions ends every session of a user now.
func (d *Directory) RevokeUserSessions(ctx context.Context, a Actor, id string) (*store.User, int, error) {
	var u *store.User
	n := 0
	err := d.commit(ctx, a, func(c *change) error {
		var err error
		if u, err = c.user(ctx, id); err != nil {
			return err
		}
		if n, err = c.revokeAll(ctx, u.ID); err != nil {
			return err
		}
		return c.audit(ctx, "session.revoke_all", u.Email, fmt.Sprintf("%d session(s) ended", n))
	})
	if err != nil {
		return nil, 0, err
	}
	return u, n, nil
}

// ResetMFA removes a user's second factor (with its audit event, in one
// transaction: mfa.Service.Remove).
func (d *Directory) ResetMFA(ctx context.Context, a Actor, id string) (*store.User, error) {
	u, err := d.User(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := d.MFA.Remove(ctx, u.ID, a.Name, u.Email, a.ClientIP); err != nil {
		return nil, err
	}
	return u, nil
}

// SignInLock returns how much longer a distributed attack keeps the
// user's sign-in from unknown devices locked; 0 when it does not.
func (d *Directory) SignInLock(ctx context.Context, u *store.User) (time.Duration, error) {
	if d.Throttle == nil {
		return 0, errors.New("sign-in lock: no throttle")
	}
	return d.Throttle.Locked(ctx, u.Email)
}

// UnlockSignIn lifts the lock a distributed attack put on the user's
// sign-in from unknown devices (passwords and second-factor codes alike)
// and forgets the failures that slowed it down. It returns how much longer
// the lock would have lasted (0 when there was none: the failures are
// forgotten all the same). An unlock that cannot reach the counts fails
// rather than pretend.
func (d *Directory) UnlockSignIn(ctx context.Context, a Actor, id string) (*store.User, time.Duration, error) {
	u, err := d.User(ctx, id)
	if err != nil {
		return nil, 0, err
	}
	left, err := d.SignInLock(ctx, u)
	if err != nil {
		return nil, 0, err
	}
	// The counts may be in Redis, outside the store's transaction: the
	// unlock goes first, so the audit event never records one that failed.
	if err := d.Throttle.Unlock(ctx, u.Email); err != nil {
		return nil, 0, err
	}
	detail := "was not locked; its failures are forgotten"
	if left > 0 {
		detail = fmt.Sprintf("sign-in from unknown devices unlocked %s before its lock ended", left.Round(time.Second))
	}
	err = d.commit(ctx, a, func(c *change) error { return c.audit(ctx, "login.unlock", u.Email, detail) })
	if err != nil {
		return nil, 0, fmt.Errorf("sign-in unlocked, but its audit event could not be written: %w", err)
	}
	return u, left, nil
}

// RevokeSession ends one session, found by its id hash. owner, when set,
// must be the session's user (a person ending their own session).
func (d *Directory) RevokeSession(ctx context.Context, a Actor, hash, owner string) (*store.Session, error) {
	if len(hash) != 64 {
		return nil, refusal(NotFound, "admin.no_session", "no such session")
	}
	var s *store.Session
	err := d.commit(ctx, a, func(c *change) error {
		var err error
		s, err = c.tx.GetSession(ctx, hash)
		if errors.Is(err, store.ErrNotFound) || err == nil && owner != "" && s.UserID != owner {
			return refusal(NotFound, "admin.no_session", "no such session")
		}
		if err != nil {
			return err
		}
		if err := c.tx.RevokeSession(ctx, hash, d.now()); err != nil {
			return err
		}
		c.ended.Sessions = append(c.ended.Sessions, hash)
		detail := fmt.Sprintf("session from %s started %s", orDash(s.ClientIP), s.CreatedAt.UTC().Format(time.RFC3339))
		if owner != "" {
			detail = "by the user, from the account page"
		}
		return c.audit(ctx, "session.revoke", s.Email, detail)
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Tokens lists a user's personal access tokens (never set-password links),
// as the store returns them.
func (d *Directory) Tokens(ctx context.Context, userID string) ([]*store.Token, error) {
	list, err := d.Store.ListTokens(ctx, userID)
	if err != nil {
		return nil, err
	}
	var out []*store.Token
	for _, t := range list {
		if t.Kind == store.TokenPersonal {
			out = append(out, t)
		}
	}
	return out, nil
}

// MaxTokenTTL bounds a personal access token's life: a script's token
// should be rotated at least yearly.
const MaxTokenTTL = 366 * 24 * time.Hour

// CreateToken makes a personal access token for an enabled user, valid for
// ttl (0: no expiry), and returns it (shown once: the store keeps a hash).
func (d *Directory) CreateToken(ctx context.Context, a Actor, userID, name string, ttl time.Duration) (string, *store.Token, error) {
	if name != "" {
		var err error
		if name, err = CleanTokenName(name); err != nil {
			return "", nil, err
		}
	}
	if ttl < 0 || ttl > MaxTokenTTL {
		return "", nil, refusal(Invalid, "admin.invalid_ttl", "a token lives at most %s", MaxTokenTTL)
	}
	secret, hash := pat.New()
	var t *store.Token
	err := d.commit(ctx, a, func(c *change) error {
		u, err := c.user(ctx, userID)
		if err != nil {
			return err
		}
		if u.Disabled {
			return refusal(Conflict, "admin.disabled", "user %s is disabled: enable it first", u.Email)
		}
		t = &store.Token{Hash: hash, UserID: u.ID, Kind: store.TokenPersonal, Name: name, CreatedAt: d.now()}
		if ttl > 0 {
			t.ExpiresAt = t.CreatedAt.Add(ttl)
		}
		if err := c.tx.CreateToken(ctx, t); err != nil {
			return err
		}
		return c.audit(ctx, "token.create", u.Email, "personal access token "+strconv.Quote(name))
	})
	if err != nil {
		return "", nil, err
	}
	return secret, t, nil
}

// RevokeToken revokes one personal access token of a user (userID "": of
// anyone, for the CLI); it stops at once on this instance (Ended).
func (d *Directory) RevokeToken(ctx context.Context, a Actor, userID, tokenID string) (*store.Token, error) {
	var candidates []*store.Token
	subject := ""
	if userID != "" {
		u, err := d.User(ctx, userID)
		if err != nil {
			return nil, err
		}
		subject = u.Email
		if candidates, err = d.Tokens(ctx, u.ID); err != nil {
			return nil, err
		}
	} else if t, err := d.tokenByID(ctx, tokenID); err == nil {
		candidates = []*store.Token{t}
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	for _, t := range candidates {
		if t.ID != tokenID || t.Kind != store.TokenPersonal {
			continue
		}
		if subject == "" {
			subject = t.UserID
			if u, err := d.Store.GetUser(ctx, t.UserID); err == nil {
				subject = u.Email
			}
		}
		err := d.commit(ctx, a, func(c *change) error {
			if err := c.revokeToken(ctx, t); err != nil {
				return err
			}
			return c.audit(ctx, "token.revoke", subject, "personal access token "+strconv.Quote(t.Name))
		})
		if err != nil {
			return nil, err
		}
		return t, nil
	}
	return nil, refusal(NotFound, "admin.no_token", "no token %s", tokenID)
}

// tokenByID finds a token by id among every user's (the CLI names tokens
// by id alone).
func (d *Directory) tokenByID(ctx context.Context, id string) (*store.Token, error) {
	users, _, err := d.Store.ListUsers(ctx, store.UserFilter{})
	if err != nil {
		return nil, err
	}
	for _, u := range users {
		toks, err := d.Store.ListTokens(ctx, u.ID)
		if err != nil {
			return nil, err
		}
		for _, t := range toks {
			if t.ID == id {
				return t, nil
			}
		}
	}
	return nil, store.ErrNotFound
}

// LinkUser returns the user a set-password link's token opens, or nil
// when it opens nothing (unknown, used, expired, the user disabled).
func (d *Directory) LinkUser(ctx context.Context, token string) (*store.Token, *store.User) {
	if !LooksLikeSetPasswordLink(token) {
		return nil, nil
	}
	t, err := d.Store.GetTokenByHash(ctx, SetPasswordLinkHash(token))
	if err != nil || t.Kind != store.TokenSetPassword || !t.RevokedAt.IsZero() || !t.ExpiresAt.IsZero() && !d.now().Before(t.ExpiresAt) {
		return nil, nil
	}
	u, err := d.Store.GetUser(ctx, t.UserID)
	if err != nil || u.Disabled {
		return nil, nil
	}
	return t, u
}

// SetPasswordByLink sets the password a link was issued for, once (a
// *password.PolicyError says why pw may not be used): the link is revoked,
// the user's sessions end. It reports false when the link no longer works.
func (d *Directory) SetPasswordByLink(ctx context.Context, a Actor, token, pw string) (bool, error) {
	t, u := d.LinkUser(ctx, token)
	if u == nil {
		return false, nil
	}
	hash, err := d.Passwords.Hash(ctx, pw, u.Email)
	if err != nil {
		return false, err
	}
	a.Name = u.Email
	set := false
	err = d.commit(ctx, a, func(c *change) error {
		// Revoke the link first: of two racing submissions only one
		// swaps the password hash below.
		if err := c.revokeToken(ctx, t); err != nil {
			return err
		}
		var err error
		if set, err = c.tx.SetPasswordHash(ctx, u.ID, u.PasswordHash, hash, false); err != nil {
			return err
		}
		if !set {
			// The password changed another way since the link was
			// read: the link ends unused.
			return c.audit(ctx, "link.revoke", u.Email, "the password was changed another way before the link was used")
		}
		if _, err := c.revokeAll(ctx, u.ID); err != nil {
			return err
		}
		return c.audit(ctx, "password.set_by_link", u.Email, "")
	})
	return set && err == nil, err
}
