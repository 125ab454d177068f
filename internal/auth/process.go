package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"time"

	"github.com/moat-dev/moat/internal/auth/instancekey"
	"github.com/moat-dev/moat/internal/auth/mfa"
	"github.com/moat-dev/moat/internal/auth/passkey"
	"github.com/moat-dev/moat/internal/auth/password"
	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/csrf"
	"github.com/moat-dev/moat/internal/directory"
	"github.com/moat-dev/moat/internal/identity/assertion"
	"github.com/moat-dev/moat/internal/identity/session"
	"github.com/moat-dev/moat/internal/identity/throttle"
	"github.com/moat-dev/moat/internal/store"
	"github.com/moat-dev/moat/internal/usage"
)

// Process is the part of sign-in that outlives a configuration: the store,
// the instance key, the session, token and assertion caches, the signing
// keys, the OIDC states already redeemed, the brute-force throttles and the
// password-hashing limiter. The server builds one Process when it starts
// and hands it to every Service a configuration builds, so a reload keeps
// every counter and cache (issue 11: a reload used to reset the throttles
// and the used-state set).
type Process struct {
	// OnRevoke, if set, is called with a session's id hash
	// (request.User.SessionID) when the session is revoked here or, within
	// seconds, anywhere else (CLI, another instance). The server uses it to
	// close the session's WebSockets. It must not block. Set it before
	// Run starts; it may be called from Run's goroutine and from request
	// handlers (logout, password change, login replacing a session).
	OnRevoke func(sessionIDHash string)
	// Usage, when set, counts every successful sign-in (internal/usage).
	Usage usage.Recorder
	// MFA is the second factor (TOTP) of password sign-ins, shared by the
	// login step, the console and the account page so wrong codes count
	// once wherever they are tried.
	MFA *mfa.Service
	// Passkeys runs the WebAuthn ceremonies (sign-in, second step, account
	// page); failed passkeys count on MFA's budget.
	Passkeys *passkey.Service
	// Key is the instance key, loaded once for the whole process.
	Key *instancekey.Key
	// CSRF guards every form moat renders (key derived from Key).
	CSRF *csrf.Guard
	// Sessions is the session cache over the store.
	Sessions *session.Sessions
	// Signer signs the assertions the app receives, with the store's keys.
	Signer *assertion.Signer
	// Accounts and Clients count failed sign-ins per account and per
	// client address (memory by default; see throttle.Throttle).
	Accounts, Clients throttle.Throttle

	store  store.Store
	logger *slog.Logger

	tokens tokenCache
	replay ssoReplay
	// Limiter bounds the password hashes running at once, for every page
	// that checks or sets a password.
	Limiter *password.Limiter
	// dummy is the hash an unknown user's password is checked against.
	dummy string
	// throttleClock is the brute-force counters' clock (a fake in tests).
	throttleClock func() time.Time
}

// hasherWait is how long a login waits for a free hashing slot before it is
// answered "busy".
const hasherWait = 2 * time.Second

// NewProcess builds the process-lifetime part of sign-in on st with the
// instance key ik, loading the signing keys and creating the first one on
// a new store.
func NewProcess(st store.Store, ik *instancekey.Key, logger *slog.Logger) (*Process, error) {
	if st == nil || ik == nil {
		return nil, errors.New("auth: store and instance key are required")
	}
	if logger == nil {
		logger = slog.Default()
	}
	p := &Process{
		Key:      ik,
		CSRF:     csrf.New(ik.Derive("csrf")),
		Accounts: throttle.NewMemory(throttle.Accounts),
		Clients:  throttle.NewMemory(throttle.Clients),
		store:    st,
		logger:   logger.With("component", "auth"),
		// A login flood takes at most half the cores and leaves the rest
		// to proxied traffic.
		Limiter:       password.NewLimiter(max(1, runtime.GOMAXPROCS(0)/2), hasherWait),
		dummy:         password.DummyHash(password.DefaultParams),
		throttleClock: time.Now,
	}
	p.MFA = mfa.New(st, ik)
	p.MFA.Logger = p.logger
	p.Passkeys = passkey.New(st, ik, p.MFA)
	p.Passkeys.Logger = p.logger
	p.Sessions = session.New(st, p.logger, func(hash string) { p.Forget(Revoked{Session: hash}) })
	p.Sessions.SetIdle(config.DefaultSessionIdleTimeout)
	p.replay.used = map[string]usedFlow{}
	p.replay.checked = map[string]time.Time{}
	p.tokens.ttl = tokenVerifyEvery
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var err error
	if p.Signer, err = assertion.NewSigner(ctx, st, ik, p.logger); err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	return p, nil
}

// Run does the process's background work until ctx ends, and must run for
// as long as the process serves: it polls the store for revoked sessions
// (so a revocation by the CLI or another instance evicts the cache and
// closes WebSockets within seconds), saves last-seen times, reloads
// rotated signing keys and deletes expired sessions.
func (p *Process) Run(ctx context.Context) error {
	tick := time.NewTicker(revokePoll)
	defer tick.Stop()
	since := time.Now().Add(-revokeOverlap)
	handled := map[string]time.Time{}
	lastKeys, lastCleanup := time.Now(), time.Time{}
	for {
		select {
		case <-ctx.Done():
			p.Sessions.Persist(context.Background(), time.Now())
			return nil
		case <-tick.C:
		}
		now := time.Now()
		pollCtx, cancel := context.WithTimeout(ctx, revokePoll*3)
		hashes, err := p.store.RevokedSince(pollCtx, since.Add(-revokeOverlap))
		if err != nil {
			p.logger.Warn("poll revoked sessions", "err", err)
		} else {
			for _, h := range hashes {
				if _, ok := handled[h]; ok {
					continue
				}
				handled[h] = now
				p.Forget(Revoked{Session: h})
			}
			since = now
			for h, at := range handled {
				if now.Sub(at) > 4*revokeOverlap {
					delete(handled, h)
				}
			}
		}
		p.Sessions.Persist(pollCtx, now)
		p.Sessions.Sweep(now)
		p.Accounts.Sweep(now)
		p.Clients.Sweep(now)
		if now.Sub(lastKeys) >= keyReload {
			lastKeys = now
			if err := p.Signer.Reload(pollCtx); err != nil {
				p.logger.Error("reload signing keys", "err", err)
			}
		}
		if now.Sub(lastCleanup) >= time.Hour {
			lastCleanup = now
			if n, err := p.store.DeleteExpiredSessions(pollCtx, now); err != nil {
				p.logger.Warn("delete expired sessions", "err", err)
			} else if n > 0 {
				p.logger.Info("deleted expired sessions", "count", n)
			}
			p.Signer.DeleteOld(pollCtx, now)
		}
		cancel()
	}
}

// Revoked names what a revocation ended: a session (by its id hash), a
// personal access token (by its hash), or everything of a user. Set one
// field.
type Revoked struct {
	Session string
	Token   string
	User    string
}

// Forget drops what a revocation ended from every cache of this instance
// and closes its WebSockets (OnRevoke), so it stops working here at once
// (issue 12 #11). It is the one hook every revocation goes through: the
// revocation poll, a revocation made on this instance (logout, the
// console, the account page), and the cross-instance fan-out.
func (p *Process) Forget(r Revoked) {
	var ended []string
	if r.Session != "" {
		p.Sessions.Drop(r.Session)
		ended = append(ended, r.Session)
	}
	if r.Token != "" {
		p.tokens.remove(r.Token)
		ended = append(ended, tokenSessionID(r.Token))
	}
	if r.User != "" {
		ended = append(ended, p.Sessions.DropUser(r.User)...)
		ended = append(ended, p.tokens.removeUser(r.User)...)
	}
	for _, id := range ended {
		p.Signer.Forget(id)
		if p.OnRevoke != nil {
			p.OnRevoke(id)
		}
	}
}

// Ended stops at once on this instance what a committed directory change
// ended (directory.Directory.Ended): revoked sessions and tokens, and every
// session and token of a user whose sessions all ended. The directory
// calls it only after its transaction committed, so nothing is forgotten
// for a change that was rolled back.
func (p *Process) Ended(e directory.Ended) {
	for _, h := range e.Sessions {
		p.Forget(Revoked{Session: h})
	}
	for _, h := range e.Tokens {
		p.Forget(Revoked{Token: h})
	}
	for _, id := range e.Users {
		p.Forget(Revoked{User: id})
	}
}

// ReloadSession makes the next request of the session read it from the
// store again (its record changed: the account page marked its second
// factor as passed).
func (p *Process) ReloadSession(idHash string) { p.Sessions.Drop(idHash) }

// audit records an event in the store and the log. Never pass a password,
// session id or token.
func (p *Process) audit(ctx context.Context, action, subject, clientIP, detail string) {
	actor := subject
	if actor == "" {
		actor = "anonymous"
	}
	p.logger.Info("audit", "action", action, "user", subject, "client_ip", clientIP, "detail", detail)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := p.store.Audit(ctx, &store.AuditEvent{Time: time.Now(), Actor: actor, Action: action, Subject: subject, ClientIP: clientIP, Detail: detail}); err != nil {
		p.logger.Error("write audit event", "action", action, "err", err)
	}
}
