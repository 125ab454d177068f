package security

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

const (
	staffEmail    = "sam@example.com"
	staffPassword = "a long staff passphrase 42"
)

// foldName reads a header name as CGI, WSGI and many frameworks do: case
// folded, and every character but letters and digits as '-'.
func foldName(name string) string {
	b := []byte(strings.ToLower(name))
	for i, c := range b {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			b[i] = '-'
		}
	}
	return string(b)
}

// trustedByApps reports whether an app could take a header (once folded)
// for identity or forwarding information moat vouches for.
func trustedByApps(name string) bool {
	f := foldName(name)
	for _, p := range []string{"x-moat-", "x-goog-", "x-forwarded-"} {
		if strings.HasPrefix(f, p) {
			return true
		}
	}
	switch f {
	case "forwarded", "x-real-ip", "x-client-ip", "true-client-ip", "x-request-id":
		return true
	}
	return false
}

// Identity and forwarding headers reach the app only as moat wrote them:
// not from the client, not in a look-alike spelling, and not dropped by a
// client's Connection header.
func TestIdentityHeadersCannotBeSmuggled(t *testing.T) {
	a := startApp(t)
	m := startMoat(t, "", fmt.Sprintf(frontConfig, a.URL))
	m.addUser(t, staffEmail, staffPassword, "staff")
	c := m.client(t, client)
	signIn(t, c, "app.example.com", staffEmail, staffPassword)
	a.requests()

	// moatSet is what moat itself sends a signed-in request: every header
	// the app may trust, with moat's values.
	resp, _ := do(t, c, http.MethodGet, "https://app.example.com/reference", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("signed-in request got %d", resp.StatusCode)
	}
	moatSet := http.Header{}
	for name, v := range a.last(t).Header {
		if trustedByApps(name) {
			moatSet[name] = v
		}
	}
	if moatSet.Get("X-Moat-User-Email") != staffEmail || moatSet.Get("X-Forwarded-For") != client {
		t.Fatalf("moat's own headers are not as expected: %v", moatSet)
	}
	// sameAsMoat checks that the app saw exactly moat's trusted headers
	// (the request id aside, which is new for every request).
	sameAsMoat := func(t *testing.T, got http.Header) {
		t.Helper()
		for name, v := range got {
			if !trustedByApps(name) {
				continue
			}
			want, ok := moatSet[name]
			switch {
			case !ok:
				t.Errorf("the app got %s: %q, which moat does not send", name, v)
			case name == "X-Request-Id" || name == "X-Moat-Assertion":
				if len(v) != 1 || strings.Contains(v[0], "forged") {
					t.Errorf("the app got %s %q", name, v)
				}
			case strings.Join(v, ",") != strings.Join(want, ","):
				t.Errorf("the app got %s %q, want moat's %q", name, v, want)
			}
		}
		for name := range moatSet {
			if len(got.Values(name)) == 0 {
				t.Errorf("the app did not get moat's %s", name)
			}
		}
	}

	t.Run("Caddy GHSA-7r4p-vjf4-gxv4: a signed-in user's own identity headers are replaced", func(t *testing.T) {
		// Caddy's forward_auth let a client-supplied identity header
		// through when the auth service did not set that header.
		do(t, c, http.MethodGet, "https://app.example.com/x", nil,
			"X-Moat-User-Email", "boss@example.com", "X-Moat-User-Groups", "moat-admins",
			"X-Moat-User-Id", "1", "X-Moat-Assertion", "forged", "X-Moat-User-Name", "Boss",
			"X-Goog-Authenticated-User-Email", "accounts.google.com:boss@example.com",
			"X-Goog-Iap-Jwt-Assertion", "forged")
		sameAsMoat(t, a.last(t).Header)
	})

	t.Run("oauth2-proxy CVE-2025-64484: underscore look-alikes never reach the app", func(t *testing.T) {
		// GHSA-vjrc-mh2v-45x6 (and Puma's CVE-2024-45614): apps that read
		// X_Forwarded_For as X-Forwarded-For took the client's value.
		do(t, c, http.MethodGet, "https://app.example.com/x", nil,
			"X_Forwarded_For", "127.0.0.2", "X-Forwarded_For", "127.0.0.2", "X_Real_Ip", "127.0.0.2",
			"X_Moat_User_Email", "boss@example.com", "x.moat.user.groups", "moat-admins",
			"X-MOAT-USER-EMAIL", "boss@example.com", "X_Goog_Authenticated_User_Email", "boss@example.com",
			"X_Request_Id", "forged", "X_Client_Ip", "127.0.0.2", "True-Client-Ip", "127.0.0.2")
		sameAsMoat(t, a.last(t).Header)
	})

	t.Run("Traefik CVE-2026-39858: forwarding aliases never reach the app", func(t *testing.T) {
		// GHSA-5m6w-wvh7-57vm: Traefik stripped X-Forwarded-Proto but
		// passed X_Forwarded_Proto to the auth service.
		do(t, c, http.MethodGet, "https://app.example.com/x", nil,
			"X_Forwarded_Proto", "http", "X_Forwarded_Host", "admin.example.com",
			"X_Forwarded_Prefix", "/admin", "X_Forwarded_Uri", "/admin", "X_Forwarded_Port", "1")
		sameAsMoat(t, a.last(t).Header)
	})

	t.Run("Traefik CVE-2024-45410: Connection cannot drop moat's headers", func(t *testing.T) {
		// GHSA-62c8-mh53-4cqv: naming X-Forwarded-* in Connection made
		// Traefik drop them after setting them.
		resp, _ := do(t, http1(c), http.MethodGet, "https://app.example.com/x", nil,
			"Connection", "keep-alive, X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host, X-Request-Id, "+
				"X-Moat-User-Email, X-Moat-User-Id, X-Moat-User-Groups, X-Moat-Assertion")
		if resp.ProtoMajor != 1 || resp.StatusCode != 200 {
			t.Fatalf("got %d over %s, want 200 over HTTP/1.1", resp.StatusCode, resp.Proto)
		}
		sameAsMoat(t, a.last(t).Header)
	})

	t.Run("anonymous requests carry no identity at all", func(t *testing.T) {
		do(t, m.bare(t, client), http.MethodGet, "https://app.example.com/public/x", nil,
			"X-Moat-User-Email", "boss@example.com", "X_Moat_User_Email", "boss@example.com")
		for name, v := range a.last(t).Header {
			if strings.HasPrefix(foldName(name), "x-moat-") {
				t.Errorf("an anonymous request reached the app with %s: %q", name, v)
			}
		}
	})
}
