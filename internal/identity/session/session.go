package session

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moat-dev/moat/internal/metrics"
	"github.com/moat-dev/moat/internal/request"
	"github.com/moat-dev/moat/internal/store"
	"github.com/moat-dev/moat/internal/tracing"
	"github.com/moat-dev/moat/internal/web"
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
	// RetryUnavailable is how long a session whose check found the store
	// unreachable waits before its requests ask the store again, so an
	// outage costs the store one query per second per session, not one
	// per request.
	RetryUnavailable = time.Second
	// cacheIdle drops a cached session unused for this long.
	cacheIdle = 10 * time.Minute
	// maxCachedSessions bounds the cache; past it sessions are still
	// served, from the store.
	maxCachedSessions = 200000
)

// Lifetimes bound a session: the configuration's identity.session.max_age
// and idle_timeout, and store_outage_grace.
type Lifetimes struct {
	MaxAge, Idle time.Duration
	// OutageGrace is how long after the store last confirmed a session
	// the cache may still vouch for it while the store cannot be reached.
	// Past it the session can be neither confirmed nor refused: its
	// requests get ErrUnavailable's 503, never a sign-out.
	OutageGrace time.Duration
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
	// verifyEvery and retryUnavailable are VerifyEvery and
	// RetryUnavailable (shorter in tests).
	verifyEvery, retryUnavailable time.Duration
	// outageLogged is when a failed check was last logged (unix
	// nanoseconds): an outage logs once every outageLogEvery, not once
	// per request.
	outageLogged atomic.Int64
}

// outageLogEvery bounds the log lines of session checks that failed.
const outageLogEvery = 10 * time.Second

// New returns the sessions kept in st; ended is called with the id hash of
// every session that ends on this instance.
func New(st store.Store, logger *slog.Logger, ended func(hash string)) *Sessions {
	s := &Sessions{store: st, logger: logger, ended: ended, verifyEvery: VerifyEvery, retryUnavailable: RetryUnavailable}
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
	// retryAt is when a check that found the store unreachable may be
	// tried again (unix nanoseconds; 0 when the last check succeeded).
	retryAt    atomic.Int64
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

// getBytes is get with the hash as bytes, without making a string of it.
func (c *cache) getBytes(hash []byte) *entry {
	c.mu.RLock()
	e := c.m[string(hash)]
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
		e, err := s.lookup(r, lt)
		if err != nil && !openToAll(r) {
			// The cookie names a session the store cannot confirm or
			// refuse now: neither anonymous (a signed-in person would
			// look signed out, and a public route's app would get no
			// identity) nor signed in (it may be revoked).
			span.End()
			web.Fail(w, r, web.StoreDown("session_unavailable", err))
			return
		}
		if e != nil {
			info.User, info.Session = e.user, &e.sess
		}
		span.End()
		next.ServeHTTP(w, r)
	})
}

// openToAll reports whether r asks for something that is the same for
// everyone and opens nothing (moat's stylesheet and scripts, which the 503
// page itself loads), so it is served without a session while the store
// is unreachable.
func openToAll(r *http.Request) bool {
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) && strings.HasPrefix(r.URL.Path, web.StaticPrefix)
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
	h := hashID(id)
	return string(h[:])
}

// hashID is HashID as an array, which needs no allocation.
func hashID(id string) (h [2 * sha256.Size]byte) {
	// A cookie's id (IDLen bytes) is copied to the stack: converting it
	// with []byte(id) allocates past 32 bytes.
	var buf [IDLen]byte
	var sum [sha256.Size]byte
	if len(id) <= IDLen {
		sum = sha256.Sum256(buf[:copy(buf[:], id)])
	} else {
		sum = sha256.Sum256([]byte(id))
	}
	hex.Encode(h[:], sum[:])
	return h
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

// lookup returns the valid session r carries, or nil; an error wrapping
// store.ErrUnavailable when the session can be neither confirmed nor
// refused (the store is unreachable and the cache cannot vouch for it).
func (s *Sessions) lookup(r *http.Request, lt Lifetimes) (*entry, error) {
	id := CookieValue(r, Cookie)
	if !ValidID(id) {
		return nil, nil
	}
	// The cache is asked with the hash on the stack: a hit, the common
	// case, allocates nothing; the string is made only for the store.
	hexSum := hashID(id)
	now := time.Now()
	e := s.cache.getBytes(hexSum[:])
	var err error
	if e != nil {
		hash := e.hash
		age := now.Sub(time.Unix(0, e.verifiedAt.Load()))
		// One request refreshes a stale entry; the others keep using it for
		// a little longer rather than all asking the store at once.
		if age >= s.verifyEvery {
			if e.refreshing.CompareAndSwap(false, true) {
				prev := e
				e, err = s.refresh(r.Context(), hash, prev, lt)
				prev.refreshing.Store(false)
			} else if age >= max(2*s.verifyEvery, lt.OutageGrace) {
				e, err = s.refresh(r.Context(), hash, e, lt)
			}
		}
	} else if hash := string(hexSum[:]); !s.cache.knownBad(hash, now) {
		e, err = s.refresh(r.Context(), hash, nil, lt)
	}
	if err != nil {
		return nil, err
	}
	if e == nil || !live(e, now, lt) {
		return nil, nil
	}
	e.lastSeen.Store(now.UnixNano())
	return e, nil
}

// live reports whether e is within its absolute and idle lifetimes.
func live(e *entry, now time.Time, lt Lifetimes) bool {
	if !now.Before(e.expiresAt) || !now.Before(e.createdAt.Add(lt.MaxAge)) {
		return false
	}
	return now.Sub(time.Unix(0, e.lastSeen.Load())) < lt.Idle
}

// refresh reads the session and its user from the store and caches the
// result; nil means no valid session. When the store cannot be reached
// (store.ErrUnavailable), prev, the cached entry, is still the answer while
// the store confirmed it less than lt.OutageGrace ago; past that, or
// without prev, the error is returned: the session is neither valid nor
// ended, and the caller must not guess. Any other error is returned too,
// and drops prev.
func (s *Sessions) refresh(ctx context.Context, hash string, prev *entry, lt Lifetimes) (*entry, error) {
	now := time.Now()
	if prev != nil && now.UnixNano() < prev.retryAt.Load() {
		// The store was unreachable a moment ago: answer from the cache
		// without asking it again yet.
		return s.fromCache(prev, now, lt, errRetryLater)
	}
	// A client that goes away must not make the check fail and evict.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	e, err := s.loadSession(ctx, hash)
	if err != nil {
		if errors.Is(err, store.ErrUnavailable) {
			if prev != nil {
				prev.retryAt.Store(time.Now().Add(s.retryUnavailable).UnixNano())
				return s.fromCache(prev, now, lt, err)
			}
			s.outage(false, err)
			return nil, fmt.Errorf("check session: %w", err)
		}
		s.logger.Error("check session", "err", err)
		s.cache.remove(hash)
		return nil, fmt.Errorf("check session: %w", err)
	}
	if e == nil {
		s.cache.remove(hash)
		s.cache.markBad(hash, time.Now().Add(s.verifyEvery))
		return nil, nil
	}
	if prev != nil && prev.lastSeen.Load() > e.lastSeen.Load() {
		e.lastSeen.Store(prev.lastSeen.Load())
		e.savedSeen.Store(prev.savedSeen.Load())
	}
	s.cache.put(e)
	return e, nil
}

// errRetryLater is why a session was not checked: the store was found
// unreachable less than RetryUnavailable ago.
var errRetryLater = fmt.Errorf("%w: not asked again yet", store.ErrUnavailable)

// fromCache answers a check the store could not: prev while the store
// confirmed it within lt.OutageGrace, else err.
func (s *Sessions) fromCache(prev *entry, now time.Time, lt Lifetimes, err error) (*entry, error) {
	if now.Sub(time.Unix(0, prev.verifiedAt.Load())) < lt.OutageGrace {
		s.outage(true, err)
		return prev, nil
	}
	s.outage(false, err)
	return nil, fmt.Errorf("check session: confirmed by the store more than %s ago: %w", lt.OutageGrace, err)
}

// outage counts a session check the store could not answer (served from
// the cache, or refused) and logs one now and then.
func (s *Sessions) outage(cached bool, err error) {
	outcome := "refused"
	if cached {
		outcome = "cached"
	}
	metrics.SessionChecksFailed.WithLabelValues(outcome).Inc()
	now := time.Now().UnixNano()
	last := s.outageLogged.Load()
	if now-last < int64(outageLogEvery) || !s.outageLogged.CompareAndSwap(last, now) {
		return
	}
	s.logger.Warn("store unreachable: sessions it confirmed within store_outage_grace are served from the cache, others get 503",
		"outcome", outcome, "err", err)
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
		if err := s.Revoke(ctx, HashID(old)); err != nil {
			s.logger.Error("end the session a sign-in replaces", "err", err)
		}
	}
	http.SetCookie(w, &http.Cookie{
		Name: Cookie, Value: id, Path: "/", MaxAge: int(lt.MaxAge / time.Second),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
	e := s.entryFor(sess, u)
	s.cache.put(e)
	return &e.sess, nil
}

// Revoke ends a session everywhere: in the store, then here. When the store
// cannot record it, nothing changes and the error says why: a sign-out
// that is not stored must never look done, since the session would go on
// working on every other instance (and here, once the cache is read
// again).
func (s *Sessions) Revoke(ctx context.Context, hash string) error {
	if err := s.store.RevokeSession(ctx, hash, time.Now()); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("revoke session: %w", err)
	}
	s.cache.remove(hash)
	if s.ended != nil {
		s.ended(hash)
	}
	return nil
}

// ClearCookie tells the browser to forget moat's session cookie.
func ClearCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: Cookie, Value: "", Path: "/", MaxAge: -1, Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
}

// Alive reports whether the session with id hash is still valid under lt:
// not revoked, within max_age and idle_timeout, its user enabled.
// lastActive is use that HTTP requests do not show, such as frames on the
// session's WebSocket, so idle_timeout does not end a session in use. It
// reports false only for a session that really ended: while the store
// cannot be reached a session is judged by its cached lifetimes, or, not
// cached, kept (its WebSockets stay open through an outage).
func (s *Sessions) Alive(ctx context.Context, hash string, lastActive time.Time, lt Lifetimes) bool {
	e := s.cache.get(hash)
	if e == nil || time.Since(time.Unix(0, e.verifiedAt.Load())) >= s.verifyEvery {
		fresh, err := s.refresh(ctx, hash, e, lt)
		switch {
		case err == nil:
			e = fresh
		case e == nil:
			return true // neither confirmed nor refused: keep it
		}
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
