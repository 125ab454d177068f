package proxy

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/config"
)

func TestStreamingResponseReachesClientBeforeBackendFinishes(t *testing.T) {
	for _, tc := range []struct {
		name string
		tls  bool
	}{
		{"over HTTP/1.1", false},
		{"over HTTP/2", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			backend := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/plain")
				_, _ = io.WriteString(w, "first\n")
				http.NewResponseController(w).Flush()
				select {
				case <-release:
				case <-time.After(5 * time.Second):
				}
				_, _ = io.WriteString(w, "second\n")
			}))
			p := startProxy(t, backend.URL, proxyOpts{tls: tc.tls})
			resp, err := p.Client().Get(p.URL + "/stream")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if tc.tls && resp.ProtoMajor != 2 {
				t.Fatalf("client spoke %s, want HTTP/2", resp.Proto)
			}
			br := bufio.NewReader(resp.Body)
			got := make(chan string, 1)
			go func() {
				line, _ := br.ReadString('\n')
				got <- line
			}()
			select {
			case line := <-got:
				if line != "first\n" {
					t.Fatalf("first line %q", line)
				}
			case <-time.After(3 * time.Second):
				t.Fatal("the first chunk did not arrive while the backend was still writing")
			}
			close(release)
			rest, _ := io.ReadAll(br)
			if string(rest) != "second\n" {
				t.Fatalf("rest %q", rest)
			}
		})
	}
}

func TestHTTP2ClientIsProxied(t *testing.T) {
	backend := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Backend-Proto", r.Proto)
		_, _ = w.Write(append([]byte("echo:"), body...))
	}))
	p := startProxy(t, backend.URL, proxyOpts{tls: true})
	resp, err := p.Client().Post(p.URL+"/echo", "text/plain", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.ProtoMajor != 2 || string(body) != "echo:hello" || resp.Header.Get("X-Backend-Proto") != "HTTP/1.1" {
		t.Fatalf("proto %s, backend proto %s, body %q", resp.Proto, resp.Header.Get("X-Backend-Proto"), body)
	}
}

func TestBackendErrorsGiveMoatsPageWithTheLoggedRequestID(t *testing.T) {
	slow := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(2 * time.Second):
		}
	}))
	for _, tc := range []struct {
		name    string
		url     string
		timeout time.Duration
		html    bool
		status  int
		key     string
	}{
		{"a refused backend gives 502 as JSON to a script", refusedURL(t), 0, false, 502, "bad_gateway"},
		{"a refused backend gives 502 as a page to a browser", refusedURL(t), 0, true, 502, "bad_gateway"},
		{"a backend slower than response_header_timeout gives 504", slow.URL, 100 * time.Millisecond, false, 504, "gateway_timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startProxy(t, tc.url, proxyOpts{cfg: config.Backend{ResponseHeaderTimeout: config.Duration(tc.timeout)}})
			req, _ := http.NewRequest("GET", p.URL+"/", nil)
			if tc.html {
				req.Header.Set("Sec-Fetch-Mode", "navigate")
				req.Header.Set("Accept", "text/html")
			}
			resp, err := p.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			id := resp.Header.Get("X-Test-Request-Id")
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if !strings.Contains(string(body), id) {
				t.Fatalf("page lacks request id %s: %s", id, body)
			}
			if !tc.html {
				var v struct {
					RequestID string `json:"request_id"`
				}
				if err := json.Unmarshal(body, &v); err != nil || v.RequestID != id {
					t.Fatalf("json %s: %v", body, err)
				}
				if !strings.Contains(string(body), tc.key) {
					t.Fatalf("body lacks %s: %s", tc.key, body)
				}
			}
			var line map[string]any
			for _, l := range strings.Split(strings.TrimSpace(p.log.String()), "\n") {
				if strings.Contains(l, `"backend error"`) || strings.Contains(l, "backend error") {
					_ = json.Unmarshal([]byte(l), &line)
				}
			}
			if line["request_id"] != id || line["route"] != testRoute.Name() || line["backend"] != "app" || line["error"] == "" {
				t.Fatalf("log line %v does not name request %s, route and backend; logs:\n%s", line, id, p.log.String())
			}
		})
	}
}

// echoHeaders is a backend that answers with the request's Host and
// headers as JSON.
func echoHeaders(t testing.TB) string {
	t.Helper()
	return startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Clone()
		h["Host"] = []string{r.Host}
		_ = json.NewEncoder(w).Encode(h)
	})).URL
}

func getHeaders(t *testing.T, p *testProxy, req *http.Request) (http.Header, string) {
	t.Helper()
	resp, err := p.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h http.Header
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		t.Fatalf("status %d: %v", resp.StatusCode, err)
	}
	return h, resp.Header.Get("X-Test-Request-Id")
}

func TestClientSentOwnedHeadersNeverReachTheBackend(t *testing.T) {
	p := startProxy(t, echoHeaders(t), proxyOpts{})
	req, _ := http.NewRequest("GET", p.URL+"/", nil)
	// Set through the map so the names go on the wire exactly as written.
	for _, name := range []string{
		"X-Moat-User-Email", "X_Moat_User_Email", "x-MOAT-user-id", "X_MOAT_ASSERTION", "X-Moat_User-Groups",
		"X-Goog-Authenticated-User-Email", "X_Goog_Iap_Jwt_Assertion", "x-goog-authenticated-user-id",
		"X_Forwarded_For", "X-Forwarded-Prefix", "X-Forwarded-Port", "X_Real_Ip", "Forwarded", "X-Original-Url",
	} {
		req.Header[name] = []string{"attacker@example.com"}
	}
	req.Header["X-App-Header"] = []string{"kept"}
	req.Header["X_Moatish"] = []string{"kept"} // not x-moat-…
	req.Header.Set("Cookie", "__Host-moat_session=s; theme=dark; moat_lang=ja; MOAT_csrf=x; _xsrf=token")
	h, _ := getHeaders(t, p, req)
	// Only the forwarding headers moat sets itself may arrive, with moat's
	// values.
	mine := map[string]bool{"X-Forwarded-For": true, "X-Forwarded-Proto": true, "X-Forwarded-Host": true, "X-Request-Id": true}
	for name, v := range h {
		if owned(name) && (!mine[name] || strings.Contains(strings.Join(v, ","), "attacker")) {
			t.Errorf("owned header %s: %q reached the backend", name, v)
		}
	}
	if h.Get("X-App-Header") != "kept" || h.Get("X_moatish") != "kept" {
		t.Errorf("app headers were dropped: %v", h)
	}
	if got := h.Get("Cookie"); got != "theme=dark; _xsrf=token" {
		t.Errorf("backend got cookies %q, want the app's only", got)
	}
}

func TestForwardingHeadersAreReplacedNotAppended(t *testing.T) {
	p := startProxy(t, echoHeaders(t), proxyOpts{})
	req, _ := http.NewRequest("GET", p.URL+"/", nil)
	req.Header.Set("X-Forwarded-For", "203.0.113.9")
	req.Header.Set("X-Forwarded-Proto", "https")
	req.Header.Set("X-Forwarded-Host", "evil.example")
	req.Header.Set("X-Request-Id", "spoofed")
	req.Header.Set("Forwarded", "for=203.0.113.9")
	req.Header.Set("X-Real-Ip", "203.0.113.9")
	req.Host = "app.test"
	h, id := getHeaders(t, p, req)
	want := map[string]string{
		"X-Forwarded-For":   "127.0.0.1",
		"X-Forwarded-Proto": "http",
		"X-Forwarded-Host":  "app.test",
		"X-Request-Id":      id,
		"Forwarded":         "",
		"X-Real-Ip":         "",
	}
	for name, v := range want {
		if got := strings.Join(h.Values(name), ","); got != v {
			t.Errorf("%s = %q, want %q", name, got, v)
		}
	}
}

func TestHostHeader(t *testing.T) {
	backendURL := echoHeaders(t)
	no := false
	for _, tc := range []struct {
		name     string
		preserve *bool
		want     func(backendHost string) string
	}{
		{"is the client's by default", nil, func(string) string { return "app.test" }},
		{"is the backend's with preserve_host false", &no, func(b string) string { return b }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startProxy(t, backendURL, proxyOpts{cfg: config.Backend{PreserveHost: tc.preserve}})
			req, _ := http.NewRequest("GET", p.URL+"/", nil)
			req.Host = "app.test"
			req.Header.Set("Origin", "https://app.test")
			h, _ := getHeaders(t, p, req)
			if want := tc.want(strings.TrimPrefix(backendURL, "http://")); h.Get("Host") != want {
				t.Fatalf("backend saw Host %q, want %q", h.Get("Host"), want)
			}
			if h.Get("Origin") != "https://app.test" {
				t.Fatalf("backend saw Origin %q, want it passed through", h.Get("Origin"))
			}
		})
	}
}

func TestSetIdentityRunsAfterOwnedHeadersAreGone(t *testing.T) {
	hook := func(out, in *http.Request) {
		if out.Header.Get("X-Moat-User-Email") != "" || in.Header.Get("X-Moat-User-Email") == "" {
			panic("hook saw the spoofed header in out, or lost the client's request")
		}
		out.Header.Set("X-Moat-User-Email", "alice@example.com")
	}
	p := startProxy(t, echoHeaders(t), proxyOpts{hook: hook})
	req, _ := http.NewRequest("GET", p.URL+"/", nil)
	req.Header.Set("X-Moat-User-Email", "mallory@example.com")
	h, _ := getHeaders(t, p, req)
	if got := h.Values("X-Moat-User-Email"); len(got) != 1 || got[0] != "alice@example.com" {
		t.Fatalf("backend saw %v", got)
	}
}

func TestBackendURLPathAndQueryAreJoined(t *testing.T) {
	var got string
	backend := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.URL.RequestURI()
	}))
	p := startProxy(t, backend.URL+"/base/", proxyOpts{})
	resp, err := p.Client().Get(p.URL + "/app/page?x=1&y=%2F")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got != "/base/app/page?x=1&y=%2F" {
		t.Fatalf("backend saw %q", got)
	}
}

func TestErrorPageKeepsTheLanguageChosenInMoatsCookie(t *testing.T) {
	p := startProxy(t, refusedURL(t), proxyOpts{})
	req, _ := http.NewRequest("GET", p.URL+"/", nil)
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	req.Header.Set("Cookie", "moat_lang=ja")
	resp, err := p.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 502 || !strings.Contains(string(body), "アプリケーションが応答していません") {
		t.Fatalf("status %d, page not in Japanese: %s", resp.StatusCode, body)
	}
}
