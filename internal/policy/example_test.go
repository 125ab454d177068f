package policy_test

import (
	"fmt"

	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/policy"
)

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
	out, err := policy.Explain(cfg, "dash-partner.example.com", "198.51.100.1", "/admin/users", "GET", nil)
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
