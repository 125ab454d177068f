package account

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/directory"
	"github.com/moat-dev/moat/internal/request"
	"github.com/moat-dev/moat/internal/web"
)

// maxTokensShown bounds the tokens the page lists.
const maxTokensShown = 100

// tokenLifetimes are the choices the form offers, in days (0: no expiry).
var tokenLifetimes = []int{30, 90, 365, 0}

type tokenRow struct {
	ID, Name, Created, Expires, LastUsed string
}

// tokens lists the user's live personal access tokens (never set-password
// links).
func (a *Account) tokens(r *http.Request, userID string) ([]tokenRow, error) {
	list, err := a.dir.Tokens(r.Context(), userID)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	var out []tokenRow
	for _, t := range list {
		if !t.RevokedAt.IsZero() || !t.ExpiresAt.IsZero() && !now.Before(t.ExpiresAt) {
			continue
		}
		if len(out) == maxTokensShown {
			break
		}
		out = append(out, tokenRow{ID: t.ID, Name: t.Name, Created: fmtTime(t.CreatedAt), Expires: fmtTime(t.ExpiresAt), LastUsed: fmtTime(t.LastUsed)})
	}
	return out, nil
}

// recentSignIn reports whether the session proved who the user is within
// identity.admin_reauth: creating a token outlives the session, so a
// forgotten open browser must not be enough.
func (a *Account) recentSignIn(s *request.Session) bool {
	return time.Since(s.AuthTime) <= a.reauthLimit()
}

// reauthLimit is identity.admin_reauth: how recent a sign-in must be to
// make a change that outlives the session.
func (a *Account) reauthLimit() time.Duration {
	if limit := a.cfg.Identity.AdminReauth.D(); limit > 0 {
		return limit
	}
	return config.DefaultAdminReauth
}

// postCreateToken creates a personal access token and shows it once.
func (a *Account) postCreateToken(w http.ResponseWriter, r *http.Request) error {
	if err := a.form(w, r); err != nil {
		return err
	}
	wo := whoOf(r)
	if !a.recentSignIn(wo.session) {
		http.Redirect(w, r, "/_moat/login?reauth=1&return_to="+url.QueryEscape(Prefix), http.StatusSeeOther)
		return nil
	}
	name, nameErr := directory.CleanTokenName(r.PostForm.Get("name"))
	days, err := strconv.Atoi(r.PostForm.Get("days"))
	valid := false
	for _, d := range tokenLifetimes {
		valid = valid || err == nil && d == days
	}
	if nameErr != nil || !valid {
		p, err := a.base(r)
		if err != nil {
			return err
		}
		p.Error = web.T(web.Lang(r), "account.tokens.invalid", directory.MaxTokenName)
		a.rerenderOverview(w, r, p)
		return nil
	}
	secret, _, err := a.dir.CreateToken(r.Context(), a.actor(r), wo.user.ID, name, time.Duration(days)*24*time.Hour)
	if err != nil {
		return err
	}
	a.render(w, r, http.StatusCreated, "account-token.html", "account.tokens.created", page{Email: wo.user.Email, Token: secret, Name: name, ReturnTo: Prefix})
	return nil
}

// postRevokeToken revokes one of the user's own tokens.
func (a *Account) postRevokeToken(w http.ResponseWriter, r *http.Request) error {
	if err := a.form(w, r); err != nil {
		return err
	}
	wo := whoOf(r)
	if _, err := a.dir.RevokeToken(r.Context(), a.actor(r), wo.user.ID, r.PathValue("id")); err != nil {
		if errors.Is(err, directory.ErrNotFound) {
			return web.NewProblem(http.StatusNotFound, "not_found")
		}
		return err
	}
	http.Redirect(w, r, Prefix+"?done=token_revoked", http.StatusSeeOther)
	return nil
}
