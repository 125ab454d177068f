package config

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
	Count        int      `yaml:"count"`
	Interval     Duration `yaml:"interval"`
	Key          []string `yaml:"key"`
	ExceedAction string   `yaml:"exceed_action"`
	BanDuration  Duration `yaml:"ban_duration"`
	BanThreshold *struct {
		Count    int      `yaml:"count"`
		Interval Duration `yaml:"interval"`
	} `yaml:"ban_threshold"`
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

// validatePolicies checks security policies. The policy engine compiles
// expressions itself; here only the shape is checked.
func (v *validator) validatePolicies() {
	for _, name := range sortedKeys(v.cfg.SecurityPolicies) {
		if v.cfg.SecurityPolicies[name] == nil {
			v.errorAt("security_policies."+name, "policy has no rules")
		}
	}
}
