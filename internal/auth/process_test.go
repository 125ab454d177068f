package auth

import (
	"context"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/directory"
	"github.com/moat-dev/moat/internal/fanout"
	"github.com/moat-dev/moat/internal/identity/assertion"
	"github.com/moat-dev/moat/internal/identity/session"
	"github.com/moat-dev/moat/internal/identity/throttle"
)

// reload builds the Service of a new configuration on h's process, as the
// server does on SIGHUP, and serves h's routes from it.
func (h *harness) reload(t *testing.T) *Service {
	t.Helper()
	next := *h.cfg
	next.Identity.Passwords.MinLength++ // any change will do
	svc, err := New(&next, h.svc.p)
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// Issue 11, issue 9 item 3: a reload rebuilt auth.Service and so reset the
// password throttles; a restart reset them too. They belong to the process,
// and count in the store: a reload and a new process on the same database
// both find the budget spent.
func TestAReloadAndARestartKeepThePasswordThrottles(t *testing.T) {
	h := newHarness(t, nil)
	h.addUser("alice@example.com", alicePassword, []string{"staff"}, false)
	l := quickLimits()
	l.Account.Free = 100
	h.throttled(l)
	c := fromAddress(h.browser(), "198.51.100.7")
	for range l.Pair.N {
		wantStatus(t, h.login(c, "alice@example.com", "wrong password!!", "/"), http.StatusUnauthorized)
	}
	next := h.reload(t)
	if next.p.Throttle != h.svc.p.Throttle || next.p.MFA != h.svc.p.MFA || next.p.MFA.Throttle != h.svc.p.Throttle {
		t.Fatal("the new configuration's Service has throttles of its own")
	}
	at := throttle.Attempt{Factor: throttle.Password, Account: "alice@example.com", Source: throttle.Source{Client: netip.MustParseAddr("198.51.100.7")}}
	if v, err := next.p.Throttle.Begin(t.Context(), at); err != nil || v.Reason != throttle.ReasonAccountClient {
		t.Fatalf("after the reload: %+v, %v; want the spent budget refused", v, err)
	}
	restarted := newTestService(t, h.cfg, h.store)
	restarted.p.Throttle.Limits[throttle.Password] = l
	if v, err := restarted.p.Throttle.Begin(t.Context(), at); err != nil || v.Reason != throttle.ReasonAccountClient {
		t.Fatalf("after a restart: %+v, %v; want the spent budget refused", v, err)
	}
}

// Issue 11: a reload reset the set of OIDC states already redeemed, so a
// callback captured before it could be replayed after it.
func TestReloadKeepsTheUsedOIDCStates(t *testing.T) {
	h := newHarness(t, nil)
	until := time.Now().Add(time.Minute)
	if !h.svc.p.replay.useState("state-1", until, "/") {
		t.Fatal("a fresh state was refused")
	}
	if h.reload(t).p.replay.useState("state-1", until, "/") {
		t.Fatal("after a reload the redeemed state was accepted again")
	}
}

// Issue 11: a reload emptied the session cache (every signed-in request
// went to the store again) and the hashing limiter (a second set of
// slots while the old world drained).
func TestReloadKeepsTheSessionCacheAndTheHashingLimiter(t *testing.T) {
	h := newHarness(t, nil)
	h.addUser("alice@example.com", alicePassword, []string{"staff"}, false)
	c := h.browser()
	wantRedirect(t, h.login(c, "alice@example.com", alicePassword, "/app/"), "/app/")
	hash := session.HashID(h.sessionCookie(c))
	next := h.reload(t)
	if !next.p.Sessions.Cached(hash) {
		t.Error("after a reload the signed-in session is no longer cached")
	}
	if next.hasher.limiter != h.svc.hasher.limiter {
		t.Error("the new configuration hashes passwords under its own limiter")
	}
	if next.hasher.policy.MinLength == h.svc.hasher.policy.MinLength {
		t.Error("the new configuration's password policy was not applied")
	}
}

// Issue 9: every instance applies the changes another publishes on the
// bus, within moments and without waiting for a poll: a revoked session
// leaves its cache and closes its sockets (OnRevoke), a changed user's
// sockets are re-checked (OnChange), a rotated key is published.
func TestEveryInstanceAppliesTheChangesAnotherPublishes(t *testing.T) {
	h := newHarness(t, nil)
	alice := h.addUser("alice@example.com", alicePassword, []string{"staff"}, false)
	bus := fanout.NewLocal(nil) // one bus that two instances share
	t.Cleanup(func() { bus.Close() })
	one := h.svc.p
	two := newTestService(t, h.cfg, h.store).p
	one.Bus, two.Bus = bus, bus
	revoked, changed := make(chan string, 10), make(chan string, 10)
	two.OnRevoke = func(id string) { revoked <- id }
	two.OnChange = func(id string) { changed <- id }
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go two.Run(ctx)

	c := h.browser()
	wantRedirect(t, h.login(c, "alice@example.com", alicePassword, "/app/"), "/app/")
	hash := session.HashID(h.sessionCookie(c))
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

	if err := h.store.RevokeSession(ctx, hash, time.Now()); err != nil {
		t.Fatal(err)
	}
	one.Ended(directory.Ended{Sessions: []string{hash}}) // as the directory does once it committed
	await(revoked, hash, "a session revoked on instance one")
	if two.Sessions.Cached(hash) {
		t.Error("instance two still caches the revoked session")
	}

	kid, _, err := assertion.RotateKey(ctx, h.store, one.Key, time.Minute)
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
