// Package allow decides whether a signed-in user may use a route, from the
// route's allow list (routes[].allow). Each member kind lives in its own
// file: user.go (user:EMAIL), domain.go (domain:DOMAIN), group.go
// (group:NAME), so adding a kind touches one place.
package allow

import (
	"fmt"

	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/request"
)

// Member is one entry of an allow list.
type Member interface {
	// Allows reports whether u is covered by the member.
	Allows(u request.User) bool
	// String returns the member as written in the configuration.
	String() string
}

// kinds maps a member's kind to the matcher of a (decoded) value.
var kinds = map[string]func(value string) Member{}

func register(kind string, fromValue func(string) Member) { kinds[kind] = fromValue }

// Parse reads one member such as "user:alice@example.com" (with the
// configuration's decoder, config.ParseMember).
func Parse(s string) (Member, error) {
	l, err := FromConfig([]config.Member{config.ParseMember(s)})
	if err != nil {
		return nil, err
	}
	return l[0], nil
}

// List is an allow list. A user is allowed when any member allows them; an
// empty list allows nobody (fail closed).
type List []Member

// FromConfig builds the allow list of members the configuration decoded
// (routes[].allow), without parsing any text again.
func FromConfig(members []config.Member) (List, error) {
	l := make(List, 0, len(members))
	for _, m := range members {
		from := kinds[m.Kind]
		if !m.Valid() || from == nil {
			return nil, fmt.Errorf("invalid member %q: write user:EMAIL, domain:DOMAIN or group:NAME", m.String())
		}
		l = append(l, from(m.Value))
	}
	return l, nil
}

// Check reports whether some member of l allows u and, when none does,
// which members were tried (for the log line of the refusal and for
// policy explain). An anonymous user is never allowed.
func (l List) Check(u request.User) (ok bool, tried []string) {
	if !u.SignedIn() {
		return false, nil
	}
	for _, m := range l {
		if m.Allows(u) {
			return true, nil
		}
	}
	tried = make([]string, len(l))
	for i, m := range l {
		tried[i] = m.String()
	}
	return false, tried
}
