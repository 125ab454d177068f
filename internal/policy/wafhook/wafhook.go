// Package wafhook plugs internal/waf's Coraza firewall into the policy
// engine, so that neither package depends on the other.
package wafhook

import (
	"net/http"

	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/policy"
	"github.com/moat-dev/moat/internal/waf"
)

// NewInspector builds a policy's WAF with waf.New; pass it as
// policy.Options.NewInspector.
func NewInspector(_ string, cfg *config.WAF) (policy.Inspector, error) {
	fw, err := waf.New(cfg)
	if err != nil {
		return nil, err
	}
	return policy.InspectorFunc(func(r *http.Request) (policy.WAFVerdict, error) {
		v, err := fw.Inspect(r)
		return policy.WAFVerdict(v), err
	}), nil
}
