package server

import (
	"io"
	"net/http"
)

// The health paths answer on every listener (HTTPS, plain HTTP in either
// mode, internal) for any Host, before routing, the security policy and
// sign-in, so a platform's probes reach them however moat is fronted. They
// say nothing but "ok" or "not ready": no backend names, no version.
const (
	// HealthzPath answers 200 while the process serves (liveness).
	HealthzPath = "/_moat/healthz"
	// ReadyzPath answers 200 when every backend passes its health check,
	// 503 otherwise (readiness).
	ReadyzPath = "/_moat/readyz"
)

// serveHealth answers r when it asks for a health path, and reports whether
// it did.
func (s *Server) serveHealth(w http.ResponseWriter, r *http.Request) bool {
	var ok bool
	switch r.URL.Path {
	case HealthzPath:
		ok = true
	case ReadyzPath:
		_, _, ok = s.world.Load().ready()
	default:
		return false
	}
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	switch {
	case r.Method != http.MethodGet && r.Method != http.MethodHead:
		h.Set("Allow", "GET, HEAD")
		w.WriteHeader(http.StatusMethodNotAllowed)
	case ok:
		_, _ = io.WriteString(w, "ok\n")
	default:
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, "not ready\n")
	}
	return true
}
