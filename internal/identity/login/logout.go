package login

import (
	"net/http"

	"github.com/moat-dev/moat/internal/identity/session"
	"github.com/moat-dev/moat/internal/web"
)

// logoutPage fills auth-logout.html.
type logoutPage struct {
	Email string
	CSRF  string
}

func (pg *Pages) serveLogout(w http.ResponseWriter, r *http.Request) error {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		u, ss := signedIn(r)
		if ss == nil {
			http.Redirect(w, r, "/_moat/login", http.StatusSeeOther)
			return nil
		}
		web.Render(w, r, http.StatusOK, "auth-logout.html", web.T(web.Lang(r), "auth.logout.title"), logoutPage{Email: u.Email, CSRF: pg.o.CSRF.Token(w, r)})
	case http.MethodPost:
		if err := pg.o.CSRF.ReadForm(w, r); err != nil {
			return err
		}
		// A sign-out that cannot be stored says so and keeps the cookie,
		// so the person can try again: it never looks done while the
		// session goes on working.
		if u, ss := signedIn(r); ss != nil {
			if err := pg.o.Sessions.Revoke(r.Context(), ss.IDHash); err != nil {
				return web.StoreDown("auth.logout_unavailable", err)
			}
			pg.dir.Record(r.Context(), actor(r, u.Email), "logout", u.Email, "")
		} else if id := session.CookieValue(r, session.Cookie); session.ValidID(id) {
			// Expired or idle: end it anyway.
			if err := pg.o.Sessions.Revoke(r.Context(), session.HashID(id)); err != nil {
				return web.StoreDown("auth.logout_unavailable", err)
			}
		}
		session.ClearCookie(w)
		http.Redirect(w, r, "/_moat/login", http.StatusSeeOther)
	default:
		return web.NewProblem(http.StatusMethodNotAllowed, "bad_request").With("Allow", "GET, HEAD, POST")
	}
	return nil
}
