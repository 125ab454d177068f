package auth

import (
	"github.com/moat-dev/moat/internal/identity/session"
	"github.com/moat-dev/moat/internal/identity/throttle"
	"net/http"
	"testing"
	"time"
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

// Issue 11: a reload rebuilt auth.Service and so reset the password
// throttles; they belong to the process.
func TestReloadKeepsThePasswordThrottles(t *testing.T) {
	h := newHarness(t, nil)
	h.addUser("alice@example.com", alicePassword, []string{"staff"}, false)
	h.svc.p.Accounts = throttle.NewMemory(throttle.Limits{Free: 1, Base: time.Hour, Max: time.Hour, LockAfter: 100, LockFor: time.Hour})
	wantStatus(t, h.login(h.browser(), "alice@example.com", "wrong password!!", "/"), http.StatusUnauthorized)
	next := h.reload(t)
	if next.p.Accounts != h.svc.p.Accounts || next.p.Clients != h.svc.p.Clients || next.p.MFA != h.svc.p.MFA {
		t.Fatal("the new configuration's Service has its own throttles")
	}
	d, _, err := next.p.Accounts.Wait(t.Context(), "alice@example.com", time.Now())
	if err != nil || d <= 0 {
		t.Fatalf("after the reload alice may try again at once (wait %v, %v): the failures were forgotten", d, err)
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
