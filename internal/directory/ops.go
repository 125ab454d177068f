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
	"github.com/moat-dev/moat/internal/store"
)

// Directory is the user directory's operations: each checks its input with
// the rules of this package, writes the store, ends what a change ends
// through the sign-in's hooks, and records an audit event. The console,
// the admin API, the account page and the CLI all call it, so a rule holds
// wherever a change is made.
type Directory struct {
	Store     store.Store
	Passwords Passwords
	// MFA removes second factors (ResetMFA); optional.
	MFA *mfa.Service
	// AdminGroup is identity.admin_group: an admin cannot leave it here.
	AdminGroup string
	// Revoke ends what a change ends, on this instance at once.
	Revoke Revokers
	// Logger receives the audit lines (slog.Default when nil).
	Logger *slog.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Revokers end what a change ends in the store and at once on this
// instance and every other (the sign-in's Process: caches, WebSockets,
// the fan-out). A nil one revokes in the store only, and Changed tells the
// running instances (the CLI, which runs beside them).
type Revokers struct {
	User    func(ctx context.Context, userID string) error
	Session func(ctx context.Context, idHash string) error
	Token   func(ctx context.Context, id, hash string) error
	// Changed, if set, is told, once a change is stored, of every change
	// of a user that no Revoker above carried: groups, name, an account
	// enabled or deleted, and what a nil Revoker ended in the store only. The
	// server's re-checks the user everywhere (auth.Process.UserChanged);
	// the CLI's publishes fanout.UserChanged.
	Changed func(ctx context.Context, userID string)
}

// changed tells Revoke.Changed that a user changed.
func (d *Directory) changed(ctx context.Context, userID string) {
	if d.Revoke.Changed != nil {
		d.Revoke.Changed(ctx, userID)
	}
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

// audit records a change in the store and the log.
func (d *Directory) audit(ctx context.Context, a Actor, action, subject, detail string) {
	if a.Via != "" {
		detail = strings.TrimSpace(detail + " (" + a.Via + ")")
	}
	d.logger().Info("audit", "action", action, "actor", a.Name, "user", subject, "client_ip", a.ClientIP, "request_id", a.RequestID, "detail", detail)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := d.Store.Audit(ctx, &store.AuditEvent{Time: d.now(), Actor: a.Name, Action: action, Subject: subject, ClientIP: a.ClientIP, Detail: detail}); err != nil {
		d.logger().Error("write audit event", "action", action, "err", err)
	}
}

// User loads a user by id.
func (d *Directory) User(ctx context.Context, id string) (*store.User, error) {
	if id == "" || len(id) > 128 {
		return nil, refusal(NotFound, "admin.no_user", "no such user")
	}
	u, err := d.Store.GetUser(ctx, id)
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

// modify reads the user, applies change and writes it back, reading again
// when a sign-in or another admin changed the user in between.
func (d *Directory) modify(ctx context.Context, id string, change func(u *store.User) error) (*store.User, error) {
	for attempt := 0; ; attempt++ {
		u, err := d.User(ctx, id)
		if err != nil {
			return nil, err
		}
		if err := change(u); err != nil {
			return nil, err
		}
		err = d.Store.UpdateUser(ctx, u)
		if errors.Is(err, store.ErrConflict) && attempt < 5 {
			continue
		}
		return u, err
	}
}

// revokeAll ends every session of the user, closing their WebSockets.
func (d *Directory) revokeAll(ctx context.Context, userID string) (int, error) {
	if d.Revoke.User != nil {
		before, _ := d.Store.ListSessions(ctx, userID)
		return len(before), d.Revoke.User(ctx, userID)
	}
	hashes, err := d.Store.RevokeUserSessions(ctx, userID, d.now())
	if err == nil {
		d.changed(ctx, userID)
	}
	return len(hashes), err
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
	u := &store.User{Email: email, Name: name, Groups: groups, MustChangePassword: in.Password == ""}
	pw := in.Password
	if pw != "" {
		u.PasswordHash, err = d.Passwords.Hash(ctx, pw, email)
	} else {
		pw, u.PasswordHash, err = d.Passwords.OneTime(ctx)
	}
	if err != nil {
		return nil, nil, err
	}
	if err := d.Store.CreateUser(ctx, u); err != nil {
		if errors.Is(err, store.ErrDuplicate) {
			return nil, nil, refusal(Conflict, "admin.duplicate", "user %s already exists", email)
		}
		return nil, nil, err
	}
	var out *Issued
	if in.Password == "" {
		if out, err = d.issue(ctx, u, mode, pw); err != nil {
			return nil, nil, err
		}
	}
	detail := fmt.Sprintf("groups: %s; %s", strings.Join(u.Groups, ","), modeDetail(mode))
	if in.Password != "" {
		detail = fmt.Sprintf("groups: %s; password chosen", strings.Join(u.Groups, ","))
	}
	d.audit(ctx, a, "user.create", u.Email, detail)
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
	u := &store.User{Email: email, Name: name, Groups: groups, PasswordHash: in.PasswordHash, Disabled: in.Disabled}
	if err := d.Store.CreateUser(ctx, u); err != nil {
		if errors.Is(err, store.ErrDuplicate) {
			return nil, refusal(Conflict, "admin.duplicate", "user %s already exists", email)
		}
		return nil, err
	}
	detail := fmt.Sprintf("from %s; groups: %s", in.From, strings.Join(u.Groups, ","))
	if u.Disabled {
		detail += "; disabled"
	}
	d.audit(ctx, a, "user.import", u.Email, detail)
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
func (d *Directory) issue(ctx context.Context, u *store.User, mode, pw string) (*Issued, error) {
	if mode == ModePassword {
		return &Issued{Mode: mode, Password: pw}, nil
	}
	if err := d.revokeLinks(ctx, u.ID); err != nil {
		return nil, err
	}
	tok, hash := NewSetPasswordLink()
	exp := d.now().Add(SetPasswordLinkTTL)
	if err := d.Store.CreateToken(ctx, &store.Token{Hash: hash, UserID: u.ID, Kind: store.TokenSetPassword, Name: "set-password link", ExpiresAt: exp}); err != nil {
		return nil, err
	}
	return &Issued{Mode: mode, Link: tok, Expires: exp}, nil
}

// revokeLinks revokes the user's unused set-password links.
func (d *Directory) revokeLinks(ctx context.Context, userID string) error {
	toks, err := d.Store.ListTokens(ctx, userID)
	if err != nil {
		return err
	}
	for _, t := range toks {
		if t.Kind == store.TokenSetPassword && t.RevokedAt.IsZero() {
			if err := d.Store.RevokeToken(ctx, t.ID, d.now()); err != nil && !errors.Is(err, store.ErrNotFound) {
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
	changed := false
	u, err := d.modify(ctx, id, func(u *store.User) error {
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
		return nil, 0, err
	}
	if !disabled {
		if changed {
			d.changed(ctx, u.ID)
			d.audit(ctx, a, "user.enable", u.Email, "")
		}
		return u, 0, nil
	}
	n, err := d.revokeAll(ctx, u.ID)
	if err != nil {
		return nil, 0, err
	}
	d.audit(ctx, a, "user.disable", u.Email, fmt.Sprintf("%d session(s) ended", n))
	return u, n, nil
}

// DeleteUser deletes a user, ending their sessions first.
func (d *Directory) DeleteUser(ctx context.Context, a Actor, id string) (*store.User, int, error) {
	u, err := d.User(ctx, id)
	if err != nil {
		return nil, 0, err
	}
	if err := self(a, u, "delete"); err != nil {
		return nil, 0, err
	}
	// End the sessions first, so every instance sees them revoked (and
	// closes their WebSockets) before the rows go with the user.
	n, err := d.revokeAll(ctx, u.ID)
	if err != nil {
		return nil, 0, err
	}
	if err := d.Store.DeleteUser(ctx, u.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, 0, err
	}
	// Its tokens went with it: every instance checks the user's
	// token sockets again, now that the user is gone.
	d.changed(ctx, u.ID)
	d.audit(ctx, a, "user.delete", u.Email, fmt.Sprintf("%d session(s) ended", n))
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
	u, err := d.modify(ctx, id, func(u *store.User) error {
		u.PasswordHash, u.MustChangePassword = hash, oneTime
		return nil
	})
	if err != nil {
		return nil, nil, 0, err
	}
	n, err := d.revokeAll(ctx, u.ID)
	if err != nil {
		return nil, nil, 0, err
	}
	var out *Issued
	detail := "password chosen"
	if oneTime {
		if out, err = d.issue(ctx, u, mode, pw); err != nil {
			return nil, nil, 0, err
		}
		detail = modeDetail(mode)
	}
	d.audit(ctx, a, "user.reset_password", u.Email, fmt.Sprintf("%s; %d session(s) ended", detail, n))
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
	var before []string
	u, err := d.modify(ctx, id, func(u *store.User) error {
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
		return nil, err
	}
	if setGroups && !slices.Equal(before, clean) || name != nil {
		// Who may enter where, and what apps are told, may have
		// changed: every instance re-checks the user's sockets.
		d.changed(ctx, u.ID)
	}
	if setGroups && !slices.Equal(before, clean) {
		d.audit(ctx, a, "user.groups", u.Email, fmt.Sprintf("groups: %s (were: %s)", strings.Join(clean, ","), strings.Join(before, ",")))
	}
	if name != nil {
		d.audit(ctx, a, "user.update", u.Email, "name changed")
	}
	return u, nil
}

// RevokeUserSessions ends every session of a user now.
func (d *Directory) RevokeUserSessions(ctx context.Context, a Actor, id string) (*store.User, int, error) {
	u, err := d.User(ctx, id)
	if err != nil {
		return nil, 0, err
	}
	n, err := d.revokeAll(ctx, u.ID)
	if err != nil {
		return nil, 0, err
	}
	d.audit(ctx, a, "session.revoke_all", u.Email, fmt.Sprintf("%d session(s) ended", n))
	return u, n, nil
}

// ResetMFA removes a user's second factor.
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

// RevokeSession ends one session, found by its id hash. owner, when set,
// must be the session's user (a person ending their own session).
func (d *Directory) RevokeSession(ctx context.Context, a Actor, hash, owner string) (*store.Session, error) {
	if len(hash) != 64 {
		return nil, refusal(NotFound, "admin.no_session", "no such session")
	}
	s, err := d.Store.GetSession(ctx, hash)
	if errors.Is(err, store.ErrNotFound) || err == nil && owner != "" && s.UserID != owner {
		return nil, refusal(NotFound, "admin.no_session", "no such session")
	}
	if err != nil {
		return nil, err
	}
	if d.Revoke.Session != nil {
		err = d.Revoke.Session(ctx, hash)
	} else if err = d.Store.RevokeSession(ctx, hash, d.now()); err == nil {
		d.changed(ctx, s.UserID)
	}
	if err != nil {
		return nil, err
	}
	detail := fmt.Sprintf("session from %s started %s", orDash(s.ClientIP), s.CreatedAt.UTC().Format(time.RFC3339))
	if owner != "" {
		detail = "by the user, from the account page"
	}
	d.audit(ctx, a, "session.revoke", s.Email, detail)
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
	u, err := d.User(ctx, userID)
	if err != nil {
		return "", nil, err
	}
	if u.Disabled {
		return "", nil, refusal(Conflict, "admin.disabled", "user %s is disabled: enable it first", u.Email)
	}
	secret, hash := pat.New()
	t := &store.Token{Hash: hash, UserID: u.ID, Kind: store.TokenPersonal, Name: name, CreatedAt: d.now()}
	if ttl > 0 {
		t.ExpiresAt = t.CreatedAt.Add(ttl)
	}
	if err := d.Store.CreateToken(ctx, t); err != nil {
		return "", nil, err
	}
	d.audit(ctx, a, "token.create", u.Email, "personal access token "+strconv.Quote(name))
	return secret, t, nil
}

// RevokeToken revokes one personal access token of a user (userID "": of
// anyone, for the CLI), through the sign-in's hook so it stops at once.
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
	}
	for _, t := range candidates {
		if t.ID != tokenID || t.Kind != store.TokenPersonal {
			continue
		}
		var err error
		if d.Revoke.Token != nil {
			err = d.Revoke.Token(ctx, t.ID, t.Hash)
		} else if err = d.Store.RevokeToken(ctx, t.ID, d.now()); err == nil {
			d.changed(ctx, t.UserID)
		}
		if err != nil {
			return nil, err
		}
		if subject == "" {
			subject = t.UserID
			if u, err := d.Store.GetUser(ctx, t.UserID); err == nil {
				subject = u.Email
			}
		}
		d.audit(ctx, a, "token.revoke", subject, "personal access token "+strconv.Quote(t.Name))
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
	// Revoke the link first: of two racing submissions only one wins.
	if err := d.Store.RevokeToken(ctx, t.ID, d.now()); err != nil {
		return false, err
	}
	ok, err := d.Store.SetPasswordHash(ctx, u.ID, u.PasswordHash, hash, false)
	if err != nil || !ok {
		return false, err
	}
	if _, err := d.revokeAll(ctx, u.ID); err != nil {
		d.logger().Error("set password: end sessions", "user", u.Email, "err", err)
	}
	a.Name = u.Email
	d.audit(ctx, a, "password.set_by_link", u.Email, "")
	return true, nil
}
