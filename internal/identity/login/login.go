package login

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/moat-dev/moat/internal/auth/instancekey"
	"github.com/moat-dev/moat/internal/auth/mfa"
	"github.com/moat-dev/moat/internal/auth/oidc"
	"github.com/moat-dev/moat/internal/auth/passkey"
	"github.com/moat-dev/moat/internal/auth/password"
	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/csrf"
	"github.com/moat-dev/moat/internal/directory"
	"github.com/moat-dev/moat/internal/identity/access"
	"github.com/moat-dev/moat/internal/identity/device"
	"github.com/moat-dev/moat/internal/identity/session"
	"github.com/moat-dev/moat/internal/identity/throttle"
	"github.com/moat-dev/moat/internal/request"
	"github.com/moat-dev/moat/internal/store"
	"github.com/moat-dev/moat/internal/usage"
	"github.com/moat-dev/moat/internal/web"
)

// Paths of the sign-in under /_moat/ that other packages name.
const (
	// MFAPath is the second step of a password sign-in
	// (access.EnrolPath is where a user without a second factor is sent
	// when a route requires one).
	MFAPath = "/_moat/mfa"
	// CallbackPath is the redirect URI to register at every provider, on
	// each routed host: https://HOST/_moat/oidc/callback.
	CallbackPath = "/_moat/oidc/callback"
)

// Bounds on what a sign-in form may carry, and on the work it may take.
const (
	maxEmailLen     = 254
	maxPasswordLen  = 1024
	loginWorkBudget = 30 * time.Second
)

// Options are what the pages use of the process, which outlives every
// configuration; all are required but Usage and Ended.
type Options struct {
	// CSRF guards every form and passkey call.
	CSRF *csrf.Guard
	// Sessions starts and ends sessions (the process's cache over the
	// store), under Lifetimes, the configuration's bounds.
	Sessions  *session.Sessions
	Lifetimes session.Lifetimes
	// Throttle decides before any password or code is checked; Hold slows
	// its refusals.
	Throttle *throttle.Service
	Hold     *throttle.Hold
	// Devices gives a browser that signed in before a budget of its own.
	Devices *device.Jar
	// MFA and Passkeys are the second factors (and the passkey sign-in).
	MFA      *mfa.Service
	Passkeys *passkey.Service
	// Key signs the cookie of a sign-in waiting for its second step.
	Key *instancekey.Key
	// Flows are the sign-ins with a provider, under way and redeemed.
	Flows *Flows
	// Limiter bounds the password hashes running at once.
	Limiter *password.Limiter
	// Providers are the configuration's single sign-on providers by name.
	Providers map[string]*oidc.Provider
	// Usage, when set, counts every sign-in.
	Usage usage.Recorder
	// Ended stops at once what a password change ended (the sessions of
	// the user) on this instance and, through the fan-out, on the others.
	Ended func(directory.Ended)
	// Logger receives errors and audit lines (slog.Default when nil).
	Logger *slog.Logger
}

// Pages are the sign-in pages of one configuration; they are safe for
// concurrent use. Create them with New and mount them at /_moat/ behind
// the session's Identify, as every page of moat's: a request is
// identified once.
type Pages struct {
	cfg     *config.Config
	st      store.Store
	o       Options
	log     *slog.Logger
	dir     *directory.Directory
	hasher  hasher
	pending pendingSignIns
	serve   http.Handler
}

// New builds the sign-in pages of cfg on st with the process's o. It
// contacts nothing: providers are discovered at first use.
func New(cfg *config.Config, st store.Store, o Options) (*Pages, error) {
	if cfg == nil || st == nil {
		return nil, errors.New("login: config and store are required")
	}
	if o.CSRF == nil || o.Sessions == nil || o.Throttle == nil || o.Hold == nil || o.Devices == nil || o.MFA == nil ||
		o.Passkeys == nil || o.Key == nil || o.Flows == nil || o.Limiter == nil {
		return nil, errors.New("login: the CSRF guard, sessions, throttle, hold, device cookies, second factors, instance key, flows and hashing limiter are required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	pg := &Pages{cfg: cfg, st: st, o: o, log: o.Logger.With("component", "login"),
		hasher:  newHasher(o.Limiter),
		pending: pendingSignIns{key: o.Key, st: st},
	}
	pg.dir = &directory.Directory{Store: st, Logger: pg.log, Ended: o.Ended,
		Passwords: directory.Passwords{Limiter: o.Limiter, Policy: password.Policy{MinLength: cfg.Identity.Passwords.MinLength}}}
	pg.serve = web.HandlerFunc(pg.route)
	return pg, nil
}

// ServeHTTP serves the sign-in paths:
//
//	/_moat/login     GET the form, POST email + password
//	/_moat/logout    GET a confirmation button, POST to sign out
//	/_moat/password  change the password (forced after a one-time password)
//	/_moat/mfa       the second step of a password sign-in
//	/_moat/sso/NAME/start, /_moat/oidc/callback  sign in with a provider
//	/_moat/passkey/  sign in with a passkey alone, or as the second step (JSON)
//
// Every POST needs the CSRF token of its form and a same-origin browser.
func (pg *Pages) ServeHTTP(w http.ResponseWriter, r *http.Request) { pg.serve.ServeHTTP(w, r) }

func (pg *Pages) route(w http.ResponseWriter, r *http.Request) error {
	switch r.URL.Path {
	case "/_moat/login":
		return pg.serveLogin(w, r)
	case "/_moat/logout":
		return pg.serveLogout(w, r)
	case "/_moat/password":
		return pg.servePassword(w, r)
	case MFAPath:
		return pg.serveSecondFactor(w, r)
	}
	if r.URL.Path == CallbackPath || strings.HasPrefix(r.URL.Path, ssoStartPrefix) {
		return pg.serveSSO(w, r)
	}
	if strings.HasPrefix(r.URL.Path, passkeyPrefix) {
		return pg.servePasskey(w, r)
	}
	return web.NewProblem(http.StatusNotFound, "not_found")
}

// FlowPage reports whether path is a page of a sign-in on its way to a
// route (login, second step, password change, SSO start and callback,
// passkey sign-in and second step): such a page runs under the security
// policy of the route its return_to names (Flows.CallbackReturnTo for the
// callback), so a client a route's policy refuses cannot sign in through
// that route (issue 12 #1).
func FlowPage(path string) bool {
	switch path {
	case "/_moat/login", MFAPath, "/_moat/password", CallbackPath:
		return true
	}
	return strings.HasPrefix(path, ssoStartPrefix) || strings.HasPrefix(path, passkeyPrefix)
}

// loginPage fills login.html.
type loginPage struct {
	Heading   string
	Email     string
	Error     string
	CSRF      string
	ReturnTo  string
	Password  bool     // the password form is offered
	Providers []string // SSO buttons
	// Passkey offers a sign-in with a passkey alone (with the password
	// form, on a host with a name); Host is where its passkeys work.
	Passkey bool
	Host    string
}

func (pg *Pages) serveLogin(w http.ResponseWriter, r *http.Request) error {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		returnTo := access.SafeReturnTo(r.URL.Query().Get("return_to"))
		// Signed in already: back to the page, unless that page asked for a
		// fresh sign-in (a route's max_age, the admin console's re-auth).
		if _, ss := signedIn(r); ss != nil && !ss.MustChangePassword && !r.URL.Query().Has("reauth") {
			http.Redirect(w, r, returnTo, http.StatusSeeOther)
			return nil
		}
		p := pg.loginData(w, r, returnTo)
		if !p.Password && len(p.Providers) == 1 && r.URL.Query().Has("return_to") {
			// One way to sign in, and a page to get back to: go straight
			// to the provider. A bare /_moat/login (where sign-out lands)
			// shows the button instead, or the provider's own session
			// would sign the person straight back in.
			http.Redirect(w, r, ssoStartURL(p.Providers[0], returnTo), http.StatusSeeOther)
			return nil
		}
		renderLogin(w, r, http.StatusOK, p)
		return nil
	case http.MethodPost:
		return pg.loginPost(w, r)
	}
	return web.NewProblem(http.StatusMethodNotAllowed, "bad_request").With("Allow", "GET, HEAD, POST")
}

func renderLogin(w http.ResponseWriter, r *http.Request, status int, p loginPage) {
	web.Render(w, r, status, "login.html", web.T(web.Lang(r), "auth.login.title"), p)
}

// loginData is the login page for r's host: its title and login methods
// come from the routes on that host.
func (pg *Pages) loginData(w http.ResponseWriter, r *http.Request, returnTo string) loginPage {
	host := hostOnly(r.Host)
	p := loginPage{Heading: host, ReturnTo: returnTo, CSRF: pg.o.CSRF.Token(w, r)}
	for _, rt := range pg.routesFor(r, host, returnTo) {
		if rt.Title != "" && p.Heading == host {
			p.Heading = rt.Title
		}
		for _, m := range rt.Login {
			if m == "password" {
				p.Password = true
			} else if !slices.Contains(p.Providers, m) {
				p.Providers = append(p.Providers, m)
			}
		}
	}
	if _, err := passkey.RPOf(r.Host, ""); err == nil && p.Password {
		p.Passkey, p.Host = true, host
	}
	return p
}

// routesFor lists the routes whose login methods a sign-in on host offers:
// the route return_to leads to (longest path prefix on the host), or else
// every signed-in route of the host.
func (pg *Pages) routesFor(r *http.Request, host, returnTo string) []*config.Route {
	path, _, _ := strings.Cut(returnTo, "?")
	var all []*config.Route
	var best *config.Route
	for _, rt := range pg.cfg.Routes {
		if rt == nil || rt.Public || !strings.EqualFold(rt.Host, host) {
			continue
		}
		all = append(all, rt)
		if strings.HasPrefix(path, rt.PathPrefix) && (best == nil || len(rt.PathPrefix) > len(best.PathPrefix)) {
			best = rt
		}
	}
	if best != nil {
		return []*config.Route{best}
	}
	if rt := request.From(r).Route; rt != nil && !rt.Public && len(all) == 0 {
		return []*config.Route{rt}
	}
	return all
}

func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return strings.ToLower(h)
	}
	return strings.ToLower(hostport)
}

// startSession signs u in with provider: a new session under the
// configuration's lifetimes, its cookie set, the sign-in counted.
func (pg *Pages) startSession(ctx context.Context, w http.ResponseWriter, r *http.Request, u *store.User, provider string, opts ...func(*store.Session)) (*request.Session, error) {
	sess, err := pg.o.Sessions.Start(ctx, w, r, u, provider, pg.o.Lifetimes, opts...)
	if err == nil && pg.o.Usage != nil {
		pg.o.Usage.SignIn(request.From(r), provider)
	}
	return sess, err
}

// signInUnavailable is the answer to a sign-in moat cannot complete now,
// its store or counters unreachable or every hashing slot busy: 503, "we
// cannot sign you in right now", with Retry-After; err is logged.
func signInUnavailable(err error) *web.Problem {
	return web.StoreDown("auth.signin_unavailable", err)
}

// signedIn returns the user and the session Identify found for r; the
// session is nil when r carries none.
func signedIn(r *http.Request) (request.User, *request.Session) {
	info := request.From(r)
	return info.User, info.Session
}

// actor is who a sign-in event of r is about, acting for themselves: the
// audit log's actor (email; "" is anonymous), client address and request.
func actor(r *http.Request, email string) directory.Actor {
	info := request.From(r)
	return directory.Actor{Name: email, ClientIP: clientIP(info), RequestID: info.ID}
}

func clientIP(info *request.Info) string {
	if info.ClientIP.IsValid() {
		return info.ClientIP.String()
	}
	return ""
}
