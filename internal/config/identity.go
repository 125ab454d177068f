package config

import (
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"time"
	"unicode"

	"gopkg.in/yaml.v3"
)

// Identity configures sign-in: sessions, SSO providers and the built-in
// password directory.
type Identity struct {
	Session              Session                 `yaml:"session"`
	SSO                  map[string]*SSOProvider `yaml:"sso"`
	Passwords            Passwords               `yaml:"passwords"`
	AdminGroup           string                  `yaml:"admin_group"`
	AdminReauth          Duration                `yaml:"admin_reauth"`
	IAPCompatibleHeaders bool                    `yaml:"iap_compatible_headers"`
	// IAPAudiences sets the aud of X-Goog-IAP-JWT-Assertion per route,
	// keyed by the route's name (host + path_prefix), so an app that checks
	// the audience Google gave it (/projects/NUM/global/backendServices/ID)
	// runs unchanged. A route not listed gets its name as aud.
	IAPAudiences map[string]string `yaml:"iap_audiences"`
	// JWKSMaxAge is how long apps may cache /_moat/jwks.json (its
	// Cache-Control max-age); a rotated key starts to sign twice this long
	// after `moat keys rotate`, so no app meets an unknown kid.
	JWKSMaxAge Duration `yaml:"jwks_max_age"`
}

// Session bounds how long a sign-in lasts.
type Session struct {
	MaxAge      Duration `yaml:"max_age"`
	IdleTimeout Duration `yaml:"idle_timeout"`
}

// Passwords configures the built-in user directory's password policy.
type Passwords struct {
	MinLength int     `yaml:"min_length"`
	MFA       MFAMode `yaml:"mfa"`
}

// MFAMode is identity.passwords.mfa or routes[].mfa: whether password
// sign-ins need a second factor.
type MFAMode string

// MFA modes ("" is optional).
const (
	MFAOptional MFAMode = "optional"
	MFARequired MFAMode = "required"
)

// Required reports whether the mode asks for a second factor.
func (m MFAMode) Required() bool { return m == MFARequired }

// SSOProvider is one OpenID Connect provider.
type SSOProvider struct {
	Issuer           string   `yaml:"issuer"`
	ClientID         string   `yaml:"client_id"`
	ClientSecret     string   `yaml:"client_secret"`
	ClientSecretFile string   `yaml:"client_secret_file"`
	Scopes           []string `yaml:"scopes"`
	GroupsClaim      string   `yaml:"groups_claim"`
	HostedDomain     string   `yaml:"hosted_domain"`
	RefreshInterval  Duration `yaml:"refresh_interval"`
}

// Identity defaults.
const (
	DefaultSessionMaxAge      = 12 * time.Hour
	DefaultSessionIdleTimeout = time.Hour
	DefaultPasswordMinLength  = 12
	DefaultAdminGroup         = "moat-admins"
	DefaultAdminReauth        = 15 * time.Minute
	DefaultJWKSMaxAge         = 5 * time.Minute
)

func applyIdentityDefaults(id *Identity) {
	defDur(&id.Session.MaxAge, DefaultSessionMaxAge)
	defDur(&id.Session.IdleTimeout, DefaultSessionIdleTimeout)
	if id.Passwords.MinLength == 0 {
		id.Passwords.MinLength = DefaultPasswordMinLength
	}
	def(&id.AdminGroup, DefaultAdminGroup)
	defDur(&id.AdminReauth, DefaultAdminReauth)
	defDur(&id.JWKSMaxAge, DefaultJWKSMaxAge)
}

func (v *validator) validateIdentity() {
	id := &v.cfg.Identity
	if id.Session.IdleTimeout > id.Session.MaxAge {
		v.errorAt("identity.session.idle_timeout", "is longer than max_age (%s): lower it or raise max_age", id.Session.MaxAge.D())
	}
	if id.Passwords.MinLength < 8 || id.Passwords.MinLength > 128 {
		v.errorAt("identity.passwords.min_length", "must be between 8 and 128")
	}
	if d := id.JWKSMaxAge.D(); d < time.Second || d > 24*time.Hour {
		v.errorAt("identity.jwks_max_age", "must be between 1s and 24h, not %s", d)
	}
	switch id.Passwords.MFA {
	case "", MFAOptional, MFARequired:
	default:
		v.errorAt("identity.passwords.mfa", "must be optional or required, not %q", id.Passwords.MFA)
	}
	for _, name := range sortedKeys(id.SSO) {
		path := "identity.sso." + name
		p := id.SSO[name]
		if name == "password" || !backendName.MatchString(name) {
			v.errorAt(path, "invalid provider name %q: use lower-case letters, digits, - and _ (and not \"password\")", name)
		}
		if p == nil {
			v.errorAt(path, "provider has no settings: set issuer and client_id")
			continue
		}
		if p.Issuer == "" {
			v.errorAt(path, "issuer is required, such as https://accounts.google.com")
		} else if u, err := url.Parse(p.Issuer); err != nil || u.Host == "" || u.Scheme != "https" && !(u.Scheme == "http" && isLoopbackHost(u.Hostname())) {
			v.errorAt(path+".issuer", "invalid issuer %q: it must be https:// (http:// only on a loopback address)", p.Issuer)
		}
		if p.ClientID == "" {
			v.errorAt(path, "client_id is required")
		}
		if p.ClientSecretFile != "" {
			if p.ClientSecret != "" {
				v.errorAt(path, "set client_secret or client_secret_file, not both")
			}
			p.ClientSecret = v.readSecretFile(path+".client_secret_file", p.ClientSecretFile)
		}
		if p.RefreshInterval != 0 && p.RefreshInterval.D() < time.Minute {
			v.errorAt(path+".refresh_interval", "must be at least 1m (or 0 for no re-check), not %s", p.RefreshInterval.D())
		}
		if p.RefreshInterval < 0 {
			v.errorAt(path+".refresh_interval", "must not be negative")
		}
	}
	v.validateIAPAudiences()
}

// validateIAPAudiences checks that every key of identity.iap_audiences
// names a signed-in route.
func (v *validator) validateIAPAudiences() {
	id := &v.cfg.Identity
	if len(id.IAPAudiences) > 0 && !id.IAPCompatibleHeaders {
		v.errorAt("identity.iap_audiences", "has no effect without iap_compatible_headers: true")
	}
	names := map[string]bool{}
	for _, r := range v.cfg.Routes {
		if r != nil && !r.Public {
			names[r.Name()] = true
		}
	}
	for _, k := range sortedKeys(id.IAPAudiences) {
		if !names[k] {
			v.errorAt("identity.iap_audiences."+k, "no signed-in route is named %q: use a route's host plus path_prefix, such as dash.example.com", k)
		}
		if id.IAPAudiences[k] == "" {
			v.errorAt("identity.iap_audiences."+k, "audience is empty")
		}
	}
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(h)
	return err == nil && ip.IsLoopback()
}

// Kinds of allow-list member.
const (
	MemberUser   = "user"
	MemberDomain = "domain"
	MemberGroup  = "group"
)

// Member is one entry of a route's allow list (routes[].allow), decoded
// once when the configuration is read: user:EMAIL, domain:DOMAIN or
// group:NAME, its value normalized (an email or a domain lower-case, a
// domain without a leading @ or trailing dot). Everything after matches on
// Kind and Value and never parses the text again.
type Member struct {
	Kind  string
	Value string
	// text is what was written, kept when it is not a member.
	text string
}

// ParseMember decodes one allow-list member; Valid says whether it is one.
func ParseMember(s string) Member {
	kind, value, ok := strings.Cut(s, ":")
	value = strings.TrimSpace(value)
	switch {
	case !ok || value == "":
		return Member{text: s}
	case kind == MemberUser:
		value = strings.ToLower(value)
		if strings.Count(value, "@") != 1 || strings.HasPrefix(value, "@") || strings.HasSuffix(value, "@") || strings.ContainsFunc(value, notInMember) {
			return Member{text: s}
		}
	case kind == MemberDomain:
		value = strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(value, "@"), "."))
		if !domainName.MatchString(value) {
			return Member{text: s}
		}
	case kind == MemberGroup:
		// A group name travels in X-Moat-User-Groups, comma-separated.
		if strings.ContainsFunc(value, func(r rune) bool { return r == ',' || unicode.IsControl(r) }) {
			return Member{text: s}
		}
	default:
		return Member{text: s}
	}
	return Member{Kind: kind, Value: value}
}

// domainName is what a domain: member names: DNS labels of letters,
// digits and hyphens (an internationalized name in its xn-- form).
var domainName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$`)

// notInMember is what no user: member holds: white space, controls, and
// what would make an address read two ways.
func notInMember(r rune) bool {
	return unicode.IsSpace(r) || unicode.IsControl(r) || strings.ContainsRune(`<>"\(),;:[]`, r)
}

// Members decodes several members (for configurations built in code).
func Members(ss ...string) []Member {
	out := make([]Member, len(ss))
	for i, s := range ss {
		out[i] = ParseMember(s)
	}
	return out
}

// Valid reports whether m is a member of a known kind with a value.
func (m Member) Valid() bool { return m.Kind != "" }

// String writes m as the configuration does (normalized).
func (m Member) String() string {
	if !m.Valid() {
		return m.text
	}
	return m.Kind + ":" + m.Value
}

// UnmarshalYAML decodes a member; one that is not is reported by the
// validator, with its path and line.
func (m *Member) UnmarshalYAML(n *yaml.Node) error {
	*m = ParseMember(n.Value)
	return nil
}

// validateLogin checks a signed-in route's login methods and allow list.
func (v *validator) validateLogin(path string, r *Route) {
	for i, m := range r.Login {
		if m != "password" && v.cfg.Identity.SSO[m] == nil {
			v.errorAt(fmt.Sprintf("%s.login[%d]", path, i), "unknown login method %q: use password or a provider under identity.sso%s", m, known(v.cfg.Identity.SSO))
		}
	}
	if len(r.Allow) == 0 {
		v.errorAt(path, "a route with login needs an allow list, such as allow: [\"domain:example.com\", \"group:staff\"]")
	}
	for i, m := range r.Allow {
		if !m.Valid() {
			v.errorAt(fmt.Sprintf("%s.allow[%d]", path, i), "invalid member %q: write user:EMAIL, domain:DOMAIN or group:NAME", m)
		}
	}
	switch r.MFA {
	case "", MFAOptional, MFARequired:
	default:
		v.errorAt(path+".mfa", "must be optional or required, not %q", r.MFA)
	}
}
