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

func (m *testMoat) dialWS(t *testing.T, url string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hc := m.client()
	// WebSockets upgrade over HTTP/1.1.
	hc.Transport.(*http.Transport).TLSClientConfig = &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}}
	hc.Transport.(*http.Transport).ForceAttemptHTTP2 = false
	hc.Timeout = 0
	c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: hc})
	if err != nil {
		t.Fatalf("dial %s: %v (response %v)", url, err, resp)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
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
