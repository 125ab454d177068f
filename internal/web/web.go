// Package web renders every page moat itself shows a person (errors, and
// later sign-in, account and admin pages) from embedded templates, in English
// or Japanese, under a strict Content-Security-Policy.
package web

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"

	"github.com/moat-dev/moat/internal/request"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// ContentSecurityPolicy is sent with every page moat renders: no inline
// script or style, nothing from other origins, no framing.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// StaticPrefix is where Static is mounted on every routed host.
const StaticPrefix = "/_moat/static/"

var templates = template.Must(template.New("").Funcs(template.FuncMap{
	"t":    func(lang, key string, args ...any) string { return T(lang, key, args...) },
	"dict": dict,
}).ParseFS(templateFS, "templates/*.html"))

// dict makes a map of its key, value arguments: the several values a
// shared template (passkey-button) takes.
func dict(kv ...any) (map[string]any, error) {
	if len(kv)%2 != 0 {
		return nil, fmt.Errorf("dict: %d arguments, want key, value pairs", len(kv))
	}
	m := make(map[string]any, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		k, ok := kv[i].(string)
		if !ok {
			return nil, fmt.Errorf("dict: key %v is not a string", kv[i])
		}
		m[k] = kv[i+1]
	}
	return m, nil
}

// Static serves moat's stylesheet and scripts.
func Static() http.Handler {
	sub, _ := fs.Sub(staticFS, "static")
	files := http.FileServer(http.FS(sub))
	return http.StripPrefix(StaticPrefix, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		files.ServeHTTP(w, r)
	}))
}

// Page is the data every template gets.
type Page struct {
	Lang      string
	Title     string
	RequestID string
	Data      any
	// LangURLs are this page's address in each language, for the
	// language switch (same path and query, lang= set).
	LangURLs map[string]string
}

// Render writes the named template inside the common layout.
func Render(w http.ResponseWriter, r *http.Request, status int, name, title string, data any) {
	info := request.From(r)
	p := Page{Lang: Lang(r), Title: title, RequestID: info.ID, Data: data, LangURLs: langURLs(r)}
	if l := r.URL.Query().Get("lang"); supported(l) {
		// The switch was used: remember the choice.
		http.SetCookie(w, &http.Cookie{Name: LangCookie, Value: l, Path: "/", MaxAge: 365 * 24 * 3600, Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	}
	var buf bytes.Buffer
	if err := templates.ExecuteTemplate(&buf, name, p); err != nil {
		slog.Error("render page", "template", name, "err", err, "request_id", info.ID)
		http.Error(w, "internal error, request id "+info.ID, http.StatusInternalServerError)
		return
	}
	SecurityHeaders(w.Header())
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// SecurityHeaders sets the headers every page of moat's own carries.
func SecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
}

// ErrorData fills the error template.
type ErrorData struct {
	Status  int
	Heading string
	Detail  string
}

// WantsHTML reports whether r is a person's page navigation rather than a
// script, fetch or XHR call. Browsers send Sec-Fetch-Mode: navigate for
// navigations; older clients are judged by Accept.
func WantsHTML(r *http.Request) bool {
	if m := r.Header.Get("Sec-Fetch-Mode"); m != "" {
		return m == "navigate"
	}
	if r.Header.Get("X-Requested-With") != "" {
		return false
	}
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

// IsNavigation is WantsHTML under the name sign-in code uses: a request that
// is not a navigation gets 401 instead of a redirect to the login page.
func IsNavigation(r *http.Request) bool { return WantsHTML(r) }

// LangCookie remembers a language chosen with the switch on a page.
const LangCookie = "moat_lang"

// Lang picks "ja" or "en": the ?lang= switch, then the cookie it sets, then
// Accept-Language (first supported language by quality).
func Lang(r *http.Request) string {
	if l := r.URL.Query().Get("lang"); supported(l) {
		return l
	}
	if c, err := r.Cookie(LangCookie); err == nil && supported(c.Value) {
		return c.Value
	}
	best, bestQ := "en", -1.0
	for _, part := range strings.Split(r.Header.Get("Accept-Language"), ",") {
		tag, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		q := 1.0
		if v, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
			if _, err := fmt.Sscanf(v, "%g", &q); err != nil {
				continue
			}
		}
		base, _, _ := strings.Cut(strings.ToLower(tag), "-")
		if supported(base) && q > bestQ {
			best, bestQ = base, q
		}
	}
	return best
}

func supported(l string) bool { return l == "en" || l == "ja" }

// langURLs returns r's path and query with lang= set to each language. A
// POST's answer links to the GET of the same path.
func langURLs(r *http.Request) map[string]string {
	out := make(map[string]string, 2)
	for _, l := range []string{"en", "ja"} {
		q := r.URL.Query()
		q.Set("lang", l)
		out[l] = r.URL.Path + "?" + q.Encode()
	}
	return out
}

// Platform names a browser and system from a User-Agent, roughly, for
// people to recognise their sessions.
func Platform(ua string) string {
	var b, o string
	switch {
	case strings.Contains(ua, "Edg/"):
		b = "Edge"
	case strings.Contains(ua, "Chrome/"):
		b = "Chrome"
	case strings.Contains(ua, "Firefox/"):
		b = "Firefox"
	case strings.Contains(ua, "Safari/"):
		b = "Safari"
	case ua == "":
		return "-"
	default:
		b = ua
		if len(b) > 40 {
			b = b[:40] + "…"
		}
	}
	switch {
	case strings.Contains(ua, "Android"):
		o = "Android"
	case strings.Contains(ua, "iPhone"), strings.Contains(ua, "iPad"):
		o = "iOS"
	case strings.Contains(ua, "Windows"):
		o = "Windows"
	case strings.Contains(ua, "Mac OS"):
		o = "macOS"
	case strings.Contains(ua, "Linux"):
		o = "Linux"
	}
	if o == "" {
		return b
	}
	return b + " · " + o
}
