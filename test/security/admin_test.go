package security

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

const (
	adminEmail    = "ada@example.com"
	adminPassword = "an admin's long passphrase 7"
)

// The admin plane answers only its own pages: a page on another site
// cannot make a signed-in admin's browser change anything, even with the
// form's token, and cannot read the API's answers.
func TestCrossOriginAdminCallsAreRefused(t *testing.T) {
	t.Run("Caddy CVE-2026-27589: a cross-origin call to the admin plane changes nothing", func(t *testing.T) {
		// GHSA-879p-475x-rqh2: Caddy's admin API took a cross-origin
		// POST /load from a page in the admin's browser.
		a := startApp(t)
		m := startMoat(t, "", fmt.Sprintf(frontConfig, a.URL))
		m.addUser(t, adminEmail, adminPassword, "moat-admins", "staff")
		c := m.client(t, client)
		signIn(t, c, "app.example.com", adminEmail, adminPassword)
		const console = "https://app.example.com/_moat/admin/users/new"

		users := func() []string {
			resp, body := do(t, c, http.MethodGet, "https://app.example.com/_moat/admin/api/users", nil, "Accept", "application/json")
			if resp.StatusCode != 200 {
				t.Fatalf("listing users same-origin got %d:\n%.500s", resp.StatusCode, body)
			}
			var list struct {
				Users []struct{ Email string } `json:"users"`
			}
			if err := json.Unmarshal([]byte(body), &list); err != nil {
				t.Fatalf("users list: %v\n%.500s", err, body)
			}
			var emails []string
			for _, u := range list.Users {
				emails = append(emails, u.Email)
			}
			return emails
		}
		has := func(email string) bool {
			for _, e := range users() {
				if e == email {
					return true
				}
			}
			return false
		}

		// The form's own token, as if the attacker had it.
		_, page := do(t, c, http.MethodGet, console, nil, "Accept", "text/html", "Sec-Fetch-Mode", "navigate", "Sec-Fetch-Site", "same-origin")
		fields, _, ok := formFields(page, "/_moat/admin/users")
		if !ok {
			t.Fatalf("the console has no new-user form:\n%.2000s", page)
		}
		token := fields.Get("csrf")
		for i, origin := range []struct{ origin, site string }{
			{"https://evil.example", "cross-site"},
			{"null", "cross-site"},
			{"https://app.example.com.evil.example", "cross-site"},
			{"http://app.example.com", "same-site"},
			{"https://other.example.com", "same-site"},
		} {
			email := fmt.Sprintf("planted%d@evil.example", i)
			form := url.Values{}
			for k, v := range fields {
				form[k] = v
			}
			form.Set("email", email)
			form.Set("groups", "moat-admins")
			resp, _ := do(t, c, http.MethodPost, "https://app.example.com/_moat/admin/users", strings.NewReader(form.Encode()),
				"Content-Type", "application/x-www-form-urlencoded", "Origin", origin.origin, "Sec-Fetch-Site", origin.site, "Accept", "text/html")
			if resp.StatusCode/100 == 2 || resp.StatusCode == http.StatusSeeOther {
				t.Errorf("a form post from %s was accepted (%d)", origin.origin, resp.StatusCode)
			}
			body := fmt.Sprintf(`{"email":%q,"groups":["moat-admins"],"mode":"password"}`, email)
			resp, _ = do(t, c, http.MethodPost, "https://app.example.com/_moat/admin/api/users", strings.NewReader(body),
				"Content-Type", "application/json", "X-CSRF-Token", token, "Origin", origin.origin, "Sec-Fetch-Site", origin.site)
			if resp.StatusCode/100 == 2 {
				t.Errorf("an API call from %s was accepted (%d)", origin.origin, resp.StatusCode)
			}
			// A "simple" request: no preflight in a browser, no token.
			resp, _ = do(t, c, http.MethodPost, "https://app.example.com/_moat/admin/api/users", strings.NewReader(body),
				"Content-Type", "text/plain", "Origin", origin.origin, "Sec-Fetch-Site", origin.site)
			if resp.StatusCode/100 == 2 {
				t.Errorf("a text/plain API call from %s was accepted (%d)", origin.origin, resp.StatusCode)
			}
			if has(email) {
				t.Errorf("a call from %s created %s", origin.origin, email)
			}
		}
		resp, _ := do(t, c, http.MethodGet, "https://app.example.com/_moat/admin/api/users", nil, "Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site")
		if acao := resp.Header.Get("Access-Control-Allow-Origin"); acao != "" {
			t.Errorf("the API lets another origin read it: Access-Control-Allow-Origin %q", acao)
		}
		// Control: the console itself, same-origin, can create a user.
		resp, body := submit(t, c, console, "/_moat/admin/users", url.Values{"email": {"welcome@example.com"}, "groups": {"staff"}})
		if resp.StatusCode >= 400 || !has("welcome@example.com") {
			t.Errorf("control: the console's own form got %d and did not create the user:\n%.1000s", resp.StatusCode, body)
		}
	})
}
