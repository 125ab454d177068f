// Package config defines moat's configuration file: its schema, loading
// (YAML with ${ENV} expansion and *_file secrets), defaults and validation.
//
// Every error names the file and line it comes from, and all errors of a file
// are reported at once, so an operator fixes a broken file in one pass.
package config

import (
	"path/filepath"
	"time"
)

// Config is one whole, validated configuration file.
type Config struct {
	Server           Server                     `yaml:"server"`
	DataDir          string                     `yaml:"data_dir"`
	TLS              TLS                        `yaml:"tls"`
	Store            string                     `yaml:"store"`
	Counters         string                     `yaml:"counters"`
	CountersFail     string                     `yaml:"counters_fail"`
	Backends         map[string]*Backend        `yaml:"backends"`
	Identity         Identity                   `yaml:"identity"`
	SecurityPolicies map[string]*SecurityPolicy `yaml:"security_policies"`
	Routes           []*Route                   `yaml:"routes"`
	// SecretKeyFile names a file holding the instance key (base64 of 32
	// bytes, from `moat keys init`); MOAT_SECRET_KEY is the other way to
	// give it. Instances sharing a store need the same key.
	SecretKeyFile string  `yaml:"secret_key_file"`
	Usage         Usage   `yaml:"usage"`
	Tracing       Tracing `yaml:"tracing"`
	// StoreOutageGrace is how long a sign-in the store confirmed keeps
	// working from the cache while the store cannot be reached (default
	// 60s); past it the person gets a 503 page, never a sign-out.
	StoreOutageGrace Duration `yaml:"store_outage_grace"`

	// Path is the file the configuration was loaded from.
	Path string `yaml:"-"`
	// Warnings are problems that do not stop moat from starting but that an
	// operator should see (printed by `moat check` and logged by `serve`).
	Warnings []string `yaml:"-"`
}

// Server holds the listeners and connection limits.
type Server struct {
	// HTTPSAddr is the HTTPS listener, or "off" behind a platform that
	// terminates TLS itself (then http_mode must be serve).
	HTTPSAddr string `yaml:"https_addr"`
	HTTPAddr  string `yaml:"http_addr"`
	// HTTPMode is "redirect" (the default: plain HTTP only redirects to
	// HTTPS and answers ACME challenges) or "serve" (plain HTTP serves the
	// routes, for running behind a TLS-terminating load balancer such as
	// Cloud Run's; set trusted_proxies to that balancer's ranges).
	HTTPMode              HTTPMode `yaml:"http_mode"`
	InternalAddr          string   `yaml:"internal_addr"`
	TrustedProxies        []string `yaml:"trusted_proxies"`
	ProxyProtocol         bool     `yaml:"proxy_protocol"`
	DefaultSecurityPolicy string   `yaml:"default_security_policy"`
	// PublicURL is this instance's own URL, the issuer of its assertions.
	// Default: https:// plus the first routed host.
	PublicURL string `yaml:"public_url"`

	ReadHeaderTimeout Duration `yaml:"read_header_timeout"`
	IdleTimeout       Duration `yaml:"idle_timeout"`
	MaxHeaderBytes    int      `yaml:"max_header_bytes"`
	MaxConnsPerIP     int      `yaml:"max_conns_per_ip"`
	ShutdownGrace     Duration `yaml:"shutdown_grace"`
	HSTS              *bool    `yaml:"hsts"`
	LogLevel          string   `yaml:"log_level"`
	// LogFormat is "json" (slog's JSON lines) or "gcp" (Cloud Logging's
	// structured form: severity, message, httpRequest). The default is gcp
	// when K_SERVICE is set (Cloud Run), else json.
	LogFormat string `yaml:"log_format"`

	// BodyStallTimeout cuts a request body (a sign-in form, a proxied
	// upload) on which no byte arrives for this long.
	BodyStallTimeout Duration `yaml:"body_stall_timeout"`
	// BodyMinRate is the lowest average rate, in bytes per second, at
	// which a request body may arrive once its first body_stall_timeout
	// has passed; a slower one is cut, however steadily it trickles.
	BodyMinRate int64 `yaml:"body_min_rate"`
}

// Off is the value that turns a listener off (server.https_addr,
// server.http_addr).
const Off = "off"

// HTTPS reports whether moat terminates TLS itself (https_addr is not off).
func (s *Server) HTTPS() bool { return s.HTTPSAddr != Off }

// HTTPMode is server.http_mode: what the plain HTTP listener does.
type HTTPMode string

// HTTP modes.
const (
	// HTTPRedirect redirects to HTTPS and answers ACME challenges.
	HTTPRedirect HTTPMode = "redirect"
	// HTTPServe serves the routes, behind a TLS-terminating balancer.
	HTTPServe HTTPMode = "serve"
)

// TLS says where certificates come from: exactly one of self_signed,
// cert_file + key_file, or acme.
type TLS struct {
	SelfSigned bool   `yaml:"self_signed"`
	CertFile   string `yaml:"cert_file"`
	KeyFile    string `yaml:"key_file"`
	ACME       *ACME  `yaml:"acme"`
}

// ACME configures automatic certificates from an ACME CA (Let's Encrypt by
// default).
type ACME struct {
	Email        string `yaml:"email"`
	DirectoryURL string `yaml:"directory_url"`
	// CAFile is a PEM bundle to trust for the ACME directory itself (a
	// private CA such as Pebble's).
	CAFile string `yaml:"ca_file"`
	// RenewInterval is how often certificates are checked for renewal
	// (default 10m, as in Caddy's renew_interval).
	RenewInterval Duration `yaml:"renew_interval"`
}

// Backend is an upstream application: one URL, or several replicas of
// the app.
type Backend struct {
	URL string `yaml:"url"`
	// URLs are the replicas of a backend that runs several copies of the
	// app; set url or urls, not both. Each user sticks to one replica.
	URLs                  []string `yaml:"urls"`
	HealthPath            string   `yaml:"health_path"`
	HealthInterval        Duration `yaml:"health_interval"`
	DialTimeout           Duration `yaml:"dial_timeout"`
	ResponseHeaderTimeout Duration `yaml:"response_header_timeout"`
	// WebSocketMaxLifetime caps a proxied WebSocket's total life; 0 means no
	// cap (Google's load balancer caps it at timeoutSec, which cut Streamlit
	// sessions every 30 s: streamlit/streamlit#1386).
	WebSocketMaxLifetime Duration `yaml:"websocket_max_lifetime"`
	// WebSocketIdleTimeout closes a proxied WebSocket on which nothing has
	// moved in either direction for this long; 0 means no idle cap.
	WebSocketIdleTimeout Duration `yaml:"websocket_idle_timeout"`
	// PreserveHost sends the client's Host header to the backend (the
	// default) so that apps checking Origin against Host, like Streamlit
	// with enableXsrfProtection and enableCORS on, accept the request.
	PreserveHost *bool `yaml:"preserve_host"`
	// Command, when set, is the app moat runs for this backend on the
	// loopback port of URL, for as long as moat runs (internal/supervise):
	// restarted when it exits, stopped with moat, and left running by a
	// reload that does not change it.
	Command []string `yaml:"command"`
	// CommandDir is the command's working directory; default: the
	// directory of the configuration file.
	CommandDir string `yaml:"command_dir"`

	// CommandLine is where command is in the file, for messages.
	CommandLine int `yaml:"-"`
}

// Targets lists the backend's URLs: its replicas, or its one url.
func (b *Backend) Targets() []string {
	if len(b.URLs) > 0 {
		return b.URLs
	}
	return []string{b.URL}
}

// Route maps a host (and optional path prefix) to a backend, or, with
// forward_auth, to the ingress in front of moat that proxies to the app
// itself and asks moat at /_moat/auth whether each request may pass.
type Route struct {
	Host       string `yaml:"host"`
	PathPrefix string `yaml:"path_prefix"`
	Backend    string `yaml:"backend"`
	// ForwardAuth: moat does not proxy this route; an ingress (nginx
	// auth_request, Caddy forward_auth, Traefik ForwardAuth) asks moat
	// about each request and proxies to the app itself.
	ForwardAuth    bool     `yaml:"forward_auth"`
	Public         bool     `yaml:"public"`
	Title          string   `yaml:"title"`
	SecurityPolicy string   `yaml:"security_policy"`
	Login          []string `yaml:"login"`
	Allow          []Member `yaml:"allow"`
	MFA            MFAMode  `yaml:"mfa"`
	Bearer         bool     `yaml:"bearer"`
	MaxAge         Duration `yaml:"max_age"`
	MaxBodyBytes   int64    `yaml:"max_body_bytes"`
	// AllowedOrigins are the other origins (scheme://host[:port]) whose
	// pages may open WebSockets to this route; its own origin always may.
	// A browser's cross-site upgrade from anywhere else is refused, so a
	// page elsewhere cannot ride the user's cookie into the app.
	AllowedOrigins []string `yaml:"allowed_origins"`

	// Line is where the route starts in the file, for messages.
	Line int `yaml:"-"`
}

// Tracing is OpenTelemetry tracing of the front door's stages, exported
// over OTLP/HTTP; off unless OTLPEndpoint is set.
type Tracing struct {
	// OTLPEndpoint is the collector: http://collector:4318 (spans are
	// posted to its /v1/traces) or a full URL with a path.
	OTLPEndpoint string `yaml:"otlp_endpoint"`
	// SampleRatio is the share of requests traced, from 0 to 1 (default
	// 1); a caller's traceparent never raises it.
	SampleRatio *float64 `yaml:"sample_ratio"`
	// ServiceName is service.name in the traces (default "moat").
	ServiceName string `yaml:"service_name"`
}

// Ratio is the share of requests traced: sample_ratio, or 1.
func (t Tracing) Ratio() float64 {
	if t.SampleRatio == nil {
		return 1
	}
	return *t.SampleRatio
}

// StoreDSN is what the store opens: the store: setting, or the embedded
// SQLite database in data_dir.
func (c *Config) StoreDSN() string {
	if c.Store != "" {
		return c.Store
	}
	return filepath.Join(c.DataDir, "moat.db")
}

// Name is how logs, metrics and the assertion's audience name the route.
func (r *Route) Name() string { return r.Host + r.PathPrefix }

// Duration is a time.Duration written as "30s", "15m", "12h" or "7d".
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }
