package session

import (
	"net/http"
	"strings"
	"testing"
)

// FuzzCookieValue checks the allocation-free cookie reader against
// net/http's parser for the session cookie.
func FuzzCookieValue(f *testing.F) {
	f.Add(Cookie + "=" + strings.Repeat("a", IDLen))
	f.Add("a=b; " + Cookie + "=x;c=d")
	f.Add(Cookie + "x=1; " + Cookie + "=2")
	f.Fuzz(func(t *testing.T, header string) {
		r := &http.Request{Header: http.Header{"Cookie": {header}}}
		got := CookieValue(r, Cookie)
		if !ValidID(got) {
			return // anything not shaped like an id is ignored anyway
		}
		c, err := r.Cookie(Cookie)
		if err != nil || c.Value != got {
			t.Fatalf("CookieValue(%q) = %q, net/http says %v %v", header, got, c, err)
		}
	})
}
