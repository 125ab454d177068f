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
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/moat-dev/moat/internal/auth/instancekey"
	"github.com/moat-dev/moat/internal/auth/mfa"
	"github.com/moat-dev/moat/internal/auth/pat"
	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/csrf"
	"github.com/moat-dev/moat/internal/request"
	"github.com/moat-dev/moat/internal/store"
	"github.com/moat-dev/moat/internal/web"
)

// Paths the console and the API live under.
const (
	Prefix    = "/_moat/admin/"
	APIPrefix = "/_moat/admin/api/"
)

// TokenPrefix starts every personal access token (pat.Prefix).
const TokenPrefix = pat.Prefix

// Bounds on what a request may carry.
const (
	maxBodyBytes = 64 << 10
	maxQueryLen  = 254
	pageSize     = 50
	maxPageSize  = 500
)

// Options are the optional parts of a Console.
type Options struct {
	// Key is the instance key (sealing TOTP secrets, deriving the CSRF
	// key); loaded with instancekey.ForConfig when nil.
	Key *instancekey.Key
	// MFA enrols and resets second factors; built on the store when nil.
	MFA *mfa.Service
	// Revoke ends every session of a user and closes their WebSockets.
	// When nil the sessions are revoked in the store only, and each
	// instance closes the WebSockets within seconds when it polls.
	Revoke func(ctx context.Context, userID string) error
	// RevokeSession ends one session (by its id hash) and closes its
	// WebSockets; store.RevokeSession when nil.
	RevokeSession func(ctx context.Context, idHash string) error
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
}

// New builds the Console for cfg on st.
func New(cfg *config.Config, st store.Store, o Options) (*Console, error) {
	if cfg == nil || st == nil {
		return nil, errors.New("admin: config and store are required")
	}
	if o.Key == nil {
		k, err := instancekey.ForConfig(context.Background(), cfg, st)
		if err != nil {
			return nil, fmt.Errorf("admin: %w", err)
		}
		o.Key = k
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MFA == nil {
		o.MFA = mfa.New(st, o.Key)
		o.MFA.Logger = o.Logger
	}
	c := &Console{
		cfg: cfg, st: st, o: o,
		log:    o.Logger.With("component", "admin"),
		csrf:   csrf.New(o.Key.Derive("csrf")),
		group:  cfg.Identity.AdminGroup,
		reauth: cfg.Identity.AdminReauth.D(),
	}
	if c.group == "" {
		c.group = config.DefaultAdminGroup
	}
	if c.reauth <= 0 {
		c.reauth = config.DefaultAdminReauth
	}
	c.pages = http.NewServeMux()
	for _, rt := range c.pageRoutes() {
		c.pages.HandleFunc(rt.Method+" "+strings.TrimSuffix(Prefix, "/")+rt.Path, rt.handler)
	}
	c.pages.HandleFunc(Prefix, func(w http.ResponseWriter, r *http.Request) { web.Error(w, r, http.StatusNotFound, "not_found") })
	c.api = http.NewServeMux()
	for _, rt := range c.apiRoutes() {
		c.api.HandleFunc(rt.Method+" "+strings.TrimSuffix(APIPrefix, "/")+rt.Path, rt.handler)
	}
	c.api.HandleFunc(APIPrefix, func(w http.ResponseWriter, r *http.Request) {
		if allow := c.allowed(r); allow != "" {
			w.Header().Set("Allow", allow)
			apiError(w, r, http.StatusMethodNotAllowed, "method_not_allowed", "this path allows "+allow)
			return
		}
		apiError(w, r, http.StatusNotFound, "not_found", "no such API path")
	})
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
	handler http.HandlerFunc
}

// admin is who is using the console: the admin's account and how they
// proved it.
type admin struct {
	user    *store.User
	session string // session id hash; "" for a token
	token   bool
}

type adminKey struct{}

func adminOf(r *http.Request) *admin {
	a, _ := r.Context().Value(adminKey{}).(*admin)
	return a
}

// ServeHTTP lets an admin through to the console or the API; everyone
// else is sent to sign in (no session), refused with 403 (not an admin) or
// asked to sign in again (a sign-in older than admin_reauth).
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	isAPI := strings.HasPrefix(r.URL.Path, APIPrefix) || r.URL.Path == strings.TrimSuffix(APIPrefix, "/")
	var a *admin
	var ok bool
	if isAPI && strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
		a, ok = c.tokenAdmin(w, r)
	} else {
		a, ok = c.sessionAdmin(w, r, isAPI)
	}
	if !ok {
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

// isAdmin reports whether groups hold the admin group.
func (c *Console) isAdmin(groups []string) bool { return slices.Contains(groups, c.group) }

func (c *Console) sessionAdmin(w http.ResponseWriter, r *http.Request, isAPI bool) (*admin, bool) {
	info := request.From(r)
	u := info.User
	if !u.SignedIn() || u.SessionID == "" {
		if isAPI || !web.IsNavigation(r) {
			apiError(w, r, http.StatusUnauthorized, "auth.unauthorized", "sign in, or send an admin's personal access token")
			return nil, false
		}
		http.Redirect(w, r, "/_moat/login?return_to="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
		return nil, false
	}
	if !c.isAdmin(u.Groups) {
		c.forbidden(w, r, isAPI, u.Email)
		return nil, false
	}
	ctx := r.Context()
	sess, err := c.st.GetSession(ctx, u.SessionID)
	if err != nil || !sess.RevokedAt.IsZero() {
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			c.log.Error("admin: read session", "user", u.Email, "request_id", info.ID, "err", err)
		}
		c.unauthorized(w, r, isAPI)
		return nil, false
	}
	su, err := c.st.GetUser(ctx, u.ID)
	if err != nil || su.Disabled {
		c.unauthorized(w, r, isAPI)
		return nil, false
	}
	if c.o.Now().Sub(sess.AuthTime) > c.reauth {
		if isAPI || !web.IsNavigation(r) {
			apiError(w, r, http.StatusUnauthorized, "admin.reauth", fmt.Sprintf("the admin console needs a sign-in from the last %s: sign in again", c.reauth))
			return nil, false
		}
		http.Redirect(w, r, "/_moat/login?reauth=1&return_to="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
		return nil, false
	}
	if c.cfg.Identity.Passwords.MFA == "required" && sess.Provider == "password" && !sess.MFA {
		// Two-factor is compulsory here: administrators are no exception.
		if isAPI || !web.IsNavigation(r) {
			apiError(w, r, http.StatusForbidden, "mfa.required", "sign in with your second factor first")
			return nil, false
		}
		http.Redirect(w, r, "/_moat/account/mfa?return_to="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
		return nil, false
	}
	if su.MustChangePassword && sess.Provider == "password" {
		if isAPI || !web.IsNavigation(r) {
			apiError(w, r, http.StatusForbidden, "auth.change_required", "choose a new password first")
			return nil, false
		}
		http.Redirect(w, r, "/_moat/password?return_to="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
		return nil, false
	}
	return &admin{user: su, session: u.SessionID}, true
}

// HashToken is what the store keeps of a personal access token: the hex
// SHA-256 of the whole token, as internal/auth/pat (and moat tokens)
// computes it.
func HashToken(token string) string { return pat.Hash(token) }

// tokenAdmin authorises an API call by a personal access token.
func (c *Console) tokenAdmin(w http.ResponseWriter, r *http.Request) (*admin, bool) {
	raw := strings.TrimSpace(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
	if !pat.Valid(raw) {
		apiError(w, r, http.StatusUnauthorized, "auth.unauthorized", "not a moat personal access token")
		return nil, false
	}
	ctx := r.Context()
	now := c.o.Now()
	tok, err := c.st.GetTokenByHash(ctx, HashToken(raw))
	if err != nil || !tok.RevokedAt.IsZero() || !tok.ExpiresAt.IsZero() && !now.Before(tok.ExpiresAt) || tok.Name == SetPasswordTokenName {
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			c.log.Error("admin: read token", "err", err)
		}
		apiError(w, r, http.StatusUnauthorized, "auth.unauthorized", "unknown, expired or revoked token")
		return nil, false
	}
	u, err := c.st.GetUser(ctx, tok.UserID)
	if err != nil || u.Disabled {
		apiError(w, r, http.StatusUnauthorized, "auth.unauthorized", "the token's user cannot sign in")
		return nil, false
	}
	if !c.isAdmin(u.Groups) {
		c.forbidden(w, r, true, u.Email)
		return nil, false
	}
	if err := c.st.TouchToken(ctx, tok.ID, now); err != nil {
		c.log.Warn("admin: record token use", "err", err)
	}
	return &admin{user: u, token: true}, true
}

func (c *Console) unauthorized(w http.ResponseWriter, r *http.Request, isAPI bool) {
	if isAPI || !web.IsNavigation(r) {
		apiError(w, r, http.StatusUnauthorized, "auth.unauthorized", "sign in again")
		return
	}
	http.Redirect(w, r, "/_moat/login?return_to="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
}

func (c *Console) forbidden(w http.ResponseWriter, r *http.Request, isAPI bool, email string) {
	info := request.From(r)
	c.log.Warn("admin: refused a non-admin", "user", email, "path", r.URL.Path, "client_ip", clientIP(r), "request_id", info.ID)
	if isAPI {
		apiError(w, r, http.StatusForbidden, "admin.forbidden", fmt.Sprintf("%s is not in the admin group %s", email, c.group))
		return
	}
	web.Error(w, r, http.StatusForbidden, "admin.forbidden", email)
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
