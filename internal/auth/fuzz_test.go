package auth

import (
	"net/http"
	"strings"
	"testing"
)

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
