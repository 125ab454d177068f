package allow

import (
	"github.com/moat-dev/moat/internal/config"
	"strings"
	"testing"

	"github.com/moat-dev/moat/internal/request"
)

func TestGroupMember(t *testing.T) {
	m, err := Parse("group:customer-a")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		groups []string
		want   bool
	}{
		{"a member is allowed", []string{"staff", "customer-a"}, true},
		{"a user in other groups is refused", []string{"customer-b"}, false},
		{"a user in no group is refused", nil, false},
		{"group names compare exactly", []string{"Customer-A"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := request.User{Email: "x@example.com", Groups: tc.groups}
			if got := m.Allows(u); got != tc.want {
				t.Errorf("Allows(%v) = %v, want %v", tc.groups, got, tc.want)
			}
		})
	}
}

func TestParseRefusesUnknownKindsAndEmptyValues(t *testing.T) {
	for _, s := range []string{"role:admin", "user:", "domain", "", "group: "} {
		if _, err := Parse(s); err == nil {
			t.Errorf("Parse(%q) succeeded", s)
		}
	}
	if allows(List{}, request.User{Email: "a@b.c"}) {
		t.Error("an empty list allowed someone")
	}
}

func allows(l List, u request.User) bool {
	ok, _ := l.Check(u)
	return ok
}

func TestARefusalNamesTheMembersTried(t *testing.T) {
	l, err := FromConfig(config.Members("group:staff", "user:bob@example.com", "domain:example.org"))
	if err != nil {
		t.Fatal(err)
	}
	ok, tried := l.Check(request.User{Email: "mallory@evil.example", Groups: []string{"guests"}})
	if ok || strings.Join(tried, " ") != "group:staff user:bob@example.com domain:example.org" {
		t.Fatalf("Check = %v, %q; want a refusal naming the three members", ok, tried)
	}
	if ok, tried := l.Check(request.User{Email: "bob@example.com"}); !ok || tried != nil {
		t.Fatalf("Check(bob) = %v, %q", ok, tried)
	}
}

// FuzzParse: a member parses or is refused, never panics, and what parses
// is written back in a form that parses to the same member.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"user:alice@example.com", "domain:Example.com.", "group:staff", "role:x", "user:", ":", "group: a "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := Parse(s)
		if err != nil {
			return
		}
		again, err := Parse(m.String())
		if err != nil || again.String() != m.String() {
			t.Fatalf("Parse(%q) = %q, which parses to %v, %v", s, m.String(), again, err)
		}
	})
}
