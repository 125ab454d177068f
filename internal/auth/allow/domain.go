package allow

import (
	"strings"

	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/request"
)

func init() {
	register(config.MemberDomain, func(v string) Member { return Domain(v) })
}

// Domain allows everyone whose email address is at exactly this domain
// ("domain:example.com" allows alice@example.com but not
// bob@sub.example.com nor eve@notexample.com), and everyone an SSO provider
// signed in for that hosted domain (Google Workspace's hd claim, which
// covers a Workspace's secondary email domains, as IAP's domain: does).
type Domain string

// Allows reports whether u's email domain, or hosted domain, is the member's.
func (m Domain) Allows(u request.User) bool {
	if m == "" {
		return false
	}
	if u.HostedDomain != "" && strings.EqualFold(u.HostedDomain, string(m)) {
		return true
	}
	at := strings.LastIndexByte(u.Email, '@')
	return at >= 0 && strings.EqualFold(u.Email[at+1:], string(m))
}

func (m Domain) String() string { return "domain:" + string(m) }
