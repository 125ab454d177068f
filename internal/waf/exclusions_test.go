package waf

import (
	"slices"
	"strings"
	"testing"

	"github.com/moat-dev/moat/internal/config"
)

const tautology = "1'+OR+'1'='1"

func TestExclusionsLetOnlyTheExcludedPartsThrough(t *testing.T) {
	f := firewall(t, "exclusions", &config.WAF{
		RuleSets: []string{"sqli", "xss"},
		Exclusions: []*config.WAFExclusion{
			{Path: "/api/raw"},
			{Path: "/search", RuleIDs: []int{942100}},
			{QueryParams: []string{"sql"}},
			{Headers: []string{"Referer"}, Path: "/docs"},
			{Cookies: []string{"prefs"}},
			{Path: "/notes", RuleIDs: []int{941100, 941110, 941160, 941390}, QueryParams: []string{"html"}},
		},
	})
	tests := []struct {
		name    string
		target  string
		headers map[string]string
		blocked bool
		absent  int // a rule id that must not appear
	}{
		{"a path exclusion skips the whole WAF", "/api/raw?id=" + tautology, nil, false, 0},
		{"a path exclusion covers the paths below it", "/api/raw/v2?id=" + tautology, nil, false, 0},
		{"a path exclusion does not cover a longer segment", "/api/rawdata?id=" + tautology, nil, true, 0},
		{"a path exclusion is not borrowed through dot segments", "/api/raw/../../admin?id=" + tautology, nil, true, 0},
		{"a rule exclusion removes that rule under its path", "/search?id=" + tautology, nil, false, 942100},
		{"a rule exclusion keeps that rule elsewhere", "/other?id=" + tautology, nil, true, 0},
		{"a query parameter exclusion lets that parameter through", "/?sql=" + tautology, nil, false, 0},
		{"a query parameter exclusion keeps other parameters inspected", "/?id=" + tautology, nil, true, 0},
		{"a header exclusion lets that header through under its path", "/docs/x", map[string]string{"Referer": "1' OR '1'='1"}, false, 0},
		{"a header exclusion keeps the header inspected elsewhere", "/blog", map[string]string{"Referer": "1' OR '1'='1"}, true, 0},
		{"a cookie exclusion lets that cookie through", "/", map[string]string{"Cookie": "prefs=1' OR '1'='1"}, false, 0},
		{"a cookie exclusion keeps other cookies inspected", "/", map[string]string{"Cookie": "theme=1' OR '1'='1"}, true, 0},
		{"rule and target exclusions combine", "/notes?html=<script>alert(1)</script>", nil, false, 0},
		{"rule and target exclusions leave other targets inspected", "/notes?text=<script>alert(1)</script>", nil, true, 0},
		{"Streamlit's xsrf cookie is excluded by default", "/", map[string]string{"Cookie": "_streamlit_xsrf=1' OR '1'='1"}, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := f.Inspect(req("GET", tt.target, "", tt.headers))
			if err != nil {
				t.Fatal(err)
			}
			if v.Blocked != tt.blocked {
				t.Fatalf("Blocked = %v, want %v (%+v)", v.Blocked, tt.blocked, v)
			}
			if tt.absent != 0 && slices.Contains(v.RuleIDs, tt.absent) {
				t.Errorf("rule %d matched though excluded: %v", tt.absent, v.RuleIDs)
			}
		})
	}
}

func TestNewRejectsBadConfiguration(t *testing.T) {
	tests := []struct {
		name string
		cfg  *config.WAF
		want string
	}{
		{"no configuration", nil, "no configuration"},
		{"an unknown rule set", &config.WAF{RuleSets: []string{"sqli", "cobol"}}, `unknown rule set "cobol"`},
		{"paranoia above 4", &config.WAF{Paranoia: 5}, "paranoia 5"},
		{"a negative paranoia", &config.WAF{Paranoia: -1}, "paranoia -1"},
		{"a huge body limit", &config.WAF{BodyLimit: 1 << 30}, "body_limit"},
		{"a negative body limit", &config.WAF{BodyLimit: -1}, "body_limit"},
		{"an exclusion that excludes nothing", &config.WAF{Exclusions: []*config.WAFExclusion{{}}}, "exclusions[0]: excludes nothing"},
		{"a path that could break out of the rule", &config.WAF{Exclusions: []*config.WAFExclusion{{Path: `/x" "id:1`}}}, "path"},
		{"a relative path", &config.WAF{Exclusions: []*config.WAFExclusion{{Path: "x"}}}, "path"},
		{"a header name with a separator", &config.WAF{Exclusions: []*config.WAFExclusion{{Headers: []string{"a;ARGS"}}}}, `header "a;ARGS"`},
		{"a cookie name with a space", &config.WAF{Exclusions: []*config.WAFExclusion{{Cookies: []string{"a b"}}}}, `cookie "a b"`},
		{"a zero rule id", &config.WAF{Exclusions: []*config.WAFExclusion{{RuleIDs: []int{0}}}}, "rule id 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestANilFirewallInspectsNothing(t *testing.T) {
	var f *Firewall
	v, err := f.Inspect(req("GET", "/?id="+tautology, "", nil))
	if err != nil || v.Blocked || v.WouldBlock {
		t.Fatalf("verdict %+v, err %v", v, err)
	}
}

func TestExclusionsWithoutAPathApplyEverywhere(t *testing.T) {
	f := firewall(t, "global-exclusions", &config.WAF{
		RuleSets: []string{"sqli", "xss"},
		Exclusions: []*config.WAFExclusion{
			// A rule set that is not enabled may still be named.
			{RuleIDs: []int{941100, 941110, 941160, 941390, 930100}},
			{RuleIDs: []int{942100}, QueryParams: []string{"filter"}},
			{Headers: []string{"Referer"}},
		},
	})
	tests := []struct {
		name    string
		target  string
		headers map[string]string
		blocked bool
	}{
		{"removed rules no longer fire anywhere", "/any/where?x=<script>alert(1)</script>", nil, false},
		{"a rule removed for one parameter still sees the others", "/?id=" + tautology, nil, true},
		{"a rule removed for one parameter lets it through", "/?filter=" + tautology, nil, false},
		{"a header excluded everywhere passes", "/", map[string]string{"Referer": "1' OR '1'='1"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := f.Inspect(req("GET", tt.target, "", tt.headers))
			if err != nil {
				t.Fatal(err)
			}
			if v.Blocked != tt.blocked {
				t.Fatalf("Blocked = %v, want %v (%+v)", v.Blocked, tt.blocked, v)
			}
		})
	}
}
