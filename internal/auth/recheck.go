package auth

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/moat-dev/moat/internal/auth/oidc"
	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/directory"
	"github.com/moat-dev/moat/internal/identity/login"
	"github.com/moat-dev/moat/internal/store"
)

// minRecheckTick bounds how often Run looks for SSO sessions due a
// re-check.
const minRecheckTick = 5 * time.Second

// newProviders builds cfg's single sign-on providers, and how often Run
// looks for sessions due a re-check: a quarter of the shortest
// refresh_interval, between minRecheckTick and a minute.
func newProviders(cfg *config.Config) (map[string]*oidc.Provider, time.Duration, error) {
	providers := map[string]*oidc.Provider{}
	tick := time.Minute
	for name, pc := range cfg.Identity.SSO {
		p, err := oidc.New(name, pc)
		if err != nil {
			return nil, 0, err
		}
		providers[name] = p
		if iv := pc.RefreshInterval.D(); iv > 0 && iv/4 < tick {
			tick = iv / 4
		}
	}
	return providers, max(tick, minRecheckTick), nil
}

// One instance at a time re-checks SSO sessions: the one holding the
// store's lock recheckLock, renewed while it works and left to run out
// when it stops. Two instances refreshing one session at once would each
// spend the same refresh token, and a provider that rotates them (and
// revokes a reused one) would end the session.
const (
	recheckLock  = "sso-recheck"
	recheckLease = 2 * time.Minute
)

// rechecks is the process's memory of when each SSO session was last
// re-checked with its provider, so a reload does not re-check every
// session at once; a session never re-checked counts from its sign-in
// (so an instance that takes the lock over re-checks what is due).
type rechecks struct {
	mu      sync.Mutex
	checked map[string]time.Time // session hash -> last successful re-check
	owner   string               // this process, on recheckLock
	leased  time.Time            // when this process last took or renewed it
}

func newRechecks() rechecks {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return rechecks{checked: map[string]time.Time{}, owner: "sso-recheck/" + hex.EncodeToString(b[:])}
}

// lead reports whether this process is the instance that re-checks SSO
// sessions, taking or renewing recheckLock in st once a quarter of its
// lease has passed. A store that cannot answer is a no: the next tick
// asks again.
func (rc *rechecks) lead(ctx context.Context, st store.Store) (bool, error) {
	rc.mu.Lock()
	fresh := time.Since(rc.leased) < recheckLease/4
	rc.mu.Unlock()
	if fresh {
		return true, nil
	}
	ok, err := st.TryLock(ctx, recheckLock, rc.owner, recheckLease)
	if err != nil || !ok {
		return false, err
	}
	rc.mu.Lock()
	rc.leased = time.Now()
	rc.mu.Unlock()
	return true, nil
}

func (rc *rechecks) last(hash string) (time.Time, bool) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	t, ok := rc.checked[hash]
	return t, ok
}

// set records a successful re-check at t; a zero t forgets the session.
func (rc *rechecks) set(hash string, t time.Time) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if t.IsZero() {
		delete(rc.checked, hash)
		return
	}
	rc.checked[hash] = t
}

// keep forgets every session not in live (expired or revoked elsewhere).
func (rc *rechecks) keep(live map[string]bool) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for h := range rc.checked {
		if !live[h] {
			delete(rc.checked, h)
		}
	}
}

// runRecheck re-checks SSO sessions with their provider until ctx ends.
func (s *Service) runRecheck(ctx context.Context) {
	due := false
	for _, p := range s.providers {
		if p.RefreshInterval() > 0 {
			due = true
		}
	}
	if !due {
		return
	}
	tick := time.NewTicker(s.recheckTick)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		s.recheckSessions(ctx, time.Now())
	}
}

// recheckSessions asks the provider about every live SSO session whose
// last check is older than its provider's refresh_interval. A refusal
// (token revoked, user disabled at the provider, email no longer verified,
// other domain) ends the session and closes its WebSockets; a provider
// that cannot be reached is given one more interval before the session
// ends (fail closed, but not on a blip).
func (s *Service) recheckSessions(ctx context.Context, now time.Time) {
	if !s.leadRechecks(ctx) {
		return
	}
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	sessions, err := s.p.store.ListSessions(lctx, "")
	cancel()
	if err != nil {
		s.p.logger.Warn("sso re-check: list sessions", "err", err)
		return
	}
	live := make(map[string]bool, len(sessions))
	for _, sess := range sessions {
		live[sess.IDHash] = true
	}
	s.p.rechecks.keep(live)
	for _, sess := range sessions {
		if ctx.Err() != nil {
			return
		}
		p := s.providers[sess.Provider]
		if p == nil || p.RefreshInterval() <= 0 {
			continue
		}
		last, ok := s.p.rechecks.last(sess.IDHash)
		if !ok {
			last = sess.AuthTime
			if last.IsZero() {
				last = sess.CreatedAt
			}
		}
		if now.Sub(last) < p.RefreshInterval() {
			continue
		}
		if !s.leadRechecks(ctx) {
			return
		}
		s.recheck(ctx, p, sess, last, now)
	}
}

// leadRechecks is rechecks.lead on this process's store, with its
// failure logged.
func (s *Service) leadRechecks(ctx context.Context) bool {
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ok, err := s.p.rechecks.lead(lctx, s.p.store)
	if err != nil {
		s.p.logger.Warn("sso re-check: cannot take the re-check lock; trying again at the next tick", "err", err)
	}
	return ok
}

func (s *Service) recheck(ctx context.Context, p *oidc.Provider, sess *store.Session, last, now time.Time) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	end := func(why string) {
		if err := s.p.Sessions.Revoke(ctx, sess.IDHash); err != nil {
			s.p.logger.Error("sso: end a session the provider no longer vouches for; tried again at the next check", "user", sess.Email, "err", err)
			return
		}
		s.p.rechecks.set(sess.IDHash, time.Time{})
		s.p.dir.Record(ctx, directory.Actor{Name: sess.Email}, "session.revoke", sess.Email, "sso:"+p.Name()+": "+why)
	}
	if len(sess.RefreshToken) == 0 {
		end("no refresh token to re-check the sign-in with; sign in again")
		return
	}
	rt, err := s.p.Key.Open(sess.RefreshToken, login.RefreshAAD(p.Name(), sess.UserID))
	if err != nil {
		end("refresh token does not open")
		return
	}
	id, tok, err := p.Refresh(ctx, string(rt))
	switch {
	case errors.Is(err, oidc.ErrProviderDown):
		if now.Sub(last) >= 2*p.RefreshInterval() {
			end("provider unreachable for too long")
		} else {
			s.p.logger.Warn("sso re-check: provider unreachable, will retry", "provider", p.Name(), "user", sess.Email, "err", err)
		}
		return
	case err != nil:
		end("provider refused: " + err.Error())
		return
	case !strings.EqualFold(id.Email, sess.Email):
		end("provider now names another email")
		return
	}
	id.Groups = s.p.dir.KeepProviderGroups(id.Provider, id.Email, id.Groups)
	// Read the session again just before writing, so a revocation made
	// meanwhile is not undone.
	cur, err := s.p.store.GetSession(ctx, sess.IDHash)
	if err != nil || !cur.RevokedAt.IsZero() {
		return
	}
	changed := !slices.Equal(cur.Groups, id.Groups) || cur.HostedDomain != id.HostedDomain
	cur.Groups = id.Groups
	cur.HostedDomain = id.HostedDomain
	if tok.RefreshToken != "" && tok.RefreshToken != string(rt) {
		if cur.RefreshToken, err = s.p.Key.Seal([]byte(tok.RefreshToken), login.RefreshAAD(p.Name(), sess.UserID)); err != nil {
			s.p.logger.Error("sso re-check: seal refresh token", "err", err)
			return
		}
	}
	if err := s.p.store.UpdateSession(ctx, cur); err != nil {
		s.p.logger.Warn("sso re-check: save session", "user", sess.Email, "err", err)
		return
	}
	s.p.rechecks.set(sess.IDHash, now)
	// The next request reloads the session with the provider's groups.
	s.p.Sessions.Drop(sess.IDHash)
	s.p.Signer.Forget(sess.IDHash)
	if changed {
		// Who the user is changed: every instance re-checks their
		// WebSockets, whose apps read the old groups.
		s.p.UserChanged(ctx, sess.UserID)
	}
}
