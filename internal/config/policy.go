package config

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// MaxPriority is the lowest-ranked priority a rule may have; the rule there
// is the policy's default, as in Cloud Armor.
const MaxPriority = 2147483647

// SecurityPolicy is an ordered set of rules in the Cloud Armor model: the
// lowest priority number that matches decides.
type SecurityPolicy struct {
	Description string  `yaml:"description"`
	Rules       []*Rule `yaml:"rules"`
	WAF         *WAF    `yaml:"waf"`
}

// Rule is one entry of a security policy.
type Rule struct {
	Priority    *int64     `yaml:"priority"`
	Description string     `yaml:"description"`
	Match       *Match     `yaml:"match"`
	Expr        string     `yaml:"expr"`
	Action      string     `yaml:"action"`
	Preview     bool       `yaml:"preview"`
	RateLimit   *RateLimit `yaml:"rate_limit"`

	// Line and ExprLine/ExprColumn locate the rule in the file.
	Line       int `yaml:"-"`
	ExprLine   int `yaml:"-"`
	ExprColumn int `yaml:"-"`
}

// Match is a rule's basic match.
type Match struct {
	SrcIPRanges []string `yaml:"src_ip_ranges"`
}

// RateLimit configures the throttle and rate_based_ban actions.
type RateLimit struct {
	Count    int      `yaml:"count"`
	Interval Duration `yaml:"interval"`
	// Key names what is counted: ip, all, header:NAME, cookie:NAME, path or
	// user, or a list of up to three of them. Default: ip.
	Key          StringList    `yaml:"key"`
	ExceedAction string        `yaml:"exceed_action"`
	BanDuration  Duration      `yaml:"ban_duration"`
	BanThreshold *BanThreshold `yaml:"ban_threshold"`
}

// BanThreshold is the rate past which rate_based_ban bans a key.
type BanThreshold struct {
	Count    int      `yaml:"count"`
	Interval Duration `yaml:"interval"`
}

// StringList is a list of strings that may also be written as one string.
type StringList []string

// UnmarshalYAML accepts a scalar as a one-element list.
func (s *StringList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*s = StringList{n.Value}
		return nil
	}
	var l []string
	if err := n.Decode(&l); err != nil {
		return err
	}
	*s = l
	return nil
}

// WAF enables OWASP Core Rule Set rule sets through Coraza.
type WAF struct {
	RuleSets   []string        `yaml:"rule_sets"`
	Paranoia   int             `yaml:"paranoia"`
	BodyLimit  int64           `yaml:"body_limit"`
	Exclusions []*WAFExclusion `yaml:"exclusions"`
	Preview    bool            `yaml:"preview"`
}

// WAFExclusion keeps a request part away from the WAF's inspection.
type WAFExclusion struct {
	Path        string   `yaml:"path"`
	RuleIDs     []int    `yaml:"rule_ids"`
	Headers     []string `yaml:"headers"`
	Cookies     []string `yaml:"cookies"`
	QueryParams []string `yaml:"query_params"`
}

// Action kinds, as written in a rule's action.
const (
	ActionAllow        = "allow"
	ActionDeny         = "deny"
	ActionRedirect     = "redirect"
	ActionThrottle     = "throttle"
	ActionRateBasedBan = "rate_based_ban"
)

// Action is a parsed rule action such as deny(403) or redirect(/blocked).
type Action struct {
	Kind   string // one of the Action* constants
	Status int    // deny's status code; 302 for redirect
	URL    string // redirect's target
}

// String writes a back in the form it is configured in.
func (a Action) String() string {
	switch a.Kind {
	case ActionDeny:
		return fmt.Sprintf("deny(%d)", a.Status)
	case ActionRedirect:
		return "redirect(" + a.URL + ")"
	}
	return a.Kind
}

// ParseAction parses allow, deny(403|404|429|502), redirect(URL), throttle
// or rate_based_ban. A plain "deny" is deny(403). A redirect target is an
// absolute https URL or a path on the same host.
func ParseAction(s string) (Action, error) {
	s = strings.TrimSpace(s)
	switch s {
	case ActionAllow, ActionThrottle, ActionRateBasedBan:
		return Action{Kind: s}, nil
	case ActionDeny:
		return Action{Kind: ActionDeny, Status: 403}, nil
	case "":
		return Action{}, fmt.Errorf("action is required: allow, deny(403|404|429|502), redirect(URL), throttle or rate_based_ban")
	}
	name, arg, ok := strings.Cut(s, "(")
	if !ok || !strings.HasSuffix(arg, ")") {
		return Action{}, fmt.Errorf("unknown action %q: use allow, deny(403|404|429|502), redirect(URL), throttle or rate_based_ban", s)
	}
	arg = strings.Trim(strings.TrimSpace(strings.TrimSuffix(arg, ")")), `"'`)
	switch strings.TrimSpace(name) {
	case ActionDeny:
		code, err := strconv.Atoi(arg)
		if err != nil || code != 403 && code != 404 && code != 429 && code != 502 {
			return Action{}, fmt.Errorf("invalid action %q: deny takes 403, 404, 429 or 502", s)
		}
		return Action{Kind: ActionDeny, Status: code}, nil
	case ActionRedirect:
		if err := checkRedirect(arg); err != nil {
			return Action{}, fmt.Errorf("invalid action %q: %w", s, err)
		}
		return Action{Kind: ActionRedirect, Status: 302, URL: arg}, nil
	}
	return Action{}, fmt.Errorf("unknown action %q: use allow, deny(403|404|429|502), redirect(URL), throttle or rate_based_ban", s)
}

func checkRedirect(target string) error {
	if strings.ContainsAny(target, " \t\r\n\\") || len(target) > 2048 {
		return fmt.Errorf("the redirect target must be a URL without spaces or backslashes, at most 2048 bytes")
	}
	if strings.HasPrefix(target, "/") && !strings.HasPrefix(target, "//") {
		return nil
	}
	u, err := url.Parse(target)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil {
		return fmt.Errorf("redirect to an absolute https:// URL or to a path starting with /")
	}
	return nil
}

// Rate-limit keys moat knows; header: and cookie: take a name.
var rateLimitKeys = map[string]bool{"ip": true, "all": true, "path": true, "user": true}

// CheckRateLimitKey reports whether k is a valid rate-limit key.
func CheckRateLimitKey(k string) error {
	if rateLimitKeys[k] {
		return nil
	}
	for _, p := range []string{"header:", "cookie:"} {
		if name, ok := strings.CutPrefix(k, p); ok {
			if name == "" || len(name) > 256 || strings.ContainsAny(name, " \t\r\n:;,=") {
				return fmt.Errorf("invalid rate-limit key %q: write %sNAME", k, p)
			}
			return nil
		}
	}
	return fmt.Errorf("unknown rate-limit key %q: use ip, all, path, user, header:NAME or cookie:NAME", k)
}

const (
	minRateInterval = time.Second
	maxRateInterval = 24 * time.Hour
	maxRateCount    = 1 << 30
)

// validatePolicies checks security policies. The policy engine compiles
// expressions itself (policy.Check); here the shape is checked.
func (v *validator) validatePolicies() {
	if c := v.cfg.Counters; c != "" {
		if u, err := url.Parse(c); err != nil || u.Scheme != "redis" && u.Scheme != "rediss" && u.Scheme != "unix" {
			v.errorAt("counters", "counters takes a redis://, rediss:// or unix:// URL (or nothing, for counters in memory)")
		}
	}
	for _, name := range sortedKeys(v.cfg.SecurityPolicies) {
		p := v.cfg.SecurityPolicies[name]
		path := "security_policies." + name
		if p == nil || len(p.Rules) == 0 {
			v.errorAt(path, "policy has no rules")
			continue
		}
		seen := map[int64]int{}
		hasDefault := false
		for i, r := range p.Rules {
			rp := fmt.Sprintf("%s.rules[%d]", path, i)
			if r == nil {
				v.errorAt(rp, "empty rule: set priority, match or expr, and action")
				continue
			}
			switch {
			case r.Priority == nil:
				v.errorAt(rp, "priority is required (0 to %d, lowest first)", MaxPriority)
			case *r.Priority < 0 || *r.Priority > MaxPriority:
				v.errorAt(rp+".priority", "priority %d is out of range: use 0 to %d", *r.Priority, MaxPriority)
			default:
				if j, dup := seen[*r.Priority]; dup {
					v.errorAt(rp+".priority", "priority %d is already used by rules[%d]; priorities must be unique", *r.Priority, j)
				}
				seen[*r.Priority] = i
				if *r.Priority == MaxPriority {
					hasDefault = true
					if r.Expr != "" || r.Match == nil || len(r.Match.SrcIPRanges) != 1 || r.Match.SrcIPRanges[0] != "*" {
						v.errorAt(rp, "the default rule (priority %d) must match everything: write match: {src_ip_ranges: [\"*\"]} and no expr", MaxPriority)
					}
				}
			}
			v.validateRule(rp, r)
		}
		if !hasDefault {
			v.warn(path, "no default rule at priority %d, so requests no rule matches are allowed; add {priority: %d, match: {src_ip_ranges: [\"*\"]}, action: \"deny(403)\"} (or allow) to make it explicit", MaxPriority, MaxPriority)
		}
		if p.WAF != nil && (p.WAF.Paranoia < 0 || p.WAF.Paranoia > 4) {
			v.errorAt(path+".waf.paranoia", "paranoia must be 1 to 4, not %d", p.WAF.Paranoia)
		}
	}
}

func (v *validator) validateRule(rp string, r *Rule) {
	if r.Match != nil {
		if len(r.Match.SrcIPRanges) == 0 {
			v.errorAt(rp+".match", "match needs src_ip_ranges (CIDRs, or \"*\" for every address)")
		}
		for j, s := range r.Match.SrcIPRanges {
			if s == "*" {
				continue
			}
			if _, err := ParsePrefix(s); err != nil {
				v.errorAt(fmt.Sprintf("%s.match.src_ip_ranges[%d]", rp, j), "%v", err)
			}
		}
	}
	if r.Match == nil && strings.TrimSpace(r.Expr) == "" {
		v.errorAt(rp, "rule matches nothing: set match.src_ip_ranges, expr, or both")
	}
	if len(r.Expr) > MaxExprLength {
		v.errorAt(rp+".expr", "expression is %d bytes long; the limit is %d", len(r.Expr), MaxExprLength)
	}
	a, err := ParseAction(r.Action)
	if err != nil {
		v.errorAt(rp+".action", "%v", err)
		return
	}
	limited := a.Kind == ActionThrottle || a.Kind == ActionRateBasedBan
	switch {
	case limited && r.RateLimit == nil:
		v.errorAt(rp, "%s needs rate_limit: {count, interval, key}", a.Kind)
	case !limited && r.RateLimit != nil:
		v.errorAt(rp+".rate_limit", "rate_limit only applies to throttle and rate_based_ban, not %s", a.Kind)
	case limited:
		v.validateRateLimit(rp+".rate_limit", a.Kind, r.RateLimit)
	}
}

// MaxExprLength bounds a rule's expression.
const MaxExprLength = 4096

func (v *validator) validateRateLimit(path, kind string, rl *RateLimit) {
	checkWindow := func(p string, count int, iv Duration) {
		if count < 1 || count > maxRateCount {
			v.errorAt(p+".count", "count must be 1 to %d, not %d", maxRateCount, count)
		}
		if iv.D() < minRateInterval || iv.D() > maxRateInterval {
			v.errorAt(p+".interval", "interval must be 1s to 24h, not %s", iv.D())
		}
	}
	checkWindow(path, rl.Count, rl.Interval)
	if len(rl.Key) > 3 {
		v.errorAt(path+".key", "at most 3 keys may be combined, not %d", len(rl.Key))
	}
	seen := map[string]bool{}
	for i, k := range rl.Key {
		if err := CheckRateLimitKey(k); err != nil {
			v.errorAt(fmt.Sprintf("%s.key[%d]", path, i), "%v", err)
		}
		if seen[k] {
			v.errorAt(fmt.Sprintf("%s.key[%d]", path, i), "key %q is listed twice", k)
		}
		seen[k] = true
	}
	if rl.ExceedAction != "" {
		a, err := ParseAction(rl.ExceedAction)
		switch {
		case err != nil:
			v.errorAt(path+".exceed_action", "%v", err)
		case a.Kind != ActionDeny && a.Kind != ActionRedirect:
			v.errorAt(path+".exceed_action", "exceed_action must be deny(…) or redirect(…), not %s", a.Kind)
		}
	}
	if kind == ActionRateBasedBan {
		if rl.BanDuration.D() < time.Second || rl.BanDuration.D() > 30*24*time.Hour {
			v.errorAt(path+".ban_duration", "rate_based_ban needs ban_duration between 1s and 30d")
		}
		if rl.BanThreshold != nil {
			checkWindow(path+".ban_threshold", rl.BanThreshold.Count, rl.BanThreshold.Interval)
		}
	} else if rl.BanDuration != 0 || rl.BanThreshold != nil {
		v.errorAt(path, "ban_duration and ban_threshold only apply to rate_based_ban")
	}
}
