package admin

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/moat-dev/moat/internal/store"
	"github.com/moat-dev/moat/internal/web"
)

// pageRoutes is the console. Every change is a POST with the form's CSRF
// token, answered with a redirect (or a page shown once, for a new
// credential); every page works without JavaScript.
func (c *Console) pageRoutes() []route {
	return []route{
		{"GET", "/{$}", func(w http.ResponseWriter, r *http.Request) error {
			http.Redirect(w, r, Prefix+"users", http.StatusSeeOther)
			return nil
		}},
		{"GET", "/users", c.pageUsers},
		{"GET", "/users/new", c.pageNewUser},
		{"POST", "/users", c.postCreateUser},
		{"GET", "/users/{id}", c.pageUser},
		{"POST", "/users/{id}/update", c.postUpdateUser},
		{"POST", "/users/{id}/disable", c.postDisable(true)},
		{"POST", "/users/{id}/enable", c.postDisable(false)},
		{"POST", "/users/{id}/reset-password", c.postResetPassword},
		{"POST", "/users/{id}/revoke-sessions", c.postRevokeUserSessions},
		{"POST", "/users/{id}/reset-mfa", c.postResetMFA},
		{"POST", "/users/{id}/reset-passkeys", c.postResetPasskeys},
		{"POST", "/users/{id}/unlock", c.postUnlock},
		{"GET", "/users/{id}/delete", c.pageDelete},
		{"POST", "/users/{id}/delete", c.postDelete},
		{"GET", "/groups", c.pageGroups},
		{"GET", "/sessions", c.pageSessions},
		{"POST", "/sessions/{id}/revoke", c.postRevokeSession},
		{"POST", "/users/{id}/tokens/{token}/revoke", c.postRevokeToken},
		{"GET", "/audit", c.pageAudit},
		{"GET", "/usage", c.pageUsage},
	}
}

// page is what every console template gets as .Data.
type page struct {
	Section string
	Admin   string
	CSRF    string
	Done    string
	Error   string

	// users
	Query      string
	Users      []userRow
	Total      int
	PageNo     int
	Pages      int
	PrevURL    string
	NextURL    string
	User       *userRow
	Sessions   []sessionRow
	Tokens     []TokenJSON
	Passkeys   []PasskeyJSON
	Groups     []groupInfo
	AdminGroup string
	// a credential shown once
	Issued  *issued
	Subject string
	// new-user form
	Form userInput
	// audit
	Events []AuditJSON
	Filter auditForm
	// usage (usage.go)
	Usage *usageView
}

type userRow struct {
	UserJSON
	GroupList string
	Status    string
	Created   string
	LastLogin string
	Self      bool
	// LockedMinutes is how many more minutes sign-in from unknown devices
	// stays locked (the user's page only); 0 when it is not.
	LockedMinutes int
}

type sessionRow struct {
	SessionJSON
	Created  string
	Seen     string
	AuthAge  string
	Current  bool
	Platform string
}

type auditForm struct {
	User, Actor, Action, Since, Until string
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

// status names the user's state as a message key.
func status(u UserJSON) string {
	switch {
	case u.Disabled:
		return "admin.status.disabled"
	case u.MustChangePassword:
		return "admin.status.must_change"
	case !u.HasPassword:
		return "admin.status.sso"
	}
	return "admin.status.active"
}

func (c *Console) row(r *http.Request, u *store.User) userRow {
	j := c.userJSON(r.Context(), u)
	a := adminOf(r)
	return userRow{UserJSON: j, GroupList: strings.Join(j.Groups, ", "), Status: status(j),
		Created: fmtTime(u.CreatedAt), LastLogin: fmtTime(u.LastLoginAt), Self: a != nil && a.user.ID == u.ID}
}

// render shows a console page.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name, titleKey string, p page) {
	if a := adminOf(r); a != nil {
		p.Admin = a.user.Email
	}
	p.CSRF = c.csrf.Token(w, r)
	p.AdminGroup = c.group
	if d := r.URL.Query().Get("done"); p.Done == "" && slices.Contains(doneKeys, d) {
		p.Done = web.T(web.Lang(r), "admin.done."+d)
	}
	web.Render(w, r, status, name, web.T(web.Lang(r), titleKey), p)
}

// doneKeys are the confirmations a redirect after a change may ask for.
var doneKeys = []string{"updated", "disabled", "enabled", "revoked", "mfa_reset", "passkeys_reset", "unlocked", "deleted", "session_revoked", "token_revoked"}

// form reads a POST form of the console (csrf.Guard.ReadForm).
func (c *Console) form(w http.ResponseWriter, r *http.Request) error {
	return c.csrf.ReadForm(w, r)
}

func userURL(id, done string) string {
	u := Prefix + "users/" + url.PathEscape(id)
	if done != "" {
		u += "?done=" + done
	}
	return u
}

func (c *Console) pageUsers(w http.ResponseWriter, r *http.Request) error {
	q, group := queryParam(r, "q"), queryParam(r, "group")
	pg := max(1, intParam(r, "page", 1, 1<<20))
	users, total, err := c.st.ListUsers(r.Context(), store.UserFilter{Query: q, Group: group, Limit: pageSize, Offset: (pg - 1) * pageSize})
	if err != nil {
		return err
	}
	p := page{Section: "users", Query: q, Total: total, PageNo: pg, Pages: max(1, (total+pageSize-1)/pageSize)}
	for _, u := range users {
		p.Users = append(p.Users, c.row(r, u))
	}
	link := func(n int) string {
		v := url.Values{"page": {strconv.Itoa(n)}}
		if q != "" {
			v.Set("q", q)
		}
		if group != "" {
			v.Set("group", group)
		}
		return Prefix + "users?" + v.Encode()
	}
	if pg > 1 {
		p.PrevURL = link(pg - 1)
	}
	if pg < p.Pages {
		p.NextURL = link(pg + 1)
	}
	c.render(w, r, http.StatusOK, "admin-users.html", "admin.users.title", p)
	return nil
}

func (c *Console) pageNewUser(w http.ResponseWriter, r *http.Request) error {
	c.render(w, r, http.StatusOK, "admin-new-user.html", "admin.new_user.title", page{Section: "users", Form: userInput{Mode: ModePassword}})
	return nil
}

func (c *Console) postCreateUser(w http.ResponseWriter, r *http.Request) error {
	if err := c.form(w, r); err != nil {
		return err
	}
	in := userInput{Email: r.PostForm.Get("email"), Name: r.PostForm.Get("name"), Groups: []string{r.PostForm.Get("groups")}, Mode: r.PostForm.Get("mode")}
	u, out, err := c.createUser(r.Context(), r, in)
	if err != nil {
		var p *web.Problem
		if errors.As(err, &p) && p.Status < 500 {
			c.render(w, r, p.Status, "admin-new-user.html", "admin.new_user.title", page{Section: "users", Form: in, Error: p.Sentence})
			return nil
		}
		return err
	}
	c.render(w, r, http.StatusCreated, "admin-issued.html", "admin.issued.title", page{Section: "users", Issued: out, Subject: u.Email, User: ptr(c.row(r, u))})
	return nil
}

func ptr[T any](v T) *T { return &v }

func (c *Console) pageUser(w http.ResponseWriter, r *http.Request) error {
	u, err := c.user(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	list, err := c.st.ListSessions(r.Context(), u.ID)
	if err != nil {
		return err
	}
	p := page{Section: "users", User: ptr(c.row(r, u)), Sessions: c.sessionRows(r, list)}
	if left := c.signInLock(r, u); left > 0 {
		p.User.LockedMinutes = int((left + time.Minute - 1) / time.Minute)
	}
	if p.Tokens, err = c.userTokens(r.Context(), u.ID); err != nil {
		return err
	}
	for i := range p.Tokens {
		p.Tokens[i].CreatedAt, p.Tokens[i].ExpiresAt, p.Tokens[i].LastUsed = fmtRFC(p.Tokens[i].CreatedAt), fmtRFC(p.Tokens[i].ExpiresAt), fmtRFC(p.Tokens[i].LastUsed)
	}
	if p.Passkeys, err = c.userPasskeys(r.Context(), u.ID); err != nil {
		return err
	}
	for i := range p.Passkeys {
		p.Passkeys[i].CreatedAt, p.Passkeys[i].LastUsed = fmtRFC(p.Passkeys[i].CreatedAt), fmtRFC(p.Passkeys[i].LastUsed)
	}
	c.render(w, r, http.StatusOK, "admin-user.html", "admin.user.title", p)
	return nil
}

func (c *Console) sessionRows(r *http.Request, list []*store.Session) []sessionRow {
	now := c.o.Now()
	cur := ""
	if a := adminOf(r); a != nil {
		cur = a.session
	}
	out := make([]sessionRow, 0, len(list))
	for i, s := range list {
		if i >= maxPageSize {
			break
		}
		out = append(out, sessionRow{SessionJSON: sessionJSON(s), Created: fmtTime(s.CreatedAt), Seen: fmtTime(s.LastSeen),
			AuthAge: now.Sub(s.AuthTime).Round(time.Minute).String(), Current: s.IDHash == cur, Platform: web.Platform(s.UserAgent)})
	}
	return out
}

func (c *Console) postUpdateUser(w http.ResponseWriter, r *http.Request) error {
	if err := c.form(w, r); err != nil {
		return err
	}
	name := r.PostForm.Get("name")
	if _, err := c.updateUser(r.Context(), r, r.PathValue("id"), &name, []string{r.PostForm.Get("groups")}, true); err != nil {
		return err
	}
	http.Redirect(w, r, userURL(r.PathValue("id"), "updated"), http.StatusSeeOther)
	return nil
}

func (c *Console) postDisable(disabled bool) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		if err := c.form(w, r); err != nil {
			return err
		}
		if _, _, err := c.setDisabled(r.Context(), r, r.PathValue("id"), disabled); err != nil {
			return err
		}
		done := "enabled"
		if disabled {
			done = "disabled"
		}
		http.Redirect(w, r, userURL(r.PathValue("id"), done), http.StatusSeeOther)
		return nil
	}
}

func (c *Console) postResetPassword(w http.ResponseWriter, r *http.Request) error {
	if err := c.form(w, r); err != nil {
		return err
	}
	u, out, err := c.resetPassword(r.Context(), r, r.PathValue("id"), r.PostForm.Get("mode"))
	if err != nil {
		return err
	}
	c.render(w, r, http.StatusOK, "admin-issued.html", "admin.issued.title", page{Section: "users", Issued: out, Subject: u.Email, User: ptr(c.row(r, u))})
	return nil
}

func (c *Console) postRevokeUserSessions(w http.ResponseWriter, r *http.Request) error {
	if err := c.form(w, r); err != nil {
		return err
	}
	if _, _, err := c.revokeUserSessions(r.Context(), r, r.PathValue("id")); err != nil {
		return err
	}
	http.Redirect(w, r, userURL(r.PathValue("id"), "revoked"), http.StatusSeeOther)
	return nil
}

func (c *Console) postResetMFA(w http.ResponseWriter, r *http.Request) error {
	if err := c.form(w, r); err != nil {
		return err
	}
	if _, err := c.resetMFA(r.Context(), r, r.PathValue("id")); err != nil {
		return err
	}
	http.Redirect(w, r, userURL(r.PathValue("id"), "mfa_reset"), http.StatusSeeOther)
	return nil
}

func (c *Console) postUnlock(w http.ResponseWriter, r *http.Request) error {
	if err := c.form(w, r); err != nil {
		return err
	}
	if _, _, err := c.unlockSignIn(r.Context(), r, r.PathValue("id")); err != nil {
		return err
	}
	http.Redirect(w, r, userURL(r.PathValue("id"), "unlocked"), http.StatusSeeOther)
	return nil
}

func (c *Console) pageDelete(w http.ResponseWriter, r *http.Request) error {
	u, err := c.user(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	c.render(w, r, http.StatusOK, "admin-delete.html", "admin.delete.title", page{Section: "users", User: ptr(c.row(r, u))})
	return nil
}

// postDelete deletes only when the form confirms with the user's email
// typed again; otherwise it shows the confirmation step.
func (c *Console) postDelete(w http.ResponseWriter, r *http.Request) error {
	if err := c.form(w, r); err != nil {
		return err
	}
	u, err := c.user(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	if store.NormalizeEmail(r.PostForm.Get("confirm")) != u.Email {
		c.render(w, r, http.StatusBadRequest, "admin-delete.html", "admin.delete.title", page{Section: "users", User: ptr(c.row(r, u)), Error: web.T(web.Lang(r), "admin.delete.mismatch")})
		return nil
	}
	if _, err := c.deleteUser(r.Context(), r, u.ID); err != nil {
		return err
	}
	http.Redirect(w, r, Prefix+"users?done=deleted", http.StatusSeeOther)
	return nil
}

func (c *Console) pageGroups(w http.ResponseWriter, r *http.Request) error {
	gs, err := c.groups(r.Context())
	if err != nil {
		return err
	}
	c.render(w, r, http.StatusOK, "admin-groups.html", "admin.groups.title", page{Section: "groups", Groups: gs})
	return nil
}

func (c *Console) pageSessions(w http.ResponseWriter, r *http.Request) error {
	list, err := c.st.ListSessions(r.Context(), "")
	if err != nil {
		return err
	}
	c.render(w, r, http.StatusOK, "admin-sessions.html", "admin.sessions.title", page{Section: "sessions", Sessions: c.sessionRows(r, list), Total: len(list)})
	return nil
}

func (c *Console) postRevokeSession(w http.ResponseWriter, r *http.Request) error {
	if err := c.form(w, r); err != nil {
		return err
	}
	if err := c.revokeSession(r.Context(), r, r.PathValue("id")); err != nil {
		return err
	}
	back := Prefix + "sessions?done=session_revoked"
	if uid := r.PostForm.Get("user_id"); uid != "" && len(uid) <= 128 {
		back = userURL(uid, "session_revoked")
	}
	http.Redirect(w, r, back, http.StatusSeeOther)
	return nil
}

func (c *Console) pageAudit(w http.ResponseWriter, r *http.Request) error {
	p := page{Section: "audit", Filter: auditForm{User: queryParam(r, "user"), Actor: queryParam(r, "actor"), Action: queryParam(r, "action"), Since: queryParam(r, "since"), Until: queryParam(r, "until")}}
	f, err := auditFilter(r)
	if err != nil {
		var refusal *web.Problem
		if !errors.As(err, &refusal) {
			return err
		}
		p.Error = refusal.Sentence
		c.render(w, r, http.StatusBadRequest, "admin-audit.html", "admin.audit.title", p)
		return nil
	}
	events, err := c.st.ListAudit(r.Context(), f)
	if err != nil {
		return err
	}
	for _, e := range events {
		j := auditJSON(e)
		j.Time = fmtTime(e.Time)
		p.Events = append(p.Events, j)
	}
	q := r.URL.Query()
	if f.Offset > 0 {
		q.Set("offset", strconv.Itoa(max(0, f.Offset-f.Limit)))
		p.PrevURL = Prefix + "audit?" + q.Encode()
	}
	if len(events) == f.Limit {
		q.Set("offset", strconv.Itoa(f.Offset+f.Limit))
		p.NextURL = Prefix + "audit?" + q.Encode()
	}
	c.render(w, r, http.StatusOK, "admin-audit.html", "admin.audit.title", p)
	return nil
}

func fmtRFC(s string) string {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return "-"
	}
	return fmtTime(t)
}

func (c *Console) postRevokeToken(w http.ResponseWriter, r *http.Request) error {
	if err := c.form(w, r); err != nil {
		return err
	}
	if err := c.revokeUserToken(r.Context(), r, r.PathValue("id"), r.PathValue("token")); err != nil {
		return err
	}
	http.Redirect(w, r, userURL(r.PathValue("id"), "token_revoked"), http.StatusSeeOther)
	return nil
}
