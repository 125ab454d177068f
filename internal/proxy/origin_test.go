package proxy

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/coder/websocket"

	"github.com/moat-dev/moat/internal/config"
)

// Finding 3: a WebSocket upgrade from a page on another site carried the
// user's cookie to the app. Same-origin by default, routes[].allowed_origins
// for others, and clients sending no Origin (not a browser) pass; a refused
// upgrade never reaches the app.
func TestCrossSiteWebSocketUpgradeIsRefusedBeforeReachingTheApp(t *testing.T) {
	var upgrades atomic.Int32
	// An app that checks no Origin itself, as many do.
	backend := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upgrades.Add(1)
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
		if err != nil {
			return
		}
		c.CloseNow()
	}))
	route := &config.Route{Host: "app.test", Backend: "app", Public: true, AllowedOrigins: []string{"https://partner.example"}}
	p := startProxy(t, backend.URL, proxyOpts{route: route})
	host := strings.TrimPrefix(p.URL, "http://")
	for _, tc := range []struct {
		name    string
		origins []string
		want    int
	}{
		{"no Origin (a non-browser client) passes", nil, http.StatusSwitchingProtocols},
		{"its own origin passes", []string{"http://" + host}, http.StatusSwitchingProtocols},
		{"its own origin in capitals passes", []string{"HTTP://" + strings.ToUpper(host)}, http.StatusSwitchingProtocols},
		{"an allowed origin passes", []string{"https://partner.example"}, http.StatusSwitchingProtocols},
		{"an allowed origin with its default port passes", []string{"https://partner.example:443"}, http.StatusSwitchingProtocols},
		{"a cross-site origin is refused", []string{"https://evil.example"}, http.StatusForbidden},
		{"the allowed host on another scheme is refused", []string{"http://partner.example"}, http.StatusForbidden},
		{"the own host on another scheme is refused", []string{"https://" + host}, http.StatusForbidden},
		{"a look-alike suffix is refused", []string{"http://" + host + ".evil.example"}, http.StatusForbidden},
		{"null is refused", []string{"null"}, http.StatusForbidden},
		{"an empty Origin is refused", []string{""}, http.StatusForbidden},
		{"an origin with a path is refused", []string{"https://partner.example/"}, http.StatusForbidden},
		{"two Origin headers are refused", []string{"http://" + host, "https://evil.example"}, http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := upgrades.Load()
			req, _ := http.NewRequest(http.MethodGet, p.URL+"/stream", nil)
			req.Header.Set("Connection", "Upgrade")
			req.Header.Set("Upgrade", "websocket")
			req.Header.Set("Sec-WebSocket-Version", "13")
			req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
			for _, o := range tc.origins {
				req.Header.Add("Origin", o)
			}
			resp, err := http.DefaultTransport.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
			reached := upgrades.Load() != before
			if reached != (tc.want == http.StatusSwitchingProtocols) {
				t.Errorf("the app saw the upgrade: %v", reached)
			}
		})
	}
	if !strings.Contains(p.log.String(), "cross-origin WebSocket refused") || !strings.Contains(p.log.String(), "evil.example") {
		t.Errorf("refusals are not logged with the origin:\n%s", p.log.String())
	}
}
