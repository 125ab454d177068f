package server

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/moat-dev/moat/internal/auth/allow"
	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/request"
	"github.com/moat-dev/moat/internal/route"
)

// Explain tells which route and security policies a request would meet,
// and how each rule evaluates, by driving the world serve builds for cfg in
// a dry run: the same routing on the same cleaned path, the same choice of
// policy for moat's own pages, the same engine (issue 11: explain had its
// own routing and path cleaning). Nothing listens, nothing is counted, the
// WAF is not run.
//
// With a user, it also says whether the route's allow list admits them,
// and which members it tried when it does not.
func Explain(cfg *config.Config, req ExplainRequest, log *slog.Logger) (string, error) {
	host, ip, target, method, headers := req.Host, req.IP, req.Path, req.Method, req.Headers
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return "", fmt.Errorf("explain: invalid client IP %q", ip)
	}
	addr = addr.Unmap()
	if target == "" {
		target = "/"
	}
	if method == "" {
		method = http.MethodGet
	}
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return "", fmt.Errorf("explain: invalid path %q: %w", target, err)
	}
	wd, done, err := throwawayWorld(cfg, log)
	if err != nil {
		return "", err
	}
	defer done()
	h := route.Host(host)
	r, err := http.NewRequest(method, "https://"+h+u.RequestURI(), nil)
	if err != nil {
		return "", fmt.Errorf("explain: %w", err)
	}
	r.Host = host
	for k, vs := range headers {
		for _, v := range vs {
			r.Header.Add(k, v)
		}
	}
	r.RemoteAddr = netip.AddrPortFrom(addr, 443).String()
	info := &request.Info{ID: "explain", ClientIP: addr, Scheme: "https"}
	r = request.With(r, info)

	var b strings.Builder
	fmt.Fprintf(&b, "request: %s https://%s%s from %s\n", method, h, u.RequestURI(), addr)
	clean := cleanPath(u.Path)
	if clean != u.Path {
		fmt.Fprintf(&b, "path:    not clean: moat answers a redirect to %s (GET) or 400; explained for %s\n", clean, clean)
	}
	if strings.HasPrefix(clean, moatPrefix) {
		hostRt := wd.routes.HostRoute(h)
		if hostRt == nil {
			fmt.Fprintf(&b, "route:   none matches host %q (moat answers 404)\n", h)
			return b.String(), nil
		}
		rt, hostWide := wd.ownPage(r, h, clean, hostRt)
		info.Route = rt
		if !hostWide {
			fmt.Fprintf(&b, "route:   moat's own page %s, under the policy of %s (routes entry at line %d)\n", clean, rt.Name(), rt.Line)
			wd.engine.Explain(&b, rt.SecurityPolicy, "the route's security_policy", r)
			return b.String(), nil
		}
		fmt.Fprintf(&b, "route:   moat's own page %s, for the whole host: it passes the policy of every signed-in route of %s\n", clean, hostRt.Host)
		for _, name := range hostPolicies(cfg, hostRt) {
			wd.engine.Explain(&b, name, "a route of the host", r)
		}
		return b.String(), nil
	}
	rt := wd.routes.Lookup(h, clean)
	if rt == nil {
		fmt.Fprintf(&b, "route:   none matches host %q and path %q: moat answers 404, before any policy\n", h, clean)
		return b.String(), nil
	}
	info.Route = rt
	backend := "backend " + rt.Backend
	if rt.ForwardAuth {
		backend = "forward_auth: the ingress proxies, moat answers its auth requests"
	}
	fmt.Fprintf(&b, "route:   %s (routes entry at line %d, %s)\n", rt.Name(), rt.Line, backend)
	wd.engine.Explain(&b, rt.SecurityPolicy, "the route's security_policy", r)
	if req.User != nil {
		explainAccess(&b, rt, *req.User)
	}
	return b.String(), nil
}

// ExplainRequest is the request Explain drives through the world.
type ExplainRequest struct {
	Host, IP, Path, Method string
	Headers                http.Header
	// User, when set, is who the request is signed in as, for the route's
	// allow list.
	User *request.User
}

// explainAccess writes what the route's allow list says of u.
func explainAccess(b *strings.Builder, rt *config.Route, u request.User) {
	if rt.Public {
		b.WriteString("access:  public route: no sign-in\n")
		return
	}
	list, err := allow.FromConfig(rt.Allow)
	if err != nil {
		fmt.Fprintf(b, "access:  the allow list is unusable (%v): everyone is refused\n", err)
		return
	}
	if ok, tried := list.Check(u); !ok {
		fmt.Fprintf(b, "access:  %s is refused (403): tried %s\n", u.Email, strings.Join(tried, ", "))
		return
	}
	fmt.Fprintf(b, "access:  %s is admitted by the allow list\n", u.Email)
}
