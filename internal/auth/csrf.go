package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strings"

	"github.com/moat-dev/moat/internal/request"
)

// csrfField is the form field carrying the CSRF token.
const csrfField = "csrf"

// csrfToken returns the token for r's forms: an HMAC of the pre-session
// CSRF cookie, which it sets when missing. A forged form from another site
// cannot read the cookie, so it cannot know the token.
func (s *Service) csrfToken(w http.ResponseWriter, r *http.Request) string {
	v := cookieValue(r, CSRFCookie)
	if !validID(v) {
		var raw [32]byte
		_, _ = rand.Read(raw[:])
		v = base64.RawURLEncoding.EncodeToString(raw[:])
		http.SetCookie(w, &http.Cookie{Name: CSRFCookie, Value: v, Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
		// The rest of this request must see the new cookie too.
		r.Header.Add("Cookie", CSRFCookie+"="+v)
	}
	return s.csrfFor(v)
}

func (s *Service) csrfFor(cookie string) string {
	m := hmac.New(sha256.New, s.csrfKey)
	m.Write([]byte(cookie))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// checkCSRF reports whether a POST is same-origin and carries the token
// bound to its CSRF cookie. r.ParseForm must have run.
func (s *Service) checkCSRF(r *http.Request) bool {
	if !sameOrigin(r) {
		return false
	}
	v := cookieValue(r, CSRFCookie)
	if !validID(v) {
		return false
	}
	got := r.PostForm.Get(csrfField)
	return hmac.Equal([]byte(got), []byte(s.csrfFor(v)))
}

// sameOrigin checks what the browser says about where a POST comes from:
// Sec-Fetch-Site when sent, else Origin when sent. Clients sending neither
// (old browsers, scripts) rely on the token alone.
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" {
		return site == "same-origin"
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	scheme := request.From(r).Scheme
	if scheme == "" {
		scheme = "https"
		if r.TLS == nil {
			scheme = "http"
		}
	}
	return strings.EqualFold(origin, scheme+"://"+r.Host)
}

// CSRFToken returns the CSRF token for the forms of a page moat renders on
// r's host (setting the pre-session CSRF cookie when missing), for other
// packages' pages (account, admin). The token is
// base64url(HMAC-SHA256(instance key derived for "csrf", cookie value)).
func (s *Service) CSRFToken(w http.ResponseWriter, r *http.Request) string {
	return s.csrfToken(w, r)
}

// CheckCSRF reports whether a POST whose form is parsed comes from the same
// origin and carries the token of its CSRF cookie in the "csrf" field.
func (s *Service) CheckCSRF(r *http.Request) bool { return s.checkCSRF(r) }
