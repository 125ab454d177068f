package admin

import "testing"

// FuzzParseTime never panics and reads only what it documents.
func FuzzParseTime(f *testing.F) {
	for _, s := range []string{"2026-11-28", "2026-11-28T10:00", "2026-11-28T10:00:00Z", "yesterday", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		_, _ = parseTime(in, false)
		_, _ = parseTime(in, true)
	})
}
