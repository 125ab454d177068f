package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	dto "github.com/prometheus/client_model/go"

	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/metrics"
	"github.com/moat-dev/moat/internal/request"
)

// wsBackend is a coder/websocket echo server with Origin checking on (the
// library's default: Origin must agree with Host, as Streamlit's XSRF and
// CORS protection want). Each socket's close status is sent on closed.
type wsBackend struct {
	url    string
	closed chan websocket.StatusCode
	reason chan string
}

func startWSBackend(t testing.TB) *wsBackend {
	t.Helper()
	b := &wsBackend{closed: make(chan websocket.StatusCode, 100), reason: make(chan string, 100)}
	srv := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/forbidden" {
			http.Error(w, "no sockets here", http.StatusForbidden)
			return
		}
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		c.SetReadLimit(4 << 20)
		ctx := context.Background()
		for {
			typ, msg, err := c.Read(ctx)
			if err != nil {
				var ce websocket.CloseError
				if errors.As(err, &ce) {
					b.reason <- ce.Reason
				}
				b.closed <- websocket.CloseStatus(err)
				return
			}
			if err := c.Write(ctx, typ, msg); err != nil {
				return
			}
		}
	}))
	b.url = srv.URL
	return b
}

// dialWS opens a WebSocket through p, sending an Origin that matches the
// Host, as a browser on the page would.
func dialWS(t testing.TB, p *testProxy, path string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	u := "ws" + strings.TrimPrefix(p.URL, "http") + path
	c, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{
		HTTPHeader: http.Header{"Origin": {p.URL}},
	})
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: status %d: %v", u, status, err)
	}
	c.SetReadLimit(4 << 20)
	t.Cleanup(func() { c.CloseNow() })
	return c
}

func echo(t testing.TB, c *websocket.Conn, typ websocket.MessageType, msg []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Write(ctx, typ, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	gotTyp, got, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if gotTyp != typ || !bytes.Equal(got, msg) {
		t.Fatalf("echo of %d bytes came back as %d bytes (type %v)", len(msg), len(got), gotTyp)
	}
}

// expectClose reads from c until the socket closes and checks the status
// and reason the client saw.
func expectClose(t testing.TB, c *websocket.Conn, code websocket.StatusCode, reason string, within time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for {
		_, _, err := c.Read(ctx)
		if err == nil {
			continue
		}
		var ce websocket.CloseError
		if !errors.As(err, &ce) {
			t.Fatalf("socket ended with %v, want a Close frame %d", err, code)
		}
		if ce.Code != code || ce.Reason != reason {
			t.Fatalf("client saw close %d %q, want %d %q", ce.Code, ce.Reason, code, reason)
		}
		return
	}
}

func TestWebSocketEchoesThroughTheProxy(t *testing.T) {
	wb := startWSBackend(t)
	p := startProxy(t, wb.url, proxyOpts{})
	gauge := func() float64 {
		var m dto.Metric
		_ = metrics.WebSockets.WithLabelValues(testRoute.Name()).Write(&m)
		return m.GetGauge().GetValue()
	}
	before := gauge()
	c := dialWS(t, p, "/_stcore/stream")
	if gauge() != before+1 {
		t.Fatalf("moat_websockets_open went from %v to %v, want one more", before, gauge())
	}
	echo(t, c, websocket.MessageText, []byte("hello"))
	echo(t, c, websocket.MessageBinary, []byte{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go func() { _, _, _ = c.Read(ctx) }() // a reader answers the pong
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("ping through the proxy: %v", err)
	}
	if n := p.sockets.Count(); n != 1 {
		t.Fatalf("registry counts %d sockets, want 1", n)
	}
	c.Close(websocket.StatusNormalClosure, "bye")
	if got := <-wb.closed; got != websocket.StatusNormalClosure {
		t.Fatalf("backend saw close %d", got)
	}
	eventually(t, "the registry to forget the socket", func() bool { return p.sockets.Count() == 0 })
	if gauge() != before {
		t.Fatalf("moat_websockets_open is %v after close, want %v", gauge(), before)
	}
}

func TestWebSocketMessagesPassIntact(t *testing.T) {
	wb := startWSBackend(t)
	p := startProxy(t, wb.url, proxyOpts{})
	c := dialWS(t, p, "/")
	big := make([]byte, 1<<20)
	_, _ = rand.Read(big)
	for _, tc := range []struct {
		name string
		msg  []byte
	}{
		{"a 125-byte message (largest 7-bit length)", big[:125]},
		{"a 126-byte message (16-bit length)", big[:126]},
		{"a 65536-byte message (64-bit length)", big[:65536]},
		{"a 1 MiB message", big},
	} {
		t.Run(tc.name, func(t *testing.T) { echo(t, c, websocket.MessageBinary, tc.msg) })
	}
	t.Run("a message fragmented into many frames", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		w, err := c.Writer(ctx, websocket.MessageBinary)
		if err != nil {
			t.Fatal(err)
		}
		for off := 0; off < len(big); off += 100_000 {
			if _, err := w.Write(big[off:min(off+100_000, len(big))]); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		_, got, err := c.Read(ctx)
		if err != nil || !bytes.Equal(got, big) {
			t.Fatalf("fragmented message came back as %d bytes: %v", len(got), err)
		}
	})
}

func TestWebSocketRefusedByBackendRelaysItsAnswer(t *testing.T) {
	wb := startWSBackend(t)
	p := startProxy(t, wb.url, proxyOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(p.URL, "http")+"/forbidden", nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("got %v, %v; want the backend's 403", resp, err)
	}
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), "no sockets here") {
		t.Fatalf("body %q", body)
	}
}

func TestWebSocketToRefusedBackendGives502(t *testing.T) {
	p := startProxy(t, refusedURL(t), proxyOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(p.URL, "http")+"/", nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("got %v, %v; want 502", resp, err)
	}
}

func TestIdleWebSocketOutlivesTheServersTimeouts(t *testing.T) {
	wb := startWSBackend(t)
	short := func(s *http.Server) {
		s.ReadTimeout = 50 * time.Millisecond
		s.WriteTimeout = 50 * time.Millisecond
		s.IdleTimeout = 50 * time.Millisecond
		s.ReadHeaderTimeout = 50 * time.Millisecond
	}
	p := startProxy(t, wb.url, proxyOpts{server: short})
	c := dialWS(t, p, "/")
	echo(t, c, websocket.MessageText, []byte("before"))
	time.Sleep(300 * time.Millisecond) // six times every timeout of the server
	echo(t, c, websocket.MessageText, []byte("after"))
}

func TestWebSocketClosesWith1001(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cfg    config.Backend
		reason string
	}{
		{"at websocket_max_lifetime", config.Backend{WebSocketMaxLifetime: config.Duration(150 * time.Millisecond)}, "max lifetime"},
		{"after websocket_idle_timeout", config.Backend{WebSocketIdleTimeout: config.Duration(150 * time.Millisecond)}, "idle timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wb := startWSBackend(t)
			p := startProxy(t, wb.url, proxyOpts{cfg: tc.cfg})
			c := dialWS(t, p, "/")
			echo(t, c, websocket.MessageText, []byte("hi"))
			expectClose(t, c, websocket.StatusGoingAway, tc.reason, 3*time.Second)
			// The backend got moat's masked Close frame and accepted it.
			select {
			case got := <-wb.closed:
				if got != websocket.StatusGoingAway {
					t.Fatalf("backend saw close %d, want 1001", got)
				}
				if r := <-wb.reason; r != tc.reason {
					t.Fatalf("backend saw reason %q", r)
				}
			case <-time.After(3 * time.Second):
				t.Fatal("backend saw no close")
			}
			eventually(t, "the registry to forget the socket", func() bool { return p.sockets.Count() == 0 })
		})
	}
}

func TestWebSocketIdleTimeoutSparesABusySocket(t *testing.T) {
	wb := startWSBackend(t)
	p := startProxy(t, wb.url, proxyOpts{cfg: config.Backend{WebSocketIdleTimeout: config.Duration(150 * time.Millisecond)}})
	c := dialWS(t, p, "/")
	for range 8 { // 400 ms in all, more than twice the idle timeout
		echo(t, c, websocket.MessageText, []byte("tick"))
		time.Sleep(50 * time.Millisecond)
	}
	expectClose(t, c, websocket.StatusGoingAway, "idle timeout", 3*time.Second)
}

func TestCloseAllClosesEverySocketWith1001(t *testing.T) {
	wb := startWSBackend(t)
	p := startProxy(t, wb.url, proxyOpts{})
	a, b := dialWS(t, p, "/"), dialWS(t, p, "/")
	echo(t, a, websocket.MessageText, []byte("a"))
	echo(t, b, websocket.MessageText, []byte("b"))
	done := make(chan struct{})
	go func() {
		p.sockets.CloseAll(1001, "shutting down")
		close(done)
	}()
	expectClose(t, a, websocket.StatusGoingAway, "shutting down", 3*time.Second)
	expectClose(t, b, websocket.StatusGoingAway, "shutting down", 3*time.Second)
	<-done
	eventually(t, "the registry to empty", func() bool { return p.sockets.Count() == 0 })
}

func TestCloseSessionClosesOnlyThatSessionsSockets(t *testing.T) {
	wb := startWSBackend(t)
	p := startProxy(t, wb.url, proxyOpts{})
	a1, a2 := dialWS(t, p, "/?session=a"), dialWS(t, p, "/?session=a")
	b := dialWS(t, p, "/?session=b")
	anon := dialWS(t, p, "/")
	if n := p.sockets.CloseSession("", 1008, "x"); n != 0 {
		t.Fatalf("an empty session id closed %d sockets", n)
	}
	if n := p.sockets.CloseSession("a", 1008, "signed out"); n != 2 {
		t.Fatalf("closed %d sockets, want 2", n)
	}
	expectClose(t, a1, websocket.StatusPolicyViolation, "signed out", 3*time.Second)
	expectClose(t, a2, websocket.StatusPolicyViolation, "signed out", 3*time.Second)
	echo(t, b, websocket.MessageText, []byte("still here"))
	echo(t, anon, websocket.MessageText, []byte("still here"))
	eventually(t, "two sockets left", func() bool { return p.sockets.Count() == 2 })
}

func TestSocketsRegistryIsSharedAcrossBackends(t *testing.T) {
	shared := NewSockets()
	wb := startWSBackend(t)
	p1 := startProxy(t, wb.url, proxyOpts{sockets: shared})
	p2 := startProxy(t, wb.url, proxyOpts{sockets: shared})
	a, b := dialWS(t, p1, "/"), dialWS(t, p2, "/")
	if shared.Count() != 2 {
		t.Fatalf("count %d", shared.Count())
	}
	shared.CloseAll(1001, "bye")
	expectClose(t, a, websocket.StatusGoingAway, "bye", 3*time.Second)
	expectClose(t, b, websocket.StatusGoingAway, "bye", 3*time.Second)
}

// A re-check shows the judge one user's sockets with what each was opened
// with, closes those it gives a code and leaves the others open.
func TestRecheckClosesTheSocketsTheJudgeGivesACode(t *testing.T) {
	wb := startWSBackend(t)
	p := startProxy(t, wb.url, proxyOpts{})
	lost := dialWS(t, p, "/?session=s1&user=alice")
	stale := dialWS(t, p, "/?session=s2&user=alice")
	kept := dialWS(t, p, "/?session=s3&user=alice")
	other := dialWS(t, p, "/?session=s4&user=bob")
	anon := dialWS(t, p, "/")
	echo(t, kept, websocket.MessageText, []byte("in use"))
	var seen []Socket
	n := p.sockets.Recheck("alice", func(s Socket) (int, string) {
		seen = append(seen, s)
		switch s.Session {
		case "s1":
			return 1008, "access removed"
		case "s2":
			return 1012, "identity changed"
		}
		return 0, ""
	})
	if n != 2 || len(seen) != 3 {
		t.Fatalf("closed %d of %d sockets shown, want 2 of alice's 3", n, len(seen))
	}
	for _, s := range seen {
		want := (request.User{ID: "alice", SessionID: s.Session}).Fingerprint()
		if s.User != "alice" || s.Route != testRoute.Name() || s.Fingerprint != want || s.LastActive.IsZero() {
			t.Errorf("the judge saw %+v", s)
		}
	}
	expectClose(t, lost, websocket.StatusPolicyViolation, "access removed", 3*time.Second)
	expectClose(t, stale, websocket.StatusCode(1012), "identity changed", 3*time.Second)
	for _, c := range []*websocket.Conn{kept, other, anon} {
		echo(t, c, websocket.MessageText, []byte("still here"))
	}
	if n := p.sockets.Recheck("", func(s Socket) (int, string) {
		if s.Session == "" {
			t.Error("the judge was shown an anonymous socket")
		}
		return 0, ""
	}); n != 0 {
		t.Errorf("closed %d sockets when the judge closed none", n)
	}
}
