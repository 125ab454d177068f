package config

import (
	"strings"
	"testing"
)

func TestSSOAndIAPValidation(t *testing.T) {
	const base = `
data_dir: /tmp/moat-test
backends:
  app: {url: "http://127.0.0.1:8501"}
routes:
  - {host: dash.example.com, backend: app, login: [google], allow: ["domain:example.com"]}
identity:
  iap_compatible_headers: %IAP%
  sso:
    google: {issuer: "%ISSUER%", client_id: c, client_secret: s%EXTRA%}
%AUD%`
	tests := []struct {
		name                    string
		iap, issuer, extra, aud string
		want                    string // "" = valid
	}{
		{"a Google provider with an IAP audience is valid", "true", "https://accounts.google.com", "", "  iap_audiences: {dash.example.com: /projects/1/global/backendServices/2}", ""},
		{"an http issuer on loopback is valid", "false", "http://127.0.0.1:5556", "", "", ""},
		{"an http issuer elsewhere is refused", "false", "http://idp.example.com", "", "", "must be https://"},
		{"a refresh interval under a minute is refused", "false", "https://accounts.google.com", ", refresh_interval: 10s", "", "at least 1m"},
		{"a refresh interval of 15m is valid", "false", "https://accounts.google.com", ", refresh_interval: 15m", "", ""},
		{"an IAP audience for an unknown route is refused", "true", "https://accounts.google.com", "", "  iap_audiences: {other.example.com: x}", `no signed-in route is named "other.example.com"`},
		{"an empty IAP audience is refused", "true", "https://accounts.google.com", "", `  iap_audiences: {dash.example.com: ""}`, "audience is empty"},
		{"IAP audiences without IAP headers are refused", "false", "https://accounts.google.com", "", "  iap_audiences: {dash.example.com: x}", "without iap_compatible_headers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			y := strings.NewReplacer("%IAP%", tt.iap, "%ISSUER%", tt.issuer, "%EXTRA%", tt.extra, "%AUD%", tt.aud).Replace(base)
			_, err := Parse("moat.yaml", []byte(y))
			if tt.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}
