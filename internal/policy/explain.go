package policy

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/request"
)

// Explain writes to b how the security policy name (server.
// default_security_policy when empty; source says where the name came from,
// for the reader) decides r: each rule in priority order with whether it
// matches and why, then the decision. It is a dry run: nothing is enforced
// or counted (a throttle rule is shown as it decides while under its limit)
// and the WAF is not run. r carries its request.Info (client IP, route), as
// the server's front stage sets it; the server's Explain drives the real
// routing to get here.
func (e *Engine) Explain(b *strings.Builder, name, source string, r *http.Request) {
	if name == "" {
		name, source = e.defaultPolicy, "server.default_security_policy"
	}
	if name == "" {
		b.WriteString("policy:  none (no security_policy on the route and no server.default_security_policy)\n")
		b.WriteString("decision: allow (no policy)\n")
		return
	}
	p := e.policies[name]
	fmt.Fprintf(b, "policy:  %s (%s)\n", name, source)
	info := request.From(r)
	addr := info.ClientIP
	ev := &evaluation{p: p, r: r, info: info, ip: addr, act: newActivation(r, addr, "https"), dryRun: true}
	seen := map[*rule]bool{}
	ev.trace = func(s step) {
		seen[s.r] = true
		label := fmt.Sprintf("  priority %-10d %-22s", s.r.priority, s.r.action.String())
		if s.r.preview {
			label += " [preview]"
		}
		if s.matched {
			fmt.Fprintf(b, "%s MATCH: %s → %s\n", label, s.why, s.outcome)
		} else {
			fmt.Fprintf(b, "%s no match: %s\n", label, s.why)
		}
		if s.r.desc != "" {
			fmt.Fprintf(b, "      (%s)\n", s.r.desc)
		}
	}
	d := ev.run()
	for _, rl := range p.rules {
		if !seen[rl] {
			fmt.Fprintf(b, "  priority %-10d %-22s not evaluated (an earlier rule decided)\n", rl.priority, rl.action.String())
		}
	}
	if d.Priority == NoRule {
		fmt.Fprintf(b, "  no rule matched and there is no default rule at %d: allowed (moat check warns about this)\n", config.MaxPriority)
	}
	if p.inspector != nil || len(p.wafSets) > 0 {
		fmt.Fprintf(b, "waf:     configured (%s) and run on allowed requests; explain does not run it\n", strings.Join(p.wafSets, ", "))
	}
	fmt.Fprintf(b, "decision: %s\n", describe(d))
}
