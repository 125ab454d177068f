package forwardauth

import (
	"net/http"
	"strings"
	"testing"
)

// FuzzOriginal holds Original to its promise: whatever the four headers
// say, what it accepts is one request with a token method, an http(s)
// scheme, a host of host characters and an origin-form target that parses
// back to the same path, and it carries none of the four headers on.
func FuzzOriginal(f *testing.F) {
	for _, s := range [][4]string{
		{"GET", "https", "dash.example.com", "/reports?q=1"},
		{"POST", "http", "[::1]:8443", "/a/../b"},
		{"GET", "https", "a.example", "//evil.example/x"},
		{"G ET", "https", "a.example, b", "/%2e%2e/x"},
		{"GET", "HTTPS", "a.example", "/\\evil"},
	} {
		f.Add(s[0], s[1], s[2], s[3])
	}
	f.Fuzz(func(t *testing.T, method, proto, host, uri string) {
		r := authRequest(method, proto, host, uri)
		orig, err := Original(r)
		if err != nil {
			return
		}
		if !isToken(orig.Method) || orig.URL.Scheme != "https" && orig.URL.Scheme != "http" || !isHost(orig.Host) {
			t.Fatalf("accepted %q %q %q", orig.Method, orig.URL.Scheme, orig.Host)
		}
		if !strings.HasPrefix(orig.URL.Path, "/") || orig.RequestURI != uri {
			t.Fatalf("accepted target %q as path %q", uri, orig.URL.Path)
		}
		for _, name := range []string{HeaderMethod, HeaderProto, HeaderHost, HeaderURI} {
			if _, ok := orig.Header[http.CanonicalHeaderKey(name)]; ok {
				t.Fatalf("the original carries %s on", name)
			}
		}
	})
}
