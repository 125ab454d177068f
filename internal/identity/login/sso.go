package login

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/moat-dev/moat/internal/auth/oidc"
	"github.com/moat-dev/moat/internal/directory"
	"github.com/moat-dev/moat/internal/identity/access"
	"github.com/moat-dev/moat/internal/identity/session"
	"github.com/moat-dev/moat/internal/request"
	"github.com/moat-dev/moat/internal/store"
	"github.com/moat-dev/moat/internal/web"
)

// ssoStartPrefix + NAME + "/start?return_to=…" starts a sign-in with the
// provider NAME.
const ssoStartPrefix = "/_moat/sso/"

// Limits of a sign-in with a provider.
const (
	maxCodeLen    = 4096
	ssoWorkBudget = 30 * time.Second
)

// RefreshAAD binds a sealed refresh token to its provider and user, so a
// token copied to another row does not open. The callback seals with it;
// the re-check of a session with its provider opens with it.
func RefreshAAD(provider, userID string) []byte {
	return []byte("moat-refresh\x00" + provider + "\x00" + userID)
}

// callbackURL is the redirect URI for r's host.
func callbackURL(r *http.Request) string {
	scheme := request.From(r).Scheme
	if scheme == "" {
		scheme = "https"
		if r.TLS == nil {
			scheme = "http"
		}
	}
	return scheme + "://" + r.Host + CallbackPath
}

// ssoStartURL is where the login page's button for provider leads.
func ssoStartURL(provider, returnTo string) string {
	return ssoStartPrefix + url.PathEscape(provider) + "/start?return_to=" + url.QueryEscape(returnTo)
}

// serveSSO answers /_moat/sso/NAME/start and /_moat/oidc/callback.
func (pg *Pages) serveSSO(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return web.NewProblem(http.StatusMethodNotAllowed, "bad_request").With("Allow", "GET, HEAD")
	}
	w.Header().Set("Cache-Control", "no-store")
	if r.URL.Path == CallbackPath {
		return pg.ssoCallback(w, r)
	}
	name, ok := strings.CutSuffix(strings.TrimPrefix(r.URL.Path, ssoStartPrefix), "/start")
	if !ok || strings.Contains(name, "/") {
		return web.NewProblem(http.StatusNotFound, "not_found")
	}
	return pg.ssoStart(w, r, name)
}

// ssoStart sends the browser to provider name, if a route on this host
// signs in with it.
func (pg *Pages) ssoStart(w http.ResponseWriter, r *http.Request, name string) error {
	returnTo := access.SafeReturnTo(r.URL.Query().Get("return_to"))
	p := pg.o.Providers[name]
	offered := false
	for _, rt := range pg.routesFor(r, hostOnly(r.Host), returnTo) {
		if slices.Contains(rt.Login, name) {
			offered = true
		}
	}
	if p == nil || !offered {
		return web.NewProblem(http.StatusNotFound, "not_found")
	}
	f := flow{Provider: name, State: oidc.RandomToken(), Nonce: oidc.RandomToken(), Verifier: oauth2.GenerateVerifier(),
		ReturnTo: returnTo, Expires: time.Now().Add(flowLifetime).Unix()}
	ctx, cancel := context.WithTimeout(r.Context(), ssoWorkBudget)
	defer cancel()
	authURL, err := p.AuthCodeURL(ctx, f.State, f.Nonce, f.Verifier, callbackURL(r))
	if err != nil {
		return pg.ssoFailed(w, r, name, "", err)
	}
	v, err := pg.o.Flows.seal(f)
	if err != nil {
		pg.log.Error("seal sign-in cookie", "err", err)
		return web.Unavailable(nil)
	}
	pg.o.Flows.dropOld(w, r)
	setFlowCookie(w, f.State, v)
	http.Redirect(w, r, authURL, http.StatusSeeOther)
	return nil
}

// providerError is the error parameter a provider may send back (RFC 6749
// §4.1.2.1), kept only when it has the registered shape.
var providerError = regexp.MustCompile(`^[a-z_]{1,64}$`)

// errProviderRefused is a callback that carries the provider's refusal.
var errProviderRefused = errors.New("provider refused the sign-in")

// ssoCallback finishes a sign-in: it checks the flow cookie and state,
// redeems the code, checks the ID token, and starts a session.
func (pg *Pages) ssoCallback(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	state := q.Get("state")
	name := flowCookieName(state)
	f, err := pg.o.Flows.open(session.CookieValue(r, name))
	switch {
	case err != nil:
		err = fmt.Errorf("%w: %v", oidc.ErrBadState, err)
	case subtle.ConstantTimeCompare([]byte(state), []byte(f.State)) != 1:
		err = fmt.Errorf("%w: state does not match this browser's sign-in", oidc.ErrBadState)
	case f.Led:
		err = fmt.Errorf("%w: state already used", oidc.ErrBadState)
	}
	ctx, cancel := context.WithTimeout(r.Context(), ssoWorkBudget)
	defer cancel()
	if err == nil {
		fresh, serr := pg.o.Flows.redeem(ctx, f.State, time.Unix(f.Expires, 0))
		if serr != nil {
			clearFlowCookie(w, name)
			pg.log.Error("sso: spend state", "err", serr)
			return signInUnavailable(serr)
		}
		if !fresh {
			err = fmt.Errorf("%w: state already used", oidc.ErrBadState)
		}
	}
	// Single use: whatever happens next, this sign-in is over; a redeemed
	// one's cookie keeps only where it led.
	if err == nil {
		if lerr := pg.o.Flows.lead(w, f); lerr != nil {
			clearFlowCookie(w, name)
		}
	} else if f == nil || !f.Led {
		clearFlowCookie(w, name)
	}
	if err != nil {
		// A callback this browser cannot finish (a restored tab, a
		// second click) while it is signed in goes where it was headed,
		// on any instance, rather than to an error (issue 12 #12).
		if _, ss := signedIn(r); ss != nil && !ss.MustChangePassword {
			returnTo := "/"
			if f != nil {
				returnTo = f.ReturnTo
			}
			http.Redirect(w, r, returnTo, http.StatusSeeOther)
			return nil
		}
		provider := ""
		if f != nil {
			provider = f.Provider
		}
		return pg.ssoFailed(w, r, provider, "", err)
	}
	p := pg.o.Providers[f.Provider]
	if p == nil {
		return pg.ssoFailed(w, r, f.Provider, "", fmt.Errorf("%w: provider no longer configured", oidc.ErrBadState))
	}
	if e := q.Get("error"); e != "" {
		if !providerError.MatchString(e) {
			e = "invalid"
		}
		return pg.ssoFailed(w, r, f.Provider, "", fmt.Errorf("%w: the provider answered %s", errProviderRefused, e))
	}
	code := q.Get("code")
	if code == "" || len(code) > maxCodeLen {
		return pg.ssoFailed(w, r, f.Provider, "", fmt.Errorf("%w: no code", oidc.ErrBadState))
	}
	id, tok, err := p.Exchange(ctx, code, f.Verifier, callbackURL(r), f.Nonce)
	if err != nil {
		return pg.ssoFailed(w, r, f.Provider, "", err)
	}
	id.Groups = pg.dir.KeepProviderGroups(id.Provider, id.Email, id.Groups)
	u, err := pg.dir.ProviderUser(ctx, actor(r, id.Email), id.Email, id.Name, id.Provider)
	if errors.Is(err, directory.ErrDisabled) {
		return pg.ssoFailed(w, r, f.Provider, id.Email, err)
	}
	if err != nil {
		pg.log.Error("sso: load or create user", "user", id.Email, "err", err)
		return signInUnavailable(err)
	}
	var sealed []byte
	if tok.RefreshToken != "" {
		if sealed, err = pg.o.Key.Seal([]byte(tok.RefreshToken), RefreshAAD(f.Provider, u.ID)); err != nil {
			pg.log.Error("sso: seal refresh token", "err", err)
			return web.Unavailable(nil)
		}
	}
	// The session's AuthTime is when the provider last vouched for the
	// person: its first re-check is due a refresh_interval later.
	if _, err := pg.startSession(ctx, w, r, u, f.Provider, func(sess *store.Session) {
		sess.Groups = id.Groups
		sess.HostedDomain = id.HostedDomain
		sess.RefreshToken = sealed
	}); err != nil {
		pg.log.Error("sso: start session", "user", u.Email, "err", err)
		return signInUnavailable(err)
	}
	if err := pg.st.RecordLogin(ctx, u.ID, time.Now()); err != nil {
		pg.log.Warn("record last login", "user", u.Email, "err", err)
	}
	pg.dir.Record(ctx, actor(r, u.Email), "login.success", u.Email, "sso:"+f.Provider)
	http.Redirect(w, r, f.ReturnTo, http.StatusSeeOther)
	return nil
}

// ssoFailed is the answer to a sign-in that did not work: a page the person
// can act on. It logs and audits why (never a token).
func (pg *Pages) ssoFailed(w http.ResponseWriter, r *http.Request, provider, email string, err error) error {
	info := request.From(r)
	status, key, args := http.StatusBadGateway, "auth.sso.failed", []any(nil)
	var header http.Header
	switch {
	case errors.Is(err, oidc.ErrProviderDown):
		status, key = http.StatusServiceUnavailable, "auth.sso.down"
		header = http.Header{"Retry-After": {"30"}}
	case errors.Is(err, oidc.ErrBadState):
		status, key = http.StatusBadRequest, "auth.sso.bad_state"
	case errors.Is(err, oidc.ErrEmailNotVerified):
		status, key = http.StatusForbidden, "auth.sso.unverified"
	case errors.Is(err, oidc.ErrDomainMismatch):
		status, key = http.StatusForbidden, "auth.sso.domain"
		if p := pg.cfg.Identity.SSO[provider]; p != nil {
			args = []any{p.HostedDomain}
		}
	case errors.Is(err, directory.ErrDisabled):
		status, key, args = http.StatusForbidden, "auth.not_allowed", []any{email}
	case errors.Is(err, errProviderRefused):
		status, key = http.StatusForbidden, "auth.sso.refused"
	}
	pg.log.Warn("sso sign-in failed", "provider", provider, "reason", key, "user", email,
		"client_ip", clientIP(info), "request_id", info.ID, "err", err)
	if !errors.Is(err, oidc.ErrProviderDown) {
		pg.dir.Record(r.Context(), actor(r, email), "login.failure", email, "sso:"+provider+": "+strings.TrimPrefix(key, "auth."))
	}
	return &web.Problem{Status: status, Key: key, Args: args, Header: header}
}
