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
	Tracing          Tracing                    `yaml:"tracing"`

	// Path is the file the configuration was loaded from.
	Path string `yaml:"-"`
	// Warnings are problems that do not stop moat from starting but that an
	// operator should see (printed by `moat check` and logged by `serve`).
	Warnings []string `yaml:"-"`
}

// Server holds the listeners and connection limits.
type Server struct {
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
}

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
}

// Backend is an upstream application.
type Backend struct {
	URL                   string   `yaml:"url"`
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
