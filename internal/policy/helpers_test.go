package policy

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/request"
)

// configWith returns a configuration with one public route on
// app.example.com under policy "p", whose body is policyYAML (indented
// under security_policies.p).
func configWith(t testing.TB, policyYAML string, extra ...string) *config.Config {
	t.Helper()
	y := `tls: {self_signed: true}
backends:
  app: {url: "http://127.0.0.1:8501"}
routes:
  - host: app.example.com
    backend: app
    public: true
    security_policy: p
` + strings.Join(extra, "\n") + `
security_policies:
  p:
` + indent(policyYAML, "    ")
	dir := t.TempDir()
	path := filepath.Join(dir, "moat.yaml")
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("load config: %v\n%s", err, y)
	}
	return cfg
}

func indent(s, pre string) string {
	lines := strings.Split(strings.Trim(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = pre + l
	}
	return strings.Join(lines, "\n") + "\n"
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newEngine(t testing.TB, cfg *config.Config, opts Options) *Engine {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	e, err := New(cfg, opts)
	if err != nil {
		t.Fatalf("policy.New: %v", err)
	}
	return e
}

// okHandler answers 200 "ok".
var okHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })

type req struct {
	ip, method, target string
	header             http.Header
	user               string
}

// serve runs one request through h as the server would: Info carries the
// resolved client IP.
func serve(h http.Handler, q req) *httptest.ResponseRecorder {
	if q.method == "" {
		q.method = "GET"
	}
	if q.target == "" {
		q.target = "https://app.example.com/"
	}
	r := httptest.NewRequest(q.method, q.target, nil)
	for k, vs := range q.header {
		for _, v := range vs {
			r.Header.Add(k, v)
		}
	}
	info := &request.Info{ID: "req-1", ClientIP: netip.MustParseAddr(q.ip), Scheme: "https"}
	info.User.Email = q.user
	r = request.With(r, info)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}
