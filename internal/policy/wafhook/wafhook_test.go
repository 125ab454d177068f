package wafhook

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/policy"
	"github.com/moat-dev/moat/internal/request"
)

func TestThePolicyEngineRunsTheWAF(t *testing.T) {
	path := filepath.Join(t.TempDir(), "moat.yaml")
	os.WriteFile(path, []byte(`tls: {self_signed: true}
backends: {app: {url: "http://127.0.0.1:8501"}}
security_policies:
  p:
    rules:
      - {priority: 2147483647, match: {src_ip_ranges: ["*"]}, action: allow}
    waf: {rule_sets: [sqli], paranoia: 1}
routes:
  - {host: app.example.com, backend: app, public: true, security_policy: p}
`), 0o600)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	e, err := policy.New(cfg, policy.Options{NewInspector: NewInspector, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	h := e.Handler("p", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	for target, want := range map[string]int{
		"/?id=1":                       200,
		"/?id=1%27%20OR%201%3D1--%20-": 403,
	} {
		r := httptest.NewRequest("GET", "https://app.example.com"+target, nil)
		r.Header.Set("User-Agent", "Mozilla/5.0")
		r.Header.Set("Accept", "text/html")
		r = request.With(r, &request.Info{ID: "x", ClientIP: netip.MustParseAddr("192.0.2.1"), Scheme: "https"})
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != want {
			t.Errorf("%s: status %d, want %d", target, w.Code, want)
		}
	}
}
