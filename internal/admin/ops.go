package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/moat-dev/moat/internal/config"
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
	ModePassword = directory.ModePassword
	ModeLink     = directory.ModeLink
)

// issued is a credential handed out once: a one-time password or a link.
type issued struct {
	Mode     string `json:"mode"`
	Password string `json:"one_time_password,omitempty"`
	Link     string `json:"set_password_url,omitempty"`
	Expires  string `json:"expires_at,omitempty"`
}

// actor is who r makes a change as, for the directory's audit log.
func actor(r *http.Request) directory.Actor {
	a := directory.Actor{Name: "admin", ClientIP: clientIP(r), RequestID: request.From(r).ID}
	if ad := adminOf(r); ad != nil {
		a.UserID, a.Name = ad.user.ID, ad.user.Email
		if ad.token {
			a.Via = "personal access token"
		}
	}
	return a
}

// answer turns a directory refusal into the console's and the API's
// answer: 400, 404 or 409 with its code and sentence.
func answer(err error) error {
	var rf *directory.Refusal
	if !errors.As(err, &rf) {
		return err
	}
	status := map[directory.Kind]int{directory.Invalid: http.StatusBadRequest, directory.NotFound: http.StatusNotFound, directory.Conflict: http.StatusConflict}[rf.Kind]
	return refuse(status, rf.Code, "%s", rf.Msg)
}

// user loads a user by id.
func (c *Console) user(ctx context.Context, id string) (*store.User, error) {
	u, err := c.dir.User(ctx, id)
	return u, answer(err)
}

// userInput is what creating a user takes.
type userInput struct {
	Email  string   `json:"email"`
	Name   string   `json:"name"`
	Groups []string `json:"groups"`
	Mode   string   `json:"mode"`
}

func (c *Console) createUser(ctx context.Context, r *http.Request, in userInput) (*store.User, *issued, error) {
	u, out, err := c.dir.CreateUser(ctx, actor(r), directory.NewUser{Email: in.Email, Name: in.Name, Groups: in.Groups, Mode: in.Mode})
	if err != nil {
		return nil, nil, answer(err)
	}
	return u, issuedOf(r, out), nil
}

// issuedOf is a credential as the console shows it and the API returns it:
// a set-password link's token becomes its URL on r's host.
func issuedOf(r *http.Request, in *directory.Issued) *issued {
	out := &issued{Mode: in.Mode, Password: in.Password}
	if in.Link != "" {
		scheme := request.From(r).Scheme
		if scheme == "" {
			scheme = "https"
		}
		out.Link = scheme + "://" + r.Host + directory.SetPasswordPath + in.Link
		out.Expires = in.Expires.UTC().Format(time.RFC3339)
	}
	return out
}

func (c *Console) setDisabled(ctx context.Context, r *http.Request, id string, disabled bool) (*store.User, int, error) {
	u, n, err := c.dir.SetDisabled(ctx, actor(r), id, disabled)
	return u, n, answer(err)
}

func (c *Console) deleteUser(ctx context.Context, r *http.Request, id string) (*store.User, error) {
	u, _, err := c.dir.DeleteUser(ctx, actor(r), id)
	return u, answer(err)
}

func (c *Console) resetPassword(ctx context.Context, r *http.Request, id, mode string) (*store.User, *issued, error) {
	u, out, _, err := c.dir.ResetPassword(ctx, actor(r), id, mode, "")
	if err != nil {
		return nil, nil, answer(err)
	}
	return u, issuedOf(r, out), nil
}

func (c *Console) updateUser(ctx context.Context, r *http.Request, id string, name *string, groups []string, setGroups bool) (*store.User, error) {
	u, err := c.dir.UpdateUser(ctx, actor(r), id, name, groups, setGroups)
	return u, answer(err)
}

func (c *Console) revokeUserSessions(ctx context.Context, r *http.Request, id string) (*store.User, int, error) {
	u, n, err := c.dir.RevokeUserSessions(ctx, actor(r), id)
	return u, n, answer(err)
}

// unlockSignIn lifts a lock of the user's sign-in from unknown devices; it
// returns how much longer the lock would have lasted.
func (c *Console) unlockSignIn(ctx context.Context, r *http.Request, id string) (*store.User, time.Duration, error) {
	u, left, err := c.dir.UnlockSignIn(ctx, actor(r), id)
	return u, left, answer(err)
}

// signInLock is how much longer u's sign-in from unknown devices stays
// locked; when it cannot be read the page says nothing of it (logged).
func (c *Console) signInLock(r *http.Request, u *store.User) time.Duration {
	left, err := c.dir.SignInLock(r.Context(), u)
	if err != nil {
		c.log.Warn("admin: read the sign-in lock", "user", u.Email, "request_id", request.From(r).ID, "err", err)
	}
	return left
}

func (c *Console) resetMFA(ctx context.Context, r *http.Request, id string) (*store.User, error) {
	u, err := c.dir.ResetMFA(ctx, actor(r), id)
	return u, answer(err)
}

// revokeSession ends one session, found by its id hash.
func (c *Console) revokeSession(ctx context.Context, r *http.Request, hash string) error {
	_, err := c.dir.RevokeSession(ctx, actor(r), hash, "")
	return answer(err)
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
			if m.Kind == config.MemberGroup {
				g := get(m.Value)
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
// links), as the store returns them.
func (c *Console) userTokens(ctx context.Context, id string) ([]TokenJSON, error) {
	u, err := c.user(ctx, id)
	if err != nil {
		return nil, err
	}
	list, err := c.dir.Tokens(ctx, u.ID)
	if err != nil {
		return nil, err
	}
	out := []TokenJSON{}
	for _, t := range list {
		out = append(out, TokenJSON{ID: t.ID, Name: t.Name, CreatedAt: timeString(t.CreatedAt), ExpiresAt: timeString(t.ExpiresAt),
			LastUsed: timeString(t.LastUsed), Revoked: !t.RevokedAt.IsZero()})
	}
	return out, nil
}

// revokeUserToken revokes one of the user's personal access tokens.
func (c *Console) revokeUserToken(ctx context.Context, r *http.Request, userID, tokenID string) error {
	_, err := c.dir.RevokeToken(ctx, actor(r), userID, tokenID)
	return answer(err)
}
