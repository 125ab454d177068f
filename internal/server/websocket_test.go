package server

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/moat-dev/moat/internal/testnet"
)

// wsEchoBackend echoes WebSocket messages, as Streamlit's /_stcore/stream
// answers the browser.
func wsEchoBackend(t *testing.T) *httptest.Server {
	t.Helper()
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			return
		}
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, msg); err != nil {
				return
			}
		}
	}))
	t.Cleanup(b.Close)
	return b
}

// dialWS opens a WebSocket through m without cookies; it is closed when
// the test ends.
func (m *testMoat) dialWS(t *testing.T, url string) *websocket.Conn {
	t.Helper()
	return dialWith(t, m, nil, url)
}

// dialWith opens a WebSocket through m with c's cookies (none when c is
// nil); it is closed when the test ends.
func dialWith(t *testing.T, m *testMoat, c *http.Client, u string) *websocket.Conn {
	t.Helper()
	// WebSockets upgrade over HTTP/1.1, and live longer than any request.
	hc := testnet.Pin{Addr: m.addrs.HTTPS, TLS: &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}}, Timeout: -1}.Client()
	if c != nil {
		hc.Jar = c.Jar
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPClient: hc})
	if err != nil {
		t.Fatalf("dial %s: %v (response %v)", u, err, resp)
	}
	t.Cleanup(func() { ws.CloseNow() })
	return ws
}

func echo(t *testing.T, c *websocket.Conn, msg string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	_, got, err := c.Read(ctx)
	if err != nil || string(got) != msg {
		t.Fatalf("echo got %q, %v; want %q", got, err, msg)
	}
}

func TestIdleWebSocketOutlivesEveryServerTimeout(t *testing.T) {
	// Short server timeouts: none of them may reach a proxied WebSocket,
	// which Streamlit keeps open for the whole session.
	cfg := strings.Replace(baseConfig, "  shutdown_grace: 5s\n", "  shutdown_grace: 5s\n  read_header_timeout: 300ms\n  idle_timeout: 300ms\n", 1)
	m := startMoat(t, wsEchoBackend(t).URL, cfg)
	c := m.dialWS(t, "wss://dash.example.com/_stcore/stream")
	echo(t, c, "first")
	time.Sleep(1500 * time.Millisecond) // five times every timeout above
	echo(t, c, "after idling")
	if !strings.Contains(m.logs.String(), `"websocket":true`) {
		t.Error("access log does not mark the WebSocket")
	}
}

func TestShutdownClosesWebSocketsWithGoingAway(t *testing.T) {
	m := startMoat(t, wsEchoBackend(t).URL, baseConfig)
	c := m.dialWS(t, "wss://dash.example.com/_stcore/stream")
	echo(t, c, "hello")
	m.cancel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _, err := c.Read(ctx)
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.StatusGoingAway {
		t.Fatalf("read after shutdown: %v, want close status 1001", err)
	}
	if err := <-m.done; err != nil {
		t.Errorf("Run returned %v", err)
	}
	m.done <- nil
	if _, err := net.DialTimeout("tcp", m.addrs.HTTPS, time.Second); err == nil {
		t.Error("listener still accepts after shutdown")
	}
}

// expectClose waits for the server to close c and checks its code and
// reason.
func expectClose(t *testing.T, c *websocket.Conn, code websocket.StatusCode, reason string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, _, err := c.Read(ctx)
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != code || ce.Reason != reason {
		t.Fatalf("read: %v, want close %d %q", err, code, reason)
	}
}

// Issue 9 item 4 and issue 14 item 1: a change of a user's groups closes
// their sockets on the routes they lost (1008) and asks those on the
// routes they keep to reconnect (1012), so an app that read the identity
// when its socket connected, as Streamlit does, reads it again; a change
// that leaves the identity as it was closes nothing.
func TestAGroupChangeClosesTheSocketsOfLostRoutesAndRefreshesTheOthers(t *testing.T) {
	cfg := signInConfig + `  - {host: app.example.com, path_prefix: /ops/, backend: app, login: [password], allow: ["group:ops"]}
`
	m := startMoat(t, wsEchoBackend(t).URL, cfg)
	c, u := signIn(t, m)
	ctx := context.Background()
	setGroups := func(groups ...string) {
		t.Helper()
		cur, err := m.server.store.GetUser(ctx, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		cur.Groups = groups
		if err := m.server.store.UpdateUser(ctx, cur); err != nil {
			t.Fatal(err)
		}
		m.server.identity.UserChanged(ctx, u.ID) // as the console and the directory do
	}
	setGroups("staff", "ops")
	hc := m.client()
	hc.Jar, hc.Timeout = c.Jar, 0
	dial := func(url string) *websocket.Conn {
		t.Helper()
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		ws, _, err := websocket.Dial(dctx, url, &websocket.DialOptions{HTTPClient: hc})
		if err != nil {
			t.Fatalf("dial %s: %v", url, err)
		}
		t.Cleanup(func() { ws.CloseNow() })
		return ws
	}
	dash, ops := dial("wss://app.example.com/_stcore/stream"), dial("wss://app.example.com/ops/stream")
	echo(t, dash, "dash")
	echo(t, ops, "ops")

	changed := time.Now()
	setGroups("staff")
	expectClose(t, ops, websocketPolicyViolation, "access removed")
	t.Logf("the socket of the lost route closed %s after the change", time.Since(changed).Round(time.Millisecond))
	expectClose(t, dash, websocketReconnect, "identity changed")

	again := dial("wss://app.example.com/_stcore/stream")
	echo(t, again, "reconnected with the new identity")
	setGroups("staff") // the same groups: nothing the app was told changed
	m.server.recheckSockets(u.ID)
	echo(t, again, "still open")
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, resp, err := websocket.Dial(dctx, "wss://app.example.com/ops/stream", &websocket.DialOptions{HTTPClient: hc}); err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("a new socket on the lost route: %v (%v), want 403", err, resp)
	}
}
