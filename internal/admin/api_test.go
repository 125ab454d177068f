package admin

import (
	"context"
	"github.com/moat-dev/moat/internal/auth/pat"
	"github.com/moat-dev/moat/internal/directory"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/moat-dev/moat/internal/store"
)

type userAnswer struct {
	User       UserJSON `json:"user"`
	Credential issued   `json:"credential"`
}

// TestEveryAPIOperation runs each operation of the API with an admin's
// token, on SQLite and PostgreSQL.
func TestEveryAPIOperation(t *testing.T) {
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			h := newHarness(t, e.open)
			tok := h.token(h.admin)
			ctx := context.Background()

			// POST /users with a one-time password.
			var created userAnswer
			if code := h.api(tok, "POST", "users", map[string]any{"email": " Dave@Example.com ", "name": "Dave", "groups": []string{"staff", "analysts"}}, &created); code != http.StatusCreated {
				t.Fatalf("create: %d", code)
			}
			if created.User.Email != "dave@example.com" || !created.User.MustChangePassword || created.Credential.Password == "" || len(created.Credential.Password) < 20 {
				t.Fatalf("create answered %+v", created)
			}
			if !slices.Equal(created.User.Groups, []string{"analysts", "staff"}) {
				t.Fatalf("groups %v", created.User.Groups)
			}
			if !h.audited("user.create", adminEmail, "dave@example.com") {
				t.Fatal("create: no audit event by the admin")
			}
			// The one-time password signs in, and must be changed.
			c := h.browser()
			csrf := h.csrf(c, "/_moat/login")
			resp, _ := h.post(c, "/_moat/login", map[string][]string{"csrf": {csrf}, "email": {"dave@example.com"}, "password": {created.Credential.Password}, "return_to": {"/app/"}})
			if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/_moat/password") {
				t.Fatalf("sign-in with the one-time password: %d to %s", resp.StatusCode, resp.Header.Get("Location"))
			}
			id := created.User.ID

			// POST /users: duplicates, bad input and unknown fields are refused.
			for _, bad := range []map[string]any{
				{"email": "dave@example.com"},
				{"email": "not an email"},
				{"email": "x@example.com", "groups": []string{"bad group!"}},
				{"email": "x@example.com", "mode": "carrier-pigeon"},
				{"email": "x@example.com", "admin": true},
			} {
				if code := h.api(tok, "POST", "users", bad, nil); code != http.StatusConflict && code != http.StatusBadRequest {
					t.Fatalf("create %v: %d, want 400 or 409", bad, code)
				}
			}

			// POST /users with a set-password link.
			var linked userAnswer
			if code := h.api(tok, "POST", "users", map[string]any{"email": "erin@example.com", "mode": "link"}, &linked); code != http.StatusCreated {
				t.Fatalf("create with link: %d", code)
			}
			if !strings.Contains(linked.Credential.Link, directory.SetPasswordPath+"moat_setpw_") || linked.Credential.Password != "" {
				t.Fatalf("link credential %+v", linked.Credential)
			}
			link := linked.Credential.Link[strings.LastIndex(linked.Credential.Link, "/")+1:]
			if tk, err := h.st.GetTokenByHash(ctx, directory.SetPasswordLinkHash(link)); err != nil || tk.UserID != linked.User.ID {
				t.Fatalf("link token not stored for the user: %v", err)
			}
			// A link is no bearer token.
			if code := h.api(link, "GET", "users", nil, nil); code != http.StatusUnauthorized {
				t.Fatalf("set-password link as a bearer token: %d, want 401", code)
			}

			// GET /users (search, group filter, paging).
			var list struct {
				Users []UserJSON `json:"users"`
				Total int        `json:"total"`
			}
			if code := h.api(tok, "GET", "users?q=dave", nil, &list); code != 200 || list.Total != 1 || list.Users[0].ID != id {
				t.Fatalf("search: %d %+v", code, list)
			}
			if code := h.api(tok, "GET", "users?group=staff&limit=1", nil, &list); code != 200 || list.Total != 3 || len(list.Users) != 1 {
				t.Fatalf("group filter with limit 1: %d total %d, %d users", code, list.Total, len(list.Users))
			}

			// GET /users/{id}, and an unknown one.
			var one UserJSON
			if code := h.api(tok, "GET", "users/"+id, nil, &one); code != 200 || one.Email != "dave@example.com" {
				t.Fatalf("get: %d %+v", code, one)
			}
			if code := h.api(tok, "GET", "users/nope", nil, nil); code != http.StatusNotFound {
				t.Fatalf("get unknown: %d", code)
			}

			// PATCH /users/{id}.
			if code := h.api(tok, "PATCH", "users/"+id, map[string]any{"name": "David", "groups": []string{"staff"}}, &one); code != 200 || one.Name != "David" || !slices.Equal(one.Groups, []string{"staff"}) {
				t.Fatalf("patch: %d %+v", code, one)
			}
			if !h.audited("user.groups", adminEmail, "dave@example.com") {
				t.Fatal("patch: no user.groups audit event")
			}

			// GET /sessions and DELETE /sessions/{id}.
			var sessions struct {
				Sessions []SessionJSON `json:"sessions"`
			}
			if code := h.api(tok, "GET", "sessions?user_id="+id, nil, &sessions); code != 200 || len(sessions.Sessions) != 1 {
				t.Fatalf("sessions: %d %+v", code, sessions)
			}
			if code := h.api(tok, "DELETE", "sessions/"+sessions.Sessions[0].ID, nil, nil); code != http.StatusNoContent {
				t.Fatalf("revoke session: %d", code)
			}
			if h.sessionsOf(&store.User{ID: id}) != 0 || !h.audited("session.revoke", adminEmail, "dave@example.com") {
				t.Fatal("revoke session: still live, or not audited")
			}
			if code := h.api(tok, "DELETE", "sessions/"+strings.Repeat("0", 64), nil, nil); code != http.StatusNotFound {
				t.Fatalf("revoke unknown session: %d", code)
			}

			// POST /users/{id}/revoke-sessions.
			h.login(userEmail, userPassword)
			var n struct {
				Revoked int `json:"sessions_revoked"`
			}
			if code := h.api(tok, "POST", "users/"+h.user.ID+"/revoke-sessions", nil, &n); code != 200 || n.Revoked != 1 || h.sessionsOf(h.user) != 0 {
				t.Fatalf("revoke-sessions: %d %+v", code, n)
			}

			// POST /users/{id}/disable ends the sessions; enable.
			h.login(userEmail, userPassword)
			h.revoked = nil
			var dis struct {
				User    UserJSON `json:"user"`
				Revoked int      `json:"sessions_revoked"`
			}
			if code := h.api(tok, "POST", "users/"+h.user.ID+"/disable", nil, &dis); code != 200 || !dis.User.Disabled || dis.Revoked != 1 {
				t.Fatalf("disable: %d %+v", code, dis)
			}
			if h.sessionsOf(h.user) != 0 || !slices.Contains(h.revoked, h.user.ID) {
				t.Fatal("disable left a session live or did not call Revoke")
			}
			if code := h.api(tok, "POST", "users/"+h.user.ID+"/enable", nil, &dis); code != 200 || dis.User.Disabled {
				t.Fatalf("enable: %d %+v", code, dis)
			}
			if !h.audited("user.disable", adminEmail, userEmail) || !h.audited("user.enable", adminEmail, userEmail) {
				t.Fatal("disable/enable not audited")
			}
			// An admin cannot disable or delete themselves, or leave the admin group.
			if code := h.api(tok, "POST", "users/"+h.admin.ID+"/disable", nil, nil); code != http.StatusConflict {
				t.Fatalf("disable self: %d, want 409", code)
			}
			if code := h.api(tok, "DELETE", "users/"+h.admin.ID, nil, nil); code != http.StatusConflict {
				t.Fatalf("delete self: %d, want 409", code)
			}
			if code := h.api(tok, "PATCH", "users/"+h.admin.ID, map[string]any{"groups": []string{"staff"}}, nil); code != http.StatusConflict {
				t.Fatalf("leave the admin group: %d, want 409", code)
			}

			// POST /users/{id}/reset-password ends the sessions; the old password stops working.
			h.login(userEmail, userPassword)
			var reset userAnswer
			if code := h.api(tok, "POST", "users/"+h.user.ID+"/reset-password", map[string]any{"mode": "password"}, &reset); code != 200 || reset.Credential.Password == "" || !reset.User.MustChangePassword {
				t.Fatalf("reset-password: %d %+v", code, reset)
			}
			if h.sessionsOf(h.user) != 0 || !h.audited("user.reset_password", adminEmail, userEmail) {
				t.Fatal("reset-password left a session or was not audited")
			}
			if code := h.api(tok, "POST", "users/"+h.user.ID+"/reset-password", map[string]any{"mode": "link"}, &reset); code != 200 || reset.Credential.Link == "" {
				t.Fatalf("reset-password with link: %d %+v", code, reset)
			}

			// POST /users/{id}/reset-mfa.
			if _, err := h.console.o.MFA.Begin(ctx, h.user.ID, userEmail); err != nil {
				t.Fatal(err)
			}
			if code := h.api(tok, "POST", "users/"+h.user.ID+"/reset-mfa", nil, &one); code != 200 || one.MFAEnrolled {
				t.Fatalf("reset-mfa: %d %+v", code, one)
			}
			if _, err := h.st.GetTOTP(ctx, h.user.ID); err == nil {
				t.Fatal("reset-mfa left the TOTP")
			}
			if !h.audited("mfa.remove", adminEmail, userEmail) {
				t.Fatal("reset-mfa not audited")
			}

			// GET /users/{id}/tokens and DELETE /users/{id}/tokens/{token}.
			userTok := h.token(h.user)
			var toks struct {
				Tokens []TokenJSON `json:"tokens"`
			}
			if code := h.api(tok, "GET", "users/"+h.user.ID+"/tokens", nil, &toks); code != 200 || len(toks.Tokens) != 1 || toks.Tokens[0].Revoked {
				t.Fatalf("list tokens: %d %+v", code, toks)
			}
			if code := h.api(tok, "DELETE", "users/"+h.admin.ID+"/tokens/"+toks.Tokens[0].ID, nil, nil); code != http.StatusNotFound {
				t.Fatalf("revoke a token through another user: %d, want 404", code)
			}
			if code := h.api(tok, "DELETE", "users/"+h.user.ID+"/tokens/"+toks.Tokens[0].ID, nil, nil); code != http.StatusNoContent {
				t.Fatalf("revoke token: %d", code)
			}
			if tk, _ := h.st.GetTokenByHash(ctx, pat.Hash(userTok)); tk == nil || tk.RevokedAt.IsZero() || !h.audited("token.revoke", adminEmail, userEmail) {
				t.Fatal("token not revoked or not audited")
			}

			// GET /groups.
			var groups struct {
				Groups []groupInfo `json:"groups"`
			}
			if code := h.api(tok, "GET", "groups", nil, &groups); code != 200 {
				t.Fatalf("groups: %d", code)
			}
			var staff *groupInfo
			for i := range groups.Groups {
				if groups.Groups[i].Name == "staff" {
					staff = &groups.Groups[i]
				}
			}
			if staff == nil || !slices.Contains(staff.Members, userEmail) || !slices.Equal(staff.Routes, []string{"127.0.0.1/app/"}) {
				t.Fatalf("group staff: %+v", staff)
			}

			// DELETE /users/{id}.
			if code := h.api(tok, "DELETE", "users/"+id, nil, nil); code != http.StatusNoContent {
				t.Fatalf("delete: %d", code)
			}
			if _, err := h.st.GetUser(ctx, id); err == nil {
				t.Fatal("delete left the user")
			}
			if code := h.api(tok, "DELETE", "users/"+id, nil, nil); code != http.StatusNotFound {
				t.Fatalf("delete again: %d, want 404", code)
			}

			// GET /audit with filters.
			var audit struct {
				Events []AuditJSON `json:"events"`
			}
			if code := h.api(tok, "GET", "audit?action=user.delete&user=dave@example.com", nil, &audit); code != 200 || len(audit.Events) != 1 || audit.Events[0].Actor != adminEmail {
				t.Fatalf("audit by action and user: %d %+v", code, audit)
			}
			if code := h.api(tok, "GET", "audit?actor="+adminEmail+"&limit=3", nil, &audit); code != 200 || len(audit.Events) != 3 {
				t.Fatalf("audit by actor, limit 3: %d, %d events", code, len(audit.Events))
			}
			future := time.Now().Add(48 * time.Hour).UTC().Format("2006-01-02")
			if code := h.api(tok, "GET", "audit?since="+future, nil, &audit); code != 200 || len(audit.Events) != 0 {
				t.Fatalf("audit since the future: %d, %d events", code, len(audit.Events))
			}
			if code := h.api(tok, "GET", "audit?since=yesterday", nil, nil); code != http.StatusBadRequest {
				t.Fatalf("audit with a bad time: %d", code)
			}
		})
	}
}

func TestRevokedAndExpiredTokensAreRefused(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	tok := h.token(h.admin)
	tk, _ := h.st.GetTokenByHash(ctx, pat.Hash(tok))
	if err := h.st.RevokeToken(ctx, tk.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	if code := h.api(tok, "GET", "users", nil, nil); code != http.StatusUnauthorized {
		t.Fatalf("revoked token: %d", code)
	}
	exp, _ := pat.New()
	if err := h.st.CreateToken(ctx, &store.Token{Hash: pat.Hash(exp), UserID: h.admin.ID, Name: "old", ExpiresAt: time.Now().Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if code := h.api(exp, "GET", "users", nil, nil); code != http.StatusUnauthorized {
		t.Fatalf("expired token: %d", code)
	}
}

// TestTheOpenAPIFileMatchesTheRoutesTheAPIServes compares openapi.yaml's
// paths and methods with the API's route table, and checks the mux serves
// exactly those: every documented operation is routed, nothing else is.
func TestTheOpenAPIFileMatchesTheRoutesTheAPIServes(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]any `yaml:"paths"`
	}
	raw, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	var documented []string
	for path, ops := range doc.Paths {
		for m := range ops {
			if m == "parameters" {
				continue
			}
			documented = append(documented, strings.ToUpper(m)+" "+path)
		}
	}
	h := newHarness(t, nil)
	var served []string
	for _, rt := range (&api{c: h.console}).apiRoutes() {
		served = append(served, rt.Method+" "+strings.TrimSuffix(APIPrefix, "/")+rt.Path)
	}
	sort.Strings(documented)
	sort.Strings(served)
	if !slices.Equal(documented, served) {
		t.Fatalf("openapi.yaml documents\n  %s\nthe API serves\n  %s", strings.Join(documented, "\n  "), strings.Join(served, "\n  "))
	}
	// Ask the mux itself: each documented operation reaches a handler (not
	// the 404 or 405 of an unrouted call), and other methods get 405.
	tok := h.token(h.admin)
	for _, op := range documented {
		method, path, _ := strings.Cut(op, " ")
		path = strings.ReplaceAll(path, "{id}", "x")
		resp, body := h.do(h.srv.Client(), method, path, nil, false, map[string]string{"Authorization": "Bearer " + tok})
		if resp.StatusCode == http.StatusMethodNotAllowed || resp.StatusCode == http.StatusNotFound && strings.Contains(body, "no such API path") {
			t.Errorf("%s: the mux does not serve it (%d)", op, resp.StatusCode)
		}
		if method != "PUT" {
			if resp, _ := h.do(h.srv.Client(), "PUT", path, nil, false, map[string]string{"Authorization": "Bearer " + tok}); resp.StatusCode != http.StatusMethodNotAllowed {
				t.Errorf("PUT %s: %d, want 405 (undocumented)", path, resp.StatusCode)
			}
		}
	}
}
