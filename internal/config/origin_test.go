package config

import "testing"

var originCases = []struct {
	in, want string // want "" means an error
}{
	{"https://dash.example.com", "https://dash.example.com"},
	{"HTTPS://Dash.Example.COM", "https://dash.example.com"},
	{"https://dash.example.com:443", "https://dash.example.com"},
	{"http://dash.example.com:80", "http://dash.example.com"},
	{"https://dash.example.com:8443", "https://dash.example.com:8443"},
	{"https://dash.example.com:08443", "https://dash.example.com:8443"},
	{"http://localhost:8501", "http://localhost:8501"},
	{"https://[2001:DB8::1]:443", "https://[2001:db8::1]"},
	{"https://192.0.2.1", "https://192.0.2.1"},
	{"null", ""},
	{"", ""},
	{"dash.example.com", ""},
	{"ftp://dash.example.com", ""},
	{"https://", ""},
	{"https://dash.example.com/", ""},
	{"https://dash.example.com/app", ""},
	{"https://dash.example.com?x", ""},
	{"https://dash.example.com#x", ""},
	{"https://user@dash.example.com", ""},
	{"https://dash.example.com:", ""},
	{"https://dash.example.com:0", ""},
	{"https://dash.example.com:65536", ""},
	{"https://dash.example.com:+443", ""},
	{"https://dash.example.com:443:443", ""},
	{"https://[2001:db8::1", ""},
	{"https://[192.0.2.1]", ""},
	{"https://[fe80::1%eth0]", ""},
	{"https://dash example.com", ""},
	{`https://dash.example.com\@evil.example`, ""},
}

func TestParseOrigin(t *testing.T) {
	for _, tc := range originCases {
		got, err := ParseOrigin(tc.in)
		if tc.want == "" {
			if err == nil {
				t.Errorf("ParseOrigin(%q) = %q, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseOrigin(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// FuzzParseOrigin checks that a canonical origin is a fixed point (so that
// comparing canonical forms is comparing origins) and never carries a path,
// credentials or upper case.
func FuzzParseOrigin(f *testing.F) {
	for _, tc := range originCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		canon, err := ParseOrigin(s)
		if err != nil {
			return
		}
		again, err := ParseOrigin(canon)
		if err != nil || again != canon {
			t.Fatalf("ParseOrigin(%q) = %q, which parses as %q, %v", s, canon, again, err)
		}
		for i := 0; i < len(canon); i++ {
			if c := canon[i]; c == '/' && i > len("https://") || c == '@' || c == '?' || c == '#' || 'A' <= c && c <= 'Z' {
				t.Fatalf("ParseOrigin(%q) = %q", s, canon)
			}
		}
	})
}
