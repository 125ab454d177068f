package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"time"

	"github.com/moat-dev/moat/internal/attempts"
	"github.com/moat-dev/moat/internal/auth/instancekey"
	"github.com/moat-dev/moat/internal/auth/mfa"
	"github.com/moat-dev/moat/internal/auth/passkey"
	"github.com/moat-dev/moat/internal/auth/password"
	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/csrf"
	"github.com/moat-dev/moat/internal/directory"
	"github.com/moat-dev/moat/internal/fanout"
	"github.com/moat-dev/moat/internal/identity/assertion"
	"github.com/moat-dev/moat/internal/identity/device"
	"github.com/moat-dev/moat/internal/identity/login"
	"github.com/moat-dev/moat/internal/identity/session"
	"github.com/moat-dev/moat/internal/identity/throttle"
	"github.com/moat-dev/moat/internal/store"
	"github.com/moat-dev/moat/internal/usage"
)

// Process is the part of sign-in that outlives a configuration: the store,
// the instance key, the session, token and assertion caches, the signing
// keys, the sign-ins with a provider, the brute-force throttle and its
// hold, the re-checks of SSO sessions and the password-hashing limiter.
// The server builds one Process when it starts and hands it to every
// Service a configuration builds, so a reload keeps every counter and
// cache (issue 11: a reload used to reset the throttles and the used-state
// set).
type Process struct {
	// OnRevoke, if set, is called with a session's id hash
	// (request.User.SessionID) when the session is revoked here or, within
	// seconds, anywhere else (CLI, another instance). The server uses it to
	// close the session's WebSockets. It must not block. Set it before
	// Run starts; it may be called from Run's goroutine and from request
	// handlers (logout, password change, login replacing a session).
	OnRevoke func(sessionIDHash string)
	// OnChange, if set, is called with a user's id when who the user is
	// may have changed, here or, within a second, anywhere else (groups,
	// name, disabled, sessions or tokens ended), once this instance's
	// caches of the user are dropped; and with "" when changes may have
	// been missed (the fan-out's Resync). The server re-checks the user's
	// WebSockets against their routes. It must not block; set it before
	// Run starts.
	OnChange func(userID string)
	// Bus carries changes between instances (internal/fanout): every
	// change made here is published on it, and Run applies every
	// instance's. Nil: this instance alone, which learns of changes made
	// elsewhere by polling the store. Set it before Run starts.
	Bus *fanout.Bus
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
	// Throttle is the brute-force protection of passwords and second
	// factors (the store's counters unless UseThrottle gave another).
	Throttle *throttle.Service
	// Devices reads and issues the device cookies that give a browser
	// which signed in before a budget of its own.
	Devices *device.Jar

	// Flows are the sign-ins with a provider under way; their states are
	// redeemed once for the cluster, in the store (a callback cannot be
	// replayed against another instance, nor across a reload or restart).
	Flows *login.Flows
	// Hold slows the answers to sign-in attempts Throttle refused.
	Hold *throttle.Hold
	// Limiter bounds the password hashes running at once, for every page
	// that checks or sets a password.
	Limiter *password.Limiter

	store  store.Store
	logger *slog.Logger
	// dir is the directory's operations the sign-in makes outside its
	// pages: the account of a bearer ID token's user, the audit event of
	// a session a provider no longer vouches for.
	dir *directory.Directory

	tokens   tokenCache
	rechecks rechecks
}

// hasherWait is how long a login waits for a free hashing slot before it is
// answered "busy".
const hasherWait = 2 * time.Second

// throttleSweep is how often the sign-in throttle's run-out counts are
// deleted (a statement on the store; nothing on Redis).
const throttleSweep = 5 * time.Minute

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
		Key:     ik,
		CSRF:    csrf.New(ik.Derive("csrf")),
		Devices: device.New(ik.Derive("device cookie")),
		Flows:   login.NewFlows(ik, st),
		Hold:    throttle.NewHold(),
		// A login flood takes at most half the cores and leaves the rest
		// to proxied traffic.
		Limiter:  password.NewLimiter(max(1, runtime.GOMAXPROCS(0)/2), hasherWait),
		store:    st,
		logger:   logger.With("component", "auth"),
		rechecks: newRechecks(),
	}
	p.dir = &directory.Directory{Store: st, Logger: p.logger, Ended: p.Ended}
	p.Throttle = throttle.New(attempts.NewStore(st), p.logger)
	p.MFA = mfa.New(st, ik, p.Throttle)
	p.MFA.Logger = p.logger
	p.Passkeys = passkey.New(st, ik, p.MFA)
	p.Passkeys.Logger = p.logger
	p.Sessions = session.New(st, p.logger, func(hash string) { p.sessionEnded(context.Background(), hash) })
	p.Sessions.SetIdle(config.DefaultSessionIdleTimeout)
	p.tokens.ttl = tokenVerifyEvery
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var err error
	if p.Signer, err = assertion.NewSigner(ctx, st, ik, p.logger); err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	return p, nil
}

// UseThrottle makes th the brute-force protection of passwords and second
// factors alike (the server's, on the counters: of the configuration).
// Call it before serving.
func (p *Process) UseThrottle(th *throttle.Service) {
	p.Throttle = th
	p.MFA.Throttle = th
}

// Run does the process's background work until ctx ends, and must run for
// as long as the process serves: it applies the changes every instance
// publishes on Bus (within a second of the change), polls the store for
// revoked sessions (the fallback: a revocation by another instance, made
// while the bus was down, evicts the cache and closes WebSockets within
// seconds), saves last-seen times, reloads rotated signing keys and
// deletes expired sessions.
func (p *Process) Run(ctx context.Context) error {
	if p.Bus != nil {
		go p.follow(ctx, p.Bus.Subscribe())
	}
	tick := time.NewTicker(revokePoll)
	defer tick.Stop()
	since := time.Now().Add(-revokeOverlap)
	handled := map[string]time.Time{}
	lastKeys, lastCleanup, lastSweep := time.Now(), time.Time{}, time.Now()
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
		if now.Sub(lastSweep) >= throttleSweep {
			lastSweep = now
			if err := p.Throttle.Sweep(pollCtx); err != nil {
				p.logger.Warn("sweep the sign-in throttle's counts", "err", err)
			}
		}
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

// Ended stops what a committed directory change ended
// (directory.Directory.Ended) at once on this instance and, through the
// fan-out, on every other: revoked sessions and tokens, every session and
// token of a user whose sessions all ended, and the sockets of a user who
// changed. The directory calls it only after its transaction committed, so
// nothing is forgotten for a change that was rolled back.
func (p *Process) Ended(e directory.Ended) {
	ctx := context.Background()
	for _, h := range e.Sessions {
		p.Forget(Revoked{Session: h})
	}
	for _, h := range e.Tokens {
		p.Forget(Revoked{Token: h})
	}
	for _, id := range e.Users {
		p.Forget(Revoked{User: id})
	}
	for _, id := range e.Changed {
		p.refresh(id)
	}
	for _, ev := range e.Events() {
		p.announce(ctx, ev)
	}
}

// UserChanged tells this instance and every other one that who a user is
// changed without a revocation (their groups, their name, an account
// enabled, the groups an SSO refresh brought): each drops what it cached
// of the user and re-checks the user's WebSockets (OnChange), closing
// those on routes the user lost and asking the others' apps to reconnect
// with the new identity. Call it after the change is stored.
func (p *Process) UserChanged(ctx context.Context, userID string) {
	p.refresh(userID)
	p.announce(ctx, fanout.Event{Kind: fanout.UserChanged, ID: userID})
}

// sessionEnded forgets a session that ended here (Sessions.Revoke: a
// sign-out, a sign-in replacing a session, a re-check refused) and
// announces it to every other instance.
func (p *Process) sessionEnded(ctx context.Context, hash string) {
	p.Forget(Revoked{Session: hash})
	p.announce(ctx, fanout.Event{Kind: fanout.SessionRevoked, ID: hash})
}

// announceTimeout bounds a publish, so a request that revoked something
// does not wait long on a bus that is down (other instances then follow
// by their poll).
const announceTimeout = 2 * time.Second

// announce publishes e on the bus, if there is one. A failure is logged:
// the change is in the store, and other instances learn of it by their
// poll.
func (p *Process) announce(ctx context.Context, e fanout.Event) {
	if p.Bus == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), announceTimeout)
	defer cancel()
	if err := p.Bus.Publish(ctx, e); err != nil {
		p.logger.Warn("fanout: could not tell the other instances; they follow by their poll", "event", e.Kind, "err", err)
	}
}

// refresh drops what this instance cached of a user (sessions, tokens,
// assertions), so their next request reads them from the store again,
// and tells OnChange.
func (p *Process) refresh(userID string) {
	for _, id := range append(p.Sessions.DropUser(userID), p.tokens.removeUser(userID)...) {
		p.Signer.Forget(id)
	}
	if p.OnChange != nil {
		p.OnChange(userID)
	}
}

// follow applies the events of every instance (this one's included, which
// costs a second look and nothing more) until the subscription closes.
func (p *Process) follow(ctx context.Context, sub *fanout.Subscription) {
	defer sub.Close()
	for {
		var e fanout.Event
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-sub.C:
			if !ok {
				return
			}
			e = ev
		}
		switch e.Kind {
		case fanout.SessionRevoked:
			p.Forget(Revoked{Session: e.ID})
		case fanout.TokenRevoked:
			p.Forget(Revoked{Token: e.ID})
		case fanout.UserChanged:
			p.refresh(e.ID)
		case fanout.KeysChanged:
			p.reloadKeys(ctx)
		case fanout.Resync:
			// Events may have been lost: check every cached session
			// and token again, re-read the keys, re-check every socket.
			p.Sessions.Stale()
			p.tokens.clear()
			p.reloadKeys(ctx)
			if p.OnChange != nil {
				p.OnChange("")
			}
		}
	}
}

// reloadKeys reads the signing keys again (a rotation published a key).
func (p *Process) reloadKeys(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := p.Signer.Reload(ctx); err != nil {
		p.logger.Error("reload signing keys", "err", err)
	}
}

// ReloadSession makes the next request of the session read it from the
// store again (its record changed: the account page marked its second
// factor as passed).
func (p *Process) ReloadSession(idHash string) { p.Sessions.Drop(idHash) }
