package server

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/moat-dev/moat/internal/account"
	"github.com/moat-dev/moat/internal/admin"
	"github.com/moat-dev/moat/internal/auth"
	"github.com/moat-dev/moat/internal/clientip"
	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/forwardauth"
	"github.com/moat-dev/moat/internal/identity/access"
	"github.com/moat-dev/moat/internal/policy"
	"github.com/moat-dev/moat/internal/policy/wafhook"
	"github.com/moat-dev/moat/internal/proxy"
	"github.com/moat-dev/moat/internal/request"
	"github.com/moat-dev/moat/internal/route"
	"github.com/moat-dev/moat/internal/supervise"
	"github.com/moat-dev/moat/internal/usage"
	"github.com/moat-dev/moat/internal/web"
)

// websocketPolicyViolation closes a WebSocket whose session ended.
const websocketPolicyViolation = 1008

// world is everything built from one configuration: routes, backends and
// each route's handler chain. A reload builds a new world beside the old one
// and swaps it in only when it is whole; requests in flight finish in the
// world they started in.
type world struct {
	cfg      *config.Config
	routes   *route.Table
	clientIP *clientip.Resolver
	backends map[string]*proxy.Backend
	// chains holds each route's handler: policy, sign-in, then the proxy
	// (or, for a forward_auth route, forwardauth.Grant).
	chains map[*config.Route]http.Handler
	// forwardAuth answers an ingress's auth requests; nil when no route
	// has forward_auth.
	forwardAuth *forwardauth.Endpoint
	// own holds moat's own pages behind one route's security policy, for
	// the sign-in pages of a sign-in headed to that route.
	own map[*config.Route]http.Handler
	// hostWide holds moat's own pages behind the security policy of every
	// signed-in route of a host (keyed by the host's route), for pages
	// that speak for the whole host: the console, the account page.
	hostWide map[*config.Route]http.Handler
	auth     *auth.Service
	engine   *policy.Engine
	// identity is the process's sign-in state this world was built on.
	identity *auth.Process
	// apps are what the backends with a command run.
	apps   map[string]supervise.Spec
	cancel context.CancelFunc
}

// build assembles a world from a validated configuration.
func (s *Server) build(cfg *config.Config) (*world, error) {
	wd := &world{
		cfg:      cfg,
		routes:   route.New(cfg.Routes),
		backends: map[string]*proxy.Backend{},
		chains:   map[*config.Route]http.Handler{},
		own:      map[*config.Route]http.Handler{},
		hostWide: map[*config.Route]http.Handler{},
	}
	resolver, err := clientip.New(cfg.Server.TrustedProxies)
	if err != nil {
		return nil, err
	}
	wd.clientIP = resolver
	if wd.apps, err = s.appSpecs(cfg, s.jwksURL); err != nil {
		return nil, err
	}
	for name, bc := range cfg.Backends {
		b, err := proxy.New(name, bc, s.sockets)
		if err != nil {
			wd.close()
			return nil, fmt.Errorf("backend %s: %w", name, err)
		}
		b.Log = s.log
		wd.backends[name] = b
	}
	engine, err := policy.New(cfg, policy.Options{Counter: s.counter, NewInspector: wafhook.NewInspector, Logger: s.log})
	if err != nil {
		wd.close()
		return nil, err
	}
	svc, err := auth.New(cfg, s.identity)
	if err != nil {
		wd.close()
		return nil, err
	}
	wd.auth, wd.identity = svc, s.identity
	for _, b := range wd.backends {
		b.SetIdentity = svc.SetIdentity
	}
	// One second-factor service for the login step, the console and the
	// account page, so wrong codes count once wherever they are tried.
	id := s.identity
	console, err := admin.New(cfg, s.store, admin.Options{CSRF: id.CSRF, MFA: id.MFA, Throttle: id.Throttle, Limiter: id.Limiter, TokenUser: id.TokenUser,
		Ended: id.Ended, Logger: s.log})
	if err != nil {
		wd.close()
		return nil, err
	}
	acct, err := account.New(cfg, s.store, account.Options{CSRF: id.CSRF, MFA: id.MFA, Passkeys: id.Passkeys, Limiter: id.Limiter, SessionChanged: id.ReloadSession,
		Ended: id.Ended, Logger: s.log})
	if err != nil {
		wd.close()
		return nil, err
	}
	ownPages := http.NewServeMux()
	ownPages.Handle(web.StaticPrefix, web.Static())
	ownPages.Handle(moatPrefix, svc.Handler())
	ownPages.Handle(admin.Prefix, console)
	ownPages.Handle(account.Prefix, acct)
	ownPages.Handle(account.Prefix+"/", acct)
	for _, rt := range cfg.Routes {
		var h http.Handler
		if rt.ForwardAuth {
			// The ingress proxies; moat answers whether it may.
			h = forwardauth.Grant(svc.SetIdentity)
			wd.forwardAuth = &forwardauth.Endpoint{Trusted: resolver.IsTrusted, Authorize: wd.authorize, Log: s.log}
		} else {
			h = wd.backends[rt.Backend]
		}
		// Usage counts the requests that reach the app (or that the
		// ingress is told may), so behind Require.
		h = usage.Track(s.usage, h)
		if !rt.Public {
			h = svc.Require(rt, h)
		}
		// Identify runs first so that a policy can rate-limit by user; the
		// policy runs before Require so a denied client never sees the
		// login page.
		wd.chains[rt] = svc.Identify(engine.Handler(rt.SecurityPolicy, h))
		wd.own[rt] = svc.Identify(engine.Handler(rt.SecurityPolicy, ownPages))
	}
	for _, rt := range cfg.Routes {
		h := http.Handler(ownPages)
		for _, name := range hostPolicies(cfg, rt) {
			h = engine.Handler(name, h)
		}
		wd.hostWide[rt] = svc.Identify(h)
	}
	wd.engine = engine
	return wd, nil
}

// hostPolicies are the security policies a page speaking for rt's whole
// host runs under: every distinct policy of the host's signed-in routes
// ("" is server.default_security_policy), or rt's own on a host of public
// routes only.
func hostPolicies(cfg *config.Config, rt *config.Route) []string {
	var names []string
	for _, other := range cfg.Routes {
		if other.Host != rt.Host || other.Public {
			continue
		}
		name := other.SecurityPolicy
		if name == "" {
			name = cfg.Server.DefaultSecurityPolicy
		}
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		names = []string{rt.SecurityPolicy}
	}
	return names
}

// start begins the world's background work (backend health checks).
func (wd *world) start(parent context.Context) {
	ctx, cancel := context.WithCancel(parent)
	wd.cancel = cancel
	for _, b := range wd.backends {
		go b.Run(ctx)
	}
	go wd.auth.Run(ctx)
}

// close stops the world's background work and releases idle connections.
// Open WebSockets live on: they belong to the server's socket registry.
func (wd *world) close() {
	if wd.cancel != nil {
		wd.cancel()
	}
	for _, b := range wd.backends {
		b.Close()
	}
}

// ready reports each backend's health for /readyz (a backend is ready
// while any of its replicas is), and each replica's.
func (wd *world) ready() (backends map[string]bool, replicas map[string]map[string]bool, all bool) {
	backends, replicas, all = map[string]bool{}, map[string]map[string]bool{}, true
	for name, b := range wd.backends {
		ok := b.Healthy()
		backends[name] = ok
		replicas[name] = b.ReplicaHealth()
		all = all && ok
	}
	return backends, replicas, all
}

// websocketReconnect closes a WebSocket whose app was told an identity that
// has changed, asking the client to connect again: 1012, "service restart"
// (RFC 6455 section 7.4.2, IANA registry). The page reconnects, and the app
// reads the new identity. Streamlit's client (1.67) reconnects after any
// close and, since the identity differs, starts a fresh session that shows
// the new st.user. (websocketPolicyViolation ends a socket whose sign-in
// ended or whose route no longer admits the user.)
const websocketReconnect = 1012

// recheckTimeout bounds one re-check of the sockets.
const recheckTimeout = 30 * time.Second

// recheckSockets re-checks the open WebSockets of a user (of everyone when
// userID is ""), in the serving world: a socket whose sign-in ended is
// closed (1008, "session ended"); one whose route's allow list no longer
// admits the user is closed (1008, "access removed"); one whose route
// still admits them but whose app was told another identity (groups,
// name) is asked to reconnect (1012, "identity changed"), so an app that
// reads the identity when the socket connects, as Streamlit does, reads it
// again; the others stay open. A user the store cannot tell about now
// keeps their sockets.
func (s *Server) recheckSockets(userID string) {
	ctx, cancel := context.WithTimeout(context.Background(), recheckTimeout)
	defer cancel()
	wd := s.world.Load()
	if wd == nil {
		return // not serving yet: no socket is open
	}
	now := time.Now()
	type holder struct {
		u     request.User
		sess  *request.Session
		alive bool
	}
	holders := map[string]holder{}
	rules := map[string]*access.Rule{}
	closed := map[string]int{}
	defer func() {
		for reason, n := range closed {
			s.log.Info("closed WebSockets after a change of who may use them", "user_id", userID, "reason", reason, "count", n)
		}
	}()
	s.sockets.Recheck(userID, func(sock proxy.Socket) (code int, reason string) {
		defer func() {
			if code != 0 {
				closed[reason]++
			}
		}()
		h, ok := holders[sock.Session]
		if !ok {
			h.u, h.sess, h.alive = wd.auth.Holder(ctx, sock.Session, sock.LastActive)
			holders[sock.Session] = h
		}
		switch {
		case ctx.Err() != nil:
			return 0, ""
		case !h.alive:
			return websocketPolicyViolation, "session ended"
		case !h.u.SignedIn():
			return 0, "" // cannot tell now: keep it
		}
		rule, ok := rules[sock.Route]
		if !ok {
			if rt := wd.routeNamed(sock.Route); rt != nil && !rt.Public {
				r := wd.auth.RouteRule(rt)
				// A change of who may enter, not of how fresh a
				// sign-in must be: max_age is asked of the next request.
				r.MaxAge = 0
				rule = &r
			}
			rules[sock.Route] = rule
		}
		switch {
		case rule == nil:
			return 0, "" // a public route, or one a reload removed
		case rule.Check(h.u, h.sess, now).Refusal != access.Pass:
			return websocketPolicyViolation, "access removed"
		case h.u.Fingerprint() != sock.Fingerprint:
			return websocketReconnect, "identity changed"
		}
		return 0, ""
	})
}

// routeNamed returns the route whose name (config.Route.Name) is name, or
// nil.
func (wd *world) routeNamed(name string) *config.Route {
	for _, rt := range wd.cfg.Routes {
		if rt.Name() == name {
			return rt
		}
	}
	return nil
}
