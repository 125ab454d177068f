package auth

import (
	"context"
	"github.com/moat-dev/moat/internal/identity/assertion"
	"github.com/moat-dev/moat/internal/identity/session"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/csrf"
	"github.com/moat-dev/moat/internal/request"
	"github.com/moat-dev/moat/internal/store"
)

// benchSession signs alice in and returns her cookie value.
func benchSession(b *testing.B, h *harness) string {
	b.Helper()
	h.addUser("alice@example.com", alicePassword, []string{"staff"}, false)
	u, err := h.store.GetUserByEmail(context.Background(), "alice@example.com")
	if err != nil {
		b.Fatal(err)
	}
	rec := httptest.NewRecorder()
	r := httptest.NewRequest("GET", "https://127.0.0.1/", nil)
	if _, err := h.svc.startSession(context.Background(), rec, r, u, "password"); err != nil {
		b.Fatal(err)
	}
	for _, c := range rec.Result().Cookies() {
		if c.Name == session.Cookie {
			return c.Value
		}
	}
	b.Fatal("no session cookie")
	return ""
}

// BenchmarkIdentifyCachedSession is the session check every proxied
// request pays for a recently seen session: cookie, hash, cache, expiry.
// Target: under 20 µs, no store round trip.
func BenchmarkIdentifyCachedSession(b *testing.B) {
	h := newHarness(b, nil)
	cookie := benchSession(b, h)
	var seen request.User
	handler := h.svc.Identify(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = request.From(r).User }))
	r := httptest.NewRequest("GET", "https://127.0.0.1/app/", nil)
	r.Header.Set("Cookie", "_ga=GA1.2.3; "+session.Cookie+"="+cookie+"; other=1")
	info := &request.Info{ID: "bench", ClientIP: netip.MustParseAddr("127.0.0.1")}
	r = request.With(r, info)
	w := httptest.NewRecorder()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		info.User = request.User{}
		handler.ServeHTTP(w, r)
	}
	b.StopTimer()
	if seen.Email != "alice@example.com" {
		b.Fatalf("not identified: %+v", seen)
	}
}

// BenchmarkSignedInProxiedRequest is the whole of auth's share of a
// proxied request: Identify, Require (allow list) and SetIdentity with its
// cached assertion.
func BenchmarkSignedInProxiedRequest(b *testing.B) {
	h := newHarness(b, nil)
	cookie := benchSession(b, h)
	route := h.routes["/app/"]
	out := httptest.NewRequest("GET", "http://backend/app/", nil)
	handler := h.svc.Identify(h.svc.Require(route, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.svc.SetIdentity(out, r)
	})))
	r := httptest.NewRequest("GET", "https://127.0.0.1/app/", nil)
	r.Header.Set("Cookie", session.Cookie+"="+cookie)
	info := &request.Info{ID: "bench", ClientIP: netip.MustParseAddr("127.0.0.1"), Route: route}
	r = request.With(r, info)
	w := httptest.NewRecorder()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		info.User = request.User{}
		handler.ServeHTTP(w, r)
	}
	b.StopTimer()
	if out.Header.Get(assertion.HeaderAssertion) == "" {
		b.Fatal("no assertion set")
	}
}

// BenchmarkLoginThroughput signs in over and over through the login
// handler, in parallel, at the default argon2id parameters and the
// hashing limiter: logins/s is the figure of merit.
func BenchmarkLoginThroughput(b *testing.B) {
	h := newHarness(b, nil)
	h.addUser("alice@example.com", alicePassword, []string{"staff"}, false)
	handler := h.svc.Identify(h.svc.Handler())
	csrfCookie := strings.Repeat("c", session.IDLen)
	seed := httptest.NewRequest("GET", "https://127.0.0.1/_moat/login", nil)
	seed.Header.Set("Cookie", csrf.CookieName+"="+csrfCookie)
	form := url.Values{"csrf": {h.svc.p.CSRF.Token(httptest.NewRecorder(), seed)}, "email": {"alice@example.com"}, "password": {alicePassword}, "return_to": {"/app/"}}.Encode()
	start := time.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r := httptest.NewRequest("POST", "https://127.0.0.1/_moat/login", strings.NewReader(form))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			r.Header.Set("Cookie", csrf.CookieName+"="+csrfCookie)
			r = request.With(r, &request.Info{ID: "bench", ClientIP: netip.MustParseAddr("127.0.0.1")})
			w := httptest.NewRecorder()
			handler.ServeHTTP(w, r)
			if w.Code != http.StatusSeeOther {
				b.Errorf("login: %d", w.Code)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "logins/s")
}

// countingStore counts the session checks that reach the store.
type countingStore struct {
	store.Store
	sessions, users atomic.Int64
}

func (c *countingStore) GetSession(ctx context.Context, hash string) (*store.Session, error) {
	c.sessions.Add(1)
	return c.Store.GetSession(ctx, hash)
}

func (c *countingStore) GetUser(ctx context.Context, id string) (*store.User, error) {
	c.users.Add(1)
	return c.Store.GetUser(ctx, id)
}

func TestARecentlySeenSessionCostsNoStoreQuery(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.addUser("alice@example.com", alicePassword, []string{"staff"}, false)
	c := h.browser()
	wantRedirect(t, h.login(c, "alice@example.com", alicePassword, "/app/"), "/app/")
	counting := h.counted
	counting.sessions.Store(0)
	counting.users.Store(0)
	start := time.Now()
	for range 20 {
		if status, _ := h.identity(c, "/app/"); status != 200 {
			t.Fatalf("status %d", status)
		}
	}
	// Once per session.VerifyEvery (session + user) is the most allowed; on a
	// quick machine that is none at all.
	allowed := 2 * int64(time.Since(start)/session.VerifyEvery)
	if n := counting.sessions.Load() + counting.users.Load(); n > allowed {
		t.Errorf("%d store queries for 20 requests of a fresh session, want at most %d", n, allowed)
	}
	counting.sessions.Store(0)
	start = time.Now()
	// A made-up cookie costs one query, then none until session.VerifyEvery.
	bad := h.browser()
	u, _ := url.Parse(h.srv.URL)
	bad.Jar.SetCookies(u, []*http.Cookie{{Name: session.Cookie, Value: strings.Repeat("Z", session.IDLen), Path: "/"}})
	for range 10 {
		h.identity(bad, "/app/")
	}
	if n, allowed := counting.sessions.Load(), 1+int64(time.Since(start)/session.VerifyEvery); n > allowed {
		t.Errorf("%d store queries for 10 requests with an unknown cookie, want at most %d", n, allowed)
	}
}
