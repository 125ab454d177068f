package server

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/request"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func ExampleExplain() {
	cfg, err := config.Parse("moat.yaml", []byte(`tls: {self_signed: true}
backends: {dashboard: {url: "http://127.0.0.1:8501"}}
security_policies:
  customer-vpn-only:
    rules:
      - {priority: 0, match: {src_ip_ranges: ["203.0.113.7/32"]}, action: allow}
      - {priority: 1000, expr: "request.path.startsWith('/admin')", action: "deny(404)"}
      - {priority: 2147483647, match: {src_ip_ranges: ["*"]}, action: "deny(403)"}
routes:
  - {host: dash-partner.example.com, backend: dashboard, public: true, security_policy: customer-vpn-only}
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	out, err := Explain(cfg, ExplainRequest{Host: "dash-partner.example.com", IP: "198.51.100.1", Path: "/admin/users"}, quiet)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(out)
	// Output:
	// request: GET https://dash-partner.example.com/admin/users from 198.51.100.1
	// route:   dash-partner.example.com (routes entry at line 10, backend dashboard)
	// policy:  customer-vpn-only (the route's security_policy)
	//   priority 0          allow                  no match: 198.51.100.1 is not in src_ip_ranges
	//   priority 1000       deny(404)              MATCH: expr is true → refuse with 404 (denied by rule)
	//   priority 2147483647 deny(403)              not evaluated (an earlier rule decided)
	// decision: refuse with 404 (denied by rule)
}

const explainSeed = `tls: {self_signed: true}
backends:
  dashboard: {url: "http://127.0.0.1:8501"}
security_policies:
  customer-vpn-only:
    rules:
      - {priority: 0, match: {src_ip_ranges: ["127.0.0.2/32"]}, action: allow}
      - {priority: 2147483647, match: {src_ip_ranges: ["*"]}, action: "deny(403)"}
  dbg:
    rules:
      - {priority: 1, expr: "request.headers['x-debug'] == '1'", action: "deny(404)", preview: true, description: "debug probes"}
      - {priority: 2, expr: "request.path.startsWith('/admin')", action: "deny(404)"}
      - {priority: 3, match: {src_ip_ranges: ["*"]}, action: throttle, rate_limit: {count: 5, interval: 1m}}
routes:
  - {host: dash.example.com, backend: dashboard, public: true}
  - {host: dash-partner.example.com, backend: dashboard, public: true, security_policy: customer-vpn-only}
  - {host: app.example.com, backend: dashboard, public: true, security_policy: dbg}
  - {host: shop.example.com, backend: dashboard, login: [password], allow: ["group:staff"]}
  - {host: shop.example.com, path_prefix: /partner/, backend: dashboard, login: [password], allow: ["group:p"], security_policy: customer-vpn-only}
`

func explain(t *testing.T, host, ip, path, method string, h http.Header) string {
	t.Helper()
	cfg, err := config.Parse("seed.yaml", []byte(explainSeed))
	if err != nil {
		t.Fatal(err)
	}
	out, err := Explain(cfg, ExplainRequest{Host: host, IP: ip, Path: path, Method: method, Headers: h}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func wantLines(t *testing.T, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("explain output lacks %q:\n%s", w, out)
		}
	}
}

func TestExplainTheSeedScenario(t *testing.T) {
	wantLines(t, explain(t, "dash-partner.example.com", "127.0.0.1", "/", "GET", nil),
		"route:   dash-partner.example.com", "policy:  customer-vpn-only",
		"priority 0", "no match: 127.0.0.1 is not in src_ip_ranges",
		"priority 2147483647", "MATCH: src_ip_ranges has *", "decision: refuse with 403")
	wantLines(t, explain(t, "dash-partner.example.com:443", "127.0.0.2", "/", "GET", nil),
		"127.0.0.2 is in 127.0.0.2/32", "not evaluated", "decision: allow")
	wantLines(t, explain(t, "dash.example.com", "127.0.0.1", "/", "GET", nil), "policy:  none")
}

func TestExplainShowsExpressionsAndPreview(t *testing.T) {
	wantLines(t, explain(t, "app.example.com", "2001:db8::1", "/x", "POST", http.Header{"X-Debug": {"1"}}),
		"[preview]", "preview: would refuse with 404", "debug probes", "expr is false", "counted against 5 per 1m0s", "decision: allow")
	cfg, _ := config.Parse("seed.yaml", []byte(explainSeed))
	if _, err := Explain(cfg, ExplainRequest{Host: "app.example.com", IP: "nonsense", Path: "/"}, quiet); err == nil {
		t.Error("a bad IP was accepted")
	}
}

// Issue 11: policy explain re-implemented routing and path cleaning, so it
// could disagree with serve (and knew nothing of moat's own pages). It
// drives the world serve builds: the cleaned path, the 404 of an unrouted
// request, and the policies moat's own pages run under.
func TestExplainDrivesTheRealRoutingIncludingMoatsOwnPages(t *testing.T) {
	wantLines(t, explain(t, "dash-partner.example.com", "127.0.0.1", "/a/../b", "GET", nil),
		"not clean: moat answers a redirect to /b", "route:   dash-partner.example.com")
	wantLines(t, explain(t, "nowhere.example.com", "127.0.0.1", "/", "GET", nil), "moat answers 404, before any policy")
	wantLines(t, explain(t, "shop.example.com", "127.0.0.1", "/_moat/login?return_to=/partner/x", "GET", nil),
		"moat's own page /_moat/login, under the policy of shop.example.com/partner/", "decision: refuse with 403")
	wantLines(t, explain(t, "shop.example.com", "127.0.0.1", "/_moat/admin/users", "GET", nil),
		"for the whole host", "policy:  none", "policy:  customer-vpn-only", "decision: refuse with 403")
}

// Issue 11: an allow list answered yes or no; it says which members it
// tried, in the refusal's log line and here.
func TestExplainSaysWhichAllowListMembersRefusedAUser(t *testing.T) {
	cfg, _ := config.Parse("seed.yaml", []byte(explainSeed))
	out, err := Explain(cfg, ExplainRequest{Host: "shop.example.com", IP: "127.0.0.1", Path: "/x",
		User: &request.User{Email: "eve@example.com", Groups: []string{"guests"}}}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	wantLines(t, out, "access:  eve@example.com is refused (403): tried group:staff")
	out, _ = Explain(cfg, ExplainRequest{Host: "shop.example.com", IP: "127.0.0.1", Path: "/x",
		User: &request.User{Email: "sam@example.com", Groups: []string{"staff"}}}, quiet)
	wantLines(t, out, "access:  sam@example.com is admitted")
}
