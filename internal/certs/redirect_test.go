package certs

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

var redirectTests = []struct {
	name      string
	httpsPort string
	method    string
	host      string
	target    string
	status    int
	location  string
}{
	{"a GET keeps host, path and query and adds a non-default port", "8443", "GET", "dash.example.com", "/a/b?x=1&y=%2F", 301, "https://dash.example.com:8443/a/b?x=1&y=%2F"},
	{"a GET to a listener address uses its port", ":8443", "GET", "dash.example.com", "/", 301, "https://dash.example.com:8443/"},
	{"port 443 is left out", "443", "GET", "dash.example.com", "/p", 301, "https://dash.example.com/p"},
	{"listener :443 is left out", "0.0.0.0:443", "GET", "dash.example.com", "/p", 301, "https://dash.example.com/p"},
	{"an empty port means 443", "", "GET", "dash.example.com", "/p", 301, "https://dash.example.com/p"},
	{"the HTTP port in the Host header is replaced", "8443", "GET", "dash.example.com:8080", "/p", 301, "https://dash.example.com:8443/p"},
	{"HEAD is redirected like GET", "443", "HEAD", "dash.example.com", "/p", 301, "https://dash.example.com/p"},
	{"POST gets 308 so the body is resent", "443", "POST", "dash.example.com", "/form", 308, "https://dash.example.com/form"},
	{"DELETE gets 308", "443", "DELETE", "dash.example.com", "/x", 308, "https://dash.example.com/x"},
	{"an upper-case host is redirected in lower case", "443", "GET", "DASH.Example.COM.", "/", 301, "https://dash.example.com/"},
	{"a wildcard route matches one label", "443", "GET", "team.apps.example.com", "/", 301, "https://team.apps.example.com/"},
	{"a double slash stays on the same host", "443", "GET", "dash.example.com", "//evil.example/x", 301, "https://dash.example.com//evil.example/x"},
	{"an IP route is redirected", "8443", "GET", "127.0.0.1:8080", "/", 301, "https://127.0.0.1:8443/"},
	{"an IPv6 route keeps its brackets", "8443", "GET", "[::1]:8080", "/", 301, "https://[::1]:8443/"},
	{"ACME paths are redirected when ACME is off", "443", "GET", "dash.example.com", "/.well-known/acme-challenge/abc", 301, "https://dash.example.com/.well-known/acme-challenge/abc"},
	{"an unknown host gets 404", "443", "GET", "evil.example", "/", 404, ""},
	{"a wildcard does not match two labels", "443", "GET", "a.b.apps.example.com", "/", 404, ""},
	{"a wildcard does not match its bare suffix", "443", "GET", "apps.example.com", "/", 404, ""},
	{"a host with a slash gets 400", "443", "GET", "dash.example.com/evil", "/", 400, ""},
	{"a host with a bad port gets 400", "443", "GET", "dash.example.com:99999", "/", 400, ""},
	{"a host with an empty port gets 400", "443", "GET", "dash.example.com:", "/", 400, ""},
	{"a host with userinfo gets 400", "443", "GET", "evil.example@dash.example.com", "/", 400, ""},
	{"an over-long host gets 400", "443", "GET", strings.Repeat("a", 300) + ".example.com", "/", 400, ""},
	{"an unbracketed IPv6 host gets 400", "443", "GET", "::1", "/", 400, ""},
}

func TestHTTPHandlerRedirectsRoutedHostsToHTTPS(t *testing.T) {
	s, _ := newSource(t, selfSigned, newStore(t), []string{"dash.example.com", "*.apps.example.com", "127.0.0.1", "::1"})
	handlers := map[string]*httptest.Server{}
	t.Cleanup(func() {
		for _, srv := range handlers {
			srv.Close()
		}
	})
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tt := range redirectTests {
		t.Run(tt.name, func(t *testing.T) {
			srv, ok := handlers[tt.httpsPort]
			if !ok {
				srv = httptest.NewServer(s.HTTPHandler(tt.httpsPort))
				handlers[tt.httpsPort] = srv
			}
			var body io.Reader
			if tt.method == "POST" {
				body = strings.NewReader("a=1")
			}
			req, err := http.NewRequest(tt.method, srv.URL+tt.target, body)
			if err != nil {
				t.Fatal(err)
			}
			req.Host = tt.host
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if got := resp.Header.Get("Location"); got != tt.location {
				t.Errorf("Location %q, want %q", got, tt.location)
			}
		})
	}
}

func TestHTTPHandlerErrorsAreMoatPages(t *testing.T) {
	s, _ := newSource(t, selfSigned, newStore(t), []string{"dash.example.com"})
	srv := httptest.NewServer(s.HTTPHandler("443"))
	t.Cleanup(srv.Close)
	req, _ := http.NewRequest("GET", srv.URL+"/", nil)
	req.Host = "unknown.example"
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 404 || !strings.Contains(string(b), `"not_found"`) {
		t.Errorf("got %d %s, want moat's JSON 404", resp.StatusCode, b)
	}
}
