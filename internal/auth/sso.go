package auth

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/moat-dev/moat/internal/identity/session"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/moat-dev/moat/internal/auth/oidc"
	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/directory"
	"github.com/moat-dev/moat/internal/identity/access"
	"github.com/moat-dev/moat/internal/request"
	"github.com/moat-dev/moat/internal/store"
	"github.com/moat-dev/moat/internal/web"
)

// OIDCCookie starts the name of the cookies that carry a sign-in with a
// provider from its start to the callback: one cookie per sign-in, named
// after its state (flowCookieName), so two tabs signing in at once do not
// overwrite each other's (issue 12 #12). Each is sealed with the instance
// key, bound to this browser (the state sent to the provider must match the
// one inside), single use and valid for flowLifetime; a browser holds at
// most maxFlows.
const OIDCCookie = "__Host-moat-oidc-"

// maxFlows bounds the sign-ins one browser may have under way at once.
const maxFlows = 5

// flowCookieName is the name of the cookie of the sign-in with state.
func flowCookieName(state string) string {
	sum := sha256.Sum256([]byte(state))
	return OIDCCookie + hex.EncodeToString(sum[:8])
}

// Paths of single sign-on under /_moat/.
const (
	// CallbackPath is the redirect URI to register at every provider, on
	// each routed host: https://HOST/_moat/oidc/callback.
	CallbackPath   = "/_moat/oidc/callback"
	ssoStartPrefix = "/_moat/sso/" // + NAME + "/start?return_to=…"
)

// Limits of a sign-in with a provider.
const (
	flowLifetime   = 10 * time.Minute
	maxCodeLen     = 4096
	maxUsedStates  = 100000
	ssoWorkBudget  = 30 * time.Second
	minRecheckTick = 5 * time.Second
)

// ssoState is one configuration's single sign-on: its providers.
type ssoState struct {
	providers map[string]*oidc.Provider
	// recheckTick is how often Run looks for sessions due a re-check.
	recheckTick time.Duration
}

// ssoReplay is the process's memory of single sign-on: the states already
// redeemed (so a callback cannot be replayed, even across a reload) and
// when each session was last re-checked with its provider.
type ssoReplay struct {
	mu      sync.Mutex
	used    map[string]usedFlow  // state -> the sign-in it finished
	checked map[string]time.Time // session hash -> last successful re-check
}

func newSSO(cfg *config.Config) (*ssoState, error) {
	st := &ssoState{providers: map[string]*oidc.Provider{}}
	tick := time.Minute
	for name, pc := range cfg.Identity.SSO {
		p, err := oidc.New(name, pc)
		if err != nil {
			return nil, err
		}
		st.providers[name] = p
		if iv := pc.RefreshInterval.D(); iv > 0 && iv/4 < tick {
			tick = iv / 4
		}
	}
	st.recheckTick = max(tick, minRecheckTick)
	return st, nil
}

// Provider returns the configured SSO provider name, or nil. Tests and
// the server use it to tune the provider (HTTP client, clock).
func (s *Service) Provider(name string) *oidc.Provider { return s.sso.providers[name] }

// useState records state as redeemed and reports whether it was fresh.
func (st *ssoReplay) useState(state string, until time.Time, returnTo string) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if _, seen := st.used[state]; seen {
		return false
	}
	if len(st.used) >= maxUsedStates {
		now := time.Now()
		for k, u := range st.used {
			if now.After(u.until) {
				delete(st.used, k)
			}
		}
		if len(st.used) >= maxUsedStates {
			return false // fail closed under a flood
		}
	}
	st.used[state] = usedFlow{until: until, returnTo: returnTo}
	return true
}

// usedFlow is a redeemed sign-in: until when its state matters, and where
// it led (for a repeated callback in a signed-in browser).
type usedFlow struct {
	until    time.Time
	returnTo string
}

// returnTo is where the sign-in with state led, if it was redeemed.
func (st *ssoReplay) returnTo(state string) (string, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	u, ok := st.used[state]
	return u.returnTo, ok
}

func (st *ssoReplay) lastChecked(hash string) (time.Time, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	t, ok := st.checked[hash]
	return t, ok
}

func (st *ssoReplay) setChecked(hash string, t time.Time) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if t.IsZero() {
		delete(st.checked, hash)
		return
	}
	st.checked[hash] = t
}

// flow is what OIDCCookie holds.
type flow struct {
	Provider string `json:"p"`
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	ReturnTo string `json:"r"`
	Expires  int64  `json:"e"`
}

var flowAAD = []byte("moat-oidc-flow")

func (s *Process) sealFlow(f flow) (string, error) {
	b, err := json.Marshal(f)
	if err != nil {
		return "", err
	}
	ct, err := s.Key.Seal(b, flowAAD)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(ct), nil
}

func (s *Process) openFlow(v string) (*flow, error) {
	if v == "" || len(v) > 4096 {
		return nil, errors.New("no sign-in in progress in this browser")
	}
	ct, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil {
		return nil, errors.New("sign-in cookie is malformed")
	}
	b, err := s.Key.Open(ct, flowAAD)
	if err != nil {
		return nil, errors.New("sign-in cookie does not open")
	}
	var f flow
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, errors.New("sign-in cookie is malformed")
	}
	if time.Now().Unix() > f.Expires {
		return nil, errors.New("sign-in took longer than 10 minutes")
	}
	return &f, nil
}

// refreshAAD binds a sealed refresh token to its provider and user, so a
// token copied to another row does not open.
func refreshAAD(provider, userID string) []byte {
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
func (s *Service) serveSSO(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return web.NewProblem(http.StatusMethodNotAllowed, "bad_request").With("Allow", "GET, HEAD")
	}
	w.Header().Set("Cache-Control", "no-store")
	if r.URL.Path == CallbackPath {
		return s.ssoCallback(w, r)
	}
	name, ok := strings.CutSuffix(strings.TrimPrefix(r.URL.Path, ssoStartPrefix), "/start")
	if !ok || strings.Contains(name, "/") {
		return web.NewProblem(http.StatusNotFound, "not_found")
	}
	return s.ssoStart(w, r, name)
}

// ssoStart sends the browser to provider name, if a route on this host
// signs in with it.
func (s *Service) ssoStart(w http.ResponseWriter, r *http.Request, name string) error {
	returnTo := access.SafeReturnTo(r.URL.Query().Get("return_to"))
	p := s.sso.providers[name]
	offered := false
	for _, rt := range s.routesFor(r, hostOnly(r.Host), returnTo) {
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
		return s.ssoFailed(w, r, name, "", err)
	}
	v, err := s.p.sealFlow(f)
	if err != nil {
		s.p.logger.Error("seal sign-in cookie", "err", err)
		return web.Unavailable(nil)
	}
	s.dropOldFlows(w, r)
	http.SetCookie(w, &http.Cookie{Name: flowCookieName(f.State), Value: v, Path: "/", MaxAge: int(flowLifetime / time.Second),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, authURL, http.StatusSeeOther)
	return nil
}

// dropOldFlows makes room for one more sign-in in r's browser: past
// maxFlows - 1 flow cookies, the ones closest to expiry (or that do not
// open) are deleted.
func (s *Service) dropOldFlows(w http.ResponseWriter, r *http.Request) {
	type held struct {
		name    string
		expires int64
	}
	var flows []held
	for _, c := range r.Cookies() {
		if !strings.HasPrefix(c.Name, OIDCCookie) {
			continue
		}
		h := held{name: c.Name}
		if f, err := s.p.openFlow(c.Value); err == nil {
			h.expires = f.Expires
		}
		flows = append(flows, h)
	}
	if len(flows) < maxFlows {
		return
	}
	slices.SortFunc(flows, func(a, b held) int { return cmp.Compare(a.expires, b.expires) })
	for _, h := range flows[:len(flows)-maxFlows+1] {
		clearFlowCookie(w, h.name)
	}
}

func clearFlowCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1, Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
}

// providerError is the error parameter a provider may send back (RFC 6749
// §4.1.2.1), kept only when it has the registered shape.
var providerError = regexp.MustCompile(`^[a-z_]{1,64}$`)

// ssoCallback finishes a sign-in: it checks the flow cookie and state,
// redeems the code, checks the ID token, and starts a session.
func (s *Service) ssoCallback(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	state := q.Get("state")
	name := flowCookieName(state)
	// Single use: whatever happens next, this sign-in is over.
	clearFlowCookie(w, name)
	f, err := s.p.openFlow(session.CookieValue(r, name))
	switch {
	case err != nil:
		err = fmt.Errorf("%w: %v", oidc.ErrBadState, err)
	case subtle.ConstantTimeCompare([]byte(state), []byte(f.State)) != 1:
		err = fmt.Errorf("%w: state does not match this browser's sign-in", oidc.ErrBadState)
	case !s.p.replay.useState(f.State, time.Unix(f.Expires, 0), f.ReturnTo):
		err = fmt.Errorf("%w: state already used", oidc.ErrBadState)
	}
	if err != nil {
		// A callback this browser cannot finish (a restored tab, a
		// second click) while it is signed in goes where it was headed
		// rather than to an error (issue 12 #12).
		if _, ss := signedIn(r); ss != nil && !ss.MustChangePassword {
			returnTo := "/"
			if f != nil {
				returnTo = f.ReturnTo
			} else if to, ok := s.p.replay.returnTo(state); ok {
				returnTo = to
			}
			http.Redirect(w, r, returnTo, http.StatusSeeOther)
			return nil
		}
		provider := ""
		if f != nil {
			provider = f.Provider
		}
		return s.ssoFailed(w, r, provider, "", err)
	}
	p := s.sso.providers[f.Provider]
	if p == nil {
		return s.ssoFailed(w, r, f.Provider, "", fmt.Errorf("%w: provider no longer configured", oidc.ErrBadState))
	}
	if e := q.Get("error"); e != "" {
		if !providerError.MatchString(e) {
			e = "invalid"
		}
		return s.ssoFailed(w, r, f.Provider, "", fmt.Errorf("%w: the provider answered %s", errProviderRefused, e))
	}
	code := q.Get("code")
	if code == "" || len(code) > maxCodeLen {
		return s.ssoFailed(w, r, f.Provider, "", fmt.Errorf("%w: no code", oidc.ErrBadState))
	}
	ctx, cancel := context.WithTimeout(r.Context(), ssoWorkBudget)
	defer cancel()
	id, tok, err := p.Exchange(ctx, code, f.Verifier, callbackURL(r), f.Nonce)
	if err != nil {
		return s.ssoFailed(w, r, f.Provider, "", err)
	}
	s.p.keepGroups(id)
	u, err := s.p.ssoUser(ctx, id)
	if errors.Is(err, errUserDisabled) {
		return s.ssoFailed(w, r, f.Provider, id.Email, err)
	}
	if err != nil {
		s.p.logger.Error("sso: load or create user", "user", id.Email, "err", err)
		return signInUnavailable(err)
	}
	var sealed []byte
	if tok.RefreshToken != "" {
		if sealed, err = s.p.Key.Seal([]byte(tok.RefreshToken), refreshAAD(f.Provider, u.ID)); err != nil {
			s.p.logger.Error("sso: seal refresh token", "err", err)
			return web.Unavailable(nil)
		}
	}
	e, err := s.startSession(ctx, w, r, u, f.Provider, func(sess *store.Session) {
		sess.Groups = id.Groups
		sess.HostedDomain = id.HostedDomain
		sess.RefreshToken = sealed
	})
	if err != nil {
		s.p.logger.Error("sso: start session", "user", u.Email, "err", err)
		return signInUnavailable(err)
	}
	s.p.replay.setChecked(e.IDHash, time.Now())
	if err := s.p.store.RecordLogin(ctx, u.ID, time.Now()); err != nil {
		s.p.logger.Warn("record last login", "user", u.Email, "err", err)
	}
	s.p.audit(ctx, "login.success", u.Email, clientIP(request.From(r)), "sso:"+f.Provider)
	http.Redirect(w, r, f.ReturnTo, http.StatusSeeOther)
	return nil
}

var (
	errUserDisabled    = errors.New("user is disabled in moat")
	errProviderRefused = errors.New("provider refused the sign-in")
)

// ssoUser returns moat's record of the person the provider vouched for,
// creating one (without a password) at their first sign-in, so that
// moat's own groups, disabling and sessions work for SSO users too.
func (s *Process) ssoUser(ctx context.Context, id *oidc.Identity) (*store.User, error) {
	for attempt := 0; attempt < 2; attempt++ {
		u, err := s.store.GetUserByEmail(ctx, id.Email)
		if err == nil {
			if u.Disabled {
				return nil, errUserDisabled
			}
			return u, nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		u = &store.User{Email: id.Email, Name: id.Name}
		err = s.store.CreateUser(ctx, u)
		if err == nil {
			s.audit(ctx, "user.create", u.Email, "", "first sign-in with "+id.Provider)
			return u, nil
		}
		if !errors.Is(err, store.ErrDuplicate) {
			return nil, err
		}
		// Created meanwhile by another sign-in: read it.
	}
	return nil, errors.New("user could not be created")
}

// ssoFailed is the answer to a sign-in that did not work: a page the person
// can act on. It logs and audits why (never a token).
func (s *Service) ssoFailed(w http.ResponseWriter, r *http.Request, provider, email string, err error) error {
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
		if p := s.cfg.Identity.SSO[provider]; p != nil {
			args = []any{p.HostedDomain}
		}
	case errors.Is(err, errUserDisabled):
		status, key, args = http.StatusForbidden, "auth.not_allowed", []any{email}
	case errors.Is(err, errProviderRefused):
		status, key = http.StatusForbidden, "auth.sso.refused"
	}
	s.p.logger.Warn("sso sign-in failed", "provider", provider, "reason", key, "user", email,
		"client_ip", clientIP(info), "request_id", info.ID, "err", err)
	if !errors.Is(err, oidc.ErrProviderDown) {
		s.p.audit(r.Context(), "login.failure", email, clientIP(info), "sso:"+provider+": "+strings.TrimPrefix(key, "auth."))
	}
	return &web.Problem{Status: status, Key: key, Args: args, Header: header}
}

// runRecheck re-checks SSO sessions with their provider until ctx ends.
func (s *Service) runRecheck(ctx context.Context) {
	due := false
	for _, p := range s.sso.providers {
		if p.RefreshInterval() > 0 {
			due = true
		}
	}
	if !due {
		return
	}
	tick := time.NewTicker(s.sso.recheckTick)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		s.recheckSessions(ctx, time.Now())
	}
}

// recheckSessions asks the provider about every live SSO session whose
// last check is older than its provider's refresh_interval. A refusal
// (token revoked, user disabled at the provider, email no longer verified,
// other domain) ends the session and closes its WebSockets; a provider
// that cannot be reached is given one more interval before the session
// ends (fail closed, but not on a blip).
func (s *Service) recheckSessions(ctx context.Context, now time.Time) {
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	sessions, err := s.p.store.ListSessions(lctx, "")
	cancel()
	if err != nil {
		s.p.logger.Warn("sso re-check: list sessions", "err", err)
		return
	}
	live := make(map[string]bool, len(sessions))
	for _, sess := range sessions {
		live[sess.IDHash] = true
	}
	s.p.replay.mu.Lock()
	for h := range s.p.replay.checked {
		if !live[h] {
			delete(s.p.replay.checked, h) // expired or revoked elsewhere
		}
	}
	s.p.replay.mu.Unlock()
	for _, sess := range sessions {
		if ctx.Err() != nil {
			return
		}
		p := s.sso.providers[sess.Provider]
		if p == nil || p.RefreshInterval() <= 0 {
			continue
		}
		last, ok := s.p.replay.lastChecked(sess.IDHash)
		if !ok {
			last = sess.AuthTime
			if last.IsZero() {
				last = sess.CreatedAt
			}
		}
		if now.Sub(last) < p.RefreshInterval() {
			continue
		}
		s.recheck(ctx, p, sess, last, now)
	}
}

func (s *Service) recheck(ctx context.Context, p *oidc.Provider, sess *store.Session, last, now time.Time) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	end := func(why string) {
		if err := s.p.Sessions.Revoke(ctx, sess.IDHash); err != nil {
			s.p.logger.Error("sso: end a session the provider no longer vouches for; tried again at the next check", "user", sess.Email, "err", err)
			return
		}
		s.p.replay.setChecked(sess.IDHash, time.Time{})
		s.p.audit(ctx, "session.revoke", sess.Email, "", "sso:"+p.Name()+": "+why)
	}
	if len(sess.RefreshToken) == 0 {
		end("no refresh token to re-check the sign-in with; sign in again")
		return
	}
	rt, err := s.p.Key.Open(sess.RefreshToken, refreshAAD(p.Name(), sess.UserID))
	if err != nil {
		end("refresh token does not open")
		return
	}
	id, tok, err := p.Refresh(ctx, string(rt))
	switch {
	case errors.Is(err, oidc.ErrProviderDown):
		if now.Sub(last) >= 2*p.RefreshInterval() {
			end("provider unreachable for too long")
		} else {
			s.p.logger.Warn("sso re-check: provider unreachable, will retry", "provider", p.Name(), "user", sess.Email, "err", err)
		}
		return
	case err != nil:
		end("provider refused: " + err.Error())
		return
	case !strings.EqualFold(id.Email, sess.Email):
		end("provider now names another email")
		return
	}
	s.p.keepGroups(id)
	// Read the session again just before writing, so a revocation made
	// meanwhile is not undone.
	cur, err := s.p.store.GetSession(ctx, sess.IDHash)
	if err != nil || !cur.RevokedAt.IsZero() {
		return
	}
	changed := !slices.Equal(cur.Groups, id.Groups) || cur.HostedDomain != id.HostedDomain
	cur.Groups = id.Groups
	cur.HostedDomain = id.HostedDomain
	if tok.RefreshToken != "" && tok.RefreshToken != string(rt) {
		if cur.RefreshToken, err = s.p.Key.Seal([]byte(tok.RefreshToken), refreshAAD(p.Name(), sess.UserID)); err != nil {
			s.p.logger.Error("sso re-check: seal refresh token", "err", err)
			return
		}
	}
	if err := s.p.store.UpdateSession(ctx, cur); err != nil {
		s.p.logger.Warn("sso re-check: save session", "user", sess.Email, "err", err)
		return
	}
	s.p.replay.setChecked(sess.IDHash, now)
	// The next request reloads the session with the provider's groups.
	s.p.Sessions.Drop(sess.IDHash)
	s.p.Signer.Forget(sess.IDHash)
	if changed {
		// Who the user is changed: every instance re-checks their
		// WebSockets, whose apps read the old groups.
		s.p.UserChanged(ctx, sess.UserID)
	}
}

// keepGroups drops from id the groups the provider named that cannot travel
// in X-Moat-User-Groups (directory.ProviderGroups: a comma would make one
// group two), and logs them, so an app never reads a group the provider did
// not name (issue 12 #5).
func (s *Process) keepGroups(id *oidc.Identity) {
	kept, dropped := directory.ProviderGroups(id.Groups)
	if len(dropped) > 0 {
		s.logger.Warn("dropped groups an identity provider named that X-Moat-User-Groups cannot carry", "provider", id.Provider, "user", id.Email, "groups", dropped)
	}
	id.Groups = kept
}

// CallbackReturnTo is where the sign-in a callback request finishes leads
// (its return_to), or "" when r names none: the server routes the callback
// under the security policy of that route (issue 12 #1).
func (s *Process) CallbackReturnTo(r *http.Request) string {
	state := r.URL.Query().Get("state")
	if state == "" {
		return ""
	}
	if f, err := s.openFlow(session.CookieValue(r, flowCookieName(state))); err == nil && f.State == state {
		return f.ReturnTo
	}
	to, _ := s.replay.returnTo(state)
	return to
}
