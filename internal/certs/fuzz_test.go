package certs

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

// FuzzHTTPHandlerRedirectsOnlyToRoutedHosts checks that no Host header,
// path or query makes the plain-HTTP listener redirect anywhere but to a
// routed host over HTTPS.
func FuzzHTTPHandlerRedirectsOnlyToRoutedHosts(f *testing.F) {
	for _, tt := range redirectTests {
		f.Add(tt.host, tt.target, "x=1")
	}
	f.Add("dash.example.com", "/\\evil.example", "")
	f.Add("dash.example.com:80@evil.example", "/", "")
	f.Add("[::ffff:127.0.0.1]", "/", "")
	f.Add("dash.example.com", "/%2F%2Fevil.example", "next=//evil")

	s, err := New(f.Context(), selfSigned, Options{Store: newStore(f), Sealer: sealer, Hosts: []string{"dash.example.com", "*.apps.example.com", "127.0.0.1", "::1"}})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	h := s.HTTPHandler("8443")

	f.Fuzz(func(t *testing.T, host, path, query string) {
		target := path
		if query != "" {
			target += "?" + query
		}
		u, err := url.ParseRequestURI(target)
		if err != nil {
			return // net/http refuses such a request line before any handler
		}
		r := &http.Request{Method: "GET", Host: host, URL: u, RequestURI: target, Header: http.Header{}, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}
		r = r.WithContext(t.Context())
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code < 300 || w.Code > 399 {
			return
		}
		loc, err := url.Parse(w.Header().Get("Location"))
		if err != nil {
			t.Fatalf("Location %q does not parse: %v", w.Header().Get("Location"), err)
		}
		if loc.Scheme != "https" || loc.Port() != "8443" || loc.User != nil || !s.hosts.match(loc.Hostname()) {
			t.Fatalf("Host %q path %q redirected to %q", host, path, loc)
		}
	})
}
