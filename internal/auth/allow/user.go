package allow

import (
	"strings"

	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/request"
)

func init() {
	register(config.MemberUser, func(v string) Member { return User(v) })
}

// User allows one person by email address ("user:alice@example.com"),
// compared without regard to case.
type User string

// Allows reports whether u's email is the member's.
func (m User) Allows(u request.User) bool { return strings.EqualFold(u.Email, string(m)) }

func (m User) String() string { return "user:" + string(m) }
