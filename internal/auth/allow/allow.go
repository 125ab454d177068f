// Package allow decides whether a signed-in user may use a route, from the
// route's allow list (routes[].allow). Each member kind lives in its own
// file: user.go (user:EMAIL), domain.go (domain:DOMAIN), group.go
// (group:NAME), so adding a kind touches one place.
package allow

import (
	"fmt"
	"strings"

	"github.com/moat-dev/moat/internal/request"
)

// Member is one entry of an allow list.
type Member interface {
	// Allows reports whether u is covered by the member.
	Allows(u request.User) bool
	// String returns the member as written in the configuration.
	String() string
}

// kinds maps a member's prefix to its parser.
var kinds = map[string]func(value string) (Member, error){}

func register(kind string, parse func(string) (Member, error)) { kinds[kind] = parse }

// Parse reads one member such as "user:alice@example.com".
func Parse(s string) (Member, error) {
	kind, value, ok := strings.Cut(s, ":")
	parse := kinds[kind]
	if !ok || parse == nil {
		return nil, fmt.Errorf("invalid member %q: write user:EMAIL, domain:DOMAIN or group:NAME", s)
	}
	if strings.TrimSpace(value) == "" {
		return nil, fmt.Errorf("invalid member %q: empty %s", s, kind)
	}
	return parse(value)
}

// List is a parsed allow list. A user is allowed when any member allows
// them; an empty list allows nobody (fail closed).
type List []Member

// ParseList parses every member of an allow list.
func ParseList(members []string) (List, error) {
	l := make(List, 0, len(members))
	for _, m := range members {
		p, err := Parse(m)
		if err != nil {
			return nil, err
		}
		l = append(l, p)
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
