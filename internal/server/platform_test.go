package server

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/logging"
	"github.com/moat-dev/moat/internal/testnet"
)

// plainClient sends every request to addr over plain HTTP, whatever the
// URL's host.
func plainClient(addr string) *http.Client { return testnet.Pin{Addr: addr}.Client() }

// waitReady polls url with c until it answers 200, for at most limit.
func waitReady(t *testing.T, c *http.Client, url string, limit time.Duration) {
	t.Helper()
	if err := testnet.WaitOK(c, url, limit, nil); err != nil {
		t.Fatal(err)
	}
}

func TestHealthAnswersOnEveryListenerForAnyHostAndSaysNothingElse(t *testing.T) {
	m := startMoat(t, echoBackend(t).URL, baseConfig)
	listeners := map[string]struct {
		c    *http.Client
		base string
	}{
		"https":                {m.client(), "https://unknown.example.net"},
		"http (redirect mode)": {plainClient(m.addrs.HTTP), "http://unknown.example.net"},
		"internal":             {plainClient(m.addrs.Internal), "http://10.1.2.3:9090"},
	}
	waitReady(t, m.client(), "https://x.example/_moat/readyz", 15*time.Second)
	for name, l := range listeners {
		t.Run(name, func(t *testing.T) {
			for _, path := range []string{HealthzPath, ReadyzPath} {
				resp, body := get(t, l.c, l.base+path)
				if resp.StatusCode != http.StatusOK || body != "ok\n" {
					t.Errorf("GET %s: %d %q, want 200 \"ok\\n\" and nothing else", path, resp.StatusCode, body)
				}
				if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
					t.Errorf("GET %s: Cache-Control %q", path, cc)
				}
			}
			req, _ := http.NewRequest(http.MethodPost, l.base+HealthzPath, nil)
			resp, err := l.c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusMethodNotAllowed {
				t.Errorf("POST %s: %d, want 405", HealthzPath, resp.StatusCode)
			}
		})
	}
	if strings.Contains(m.logs.String(), HealthzPath) {
		t.Error("probes wrote access lines")
	}
}

func TestReadyzSaysNotReadyWhileABackendIsDown(t *testing.T) {
	dead := echoBackend(t)
	url := dead.URL
	dead.Close()
	m := startMoat(t, url, baseConfig)
	resp, body := get(t, m.client(), "https://dash.example.com"+ReadyzPath)
	if resp.StatusCode != http.StatusServiceUnavailable || body != "not ready\n" {
		t.Errorf("readyz with the backend down: %d %q, want 503 \"not ready\\n\"", resp.StatusCode, body)
	}
	if resp, _ := get(t, m.client(), "https://dash.example.com"+HealthzPath); resp.StatusCode != http.StatusOK {
		t.Errorf("healthz with the backend down: %d, want 200: the process is alive", resp.StatusCode)
	}
}

const platformConfig = `
server:
  https_addr: "off"
  http_addr: "127.0.0.1:0"
  http_mode: serve
  internal_addr: "127.0.0.1:0"
  trusted_proxies: [%s]
data_dir: %%q
backends:
  app: {url: %%q, health_path: /health}
routes:
  - {host: dash.example.com, backend: app, public: true}
`

func TestWithHTTPSOffPlainHTTPServesTheRoutesAndTrustsOnlyATrustedProxysScheme(t *testing.T) {
	for _, tc := range []struct {
		name, trusted, wantScheme string
	}{
		{"behind a trusted balancer", `"127.0.0.1/32"`, "https"},
		{"from an untrusted peer", `"10.0.0.0/8"`, "http"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := startMoat(t, echoBackend(t).URL, fmt.Sprintf(platformConfig, tc.trusted))
			if m.addrs.HTTPS != "" {
				t.Errorf("an HTTPS listener is open on %s", m.addrs.HTTPS)
			}
			c := plainClient(m.addrs.HTTP)
			resp, body := get(t, c, "http://dash.example.com/hello", "X-Forwarded-Proto", "https", "X-Forwarded-For", "198.51.100.7")
			if resp.StatusCode != 200 || body != "path=/hello" {
				t.Fatalf("got %d %q, want the route served on plain HTTP", resp.StatusCode, body)
			}
			if got := resp.Header.Get("X-Seen-Proto"); got != tc.wantScheme {
				t.Errorf("backend saw X-Forwarded-Proto %q, want %q", got, tc.wantScheme)
			}
			hsts := resp.Header.Get("Strict-Transport-Security") != ""
			if hsts != (tc.wantScheme == "https") {
				t.Errorf("HSTS sent = %v for scheme %s", hsts, tc.wantScheme)
			}
			entries, err := os.ReadDir(filepath.Dir(m.path))
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				if e.Name() == "certs" || e.Name() == "acme" {
					t.Errorf("data_dir has %s/ although moat terminates no TLS", e.Name())
				}
			}
			waitReady(t, c, "http://any-host"+ReadyzPath, 15*time.Second)
		})
	}
}

func TestGCPLogFormatGivesSeverityMessageAndHTTPRequest(t *testing.T) {
	m := startMoatLogging(t, echoBackend(t).URL, fmt.Sprintf(platformConfig, `"127.0.0.1/32"`), func(w io.Writer) *slog.Logger {
		return logging.New(w, "gcp", "info")
	})
	resp, _ := get(t, plainClient(m.addrs.HTTP), "http://dash.example.com/report?token=secret",
		"X-Forwarded-Proto", "https", "X-Forwarded-For", "198.51.100.7", "User-Agent", "probe/1.0")
	if resp.StatusCode != 200 {
		t.Fatalf("got %d", resp.StatusCode)
	}
	var access map[string]any
	deadline := time.Now().Add(5 * time.Second)
	for access == nil && time.Now().Before(deadline) {
		for _, rec := range m.logs.Records() {
			if rec["message"] == logging.AccessMessage {
				access = rec
			}
		}
		if access == nil {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if access == nil {
		t.Fatalf("no access line in:\n%s", m.logs.String())
	}
	if access["severity"] != "INFO" || access["level"] != nil || access["msg"] != nil {
		t.Errorf("severity %v, level %v, msg %v: want Cloud Logging's keys only", access["severity"], access["level"], access["msg"])
	}
	hr, _ := access["httpRequest"].(map[string]any)
	want := map[string]any{
		"requestMethod": "GET", "requestUrl": "https://dash.example.com/report", "status": float64(200),
		"remoteIp": "198.51.100.7", "userAgent": "probe/1.0", "protocol": "HTTP/1.1", "responseSize": "12",
	}
	for k, v := range want {
		if hr[k] != v {
			t.Errorf("httpRequest.%s = %v, want %v", k, hr[k], v)
		}
	}
	if lat, _ := hr["latency"].(string); !strings.HasSuffix(lat, "s") {
		t.Errorf("httpRequest.latency = %q, want seconds such as 0.0012s", lat)
	}
	if access["request_id"] == "" || access["route"] != "dash.example.com" {
		t.Errorf("request_id %v, route %v: moat's own keys must stay", access["request_id"], access["route"])
	}
	if strings.Contains(m.logs.String(), "token=secret") {
		t.Error("the query string reached the log")
	}
	for _, line := range strings.Split(strings.TrimSpace(m.logs.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil || rec["severity"] == nil || rec["message"] == nil {
			t.Errorf("line without severity and message: %s", line)
		}
	}
}
