package directory

import (
	"strings"
	"testing"
)

// FuzzCleanGroups: whatever an admin types, the groups that come out are
// valid names, sorted and unique, or the input is refused.
func FuzzCleanGroups(f *testing.F) {
	for _, s := range []string{"staff, analysts", "moat-admins\nstaff", "bad group!", strings.Repeat("g,", 100), "a@b:c.d-e_f"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := CleanGroups([]string{in})
		if err != nil {
			return
		}
		for i, g := range out {
			if !groupName.MatchString(g) {
				t.Fatalf("invalid group %q from %q", g, in)
			}
			if i > 0 && out[i-1] >= g {
				t.Fatalf("groups not sorted and unique: %q", out)
			}
		}
	})
}
