package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/testnet"
	"github.com/moat-dev/moat/internal/testtool"
)

// startupPolicies are the two cases measured: no security policy, and the
// README's WAF policy (six CRS rule sets), which Coraza compiles at start.
var startupPolicies = map[string]string{
	"no-policy": "",
	"waf": `  default_security_policy: edge
security_policies:
  edge:
    rules:
      - {priority: 2147483647, match: {src_ip_ranges: ["*"]}, action: allow}
    waf: {rule_sets: [sqli, xss, lfi, rce, scannerdetection, protocolattack], paranoia: 1}
`,
}

// BenchmarkStartToReady measures what a platform that scales from zero
// waits for: from exec of `moat serve` (https_addr off, as on Cloud Run) to
// the first 200 from /_moat/readyz, the backend's health check included.
// Each iteration starts a fresh process on a store that already exists (a
// cold start of a new instance, not a first install). It reports the median
// as ms-median:
//
//	go test -run '^$' -bench StartToReady -benchtime 5x ./cmd/moat/
func BenchmarkStartToReady(b *testing.B) {
	bin, err := testtool.BuildMoat(filepath.Join("..", ".."), b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	backend := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	b.Cleanup(backend.Close)
	for _, name := range []string{"no-policy", "waf"} {
		b.Run(name, func(b *testing.B) {
			data := filepath.Join(b.TempDir(), "data")
			port := testnet.FreePort(b)
			cfg := filepath.Join(data, "moat.yaml")
			yaml := fmt.Sprintf(`server:
  https_addr: "off"
  http_addr: "127.0.0.1:%d"
  http_mode: serve
  internal_addr: "127.0.0.1:0"
%sdata_dir: %s
backends:
  app: {url: %q, health_path: /health, health_interval: 1s}
routes:
  - {host: app.example.com, backend: app, public: true}
`, port, startupPolicies[name], data, backend.URL)
			if err := os.MkdirAll(data, 0o700); err != nil {
				b.Fatal(err)
			}
			if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
				b.Fatal(err)
			}
			ready := fmt.Sprintf("http://127.0.0.1:%d/_moat/readyz", port)
			startOnce(b, bin, cfg, ready) // the first start makes the store
			var took []time.Duration
			b.ResetTimer()
			for range b.N {
				took = append(took, startOnce(b, bin, cfg, ready))
			}
			b.StopTimer()
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "ms-median")
		})
	}
}

// startOnce starts moat, waits for readiness, stops it, and returns how
// long it took to become ready.
func startOnce(b *testing.B, bin, cfg, ready string) time.Duration {
	b.Helper()
	c := &http.Client{Timeout: time.Second}
	start := time.Now()
	cmd := exec.Command(bin, "serve", "-c", cfg)
	cmd.Env = append(os.Environ(), "MOAT_SECRET_KEY=")
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	for {
		resp, err := c.Get(ready)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(start)
			}
		}
		if time.Since(start) > 60*time.Second {
			b.Fatalf("not ready within 60s: %v", err)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
