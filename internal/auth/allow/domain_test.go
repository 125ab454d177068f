package allow

import (
	"testing"

	"github.com/moat-dev/moat/internal/request"
)

func TestDomainMember(t *testing.T) {
	m, err := Parse("domain:Example.com")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		email string
		want  bool
	}{
		{"an address at the domain is allowed", "alice@example.com", true},
		{"case does not matter", "bob@EXAMPLE.com", true},
		{"a subdomain is refused", "carol@sub.example.com", false},
		{"a look-alike suffix is refused", "eve@notexample.com", false},
		{"the domain in the local part is refused", "example.com@evil.com", false},
		{"an address without @ is refused", "example.com", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := m.Allows(request.User{Email: tc.email}); got != tc.want {
				t.Errorf("Allows(%q) = %v, want %v", tc.email, got, tc.want)
			}
		})
	}
}

func TestDomainMemberMatchesTheHostedDomainAnSSOProviderVouchedFor(t *testing.T) {
	m, err := Parse("domain:example.com")
	if err != nil {
		t.Fatal(err)
	}
	if !m.Allows(request.User{Email: "alice@example-alias.com", HostedDomain: "example.com"}) {
		t.Error("a Workspace user of example.com with a secondary address was refused")
	}
	if m.Allows(request.User{Email: "mallory@other.com", HostedDomain: "other.com"}) {
		t.Error("a user of another hosted domain was allowed")
	}
}
