package access

import (
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/moat-dev/moat/internal/auth/allow"
	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/request"
	"github.com/moat-dev/moat/internal/web"
)

// Paths a refusal sends a person to.
const (
	LoginPath    = "/_moat/login"
	PasswordPath = "/_moat/password"
	EnrolPath    = "/_moat/account/mfa"
)

// Rule is what a page or route asks of a request.
type Rule struct {
	// Allow is who may enter; nil admits every signed-in user.
	Allow allow.List
	// MaxAge asks a sign-in older than this to sign in again (0: any age).
	MaxAge time.Duration
	// MFA asks password sign-ins to have passed a second factor (SSO
	// sign-ins are the provider's business, tokens have no second step).
	MFA bool
	// ReauthKey is the message key of a refused stale sign-in that is not a
	// page navigation ("auth.unauthorized" when empty).
	ReauthKey string
	// ForbiddenKey, when set, is the message key of a NotAllowed refusal
	// (for pages and JSON alike) instead of the route's 403 page.
	ForbiddenKey string
	// JSON answers refusals with JSON even to a page navigation (an API).
	JSON bool
}

// Refusal names the first condition a request failed.
type Refusal int

// Refusals, in the order Check tests them.
const (
	// Pass: nothing refused.
	Pass Refusal = iota
	// SignIn: no user; sign in.
	SignIn
	// Reauthenticate: the sign-in is older than the rule's MaxAge.
	Reauthenticate
	// ChangePassword: a one-time password signed in; choose one first.
	ChangePassword
	// NotAllowed: signed in, but the allow list admits someone else.
	NotAllowed
	// SecondFactor: a password sign-in without the second factor the rule
	// asks for.
	SecondFactor
)

// Decision is what Check found.
type Decision struct {
	Refusal Refusal
	// Email is who the request is signed in as ("" for SignIn).
	Email string
	// Tried lists the allow-list members tried, for a NotAllowed refusal
	// (in the log line and for policy explain).
	Tried []string
}

// Check decides whether u, signed in with s (nil for a bearer token), may
// pass rule at now.
func (rule Rule) Check(u request.User, s *request.Session, now time.Time) Decision {
	if !u.SignedIn() {
		return Decision{Refusal: SignIn}
	}
	d := Decision{Email: u.Email}
	if s != nil && rule.MaxAge > 0 && now.Sub(s.AuthTime) > rule.MaxAge {
		d.Refusal = Reauthenticate
		return d
	}
	if s != nil && s.MustChangePassword {
		d.Refusal = ChangePassword
		return d
	}
	if rule.Allow != nil {
		if ok, tried := rule.Allow.Check(u); !ok {
			d.Refusal, d.Tried = NotAllowed, tried
			return d
		}
	}
	if rule.MFA && s != nil && s.Provider == "password" && !s.MFA {
		d.Refusal = SecondFactor
	}
	return d
}

// Refuse answers a request a Decision refused: a person's page navigation
// is sent where they can fix it (the login page, the password page, the
// enrolment page) or shown a 403 page; anything else gets JSON (401 or 403)
// with a message key, never a redirect.
func Refuse(w http.ResponseWriter, r *http.Request, rule Rule, d Decision) {
	nav := web.IsNavigation(r) && !rule.JSON
	back := url.QueryEscape(r.URL.RequestURI())
	switch d.Refusal {
	case SignIn:
		if nav {
			http.Redirect(w, r, LoginPath+"?return_to="+back, http.StatusSeeOther)
			return
		}
		web.Error(w, r, http.StatusUnauthorized, "auth.unauthorized")
	case Reauthenticate:
		if nav {
			http.Redirect(w, r, LoginPath+"?reauth=1&return_to="+back, http.StatusSeeOther)
			return
		}
		key := rule.ReauthKey
		if key == "" {
			key = "auth.unauthorized"
		}
		web.Error(w, r, http.StatusUnauthorized, key, int(rule.MaxAge/time.Minute))
	case ChangePassword:
		if nav {
			http.Redirect(w, r, PasswordPath+"?return_to="+back, http.StatusSeeOther)
			return
		}
		web.Error(w, r, http.StatusForbidden, "auth.change_required")
	case NotAllowed:
		if rule.ForbiddenKey != "" {
			web.Error(w, r, http.StatusForbidden, rule.ForbiddenKey, d.Email)
			return
		}
		if !nav {
			web.Error(w, r, http.StatusForbidden, "auth.not_allowed", d.Email)
			return
		}
		web.Render(w, r, http.StatusForbidden, "auth-forbidden.html", web.T(web.Lang(r), "auth.not_allowed.title"), forbiddenPage{Email: d.Email, Name: request.From(r).User.Name})
	case SecondFactor:
		if nav {
			http.Redirect(w, r, EnrolPath+"?return_to="+back, http.StatusSeeOther)
			return
		}
		web.Error(w, r, http.StatusForbidden, "mfa.required")
	}
}

// forbiddenPage fills auth-forbidden.html.
type forbiddenPage struct {
	Email string
	Name  string
}

// HostRoutes lists the signed-in routes on host: the routes a host-wide
// page (the console, the account page) speaks for.
func HostRoutes(cfg *config.Config, host string) []*config.Route {
	var out []*config.Route
	for _, rt := range cfg.Routes {
		if rt != nil && !rt.Public && strings.EqualFold(rt.Host, host) {
			out = append(out, rt)
		}
	}
	return out
}

// SecondFactorRequired reports whether a password sign-in must have passed
// a second factor to use any of routes: identity.passwords.mfa, or a
// route's mfa, says required.
func SecondFactorRequired(cfg *config.Config, routes ...*config.Route) bool {
	if cfg.Identity.Passwords.MFA.Required() {
		return true
	}
	for _, rt := range routes {
		if rt != nil && rt.MFA.Required() {
			return true
		}
	}
	return false
}
