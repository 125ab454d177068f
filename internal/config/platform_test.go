package config

import "testing"

func TestLogFormatDefaultsToGCPOnCloudRun(t *testing.T) {
	const y = `
backends:
  app: {url: "http://127.0.0.1:8501"}
routes:
  - {host: dash.example.com, backend: app, public: true}
`
	for _, tc := range []struct {
		name, kService, extra, want string
	}{
		{"json outside Cloud Run", "", "", "json"},
		{"gcp where K_SERVICE is set", "dashboard", "", "gcp"},
		{"an explicit json wins over K_SERVICE", "dashboard", "server: {log_format: json}\n", "json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("K_SERVICE", tc.kService)
			cfg, err := Parse("moat.yaml", []byte(y+tc.extra))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Server.LogFormat != tc.want {
				t.Errorf("log_format = %q, want %q", cfg.Server.LogFormat, tc.want)
			}
		})
	}
}

func TestHTTPSOffNeedsNoCertificateSource(t *testing.T) {
	cfg, err := Parse("moat.yaml", []byte(`
server: {https_addr: "off", http_addr: ":8080", http_mode: serve}
backends:
  app: {url: "http://127.0.0.1:8501"}
routes:
  - {host: dash.example.com, backend: app, public: true}
`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.HTTPS() || cfg.TLS.SelfSigned || len(cfg.Warnings) != 0 {
		t.Errorf("HTTPS %v, self_signed %v, warnings %q: want no TLS at all", cfg.Server.HTTPS(), cfg.TLS.SelfSigned, cfg.Warnings)
	}
}
