package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPolicyExplainPrintsTheDecidingRule(t *testing.T) {
	path := filepath.Join(t.TempDir(), "moat.yaml")
	os.WriteFile(path, []byte(`tls: {self_signed: true}
backends: {app: {url: "http://127.0.0.1:8501"}}
security_policies:
  vpn:
    rules:
      - {priority: 0, match: {src_ip_ranges: ["203.0.113.7/32"]}, action: allow}
      - {priority: 1000, expr: "request.headers['user-agent'].contains('curl')", action: "deny(404)"}
      - {priority: 2147483647, match: {src_ip_ranges: ["*"]}, action: "deny(403)"}
routes:
  - {host: partner.example.com, backend: app, public: true, security_policy: vpn}
`), 0o600)
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"the VPN address is allowed", []string{"--ip", "203.0.113.7"}, "decision: allow"},
		{"curl from elsewhere gets 404", []string{"--ip", "198.51.100.1", "--header", "User-Agent: curl/8"}, "decision: refuse with 404"},
		{"anyone else gets 403", []string{"--ip", "2001:db8::1", "--method", "post", "--path", "/x?y=1"}, "decision: refuse with 403"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cmd := newRootCommand()
			var out bytes.Buffer
			cmd.SetOut(&out)
			cmd.SetArgs(append([]string{"policy", "explain", "-c", path, "--host", "partner.example.com"}, tc.args...))
			if err := cmd.Execute(); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), tc.want) {
				t.Fatalf("output lacks %q:\n%s", tc.want, out.String())
			}
		})
	}
	cmd := newRootCommand()
	cmd.SetArgs([]string{"policy", "explain", "-c", path, "--host", "partner.example.com", "--ip", "1.2.3.4", "--header", "nonsense"})
	if err := cmd.Execute(); err == nil {
		t.Fatal("a malformed --header was accepted")
	}
}
