package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/testlog"
	"github.com/moat-dev/moat/internal/testnet"
)

type testMoat struct {
	addrs  Addrs
	path   string
	logs   *testlog.Buffer
	server *Server
	cancel context.CancelFunc
	done   chan error
}

// client returns an HTTPS client that sends every request to moat's
// listener whatever the URL's host, so tests can use routed host names.
func (m *testMoat) client() *http.Client {
	return testnet.Pin{Addr: m.addrs.HTTPS, HTTP2: true}.Client()
}

const baseConfig = `
server:
  https_addr: "127.0.0.1:0"
  http_addr: "127.0.0.1:0"
  internal_addr: "127.0.0.1:0"
  shutdown_grace: 5s
data_dir: %q
tls: {self_signed: true}
backends:
  app: {url: %q, health_path: /health}
routes:
  - {host: dash.example.com, backend: app, public: true}
  - {host: dash.example.com, path_prefix: /api/, backend: app, public: true}
  - {host: "*.wild.example.com", backend: app, public: true}
`

// startMoat runs a server on yaml (a config whose %q verbs take the data
// dir and the backend URL) until the test ends.
func startMoat(t *testing.T, backendURL string, yaml string) *testMoat {
	t.Helper()
	return startMoatLogging(t, backendURL, yaml, func(w io.Writer) *slog.Logger { return slog.New(slog.NewJSONHandler(w, nil)) })
}

// startMoatLogging is startMoat with the logger newLog makes on the
// test's log sink.
func startMoatLogging(t *testing.T, backendURL string, yaml string, newLog func(io.Writer) *slog.Logger) *testMoat {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "moat.yaml")
	if err := os.WriteFile(path, []byte(fmt.Sprintf(yaml, dir, backendURL)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("load config: %v", err)
	}
	logs := &testlog.Buffer{}
	log := newLog(logs)
	srv, err := New(cfg, path, log)
	if err != nil {
		t.Fatal(err)
	}
	m := &testMoat{path: path, logs: logs, server: srv, done: make(chan error, 1)}
	ready := make(chan Addrs, 1)
	srv.Ready = func(a Addrs) { ready <- a }
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go func() { m.done <- srv.Run(ctx) }()
	select {
	case m.addrs = <-ready:
	case err := <-m.done:
		t.Fatalf("server stopped before it was ready: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("server not ready after 10s")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case <-m.done:
		case <-time.After(10 * time.Second):
			t.Error("server did not stop within 10s")
		}
	})
	return m
}

func echoBackend(t *testing.T) *httptest.Server {
	t.Helper()
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			return
		}
		w.Header().Set("X-Seen-Host", r.Host)
		w.Header().Set("X-Seen-XFF", r.Header.Get("X-Forwarded-For"))
		w.Header().Set("X-Seen-Proto", r.Header.Get("X-Forwarded-Proto"))
		w.Header().Set("X-Seen-Request-Id", r.Header.Get("X-Request-Id"))
		w.Header().Set("X-Seen-Moat-Email", r.Header.Get("X-Moat-User-Email"))
		w.Header().Set("X-Seen-Cookie", r.Header.Get("Cookie"))
		fmt.Fprintf(w, "path=%s", r.URL.Path)
	}))
	t.Cleanup(b.Close)
	return b
}

func get(t *testing.T, c *http.Client, url string, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func TestRoutesReachTheBackendOverHTTP2WithHSTS(t *testing.T) {
	m := startMoat(t, echoBackend(t).URL, baseConfig)
	resp, body := get(t, m.client(), "https://dash.example.com/hello")
	if resp.StatusCode != 200 || body != "path=/hello" {
		t.Fatalf("got %d %q, want 200 path=/hello", resp.StatusCode, body)
	}
	if resp.ProtoMajor != 2 {
		t.Errorf("protocol %s, want HTTP/2", resp.Proto)
	}
	if got := resp.Header.Get("Strict-Transport-Security"); !strings.Contains(got, "max-age=") {
		t.Errorf("Strict-Transport-Security = %q", got)
	}
	if got := resp.Header.Get("X-Seen-Host"); got != "dash.example.com" {
		t.Errorf("backend saw Host %q, want the client's host kept", got)
	}
	if got := resp.Header.Get("X-Seen-Proto"); got != "https" {
		t.Errorf("backend saw X-Forwarded-Proto %q", got)
	}
}

func TestUnknownHostAndPathGetMoatsOwn404AndNeverReachTheBackend(t *testing.T) {
	var hits atomic.Int32
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health" {
			hits.Add(1)
		}
	}))
	t.Cleanup(backend.Close)
	m := startMoat(t, backend.URL, baseConfig)
	for _, url := range []string{"https://evil.example.net/", "https://a.b.wild.example.com/", "https://wild.example.com/"} {
		resp, body := get(t, m.client(), url, "Accept", "text/html")
		if resp.StatusCode != 404 || !strings.Contains(body, "moat") {
			t.Errorf("%s: got %d, want moat's 404 page", url, resp.StatusCode)
		}
		if !strings.Contains(body, resp.Header.Get("X-Request-Id")) && !strings.Contains(body, "Request ID") {
			t.Errorf("%s: 404 page shows no request id", url)
		}
	}
	if hits.Load() != 0 {
		t.Errorf("backend got %d requests for unrouted hosts", hits.Load())
	}
	if resp, _ := get(t, m.client(), "https://x.wild.example.com/ok"); resp.StatusCode != 200 || hits.Load() != 1 {
		t.Errorf("wildcard host: got %d and %d backend hits, want 200 and 1", resp.StatusCode, hits.Load())
	}
}

func TestDotDotPathsAreRoutedOnTheCleanPath(t *testing.T) {
	m := startMoat(t, echoBackend(t).URL, baseConfig)
	req, _ := http.NewRequest(http.MethodGet, "https://dash.example.com/api/../secret", nil)
	req.URL.Opaque = "/api/../secret" // keep the dots on the wire
	resp, err := m.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != "/secret" {
		t.Fatalf("got %d Location %q, want 308 to /secret", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func TestClientSentForwardedForFromAnUntrustedPeerIsNotBelieved(t *testing.T) {
	m := startMoat(t, echoBackend(t).URL, baseConfig)
	resp, _ := get(t, m.client(), "https://dash.example.com/", "X-Forwarded-For", "203.0.113.9", "X-Forwarded-Proto", "http")
	if got := resp.Header.Get("X-Seen-XFF"); got != "127.0.0.1" {
		t.Errorf("backend saw X-Forwarded-For %q, want only moat's view 127.0.0.1", got)
	}
	if got := resp.Header.Get("X-Seen-Proto"); got != "https" {
		t.Errorf("backend saw X-Forwarded-Proto %q, want https", got)
	}
	if !strings.Contains(m.logs.String(), `"client_ip":"127.0.0.1"`) {
		t.Errorf("access log does not name the real client")
	}
}

func TestAccessLogCarriesTheRequestIDTheBackendSaw(t *testing.T) {
	m := startMoat(t, echoBackend(t).URL, baseConfig)
	resp, _ := get(t, m.client(), "https://dash.example.com/logged")
	id := resp.Header.Get("X-Seen-Request-Id")
	if id == "" {
		t.Fatal("backend got no X-Request-Id")
	}
	deadline := time.Now().Add(2 * time.Second)
	for !strings.Contains(m.logs.String(), `"request_id":"`+id+`"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no access log line with request_id %s in:\n%s", id, m.logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, key := range []string{`"route":"dash.example.com"`, `"status":200`, `"duration_ms":`, `"bytes":12`} {
		if !strings.Contains(m.logs.String(), key) {
			t.Errorf("access log lacks %s", key)
		}
	}
}

func TestHTTPListenerRedirectsToHTTPS(t *testing.T) {
	m := startMoat(t, echoBackend(t).URL, baseConfig)
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest(http.MethodGet, "http://"+m.addrs.HTTP+"/a?b=c", nil)
	req.Host = "dash.example.com"
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	_, port, _ := net.SplitHostPort(m.addrs.HTTPS)
	want := "https://dash.example.com:" + port + "/a?b=c"
	if resp.StatusCode/100 != 3 || resp.Header.Get("Location") != want {
		t.Errorf("got %d Location %q, want a redirect to %s", resp.StatusCode, resp.Header.Get("Location"), want)
	}
}

func TestMetricsAndHealthLiveOnlyOnTheInternalListener(t *testing.T) {
	m := startMoat(t, echoBackend(t).URL, baseConfig)
	get(t, m.client(), "https://dash.example.com/count-me")
	resp, body := get(t, http.DefaultClient, "http://"+m.addrs.Internal+"/metrics")
	if resp.StatusCode != 200 || !strings.Contains(body, `moat_http_requests_total{code="200",route="dash.example.com"}`) {
		t.Errorf("metrics lack the request counter:\n%.2000s", body)
	}
	if !regexp.MustCompile(`moat_backend_up\{backend="app",replica="http://127\.0\.0\.1:\d+"\} 1`).MatchString(body) {
		t.Errorf("metrics lack backend health")
	}
	resp, _ = get(t, http.DefaultClient, "http://"+m.addrs.Internal+"/healthz")
	if resp.StatusCode != 200 {
		t.Errorf("/healthz = %d", resp.StatusCode)
	}
	resp, body = get(t, http.DefaultClient, "http://"+m.addrs.Internal+"/readyz")
	if resp.StatusCode != 200 || !strings.Contains(body, `"app":true`) {
		t.Errorf("/readyz = %d %s", resp.StatusCode, body)
	}
	for _, p := range []string{"/metrics", "/healthz", "/readyz"} {
		resp, body := get(t, m.client(), "https://dash.example.com"+p)
		if strings.Contains(body, "moat_http_requests_total") || resp.Header.Get("X-Seen-Host") == "" {
			t.Errorf("%s on the public listener did not go to the backend", p)
		}
	}
}

func TestReadyzFailsWhileABackendIsDown(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	url := dead.URL
	dead.Close()
	m := startMoat(t, url, baseConfig)
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, body := get(t, http.DefaultClient, "http://"+m.addrs.Internal+"/readyz")
		if resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(body, `"app":false`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz = %d %s, want 503 naming the backend", resp.StatusCode, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp, body := get(t, m.client(), "https://dash.example.com/", "Accept", "text/html")
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "Request ID") {
		t.Errorf("got %d, want moat's 502 page with a request id", resp.StatusCode)
	}
}

func TestBrokenConfigOnReloadLeavesTheOldOneServing(t *testing.T) {
	m := startMoat(t, echoBackend(t).URL, baseConfig)
	if err := os.WriteFile(m.path, []byte("routes: [{host: dash.example.com, backend: nope}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := m.server.Reload(context.Background(), "test"); err == nil {
		t.Fatal("reload of a broken config succeeded")
	}
	if !strings.Contains(m.logs.String(), "the previous configuration keeps serving") {
		t.Error("the failed reload was not logged")
	}
	resp, body := get(t, m.client(), "https://dash.example.com/still")
	if resp.StatusCode != 200 || body != "path=/still" {
		t.Fatalf("after a broken reload got %d %q, want the old config serving", resp.StatusCode, body)
	}
}

func TestChangedConfigFileIsReloadedByItself(t *testing.T) {
	backend := echoBackend(t)
	m := startMoat(t, backend.URL, baseConfig)
	dir := filepath.Dir(m.path)
	next := fmt.Sprintf(baseConfig, dir, backend.URL) + "  - {host: new.example.com, backend: app, public: true}\n"
	if err := os.WriteFile(m.path, []byte(next), 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * watchInterval)
	for {
		resp, _ := get(t, m.client(), "https://new.example.com/")
		if resp.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("new route not served %s after the file changed", 3*watchInterval)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestShutdownDrainsInFlightRequests(t *testing.T) {
	started := make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(started)
			time.Sleep(700 * time.Millisecond)
			io.WriteString(w, "finished")
		}
	}))
	t.Cleanup(backend.Close)
	m := startMoat(t, backend.URL, baseConfig)
	result := make(chan string, 1)
	go func() {
		resp, err := m.client().Get("https://dash.example.com/slow")
		if err != nil {
			result <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		result <- string(b)
	}()
	<-started
	m.cancel()
	select {
	case got := <-result:
		if got != "finished" {
			t.Errorf("in-flight request got %q, want it to finish during the drain", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("in-flight request did not finish")
	}
	if err := <-m.done; err != nil {
		t.Errorf("Run returned %v", err)
	}
	m.done <- nil // for the cleanup
	if _, err := net.DialTimeout("tcp", m.addrs.HTTPS, time.Second); err == nil {
		t.Error("listener still accepts after shutdown")
	}
}

func TestHTTPModeServeProxiesPlainHTTPBehindATerminatingBalancer(t *testing.T) {
	cfg := strings.Replace(baseConfig, "  shutdown_grace: 5s\n", "  shutdown_grace: 5s\n  http_mode: serve\n", 1)
	m := startMoat(t, echoBackend(t).URL, cfg)
	req, _ := http.NewRequest(http.MethodGet, "http://"+m.addrs.HTTP+"/plain", nil)
	req.Host = "dash.example.com"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "path=/plain" || resp.Header.Get("X-Seen-Proto") != "http" {
		t.Fatalf("got %d %q proto %q, want the route served over plain HTTP", resp.StatusCode, body, resp.Header.Get("X-Seen-Proto"))
	}
	if resp.Header.Get("Strict-Transport-Security") != "" {
		t.Error("HSTS sent over plain HTTP")
	}
}

func TestForwardedForFromATrustedProxyNamesTheClient(t *testing.T) {
	cfg := strings.Replace(baseConfig, "  shutdown_grace: 5s\n", "  shutdown_grace: 5s\n  trusted_proxies: [127.0.0.1/32]\n", 1)
	m := startMoat(t, echoBackend(t).URL, cfg)
	resp, _ := get(t, m.client(), "https://dash.example.com/", "X-Forwarded-For", "198.51.100.1, 203.0.113.9")
	if got := resp.Header.Get("X-Seen-XFF"); got != "203.0.113.9" {
		t.Errorf("backend saw X-Forwarded-For %q, want the right-most untrusted address 203.0.113.9", got)
	}
}

func TestProxyProtocolFromATrustedPeerNamesTheClient(t *testing.T) {
	cfg := strings.Replace(baseConfig, "  shutdown_grace: 5s\n", "  shutdown_grace: 5s\n  trusted_proxies: [127.0.0.1/32]\n  proxy_protocol: true\n", 1)
	m := startMoat(t, echoBackend(t).URL, cfg)
	c := m.client()
	c.Transport.(*http.Transport).DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		conn, err := (&net.Dialer{}).DialContext(ctx, network, m.addrs.HTTPS)
		if err == nil {
			_, err = io.WriteString(conn, "PROXY TCP4 192.0.2.44 127.0.0.1 50000 443\r\n")
		}
		return conn, err
	}
	resp, _ := get(t, c, "https://dash.example.com/")
	if got := resp.Header.Get("X-Seen-XFF"); got != "192.0.2.44" {
		t.Errorf("backend saw X-Forwarded-For %q, want the PROXY header's source 192.0.2.44", got)
	}
}

func TestOneClientCannotHoldMoreThanMaxConnsPerIP(t *testing.T) {
	cfg := strings.Replace(baseConfig, "  shutdown_grace: 5s\n", "  shutdown_grace: 5s\n  max_conns_per_ip: 3\n", 1)
	m := startMoat(t, echoBackend(t).URL, cfg)
	var held []net.Conn
	t.Cleanup(func() {
		for _, c := range held {
			c.Close()
		}
	})
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", m.addrs.HTTPS)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	extra, err := net.Dial("tcp", m.addrs.HTTPS)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	extra.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := extra.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("fourth connection was not closed by moat: %v", err)
	}
	held[0].Close()
	held = held[1:]
	deadline := time.Now().Add(3 * time.Second)
	for {
		resp, err := m.client().Get("https://dash.example.com/again")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a freed slot was not reusable: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestSlowlorisHeadersAreCutOff(t *testing.T) {
	cfg := strings.Replace(baseConfig, "  shutdown_grace: 5s\n", "  shutdown_grace: 5s\n  read_header_timeout: 500ms\n", 1)
	m := startMoat(t, echoBackend(t).URL, cfg)
	conn, err := tls.Dial("tcp", m.addrs.HTTPS, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: dash.example.com\r\n")
	for i := 0; i < 30; i++ { // one header line every 100 ms, never finishing
		if _, err := io.WriteString(conn, "X-Slow: 1\r\n"); err != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, err = io.ReadAll(conn)
	if elapsed := time.Since(start); elapsed > 3500*time.Millisecond {
		t.Fatalf("slow header connection lived %s, want it cut after about 500ms (%v)", elapsed, err)
	}
}

func TestAccessLogNeverCarriesASetPasswordLinksToken(t *testing.T) {
	m := startMoat(t, echoBackend(t).URL, baseConfig)
	const token = "s3cr3t-link-token-value"
	get(t, m.client(), "https://dash.example.com/_moat/account/set-password/"+token, "Accept", "text/html")
	deadline := time.Now().Add(2 * time.Second)
	for !strings.Contains(m.logs.String(), `set-password/…`) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if strings.Contains(m.logs.String(), token) {
		t.Fatalf("the log shows a set-password token:\n%s", m.logs.String())
	}
	if !strings.Contains(m.logs.String(), `set-password/…`) {
		t.Error("no access line for the set-password request")
	}
}

// Issue 13: every wrk stop left ~30 moat_http_requests_total{code="502"},
// because a request whose client went away mid-proxy was answered as a
// backend failure. It is the client's doing: logged and counted as 499.
func TestRequestTheClientAbortsIsCountedAsClientClosedNot502(t *testing.T) {
	arrived := make(chan struct{}, 1)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			return
		}
		arrived <- struct{}{}
		<-r.Context().Done() // moat cancels the round trip when its client leaves
	}))
	t.Cleanup(backend.Close)
	m := startMoat(t, backend.URL, baseConfig)
	count := func(code string) string {
		_, body := get(t, http.DefaultClient, "http://"+m.addrs.Internal+"/metrics")
		for _, line := range strings.Split(body, "\n") {
			if strings.HasPrefix(line, `moat_http_requests_total{code="`+code+`",route="dash.example.com"}`) {
				return strings.Fields(line)[1]
			}
		}
		return "0"
	}
	before502 := count("502")

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://dash.example.com/slow", nil)
	errc := make(chan error, 1)
	go func() {
		resp, err := m.client().Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	<-arrived
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("client: %v, want context.Canceled", err)
	}

	deadline := time.Now().Add(5 * time.Second)
	for count("499") == "0" {
		if time.Now().After(deadline) {
			t.Fatalf("no moat_http_requests_total{code=\"499\"} after an aborted request; logs:\n%s", m.logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if after := count("502"); after != before502 {
		t.Errorf("502 counter went from %s to %s for a request the client aborted", before502, after)
	}
	logs := m.logs.String()
	if !strings.Contains(logs, `"path":"/slow","status":499`) {
		t.Errorf("access log has no 499 line for /slow:\n%s", logs)
	}
	if strings.Contains(logs, `"status":502`) || strings.Contains(logs, "backend error") {
		t.Errorf("an aborted request was logged as a backend failure:\n%s", logs)
	}
}
