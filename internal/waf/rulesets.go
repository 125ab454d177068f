package waf

import "sort"

// CRSVersion is the version of the OWASP Core Rule Set embedded by
// github.com/corazawaf/coraza-coreruleset/v4 (see its version.go).
const CRSVersion = "4.25.0"

// ruleSetFiles maps a rule set name to the CRS request rule files it loads.
// The names follow Cloud Armor's preconfigured WAF rules (REFERENCES.md);
// "protocolenforcement" (920) is a moat extension because Cloud Armor has no
// equivalent and CRS 920 is the set most prone to false positives.
var ruleSetFiles = map[string][]string{
	"methodenforcement":   {"REQUEST-911-METHOD-ENFORCEMENT.conf"},
	"scannerdetection":    {"REQUEST-913-SCANNER-DETECTION.conf"},
	"protocolenforcement": {"REQUEST-920-PROTOCOL-ENFORCEMENT.conf"},
	// CRS 4 split multipart attacks (922) out of protocol attacks (921).
	"protocolattack":  {"REQUEST-921-PROTOCOL-ATTACK.conf", "REQUEST-922-MULTIPART-ATTACK.conf"},
	"lfi":             {"REQUEST-930-APPLICATION-ATTACK-LFI.conf"},
	"rfi":             {"REQUEST-931-APPLICATION-ATTACK-RFI.conf"},
	"rce":             {"REQUEST-932-APPLICATION-ATTACK-RCE.conf"},
	"php":             {"REQUEST-933-APPLICATION-ATTACK-PHP.conf"},
	"nodejs":          {"REQUEST-934-APPLICATION-ATTACK-GENERIC.conf"},
	"xss":             {"REQUEST-941-APPLICATION-ATTACK-XSS.conf"},
	"sqli":            {"REQUEST-942-APPLICATION-ATTACK-SQLI.conf"},
	"sessionfixation": {"REQUEST-943-APPLICATION-ATTACK-SESSION-FIXATION.conf"},
	"java":            {"REQUEST-944-APPLICATION-ATTACK-JAVA.conf"},
}

// ruleSetOf maps a CRS file prefix (e.g. "REQUEST-942") to its rule set name.
func ruleSetOf(file string) string {
	for name, files := range ruleSetFiles {
		for _, f := range files {
			if len(file) >= 11 && len(f) >= 11 && f[:11] == file[:11] {
				return name
			}
		}
	}
	return ""
}

// RuleSetNames returns the rule set names New accepts, sorted. The policy
// engine and `moat check` use it to validate `waf.rule_sets`.
func RuleSetNames() []string {
	names := make([]string, 0, len(ruleSetFiles))
	for name := range ruleSetFiles {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}
