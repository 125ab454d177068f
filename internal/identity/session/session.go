package session

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moat-dev/moat/internal/request"
	"github.com/moat-dev/moat/internal/store"
	"github.com/moat-dev/moat/internal/tracing"
)

// Cookie carries the session id. The __Host- prefix makes the browser
// refuse the cookie unless it is Secure, host-only and for Path=/, so a
// sibling subdomain cannot plant or overwrite it.
const Cookie = "__Host-moat-session"

// IDLen is the length of a cookie value: 32 random bytes, base64url.
const IDLen = 43

// Timing and bounds of the cache.
const (
	// VerifyEvery is how long a cached session is trusted before it is
	// checked against the store again.
	VerifyEvery = 4 * time.Second
	// cacheIdle drops a cached session unused for this long.
	cacheIdle = 10 * time.Minute
	// maxCachedSessions bounds the cache; past it sessions are still
	// served, from the store.
	maxCachedSessions = 200000
)

// Lifetimes bound a session: the configuration's identity.session.max_age
// and idle_timeout.
type Lifetimes struct {
	MaxAge, Idle time.Duration
}

// Sessions is the process's sessions: the cache in front of the store, the
// cookie, starting and ending a session. One per process, so a reload keeps
// the cache; create it with New.
type Sessions struct {
	store  store.Store
	logger *slog.Logger
	cache  cache
	// ended is told when a session ends on this instance (the process's
	// Forget: other caches, WebSockets).
	ended func(hash string)
	// idle is the serving configuration's idle timeout, for the
	// background work (Persist, Sweep).
	idle atomic.Int64
}

// New returns the sessions kept in st; ended is called with the id hash of
// every session that ends on this instance.
func New(st store.Store, logger *slog.Logger, ended func(hash string)) *Sessions {
	s := &Sessions{store: st, logger: logger, ended: ended}
	s.cache.m = make(map[string]*entry)
	s.cache.unknown = make(map[string]int64)
	return s
}

// SetIdle makes the background work judge idleness by the serving
// configuration.
func (s *Sessions) SetIdle(d time.Duration) { s.idle.Store(int64(d)) }

// Drop forgets a session here (it ended, or its record changed and must be
// read again).
func (s *Sessions) Drop(hash string) { s.cache.remove(hash) }

// DropUser forgets every cached session of a user and returns their hashes.
func (s *Sessions) DropUser(userID string) []string { return s.cache.removeUser(userID) }

// Cached reports whether the session is in this instance's cache.
func (s *Sessions) Cached(hash string) bool { return s.cache.get(hash) != nil }

// Peek returns the user and the session cached under hash, as the last
// check (a request, Alive) found them, without asking the store.
func (s *Sessions) Peek(hash string) (request.User, *request.Session, bool) {
	e := s.cache.get(hash)
	if e == nil {
		return request.User{}, nil, false
	}
	return e.user, &e.sess, true
}

// Stale makes every cached session be checked against the store at its
// next use (changes may have been missed: the fan-out's Resync), keeping
// what the cache knows of its use.
func (s *Sessions) Stale() {
	s.cache.mu.RLock()
	for _, e := range s.cache.m {
		e.verifiedAt.Store(0)
	}
	s.cache.mu.RUnlock()
}

// entry is a session as the cache holds it. Fields other than the
// atomics never change; a refresh replaces the entry.
type entry struct {
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

// cache holds recently checked sessions by id hash.
type cache struct {
	mu sync.RWMutex
	m  map[string]*entry
	// unknown remembers, for VerifyEvery, cookie values that name no valid
	// session (expired, revoked, made up), so a browser or a script
	// repeating one does not cost a store query per request.
	unknown map[string]int64 // hash -> unix nanoseconds it is remembered until
}

// maxUnknownSessions bounds the negative cache; past it the cache starts
// over.
const maxUnknownSessions = 50000

func (c *cache) knownBad(hash string, now time.Time) bool {
	c.mu.RLock()
	until, ok := c.unknown[hash]
	c.mu.RUnlock()
	return ok && now.UnixNano() < until
}

func (c *cache) markBad(hash string, until time.Time) {
	c.mu.Lock()
	if len(c.unknown) >= maxUnknownSessions {
		c.unknown = make(map[string]int64)
	}
	c.unknown[hash] = until.UnixNano()
	c.mu.Unlock()
}

func (c *cache) get(hash string) *entry {
	c.mu.RLock()
	e := c.m[hash]
	c.mu.RUnlock()
	return e
}

func (c *cache) put(e *entry) {
	c.mu.Lock()
	if len(c.m) < maxCachedSessions || c.m[e.hash] != nil {
		c.m[e.hash] = e
	}
	c.mu.Unlock()
}

func (c *cache) remove(hash string) {
	c.mu.Lock()
	delete(c.m, hash)
	c.mu.Unlock()
}

// removeUser drops every cached session of a user and returns their hashes.
func (c *cache) removeUser(userID string) []string {
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
// valid (not revoked, within lt, its user enabled), sets the user and the
// session on request.From(r): every later check reads them there. It
// enforces nothing. A recently seen session is answered from memory,
// checked against the store at most every VerifyEvery.
func (s *Sessions) Identify(lt Lifetimes, next http.Handler) http.Handler {
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
		span := tracing.Start(r.Context(), "moat.session")
		if e := s.lookup(r, lt); e != nil {
			info.User, info.Session = e.user, &e.sess
		}
		span.End()
		next.ServeHTTP(w, r)
	})
}

// CookieValue returns the value of the named cookie without parsing every
// cookie of the request.
func CookieValue(r *http.Request, name string) string {
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

// HashID is what the store keeps of a session id.
func HashID(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])
}

// ValidID reports whether id has the shape of a session id.
func ValidID(id string) bool {
	if len(id) != IDLen {
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
func (s *Sessions) lookup(r *http.Request, lt Lifetimes) *entry {
	id := CookieValue(r, Cookie)
	if !ValidID(id) {
		return nil
	}
	hash := HashID(id)
	now := time.Now()
	e := s.cache.get(hash)
	if e != nil {
		age := now.Sub(time.Unix(0, e.verifiedAt.Load()))
		// One request refreshes a stale entry; the others keep using it for
		// a little longer rather than all asking the store at once.
		if age >= VerifyEvery {
			if e.refreshing.CompareAndSwap(false, true) {
				prev := e
				e = s.refresh(r.Context(), hash, prev)
				prev.refreshing.Store(false)
			} else if age >= 2*VerifyEvery {
				e = s.refresh(r.Context(), hash, e)
			}
		}
	} else if !s.cache.knownBad(hash, now) {
		e = s.refresh(r.Context(), hash, nil)
	}
	if e == nil || !live(e, now, lt) {
		return nil
	}
	e.lastSeen.Store(now.UnixNano())
	return e
}

// live reports whether e is within its absolute and idle lifetimes.
func live(e *entry, now time.Time, lt Lifetimes) bool {
	if !now.Before(e.expiresAt) || !now.Before(e.createdAt.Add(lt.MaxAge)) {
		return false
	}
	return now.Sub(time.Unix(0, e.lastSeen.Load())) < lt.Idle
}

// refresh reads the session and its user from the store and caches the
// result; nil means no valid session.
func (s *Sessions) refresh(ctx context.Context, hash string, prev *entry) *entry {
	// A client that goes away must not make the check fail and evict.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	e, err := s.loadSession(ctx, hash)
	if err != nil {
		s.logger.Error("check session", "err", err)
		s.cache.remove(hash) // fail closed
		return nil
	}
	if e == nil {
		s.cache.remove(hash)
		s.cache.markBad(hash, time.Now().Add(VerifyEvery))
		return nil
	}
	if prev != nil && prev.lastSeen.Load() > e.lastSeen.Load() {
		e.lastSeen.Store(prev.lastSeen.Load())
		e.savedSeen.Store(prev.savedSeen.Load())
	}
	s.cache.put(e)
	return e
}

func (s *Sessions) loadSession(ctx context.Context, hash string) (*entry, error) {
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

func (s *Sessions) entryFor(sess *store.Session, u *store.User) *entry {
	groups := append([]string(nil), u.Groups...)
	for _, g := range sess.Groups {
		if !slices.Contains(groups, g) {
			groups = append(groups, g)
		}
	}
	e := &entry{
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

// Start creates a new session for u, signed in with provider, under lt:
// a fresh random id (never a value the client sent: no fixation), the
// cookie set, and the session the request carried before revoked. Each of
// opts may fill in more of the new session (SSO groups, the sealed refresh
// token) before it is stored. The session returned is the one requests will
// carry; until it is returned, no other request sees it.
func (s *Sessions) Start(ctx context.Context, w http.ResponseWriter, r *http.Request, u *store.User, provider string, lt Lifetimes, opts ...func(*store.Session)) (*request.Session, error) {
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
		IDHash: HashID(id), UserID: u.ID, Email: u.Email, Provider: provider,
		ClientIP: clientIP(info), UserAgent: ua,
		CreatedAt: now, LastSeen: now, ExpiresAt: now.Add(lt.MaxAge), AuthTime: now,
	}
	for _, o := range opts {
		o(sess)
	}
	if err := s.store.CreateSession(ctx, sess); err != nil {
		return nil, err
	}
	if old := CookieValue(r, Cookie); ValidID(old) {
		s.Revoke(ctx, HashID(old))
	}
	http.SetCookie(w, &http.Cookie{
		Name: Cookie, Value: id, Path: "/", MaxAge: int(lt.MaxAge / time.Second),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
	e := s.entryFor(sess, u)
	s.cache.put(e)
	return &e.sess, nil
}

// Revoke ends a session everywhere: in the store, then here.
func (s *Sessions) Revoke(ctx context.Context, hash string) {
	if err := s.store.RevokeSession(ctx, hash, time.Now()); err != nil && !errors.Is(err, store.ErrNotFound) {
		s.logger.Error("revoke session", "err", err)
	}
	s.cache.remove(hash)
	if s.ended != nil {
		s.ended(hash)
	}
}

// ClearCookie tells the browser to forget moat's session cookie.
func ClearCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: Cookie, Value: "", Path: "/", MaxAge: -1, Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
}

// Alive reports whether the session with id hash is still valid under lt:
// not revoked, within max_age and idle_timeout, its user enabled.
// lastActive is use that HTTP requests do not show, such as frames on the
// session's WebSocket, so idle_timeout does not end a session in use.
func (s *Sessions) Alive(ctx context.Context, hash string, lastActive time.Time, lt Lifetimes) bool {
	e := s.cache.get(hash)
	if e == nil || time.Since(time.Unix(0, e.verifiedAt.Load())) >= VerifyEvery {
		e = s.refresh(ctx, hash, e)
	}
	if e == nil {
		return false
	}
	if n := lastActive.UnixNano(); n > e.lastSeen.Load() {
		e.lastSeen.Store(n)
	}
	return live(e, time.Now(), lt)
}

// Persist writes last-seen times that moved noticeably to the store, so
// other instances judge idleness right.
func (s *Sessions) Persist(ctx context.Context, now time.Time) {
	step := time.Duration(s.idle.Load()) / 8
	if step > time.Minute {
		step = time.Minute
	}
	var dirty []*entry
	s.cache.mu.RLock()
	for _, e := range s.cache.m {
		if time.Duration(e.lastSeen.Load()-e.savedSeen.Load()) >= step {
			dirty = append(dirty, e)
		}
	}
	s.cache.mu.RUnlock()
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

// Sweep drops cache entries that expired or went unused for cacheIdle or
// the idle timeout.
func (s *Sessions) Sweep(now time.Time) {
	unused := min(cacheIdle, time.Duration(s.idle.Load()))
	s.cache.mu.Lock()
	for h, e := range s.cache.m {
		if !now.Before(e.expiresAt) || now.Sub(time.Unix(0, e.lastSeen.Load())) > unused {
			delete(s.cache.m, h)
		}
	}
	for h, until := range s.cache.unknown {
		if now.UnixNano() >= until {
			delete(s.cache.unknown, h)
		}
	}
	s.cache.mu.Unlock()
}

func clientIP(info *request.Info) string {
	if info.ClientIP.IsValid() {
		return info.ClientIP.String()
	}
	return ""
}
