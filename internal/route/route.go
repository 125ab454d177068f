// Package route maps a request's host and path to a configured route: exact
// hosts before wildcards, then the longest path prefix.
package route

import (
	"net"
	"sort"
	"strings"

	"github.com/moat-dev/moat/internal/config"
)

// Table finds the route for a host and path. It is immutable once built, so
// requests read it without locks while a reload builds the next one.
type Table struct {
	exact    map[string][]*config.Route // by host, longest prefix first
	wildcard map[string][]*config.Route // by the suffix after "*.", longest prefix first
	hosts    []string
}

// New builds a Table from validated routes.
func New(routes []*config.Route) *Table {
	t := &Table{exact: map[string][]*config.Route{}, wildcard: map[string][]*config.Route{}}
	for _, r := range routes {
		if suffix, ok := strings.CutPrefix(r.Host, "*."); ok {
			t.wildcard[suffix] = append(t.wildcard[suffix], r)
		} else {
			t.exact[r.Host] = append(t.exact[r.Host], r)
		}
	}
	for _, m := range []map[string][]*config.Route{t.exact, t.wildcard} {
		for _, rs := range m {
			sort.SliceStable(rs, func(i, j int) bool { return len(rs[i].PathPrefix) > len(rs[j].PathPrefix) })
		}
	}
	seen := map[string]bool{}
	for _, r := range routes {
		if !seen[r.Host] {
			seen[r.Host] = true
			t.hosts = append(t.hosts, r.Host)
		}
	}
	return t
}

// Hosts lists the routed hosts (wildcards as written), in file order.
func (t *Table) Hosts() []string { return t.hosts }

// Host normalizes a Host header: port removed, lower-case, no trailing dot.
func Host(hostport string) string {
	h := hostport
	if host, _, err := net.SplitHostPort(hostport); err == nil {
		h = host
	} else {
		h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	}
	return strings.TrimSuffix(strings.ToLower(h), ".")
}

// Lookup returns the route for host (already normalized with Host) and a
// clean path, or nil. A wildcard matches exactly one label, as in TLS.
func (t *Table) Lookup(host, path string) *config.Route {
	if rs, ok := t.exact[host]; ok {
		return match(rs, path)
	}
	// An empty first label (".example.com") is no label (found by
	// FuzzLookup).
	if label, suffix, ok := strings.Cut(host, "."); ok && label != "" {
		if rs, ok := t.wildcard[suffix]; ok {
			return match(rs, path)
		}
	}
	return nil
}

// HostRoute returns the route that speaks for a host as a whole (moat's own
// pages under /_moat/ use its security policy): the route matching "/", or
// else the host's route with the shortest prefix.
func (t *Table) HostRoute(host string) *config.Route {
	if r := t.Lookup(host, "/"); r != nil {
		return r
	}
	rs, ok := t.exact[host]
	if !ok {
		if label, suffix, found := strings.Cut(host, "."); found && label != "" {
			rs = t.wildcard[suffix]
		}
	}
	if len(rs) == 0 {
		return nil
	}
	return rs[len(rs)-1]
}

func match(rs []*config.Route, path string) *config.Route {
	for _, r := range rs {
		if r.PathPrefix == "" || strings.HasPrefix(path, r.PathPrefix) || path+"/" == r.PathPrefix {
			return r
		}
	}
	return nil
}
