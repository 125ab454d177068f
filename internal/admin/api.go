package admin

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/moat-dev/moat/internal/store"
)

// api is the console's JSON API: the same operations, for automation.
type api struct{ c *Console }

// apiRoutes is the JSON API; openapi.yaml documents exactly these (a test
// keeps them equal).
func (a *api) apiRoutes() []route {
	return []route{
		{"GET", "/users", a.apiListUsers},
		{"POST", "/users", a.apiCreateUser},
		{"GET", "/users/{id}", a.apiGetUser},
		{"PATCH", "/users/{id}", a.apiUpdateUser},
		{"DELETE", "/users/{id}", a.apiDeleteUser},
		{"POST", "/users/{id}/disable", a.apiDisable(true)},
		{"POST", "/users/{id}/enable", a.apiDisable(false)},
		{"POST", "/users/{id}/reset-password", a.apiResetPassword},
		{"POST", "/users/{id}/revoke-sessions", a.apiRevokeUserSessions},
		{"POST", "/users/{id}/reset-mfa", a.apiResetMFA},
		{"GET", "/users/{id}/passkeys", a.apiListPasskeys},
		{"POST", "/users/{id}/reset-passkeys", a.apiResetPasskeys},
		{"POST", "/users/{id}/unlock", a.apiUnlock},
		{"GET", "/users/{id}/tokens", a.apiListTokens},
		{"DELETE", "/users/{id}/tokens/{token}", a.apiRevokeToken},
		{"GET", "/groups", a.apiGroups},
		{"GET", "/sessions", a.apiSessions},
		{"DELETE", "/sessions/{id}", a.apiRevokeSession},
		{"GET", "/audit", a.apiAudit},
	}
}

// UserJSON is a user as the API shows it: never the password hash.
type UserJSON struct {
	ID                 string   `json:"id"`
	Email              string   `json:"email"`
	Name               string   `json:"name"`
	Groups             []string `json:"groups"`
	Disabled           bool     `json:"disabled"`
	MustChangePassword bool     `json:"must_change_password"`
	HasPassword        bool     `json:"has_password"`
	MFAEnrolled        bool     `json:"mfa_enrolled"`
	// Passkeys is how many passkeys the user has (every host's).
	Passkeys    int    `json:"passkeys"`
	CreatedAt   string `json:"created_at"`
	UpdatedAt   string `json:"updated_at"`
	LastLoginAt string `json:"last_login_at,omitempty"`
	// SignInLockedUntil is when the lock of a distributed attack on the
	// user's sign-in from unknown devices ends; only GET /users/{id}
	// fills it, and only while locked.
	SignInLockedUntil string `json:"signin_locked_until,omitempty"`
}

// SessionJSON is a session as the API shows it. ID is the session id's
// hash (what the store keeps), never the cookie value.
type SessionJSON struct {
	ID        string `json:"id"`
	UserID    string `json:"user_id"`
	Email     string `json:"email"`
	Provider  string `json:"provider"`
	MFA       bool   `json:"mfa"`
	ClientIP  string `json:"client_ip"`
	UserAgent string `json:"user_agent"`
	CreatedAt string `json:"created_at"`
	LastSeen  string `json:"last_seen"`
	ExpiresAt string `json:"expires_at"`
	AuthTime  string `json:"auth_time"`
}

// AuditJSON is an audit event as the API shows it.
type AuditJSON struct {
	ID       int64  `json:"id"`
	Time     string `json:"time"`
	Actor    string `json:"actor"`
	Action   string `json:"action"`
	Subject  string `json:"subject"`
	ClientIP string `json:"client_ip"`
	Detail   string `json:"detail"`
}

func timeString(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func (c *Console) userJSON(ctx context.Context, u *store.User) UserJSON {
	groups := u.Groups
	if groups == nil {
		groups = []string{}
	}
	enrolled, _ := c.o.MFA.Enrolled(ctx, u.ID)
	passkeys, _ := c.dir.Passkeys(ctx, u.ID)
	return UserJSON{ID: u.ID, Email: u.Email, Name: u.Name, Groups: groups, Disabled: u.Disabled,
		MustChangePassword: u.MustChangePassword, HasPassword: u.PasswordHash != "", MFAEnrolled: enrolled, Passkeys: len(passkeys),
		CreatedAt: timeString(u.CreatedAt), UpdatedAt: timeString(u.UpdatedAt), LastLoginAt: timeString(u.LastLoginAt)}
}

func sessionJSON(s *store.Session) SessionJSON {
	return SessionJSON{ID: s.IDHash, UserID: s.UserID, Email: s.Email, Provider: s.Provider, MFA: s.MFA,
		ClientIP: s.ClientIP, UserAgent: s.UserAgent, CreatedAt: timeString(s.CreatedAt), LastSeen: timeString(s.LastSeen),
		ExpiresAt: timeString(s.ExpiresAt), AuthTime: timeString(s.AuthTime)}
}

func auditJSON(e *store.AuditEvent) AuditJSON {
	return AuditJSON{ID: e.ID, Time: timeString(e.Time), Actor: e.Actor, Action: e.Action, Subject: e.Subject, ClientIP: e.ClientIP, Detail: e.Detail}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// apiChange checks that a change may be made: a token call needs nothing
// more, a session call needs the CSRF token in X-CSRF-Token from the same
// origin. It also reads the JSON body, if any, into v.
func (a *api) apiChange(w http.ResponseWriter, r *http.Request, v any) error {
	if ad := adminOf(r); ad == nil || !ad.token {
		if err := a.c.csrf.CheckHeader(r); err != nil {
			return err
		}
	}
	if v == nil {
		return nil
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		return refuse(http.StatusRequestEntityTooLarge, "body_too_large", "the body is larger than 64 KiB")
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return nil
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return refuse(http.StatusBadRequest, "bad_request", "invalid JSON body: %v", err)
	}
	return nil
}

// intParam reads a bounded non-negative integer query parameter.
func intParam(r *http.Request, name string, def, maxV int) int {
	v, err := strconv.Atoi(r.URL.Query().Get(name))
	if err != nil || v < 0 {
		return def
	}
	return min(v, maxV)
}

func queryParam(r *http.Request, name string) string {
	v := strings.TrimSpace(r.URL.Query().Get(name))
	if len(v) > maxQueryLen {
		v = v[:maxQueryLen]
	}
	return v
}

func (a *api) apiListUsers(w http.ResponseWriter, r *http.Request) error {
	limit := intParam(r, "limit", pageSize, maxPageSize)
	if limit == 0 {
		limit = pageSize
	}
	f := store.UserFilter{Query: queryParam(r, "q"), Group: queryParam(r, "group"), Limit: limit, Offset: intParam(r, "offset", 0, 1<<30)}
	users, total, err := a.c.st.ListUsers(r.Context(), f)
	if err != nil {
		return err
	}
	out := make([]UserJSON, 0, len(users))
	for _, u := range users {
		out = append(out, a.c.userJSON(r.Context(), u))
	}
	writeJSON(w, http.StatusOK, map[string]any{"users": out, "total": total, "limit": f.Limit, "offset": f.Offset})
	return nil
}

func (a *api) apiCreateUser(w http.ResponseWriter, r *http.Request) error {
	var in userInput
	if err := a.apiChange(w, r, &in); err != nil {
		return err
	}
	u, out, err := a.c.createUser(r.Context(), r, in)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, map[string]any{"user": a.c.userJSON(r.Context(), u), "credential": out})
	return nil
}

func (a *api) apiGetUser(w http.ResponseWriter, r *http.Request) error {
	u, err := a.c.user(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	j := a.c.userJSON(r.Context(), u)
	if left := a.c.signInLock(r, u); left > 0 {
		j.SignInLockedUntil = timeString(a.c.o.Now().Add(left).Truncate(time.Second))
	}
	writeJSON(w, http.StatusOK, j)
	return nil
}

// userPatch is what PATCH /users/{id} may change.
type userPatch struct {
	Name   *string   `json:"name"`
	Groups *[]string `json:"groups"`
}

func (a *api) apiUpdateUser(w http.ResponseWriter, r *http.Request) error {
	var in userPatch
	if err := a.apiChange(w, r, &in); err != nil {
		return err
	}
	var groups []string
	if in.Groups != nil {
		groups = *in.Groups
	}
	u, err := a.c.updateUser(r.Context(), r, r.PathValue("id"), in.Name, groups, in.Groups != nil)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, a.c.userJSON(r.Context(), u))
	return nil
}

func (a *api) apiDeleteUser(w http.ResponseWriter, r *http.Request) error {
	if err := a.apiChange(w, r, nil); err != nil {
		return err
	}
	if _, err := a.c.deleteUser(r.Context(), r, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *api) apiDisable(disabled bool) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		if err := a.apiChange(w, r, nil); err != nil {
			return err
		}
		u, n, err := a.c.setDisabled(r.Context(), r, r.PathValue("id"), disabled)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, map[string]any{"user": a.c.userJSON(r.Context(), u), "sessions_revoked": n})
		return nil
	}
}

func (a *api) apiResetPassword(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Mode string `json:"mode"`
	}
	if err := a.apiChange(w, r, &in); err != nil {
		return err
	}
	u, out, err := a.c.resetPassword(r.Context(), r, r.PathValue("id"), in.Mode)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"user": a.c.userJSON(r.Context(), u), "credential": out})
	return nil
}

func (a *api) apiRevokeUserSessions(w http.ResponseWriter, r *http.Request) error {
	if err := a.apiChange(w, r, nil); err != nil {
		return err
	}
	_, n, err := a.c.revokeUserSessions(r.Context(), r, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"sessions_revoked": n})
	return nil
}

func (a *api) apiResetMFA(w http.ResponseWriter, r *http.Request) error {
	if err := a.apiChange(w, r, nil); err != nil {
		return err
	}
	u, err := a.c.resetMFA(r.Context(), r, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, a.c.userJSON(r.Context(), u))
	return nil
}

func (a *api) apiUnlock(w http.ResponseWriter, r *http.Request) error {
	if err := a.apiChange(w, r, nil); err != nil {
		return err
	}
	u, left, err := a.c.unlockSignIn(r.Context(), r, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"user": a.c.userJSON(r.Context(), u), "was_locked": left > 0})
	return nil
}

func (a *api) apiGroups(w http.ResponseWriter, r *http.Request) error {
	gs, err := a.c.groups(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"groups": gs, "admin_group": a.c.group})
	return nil
}

func (a *api) apiSessions(w http.ResponseWriter, r *http.Request) error {
	userID := queryParam(r, "user_id")
	list, err := a.c.st.ListSessions(r.Context(), userID)
	if err != nil {
		return err
	}
	out := make([]SessionJSON, 0, len(list))
	for _, s := range list {
		out = append(out, sessionJSON(s))
	}
	writeJSON(w, http.StatusOK, map[string]any{"sessions": out})
	return nil
}

func (a *api) apiRevokeSession(w http.ResponseWriter, r *http.Request) error {
	if err := a.apiChange(w, r, nil); err != nil {
		return err
	}
	if err := a.c.revokeSession(r.Context(), r, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// auditFilter reads the audit filter from the query: user (subject),
// actor, action, since and until (RFC 3339, or a date, or a local
// datetime as an HTML input sends it, read as UTC), limit and offset.
func auditFilter(r *http.Request) (store.AuditFilter, error) {
	f := store.AuditFilter{Subject: store.NormalizeEmail(queryParam(r, "user")), Actor: queryParam(r, "actor"), Action: queryParam(r, "action"),
		Limit: intParam(r, "limit", 100, 1000), Offset: intParam(r, "offset", 0, 1<<30)}
	if f.Limit == 0 {
		f.Limit = 100
	}
	var err error
	if f.Since, err = parseTime(queryParam(r, "since"), false); err != nil {
		return f, err
	}
	if f.Until, err = parseTime(queryParam(r, "until"), true); err != nil {
		return f, err
	}
	return f, nil
}

func parseTime(v string, end bool) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04", "2006-01-02T15:04:05"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t, nil
		}
	}
	if t, err := time.Parse("2006-01-02", v); err == nil {
		if end {
			t = t.Add(24*time.Hour - time.Nanosecond)
		}
		return t, nil
	}
	return time.Time{}, refuse(http.StatusBadRequest, "admin.invalid_time", "invalid time %q: use RFC 3339 or YYYY-MM-DD", v)
}

func (a *api) apiAudit(w http.ResponseWriter, r *http.Request) error {
	f, err := auditFilter(r)
	if err != nil {
		return err
	}
	events, err := a.c.st.ListAudit(r.Context(), f)
	if err != nil {
		return err
	}
	out := make([]AuditJSON, 0, len(events))
	for _, e := range events {
		out = append(out, auditJSON(e))
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": out, "limit": f.Limit, "offset": f.Offset})
	return nil
}

// TokenJSON is a personal access token as the API shows it: never the
// token or its hash.
type TokenJSON struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	CreatedAt string `json:"created_at"`
	ExpiresAt string `json:"expires_at,omitempty"`
	LastUsed  string `json:"last_used,omitempty"`
	Revoked   bool   `json:"revoked"`
}

func (a *api) apiListTokens(w http.ResponseWriter, r *http.Request) error {
	list, err := a.c.userTokens(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"tokens": list})
	return nil
}

func (a *api) apiRevokeToken(w http.ResponseWriter, r *http.Request) error {
	if err := a.apiChange(w, r, nil); err != nil {
		return err
	}
	if err := a.c.revokeUserToken(r.Context(), r, r.PathValue("id"), r.PathValue("token")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
