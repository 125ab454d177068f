// Package auth signs people in and decides who may use a route: moat's
// server-side sessions, the password login flow at /_moat/login, allow
// lists, brute-force throttling, and the identity headers plus signed
// assertion (X-Moat-Assertion) the app receives.
//
// The server assembles it as middleware: Identify (find the session) runs
// before the security policy's per-user limits, Require (enforce sign-in
// and the allow list) after them, Handler serves /_moat/ on every routed
// host, and the proxy calls SetIdentity on each request it forwards.
package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/moat-dev/moat/internal/auth/instancekey"
	"github.com/moat-dev/moat/internal/auth/mfa"
	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/csrf"
	"github.com/moat-dev/moat/internal/store"
)

// Cookie names. The __Host- prefix makes the browser refuse the cookie
// unless it is Secure, host-only and for Path=/, so a sibling subdomain
// cannot plant or overwrite it.
const (
	SessionCookie = "__Host-moat-session"
)

// Timing of the session cache and background work.
const (
	// verifyEvery is how long a cached session is trusted before it is
	// checked against the store again.
	verifyEvery = 4 * time.Second
	// revokePoll is how often Run asks the store for revoked sessions.
	revokePoll = 3 * time.Second
	// revokeOverlap re-reads this much of the past at every poll, for clock
	// skew between instances.
	revokeOverlap = 10 * time.Second
	// keyReload is how often Run re-reads the signing keys (rotation by the
	// CLI or another instance).
	keyReload = 30 * time.Second
	// cacheIdle drops a cached session unused for this long.
	cacheIdle = 10 * time.Minute
	// maxCachedSessions bounds the session cache; past it sessions are still
	// served, from the store.
	maxCachedSessions = 200000
)

// Service is moat's sign-in: sessions, login pages, allow lists and the
// identity handed to the app. Create it with New; it is safe for
// concurrent use.
type Service struct {
	// OnRevoke, if set, is called with a session's id hash
	// (request.User.SessionID) when the session is revoked here or, within
	// seconds, anywhere else (CLI, another instance). The server uses it to
	// close the session's WebSockets. It must not block. Set it before
	// Run starts; it may be called from Run's goroutine and from request
	// handlers (logout, password change, login replacing a session).
	OnRevoke func(sessionIDHash string)
	// MFA is the second factor (TOTP) of password sign-ins; New sets it.
	MFA *mfa.Service

	cfg    *config.Config
	store  store.Store
	logger *slog.Logger
	ikey   *instancekey.Key
	issuer string
	csrf   *csrf.Guard
	maxAge time.Duration
	idle   time.Duration

	sessions   sessionCache
	sso        *ssoState // single sign-on providers (sso.go)
	keys       keyRing
	assertions assertionCache
	accounts   *throttle // failed logins per account
	clients    *throttle // failed logins per client address
	hasher     *hasher
	// throttleClock is the brute-force counters' clock (a fake in tests).
	throttleClock func() time.Time
}

// New builds the Service for cfg on st: it loads the instance key
// (instancekey.ForConfig) and the signing keys, creating the first signing
// key on a new store.
func New(cfg *config.Config, st store.Store, logger *slog.Logger) (*Service, error) {
	if cfg == nil || st == nil {
		return nil, errors.New("auth: config and store are required")
	}
	if logger == nil {
		logger = slog.Default()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ik, err := instancekey.ForConfig(ctx, cfg, st)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	s := &Service{
		cfg:      cfg,
		store:    st,
		logger:   logger.With("component", "auth"),
		ikey:     ik,
		issuer:   Issuer(cfg),
		csrf:     csrf.New(ik.Derive("csrf")),
		maxAge:   cfg.Identity.Session.MaxAge.D(),
		idle:     cfg.Identity.Session.IdleTimeout.D(),
		accounts: newThrottle(accountLimits),
		clients:  newThrottle(clientLimits),
		hasher:   newHasher(cfg),

		throttleClock: time.Now,
	}
	if s.maxAge <= 0 {
		s.maxAge = config.DefaultSessionMaxAge
	}
	if s.idle <= 0 {
		s.idle = config.DefaultSessionIdleTimeout
	}
	s.MFA = mfa.New(st, ik)
	s.MFA.Logger = s.logger
	s.sessions.m = make(map[string]*sessionEntry)
	if s.sso, err = newSSO(cfg); err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	s.sessions.unknown = make(map[string]int64)
	s.assertions.m = make(map[string]cachedAssertion)
	if err := s.loadKeys(ctx); err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	return s, nil
}

// Issuer is the iss of this instance's assertions: server.public_url, or
// https:// plus the first route's host.
func Issuer(cfg *config.Config) string {
	if cfg.Server.PublicURL != "" {
		return strings.TrimSuffix(cfg.Server.PublicURL, "/")
	}
	for _, r := range cfg.Routes {
		if r != nil && r.Host != "" {
			return "https://" + r.Host
		}
	}
	return "https://localhost"
}

// InstanceKey loads the instance key for cfg and checks it against st, as
// New does (for the CLI).
func InstanceKey(ctx context.Context, cfg *config.Config, st store.Store) (*instancekey.Key, error) {
	return instancekey.ForConfig(ctx, cfg, st)
}

// Run does the background work until ctx ends, and must run for as long as
// the Service serves: it polls the store for
// revoked sessions (so a revocation by the CLI or another instance evicts
// the cache and closes WebSockets within seconds), saves last-seen times,
// reloads rotated signing keys and deletes expired sessions.
func (s *Service) Run(ctx context.Context) error {
	go s.runRecheck(ctx) // SSO sessions' refresh_interval (sso.go)
	tick := time.NewTicker(revokePoll)
	defer tick.Stop()
	since := time.Now().Add(-revokeOverlap)
	handled := map[string]time.Time{}
	lastKeys, lastCleanup := time.Now(), time.Time{}
	for {
		select {
		case <-ctx.Done():
			s.persistLastSeen(context.Background(), time.Now())
			return nil
		case <-tick.C:
		}
		now := time.Now()
		pollCtx, cancel := context.WithTimeout(ctx, revokePoll*3)
		hashes, err := s.store.RevokedSince(pollCtx, since.Add(-revokeOverlap))
		if err != nil {
			s.logger.Warn("poll revoked sessions", "err", err)
		} else {
			for _, h := range hashes {
				if _, ok := handled[h]; ok {
					continue
				}
				handled[h] = now
				s.dropSession(h)
			}
			since = now
			for h, at := range handled {
				if now.Sub(at) > 4*revokeOverlap {
					delete(handled, h)
				}
			}
		}
		s.persistLastSeen(pollCtx, now)
		s.sweepSessions(now)
		s.accounts.sweep(now)
		s.clients.sweep(now)
		if now.Sub(lastKeys) >= keyReload {
			lastKeys = now
			if err := s.loadKeys(pollCtx); err != nil {
				s.logger.Error("reload signing keys", "err", err)
			}
		}
		if now.Sub(lastCleanup) >= time.Hour {
			lastCleanup = now
			if n, err := s.store.DeleteExpiredSessions(pollCtx, now); err != nil {
				s.logger.Warn("delete expired sessions", "err", err)
			} else if n > 0 {
				s.logger.Info("deleted expired sessions", "count", n)
			}
			s.deleteOldKeys(pollCtx, now)
		}
		cancel()
	}
}

// dropSession forgets a revoked session here and tells OnRevoke.
func (s *Service) dropSession(hash string) {
	s.sessions.remove(hash)
	s.forgetAssertions(hash)
	s.forgetIAP(hash)
	if s.OnRevoke != nil {
		s.OnRevoke(hash)
	}
}

// audit records an event in the store and the log. Never pass a password,
// session id or token.
func (s *Service) audit(ctx context.Context, action, subject, clientIP, detail string) {
	actor := subject
	if actor == "" {
		actor = "anonymous"
	}
	s.logger.Info("audit", "action", action, "user", subject, "client_ip", clientIP, "detail", detail)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := s.store.Audit(ctx, &store.AuditEvent{Time: time.Now(), Actor: actor, Action: action, Subject: subject, ClientIP: clientIP, Detail: detail}); err != nil {
		s.logger.Error("write audit event", "action", action, "err", err)
	}
}
