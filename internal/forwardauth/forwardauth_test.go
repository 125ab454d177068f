package forwardauth

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

// authRequest is an ingress's auth request naming method, proto, host and
// uri (an empty value leaves its header out).
func authRequest(method, proto, host, uri string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "http://moat.internal"+Path, nil)
	for name, v := range map[string]string{HeaderMethod: method, HeaderProto: proto, HeaderHost: host, HeaderURI: uri} {
		if v != "" {
			r.Header.Set(name, v)
		}
	}
	return r
}

func TestOriginalIsTheRequestTheIngressNames(t *testing.T) {
	r := authRequest("POST", "HTTPS", "Dash.Example.com:8443", "/reports/q3?format=csv&x=%2F")
	r.Header.Set("Cookie", "__Host-moat-session=abc; theme=dark")
	r.Header.Set("Sec-Fetch-Mode", "navigate")
	r.Header.Set("Content-Length", "12")
	orig, err := Original(r)
	if err != nil {
		t.Fatal(err)
	}
	if orig.Method != "POST" || orig.Host != "Dash.Example.com:8443" || orig.RequestURI != "/reports/q3?format=csv&x=%2F" {
		t.Errorf("original is %s %s %s", orig.Method, orig.Host, orig.RequestURI)
	}
	if orig.URL.Scheme != "https" || orig.URL.Path != "/reports/q3" || orig.URL.Query().Get("x") != "/" {
		t.Errorf("original URL is %s (path %q)", orig.URL, orig.URL.Path)
	}
	if orig.Header.Get("Cookie") == "" || orig.Header.Get("Sec-Fetch-Mode") != "navigate" {
		t.Errorf("the client's headers did not come along: %v", orig.Header)
	}
	for _, name := range []string{HeaderMethod, HeaderProto, HeaderHost, HeaderURI, "Content-Length"} {
		if _, ok := orig.Header[name]; ok {
			t.Errorf("original still carries %s", name)
		}
	}
	if orig.ContentLength != 0 || orig.Body != http.NoBody {
		t.Error("original has a body")
	}
	if r.Header.Get(HeaderURI) == "" {
		t.Error("Original changed the auth request's own headers")
	}
}

// An auth request that does not name its request exactly is refused: each
// of the four headers once, well formed, bounded.
var malformed = []struct {
	name string
	r    func() *http.Request
}{
	{"no method", func() *http.Request { return authRequest("", "https", "a.example", "/") }},
	{"no proto", func() *http.Request { return authRequest("GET", "", "a.example", "/") }},
	{"no host", func() *http.Request { return authRequest("GET", "https", "", "/") }},
	{"no uri", func() *http.Request { return authRequest("GET", "https", "a.example", "") }},
	{"a header twice", func() *http.Request {
		r := authRequest("GET", "https", "a.example", "/private")
		r.Header.Add(HeaderURI, "/public")
		return r
	}},
	{"a host list", func() *http.Request { return authRequest("GET", "https", "a.example, b.example", "/") }},
	{"a host with a path", func() *http.Request { return authRequest("GET", "https", "a.example/x", "/") }},
	{"a proto list", func() *http.Request { return authRequest("GET", "https,http", "a.example", "/") }},
	{"another scheme", func() *http.Request { return authRequest("GET", "ftp", "a.example", "/") }},
	{"a method with a space", func() *http.Request { return authRequest("GET /x", "https", "a.example", "/") }},
	{"a long method", func() *http.Request { return authRequest(strings.Repeat("G", 40), "https", "a.example", "/") }},
	{"an absolute uri", func() *http.Request { return authRequest("GET", "https", "a.example", "https://b.example/") }},
	{"an asterisk", func() *http.Request { return authRequest("OPTIONS", "https", "a.example", "*") }},
	{"a uri with a space", func() *http.Request { return authRequest("GET", "https", "a.example", "/a b") }},
	{"a uri with a fragment", func() *http.Request { return authRequest("GET", "https", "a.example", "/a#b") }},
	{"a uri with a control character", func() *http.Request { return authRequest("GET", "https", "a.example", "/a\x00") }},
	{"a uri past the bound", func() *http.Request {
		return authRequest("GET", "https", "a.example", "/"+strings.Repeat("a", maxURI))
	}},
	{"a host past the bound", func() *http.Request {
		return authRequest("GET", "https", strings.Repeat("a", maxHost+1), "/")
	}},
}

func TestOriginalRefusesWhatDoesNotNameOneRequest(t *testing.T) {
	for _, tc := range malformed {
		t.Run(tc.name, func(t *testing.T) {
			if orig, err := Original(tc.r()); err == nil {
				t.Errorf("accepted, as %s %s %s", orig.Method, orig.Host, orig.RequestURI)
			}
		})
	}
}

func TestEndpointAnswersOnlyTrustedPeersAndOnlyWellFormedRequests(t *testing.T) {
	var asked *http.Request
	e := &Endpoint{
		Trusted: func(a netip.Addr) bool { return a == netip.MustParseAddr("10.0.0.5") },
		Authorize: func(w http.ResponseWriter, orig *http.Request) {
			asked = orig
			w.WriteHeader(http.StatusNoContent)
		},
	}
	for _, tc := range []struct {
		name   string
		peer   string
		req    *http.Request
		status int
	}{
		{"a trusted ingress", "10.0.0.5:4711", authRequest("GET", "https", "a.example", "/x"), http.StatusNoContent},
		{"anyone else, naming a request", "10.0.0.6:4711", authRequest("GET", "https", "a.example", "/x"), http.StatusForbidden},
		{"anyone else, naming none", "192.0.2.1:4711", httptest.NewRequest(http.MethodGet, Path, nil), http.StatusForbidden},
		{"a trusted ingress naming no request", "10.0.0.5:4711", authRequest("GET", "https", "", "/x"), http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			asked = nil
			tc.req.RemoteAddr = tc.peer
			w := httptest.NewRecorder()
			e.ServeHTTP(w, tc.req)
			if w.Code != tc.status {
				t.Errorf("status %d, want %d", w.Code, tc.status)
			}
			if (asked != nil) != (tc.status == http.StatusNoContent) {
				t.Errorf("Authorize called: %v", asked != nil)
			}
			if w.Header().Get("Cache-Control") != "no-store" {
				t.Error("the answer may be cached")
			}
		})
	}
}

func TestNginxIsToldOnly401Or403ForARefusal(t *testing.T) {
	for code, want := range map[int]int{
		200: 200, 204: 204,
		301: 401, 302: 401, 303: 401, 308: 401,
		400: 403, 401: 401, 403: 403, 404: 403, 413: 403, 429: 403,
		500: 500, 502: 502, 503: 503,
	} {
		w := httptest.NewRecorder()
		nw := &nginxWriter{ResponseWriter: w}
		nw.Header().Set("Location", "/_moat/login?return_to=%2F")
		nw.WriteHeader(code)
		if w.Code != want {
			t.Errorf("%d reached nginx as %d, want %d", code, w.Code, want)
		}
		if w.Header().Get("Location") == "" {
			t.Errorf("%d lost its Location", code)
		}
	}
}

func TestGrantAnswersWithTheIdentityAndTheAppsCookiesOnly(t *testing.T) {
	setIdentity := func(out, in *http.Request) { out.Header.Set("X-Moat-User-Email", "carol@example.com") }
	for _, tc := range []struct {
		cookie, want string
	}{
		{"__Host-moat-session=s3cret; theme=dark; moat_lang=ja; _streamlit_xsrf=x", "theme=dark; _streamlit_xsrf=x"},
		{"__Host-moat-session=s3cret", ""},
		{"", ""},
	} {
		r := httptest.NewRequest(http.MethodGet, "https://a.example/", nil)
		if tc.cookie != "" {
			r.Header.Set("Cookie", tc.cookie)
		}
		w := httptest.NewRecorder()
		Grant(setIdentity).ServeHTTP(w, r)
		if w.Code != http.StatusOK || w.Header().Get("X-Moat-User-Email") != "carol@example.com" {
			t.Errorf("Grant answered %d %v", w.Code, w.Header())
		}
		got, ok := w.Header()[HeaderCookie]
		if tc.want == "" && ok || tc.want != "" && (len(got) != 1 || got[0] != tc.want) {
			t.Errorf("cookies %q: %s is %q, want %q", tc.cookie, HeaderCookie, got, tc.want)
		}
	}
}
