package allow

import (
	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/request"
)

func init() {
	register(config.MemberGroup, func(v string) Member { return Group(v) })
}

// Group allows the members of a group ("group:customer-a"): a group of the
// built-in directory, or one the SSO provider reported. Group names compare
// exactly.
type Group string

// Allows reports whether u is in the group.
func (m Group) Allows(u request.User) bool {
	for _, g := range u.Groups {
		if g == string(m) {
			return true
		}
	}
	return false
}

func (m Group) String() string { return "group:" + string(m) }
