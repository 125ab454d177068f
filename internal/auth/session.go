package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moat-dev/moat/internal/request"
	"github.com/moat-dev/moat/internal/store"
)

// sessionIDLen is the length of a cookie value: 32 random bytes, base64url.
const sessionIDLen = 43

// sessionEntry is a session as the cache holds it. Fields other than the
// atomics never change; a refresh replaces the entry.
type sessionEntry struct {
	hash string
	user request.User
	// sess is what the request carries (request.Info.Session).
	sess      request.Session
	createdAt time.Time
	expiresAt time.Time

	verifiedAt atomic.Int64 // unix nanoseconds of the last store check
	lastSeen   atomic.Int64 // unix nanoseconds of the last request
	savedSeen  atomic.Int64 // lastSeen as last written to the store
	refreshing atomic.Bool
}

type sessionCache struct {
	mu sync.RWMutex
	m  map[string]*sessionEntry
	// unknown remembers, for verifyEvery, cookie values that name no valid
	// session (expired, revoked, made up), so a browser or a script
	// repeating one does not cost a store query per request.
	unknown map[string]int64 // hash -> unix nanoseconds it is remembered until
}

// maxUnknownSessions bounds the negative cache; past it the cache starts
// over.
const maxUnknownSessions = 50000

func (c *sessionCache) knownBad(hash string, now time.Time) bool {
	c.mu.RLock()
	until, ok := c.unknown[hash]
	c.mu.RUnlock()
	return ok && now.UnixNano() < until
}

func (c *sessionCache) markBad(hash string, until time.Time) {
	c.mu.Lock()
	if len(c.unknown) >= maxUnknownSessions {
		c.unknown = make(map[string]int64)
	}
	c.unknown[hash] = until.UnixNano()
	c.mu.Unlock()
}

func (c *sessionCache) get(hash string) *sessionEntry {
	c.mu.RLock()
	e := c.m[hash]
	c.mu.RUnlock()
	return e
}

func (c *sessionCache) put(e *sessionEntry) {
	c.mu.Lock()
	if len(c.m) < maxCachedSessions || c.m[e.hash] != nil {
		c.m[e.hash] = e
	}
	c.mu.Unlock()
}

func (c *sessionCache) remove(hash string) {
	c.mu.Lock()
	delete(c.m, hash)
	c.mu.Unlock()
}

// removeUser drops every cached session of a user and returns their hashes.
func (c *sessionCache) removeUser(userID string) []string {
	var out []string
	c.mu.Lock()
	for h, e := range c.m {
		if e.user.ID == userID {
			delete(c.m, h)
			out = append(out, h)
		}
	}
	c.mu.Unlock()
	return out
}

// Identify finds the request's session from moat's cookie and, when it is
// valid (not revoked, within max_age and idle_timeout, its user enabled),
// sets request.From(r).User. It enforces nothing: Require does, after the
// security policy has had its say. A recently seen session is answered from
// memory, checked against the store at most every few seconds.
func (s *Service) Identify(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		info, ok := request.FromContext(r.Context())
		if !ok {
			info = request.From(r)
			r = request.With(r, info)
		}
		if info.Session != nil {
			// Identify ran already (the server identifies every request
			// once, before the policy): nothing to find again.
			next.ServeHTTP(w, r)
			return
		}
		if e := s.lookup(r); e != nil {
			info.User, info.Session = e.user, &e.sess
		}
		next.ServeHTTP(w, r)
	})
}

// signedIn returns the user and the session Identify found for r; the
// session is nil when r carries none.
func signedIn(r *http.Request) (request.User, *request.Session) {
	info := request.From(r)
	return info.User, info.Session
}

// cookieValue returns the value of the named cookie without parsing every
// cookie of the request.
func cookieValue(r *http.Request, name string) string {
	for _, line := range r.Header["Cookie"] {
		for len(line) > 0 {
			var part string
			if i := indexByte(line, ';'); i >= 0 {
				part, line = line[:i], line[i+1:]
			} else {
				part, line = line, ""
			}
			for len(part) > 0 && part[0] == ' ' {
				part = part[1:]
			}
			if len(part) > len(name) && part[len(name)] == '=' && part[:len(name)] == name {
				return part[len(name)+1:]
			}
		}
	}
	return ""
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

// hashID is what the store keeps of a session id.
func hashID(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])
}

func validID(id string) bool {
	if len(id) != sessionIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// lookup returns the valid session r carries, or nil.
func (s *Service) lookup(r *http.Request) *sessionEntry {
	id := cookieValue(r, SessionCookie)
	if !validID(id) {
		return nil
	}
	hash := hashID(id)
	now := time.Now()
	e := s.p.sessions.get(hash)
	if e != nil {
		age := now.Sub(time.Unix(0, e.verifiedAt.Load()))
		// One request refreshes a stale entry; the others keep using it for
		// a little longer rather than all asking the store at once.
		if age >= verifyEvery {
			if e.refreshing.CompareAndSwap(false, true) {
				prev := e
				e = s.p.refresh(r.Context(), hash, prev)
				prev.refreshing.Store(false)
			} else if age >= 2*verifyEvery {
				e = s.p.refresh(r.Context(), hash, e)
			}
		}
	} else if !s.p.sessions.knownBad(hash, now) {
		e = s.p.refresh(r.Context(), hash, nil)
	}
	if e == nil || !s.live(e, now) {
		return nil
	}
	e.lastSeen.Store(now.UnixNano())
	return e
}

// live reports whether e is within its absolute and idle lifetimes.
func (s *Service) live(e *sessionEntry, now time.Time) bool {
	if !now.Before(e.expiresAt) || !now.Before(e.createdAt.Add(s.maxAge)) {
		return false
	}
	return now.Sub(time.Unix(0, e.lastSeen.Load())) < s.idle
}

// refresh reads the session and its user from the store and caches the
// result; nil means no valid session.
func (s *Process) refresh(ctx context.Context, hash string, prev *sessionEntry) *sessionEntry {
	// A client that goes away must not make the check fail and evict.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	e, err := s.loadSession(ctx, hash)
	if err != nil {
		s.logger.Error("check session", "err", err)
		s.sessions.remove(hash) // fail closed
		return nil
	}
	if e == nil {
		s.sessions.remove(hash)
		s.sessions.markBad(hash, time.Now().Add(verifyEvery))
		return nil
	}
	if prev != nil && prev.lastSeen.Load() > e.lastSeen.Load() {
		e.lastSeen.Store(prev.lastSeen.Load())
		e.savedSeen.Store(prev.savedSeen.Load())
	}
	s.sessions.put(e)
	return e
}

func (s *Process) loadSession(ctx context.Context, hash string) (*sessionEntry, error) {
	sess, err := s.store.GetSession(ctx, hash)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !sess.RevokedAt.IsZero() {
		return nil, nil
	}
	u, err := s.store.GetUser(ctx, sess.UserID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if u.Disabled {
		return nil, nil
	}
	return s.entryFor(sess, u), nil
}

func (s *Process) entryFor(sess *store.Session, u *store.User) *sessionEntry {
	groups := append([]string(nil), u.Groups...)
	for _, g := range sess.Groups {
		if !contains(groups, g) {
			groups = append(groups, g)
		}
	}
	e := &sessionEntry{
		hash: sess.IDHash,
		user: request.User{
			ID: u.ID, Email: u.Email, Name: u.Name, Groups: groups,
			Provider: sess.Provider, SessionID: sess.IDHash, HostedDomain: sess.HostedDomain,
		},
		sess: request.Session{
			IDHash: sess.IDHash, Provider: sess.Provider, AuthTime: sess.AuthTime, MFA: sess.MFA,
			MustChangePassword: u.MustChangePassword && sess.Provider == "password",
		},
		createdAt: sess.CreatedAt,
		expiresAt: sess.ExpiresAt,
	}
	if e.sess.AuthTime.IsZero() {
		e.sess.AuthTime = sess.CreatedAt
	}
	e.verifiedAt.Store(time.Now().UnixNano())
	e.lastSeen.Store(sess.LastSeen.UnixNano())
	e.savedSeen.Store(sess.LastSeen.UnixNano())
	return e
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// startSession creates a new session for u with a fresh random id (never a
// value the client sent: no fixation), sets the cookie and revokes the
// session the request carried before, if any.
// Each of opts may fill in more of the new session (SSO groups, the
// sealed refresh token) before it is stored.
func (s *Service) startSession(ctx context.Context, w http.ResponseWriter, r *http.Request, u *store.User, provider string, opts ...func(*store.Session)) (*sessionEntry, error) {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, err
	}
	id := base64.RawURLEncoding.EncodeToString(raw[:])
	now := time.Now()
	ua := r.UserAgent()
	if len(ua) > 256 {
		ua = ua[:256]
	}
	info := request.From(r)
	sess := &store.Session{
		IDHash: hashID(id), UserID: u.ID, Email: u.Email, Provider: provider,
		ClientIP: clientIP(info), UserAgent: ua,
		CreatedAt: now, LastSeen: now, ExpiresAt: now.Add(s.maxAge), AuthTime: now,
	}
	for _, o := range opts {
		o(sess)
	}
	if err := s.p.store.CreateSession(ctx, sess); err != nil {
		return nil, err
	}
	if old := cookieValue(r, SessionCookie); validID(old) {
		s.p.revoke(ctx, hashID(old))
	}
	http.SetCookie(w, &http.Cookie{
		Name: SessionCookie, Value: id, Path: "/", MaxAge: int(s.maxAge / time.Second),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
	e := s.p.entryFor(sess, u)
	s.p.sessions.put(e)
	if s.p.Usage != nil {
		s.p.Usage.SignIn(info, provider)
	}
	return e, nil
}

// revoke ends a session everywhere.
func (s *Process) revoke(ctx context.Context, hash string) {
	if err := s.store.RevokeSession(ctx, hash, time.Now()); err != nil && !errors.Is(err, store.ErrNotFound) {
		s.logger.Error("revoke session", "err", err)
	}
	s.Forget(Revoked{Session: hash})
}

// clearSessionCookie tells the browser to forget moat's session cookie.
func clearSessionCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1, Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
}

// Alive reports whether the session with id hash sessionIDHash is still
// valid: not revoked, within max_age and idle_timeout, its user enabled.
// lastActive is use that HTTP requests do not show, such as frames on the
// session's WebSocket, so idle_timeout does not end a session in use. The
// server asks it about sessions that hold WebSockets, so a session that
// expires loses its sockets as a revoked one does.
//
// A WebSocket opened with a bearer token lives while the token (or, for
// an ID token, its user) stays valid (issue 12 #6: such sockets were
// closed within seconds as "session ended").
func (s *Service) Alive(ctx context.Context, sessionIDHash string, lastActive time.Time) bool {
	if alive, ok := s.bearerAlive(ctx, sessionIDHash); ok {
		return alive
	}
	e := s.p.sessions.get(sessionIDHash)
	if e == nil || time.Since(time.Unix(0, e.verifiedAt.Load())) >= verifyEvery {
		e = s.p.refresh(ctx, sessionIDHash, e)
	}
	if e == nil {
		return false
	}
	if n := lastActive.UnixNano(); n > e.lastSeen.Load() {
		e.lastSeen.Store(n)
	}
	return s.live(e, time.Now())
}

// persistLastSeen writes last-seen times that moved noticeably to the store,
// so other instances judge idleness right.
func (s *Process) persistLastSeen(ctx context.Context, now time.Time) {
	step := time.Duration(s.idle.Load()) / 8
	if step > time.Minute {
		step = time.Minute
	}
	var dirty []*sessionEntry
	s.sessions.mu.RLock()
	for _, e := range s.sessions.m {
		if time.Duration(e.lastSeen.Load()-e.savedSeen.Load()) >= step {
			dirty = append(dirty, e)
		}
	}
	s.sessions.mu.RUnlock()
	for _, e := range dirty {
		seen := e.lastSeen.Load()
		if err := s.store.TouchSession(ctx, e.hash, time.Unix(0, seen)); err != nil {
			if ctx.Err() == nil {
				s.logger.Warn("save session last seen", "err", err)
			}
			return
		}
		e.savedSeen.Store(seen)
	}
}

// sweepSessions drops cache entries that expired or went unused for
// cacheIdle or the idle timeout.
func (s *Process) sweepSessions(now time.Time) {
	unused := min(cacheIdle, time.Duration(s.idle.Load()))
	s.sessions.mu.Lock()
	for h, e := range s.sessions.m {
		if !now.Before(e.expiresAt) || now.Sub(time.Unix(0, e.lastSeen.Load())) > unused {
			delete(s.sessions.m, h)
		}
	}
	for h, until := range s.sessions.unknown {
		if now.UnixNano() >= until {
			delete(s.sessions.unknown, h)
		}
	}
	s.sessions.mu.Unlock()
}

func clientIP(info *request.Info) string {
	if info.ClientIP.IsValid() {
		return info.ClientIP.String()
	}
	return ""
}
