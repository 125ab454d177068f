package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/moat-dev/moat/internal/auth/password"
	"github.com/moat-dev/moat/internal/directory"
	"github.com/moat-dev/moat/internal/request"
	"github.com/moat-dev/moat/internal/store"
	"github.com/moat-dev/moat/internal/web"
)

// refuse is an operation's refusal as the console shows it and the API
// returns it: a status, a stable code for scripts and a sentence.
func refuse(status int, code, format string, args ...any) error {
	return &web.Problem{Status: status, Key: "admin.refused", Code: code, Sentence: fmt.Sprintf(format, args...)}
}

// Credential modes for a new user or a password reset.
const (
	ModePassword = "password" // a one-time password shown once
	ModeLink     = "link"     // a one-time link to set a password
)

// SetPasswordLinkTTL is how long a set-password link works.
const SetPasswordLinkTTL = directory.SetPasswordLinkTTL

// issued is a credential handed out once: a one-time password or a link.
type issued struct {
	Mode     string `json:"mode"`
	Password string `json:"one_time_password,omitempty"`
	Link     string `json:"set_password_url,omitempty"`
	Expires  string `json:"expires_at,omitempty"`
}

// invalid turns a directory rule's refusal into the console's and the
// API's 400 with code.
func invalid(code string, err error) error {
	if errors.Is(err, directory.ErrInvalid) {
		return refuse(http.StatusBadRequest, code, "%s", err)
	}
	return err
}

// audit records an admin's change in the store and the log.
func (c *Console) audit(ctx context.Context, r *http.Request, action, subject, detail string) {
	actor := "admin"
	if a := adminOf(r); a != nil {
		actor = a.user.Email
		if a.token {
			detail = strings.TrimSpace(detail + " (personal access token)")
		}
	}
	info := request.From(r)
	c.log.Info("audit", "action", action, "actor", actor, "user", subject, "client_ip", clientIP(r), "request_id", info.ID, "detail", detail)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := c.st.Audit(ctx, &store.AuditEvent{Time: c.o.Now(), Actor: actor, Action: action, Subject: subject, ClientIP: clientIP(r), Detail: detail}); err != nil {
		c.log.Error("write audit event", "action", action, "err", err)
	}
}

// user loads a user by id with a 404 refusal for an unknown one.
func (c *Console) user(ctx context.Context, id string) (*store.User, error) {
	if id == "" || len(id) > 128 {
		return nil, refuse(http.StatusNotFound, "admin.no_user", "no such user")
	}
	u, err := c.st.GetUser(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, refuse(http.StatusNotFound, "admin.no_user", "no such user")
	}
	return u, err
}

// modify reads the user, applies change and writes it back, reading again
// when a sign-in or another admin changed the user in between.
func (c *Console) modify(ctx context.Context, id string, change func(u *store.User) error) (*store.User, error) {
	for attempt := 0; ; attempt++ {
		u, err := c.user(ctx, id)
		if err != nil {
			return nil, err
		}
		if err := change(u); err != nil {
			return nil, err
		}
		err = c.st.UpdateUser(ctx, u)
		if errors.Is(err, store.ErrConflict) && attempt < 5 {
			continue
		}
		return u, err
	}
}

// revokeAll ends every session of the user, closing their WebSockets.
func (c *Console) revokeAll(ctx context.Context, userID string) (int, error) {
	if c.o.Revoke != nil {
		before, _ := c.st.ListSessions(ctx, userID)
		return len(before), c.o.Revoke(ctx, userID)
	}
	hashes, err := c.st.RevokeUserSessions(ctx, userID, c.o.Now())
	return len(hashes), err
}

// userInput is what creating a user takes.
type userInput struct {
	Email  string   `json:"email"`
	Name   string   `json:"name"`
	Groups []string `json:"groups"`
	Mode   string   `json:"mode"`
}

func (c *Console) createUser(ctx context.Context, r *http.Request, in userInput) (*store.User, *issued, error) {
	email := store.NormalizeEmail(in.Email)
	if err := directory.ValidEmail(email); err != nil {
		return nil, nil, invalid("admin.invalid_email", err)
	}
	name, err := directory.CleanName(in.Name)
	if err != nil {
		return nil, nil, invalid("admin.invalid_name", err)
	}
	groups, err := directory.CleanGroups(in.Groups)
	if err != nil {
		return nil, nil, invalid("admin.invalid_group", err)
	}
	mode, err := checkMode(in.Mode)
	if err != nil {
		return nil, nil, err
	}
	u := &store.User{Email: email, Name: name, Groups: groups, MustChangePassword: true}
	pw, hash, err := c.passwords().OneTime(ctx)
	if err != nil {
		return nil, nil, web.Unavailable(err)
	}
	u.PasswordHash = hash
	if err := c.st.CreateUser(ctx, u); err != nil {
		if errors.Is(err, store.ErrDuplicate) {
			return nil, nil, refuse(http.StatusConflict, "admin.duplicate", "user %s already exists", email)
		}
		return nil, nil, err
	}
	out, err := c.issue(ctx, r, u, mode, pw)
	if err != nil {
		return nil, nil, err
	}
	c.audit(ctx, r, "user.create", u.Email, fmt.Sprintf("groups: %s; %s", strings.Join(u.Groups, ","), modeDetail(mode)))
	return u, out, nil
}

func checkMode(m string) (string, error) {
	switch m {
	case "", ModePassword:
		return ModePassword, nil
	case ModeLink:
		return ModeLink, nil
	}
	return "", refuse(http.StatusBadRequest, "admin.invalid_mode", "mode must be %s or %s", ModePassword, ModeLink)
}

func modeDetail(mode string) string {
	if mode == ModeLink {
		return "set-password link issued"
	}
	return "one-time password issued"
}

// issue hands out the credential for u: pw itself (already its password)
// or a set-password link, which replaces any earlier link of u.
func (c *Console) issue(ctx context.Context, r *http.Request, u *store.User, mode, pw string) (*issued, error) {
	if mode == ModePassword {
		return &issued{Mode: mode, Password: pw}, nil
	}
	if err := c.revokeLinks(ctx, u.ID); err != nil {
		return nil, err
	}
	tok, hash := directory.NewSetPasswordLink()
	exp := c.o.Now().Add(SetPasswordLinkTTL)
	if err := c.st.CreateToken(ctx, &store.Token{Hash: hash, UserID: u.ID, Kind: store.TokenSetPassword, Name: "set-password link", ExpiresAt: exp}); err != nil {
		return nil, err
	}
	scheme := request.From(r).Scheme
	if scheme == "" {
		scheme = "https"
	}
	return &issued{Mode: mode, Link: scheme + "://" + r.Host + directory.SetPasswordPath + tok, Expires: exp.UTC().Format(time.RFC3339)}, nil
}

// revokeLinks revokes the user's unused set-password links.
func (c *Console) revokeLinks(ctx context.Context, userID string) error {
	toks, err := c.st.ListTokens(ctx, userID)
	if err != nil {
		return err
	}
	for _, t := range toks {
		if t.Kind == store.TokenSetPassword && t.RevokedAt.IsZero() {
			if err := c.st.RevokeToken(ctx, t.ID, c.o.Now()); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
	}
	return nil
}

// self refuses an admin acting on their own account in a way that would
// lock them out.
func self(r *http.Request, u *store.User, what string) error {
	if a := adminOf(r); a != nil && a.user.ID == u.ID {
		return refuse(http.StatusConflict, "admin.self", "you cannot %s your own account here", what)
	}
	return nil
}

func (c *Console) setDisabled(ctx context.Context, r *http.Request, id string, disabled bool) (*store.User, int, error) {
	u, err := c.modify(ctx, id, func(u *store.User) error {
		if disabled {
			if err := self(r, u, "disable"); err != nil {
				return err
			}
		}
		u.Disabled = disabled
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	if !disabled {
		c.audit(ctx, r, "user.enable", u.Email, "")
		return u, 0, nil
	}
	n, err := c.revokeAll(ctx, u.ID)
	if err != nil {
		return nil, 0, err
	}
	c.audit(ctx, r, "user.disable", u.Email, fmt.Sprintf("%d session(s) ended", n))
	return u, n, nil
}

func (c *Console) deleteUser(ctx context.Context, r *http.Request, id string) (*store.User, error) {
	u, err := c.user(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := self(r, u, "delete"); err != nil {
		return nil, err
	}
	// End the sessions first, so every instance sees them revoked (and
	// closes their WebSockets) before the rows go with the user.
	n, err := c.revokeAll(ctx, u.ID)
	if err != nil {
		return nil, err
	}
	if err := c.st.DeleteUser(ctx, u.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	c.audit(ctx, r, "user.delete", u.Email, fmt.Sprintf("%d session(s) ended", n))
	return u, nil
}

func (c *Console) resetPassword(ctx context.Context, r *http.Request, id, mode string) (*store.User, *issued, error) {
	mode, err := checkMode(mode)
	if err != nil {
		return nil, nil, err
	}
	pw, hash, err := c.passwords().OneTime(ctx)
	if err != nil {
		return nil, nil, err
	}
	u, err := c.modify(ctx, id, func(u *store.User) error {
		u.PasswordHash, u.MustChangePassword = hash, true
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	n, err := c.revokeAll(ctx, u.ID)
	if err != nil {
		return nil, nil, err
	}
	out, err := c.issue(ctx, r, u, mode, pw)
	if err != nil {
		return nil, nil, err
	}
	c.audit(ctx, r, "user.reset_password", u.Email, fmt.Sprintf("%s; %d session(s) ended", modeDetail(mode), n))
	return u, out, nil
}

func (c *Console) updateUser(ctx context.Context, r *http.Request, id string, name *string, groups []string, setGroups bool) (*store.User, error) {
	var clean []string
	if setGroups {
		var err error
		if clean, err = directory.CleanGroups(groups); err != nil {
			return nil, invalid("admin.invalid_group", err)
		}
	}
	var cleanN string
	if name != nil {
		var err error
		if cleanN, err = directory.CleanName(*name); err != nil {
			return nil, invalid("admin.invalid_name", err)
		}
	}
	var before []string
	u, err := c.modify(ctx, id, func(u *store.User) error {
		before = slices.Clone(u.Groups)
		if setGroups {
			if a := adminOf(r); a != nil && a.user.ID == u.ID && slices.Contains(before, c.group) && !slices.Contains(clean, c.group) {
				return refuse(http.StatusConflict, "admin.self", "you cannot remove yourself from %s here", c.group)
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
	if setGroups && !slices.Equal(before, clean) {
		c.audit(ctx, r, "user.groups", u.Email, fmt.Sprintf("groups: %s (were: %s)", strings.Join(clean, ","), strings.Join(before, ",")))
	}
	if name != nil {
		c.audit(ctx, r, "user.update", u.Email, "name changed")
	}
	return u, nil
}

func (c *Console) revokeUserSessions(ctx context.Context, r *http.Request, id string) (*store.User, int, error) {
	u, err := c.user(ctx, id)
	if err != nil {
		return nil, 0, err
	}
	n, err := c.revokeAll(ctx, u.ID)
	if err != nil {
		return nil, 0, err
	}
	c.audit(ctx, r, "session.revoke_all", u.Email, fmt.Sprintf("%d session(s) ended", n))
	return u, n, nil
}

func (c *Console) resetMFA(ctx context.Context, r *http.Request, id string) (*store.User, error) {
	u, err := c.user(ctx, id)
	if err != nil {
		return nil, err
	}
	actor := ""
	if a := adminOf(r); a != nil {
		actor = a.user.Email
	}
	if err := c.o.MFA.Remove(ctx, u.ID, actor, u.Email, clientIP(r)); err != nil {
		return nil, err
	}
	return u, nil
}

// revokeSession ends one session, found by its id hash.
func (c *Console) revokeSession(ctx context.Context, r *http.Request, hash string) error {
	if len(hash) != 64 {
		return refuse(http.StatusNotFound, "admin.no_session", "no such session")
	}
	s, err := c.st.GetSession(ctx, hash)
	if errors.Is(err, store.ErrNotFound) {
		return refuse(http.StatusNotFound, "admin.no_session", "no such session")
	}
	if err != nil {
		return err
	}
	if c.o.RevokeSession != nil {
		err = c.o.RevokeSession(ctx, hash)
	} else {
		err = c.st.RevokeSession(ctx, hash, c.o.Now())
	}
	if err != nil {
		return err
	}
	c.audit(ctx, r, "session.revoke", s.Email, fmt.Sprintf("session from %s started %s", orDash(s.ClientIP), s.CreatedAt.UTC().Format(time.RFC3339)))
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// groupInfo is one group: its members and the routes that allow it.
type groupInfo struct {
	Name    string   `json:"name"`
	Members []string `json:"members"`
	Routes  []string `json:"routes"`
	Admin   bool     `json:"admin"`
}

// groups lists every group with members in the directory or named by a
// route's allow list.
func (c *Console) groups(ctx context.Context) ([]groupInfo, error) {
	members, err := c.st.ListGroups(ctx)
	if err != nil {
		return nil, err
	}
	byName := map[string]*groupInfo{}
	get := func(n string) *groupInfo {
		if g := byName[n]; g != nil {
			return g
		}
		g := &groupInfo{Name: n, Members: []string{}, Routes: []string{}, Admin: n == c.group}
		byName[n] = g
		return g
	}
	for n, emails := range members {
		g := get(n)
		g.Members = append(g.Members, emails...)
		slices.Sort(g.Members)
	}
	get(c.group)
	for _, rt := range c.cfg.Routes {
		if rt == nil || rt.Public {
			continue
		}
		for _, m := range rt.Allow {
			if n, ok := strings.CutPrefix(m, "group:"); ok {
				g := get(n)
				if !slices.Contains(g.Routes, rt.Name()) {
					g.Routes = append(g.Routes, rt.Name())
				}
			}
		}
	}
	out := make([]groupInfo, 0, len(byName))
	for _, g := range byName {
		out = append(out, *g)
	}
	slices.SortFunc(out, func(a, b groupInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// userTokens lists a user's personal access tokens (not set-password
// links), newest first as the store returns them.
func (c *Console) userTokens(ctx context.Context, id string) ([]TokenJSON, error) {
	u, err := c.user(ctx, id)
	if err != nil {
		return nil, err
	}
	list, err := c.st.ListTokens(ctx, u.ID)
	if err != nil {
		return nil, err
	}
	out := []TokenJSON{}
	for _, t := range list {
		if t.Kind != store.TokenPersonal {
			continue
		}
		out = append(out, TokenJSON{ID: t.ID, Name: t.Name, CreatedAt: timeString(t.CreatedAt), ExpiresAt: timeString(t.ExpiresAt),
			LastUsed: timeString(t.LastUsed), Revoked: !t.RevokedAt.IsZero()})
	}
	return out, nil
}

// revokeUserToken revokes one of the user's personal access tokens.
func (c *Console) revokeUserToken(ctx context.Context, r *http.Request, userID, tokenID string) error {
	u, err := c.user(ctx, userID)
	if err != nil {
		return err
	}
	list, err := c.st.ListTokens(ctx, u.ID)
	if err != nil {
		return err
	}
	for _, t := range list {
		if t.ID == tokenID && t.Kind == store.TokenPersonal {
			if err := c.revokeToken(ctx, t); err != nil {
				return err
			}
			c.audit(ctx, r, "token.revoke", u.Email, "personal access token "+strconv.Quote(t.Name))
			return nil
		}
	}
	return refuse(http.StatusNotFound, "admin.no_token", "no such token")
}

// revokeToken revokes a personal access token, through the sign-in's hook
// when there is one so it stops at once on this instance.
func (c *Console) revokeToken(ctx context.Context, t *store.Token) error {
	if c.o.RevokeToken != nil {
		return c.o.RevokeToken(ctx, t.ID, t.Hash)
	}
	return c.st.RevokeToken(ctx, t.ID, c.o.Now())
}

// passwords hashes one-time passwords under the process's hashing limiter.
func (c *Console) passwords() directory.Passwords {
	return directory.Passwords{Limiter: c.o.Limiter, Policy: password.Policy{MinLength: c.cfg.Identity.Passwords.MinLength}}
}
