// Package auth puts moat's sign-in together for the server. It has two
// lifetimes:
//
//   - Process, built once per moat process, keeps what must outlive a
//     configuration: the store, the instance key, the session and token
//     caches (internal/identity/session), the signing keys
//     (internal/identity/assertion), the sign-ins with a provider
//     (login.Flows, whose states are spent once for the cluster in the
//     store), the brute-force throttle and its hold
//     (internal/identity/throttle), the device cookies, the second factors
//     and the hashing limiter, and the fan-out hooks: every revocation goes
//     through Process.Forget, every change reaches the other instances
//     through Process.Run.
//   - Service is built for each configuration on the Process, so a reload
//     swaps only the Service: Identify finds the request's session once,
//     Require asks each route's one access rule (internal/identity/access)
//     or checks a bearer token, SetIdentity hands the app its signed
//     identity, Holder re-checks the holders of WebSockets, Run re-checks
//     SSO sessions with their providers, and Handler serves the sign-in
//     pages (internal/identity/login, built here on the Process) and the
//     JWKS.
package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/moat-dev/moat/internal/auth/instancekey"
	"github.com/moat-dev/moat/internal/auth/oidc"
	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/identity/assertion"
	"github.com/moat-dev/moat/internal/identity/login"
	"github.com/moat-dev/moat/internal/identity/session"
	"github.com/moat-dev/moat/internal/store"
)

// Timing of the background work.
const (
	// revokePoll is how often Run asks the store for revoked sessions.
	revokePoll = 3 * time.Second
	// revokeOverlap re-reads this much of the past at every poll, for clock
	// skew between instances.
	revokeOverlap = 10 * time.Second
	// keyReload is how often Run re-reads the signing keys (rotation by the
	// CLI or another instance).
	keyReload = 30 * time.Second
)

// Service is moat's sign-in for one configuration: who a request is
// (Identify), whether it passes a route (Require, with bearer tokens), the
// identity handed to the app (SetIdentity), the SSO providers and the
// sign-in pages. It is built for each configuration on the Process, which
// keeps everything that must outlive a reload; it is safe for concurrent
// use.
type Service struct {
	p *Process

	cfg       *config.Config
	headers   *assertion.Headers
	lifetimes session.Lifetimes
	providers map[string]*oidc.Provider
	// recheckTick is how often Run looks for SSO sessions due a re-check.
	recheckTick time.Duration
	handler     http.Handler
}

// New builds the Service for cfg on the process p, with its sign-in pages.
// It contacts nothing: SSO providers are discovered at first use.
func New(cfg *config.Config, p *Process) (*Service, error) {
	if cfg == nil || p == nil {
		return nil, errors.New("auth: config and process are required")
	}
	s := &Service{
		p:         p,
		cfg:       cfg,
		headers:   assertion.NewHeaders(cfg, p.Signer),
		lifetimes: lifetimesOf(cfg),
	}
	var err error
	if s.providers, s.recheckTick, err = newProviders(cfg); err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	pages, err := login.New(cfg, p.store, login.Options{
		CSRF: p.CSRF, Sessions: p.Sessions, Lifetimes: s.lifetimes,
		Throttle: p.Throttle, Hold: p.Hold, Devices: p.Devices,
		MFA: p.MFA, Passkeys: p.Passkeys, Key: p.Key, Flows: p.Flows, Limiter: p.Limiter,
		Providers: s.providers, Usage: p.Usage, Ended: p.Ended, Logger: p.logger,
	})
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	jwks := s.jwks()
	s.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == JWKSPath {
			jwks.ServeHTTP(w, r)
			return
		}
		pages.ServeHTTP(w, r)
	})
	return s, nil
}

// lifetimesOf is cfg's session bounds; a configuration built in code
// rather than loaded may leave them zero, and gets the defaults.
func lifetimesOf(cfg *config.Config) session.Lifetimes {
	lt := session.Lifetimes{MaxAge: cfg.Identity.Session.MaxAge.D(), Idle: cfg.Identity.Session.IdleTimeout.D(), OutageGrace: cfg.StoreOutageGrace.D()}
	if lt.MaxAge <= 0 {
		lt.MaxAge = config.DefaultSessionMaxAge
	}
	if lt.Idle <= 0 {
		lt.Idle = config.DefaultSessionIdleTimeout
	}
	if lt.OutageGrace <= 0 {
		lt.OutageGrace = config.DefaultStoreOutageGrace
	}
	return lt
}

// Handler serves moat's own sign-in paths on every routed host; the server
// mounts it at /_moat/: the sign-in pages (login.Pages: login, logout,
// password change, second step, SSO, passkeys) and JWKSPath, the public
// keys that verify X-Moat-Assertion. Mount it behind Identify, as every
// other page: the server identifies a request once.
func (s *Service) Handler() http.Handler { return s.handler }

// InstanceKey loads the instance key for cfg (instancekey.ForConfig:
// MOAT_SECRET_KEY, secret_key_file or data_dir/instance.key) and checks it
// against the signing keys in st. The server calls it once per process, the
// CLI once per command.
func InstanceKey(ctx context.Context, cfg *config.Config, st store.Store) (*instancekey.Key, error) {
	return instancekey.ForConfig(ctx, cfg, st)
}

// Run does the configuration's background work until ctx ends: it makes
// the process judge idleness by this configuration, and re-checks SSO
// sessions with their providers (refresh_interval). The server runs it
// while the configuration serves.
func (s *Service) Run(ctx context.Context) error {
	s.p.Sessions.SetIdle(s.lifetimes.Idle)
	s.runRecheck(ctx)
	return nil
}

// SetIdentity is the proxy's hook: it sets the identity headers and the
// signed assertion of the request's user on out (assertion.Headers).
func (s *Service) SetIdentity(out, in *http.Request) { s.headers.SetIdentity(out, in) }

// Provider returns the configured SSO provider name, or nil. Tests and
// the server use it to tune the provider (HTTP client, clock).
func (s *Service) Provider(name string) *oidc.Provider { return s.providers[name] }
