package server

import (
	"context"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/coder/websocket"
	dto "github.com/prometheus/client_model/go"

	"github.com/moat-dev/moat/internal/metrics"
	"github.com/moat-dev/moat/internal/store"
	"github.com/moat-dev/moat/internal/testwait"
)

// TestUsageCountsSignInsVisitsAndSocketsThroughTheChain: a sign-in, the
// requests that reach the app and a WebSocket are counted on their route;
// anonymous requests and requests the access check refuses are not; a
// reload to `usage: off` stops counting.
func TestUsageCountsSignInsVisitsAndSocketsThroughTheChain(t *testing.T) {
	cfg := signInConfig + `  - {host: app.example.com, path_prefix: /admin-only/, backend: app, login: [password], allow: ["group:nobody"]}
`
	m := startMoat(t, wsEchoBackend(t).URL, cfg)
	get(t, m.client(), "https://dash.example.com/health") // public and anonymous
	c, u := signIn(t, m)
	for range 5 {
		if resp, _ := get(t, c, "https://app.example.com/health"); resp.StatusCode != http.StatusOK {
			t.Fatalf("signed-in request: %d", resp.StatusCode)
		}
	}
	if resp, _ := get(t, c, "https://app.example.com/admin-only/health"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("request outside the allow list: %d, want 403", resp.StatusCode)
	}
	hc := m.client()
	hc.Jar, hc.Timeout = c.Jar, 0
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "wss://app.example.com/_stcore/stream", &websocket.DialOptions{HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	echo(t, ws, "a click")
	echo(t, ws, "another")
	ws.Close(websocket.StatusNormalClosure, "")
	testwait.For(t, 5*time.Second, "the socket to be closed", func() bool { return m.server.sockets.Count() == 0 })
	if err := m.server.usage.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}

	days, err := m.server.store.UsageDays(context.Background(), store.UsageFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(days) != 1 || days[0].Route != "app.example.com" || days[0].Users != 1 || days[0].SignIns != 1 || days[0].Sessions != 1 || days[0].ActiveMinutes < 1 {
		t.Fatalf("usage days = %+v; want app.example.com alone, with 1 user, 1 sign-in, 1 session, an active minute", days)
	}
	sessions, _ := m.server.store.UsageSessions(context.Background(), store.UsageFilter{})
	if len(sessions) != 1 || sessions[0].Email != u.Email || sessions[0].Provider != "password" {
		t.Fatalf("usage sessions = %+v; want carol's", sessions)
	}
	var connected dto.Metric
	if err := metrics.WebSocketSeconds.WithLabelValues("app.example.com").Write(&connected); err != nil || connected.GetCounter().GetValue() <= 0 {
		t.Errorf("moat_websocket_seconds_total{route=app.example.com} = %v, %v; want the socket's time", connected.GetCounter().GetValue(), err)
	}

	data, err := os.ReadFile(m.path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(m.path, append(data, []byte("usage: off\n")...), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := m.server.Reload(context.Background(), "test"); err != nil {
		t.Fatal(err)
	}
	get(t, c, "https://app.example.com/health")
	if err := m.server.usage.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	after, _ := m.server.store.UsageSessions(context.Background(), store.UsageFilter{})
	if len(after) != 1 || !after[0].End.Equal(sessions[0].End) {
		t.Errorf("usage went on after a reload to usage: off: %+v", after)
	}
}
