// Package demoapp is the built-in demo dashboard that `moat demo` runs
// behind moat on a loopback port: the seed's Streamlit sample (a sidebar
// radio of four display modes — line, bar and area chart, and a table —
// over a 20×3 table of random numbers, columns a, b and c) rebuilt in Go.
//
// Charts are server-rendered SVG. The page's script switches the mode over
// a WebSocket at /ws, the way Streamlit keeps its session on one long-lived
// socket, which is what moat's proxy has to carry without a lifetime cap.
// Without JavaScript the radio is a plain form GET (?mode=bar). The page
// uses no inline script or style and no external resource, so it works
// under a Content-Security-Policy of default-src 'self'.
package demoapp

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"html/template"
	"log/slog"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed templates/page.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// pageTemplate renders the dashboard page around one fragment.
var pageTemplate = template.Must(template.ParseFS(templateFS, "templates/page.html"))

// UserEmailHeader is the request header moat sets to the signed-in user's
// email address; the dashboard shows it as "Signed in as …".
const UserEmailHeader = "X-Moat-User-Email"

// maxEmailLen bounds the shown address: RFC 5321 caps a path at 256
// octets, so anything longer is not an address and is cut.
const maxEmailLen = 254

// contentSecurityPolicy is sent with every response. It is what the page
// is built to work under: nothing inline, nothing from another origin.
const contentSecurityPolicy = "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// startTime is the Last-Modified time of the embedded static files.
var startTime = time.Now()

// app is the demo dashboard's handler.
type app struct {
	data      *frame
	fragments map[mode]string // the rendered view of data, by mode
	mux       *http.ServeMux
	static    map[string]staticFile
	log       *slog.Logger
}

// staticFile is one embedded asset with its precomputed ETag.
type staticFile struct {
	body        []byte
	contentType string
	etag        string
}

// New returns the demo dashboard. It serves:
//
//	GET /            the page (?mode=line|bar|area|table, default line)
//	GET /ws          the WebSocket that answers {"mode":"bar"} with the fragment
//	GET /static/...  its script and style sheet
//	GET /healthz     200 "ok"
//
// The random data is drawn once per process and shared by every handler
// New returns.
func New() http.Handler {
	a := &app{data: processFrame(), fragments: processFragments(), mux: http.NewServeMux(), log: slog.Default()}
	a.static = loadStatic()
	a.mux.HandleFunc("GET /{$}", a.servePage)
	a.mux.HandleFunc("GET /ws", a.serveWebSocket)
	a.mux.HandleFunc("GET /static/{name}", a.serveStatic)
	a.mux.HandleFunc("GET /healthz", serveHealth)
	return a
}

// ServeHTTP sets the security headers every response carries, then routes.
func (a *app) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	a.mux.ServeHTTP(w, r)
}

// pageData is what the page template sees.
type pageData struct {
	Modes    any
	Mode     mode
	User     string
	Fragment template.HTML
}

// servePage renders the whole dashboard in the requested mode.
func (a *app) servePage(w http.ResponseWriter, r *http.Request) {
	m, err := parseMode(r.URL.Query().Get("mode"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	data := pageData{
		Modes: modes,
		Mode:  m,
		User:  signedInUser(r),
		// The fragment is built by this package from numbers and fixed
		// names only; nothing in it comes from the request.
		Fragment: template.HTML(a.fragments[m]),
	}
	var buf bytes.Buffer
	if err := pageTemplate.Execute(&buf, data); err != nil {
		a.log.Error("demoapp: render page", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(buf.Bytes())
}

// signedInUser returns the address moat asserted for this request, cut to
// a sane length, or "" when there is none. The template escapes it.
func signedInUser(r *http.Request) string {
	u := strings.TrimSpace(r.Header.Get(UserEmailHeader))
	if len(u) > maxEmailLen {
		u = u[:maxEmailLen]
	}
	return strings.ToValidUTF8(u, "")
}

// serveStatic serves the embedded script and style sheet, and nothing
// else: no directory listings.
func (a *app) serveStatic(w http.ResponseWriter, r *http.Request) {
	f, ok := a.static[r.PathValue("name")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", f.contentType)
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("ETag", f.etag)
	http.ServeContent(w, r, "", startTime, bytes.NewReader(f.body))
}

// loadStatic reads the embedded assets once.
func loadStatic() map[string]staticFile {
	types := map[string]string{
		".js":  "text/javascript; charset=utf-8",
		".css": "text/css; charset=utf-8",
		".svg": "image/svg+xml",
	}
	entries, err := staticFS.ReadDir("static")
	if err != nil {
		panic("demoapp: embedded static files missing: " + err.Error()) // impossible: go:embed
	}
	out := make(map[string]staticFile, len(entries))
	for _, e := range entries {
		body, err := staticFS.ReadFile("static/" + e.Name())
		if err != nil {
			panic("demoapp: read embedded " + e.Name() + ": " + err.Error()) // impossible: go:embed
		}
		sum := sha256.Sum256(body)
		out[e.Name()] = staticFile{
			body:        body,
			contentType: types[path.Ext(e.Name())],
			etag:        `"` + hex.EncodeToString(sum[:8]) + `"`,
		}
	}
	return out
}

// serveHealth answers liveness probes.
func serveHealth(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte("ok"))
}
