package auth

import (
	"net/http"
	"net/url"
	"time"

	"github.com/moat-dev/moat/internal/auth/allow"
	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/request"
	"github.com/moat-dev/moat/internal/web"
)

// Require lets a request through to next only when route is public, or the
// request is signed in (Identify ran before) by a user the route's allow
// list admits. Otherwise a page navigation is redirected to the login page
// (303) and any other request gets 401 JSON, never a redirect; a signed-in
// user who is not allowed gets a 403 page saying who they are signed in as;
// a user who must change their password is sent to that page first.
func (s *Service) Require(route *config.Route, next http.Handler) http.Handler {
	if route != nil && route.Public {
		return next
	}
	var list allow.List
	if route != nil {
		var err error
		if list, err = allow.ParseList(route.Allow); err != nil {
			// Validation catches this first; refuse everyone if it did not.
			s.logger.Error("route allow list unusable, refusing everyone", "route", route.Name(), "err", err)
			list = nil
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u := request.From(r).User
		if !u.SignedIn() && route != nil && route.Bearer && s.serveBearer(w, r, route, list, next) {
			return // bearer.go
		}
		if !u.SignedIn() {
			s.challenge(w, r)
			return
		}
		e := s.sessionOf(r)
		// A route's max_age asks for a sign-in younger than that: an older
		// one goes through the login page again.
		if route != nil && route.MaxAge > 0 && e != nil && time.Since(e.authTime) > route.MaxAge.D() {
			s.challengeWith(w, r, "reauth=1&")
			return
		}
		if e != nil && e.mustChange {
			if web.IsNavigation(r) {
				http.Redirect(w, r, "/_moat/password?return_to="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			web.Error(w, r, http.StatusForbidden, "auth.change_required")
			return
		}
		if !list.Allows(u) {
			s.forbidden(w, r, u)
			return
		}
		if s.missingSecondFactor(route, e) {
			requireSecondFactor(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// challenge answers a request that needs a session and has none.
func (s *Service) challenge(w http.ResponseWriter, r *http.Request) { s.challengeWith(w, r, "") }

// challengeWith is challenge with extra login-page query parameters
// (ending in "&").
func (s *Service) challengeWith(w http.ResponseWriter, r *http.Request, query string) {
	if web.IsNavigation(r) {
		http.Redirect(w, r, "/_moat/login?"+query+"return_to="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
		return
	}
	web.Error(w, r, http.StatusUnauthorized, "auth.unauthorized")
}

// forbiddenPage fills auth-forbidden.html.
type forbiddenPage struct {
	Email string
	Name  string
}

func (s *Service) forbidden(w http.ResponseWriter, r *http.Request, u request.User) {
	if !web.IsNavigation(r) {
		web.Error(w, r, http.StatusForbidden, "auth.not_allowed", u.Email)
		return
	}
	web.Render(w, r, http.StatusForbidden, "auth-forbidden.html", web.T(web.Lang(r), "auth.not_allowed.title"), forbiddenPage{Email: u.Email, Name: u.Name})
}
