package account

import (
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/moat-dev/moat/internal/auth/pat"
	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/directory"
	"github.com/moat-dev/moat/internal/request"
	"github.com/moat-dev/moat/internal/store"
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
	list, err := a.st.ListTokens(r.Context(), userID)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	var out []tokenRow
	for _, t := range list {
		if t.Kind != store.TokenPersonal || !t.RevokedAt.IsZero() || !t.ExpiresAt.IsZero() && !now.Before(t.ExpiresAt) {
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
	limit := a.cfg.Identity.AdminReauth.D()
	if limit <= 0 {
		limit = config.DefaultAdminReauth
	}
	return time.Since(s.AuthTime) <= limit
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
	secret, hash := pat.New()
	t := &store.Token{Hash: hash, UserID: wo.user.ID, Name: name}
	if days > 0 {
		t.ExpiresAt = time.Now().Add(time.Duration(days) * 24 * time.Hour)
	}
	if err := a.st.CreateToken(r.Context(), t); err != nil {
		return err
	}
	a.audit(r.Context(), r, wo.user.Email, "token.create", wo.user.Email, "personal access token "+strconv.Quote(name))
	a.render(w, r, http.StatusCreated, "account-token.html", "account.tokens.created", page{Email: wo.user.Email, Token: secret, Name: name, ReturnTo: Prefix})
	return nil
}

// postRevokeToken revokes one of the user's own tokens.
func (a *Account) postRevokeToken(w http.ResponseWriter, r *http.Request) error {
	if err := a.form(w, r); err != nil {
		return err
	}
	wo := whoOf(r)
	id := r.PathValue("id")
	list, err := a.st.ListTokens(r.Context(), wo.user.ID)
	if err != nil {
		return err
	}
	var found *store.Token
	for _, t := range list {
		if t.ID == id && t.Kind == store.TokenPersonal {
			found = t
		}
	}
	if found == nil {
		return web.NewProblem(http.StatusNotFound, "not_found")
	}
	if a.o.RevokeToken != nil {
		err = a.o.RevokeToken(r.Context(), found.ID, found.Hash)
	} else {
		err = a.st.RevokeToken(r.Context(), found.ID, time.Now())
	}
	if err != nil {
		return err
	}
	a.audit(r.Context(), r, wo.user.Email, "token.revoke", wo.user.Email, "personal access token "+strconv.Quote(found.Name))
	http.Redirect(w, r, Prefix+"?done=token_revoked", http.StatusSeeOther)
	return nil
}
