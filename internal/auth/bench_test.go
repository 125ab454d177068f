package auth_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/auth/authtest"
	"github.com/moat-dev/moat/internal/identity/assertion"
	"github.com/moat-dev/moat/internal/identity/session"
	"github.com/moat-dev/moat/internal/request"
)

// benchSession signs alice in and returns her cookie value.
func benchSession(b *testing.B, h *authtest.Harness) string {
	b.Helper()
	h.AddUser("alice@example.com", authtest.AlicePassword, []string{"staff"}, false)
	u, err := h.Store.GetUserByEmail(context.Background(), "alice@example.com")
	if err != nil {
		b.Fatal(err)
	}
	rec := httptest.NewRecorder()
	r := httptest.NewRequest("GET", "https://127.0.0.1/", nil)
	lt := session.Lifetimes{MaxAge: h.Cfg.Identity.Session.MaxAge.D(), Idle: h.Cfg.Identity.Session.IdleTimeout.D()}
	if _, err := h.Proc.Sessions.Start(context.Background(), rec, r, u, "password", lt); err != nil {
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
	h := authtest.New(b, nil)
	cookie := benchSession(b, h)
	var seen request.User
	handler := h.Svc.Identify(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = request.From(r).User }))
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
	h := authtest.New(b, nil)
	cookie := benchSession(b, h)
	route := h.Routes["/app/"]
	out := httptest.NewRequest("GET", "http://backend/app/", nil)
	handler := h.Svc.Identify(h.Svc.Require(route, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.Svc.SetIdentity(out, r)
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

func TestARecentlySeenSessionCostsNoStoreQuery(t *testing.T) {
	t.Parallel()
	h := authtest.New(t, nil)
	h.AddUser("alice@example.com", authtest.AlicePassword, []string{"staff"}, false)
	c := h.Browser()
	authtest.WantRedirect(t, h.Login(c, "alice@example.com", authtest.AlicePassword, "/app/"), "/app/")
	counting := h.Counted
	counting.Sessions.Store(0)
	counting.Users.Store(0)
	start := time.Now()
	for range 20 {
		if status, _ := h.Identity(c, "/app/"); status != 200 {
			t.Fatalf("status %d", status)
		}
	}
	// Once per session.VerifyEvery (session + user) is the most allowed; on a
	// quick machine that is none at all.
	allowed := 2 * int64(time.Since(start)/session.VerifyEvery)
	if n := counting.Sessions.Load() + counting.Users.Load(); n > allowed {
		t.Errorf("%d store queries for 20 requests of a fresh session, want at most %d", n, allowed)
	}
	counting.Sessions.Store(0)
	start = time.Now()
	// A made-up cookie costs one query, then none until session.VerifyEvery.
	bad := h.Browser()
	u, _ := url.Parse(h.Srv.URL)
	bad.Jar.SetCookies(u, []*http.Cookie{{Name: session.Cookie, Value: strings.Repeat("Z", session.IDLen), Path: "/"}})
	for range 10 {
		h.Identity(bad, "/app/")
	}
	if n, allowed := counting.Sessions.Load(), 1+int64(time.Since(start)/session.VerifyEvery); n > allowed {
		t.Errorf("%d store queries for 10 requests with an unknown cookie, want at most %d", n, allowed)
	}
}
