package gcpimport

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/policy"
	"github.com/moat-dev/moat/internal/waf"
)

type policyOut struct {
	name, desc string
	comments   []string
	rules      []*ruleOut
	waf        *wafOut
}

type ruleOut struct {
	priority int64
	desc     string
	srcIPs   []string
	expr     string
	action   string
	preview  bool
	rate     *rateOut
	comments []string
	// dropped says why the rule is only a comment; what it was stays in
	// the fields above for the comment.
	dropped string
}

type rateOut struct {
	count                int64
	interval             time.Duration
	key                  []string
	exceed               string
	banDuration          time.Duration
	banCount             int64
	banInterval          time.Duration
	hasBan, hasThreshold bool
}

type wafOut struct {
	sets     []string
	paranoia int
	preview  bool
}

// policy translates a Cloud Armor security policy (once).
func (t *translator) policy(r *resource) *policyOut {
	if p := t.policies[r]; p != nil {
		return p
	}
	p := &policyOut{name: uniqueName(sanitize(nameOf(r)), func(n string) bool {
		return slices.ContainsFunc(t.c.policies, func(p *policyOut) bool { return p.name == n })
	})}
	t.policies[r] = p
	t.c.policies = append(t.c.policies, p)
	r.fate = "security_policies." + p.name
	p.desc, _ = t.m.stringAttr(r.body, "description")
	p.comments = append(p.comments, "From "+r.addr()+".")
	if typ, ok := t.m.stringAttr(r.body, "type"); ok && typ != "CLOUD_ARMOR" {
		p.comments = append(p.comments, fmt.Sprintf("type %s: moat applies every policy to each request at its own door.", typ))
	}
	if block(r.body, "adaptive_protection_config") != nil {
		p.comments = append(p.comments, "adaptive_protection_config (Google's learned DDoS defence) has no moat equivalent: add a rate_based_ban rule keyed on ip for floods, and keep volumetric DDoS protection in front of the machine.")
	}
	if block(r.body, "advanced_options_config") != nil {
		p.comments = append(p.comments, "advanced_options_config (JSON parsing, user-IP header, logging) has no moat equivalent; moat logs every decision.")
	}
	if block(r.body, "recaptcha_options_config") != nil {
		p.comments = append(p.comments, "reCAPTCHA has no moat equivalent.")
	}
	for _, b := range blocks(r.body, "rule") {
		ro := t.rule(p, b.Body)
		if ro != nil {
			p.rules = append(p.rules, ro)
		}
	}
	sort.SliceStable(p.rules, func(i, j int) bool { return p.rules[i].priority < p.rules[j].priority })
	hasDefault := slices.ContainsFunc(p.rules, func(ro *ruleOut) bool { return ro.priority == config.MaxPriority && ro.dropped == "" })
	if !hasDefault {
		p.rules = append(p.rules, &ruleOut{priority: config.MaxPriority, srcIPs: []string{"*"}, action: "allow", desc: "default rule",
			comments: []string{"Terraform's provider adds this allow-everything default rule when the policy names none."}})
	}
	if len(p.rules) == 1 && p.waf == nil && p.rules[0].dropped == "" && len(p.comments) == 1 {
		p.comments = append(p.comments, "It has no rule of its own.")
	}
	return p
}

// rule translates one Cloud Armor rule. A rule moat cannot express is
// kept as a comment, with a note in the todo list when leaving it out lets
// through what it refused.
func (t *translator) rule(p *policyOut, b *hclsyntax.Body) *ruleOut {
	ro := &ruleOut{}
	prio, ok := t.m.numberAttr(b, "priority")
	if !ok {
		ro.dropped = t.m.unknown(b, "priority")
		return ro
	}
	ro.priority = prio
	ro.desc, _ = t.m.stringAttr(b, "description")
	ro.preview, _ = t.m.boolAttr(b, "preview")
	action, ok := t.m.stringAttr(b, "action")
	if !ok {
		ro.dropped = t.m.unknown(b, "action")
		return ro
	}
	ro.action = action
	if m := block(b, "match"); m != nil {
		if cfg := block(m, "config"); cfg != nil {
			ro.srcIPs, _ = t.m.listAttr(cfg, "src_ip_ranges")
		}
		if e := block(m, "expr"); e != nil {
			ro.expr, _ = t.m.stringAttr(e, "expression")
		}
		if ve, ok := t.m.stringAttr(m, "versioned_expr"); ok && ve != "SRC_IPS_V1" {
			ro.dropped = fmt.Sprintf("versioned_expr %s has no moat equivalent", ve)
		}
	}
	if ro.dropped == "" && ro.expr != "" {
		if sets, paranoia, ok := preconfiguredWAF(ro.expr); ok {
			return t.wafRule(p, ro, sets, paranoia)
		}
	}
	switch action {
	case "redirect":
		ro.action = t.redirect(ro, block(b, "redirect_options"))
	case "throttle", "rate_based_ban":
		ro.rate = t.rateLimit(ro, block(b, "rate_limit_options"), action == "rate_based_ban")
	}
	if block(b, "header_action") != nil {
		ro.comments = append(ro.comments, "header_action (request headers added for the backend) has no moat equivalent.")
	}
	if block(b, "preconfigured_waf_config") != nil {
		ro.comments = append(ro.comments, "preconfigured_waf_config exclusions: write them as waf.exclusions of this policy.")
	}
	if ro.dropped == "" {
		ro.dropped = compiles(ro)
	}
	if ro.dropped != "" && ro.priority != config.MaxPriority && !strings.HasPrefix(ro.action, "allow") {
		t.c.todo = append(t.c.todo, fmt.Sprintf("security_policies.%s: the rule at priority %d (%s) is left out (%s), so what it refused now passes: express it another way", p.name, ro.priority, ro.action, ro.dropped))
	}
	return ro
}

// compiles checks the translated rule the way `moat check` does and
// returns the reason it cannot stay, or "".
func compiles(ro *ruleOut) string {
	if ro.action == "" {
		return "no action moat knows"
	}
	prio := ro.priority
	rc := &config.Rule{Priority: &prio, Expr: ro.expr, Action: ro.action}
	if len(ro.srcIPs) > 0 {
		rc.Match = &config.Match{SrcIPRanges: ro.srcIPs}
	}
	if ro.rate != nil {
		rc.RateLimit = &config.RateLimit{Count: int(ro.rate.count), Interval: config.Duration(ro.rate.interval), Key: ro.rate.key,
			ExceedAction: ro.rate.exceed, BanDuration: config.Duration(ro.rate.banDuration)}
	}
	if rc.Match == nil && rc.Expr == "" {
		return "it matches nothing moat can read"
	}
	if _, err := config.ParseAction(ro.action); err != nil {
		return err.Error()
	}
	cfg := &config.Config{Path: "rule", SecurityPolicies: map[string]*config.SecurityPolicy{"p": {Rules: []*config.Rule{rc}}}}
	if err := policy.Check(cfg); err != nil {
		msg := err.Error()
		if i := strings.LastIndex(msg, ": "); i >= 0 && strings.HasPrefix(msg, "rule") {
			msg = msg[i+2:]
		}
		msg = strings.TrimSuffix(msg, " (in container '')")
		return "moat's expressions cannot say this (" + msg + "); they read request.path, request.method, request.query, request.headers, request.host, request.scheme and origin.ip"
	}
	return ""
}

// redirect translates redirect_options into moat's redirect(URL).
func (t *translator) redirect(ro *ruleOut, opts *hclsyntax.Body) string {
	if opts == nil {
		ro.dropped = "a redirect without redirect_options"
		return "redirect"
	}
	typ, _ := t.m.stringAttr(opts, "type")
	if typ != "EXTERNAL_302" {
		ro.dropped = fmt.Sprintf("redirect type %s (reCAPTCHA) has no moat equivalent", typ)
		return "redirect"
	}
	target, ok := t.m.stringAttr(opts, "target")
	if !ok {
		ro.dropped = t.m.unknown(opts, "target")
		return "redirect"
	}
	return "redirect(" + target + ")"
}

// rateLimit translates rate_limit_options.
func (t *translator) rateLimit(ro *ruleOut, o *hclsyntax.Body, ban bool) *rateOut {
	if o == nil {
		ro.dropped = "throttle without rate_limit_options"
		return nil
	}
	rl := &rateOut{}
	if th := block(o, "rate_limit_threshold"); th != nil {
		rl.count, _ = t.m.numberAttr(th, "count")
		secs, _ := t.m.numberAttr(th, "interval_sec")
		rl.interval = time.Duration(secs) * time.Second
	}
	rl.exceed, _ = t.m.stringAttr(o, "exceed_action")
	if rl.exceed == "redirect" {
		if eo := block(o, "exceed_redirect_options"); eo != nil {
			if target, ok := t.m.stringAttr(eo, "target"); ok {
				rl.exceed = "redirect(" + target + ")"
			}
		}
	}
	if c, _ := t.m.stringAttr(o, "conform_action"); c != "" && c != "allow" {
		ro.comments = append(ro.comments, fmt.Sprintf("conform_action %s: moat lets conforming requests go on to the next rule's decision, as allow does.", c))
	}
	var keys []string
	if k, ok := t.m.stringAttr(o, "enforce_on_key"); ok {
		name, _ := t.m.stringAttr(o, "enforce_on_key_name")
		keys = append(keys, t.rateKey(ro, k, name))
	}
	for _, kc := range blocks(o, "enforce_on_key_configs") {
		k, _ := t.m.stringAttr(kc.Body, "enforce_on_key_type")
		name, _ := t.m.stringAttr(kc.Body, "enforce_on_key_name")
		keys = append(keys, t.rateKey(ro, k, name))
	}
	for _, k := range keys {
		if k != "" && !slices.Contains(rl.key, k) {
			rl.key = append(rl.key, k)
		}
	}
	if len(rl.key) == 0 {
		rl.key = []string{"all"}
	}
	if ban {
		secs, _ := t.m.numberAttr(o, "ban_duration_sec")
		rl.banDuration = time.Duration(secs) * time.Second
		rl.hasBan = true
		if th := block(o, "ban_threshold"); th != nil {
			rl.banCount, _ = t.m.numberAttr(th, "count")
			secs, _ := t.m.numberAttr(th, "interval_sec")
			rl.banInterval = time.Duration(secs) * time.Second
			rl.hasThreshold = true
		}
	}
	return rl
}

// rateKey translates enforce_on_key (ALL when empty, as in Cloud Armor).
func (t *translator) rateKey(ro *ruleOut, key, name string) string {
	switch key {
	case "", "ALL":
		return "all"
	case "IP":
		return "ip"
	case "XFF_IP":
		ro.comments = append(ro.comments, "XFF_IP counted the first X-Forwarded-For address; moat's ip key is the client address it resolves through server.trusted_proxies.")
		return "ip"
	case "HTTP_HEADER":
		return "header:" + strings.ToLower(name)
	case "HTTP_COOKIE":
		return "cookie:" + name
	case "HTTP_PATH":
		return "path"
	case "USER_IP":
		ro.comments = append(ro.comments, "USER_IP came from advanced_options_config's user IP header; moat's ip key is the client address it resolves through server.trusted_proxies.")
		return "ip"
	}
	ro.comments = append(ro.comments, fmt.Sprintf("enforce_on_key %s has no moat equivalent; this rule counts by client address instead.", key))
	return "ip"
}

// wafCall matches one preconfigured WAF call of a Cloud Armor expression.
var wafCall = regexp.MustCompile(`^evaluatePreconfigured(?:Waf|Expr)\(\s*'([a-z0-9]+)(?:-v\d+)?-(?:stable|canary)'\s*(?:,\s*(\{[^{}]*\}|\[[^\[\]]*\])\s*)?\)$`)

var sensitivity = regexp.MustCompile(`'sensitivity'\s*:\s*(\d)`)

// preconfiguredWAF reads an expression made only of preconfigured WAF
// calls joined by ||: the moat rule sets and the highest sensitivity (4,
// every signature, when a call names none).
func preconfiguredWAF(expr string) (sets []string, paranoia int, ok bool) {
	known := waf.RuleSetNames()
	for _, part := range strings.Split(expr, "||") {
		m := wafCall.FindStringSubmatch(strings.TrimSpace(part))
		if m == nil || !slices.Contains(known, m[1]) {
			return nil, 0, false
		}
		sets = append(sets, m[1])
		level := 4
		if s := sensitivity.FindStringSubmatch(m[2]); s != nil {
			level, _ = strconv.Atoi(s[1])
		}
		paranoia = max(paranoia, level)
	}
	return sets, paranoia, true
}

// wafRule folds a preconfigured WAF rule into the policy's waf.
func (t *translator) wafRule(p *policyOut, ro *ruleOut, sets []string, paranoia int) *ruleOut {
	if p.waf == nil {
		p.waf = &wafOut{preview: true}
	}
	for _, s := range sets {
		if !slices.Contains(p.waf.sets, s) {
			p.waf.sets = append(p.waf.sets, s)
		}
	}
	p.waf.paranoia = max(p.waf.paranoia, paranoia)
	p.waf.preview = p.waf.preview && ro.preview
	note := fmt.Sprintf("The rule at priority %d (%s when %s) became waf below: moat runs its WAF on every request the rules allow, so requests an earlier allow rule let through are inspected too.", ro.priority, ro.action, ro.expr)
	if paranoia == 0 {
		note += " Sensitivity 0 enabled no signature by default; paranoia 1 is moat's lowest."
	}
	p.comments = append(p.comments, note)
	return nil
}
