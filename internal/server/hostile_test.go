package server

// Regression tests for the findings of issue 12 (the hostile suite) that live
// in the front stage: each is named after its finding and failed before the
// fix.

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/testtool"
)

// Finding 8: live reload read the configuration file without the 4 MiB
// bound that check and serve enforce.
func TestLiveReloadRefusesAConfigFileOverTheSizeBound(t *testing.T) {
	backend := echoBackend(t)
	m := startMoat(t, backend.URL, baseConfig)
	next := fmt.Sprintf(baseConfig, filepath.Dir(m.path), backend.URL) +
		"  - {host: new.example.com, backend: app, public: true}\n" +
		"# " + strings.Repeat("x", config.MaxFileSize) + "\n"
	if err := os.WriteFile(m.path, []byte(next), 0o600); err != nil {
		t.Fatal(err)
	}
	err := m.server.Reload(context.Background(), "test")
	if err == nil || !strings.Contains(err.Error(), "larger than 4 MiB") {
		t.Fatalf("reload of a %d-byte file: %v, want it refused for its size", len(next), err)
	}
	if resp, _ := get(t, m.client(), "https://new.example.com/"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("the oversized file's new route answers %d, want 404 (not loaded)", resp.StatusCode)
	}
	if resp, body := get(t, m.client(), "https://dash.example.com/still"); resp.StatusCode != 200 || body != "path=/still" {
		t.Errorf("after the refused reload got %d %q, want the old configuration serving", resp.StatusCode, body)
	}
}

// Finding 10: X-Forwarded-Proto from a trusted TLS-terminating front (Cloud
// Run, a load balancer) was rewritten to http in http_mode: serve. From an
// untrusted peer it is still moat's own view.
func TestForwardedProtoFromATrustedTerminatingFrontIsKept(t *testing.T) {
	for _, tc := range []struct {
		name, trusted, sent, want string
	}{
		{"trusted front says https", "127.0.0.1/32", "https", "https"},
		{"trusted front says http", "127.0.0.1/32", "http", "http"},
		{"trusted front says nonsense", "127.0.0.1/32", "gopher", "http"},
		{"untrusted peer says https", "192.0.2.1/32", "https", "http"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := strings.Replace(baseConfig, "  shutdown_grace: 5s\n",
				"  shutdown_grace: 5s\n  http_mode: serve\n  trusted_proxies: ["+tc.trusted+"]\n", 1)
			m := startMoat(t, echoBackend(t).URL, cfg)
			req, _ := http.NewRequest(http.MethodGet, "http://"+m.addrs.HTTP+"/plain", nil)
			req.Host = "dash.example.com"
			req.Header.Set("X-Forwarded-Proto", tc.sent)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if got := resp.Header.Get("X-Seen-Proto"); resp.StatusCode != 200 || got != tc.want {
				t.Errorf("got %d, backend saw X-Forwarded-Proto %q, want 200 and %q", resp.StatusCode, got, tc.want)
			}
			if hsts := resp.Header.Get("Strict-Transport-Security"); (tc.want == "https") != (hsts != "") {
				t.Errorf("Strict-Transport-Security %q for a client on %s", hsts, tc.want)
			}
		})
	}
}

// Finding 7: a chunked body over the route's bound was answered 502 after
// the app had received the bound's worth; it must be 413, with the app's
// request aborted rather than ended cleanly. A declared Content-Length over
// the bound is refused before anything reaches the app.
func TestOversizedBodyIsAnswered413AndTheAppSeesItAborted(t *testing.T) {
	type seen struct {
		n   int64
		err error
	}
	bodies := make(chan seen, 4)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			return
		}
		n, err := io.Copy(io.Discard, r.Body)
		bodies <- seen{n, err}
	}))
	t.Cleanup(backend.Close)
	cfg := baseConfig + "  - {host: upload.example.com, backend: app, public: true, max_body_bytes: 1048576}\n"
	m := startMoat(t, backend.URL, cfg)
	const size = 3 << 20

	t.Run("chunked", func(t *testing.T) {
		// An io.Reader of unknown length goes out chunked.
		req, _ := http.NewRequest(http.MethodPost, "https://upload.example.com/upload", io.MultiReader(strings.NewReader(strings.Repeat("x", size))))
		resp, err := m.client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("a %d-byte chunked body got %d, want 413", size, resp.StatusCode)
		}
		select {
		case got := <-bodies:
			if got.err == nil || got.n > 1<<20 {
				t.Errorf("the app read %d bytes and then %v, want at most the bound and an aborted body", got.n, got.err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the app never saw the request end")
		}
	})
	t.Run("declared length", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, "https://upload.example.com/upload", strings.NewReader(strings.Repeat("x", size)))
		resp, err := m.client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("a declared %d-byte body got %d, want 413", size, resp.StatusCode)
		}
		select {
		case got := <-bodies:
			t.Errorf("the app got a request with a declared oversized body (%d bytes read)", got.n)
		default:
		}
	})
}

// slowPost sends a POST declaring size body bytes to path over HTTP/1.1 and
// TLS, then one byte every gap until moat answers or closes. It returns how
// many body bytes went out and the status line, if any.
func slowPost(t *testing.T, m *testMoat, host, path string, size int, gap time.Duration) (sent int, status string) {
	t.Helper()
	conn, err := tls.Dial("tcp", m.addrs.HTTPS, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n", path, host, size)
	answered := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(conn).ReadString('\n')
		answered <- strings.TrimSpace(line)
	}()
	tick := time.NewTicker(gap)
	defer tick.Stop()
	for sent < size {
		select {
		case status = <-answered:
			return sent, status
		case <-tick.C:
		}
		if _, err := conn.Write([]byte{'x'}); err != nil {
			break
		}
		sent++
	}
	return sent, <-answered
}

// Finding 4: a body trickling in (one byte every so often) stayed open
// indefinitely, for sign-in posts and proxied uploads alike. It is cut once
// it falls below server.body_min_rate; the app sees its request aborted.
func TestASlowBodyIsCutForSignInPostsAndProxiedUploadsAlike(t *testing.T) {
	aborted := make(chan error, 1)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			return
		}
		_, err := io.Copy(io.Discard, r.Body)
		aborted <- err
	}))
	t.Cleanup(backend.Close)
	cfg := strings.Replace(baseConfig, "  shutdown_grace: 5s\n", "  shutdown_grace: 5s\n  body_stall_timeout: 500ms\n  body_min_rate: 50\n", 1) +
		"  - {host: app.example.com, backend: app, login: [password], allow: [\"group:staff\"]}\n"
	m := startMoat(t, backend.URL, cfg)
	const size = 200 // 20 s at one byte per 100 ms: never cut by the stall timeout alone

	t.Run("proxied upload", func(t *testing.T) {
		sent, status := slowPost(t, m, "dash.example.com", "/upload", size, 100*time.Millisecond)
		if sent >= size || !strings.Contains(status, " 408 ") {
			t.Errorf("sent %d of %d bytes, got %q; want the body cut with 408", sent, size, status)
		}
		select {
		case err := <-aborted:
			if err == nil {
				t.Error("the app read a clean end of a body moat cut short")
			}
		case <-time.After(10 * time.Second):
			t.Error("the app's request was never aborted")
		}
	})
	t.Run("sign-in post", func(t *testing.T) {
		sent, status := slowPost(t, m, "app.example.com", "/_moat/login", size, 100*time.Millisecond)
		if sent >= size || !strings.Contains(status, " 408 ") {
			t.Errorf("sent %d of %d bytes of a sign-in form at 10 bytes/s, got %q; want the body cut with 408", sent, size, status)
		}
	})
}

// Finding 4's other half: the default bounds let a Streamlit-sized upload
// (its maxUploadSize is 200 MB) through at loopback speed.
func TestA200MBUploadPassesTheDefaultBodyBounds(t *testing.T) {
	if testing.Short() && !testtool.CI() {
		t.Skip("moves 200 MB")
	}
	var got atomic.Int64
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			return
		}
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
		got.Store(n)
	}))
	t.Cleanup(backend.Close)
	cfg := baseConfig + "  - {host: upload.example.com, backend: app, public: true, max_body_bytes: 209715200}\n"
	m := startMoat(t, backend.URL, cfg)
	const size = 200 << 20
	for _, chunked := range []bool{false, true} {
		var body io.Reader = io.LimitReader(zeros{}, size)
		req, _ := http.NewRequest(http.MethodPost, "https://upload.example.com/_stcore/upload_file", body)
		if !chunked {
			req.ContentLength = size
		}
		c := m.client()
		c.Timeout = 5 * time.Minute
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || got.Load() != size {
			t.Errorf("chunked=%v: got %d, the app read %d bytes; want 200 and %d", chunked, resp.StatusCode, got.Load(), size)
		}
	}
}

// zeros reads as an endless run of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// Finding 3, end to end: a page on another site opening a WebSocket to a
// signed-in route rides the user's cookie; moat refuses it with 403 before
// the app sees it, while the user's own page still connects.
func TestCrossSiteWebSocketWithTheUsersCookieIsRefused(t *testing.T) {
	var upgrades atomic.Int32
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			return
		}
		upgrades.Add(1)
		// An app that checks no Origin itself.
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
		if err != nil {
			return
		}
		c.Close(websocket.StatusNormalClosure, "")
	}))
	t.Cleanup(backend.Close)
	m := startMoat(t, backend.URL, signInConfig)
	c, _ := signIn(t, m)
	hc := m.client()
	hc.Jar = c.Jar
	hc.Timeout = 0
	dial := func(origin string) (int, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ws, resp, err := websocket.Dial(ctx, "wss://app.example.com/_stcore/stream", &websocket.DialOptions{
			HTTPClient: hc, HTTPHeader: http.Header{"Origin": {origin}},
		})
		if err == nil {
			ws.CloseNow()
		}
		if resp == nil {
			return 0, err
		}
		return resp.StatusCode, err
	}
	if status, err := dial("https://evil.example"); status != http.StatusForbidden || upgrades.Load() != 0 {
		t.Fatalf("a cross-site upgrade with the user's cookie got %d (%v), app saw %d upgrades; want 403 and none", status, err, upgrades.Load())
	}
	if status, err := dial("https://app.example.com"); err != nil || status != http.StatusSwitchingProtocols || upgrades.Load() != 1 {
		t.Fatalf("the user's own page got %d (%v), want 101", status, err)
	}
}

func TestAmbiguousPathsAreRefusedBeforeRouting(t *testing.T) {
	for p, want := range map[string]bool{
		"/public/x":              false,
		"/a/b.c/d-e_f~g":         false,
		"/report 100%":           false,
		"/100%25":                false,
		`/public/..\admin`:       true,
		"/public/\x00/x":         true,
		"/public/\x7f":           true,
		"/public/%2e%2e/admin":   true,
		"/public/..%2Fadmin":     true,
		"/public/%5cadmin":       true,
		"/public/%00":            true,
		"/public/%2":             false,
		"/public/%2e":            true,
		"/public/x%3bjsessionid": false,
		"/_stcore/stream":        false,
		"/media/abc123.png":      false,
	} {
		if got := ambiguousPath(p); got != want {
			t.Errorf("ambiguousPath(%q) = %v, want %v", p, got, want)
		}
	}
}
