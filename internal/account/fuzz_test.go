package account

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzSafeReturnTo: the answer is always a path on this host.
func FuzzSafeReturnTo(f *testing.F) {
	for _, s := range []string{"/app/?x=1", "//evil.example", "https://evil.example", "/\\evil", "/%2F%2Fevil", "javascript:alert(1)", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := safeReturnTo(in)
		u, err := url.Parse(out)
		if err != nil || u.Scheme != "" || u.Host != "" || !strings.HasPrefix(out, "/") || strings.HasPrefix(out, "//") || strings.HasPrefix(out, "/\\") {
			t.Fatalf("safeReturnTo(%q) = %q leaves the host", in, out)
		}
	})
}
