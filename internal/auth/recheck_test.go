package auth_test

import (
	"context"
	"net/http"
	"testing"
	"time"

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
