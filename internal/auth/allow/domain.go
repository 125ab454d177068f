package allow

import (
	"strings"

	"github.com/moat-dev/moat/internal/request"
)

func init() {
	register("domain", func(v string) (Member, error) {
		return Domain(strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(v), "@"), "."))), nil
	})
}

// Domain allows everyone whose email address is at exactly this domain
// ("domain:example.com" allows alice@example.com but not
// bob@sub.example.com nor eve@notexample.com).
type Domain string

// Allows reports whether u's email domain is the member's.
func (m Domain) Allows(u request.User) bool {
	at := strings.LastIndexByte(u.Email, '@')
	if at < 0 || m == "" {
		return false
	}
	return strings.EqualFold(u.Email[at+1:], string(m))
}

func (m Domain) String() string { return "domain:" + string(m) }
