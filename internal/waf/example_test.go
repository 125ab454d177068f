package waf_test

import (
	"fmt"
	"net/http/httptest"

	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/waf"
)

// A policy's `waf:` block is compiled once; each request is inspected
// before it is proxied, and its body is still there afterwards.
func Example() {
	fw, err := waf.New(&config.WAF{
		RuleSets: []string{"sqli", "xss"},
		Paranoia: 1,
		Exclusions: []*config.WAFExclusion{
			{Path: "/api/notes", QueryParams: []string{"markdown"}},
		},
	})
	if err != nil {
		panic(err)
	}
	r := httptest.NewRequest("GET", "/search?q=1'+OR+'1'='1", nil)
	v, err := fw.Inspect(r)
	if err != nil {
		panic(err) // the policy engine fails closed instead
	}
	fmt.Println(v.Blocked, v.Status, v.RuleIDs)
	// Output: true 403 [942100 949110]
}
