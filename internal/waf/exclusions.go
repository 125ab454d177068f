package waf

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/moat-dev/moat/internal/config"
)

// exclusionRuleBase is the first rule id of the generated exclusion rules;
// CRS uses 900000-999999 and coraza.conf-recommended 200000-200999.
const exclusionRuleBase = 10000

// maxExclusions bounds the generated rules (one per exclusion).
const maxExclusions = 1000

var (
	// pathPattern keeps exclusion paths safe to embed in a SecRule.
	pathPattern = regexp.MustCompile(`^/[A-Za-z0-9/._~@:+,=-]*$`)
	// namePattern keeps header, cookie and parameter names safe to embed
	// in a ctl action (no ';', ',', quotes, spaces or slashes).
	namePattern = regexp.MustCompile(`^[A-Za-z0-9._\-\[\]]+$`)
)

// builtinExclusions let Streamlit's own traffic pass at paranoia 1 and 2.
// They exclude values that are opaque tokens, never whole endpoints, so an
// attack in a parameter of a Streamlit URL is still seen:
//   - the `_streamlit_xsrf` cookie and the `Sec-WebSocket-Protocol` header
//     that carries the same token ("streamlit, 2|…|…|…") on the
//     `/_stcore/stream` upgrade;
//   - `Sec-WebSocket-Key` and `Sec-WebSocket-Extensions`, random base64 and
//     `permessage-deflate; client_max_window_bits`.
//
// Paths match anywhere under a `server.baseUrlPath`, because these rules use
// no path condition. builtinRules adds what an exclusion cannot express.
func builtinExclusions() []*config.WAFExclusion {
	return []*config.WAFExclusion{
		{Cookies: []string{"_streamlit_xsrf"}},
		{Headers: []string{"Sec-WebSocket-Protocol", "Sec-WebSocket-Key", "Sec-WebSocket-Extensions", "X-Xsrftoken"}},
	}
}

// builtinRules lets Streamlit's file uploader use PUT and DELETE on
// `…/_stcore/upload_file/SESSION/FILE` (CRS 911100 allows only GET, HEAD,
// POST and OPTIONS). The body of an upload is still inspected.
const builtinRules = `SecRule REQUEST_LINE "@rx ^(?:PUT|DELETE) /(?:[^?# ]*/)?_stcore/upload_file/[^/?# ]+/[^/?# ]+(?:[?# ]|$)" "id:9100,phase:1,pass,nolog,t:none,ctl:ruleRemoveById=911100"
`

// compiledExclusions is what exclusionRules makes of the exclusions.
type compiledExclusions struct {
	// before holds phase-1 rules placed before the CRS: the path-bound
	// exclusions, as ctl actions that apply to the matching request only.
	before string
	// after holds directives placed after the CRS that change the rules at
	// load time: exclusions without a path cost nothing per request.
	after string
	// skip holds path prefixes for which the WAF does not run at all (an
	// exclusion with a path and nothing else).
	skip []string
}

// exclusionRules turns moat's built-in exclusions and the configured ones
// into SecLang; errors name the configured exclusion by its index.
func exclusionRules(configured []*config.WAFExclusion) (compiledExclusions, error) {
	builtin := builtinExclusions()
	exs := append(builtin, configured...)
	var c compiledExclusions
	if len(exs) > maxExclusions {
		return c, fmt.Errorf("waf: %d exclusions: at most %d", len(exs), maxExclusions)
	}
	var b, after strings.Builder
	for i, ex := range exs {
		if ex == nil {
			continue
		}
		ctls, targets, err := exclusionCtls(ex)
		if err != nil {
			return c, fmt.Errorf("waf: exclusions[%d]: %w", i-len(builtin), err)
		}
		if ex.Path != "" && !pathPattern.MatchString(ex.Path) {
			return c, fmt.Errorf("waf: exclusions[%d]: path %q: must start with / and hold only URL path characters", i-len(builtin), ex.Path)
		}
		if len(ctls) == 0 {
			if ex.Path == "" {
				return c, fmt.Errorf("waf: exclusions[%d]: excludes nothing (set path, rule_ids, headers, cookies or query_params)", i-len(builtin))
			}
			c.skip = append(c.skip, ex.Path)
			continue
		}
		if ex.Path == "" && len(ex.RuleIDs) == 0 {
			// Removing a target from every CRS rule at run time costs an
			// allocation per rule and request; do it once at load time.
			fmt.Fprintf(&after, "SecRuleUpdateTargetByTag \"OWASP_CRS\" \"!%s\"\n", strings.Join(targets, "|!"))
			continue
		}
		if ex.Path == "" && len(targets) == 0 {
			fmt.Fprintf(&after, "SecRuleRemoveById %s\n", strings.Trim(fmt.Sprint(ex.RuleIDs), "[]"))
			continue
		}
		id := exclusionRuleBase + i
		actions := fmt.Sprintf("id:%d,phase:1,pass,nolog,t:none", id)
		if ex.Path == "" {
			fmt.Fprintf(&b, "SecAction \"%s,%s\"\n", actions, strings.Join(ctls, ","))
			continue
		}
		// The path is decoded and normalized first so that encodings or dot
		// segments do not change which exclusion applies.
		fmt.Fprintf(&b, "SecRule REQUEST_FILENAME \"@rx ^%s\" \"%s,t:urlDecodeUni,t:normalizePath,%s\"\n",
			prefixRegexp(ex.Path), actions, strings.Join(ctls, ","))
	}
	c.before, c.after = b.String(), after.String()
	return c, nil
}

// prefixRegexp matches the path prefix on whole segments.
func prefixRegexp(p string) string {
	q := regexp.QuoteMeta(p)
	if strings.HasSuffix(p, "/") {
		return q
	}
	return q + "(?:/|$)"
}

// exclusionCtls returns the ctl actions of one exclusion and the variables
// it removes.
func exclusionCtls(ex *config.WAFExclusion) ([]string, []string, error) {
	var targets []string
	add := func(kind string, names []string, collections ...string) error {
		for _, n := range names {
			if !namePattern.MatchString(n) {
				return fmt.Errorf("%s %q: only letters, digits, '.', '_', '-', '[' and ']'", kind, n)
			}
			for _, c := range collections {
				targets = append(targets, c+":"+n)
			}
		}
		return nil
	}
	if err := errors.Join(
		add("header", ex.Headers, "REQUEST_HEADERS"),
		add("cookie", ex.Cookies, "REQUEST_COOKIES"),
		// Like Cloud Armor, a query parameter exclusion also covers the
		// form-encoded body parameter of the same name.
		add("query parameter", ex.QueryParams, "ARGS"),
	); err != nil {
		return nil, nil, err
	}
	for _, id := range ex.RuleIDs {
		if id <= 0 {
			return nil, nil, fmt.Errorf("rule id %d: must be positive", id)
		}
	}
	var ctls []string
	switch {
	case len(targets) == 0:
		for _, id := range ex.RuleIDs {
			ctls = append(ctls, fmt.Sprintf("ctl:ruleRemoveById=%d", id))
		}
	case len(ex.RuleIDs) == 0:
		for _, t := range targets {
			ctls = append(ctls, "ctl:ruleRemoveTargetByTag=OWASP_CRS;"+t)
		}
	default:
		for _, id := range ex.RuleIDs {
			for _, t := range targets {
				ctls = append(ctls, fmt.Sprintf("ctl:ruleRemoveTargetById=%d;%s", id, t))
			}
		}
	}
	return ctls, targets, nil
}
