package auth_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/auth"
	"github.com/moat-dev/moat/internal/auth/authtest"
	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/store"
)

func TestSSORecheckEndsTheSessionWhenTheProviderRefuses(t *testing.T) {
	h := authtest.NewSSO(t, func(cfg *config.Config) {
		cfg.Identity.SSO["test"].RefreshInterval = config.Duration(time.Minute)
	})
	alice, bob := h.Browser(), h.Browser()
	h.SSOSignIn(alice, "/sso/", "alice@example.com")
	h.SSOSignIn(bob, "/sso/", "bob@example.com")
	ctx := context.Background()

	h.Svc.RecheckSessions(ctx, time.Now()) // not due yet
	if n := h.OP.Refreshes(); n != 0 {
		t.Fatalf("%d refreshes before the interval", n)
	}
	h.Svc.RecheckSessions(ctx, time.Now().Add(61*time.Second))
	if n := h.OP.Refreshes(); n != 2 {
		t.Fatalf("%d refreshes after the interval, want 2", n)
	}
	for _, c := range []*http.Client{alice, bob} {
		if status, _ := h.Identity(c, "/sso/"); status != 200 {
			t.Fatalf("after a good re-check: %d", status)
		}
	}

	h.OP.RevokeUser("alice@example.com")
	h.Svc.RecheckSessions(ctx, time.Now().Add(3*time.Minute))
	if status, _ := h.Identity(alice, "/sso/"); status != http.StatusUnauthorized {
		t.Errorf("alice, revoked at the provider: %d, want 401", status)
	}
	if status, _ := h.Identity(bob, "/sso/"); status != 200 {
		t.Errorf("bob: %d, want 200", status)
	}
	if n := len(h.Revoked()); n != 1 {
		t.Errorf("OnRevoke called %d times, want once (to close alice's WebSockets)", n)
	}

	h.OP.FailNextRefresh(1)
	h.Svc.RecheckSessions(ctx, time.Now().Add(5*time.Minute))
	if status, _ := h.Identity(bob, "/sso/"); status != http.StatusUnauthorized {
		t.Errorf("bob after a failed refresh: %d, want 401", status)
	}
	events, _ := h.Store.ListAudit(ctx, store.AuditFilter{Action: "session.revoke"})
	if len(events) != 2 {
		t.Errorf("%d session.revoke audit events, want 2", len(events))
	}
}

func TestSSORecheckToleratesABriefOutage(t *testing.T) {
	h := authtest.NewSSO(t, func(cfg *config.Config) {
		cfg.Identity.SSO["test"].RefreshInterval = config.Duration(time.Minute)
	})
	c := h.Browser()
	h.SSOSignIn(c, "/sso/", "alice@example.com")
	h.OP.SetDown(true)
	h.Svc.RecheckSessions(context.Background(), time.Now().Add(90*time.Second))
	if status, _ := h.Identity(c, "/sso/"); status != 200 {
		t.Fatalf("after one missed re-check: %d, want 200", status)
	}
	h.Svc.RecheckSessions(context.Background(), time.Now().Add(3*time.Minute))
	if status, _ := h.Identity(c, "/sso/"); status != http.StatusUnauthorized {
		t.Fatalf("after two intervals without the provider: %d, want 401", status)
	}
}

// TestOneInstanceRechecksSSOSessions: two processes on one store (two
// instances) each run the SSO re-check, but only the one holding the
// store's re-check lock asks the provider. Each refreshing the same
// session would spend one refresh token twice, and a provider that rotates
// them ends the session on reuse.
func TestOneInstanceRechecksSSOSessions(t *testing.T) {
	h := authtest.NewSSO(t, func(cfg *config.Config) {
		cfg.Identity.SSO["test"].RefreshInterval = config.Duration(time.Minute)
	})
	h.SSOSignIn(h.Browser(), "/sso/", "alice@example.com")
	other, err := auth.New(h.Cfg, authtest.NewProcess(t, h.Cfg, h.Counted))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	h.Svc.RecheckSessions(ctx, time.Now().Add(61*time.Second))
	other.RecheckSessions(ctx, time.Now().Add(61*time.Second))
	if n := h.OP.Refreshes(); n != 1 {
		t.Fatalf("%d refreshes of one session by two instances in one interval, want 1", n)
	}
	h.Svc.RecheckSessions(ctx, time.Now().Add(122*time.Second))
	if n := h.OP.Refreshes(); n != 2 {
		t.Errorf("%d refreshes after the next interval, want 2 (the lock's holder goes on)", n)
	}
}
