package server

// Regression tests for the findings of issue 12 (the hostile suite) that live
// in the front stage: each is named after its finding and failed before the
// fix.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moat-dev/moat/internal/config"
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
