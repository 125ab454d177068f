package config

import "testing"

// Issue 11: allow members and MFA modes were strings every consumer parsed
// again (the route's Require, the console's groups page, moat check); the
// configuration decodes them once.
func TestAllowMembersAndMFAModesAreDecodedOnceWhenTheConfigurationIsRead(t *testing.T) {
	cfg, err := Parse("moat.yaml", []byte(`
backends: {app: {url: "http://127.0.0.1:8501"}}
identity: {passwords: {mfa: required}}
routes:
  - host: dash.example.com
    backend: app
    login: [password]
    allow: ["domain:@Example.COM.", "group: staff ", "user:Alice@Example.com"]
    mfa: optional
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []Member{{Kind: MemberDomain, Value: "example.com"}, {Kind: MemberGroup, Value: "staff"}, {Kind: MemberUser, Value: "alice@example.com"}}
	got := cfg.Routes[0].Allow
	if len(got) != len(want) {
		t.Fatalf("allow = %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("allow[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
	if !cfg.Identity.Passwords.MFA.Required() || cfg.Routes[0].MFA.Required() {
		t.Errorf("mfa modes: passwords %q, route %q", cfg.Identity.Passwords.MFA, cfg.Routes[0].MFA)
	}
	if cfg.Server.HTTPMode != HTTPRedirect {
		t.Errorf("http_mode defaults to %q", cfg.Server.HTTPMode)
	}
}
