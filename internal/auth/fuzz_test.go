package auth

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// FuzzSafeReturnTo holds safeReturnTo to its promise: whatever comes in,
// what goes out is the input or "/", and a browser resolving it against
// this host stays on this host.
func FuzzSafeReturnTo(f *testing.F) {
	for _, s := range []string{"/app/", "//evil", "/\\evil", "/%2F%2Fevil", "https://evil/", "/\t/evil", "/a?b=%2F%2F", ""} {
		f.Add(s)
	}
	base, _ := url.Parse("https://moat.example/_moat/login")
	f.Fuzz(func(t *testing.T, s string) {
		got := safeReturnTo(s)
		if got != "/" && got != s {
			t.Fatalf("safeReturnTo(%q) = %q: neither the input nor /", s, got)
		}
		u, err := url.Parse(got)
		if err != nil {
			t.Fatalf("safeReturnTo(%q) = %q does not parse: %v", s, got, err)
		}
		if dest := base.ResolveReference(u); dest.Host != "moat.example" || dest.Scheme != "https" {
			t.Fatalf("safeReturnTo(%q) = %q leads to %s", s, got, dest)
		}
		if strings.ContainsAny(got, "\\\t\r\n") {
			t.Fatalf("safeReturnTo(%q) = %q holds a character browsers rewrite", s, got)
		}
	})
}

// FuzzCookieValue checks the allocation-free cookie reader against
// net/http's parser for the session cookie.
func FuzzCookieValue(f *testing.F) {
	f.Add(SessionCookie + "=" + strings.Repeat("a", sessionIDLen))
	f.Add("a=b; " + SessionCookie + "=x;c=d")
	f.Add(SessionCookie + "x=1; " + SessionCookie + "=2")
	f.Fuzz(func(t *testing.T, header string) {
		r := &http.Request{Header: http.Header{"Cookie": {header}}}
		got := cookieValue(r, SessionCookie)
		if !validID(got) {
			return // anything not shaped like an id is ignored anyway
		}
		c, err := r.Cookie(SessionCookie)
		if err != nil || c.Value != got {
			t.Fatalf("cookieValue(%q) = %q, net/http says %v %v", header, got, c, err)
		}
	})
}
