package auth_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/auth/authtest"
	"github.com/moat-dev/moat/internal/identity/session"
	"github.com/moat-dev/moat/internal/request"
)

// signedInRequest signs alice in on h and returns a request carrying her
// session cookie, with the session dropped from the cache.
func signedInRequest(t *testing.T, h *authtest.Harness) *http.Request {
	t.Helper()
	h.AddUser("alice@example.com", authtest.AlicePassword, []string{"staff"}, false)
	c := h.Browser()
	authtest.WantRedirect(t, h.Login(c, "alice@example.com", authtest.AlicePassword, "/app/"), "/app/")
	id := h.SessionCookie(c)
	h.Proc.ReloadSession(session.HashID(id))
	r := httptest.NewRequest("GET", "https://127.0.0.1/app/", nil)
	r.AddCookie(&http.Cookie{Name: session.Cookie, Value: id})
	return request.With(r, &request.Info{ID: "test", Start: time.Now(), Route: h.Routes["/app/"]})
}

// Issue 11: Require fetched the session again instead of taking the one
// Identify found; the request carries it now.
func TestRequireUsesTheSessionIdentifyFound(t *testing.T) {
	h := authtest.New(t, nil)
	r := signedInRequest(t, h)
	counter := h.Counted
	passed := false
	h.Svc.Identify(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.Proc.ReloadSession(request.From(r).Session.IDHash) // the cache changes between the two stages
		before := counter.Sessions.Load()
		h.Svc.Require(h.Routes["/app/"], http.HandlerFunc(func(http.ResponseWriter, *http.Request) { passed = true })).ServeHTTP(w, r)
		if n := counter.Sessions.Load() - before; n != 0 {
			t.Errorf("Require read the session from the store %d time(s), want none", n)
		}
	})).ServeHTTP(httptest.NewRecorder(), r)
	if !passed {
		t.Fatal("alice did not pass Require")
	}
}

// Issue 11: /_moat/ pages ran Identify twice (the server's and Handler's
// own); a request is identified once.
func TestAPageBehindTwoIdentifyStagesIsIdentifiedOnce(t *testing.T) {
	h := authtest.New(t, nil)
	r := signedInRequest(t, h)
	counter := h.Counted
	counter.Sessions.Store(0)
	h.Svc.Identify(h.Svc.Identify(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))).ServeHTTP(httptest.NewRecorder(), r)
	if n := counter.Sessions.Load(); n != 1 {
		t.Fatalf("the session was read %d times, want once", n)
	}
}
