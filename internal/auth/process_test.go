package auth_test

import (
	"context"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/auth/authtest"
	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/directory"
	"github.com/moat-dev/moat/internal/fanout"
	"github.com/moat-dev/moat/internal/identity/assertion"
	"github.com/moat-dev/moat/internal/identity/session"
)

// Issue 11, issue 9 item 3: a reload rebuilt auth.Service and so reset the
// password throttles; a restart reset them too. They belong to the process,
// and count in the store: a reload and a new process on the same database
// both find the budget spent.
func TestAReloadAndARestartKeepThePasswordThrottles(t *testing.T) {
	h := authtest.New(t, nil)
	h.AddUser("alice@example.com", authtest.AlicePassword, []string{"staff"}, false)
	l := authtest.QuickLimits()
	l.Account.Free = 100
	h.Throttled(l)
	c := authtest.FromAddress(h.Browser(), "198.51.100.7")
	for range l.Pair.N {
		authtest.WantStatus(t, h.Login(c, "alice@example.com", "wrong password!!", "/"), http.StatusUnauthorized)
	}
	h.Reload(func(cfg *config.Config) { cfg.Identity.Passwords.MinLength++ })
	if resp := h.Login(c, "alice@example.com", authtest.AlicePassword, "/"); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("after the reload: %d, want the spent budget refused (429)", resp.StatusCode)
	}
	h.Restart()
	h.Throttled(l)
	if resp := h.Login(c, "alice@example.com", authtest.AlicePassword, "/"); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("after a restart: %d, want the spent budget refused (429)", resp.StatusCode)
	}
	authtest.WantRedirect(t, h.Login(authtest.FromAddress(h.Browser(), "198.51.100.8"), "alice@example.com", authtest.AlicePassword, "/"), "/")
}

// Issue 11: a reload reset the set of OIDC states already redeemed, so a
// callback captured before it could be replayed after it.
func TestReloadKeepsTheUsedOIDCStates(t *testing.T) {
	h := authtest.NewSSO(t, nil)
	c := h.Browser()
	cb := h.Callback(c, "/sso/", "alice@example.com")
	// Someone who copied the callback and this browser's cookies.
	u, _ := url.Parse(h.Srv.URL)
	thief := h.Browser()
	thief.Jar.SetCookies(u, c.Jar.Cookies(u))
	authtest.WantRedirect(t, h.Nav(c, "GET", cb.RequestURI(), nil), "/sso/")
	h.Reload(nil)
	resp := h.Nav(thief, "GET", cb.RequestURI(), nil)
	authtest.WantStatus(t, resp, http.StatusBadRequest)
	if body := authtest.ReadBody(t, resp); !strings.Contains(body, "This sign-in has expired") {
		t.Errorf("the replay after a reload does not say why:\n%s", body)
	}
	// The signed-in browser's repeated callback is led where the redeemed
	// sign-in went: the reloaded configuration knows it was redeemed.
	authtest.WantRedirect(t, h.Nav(c, "GET", cb.RequestURI(), nil), "/sso/")
}

// A callback redeemed through one process is refused through another on
// the same store (another instance, or this one restarted): the states
// already used are the cluster's, not a process's. The provider is down
// for the replay, so only the replay check can answer it: were the state
// fresh to the second process, it would try to redeem the code and answer
// 503.
func TestAnotherProcessRefusesAUsedOIDCState(t *testing.T) {
	h := authtest.NewSSO(t, nil)
	c := h.Browser()
	cb := h.Callback(c, "/sso/", "alice@example.com")
	u, _ := url.Parse(h.Srv.URL)
	thief := h.Browser()
	thief.Jar.SetCookies(u, c.Jar.Cookies(u))
	authtest.WantRedirect(t, h.Nav(c, "GET", cb.RequestURI(), nil), "/sso/")
	h.Restart()
	h.OP.SetDown(true)
	resp := h.Nav(thief, "GET", cb.RequestURI(), nil)
	authtest.WantStatus(t, resp, http.StatusBadRequest)
	if body := authtest.ReadBody(t, resp); !strings.Contains(body, "This sign-in has expired") {
		t.Errorf("the replay on another process does not say why:\n%s", body)
	}
}

// Issue 11: a reload emptied the session cache (every signed-in request
// went to the store again) and the hashing limiter (a second set of
// slots while the old world drained). The new configuration's password
// policy applies at once.
func TestReloadKeepsTheSessionCacheAndTheHashingLimiter(t *testing.T) {
	h := authtest.New(t, nil)
	h.AddUser("alice@example.com", authtest.AlicePassword, []string{"staff"}, false)
	c := h.Browser()
	authtest.WantRedirect(t, h.Login(c, "alice@example.com", authtest.AlicePassword, "/app/"), "/app/")
	hash := session.HashID(h.SessionCookie(c))
	h.Reload(func(cfg *config.Config) { cfg.Identity.Passwords.MinLength = 20 })
	if !h.Proc.Sessions.Cached(hash) {
		t.Error("after a reload the signed-in session is no longer cached")
	}

	// Every slot of the process's limiter taken: the reloaded sign-in
	// answers "busy", it does not hash past the bound.
	release := make(chan struct{})
	var held sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		held.Go(func() { _ = h.Proc.Limiter.Do(context.Background(), func() { <-release }) })
	}
	for h.Proc.Limiter.InUse() < max(1, runtime.GOMAXPROCS(0)/2) {
		runtime.Gosched()
	}
	resp := h.Login(h.Browser(), "alice@example.com", authtest.AlicePassword, "/app/")
	close(release)
	held.Wait()
	authtest.WantStatus(t, resp, http.StatusServiceUnavailable)

	tok := h.CSRF(c, "/_moat/password")
	resp = h.Nav(c, "POST", "/_moat/password", url.Values{"csrf": {tok}, "current": {authtest.AlicePassword}, "new": {"sixteen chars ok"}, "confirm": {"sixteen chars ok"}})
	authtest.WantStatus(t, resp, http.StatusBadRequest)
	if body := authtest.ReadBody(t, resp); !strings.Contains(body, "use at least 20") {
		t.Errorf("the reloaded password policy was not applied:\n%s", body)
	}
}

// Issue 9: every instance applies the changes another publishes on the
// bus, within moments and without waiting for a poll: a revoked session
// leaves its cache and closes its sockets (OnRevoke), a changed user's
// sockets are re-checked (OnChange), a rotated key is published.
func TestEveryInstanceAppliesTheChangesAnotherPublishes(t *testing.T) {
	h := authtest.New(t, nil)
	alice := h.AddUser("alice@example.com", authtest.AlicePassword, []string{"staff"}, false)
	bus := fanout.NewLocal(nil) // one bus that two instances share
	t.Cleanup(func() { bus.Close() })
	one := h.Proc
	two := authtest.NewProcess(t, h.Cfg, h.Store)
	one.Bus, two.Bus = bus, bus
	revoked, changed := make(chan string, 10), make(chan string, 10)
	two.OnRevoke = func(id string) { revoked <- id }
	two.OnChange = func(id string) { changed <- id }
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go two.Run(ctx)

	c := h.Browser()
	authtest.WantRedirect(t, h.Login(c, "alice@example.com", authtest.AlicePassword, "/app/"), "/app/")
	hash := session.HashID(h.SessionCookie(c))
	lt := session.Lifetimes{MaxAge: time.Hour, Idle: time.Hour}
	if !two.Sessions.Alive(ctx, hash, time.Now(), lt) || !two.Sessions.Cached(hash) {
		t.Fatal("instance two does not know the session")
	}
	await := func(ch chan string, want, what string) {
		t.Helper()
		select {
		case got := <-ch:
			if got != want {
				t.Fatalf("%s: got %q, want %q", what, got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: nothing within 5 s", what)
		}
	}
	// Run subscribes in its own goroutine: publish until it listens.
	for i := 0; ; i++ {
		one.UserChanged(ctx, alice.ID)
		select {
		case got := <-changed:
			if got != alice.ID {
				t.Fatalf("OnChange(%q), want alice's id", got)
			}
		case <-time.After(20 * time.Millisecond):
			if i < 250 {
				continue
			}
			t.Fatal("instance two never applied a UserChanged")
		}
		break
	}

	if err := h.Store.RevokeSession(ctx, hash, time.Now()); err != nil {
		t.Fatal(err)
	}
	one.Ended(directory.Ended{Sessions: []string{hash}}) // as the directory does once it committed
	await(revoked, hash, "a session revoked on instance one")
	if two.Sessions.Cached(hash) {
		t.Error("instance two still caches the revoked session")
	}

	kid, _, err := assertion.RotateKey(ctx, h.Store, one.Key, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := bus.Publish(ctx, fanout.Event{Kind: fanout.KeysChanged}); err != nil { // as moat keys rotate does
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(string(two.Signer.JWKS()), kid) {
		if time.Now().After(deadline) {
			t.Fatal("instance two does not publish the rotated key")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
