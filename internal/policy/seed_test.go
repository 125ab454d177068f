package policy

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/clientip"
	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/request"
)

const seedYAML = `tls: {self_signed: true}
backends:
  dashboard: {url: "http://127.0.0.1:8501"}
security_policies:
  customer-vpn-only:
    rules:
      - {priority: 0, match: {src_ip_ranges: ["127.0.0.2/32"]}, action: allow}
      - {priority: 2147483647, match: {src_ip_ranges: ["*"]}, action: "deny(403)"}
routes:
  - {host: dash.example.com, backend: dashboard, public: true}
  - {host: dash-partner.example.com, backend: dashboard, public: true, security_policy: customer-vpn-only}
`

// front plays the server's part: it fills request.Info with the resolved
// client address and the route's policy, then runs the policy.
func front(e *Engine, cfg *config.Config) http.Handler {
	res := &clientip.Resolver{}
	chains := map[string]http.Handler{}
	for _, rt := range cfg.Routes {
		chains[rt.Host] = e.Handler(rt.SecurityPolicy, okHandler)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		info := &request.Info{ID: request.NewID(), ClientIP: res.Resolve(r), Scheme: "http"}
		r = request.With(r, info)
		host, _, _ := strings.Cut(r.Host, ":")
		h := chains[host]
		if h == nil {
			http.NotFound(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// clientFrom returns an HTTP client whose connections leave from src.
func clientFrom(src string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
	}}
}

func TestSeedScenarioPartnerHostAdmitsOnlyTheVPNAddress(t *testing.T) {
	cfg, err := config.Parse("seed.yaml", []byte(seedYAML))
	if err != nil {
		t.Fatal(err)
	}
	e := newEngine(t, cfg, Options{})
	srv := httptest.NewServer(front(e, cfg))
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	cases := []struct {
		src, host string
		want      int
	}{
		{"127.0.0.2", "dash-partner.example.com", 200},
		{"127.0.0.1", "dash-partner.example.com", 403},
		{"127.0.0.1", "dash.example.com", 200},
		{"127.0.0.2", "dash.example.com", 200},
	}
	for _, tc := range cases {
		t.Run(tc.src+" to "+tc.host, func(t *testing.T) {
			r, _ := http.NewRequest("GET", "http://127.0.0.1:"+port+"/", nil)
			r.Host = tc.host
			r.Header.Set("X-Forwarded-For", "127.0.0.2") // spoofed: no proxy is trusted
			resp, err := clientFrom(tc.src).Do(r)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.want, body)
			}
			if tc.want == 403 && !strings.Contains(string(body), "request_id") {
				t.Fatalf("403 body has no request id: %s", body)
			}
		})
	}
}

func TestValidationPointsAtTheLine(t *testing.T) {
	cases := []struct {
		name, rules, want string
	}{
		{"a bad CIDR", `[{priority: 1, match: {src_ip_ranges: ["10.0.0.0/40"]}, action: allow}]`, `invalid IP range "10.0.0.0/40"`},
		{"a duplicate priority", "[{priority: 1, match: {src_ip_ranges: [\"*\"]}, action: allow},\n   {priority: 1, match: {src_ip_ranges: [\"*\"]}, action: allow}]", "already used by rules[0]"},
		{"an unknown action", `[{priority: 1, match: {src_ip_ranges: ["*"]}, action: block}]`, `unknown action "block"`},
		{"a deny with an unsupported status", `[{priority: 1, match: {src_ip_ranges: ["*"]}, action: "deny(418)"}]`, "deny takes 403, 404, 429 or 502"},
		{"a redirect to plain http", `[{priority: 1, match: {src_ip_ranges: ["*"]}, action: "redirect(http://x.example)"}]`, "absolute https://"},
		{"a priority out of range", `[{priority: 2147483648, match: {src_ip_ranges: ["*"]}, action: allow}]`, "out of range"},
		{"a negative priority", `[{priority: -1, match: {src_ip_ranges: ["*"]}, action: allow}]`, "out of range"},
		{"a missing priority", `[{match: {src_ip_ranges: ["*"]}, action: allow}]`, "priority is required"},
		{"a rule matching nothing", `[{priority: 1, action: allow}]`, "matches nothing"},
		{"throttle without a rate limit", `[{priority: 1, match: {src_ip_ranges: ["*"]}, action: throttle}]`, "needs rate_limit"},
		{"a zero rate-limit count", `[{priority: 1, match: {src_ip_ranges: ["*"]}, action: throttle, rate_limit: {count: 0, interval: 1m}}]`, "count must be"},
		{"an unknown rate-limit key", `[{priority: 1, match: {src_ip_ranges: ["*"]}, action: throttle, rate_limit: {count: 1, interval: 1m, key: region}}]`, `unknown rate-limit key "region"`},
		{"four combined keys", `[{priority: 1, match: {src_ip_ranges: ["*"]}, action: throttle, rate_limit: {count: 1, interval: 1m, key: [ip, path, all, user]}}]`, "at most 3"},
		{"a ban without a duration", `[{priority: 1, match: {src_ip_ranges: ["*"]}, action: rate_based_ban, rate_limit: {count: 1, interval: 1m}}]`, "needs ban_duration"},
		{"an exceed action that allows", `[{priority: 1, match: {src_ip_ranges: ["*"]}, action: throttle, rate_limit: {count: 1, interval: 1m, exceed_action: allow}}]`, "exceed_action must be deny"},
		{"a default rule that does not match everything", `[{priority: 2147483647, match: {src_ip_ranges: ["10.0.0.0/8"]}, action: allow}]`, "must match everything"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			y := "tls: {self_signed: true}\nbackends: {app: {url: \"http://127.0.0.1:1\"}}\nroutes: [{host: a.example.com, backend: app, public: true}]\nsecurity_policies:\n  p:\n    rules: " + tc.rules + "\n"
			_, err := config.Parse("moat.yaml", []byte(y))
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "moat.yaml:") {
				t.Fatalf("error %q, want %q with file:line", err, tc.want)
			}
			if strings.Contains(err.Error(), "moat.yaml: ") {
				t.Fatalf("error without a line: %q", err)
			}
		})
	}
}

func TestClientIPFallsBackToThePeer(t *testing.T) {
	r := httptest.NewRequest("GET", "https://app.example.com/", nil)
	r.RemoteAddr = "[2001:db8::5]:1234"
	if got := clientIP(r, &request.Info{}); got != netip.MustParseAddr("2001:db8::5") {
		t.Fatalf("clientIP = %v", got)
	}
}
