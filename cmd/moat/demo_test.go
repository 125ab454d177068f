package main

import (
	"slices"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/auth/password"
	"github.com/moat-dev/moat/internal/store"
)

// TestDemoAdminGoesThroughTheDirectory pins that moat demo's administrator
// is created, and on a later run reset, by the directory's operations: a
// one-time password that must be changed, the admin and demo groups, the
// console's audit events, every session ended by the reset.
func TestDemoAdminGoesThroughTheDirectory(t *testing.T) {
	e := newCLIEnv(t)
	start := time.Now().Add(-time.Second)
	first, err := demoAdmin(t.Context(), e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	st := e.store(t)
	check := func(pw string) *store.User {
		t.Helper()
		u, err := st.GetUserByEmail(t.Context(), demoAdminEmail)
		if err != nil {
			t.Fatal(err)
		}
		if ok, _, _ := password.Verify(pw, u.PasswordHash); !ok || !u.MustChangePassword || u.Disabled {
			t.Errorf("demo administrator %+v: the printed password must open it once, and be changed", u)
		}
		if !slices.Contains(u.Groups, "moat-admins") || !slices.Contains(u.Groups, demoGroup) {
			t.Errorf("groups %v, want the admin group and %q", u.Groups, demoGroup)
		}
		return u
	}
	u := check(first)
	if ev, _ := st.ListAudit(t.Context(), store.AuditFilter{Action: "user.create", Since: start}); len(ev) != 1 || ev[0].Actor != "cli" || ev[0].Subject != demoAdminEmail {
		t.Errorf("user.create events %+v, want one by cli", ev)
	}

	// A second run, after the administrator was disabled and moved out of
	// the admin group, with a live session.
	u.Disabled, u.Groups = true, []string{"other"}
	if err := st.UpdateUser(t.Context(), u); err != nil {
		t.Fatal(err)
	}
	addSession(t, st, demoAdminEmail, "live")
	second, err := demoAdmin(t.Context(), e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if second == first {
		t.Error("a second run printed the same one-time password")
	}
	check(second)
	if x, _ := st.GetSession(t.Context(), "live"); x.RevokedAt.IsZero() {
		t.Error("the reset left the administrator's session live")
	}
	for _, action := range []string{"user.enable", "user.groups", "user.reset_password"} {
		if ev, _ := st.ListAudit(t.Context(), store.AuditFilter{Action: action, Since: start}); len(ev) != 1 || ev[0].Actor != "cli" {
			t.Errorf("%s events %+v, want one by cli", action, ev)
		}
	}
}
