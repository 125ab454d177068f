package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Defaults written out, so that `moat check` and the README agree.
const (
	DefaultHTTPSAddr         = ":443"
	DefaultHTTPAddr          = ":80"
	DefaultInternalAddr      = "127.0.0.1:9090"
	DefaultDataDir           = "/var/lib/moat"
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 2 * time.Minute
	DefaultMaxHeaderBytes    = 64 << 10
	DefaultShutdownGrace     = 15 * time.Second
	DefaultHealthInterval    = 10 * time.Second
	DefaultDialTimeout       = 5 * time.Second
	DefaultResponseTimeout   = 60 * time.Second
	DefaultMaxConnsPerIP     = 1000
	DefaultMaxBodyBytes      = 32 << 20
	// DefaultBodyStallTimeout and DefaultBodyMinRate are Apache
	// mod_reqtimeout's defaults for request bodies (body=20,MinRate=500):
	// a 200 MB upload passes at any speed above 0.5 KB/s.
	DefaultBodyStallTimeout = 20 * time.Second
	DefaultBodyMinRate      = 500
	// DefaultStoreOutageGrace is how long cached sign-ins ride out a
	// store outage (store_outage_grace).
	DefaultStoreOutageGrace = 60 * time.Second
)

func applyDefaults(c *Config) {
	s := &c.Server
	def(&s.HTTPSAddr, DefaultHTTPSAddr)
	def(&s.HTTPAddr, DefaultHTTPAddr)
	if s.HTTPMode == "" {
		s.HTTPMode = HTTPRedirect
	}
	def(&s.InternalAddr, DefaultInternalAddr)
	def(&s.LogLevel, "info")
	if s.LogFormat == "" {
		s.LogFormat = "json"
		if os.Getenv("K_SERVICE") != "" {
			s.LogFormat = "gcp" // Cloud Run sets K_SERVICE
		}
	}
	defDur(&s.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	defDur(&s.IdleTimeout, DefaultIdleTimeout)
	defDur(&s.ShutdownGrace, DefaultShutdownGrace)
	defDur(&s.BodyStallTimeout, DefaultBodyStallTimeout)
	if s.BodyMinRate == 0 {
		s.BodyMinRate = DefaultBodyMinRate
	}
	if s.MaxHeaderBytes == 0 {
		s.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if s.MaxConnsPerIP == 0 {
		s.MaxConnsPerIP = DefaultMaxConnsPerIP
	}
	if s.HSTS == nil {
		t := true
		s.HSTS = &t
	}
	def(&c.DataDir, DefaultDataDir)
	if s.HTTPS() && !c.TLS.SelfSigned && c.TLS.CertFile == "" && c.TLS.KeyFile == "" && c.TLS.ACME == nil {
		c.TLS.SelfSigned = true
		c.Warnings = append(c.Warnings, "tls: no certificate source set, so moat uses a self-signed certificate; browsers will warn (set tls.acme or tls.cert_file + tls.key_file)")
	}
	def(&c.CountersFail, "open")
	defDur(&c.StoreOutageGrace, DefaultStoreOutageGrace)
	for _, b := range c.Backends {
		if b == nil {
			continue
		}
		defDur(&b.HealthInterval, DefaultHealthInterval)
		defDur(&b.DialTimeout, DefaultDialTimeout)
		defDur(&b.ResponseHeaderTimeout, DefaultResponseTimeout)
		if b.PreserveHost == nil {
			t := true
			b.PreserveHost = &t
		}
	}
	for _, r := range c.Routes {
		if r == nil {
			continue
		}
		r.Host = strings.ToLower(strings.TrimSuffix(r.Host, "."))
		if r.MaxBodyBytes == 0 {
			r.MaxBodyBytes = DefaultMaxBodyBytes
		}
	}
	applyIdentityDefaults(&c.Identity)
	applyUsageDefaults(&c.Usage)
}

func def(s *string, v string) {
	if *s == "" {
		*s = v
	}
}

func defDur(d *Duration, v time.Duration) {
	if *d == 0 {
		*d = Duration(v)
	}
}

// validator checks a decoded, defaulted Config and records every problem.
type validator struct {
	*loader
	cfg      *Config
	warnings []string
}

func (v *validator) warn(path, format string, args ...any) {
	v.warnings = append(v.warnings, Problem{File: v.file, Line: v.line(path), Path: path, Msg: fmt.Sprintf(format, args...)}.String())
}

func (v *validator) validate() {
	v.validateServer()
	v.validateTLS()
	v.validateBackends()
	v.validateIdentity()
	v.validatePolicies()
	v.validateRoutes()
	v.validateUsage()
	v.validateTracing()
}

// validateTracing checks the collector's URL and the sample ratio.
func (v *validator) validateTracing() {
	t := &v.cfg.Tracing
	if t.OTLPEndpoint == "" {
		if t.SampleRatio != nil || t.ServiceName != "" {
			v.errorAt("tracing", "tracing needs otlp_endpoint, the collector to send spans to (such as http://127.0.0.1:4318)")
		}
		return
	}
	u, err := url.Parse(t.OTLPEndpoint)
	switch {
	case err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
		v.errorAt("tracing.otlp_endpoint", "invalid collector URL %q: write http://host:4318 or https://host/v1/traces", t.OTLPEndpoint)
	case u.User != nil || u.RawQuery != "" || u.Fragment != "":
		v.errorAt("tracing.otlp_endpoint", "a collector URL takes no credentials, query or fragment (headers go in OTEL_EXPORTER_OTLP_HEADERS)")
	case u.Scheme == "http" && !isLoopbackHost(u.Hostname()):
		v.warn("tracing.otlp_endpoint", "spans (client addresses, user ids, paths) go to %s unencrypted; use https:// unless the network is private", u.Host)
	}
	if r := t.SampleRatio; r != nil && (*r < 0 || *r > 1 || *r != *r) {
		v.errorAt("tracing.sample_ratio", "must be between 0 and 1 (the share of requests traced), not %g", *r)
	}
}

func (v *validator) validateServer() {
	s := &v.cfg.Server
	for _, a := range []struct{ path, addr string }{
		{"server.https_addr", s.HTTPSAddr}, {"server.http_addr", s.HTTPAddr}, {"server.internal_addr", s.InternalAddr},
	} {
		if a.addr == Off && a.path != "server.internal_addr" {
			continue
		}
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			v.errorAt(a.path, "invalid listen address %q: write host:port or :port", a.addr)
		}
	}
	// Expressions in security policies are cost-bounded for inputs up to
	// 64 KiB (internal/policy), so headers may not grow past that.
	if s.MaxHeaderBytes < 4<<10 || s.MaxHeaderBytes > 64<<10 {
		v.errorAt("server.max_header_bytes", "must be between 4096 and 65536")
	}
	if d := s.BodyStallTimeout.D(); d < 100*time.Millisecond || d > time.Hour {
		v.errorAt("server.body_stall_timeout", "must be between 100ms and 1h, such as 20s")
	}
	if s.BodyMinRate < 1 || s.BodyMinRate > 1<<30 {
		v.errorAt("server.body_min_rate", "must be between 1 and 1073741824 bytes per second, such as 500")
	}
	if host, _, err := net.SplitHostPort(s.InternalAddr); err == nil {
		if ip, err := netip.ParseAddr(host); host == "" || err == nil && !ip.IsLoopback() {
			v.warn("server.internal_addr", "%s is reachable from other machines; metrics and health should stay on loopback or a private network", s.InternalAddr)
		}
	}
	for i, p := range s.TrustedProxies {
		if _, err := ParsePrefix(p); err != nil {
			v.errorAt(fmt.Sprintf("server.trusted_proxies[%d]", i), "%v", err)
		}
	}
	if s.PublicURL != "" {
		u, err := url.Parse(s.PublicURL)
		if err != nil || u.Scheme != "https" && u.Scheme != "http" || u.Host == "" {
			v.errorAt("server.public_url", "invalid URL %q: write https://host", s.PublicURL)
		}
	}
	switch {
	case s.HTTPS():
	case s.HTTPAddr == Off:
		v.errorAt("server.https_addr", "is off and so is server.http_addr, so nobody could reach moat: turn one on")
	case s.HTTPMode != "serve":
		v.errorAt("server.https_addr", "is off, so plain HTTP must serve the routes: set server.http_mode: serve (for a platform that terminates TLS, such as Cloud Run or a TLS-terminating ingress)")
	}
	switch s.HTTPMode {
	case HTTPRedirect:
	case HTTPServe:
		if v.cfg.TLS.ACME != nil {
			v.errorAt("server.http_mode", "serve cannot be combined with tls.acme, whose HTTP-01 challenges need the redirecting listener")
		}
		if s.HTTPAddr == "off" {
			v.errorAt("server.http_mode", "serve needs server.http_addr")
		}
	default:
		v.errorAt("server.http_mode", "must be redirect or serve, not %q", s.HTTPMode)
	}
	switch s.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		v.errorAt("server.log_level", "unknown log level %q: use debug, info, warn or error", s.LogLevel)
	}
	if s.DefaultSecurityPolicy != "" && v.cfg.SecurityPolicies[s.DefaultSecurityPolicy] == nil {
		v.errorAt("server.default_security_policy", "unknown security policy %q%s", s.DefaultSecurityPolicy, known(v.cfg.SecurityPolicies))
	}
	switch s.LogFormat {
	case "json", "gcp":
	default:
		v.errorAt("server.log_format", "unknown log format %q: use json, or gcp for Cloud Logging", s.LogFormat)
	}
	if f := v.cfg.SecretKeyFile; f != "" {
		if fh, err := os.Open(f); err != nil {
			v.errorAt("secret_key_file", "cannot read the instance key: %v (make one with: moat keys init --file %s)", err, f)
		} else {
			fh.Close()
		}
	}
	switch v.cfg.CountersFail {
	case "open", "closed":
	default:
		v.errorAt("counters_fail", "must be open or closed, not %q", v.cfg.CountersFail)
	}
	if g := v.cfg.StoreOutageGrace.D(); g < time.Second || g > time.Hour {
		v.errorAt("store_outage_grace", "must be between 1s and 1h, such as 60s: how long signed-in people keep working from the cache while the store is unreachable")
	}
}

// ParsePrefix parses a CIDR or a single address (taken as /32 or /128).
func ParsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("invalid IP range %q: write a CIDR such as 203.0.113.0/24 or 2001:db8::/32", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid IP address %q: write an address or a CIDR such as 203.0.113.0/24", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func (v *validator) validateTLS() {
	t := &v.cfg.TLS
	if !v.cfg.Server.HTTPS() {
		if t.SelfSigned || t.CertFile != "" || t.KeyFile != "" || t.ACME != nil {
			v.errorAt("tls", "has no use while server.https_addr is off: remove it (the platform in front terminates TLS)")
		}
		return
	}
	modes := 0
	if t.SelfSigned {
		modes++
	}
	if t.CertFile != "" || t.KeyFile != "" {
		modes++
		if t.CertFile == "" || t.KeyFile == "" {
			v.errorAt("tls", "cert_file and key_file go together: set both")
		}
	}
	if t.ACME != nil {
		modes++
		if t.ACME.DirectoryURL != "" {
			if u, err := url.Parse(t.ACME.DirectoryURL); err != nil || u.Scheme != "https" {
				v.errorAt("tls.acme.directory_url", "invalid ACME directory %q: it must be an https:// URL", t.ACME.DirectoryURL)
			}
		}
		if t.ACME.Email != "" && !strings.Contains(t.ACME.Email, "@") {
			v.errorAt("tls.acme.email", "invalid email %q", t.ACME.Email)
		}
		if d := t.ACME.RenewInterval.D(); d != 0 && (d < time.Second || d > 24*time.Hour) {
			v.errorAt("tls.acme.renew_interval", "must be between 1s and 24h, such as 10m")
		}
		for i, r := range v.cfg.Routes {
			if r != nil && strings.HasPrefix(r.Host, "*.") {
				v.errorAt(fmt.Sprintf("routes[%d].host", i), "ACME HTTP-01 cannot issue a certificate for the wildcard %q: use tls.cert_file and tls.key_file", r.Host)
			}
		}
	}
	if modes > 1 {
		v.errorAt("tls", "choose one certificate source: self_signed, cert_file + key_file, or acme")
	}
}

var backendName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

func (v *validator) validateBackends() {
	for _, name := range sortedKeys(v.cfg.Backends) {
		b := v.cfg.Backends[name]
		path := "backends." + name
		if !backendName.MatchString(name) {
			v.errorAt(path, "invalid backend name %q: use lower-case letters, digits, - and _", name)
		}
		if b == nil {
			v.errorAt(path, "backend has no settings: set url")
			continue
		}
		switch {
		case b.URL != "" && b.URLs != nil:
			v.errorAt(path+".urls", "set url (one app) or urls (its replicas), not both")
		case b.URLs != nil:
			if len(b.URLs) == 0 {
				v.errorAt(path+".urls", "urls is empty: list the replicas, such as [http://10.0.0.1:8501, http://10.0.0.2:8501]")
			}
			seen := map[string]bool{}
			for i, raw := range b.URLs {
				p := fmt.Sprintf("%s.urls[%d]", path, i)
				v.validateBackendURL(p, raw)
				if seen[raw] {
					v.errorAt(p, "replica %q is listed twice", raw)
				}
				seen[raw] = true
			}
		case b.URL == "":
			v.errorAt(path, "url is required, such as http://127.0.0.1:8501 (or urls, for replicas)")
		default:
			v.validateBackendURL(path+".url", b.URL)
		}
		if b.HealthPath != "" && !strings.HasPrefix(b.HealthPath, "/") {
			v.errorAt(path+".health_path", "must start with /, such as /_stcore/health")
		}
		v.validateCommand(path, b)
	}
}

// validateCommand checks a backend's command: moat starts it on the
// loopback port of the backend's url, so the url must name one.
func (v *validator) validateCommand(path string, b *Backend) {
	if len(b.Command) == 0 {
		if b.CommandDir != "" {
			v.errorAt(path+".command_dir", "has no effect without command")
		}
		return
	}
	if err := b.CheckCommand(); err != nil {
		v.errorAt(path+".command", "%v", err)
	}
	dir, err := filepath.Abs(filepath.Dir(v.file))
	if err != nil {
		dir = filepath.Dir(v.file)
	}
	if b.CommandDir == "" {
		b.CommandDir = dir
	} else if !filepath.IsAbs(b.CommandDir) {
		b.CommandDir = filepath.Join(dir, b.CommandDir)
	}
	if fi, err := os.Stat(b.CommandDir); err != nil || !fi.IsDir() {
		v.errorAt(path+".command_dir", "%s is not a directory", b.CommandDir)
	}
}

// CheckCommand reports what stops moat from running b's command: an empty
// program, or a url that is not http:// on a loopback address with a port
// (moat starts the app there, reachable by moat alone).
func (b *Backend) CheckCommand() error {
	if len(b.Command) == 0 || strings.TrimSpace(b.Command[0]) == "" {
		return errors.New("the command is empty: write it as a list, such as [streamlit, run, app.py]")
	}
	if len(b.URLs) > 0 {
		return errors.New("moat runs one copy of the command, on the port of url; a backend with replicas (urls) cannot have one: run each replica yourself, or give it url")
	}
	u, err := url.Parse(b.URL)
	if err != nil || u.Scheme != "http" || u.Port() == "" || !isLoopbackHost(u.Hostname()) {
		return fmt.Errorf("moat runs the command on the port of url, so url must be http://127.0.0.1:PORT (a loopback address and a port), not %q", b.URL)
	}
	return nil
}

// validateBackendURL checks one backend or replica URL.
func (v *validator) validateBackendURL(path, raw string) {
	u, err := url.Parse(raw)
	switch {
	case raw == "":
		v.errorAt(path, "empty URL: write http://host:port or https://host:port")
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		v.errorAt(path, "invalid backend URL %q: write http://host:port or https://host:port", raw)
	case u.User != nil:
		v.errorAt(path, "credentials in a backend URL are not supported")
	case u.RawQuery != "" || u.Fragment != "":
		v.errorAt(path, "a backend URL takes no query or fragment")
	}
}

var hostLabel = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// validHost accepts a DNS name, "localhost", an IP address, or "*.name".
func validHost(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	h = strings.TrimPrefix(h, "*.")
	if h == "" || len(h) > 253 {
		return false
	}
	for _, l := range strings.Split(h, ".") {
		if !hostLabel.MatchString(l) {
			return false
		}
	}
	return true
}

func (v *validator) validateRoutes() {
	c := v.cfg
	if len(c.Routes) == 0 {
		v.errorAt("routes", "no routes: add at least one route with a host and a backend")
	}
	seen := map[string]int{}
	for i, r := range c.Routes {
		path := fmt.Sprintf("routes[%d]", i)
		if r == nil {
			v.errorAt(path, "empty route: set host and backend")
			continue
		}
		switch {
		case r.Host == "":
			v.errorAt(path, "host is required, such as dash.example.com or *.example.com")
		case strings.Contains(r.Host, ":") && !strings.Contains(r.Host, "::"):
			v.errorAt(path+".host", "invalid host %q: leave the port out; routes match any listener", r.Host)
		case !validHost(r.Host):
			v.errorAt(path+".host", "invalid host %q: write a DNS name such as dash.example.com, or *.example.com", r.Host)
		}
		if r.PathPrefix != "" && !strings.HasPrefix(r.PathPrefix, "/") {
			v.errorAt(path+".path_prefix", "must start with /, such as /health/")
		}
		if strings.HasPrefix(r.PathPrefix, "/_moat") {
			v.errorAt(path+".path_prefix", "/_moat/ is moat's own; choose another prefix")
		}
		key := r.Host + " " + r.PathPrefix
		if j, dup := seen[key]; dup {
			v.errorAt(path, "same host and path_prefix as routes[%d]", j)
		}
		seen[key] = i
		switch {
		case r.ForwardAuth && r.Backend != "":
			v.errorAt(path+".backend", "a forward_auth route has no backend: the ingress in front of moat proxies to the app; remove backend (or forward_auth, for moat to proxy)")
		case r.ForwardAuth:
			v.validateForwardAuth(path, r)
		case r.Backend == "":
			v.errorAt(path, "backend is required%s; or set forward_auth: true when an ingress in front of moat proxies to the app", known(c.Backends))
		case c.Backends[r.Backend] == nil:
			v.errorAt(path+".backend", "unknown backend %q%s", r.Backend, known(c.Backends))
		}
		if r.SecurityPolicy != "" && c.SecurityPolicies[r.SecurityPolicy] == nil {
			v.errorAt(path+".security_policy", "unknown security policy %q%s", r.SecurityPolicy, known(c.SecurityPolicies))
		}
		if r.MaxBodyBytes < 0 {
			v.errorAt(path+".max_body_bytes", "must not be negative")
		}
		// Stored canonical, so the proxy compares an Origin header with
		// plain string equality.
		for j, o := range r.AllowedOrigins {
			canon, err := ParseOrigin(o)
			if err != nil {
				v.errorAt(fmt.Sprintf("%s.allowed_origins[%d]", path, j), "invalid origin %q: %v, such as https://dash.example.com", o, err)
				continue
			}
			r.AllowedOrigins[j] = canon
		}
		v.validateRouteAccess(path, r)
	}
}

// validateForwardAuth checks a route an ingress proxies: moat answers its
// auth requests only from server.trusted_proxies, and a bearer token would
// reach the app through the ingress, which moat cannot strip it from.
func (v *validator) validateForwardAuth(path string, r *Route) {
	if len(v.cfg.Server.TrustedProxies) == 0 {
		v.errorAt(path+".forward_auth", "forward_auth needs server.trusted_proxies: list the ingress's addresses, the only peers whose auth requests moat answers")
	}
	if r.Bearer {
		v.errorAt(path+".bearer", "a forward_auth route takes no bearer tokens: the ingress would pass the Authorization header, token and all, on to the app")
	}
}

// validateRouteAccess makes the route fail closed: it is public only when it
// says so, and otherwise it must name how people sign in and who may enter.
func (v *validator) validateRouteAccess(path string, r *Route) {
	if r.Public {
		if len(r.Login) > 0 || len(r.Allow) > 0 || r.MFA != "" || r.Bearer {
			v.errorAt(path+".public", "a public route takes no login, allow, mfa or bearer: remove public: true or those keys")
		}
		return
	}
	if len(r.Login) == 0 {
		v.errorAt(path, "route is not public and has no sign-in: add login: [password] (or an SSO provider) with an allow list, or set public: true")
		return
	}
	v.validateLogin(path, r)
}

// known lists the names of a map for an error message.
func known[T any](m map[string]T) string {
	if len(m) == 0 {
		return " (none are defined)"
	}
	return " (known: " + strings.Join(sortedKeys(m), ", ") + ")"
}

func sortedKeys[T any](m map[string]T) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
