package policy

import (
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/ratelimit"
	"github.com/moat-dev/moat/internal/request"
	"github.com/moat-dev/moat/internal/route"
)

// Explain tells which route and security policy a request would meet, and
// how each rule of that policy evaluates in order, without a running
// server. Rate limits are not counted (a throttle rule is shown as it
// decides while under its limit) and the WAF is not run.
func Explain(cfg *config.Config, host, ip, path, method string, headers http.Header) (string, error) {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return "", fmt.Errorf("explain: invalid client IP %q", ip)
	}
	addr = addr.Unmap()
	if path == "" {
		path = "/"
	}
	if method == "" {
		method = http.MethodGet
	}
	e, err := New(cfg, Options{skipWAF: true, Counter: ratelimit.NewMemory(1)})
	if err != nil {
		return "", err
	}
	h := route.Host(host)
	u, err := url.ParseRequestURI(path)
	if err != nil {
		return "", fmt.Errorf("explain: invalid path %q: %w", path, err)
	}
	r, err := http.NewRequest(method, "https://"+h+u.RequestURI(), nil)
	if err != nil {
		return "", fmt.Errorf("explain: %w", err)
	}
	r.Host = host
	for k, vs := range headers {
		for _, v := range vs {
			r.Header.Add(k, v)
		}
	}
	r.RemoteAddr = netip.AddrPortFrom(addr, 443).String()
	info := &request.Info{ID: "explain", ClientIP: addr, Scheme: "https"}
	var b strings.Builder
	fmt.Fprintf(&b, "request: %s https://%s%s from %s\n", method, h, u.RequestURI(), addr)
	rt := route.New(cfg.Routes).Lookup(h, cleanPath(u.Path))
	name := cfg.Server.DefaultSecurityPolicy
	if rt == nil {
		fmt.Fprintf(&b, "route:   none matches host %q and path %q (moat answers 404)\n", h, u.Path)
	} else {
		info.Route = rt
		fmt.Fprintf(&b, "route:   %s (routes entry at line %d, backend %s)\n", rt.Name(), rt.Line, rt.Backend)
		if rt.SecurityPolicy != "" {
			name = rt.SecurityPolicy
		}
	}
	r = request.With(r, info)
	if name == "" {
		b.WriteString("policy:  none (no security_policy on the route and no server.default_security_policy)\n")
		b.WriteString("decision: allow (no policy)\n")
		return b.String(), nil
	}
	p := e.policies[name]
	source := "the route's security_policy"
	if rt == nil || rt.SecurityPolicy == "" {
		source = "server.default_security_policy"
	}
	fmt.Fprintf(&b, "policy:  %s (%s)\n", name, source)
	ev := &evaluation{p: p, r: r, info: info, ip: addr, act: newActivation(r, addr, "https"), dryRun: true}
	seen := map[*rule]bool{}
	ev.trace = func(s step) {
		seen[s.r] = true
		label := fmt.Sprintf("  priority %-10d %-22s", s.r.priority, s.r.action.String())
		if s.r.preview {
			label += " [preview]"
		}
		if s.matched {
			fmt.Fprintf(&b, "%s MATCH: %s → %s\n", label, s.why, s.outcome)
		} else {
			fmt.Fprintf(&b, "%s no match: %s\n", label, s.why)
		}
		if s.r.desc != "" {
			fmt.Fprintf(&b, "      (%s)\n", s.r.desc)
		}
	}
	d := ev.run()
	for _, rl := range p.rules {
		if !seen[rl] {
			fmt.Fprintf(&b, "  priority %-10d %-22s not evaluated (an earlier rule decided)\n", rl.priority, rl.action.String())
		}
	}
	if d.Priority == NoRule {
		fmt.Fprintf(&b, "  no rule matched and there is no default rule at %d: allowed (moat check warns about this)\n", config.MaxPriority)
	}
	if len(p.wafSets) > 0 || cfg.SecurityPolicies[name].WAF != nil {
		fmt.Fprintf(&b, "waf:     configured (%s) and run on allowed requests; explain does not run it\n", strings.Join(p.wafSets, ", "))
	}
	fmt.Fprintf(&b, "decision: %s\n", describe(d))
	return b.String(), nil
}
