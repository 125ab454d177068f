// Package csrf protects the forms of every page moat renders (sign-in,
// account, admin): a token that is an HMAC of a pre-session cookie, plus the
// browser's own word on where a request comes from. A forged form on another
// site cannot read the cookie, so it cannot know the token.
package csrf

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"

	"github.com/moat-dev/moat/internal/bodylimit"
	"github.com/moat-dev/moat/internal/request"
	"github.com/moat-dev/moat/internal/web"
)

// CookieName is the pre-session cookie tokens are bound to.
const CookieName = "__Host-moat-csrf"

// Field is the form field that carries the token.
const Field = "csrf"

// cookieLen is the length of a cookie value: 32 random bytes, base64url.
const cookieLen = 43

// Guard issues and checks tokens under one key. Every page that shares the
// key shares its tokens.
type Guard struct {
	key []byte
}

// New returns a Guard for key (derived from the instance key).
func New(key []byte) *Guard { return &Guard{key: key} }

// Token returns the token for r's forms, setting the cookie when missing.
func (g *Guard) Token(w http.ResponseWriter, r *http.Request) string {
	v := cookieValue(r)
	if len(v) != cookieLen {
		var raw [32]byte
		_, _ = rand.Read(raw[:])
		v = base64.RawURLEncoding.EncodeToString(raw[:])
		http.SetCookie(w, &http.Cookie{Name: CookieName, Value: v, Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
		// The rest of this request must see the new cookie too.
		r.Header.Add("Cookie", CookieName+"="+v)
	}
	return g.tokenFor(v)
}

// Check reports whether a state-changing request is same-origin and carries
// got, the token bound to its cookie (from the form's Field, or a header for
// an API).
func (g *Guard) Check(r *http.Request, got string) bool {
	if !SameOrigin(r) {
		return false
	}
	v := cookieValue(r)
	if len(v) != cookieLen || got == "" {
		return false
	}
	return hmac.Equal([]byte(got), []byte(g.tokenFor(v)))
}

func (g *Guard) tokenFor(cookie string) string {
	m := hmac.New(sha256.New, g.key)
	m.Write([]byte(cookie))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// SameOrigin checks what the browser says about where a request comes from:
// Sec-Fetch-Site when sent, else Origin when sent. Clients sending neither
// (old browsers, scripts) rely on the token alone.
func SameOrigin(r *http.Request) bool {
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

func cookieValue(r *http.Request) string {
	for _, c := range r.CookiesNamed(CookieName) {
		return c.Value
	}
	return ""
}

// MaxFormBytes bounds what a form of moat's pages may carry.
const MaxFormBytes = 64 << 10

// ReadForm parses r's POST form (at most MaxFormBytes) and checks it is
// same-origin and carries the token of its cookie: the one form reader of
// every page moat renders (sign-in, account, console). A refusal is a
// *web.Problem: 413 or 408 for a body cut for its size or its slowness
// (bodylimit), 400 for a form that does not parse, 403 for a missing or
// wrong token or another origin.
func (g *Guard) ReadForm(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, MaxFormBytes)
	if err := r.ParseForm(); err != nil {
		// A body cut for its size or its slowness says so (413, 408),
		// as a proxied upload's does; anything else did not parse.
		if status, key, ok := bodylimit.Status(err); ok {
			return &web.Problem{Status: status, Key: key, Err: err}
		}
		return &web.Problem{Status: http.StatusBadRequest, Key: "bad_request", Err: err}
	}
	if !g.Check(r, r.PostForm.Get(Field)) {
		return &web.Problem{Status: http.StatusForbidden, Key: "auth.csrf", Err: errRefused}
	}
	return nil
}

// CheckHeader is ReadForm's check for a JSON API called from a signed-in
// page: the token in the X-CSRF-Token header, from the same origin.
func (g *Guard) CheckHeader(r *http.Request) error {
	if !g.Check(r, r.Header.Get("X-CSRF-Token")) {
		return &web.Problem{Status: http.StatusForbidden, Key: "auth.csrf", Code: "auth.csrf", Err: errRefused,
			Sentence: "a change by a signed-in admin needs the X-CSRF-Token header from the same origin"}
	}
	return nil
}

var errRefused = errors.New("refused a change without a valid CSRF token or from another origin")
