package security

import (
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strings"
	"testing"
)

// appView is the path an app that is lenient about paths resolves from a
// request target: percent decoded twice (once too often), backslashes as
// slashes, a NUL ending it, dot segments removed. moat's route must agree
// with it.
func appView(p string) string {
	for range 2 {
		if d, err := url.PathUnescape(p); err == nil {
			p = d
		}
	}
	p = strings.ReplaceAll(p, `\`, "/")
	if i := strings.IndexByte(p, 0); i >= 0 {
		p = p[:i]
	}
	return path.Clean("/" + p)
}

// A path is routed as the app will read it: dot segments, encoded dots and
// slashes, backslashes, NULs, double encoding and case cannot make moat pick
// one route while the app serves another route's page.
func TestPathNormalisationCannotReachAnotherRoute(t *testing.T) {
	a := startApp(t)
	m := startMoat(t, "", fmt.Sprintf(frontConfig, a.URL))
	c := m.bare(t, client)

	// reachesOnlyPublic sends target and checks that nothing reached the
	// app that the app would read outside /public/: moat refused it,
	// redirected it to its clean form, or passed a path that stays under
	// /public/ however the app reads it.
	reachesOnlyPublic := func(t *testing.T, target string) {
		t.Helper()
		resp, _ := rawGet(t, c, "app.example.com", target)
		for _, s := range a.requests() {
			if v := appView(s.RequestURI); !strings.HasPrefix(v, "/public/") {
				t.Errorf("%s: the public route passed %q to the app, which reads %q", target, s.RequestURI, v)
			}
		}
		if resp.StatusCode == http.StatusPermanentRedirect || resp.StatusCode == http.StatusMovedPermanently {
			if loc := resp.Header.Get("Location"); strings.Contains(loc, "..") || strings.Contains(loc, `\`) {
				t.Errorf("%s: redirected to %q, which is not clean", target, loc)
			}
		}
	}

	t.Run("Traefik CVE-2025-32431: dot segments do not leave the matched prefix", func(t *testing.T) {
		// GHSA-6p68-w45g-48j7: /public/../admin matched the public router
		// and reached another router's backend without its middlewares.
		for _, target := range []string{"/public/../admin/secret", "/public/./../admin/secret", "/public//../admin/secret", "/public/x/../../admin/secret"} {
			reachesOnlyPublic(t, target)
		}
	})

	t.Run("Traefik GHSA-vrch-868g-9jx5: encoded dot segments do not leave the matched prefix", func(t *testing.T) {
		// The fix of CVE-2025-32431 missed /public/%2e%2e/admin.
		for _, target := range []string{"/public/%2e%2e/admin/secret", "/public/%2E%2E/admin/secret", "/public/.%2e/admin/secret", "/public/..%2fadmin/secret", "/public%2f..%2fadmin/secret"} {
			reachesOnlyPublic(t, target)
		}
	})

	t.Run("Traefik GHSA-gm3x-23wp-hc2c: backslashes, NULs and double encoding do not smuggle a path", func(t *testing.T) {
		// Encoded restricted characters (\, NUL, …) let a path match one
		// router and reach another; a backslash is a separator on Windows
		// (Caddy GHSA-qrp7-cvwr-j2c6), a doubly encoded dot is a dot to
		// an app that decodes twice.
		for _, target := range []string{`/public/..\admin/secret`, "/public/..%5cadmin/secret", "/public/%5c..%5cadmin%5csecret",
			"/public/%00/../../admin/secret", "/public/%252e%252e/admin/secret", "/public/..%252fadmin/secret", "/public/%252e%252e%255cadmin"} {
			reachesOnlyPublic(t, target)
		}
	})

	t.Run("Caddy CVE-2026-27587: an escaped path matches the route its decoded form matches", func(t *testing.T) {
		// GHSA-g7pc-pc7g-h8jh: Caddy compared escaped paths without the
		// case folding it applied to plain ones, so two spellings of one
		// path met different routes.
		for _, tc := range []struct {
			target string
			want   int
		}{
			{"/admin/secret", http.StatusForbidden},
			{"/%61dmin/secret", http.StatusForbidden},
			{"/%61%64%6D%69%6E/secret", http.StatusForbidden},
			{"/public/x", http.StatusOK},
			{"/publi%63/x", http.StatusOK},
		} {
			resp, _ := rawGet(t, c, "app.example.com", tc.target)
			if resp.StatusCode != tc.want {
				t.Errorf("%s: %d, want %d as for its decoded form", tc.target, resp.StatusCode, tc.want)
			}
		}
		for _, s := range a.requests() {
			if strings.HasPrefix(appView(s.RequestURI), "/admin") {
				t.Errorf("the app got %q", s.RequestURI)
			}
		}
	})

	t.Run("Caddy CVE-2026-27588: the host's case does not change its route", func(t *testing.T) {
		// Caddy's host matcher turned case-sensitive past 100 hosts.
		for _, host := range []string{"app.example.com", "APP.EXAMPLE.COM", "App.Example.Com.", "app.example.com:443"} {
			resp, _ := do(t, c, http.MethodGet, "https://"+host+"/admin/secret", nil)
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("Host %s: /admin/ answered %d, want the route's 403", host, resp.StatusCode)
			}
		}
		if s := a.requests(); len(s) != 0 {
			t.Errorf("the app was reached: %+v", s)
		}
	})
}
