package auth

import (
	"fmt"
	"net/http"
	"time"

	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/web"
)

// JWKSPath serves the public keys that verify X-Moat-Assertion.
const JWKSPath = "/_moat/jwks.json"

// jwks serves the process's public keys, for as long as this
// configuration's identity.jwks_max_age says an app may cache them.
func (s *Service) jwks() http.Handler {
	// The cache lifetime a rotation waits out twice before its key signs
	// (assertion.SwitchDelay).
	maxAge := s.cfg.Identity.JWKSMaxAge.D()
	if maxAge <= 0 {
		maxAge = config.DefaultJWKSMaxAge
	}
	cacheControl := fmt.Sprintf("public, max-age=%d", int(maxAge/time.Second))
	return web.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			return web.NewProblem(http.StatusMethodNotAllowed, "bad_request").With("Allow", "GET, HEAD")
		}
		body := s.p.Signer.JWKS()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", cacheControl)
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		_, _ = w.Write(body)
		return nil
	})
}
