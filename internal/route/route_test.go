package route

import (
	"testing"

	"github.com/moat-dev/moat/internal/config"
)

var testRoutes = []*config.Route{
	{Host: "dash.example.com", Backend: "root"},
	{Host: "dash.example.com", PathPrefix: "/api/", Backend: "api"},
	{Host: "dash.example.com", PathPrefix: "/api/v2/", Backend: "api2"},
	{Host: "*.example.com", Backend: "wild"},
	{Host: "status.example.com", PathPrefix: "/health/", Backend: "health"},
}

func TestLookup(t *testing.T) {
	table := New(testRoutes)
	tests := []struct {
		name, host, path, want string
	}{
		{"exact host with no prefix matches any path", "dash.example.com", "/anything", "root"},
		{"longest prefix wins", "dash.example.com", "/api/v2/x", "api2"},
		{"shorter prefix when the longer does not match", "dash.example.com", "/api/v1", "api"},
		{"prefix without its trailing slash matches", "dash.example.com", "/api", "api"},
		{"wildcard matches one label", "foo.example.com", "/", "wild"},
		{"wildcard does not match two labels", "a.b.example.com", "/", ""},
		{"wildcard does not match the bare domain", "example.com", "/", ""},
		{"wildcard does not match an empty label", ".example.com", "/", ""},
		{"exact host beats wildcard even when its path misses", "status.example.com", "/other", ""},
		{"exact host path prefix", "status.example.com", "/health/live", "health"},
		{"unknown host", "evil.test", "/", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ""
			if r := table.Lookup(tt.host, tt.path); r != nil {
				got = r.Backend
			}
			if got != tt.want {
				t.Errorf("Lookup(%q, %q) = %q, want %q", tt.host, tt.path, got, tt.want)
			}
		})
	}
}

func TestHostNormalizesPortCaseAndDot(t *testing.T) {
	for in, want := range map[string]string{
		"Dash.Example.com:8443": "dash.example.com",
		"dash.example.com.":     "dash.example.com",
		"[::1]:443":             "::1",
		"127.0.0.1":             "127.0.0.1",
	} {
		if got := Host(in); got != want {
			t.Errorf("Host(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestHostRouteFallsBackToShortestPrefix(t *testing.T) {
	table := New(testRoutes)
	if r := table.HostRoute("status.example.com"); r == nil || r.Backend != "health" {
		t.Fatalf("HostRoute(status) = %v, want the /health/ route", r)
	}
	if r := table.HostRoute("dash.example.com"); r == nil || r.Backend != "root" {
		t.Fatalf("HostRoute(dash) = %v, want the root route", r)
	}
}
