package security

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/store/storetest"
	"github.com/moat-dev/moat/internal/testwait"
)

// A cookie moat cannot read is no cookie: the request is anonymous, so a
// protected page asks for sign-in and the app never sees it.
func TestMalformedCookiesFailClosed(t *testing.T) {
	t.Run("authentik CVE-2026-25748: a malformed session cookie is refused, not waved through", func(t *testing.T) {
		// GHSA-fj56-5763-j8pp: authentik's forward auth answered 200, with
		// no identity, to a request carrying a malformed session cookie.
		a := startApp(t)
		m := startMoat(t, "", fmt.Sprintf(bearerConfig, a.URL))
		m.addUser(t, staffEmail, staffPassword, "staff")
		c := m.client(t, client)
		signIn(t, c, "app.example.com", staffEmail, staffPassword)
		jar := cookies(c, "app.example.com")
		if len(jar) == 0 {
			t.Fatal("sign-in set no cookie")
		}
		if resp, _ := do(t, m.bare(t, client), http.MethodGet, "https://app.example.com/data", nil, "Cookie", cookieHeader(jar)); resp.StatusCode != 200 {
			t.Fatalf("control: the signed-in cookies replayed got %d", resp.StatusCode)
		}
		a.requests()

		mutations := map[string]func(string) string{
			"one byte more":   func(v string) string { return v + "A" },
			"one byte less":   func(v string) string { return v[:len(v)-1] },
			"half":            func(v string) string { return v[:len(v)/2] },
			"empty":           func(string) string { return "" },
			"not base64":      func(v string) string { return "%%%" + v + "!!" },
			"a JWT shape":     func(string) string { return "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9." },
			"4 KiB":           func(string) string { return strings.Repeat("A", 4096) },
			"quoted":          func(v string) string { return `"` + v },
			"another session": func(v string) string { return strings.Repeat("0", len(v)) },
		}
		for name, mutate := range mutations {
			parts := make([]string, len(jar))
			for i, ck := range jar {
				parts[i] = ck.Name + "=" + mutate(ck.Value)
			}
			resp, body := do(t, m.bare(t, client), http.MethodGet, "https://app.example.com/data", nil, "Cookie", strings.Join(parts, "; "))
			if !refused(resp) {
				t.Errorf("%s: moat answered %d, want sign-in:\n%.300s", name, resp.StatusCode, body)
			}
		}
		for _, header := range []string{
			jar[0].Name, // a name without a value
			jar[0].Name + "=" + strings.Repeat(";", 100),     // separators only
			strings.Repeat(jar[0].Name+"=x; ", 200),          // the same name 200 times
			jar[0].Name + "=\u00e9\u00e9\u00e9",              // not ASCII
			"; ; =; " + jar[0].Name + "=" + jar[0].Value[1:], // garbage around a damaged value
		} {
			resp, _ := do(t, m.bare(t, client), http.MethodGet, "https://app.example.com/data", nil, "Cookie", header)
			if !refused(resp) {
				t.Errorf("Cookie %.60q: moat answered %d, want sign-in", header, resp.StatusCode)
			}
		}
		for _, auth := range []string{"Bearer ", "Bearer garbage", "Bearer moat_pat_", "Bearer moat_pat_" + strings.Repeat("A", 5000), "Basic " + staffEmail, "Bearer\tx y"} {
			resp, _ := do(t, m.bare(t, client), http.MethodGet, "https://api.example.com/data", nil, "Authorization", auth)
			if !refused(resp) && resp.StatusCode != http.StatusBadRequest {
				t.Errorf("Authorization %.40q: moat answered %d, want 401", auth, resp.StatusCode)
			}
		}
		if s := a.requests(); len(s) != 0 {
			t.Errorf("the app was reached by %d requests with malformed credentials", len(s))
		}
	})
}

// Signing out ends the session on the server, for every instance: the
// cookie it leaves behind (in a shared browser, a proxy log) opens nothing.
func TestSignOutEndsTheSessionEverywhere(t *testing.T) {
	t.Parallel() // mostly waiting: for testssl, or for another instance to learn of a change
	t.Run("oauth2-proxy CVE-2026-34454: a cookie kept after sign-out opens nothing, on any instance", func(t *testing.T) {
		// GHSA-f24x-5g9q-753f: oauth2-proxy showed the sign-in page on
		// logout while the session cookie stayed valid.
		a := startApp(t)
		dsn := storetest.Postgres(t)
		key := "MOAT_SECRET_KEY=" + secretKey(t)
		cfg := fmt.Sprintf(frontConfig, a.URL) + fmt.Sprintf("store: %q\n", dsn)
		one := startMoat(t, "", cfg, key)
		two := startMoat(t, "", cfg, key)
		one.addUser(t, staffEmail, staffPassword, "staff")

		c := one.client(t, client)
		signIn(t, c, "app.example.com", staffEmail, staffPassword)
		kept := cookieHeader(cookies(c, "app.example.com"))
		replay := func(m *moat) *http.Response {
			resp, _ := do(t, m.bare(t, client), http.MethodGet, "https://app.example.com/data", nil, "Cookie", kept)
			return resp
		}
		if r1, r2 := replay(one), replay(two); r1.StatusCode != 200 || r2.StatusCode != 200 {
			t.Fatalf("control: the session works on instance one (%d) and two (%d); want 200 on both", r1.StatusCode, r2.StatusCode)
		}
		a.requests()

		signOut(t, c, "app.example.com")
		if resp := replay(one); !refused(resp) {
			t.Errorf("the kept cookie still opens the app on the instance that signed out (%d)", resp.StatusCode)
		}
		// Another instance learns of the sign-out through the fan-out
		// of the shared store; until it does it may still take the
		// cookie, for at most a second.
		took, ok := testwait.Until(revocationBound, func() bool { return refused(replay(two)) })
		if !ok {
			t.Errorf("the kept cookie still opens the app on the other instance after %s", took)
		}
		t.Logf("the other instance refused the kept cookie %s after the sign-out", took.Round(time.Millisecond))
		a.requests()
		// The login page must not take the kept cookie for a session.
		resp, _ := do(t, one.bare(t, client), http.MethodGet, "https://app.example.com/_moat/login?return_to=/data", nil, "Cookie", kept, "Accept", "text/html")
		if resp.StatusCode != 200 {
			t.Errorf("the login page with the kept cookie answered %d (Location %q), want the form", resp.StatusCode, resp.Header.Get("Location"))
		}
		for _, m := range []*moat{one, two} {
			if resp := replay(m); !refused(resp) {
				t.Errorf("the kept cookie opens the app again (%d)", resp.StatusCode)
			}
		}
		if s := a.requests(); len(s) != 0 {
			t.Errorf("the app got %d requests with the kept cookie", len(s))
		}
	})
}
