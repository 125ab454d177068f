package auth

import (
	"net/http"
	"time"

	"github.com/moat-dev/moat/internal/auth/allow"
	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/identity/access"
	"github.com/moat-dev/moat/internal/request"
)

// Require lets a request through to next only when route is public, or the
// request is signed in (Identify ran before) by a user the route's allow
// list admits, with a sign-in younger than the route's max_age and, where
// the route or identity.passwords.mfa asks, a second factor: the one
// access.Rule of the route, answered by access.Refuse. On a route with
// bearer: true a script may send a token instead (bearer.go).
func (s *Service) Require(route *config.Route, next http.Handler) http.Handler {
	if route != nil && route.Public {
		return next
	}
	rule := s.RouteRule(route)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		info := request.From(r)
		if !info.User.SignedIn() && route != nil && route.Bearer && s.serveBearer(w, r, route, rule, next) {
			return // bearer.go
		}
		if d := rule.Check(info.User, info.Session, time.Now()); d.Refusal != access.Pass {
			s.refuse(w, r, rule, d)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// RouteRule is what route asks of a request: its allow list, max_age and
// second factor.
func (s *Service) RouteRule(route *config.Route) access.Rule {
	rule := access.Rule{Allow: allow.List{}, MFA: access.SecondFactorRequired(s.cfg, route)}
	if route == nil {
		return rule
	}
	rule.MaxAge = route.MaxAge.D()
	list, err := allow.FromConfig(route.Allow)
	if err != nil {
		// Validation catches this first; refuse everyone if it did not.
		s.p.logger.Error("route allow list unusable, refusing everyone", "route", route.Name(), "err", err)
		return rule
	}
	rule.Allow = list
	return rule
}

// refuse logs a refusal with its reasons and answers it.
func (s *Service) refuse(w http.ResponseWriter, r *http.Request, rule access.Rule, d access.Decision) {
	if d.Refusal == access.NotAllowed {
		info := request.From(r)
		s.p.logger.Info("allow list refused a signed-in user", "user", d.Email, "tried", d.Tried,
			"path", r.URL.Path, "client_ip", clientIP(info), "request_id", info.ID)
	}
	access.Refuse(w, r, rule, d)
}
