package allow

import (
	"testing"

	"github.com/moat-dev/moat/internal/request"
)

func TestUserMember(t *testing.T) {
	m, err := Parse("user:Alice@Example.com")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		email string
		want  bool
	}{
		{"the same address is allowed", "alice@example.com", true},
		{"case does not matter", "ALICE@example.COM", true},
		{"another user at the domain is refused", "bob@example.com", false},
		{"a longer address containing it is refused", "malice@example.com", false},
		{"anonymous is refused", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := allows(List{m}, request.User{Email: tc.email}); got != tc.want {
				t.Errorf("Allows(%q) = %v, want %v", tc.email, got, tc.want)
			}
		})
	}
}
