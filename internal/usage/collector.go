package usage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/metrics"
	"github.com/moat-dev/moat/internal/request"
	"github.com/moat-dev/moat/internal/store"
)

// DefaultMaxEntries bounds what a Collector holds in memory: sessions
// counted since the last write (and a failed write's, waiting for the
// next), sign-in counters, and sessions with open WebSockets, each. At
// about 200 bytes an entry that is some 20 MB at most.
const DefaultMaxEntries = 100_000

// pruneEvery is how often a Collector deletes usage older than the
// retention. Every instance does; the deletes are idempotent.
const pruneEvery = time.Hour

// writeTimeout bounds one write of usage to the store.
const writeTimeout = 10 * time.Second

// droppedFull counts what did not fit in memory; looked up once, as a
// request may add to it.
var droppedFull = metrics.UsageDropped.WithLabelValues("full")

// Collector is the Recorder of a running moat: it counts in memory and
// writes to the store from Run. Build it with New; it outlives
// configuration reloads (Configure applies a new usage section).
type Collector struct {
	// MaxEntries bounds each of the Collector's maps (DefaultMaxEntries
	// when zero); what would exceed it is dropped and counted.
	MaxEntries int

	st  store.Usage
	log *slog.Logger
	now func() time.Time

	on        atomic.Bool
	retention atomic.Int64 // time.Duration
	interval  atomic.Int64 // time.Duration
	wake      chan struct{}

	mu       sync.Mutex
	sessions map[sessionKey]*sessionUse // counted since the last write
	signins  map[signinKey]int64
	live     map[sessionKey]*liveSession // sessions with open sockets

	// writeMu serializes writes; retry is a failed write's batch, merged
	// into the next one.
	writeMu  sync.Mutex
	retry    *store.UsageBatch
	failures int
}

// sessionKey is one sign-in session on one route. The route is the
// configuration's pointer, not its name, so a request builds no string;
// names are taken when the batch is written.
type sessionKey struct {
	route   *config.Route
	session string // request.User.SessionID
}

// sessionUse is what one instance saw of a session on a route since its
// last write.
type sessionUse struct {
	email, provider string
	first, last     int64 // Unix nanoseconds of the first and last use; 0: none
	connected       time.Duration
	minutes         int64
}

func (u *sessionUse) seen(at int64) {
	if u.first == 0 || at < u.first {
		u.first = at
	}
	if at > u.last {
		u.last = at
	}
}

type signinKey struct {
	route    string
	day      int64
	provider string
}

// liveSession follows a session's open WebSockets on a route. Its atomic
// fields are written by the sockets' pumps, the rest under Collector.mu.
type liveSession struct {
	email, provider string
	open            int   // sockets open now
	since           int64 // when connected time was last added up
	minute          atomic.Int64
	minutes         atomic.Int64 // active minutes not yet added up
	lastMessage     atomic.Int64
}

// New returns a Collector writing to st, configured by u.
func New(st store.Usage, u config.Usage, log *slog.Logger) *Collector {
	if log == nil {
		log = slog.Default()
	}
	c := &Collector{
		st: st, log: log.With("component", "usage"), now: time.Now,
		wake:     make(chan struct{}, 1),
		sessions: map[sessionKey]*sessionUse{},
		signins:  map[signinKey]int64{},
		live:     map[sessionKey]*liveSession{},
	}
	c.Configure(u)
	return c
}

// Configure applies a configuration's usage section: on or off, the
// retention and how often to write. Counts already taken are kept.
func (c *Collector) Configure(u config.Usage) {
	c.on.Store(!u.Off)
	c.retention.Store(int64(u.Retention.D()))
	interval := u.FlushInterval.D()
	if interval <= 0 {
		interval = config.DefaultUsageFlushInterval
	}
	if c.interval.Swap(int64(interval)) != int64(interval) {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
}

func (c *Collector) maxEntries() int {
	if c.MaxEntries > 0 {
		return c.MaxEntries
	}
	return DefaultMaxEntries
}

// use returns the session's entry, creating it; nil (and the drop
// counted) when the map is full. c.mu is held.
func (c *Collector) use(k sessionKey, email, provider string) *sessionUse {
	u := c.sessions[k]
	if u == nil {
		if len(c.sessions) >= c.maxEntries() {
			droppedFull.Inc()
			return nil
		}
		u = &sessionUse{email: email, provider: provider}
		c.sessions[k] = u
	}
	return u
}

// SignIn counts a sign-in headed to info's route.
func (c *Collector) SignIn(info *request.Info, provider string) {
	if c == nil || !c.on.Load() || info == nil || info.Route == nil {
		return
	}
	name := info.Route.Name()
	metrics.SignIns.WithLabelValues(name, provider).Inc()
	k := signinKey{route: name, day: store.UsageDayNumber(c.now()), provider: provider}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.signins[k]; !ok && len(c.signins) >= c.maxEntries() {
		droppedFull.Inc()
		return
	}
	c.signins[k]++
}

// Visit notes a request of a signed-in user that reached the app.
func (c *Collector) Visit(info *request.Info) {
	if c == nil || !c.on.Load() || info == nil || info.Route == nil || info.User.SessionID == "" {
		return
	}
	at := info.Start.UnixNano()
	if info.Start.IsZero() {
		at = c.now().UnixNano()
	}
	c.mu.Lock()
	if u := c.use(sessionKey{info.Route, info.User.SessionID}, info.User.Email, info.User.Provider); u != nil {
		u.seen(at)
	}
	c.mu.Unlock()
}

// OpenSocket starts following a WebSocket of a signed-in user.
func (c *Collector) OpenSocket(info *request.Info) *Socket {
	if c == nil || !c.on.Load() || info == nil || info.Route == nil || info.User.SessionID == "" {
		return nil
	}
	now := c.now().UnixNano()
	k := sessionKey{info.Route, info.User.SessionID}
	c.mu.Lock()
	defer c.mu.Unlock()
	if u := c.use(k, info.User.Email, info.User.Provider); u != nil {
		u.seen(now)
	}
	l := c.live[k]
	if l == nil {
		if len(c.live) >= c.maxEntries() {
			droppedFull.Inc()
			return nil
		}
		l = &liveSession{email: info.User.Email, provider: info.User.Provider, since: now}
		c.live[k] = l
	}
	l.open++
	return &Socket{c: c, key: k, live: l}
}

// Socket follows one open WebSocket. Its methods may be called on nil.
type Socket struct {
	c      *Collector
	key    sessionKey
	live   *liveSession
	closed atomic.Bool
}

// Message notes a message the browser sent at now (Unix nanoseconds, as
// the proxy already read the clock): the first one of each minute makes
// the minute active for the session. It costs two atomic operations
// within a minute, and takes no lock.
func (s *Socket) Message(now int64) {
	if s == nil {
		return
	}
	l := s.live
	l.lastMessage.Store(now)
	m := now / int64(time.Minute)
	for {
		prev := l.minute.Load()
		if m <= prev {
			return
		}
		if l.minute.CompareAndSwap(prev, m) {
			l.minutes.Add(1)
			return
		}
	}
}

// Close notes that the socket closed; later calls do nothing.
func (s *Socket) Close() {
	if s == nil || !s.closed.CompareAndSwap(false, true) {
		return
	}
	c := s.c
	now := c.now().UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	s.live.open--
	c.addUp(s.key, s.live, now)
	if s.live.open <= 0 && c.live[s.key] == s.live {
		delete(c.live, s.key)
	}
}

// addUp moves a live session's connected time and active minutes so far
// into its session entry. c.mu is held.
func (c *Collector) addUp(k sessionKey, l *liveSession, now int64) {
	connected := time.Duration(max(0, now-l.since))
	l.since = now
	minutes := l.minutes.Swap(0)
	last := l.lastMessage.Swap(0)
	name := k.route.Name()
	if connected > 0 {
		metrics.WebSocketSeconds.WithLabelValues(name).Add(connected.Seconds())
	}
	if minutes > 0 {
		metrics.WebSocketActiveMinutes.WithLabelValues(name).Add(float64(minutes))
	}
	u := c.use(k, l.email, l.provider)
	if u == nil {
		return
	}
	u.connected += connected
	u.minutes += minutes
	if last > 0 {
		u.seen(last)
	}
}

// take empties what was counted since the last write into a batch.
func (c *Collector) take() *store.UsageBatch {
	now := c.now().UnixNano()
	c.mu.Lock()
	for k, l := range c.live {
		c.addUp(k, l, now)
	}
	sessions, signins := c.sessions, c.signins
	c.sessions, c.signins = make(map[sessionKey]*sessionUse, len(sessions)), make(map[signinKey]int64, len(signins))
	c.mu.Unlock()

	b := &store.UsageBatch{}
	type nameKey struct{ route, session string }
	merged := make(map[nameKey]int, len(sessions))
	for k, u := range sessions {
		nk := nameKey{k.route.Name(), k.session}
		s := store.UsageSession{Route: nk.route, Key: SessionKey(k.session), Email: u.email, Provider: u.provider,
			Start: unixTime(u.first), End: unixTime(u.last), Connected: u.connected, ActiveMinutes: u.minutes}
		// One route's entries from two configurations (a reload
		// between writes) become one.
		if i, ok := merged[nk]; ok {
			mergeSession(&b.Sessions[i], s)
			continue
		}
		merged[nk] = len(b.Sessions)
		b.Sessions = append(b.Sessions, s)
	}
	for k, n := range signins {
		b.SignIns = append(b.SignIns, store.UsageSignIns{Route: k.route, Day: store.UsageDayStart(k.day), Provider: k.provider, Count: n})
	}
	return b
}

func unixTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}

// mergeSession adds what b counted of a session to a.
func mergeSession(a *store.UsageSession, b store.UsageSession) {
	if !b.Start.IsZero() && (a.Start.IsZero() || b.Start.Before(a.Start)) {
		a.Start = b.Start
	}
	if b.End.After(a.End) {
		a.End = b.End
	}
	a.Connected += b.Connected
	a.ActiveMinutes += b.ActiveMinutes
}

// SessionKey is what the store keeps to tell a session's usage apart: a
// hash of the session's id hash, so usage rows never name a live session.
func SessionKey(sessionID string) string {
	sum := sha256.Sum256([]byte("moat usage session\x00" + sessionID))
	return hex.EncodeToString(sum[:12])
}

// Flush writes what was counted since the last write, with what a failed
// write left. On failure the batch waits for the next Flush, within
// MaxEntries: the excess is dropped and counted.
func (c *Collector) Flush(ctx context.Context) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	b := c.take()
	if c.retry != nil {
		b = c.mergeRetry(c.retry, b)
		c.retry = nil
	}
	if len(b.Sessions) == 0 && len(b.SignIns) == 0 {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, writeTimeout)
	err := c.st.AddUsage(wctx, b)
	cancel()
	if err != nil {
		metrics.UsageWrites.WithLabelValues("error").Inc()
		c.failures++
		c.retry = b
		if c.failures == 1 {
			c.log.Warn("usage could not be written to the store; it is kept in memory and written when the store answers again",
				"sessions", len(b.Sessions), "err", err)
		}
		return err
	}
	metrics.UsageWrites.WithLabelValues("ok").Inc()
	if c.failures > 0 {
		c.log.Info("usage is written to the store again", "failed_writes", c.failures)
		c.failures = 0
	}
	return nil
}

// mergeRetry adds the new batch b to the failed batch old, within
// MaxEntries sessions and sign-in counters; the newest counts win.
func (c *Collector) mergeRetry(old, b *store.UsageBatch) *store.UsageBatch {
	type sk struct{ route, key string }
	at := make(map[sk]int, len(b.Sessions))
	for i, s := range b.Sessions {
		at[sk{s.Route, s.Key}] = i
	}
	dropped := 0
	for _, s := range old.Sessions {
		if i, ok := at[sk{s.Route, s.Key}]; ok {
			mergeSession(&b.Sessions[i], s)
			continue
		}
		if len(b.Sessions) >= c.maxEntries() {
			dropped++
			continue
		}
		b.Sessions = append(b.Sessions, s)
	}
	type ck struct {
		route, provider string
		day             int64
	}
	counts := make(map[ck]int, len(b.SignIns))
	for i, s := range b.SignIns {
		counts[ck{s.Route, s.Provider, store.UsageDayNumber(s.Day)}] = i
	}
	for _, s := range old.SignIns {
		if i, ok := counts[ck{s.Route, s.Provider, store.UsageDayNumber(s.Day)}]; ok {
			b.SignIns[i].Count += s.Count
			continue
		}
		if len(b.SignIns) >= c.maxEntries() {
			dropped++
			continue
		}
		b.SignIns = append(b.SignIns, s)
	}
	if dropped > 0 {
		metrics.UsageDropped.WithLabelValues("store").Add(float64(dropped))
	}
	return b
}

// Prune deletes usage older than the retention.
func (c *Collector) Prune(ctx context.Context) error {
	r := time.Duration(c.retention.Load())
	if !c.on.Load() || r <= 0 {
		return nil
	}
	n, err := c.st.DeleteUsageBefore(ctx, c.now().Add(-r))
	if err != nil {
		return err
	}
	if n > 0 {
		c.log.Info("deleted usage older than the retention", "rows", n, "retention_days", int(r/(24*time.Hour)))
	}
	return nil
}

// Run writes counted usage every flush interval and prunes it every hour
// until ctx ends. Call Flush once more after it returns (Close does), so
// the last seconds are kept.
func (c *Collector) Run(ctx context.Context) {
	timer := time.NewTimer(time.Duration(c.interval.Load()))
	defer timer.Stop()
	nextPrune := c.now().Add(time.Minute)
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.wake:
		case <-timer.C:
			_ = c.Flush(ctx)
			if now := c.now(); now.After(nextPrune) {
				nextPrune = now.Add(pruneEvery)
				pctx, cancel := context.WithTimeout(ctx, time.Minute)
				if err := c.Prune(pctx); err != nil && !errors.Is(err, context.Canceled) {
					c.log.Warn("delete usage older than the retention", "err", err)
				}
				cancel()
			}
		}
		timer.Stop()
		timer.Reset(time.Duration(c.interval.Load()))
	}
}

// Close writes what is left, waiting at most a few seconds for the store.
func (c *Collector) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Flush(ctx); err != nil {
		c.log.Warn("the last usage could not be written at shutdown", "err", err)
	}
}
