// Package auth signs people in: moat's server-side sessions (found once
// per request by Identify), the password, second-factor and SSO pages under
// /_moat/, bearer tokens, and Require, which asks each route's one access
// rule (internal/identity/access).
//
// It has two lifetimes. Process is built once per moat process and keeps
// what must outlive a configuration (store, instance key, session and token
// caches, signing keys, OIDC replay set, throttles, hashing limiter);
// Service is built for each configuration on it, so a reload swaps only the
// Service. Every revocation goes through Process.Forget.
package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/moat-dev/moat/internal/auth/instancekey"
	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/identity/assertion"
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

// Service is moat's sign-in for one configuration: login pages, allow
// lists, SSO providers and the identity handed to the app. It is built for
// each configuration on the Process, which keeps everything that must
// outlive a reload; it is safe for concurrent use.
type Service struct {
	p *Process

	cfg     *config.Config
	headers *assertion.Headers
	maxAge  time.Duration
	idle    time.Duration
	grace   time.Duration // store_outage_grace (session.Lifetimes.OutageGrace)
	hasher  *hasher
	sso     *ssoState // single sign-on providers (sso.go)
}

// New builds the Service for cfg on the process p. It contacts nothing:
// SSO providers are discovered at first use.
func New(cfg *config.Config, p *Process) (*Service, error) {
	if cfg == nil || p == nil {
		return nil, errors.New("auth: config and process are required")
	}
	s := &Service{
		p:       p,
		cfg:     cfg,
		headers: assertion.NewHeaders(cfg, p.Signer),
		maxAge:  cfg.Identity.Session.MaxAge.D(),
		idle:    cfg.Identity.Session.IdleTimeout.D(),
		grace:   cfg.StoreOutageGrace.D(),
		hasher:  newHasher(cfg, p),
	}
	if s.maxAge <= 0 {
		s.maxAge = config.DefaultSessionMaxAge
	}
	if s.idle <= 0 {
		s.idle = config.DefaultSessionIdleTimeout
	}
	if s.grace <= 0 {
		s.grace = config.DefaultStoreOutageGrace
	}
	var err error
	if s.sso, err = newSSO(cfg); err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	return s, nil
}

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
	s.p.Sessions.SetIdle(s.idle)
	s.runRecheck(ctx)
	return nil
}

// SetIdentity is the proxy's hook: it sets the identity headers and the
// signed assertion of the request's user on out (assertion.Headers).
func (s *Service) SetIdentity(out, in *http.Request) { s.headers.SetIdentity(out, in) }
