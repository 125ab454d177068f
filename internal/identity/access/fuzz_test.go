package access

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzSafeReturnTo holds SafeReturnTo to its promise: whatever comes in,
// what goes out is the input or "/", and a browser resolving it against
// this host stays on this host.
func FuzzSafeReturnTo(f *testing.F) {
	for _, s := range []string{"/app/", "//evil", "/\\evil", "/%2F%2Fevil", "https://evil/", "/\t/evil", "/a?b=%2F%2F", ""} {
		f.Add(s)
	}
	base, _ := url.Parse("https://moat.example/_moat/login")
	f.Fuzz(func(t *testing.T, s string) {
		got := SafeReturnTo(s)
		if got != "/" && got != s {
			t.Fatalf("SafeReturnTo(%q) = %q: neither the input nor /", s, got)
		}
		u, err := url.Parse(got)
		if err != nil {
			t.Fatalf("SafeReturnTo(%q) = %q does not parse: %v", s, got, err)
		}
		if dest := base.ResolveReference(u); dest.Host != "moat.example" || dest.Scheme != "https" {
			t.Fatalf("SafeReturnTo(%q) = %q leads to %s", s, got, dest)
		}
		if strings.ContainsAny(got, "\\\t\r\n") {
			t.Fatalf("SafeReturnTo(%q) = %q holds a character browsers rewrite", s, got)
		}
	})
}
