// Package admin is moat's administration: the console at /_moat/admin/
// (server-rendered HTML that works without JavaScript) and the same
// operations as a JSON API under /_moat/admin/api/ for automation.
//
// Only members of identity.admin_group get in, and only with a sign-in
// younger than identity.admin_reauth; the API also accepts an admin's
// personal access token (Authorization: Bearer moat_pat_…). Every change is
// an audit event with the admin as actor; disabling, deleting and resetting
// a password end the user's sessions (issue 3).
package admin

import (
	"context"
	_ "embed"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/moat-dev/moat/internal/auth/allow"
	"github.com/moat-dev/moat/internal/auth/mfa"
	"github.com/moat-dev/moat/internal/auth/password"
	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/csrf"
	"github.com/moat-dev/moat/internal/directory"
	"github.com/moat-dev/moat/internal/identity/access"
	"github.com/moat-dev/moat/internal/identity/throttle"
	"github.com/moat-dev/moat/internal/request"
	hostroute "github.com/moat-dev/moat/internal/route"
	"github.com/moat-dev/moat/internal/store"
	"github.com/moat-dev/moat/internal/web"
)

// Paths the console and the API live under.
const (
	Prefix    = "/_moat/admin/"
	APIPrefix = "/_moat/admin/api/"
)

// Bounds on what a request may carry.
const (
	maxBodyBytes = 64 << 10
	maxQueryLen  = 254
	pageSize     = 50
	maxPageSize  = 500
)

// Options are the optional parts of a Console.
type Options struct {
	// CSRF guards the forms (the process's guard, shared by every page so
	// one token works on all of them); required.
	CSRF *csrf.Guard
	// MFA enrols and resets second factors (the process's, so wrong codes
	// count once wherever they are tried); required.
	MFA *mfa.Service
	// Throttle is the sign-in throttle (the process's): a user's page shows
	// a lock of their sign-in and lifts it; required.
	Throttle *throttle.Service
	// Limiter bounds the password hashes running at once (the process's);
	// required.
	Limiter *password.Limiter
	// Ended stops at once on this instance what a committed change ended
	// (directory.Directory.Ended: sessions, tokens, every session of a
	// user; the sign-in's caches and WebSockets). When nil the change is
	// in the store only, and each instance follows within seconds when it
	// polls.
	Ended func(directory.Ended)
	// TokenUser checks a personal access token sent to the API and returns
	// its user (the sign-in's check, with its cache and its revocation
	// hook); required.
	TokenUser func(ctx context.Context, token string) (request.User, error)
	// Logger receives audit lines and errors (slog.Default when nil).
	Logger *slog.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Console serves the admin console and API. Create it with New; mount it
// at Prefix behind the sign-in's Identify, which finds the session.
type Console struct {
	cfg    *config.Config
	st     store.Store
	o      Options
	log    *slog.Logger
	csrf   *csrf.Guard
	group  string
	reauth time.Duration
	pages  *http.ServeMux
	api    *http.ServeMux
	dir    *directory.Directory
}

// New builds the Console for cfg on st.
func New(cfg *config.Config, st store.Store, o Options) (*Console, error) {
	if cfg == nil || st == nil {
		return nil, errors.New("admin: config and store are required")
	}
	if o.CSRF == nil || o.MFA == nil || o.TokenUser == nil || o.Limiter == nil || o.Throttle == nil {
		return nil, errors.New("admin: the CSRF guard, the second factor, the sign-in throttle, the token check and the hashing limiter are required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	c := &Console{
		cfg: cfg, st: st, o: o,
		log:    o.Logger.With("component", "admin"),
		csrf:   o.CSRF,
		group:  cfg.Identity.AdminGroup,
		reauth: cfg.Identity.AdminReauth.D(),
	}
	if c.group == "" {
		c.group = config.DefaultAdminGroup
	}
	if c.reauth <= 0 {
		c.reauth = config.DefaultAdminReauth
	}
	c.dir = &directory.Directory{Store: st, MFA: o.MFA, Throttle: o.Throttle, AdminGroup: c.group, Logger: c.log, Now: o.Now,
		Passwords: directory.Passwords{Limiter: o.Limiter, Policy: password.Policy{MinLength: cfg.Identity.Passwords.MinLength}},
		Ended:     o.Ended}
	c.pages = http.NewServeMux()
	for _, rt := range c.pageRoutes() {
		c.pages.Handle(rt.Method+" "+strings.TrimSuffix(Prefix, "/")+rt.Path, web.HandlerFunc(rt.handler))
	}
	c.pages.Handle(Prefix, web.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		return web.NewProblem(http.StatusNotFound, "not_found")
	}))
	c.api = http.NewServeMux()
	for _, rt := range (&api{c: c}).apiRoutes() {
		c.api.Handle(rt.Method+" "+strings.TrimSuffix(APIPrefix, "/")+rt.Path, web.APIHandlerFunc(rt.handler))
	}
	c.api.Handle(APIPrefix, web.APIHandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		if allow := c.allowed(r); allow != "" {
			return refuse(http.StatusMethodNotAllowed, "method_not_allowed", "this path allows %s", allow).(*web.Problem).With("Allow", allow)
		}
		return refuse(http.StatusNotFound, "not_found", "no such API path")
	}))
	return c, nil
}

// allowed lists the methods the API serves on r's path, when r's own
// method is not one of them.
func (c *Console) allowed(r *http.Request) string {
	var out []string
	for _, m := range []string{"GET", "POST", "PATCH", "DELETE"} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := c.api.Handler(probe); pattern != APIPrefix {
			out = append(out, m)
		}
	}
	return strings.Join(out, ", ")
}

// route is one entry of the console's or the API's route table.
type route struct {
	Method  string
	Path    string // below Prefix or APIPrefix, with {id} wildcards
	handler func(http.ResponseWriter, *http.Request) error
}

// admin is who is using the console: the admin's account and how they
// proved it.
type admin struct {
	user    request.User
	session string // session id hash; "" for a token
	token   bool
}

type adminKey struct{}

func adminOf(r *http.Request) *admin {
	a, _ := r.Context().Value(adminKey{}).(*admin)
	return a
}

// ServeHTTP lets an admin through to the console or the API; everyone
// else is refused by the one access rule of the console (access.Rule):
// sent to sign in (no session), refused with 403 (not an admin), asked to
// sign in again (a sign-in older than admin_reauth), to choose a password
// or to pass the second factor that identity.passwords.mfa or a route of
// the host asks for.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	isAPI := strings.HasPrefix(r.URL.Path, APIPrefix) || r.URL.Path == strings.TrimSuffix(APIPrefix, "/")
	info := request.From(r)
	a := &admin{user: info.User}
	if isAPI && strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
		u, err := c.o.TokenUser(r.Context(), strings.TrimSpace(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")))
		if err != nil {
			p := refuse(http.StatusUnauthorized, "auth.unauthorized", "unknown, expired or revoked token, or its user cannot sign in").(*web.Problem)
			p.Err = err
			if errors.Is(err, store.ErrUnavailable) {
				// The token may well be valid: a script must retry, not
				// drop it.
				p = web.StoreDown("store_unavailable", err)
			}
			web.APIHandlerFunc(func(http.ResponseWriter, *http.Request) error { return p }).ServeHTTP(w, r)
			return
		}
		a.user, a.token = u, true
	} else if info.Session != nil {
		a.session = info.Session.IDHash
	} else {
		a.user = request.User{} // a bearer user of a route is no console user
	}
	rule := c.rule(r, isAPI)
	var session *request.Session
	if !a.token {
		session = info.Session
	}
	if d := rule.Check(a.user, session, c.o.Now()); d.Refusal != access.Pass {
		if d.Refusal == access.NotAllowed {
			c.log.Warn("admin: refused a non-admin", "user", d.Email, "path", r.URL.Path, "client_ip", clientIP(r), "request_id", info.ID)
		}
		access.Refuse(w, r, rule, d)
		return
	}
	r = r.WithContext(context.WithValue(r.Context(), adminKey{}, a))
	if isAPI {
		w.Header().Set("Cache-Control", "no-store")
		c.api.ServeHTTP(w, r)
		return
	}
	c.pages.ServeHTTP(w, r)
}

// rule is the console's access rule on r's host: members of the admin
// group, with a sign-in younger than admin_reauth and the second factor
// that identity.passwords.mfa or any signed-in route of the host requires
// (an admin is no exception to a route's mfa: required).
func (c *Console) rule(r *http.Request, isAPI bool) access.Rule {
	return access.Rule{
		Allow:        allow.List{allow.Group(c.group)},
		MaxAge:       c.reauth,
		MFA:          access.SecondFactorRequired(c.cfg, access.HostRoutes(c.cfg, hostroute.Host(r.Host))...),
		ReauthKey:    "admin.reauth",
		ForbiddenKey: "admin.forbidden",
		JSON:         isAPI,
	}
}

func clientIP(r *http.Request) string {
	if ip := request.From(r).ClientIP; ip.IsValid() {
		return ip.String()
	}
	return ""
}

// OpenAPI is the API's description (openapi.yaml), for tools and docs.
//
//go:embed openapi.yaml
var OpenAPI []byte
