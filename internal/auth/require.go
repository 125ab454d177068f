package auth

import (
	"net/http"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/moat-dev/moat/internal/auth/allow"
	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/identity/access"
	"github.com/moat-dev/moat/internal/request"
	"github.com/moat-dev/moat/internal/tracing"
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
		span := tracing.Start(r.Context(), "moat.access")
		refusal := s.decide(w, r, route, rule)
		traceAccess(span, r, refusal)
		if refusal == access.Pass {
			next.ServeHTTP(w, r)
		}
	})
}

// decide asks rule about r — a bearer token on a route that takes them
// (bearer.go), else the session Identify found — and answers a refusal
// itself.
func (s *Service) decide(w http.ResponseWriter, r *http.Request, route *config.Route, rule access.Rule) access.Refusal {
	info := request.From(r)
	if !info.User.SignedIn() && route != nil && route.Bearer {
		if refusal, sent := s.serveBearer(w, r, route, rule); sent {
			return refusal
		}
	}
	d := rule.Check(info.User, info.Session, time.Now())
	if d.Refusal != access.Pass {
		s.refuse(w, r, rule, d)
	}
	return d.Refusal
}

// traceAccess ends the access stage's span with the decision and who the
// request is signed in as (the user's id and how they signed in). Nothing
// when the span does not record.
func traceAccess(span tracing.Span, r *http.Request, refusal access.Refusal) {
	if !span.Recording() {
		return
	}
	u := request.From(r).User
	span.End(
		attribute.String("moat.access.decision", refusal.String()),
		attribute.String("moat.access.provider", u.Provider),
		attribute.String("enduser.id", u.ID),
	)
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
