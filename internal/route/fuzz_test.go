package route

import (
	"strings"
	"testing"
)

// FuzzLookup sends arbitrary Host headers and paths through Host and the
// routing table: the normalized host is lower-case, and a route is found
// only for its own host (or, for a wildcard, exactly one non-empty label
// more) and only under its own prefix.
func FuzzLookup(f *testing.F) {
	for _, s := range []string{"dash.example.com", "DASH.example.com.:443", "[::1]:80", "a.b.example.com", "example.com", "x.example.com..", ".example.com", "dash.example.com:", "[dash.example.com]"} {
		f.Add(s, "/api/x")
	}
	f.Add("status.example.com", "/health")
	table := New(testRoutes)
	f.Fuzz(func(t *testing.T, hostport, path string) {
		host := Host(hostport)
		if strings.ToLower(host) != host {
			t.Fatalf("Host(%q) = %q, not lower-case", hostport, host)
		}
		r := table.Lookup(host, path)
		if r == nil {
			return
		}
		if strings.HasSuffix(host, ".") {
			t.Fatalf("Lookup(%q) (from Host %q) matched a route with a final dot", host, hostport)
		}
		if suffix, ok := strings.CutPrefix(r.Host, "*."); ok {
			label, rest, found := strings.Cut(host, ".")
			if !found || label == "" || rest != suffix {
				t.Fatalf("Lookup(%q) matched wildcard %s", host, r.Host)
			}
		} else if r.Host != host {
			t.Fatalf("Lookup(%q) matched host %s", host, r.Host)
		}
		if r.PathPrefix != "" && !strings.HasPrefix(path, r.PathPrefix) && path+"/" != r.PathPrefix {
			t.Fatalf("Lookup(%q, %q) matched prefix %s", host, path, r.PathPrefix)
		}
	})
}
