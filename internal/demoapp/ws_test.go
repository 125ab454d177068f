package demoapp

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
)

// dial opens the demo's WebSocket as a same-origin browser would.
func dial(t *testing.T, url string, header http.Header) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, wsURL(url), &websocket.DialOptions{HTTPHeader: header})
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial /ws: %v (status %d)", err, status)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

// wsURL turns the test server's http:// URL into the socket's ws:// URL.
func wsURL(httpURL string) string {
	return "ws" + strings.TrimPrefix(httpURL, "http") + "/ws"
}

// exchange sends one text message and reads the reply.
func exchange(t *testing.T, c *websocket.Conn, msg string) modeReply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		t.Fatalf("write %s: %v", msg, err)
	}
	var rep modeReply
	if err := wsjson.Read(ctx, c, &rep); err != nil {
		t.Fatalf("read reply to %s: %v", msg, err)
	}
	return rep
}

func TestWebSocketAnswersEachModeWithItsFragment(t *testing.T) {
	srv := newServer(t)
	// One socket for all modes, as the page keeps one for its whole life;
	// the Origin is the page's own, as a browser would send it.
	c := dial(t, srv.URL, http.Header{"Origin": {srv.URL}})
	for _, tt := range []struct{ mode, marker string }{
		{"bar", `class="chart chart-bar"`},
		{"area", `class="chart chart-area"`},
		{"table", `id="data-table"`},
		{"line", `class="chart chart-line"`},
	} {
		t.Run(tt.mode, func(t *testing.T) {
			rep := exchange(t, c, `{"mode":"`+tt.mode+`"}`)
			if rep.Error != "" || rep.Mode != tt.mode {
				t.Fatalf("reply = mode %q error %q, want mode %q", rep.Mode, rep.Error, tt.mode)
			}
			if !strings.Contains(rep.HTML, tt.marker) {
				t.Errorf("fragment lacks %s", tt.marker)
			}
			// The socket shows exactly what the plain GET shows.
			_, page := get(t, srv, "/?mode="+tt.mode)
			if _, inner := viewOf(t, page); inner != rep.HTML {
				t.Error("the WebSocket fragment differs from the page's #view for the same mode")
			}
		})
	}
}

var badMessageTests = []struct{ name, msg, wantErr string }{
	{"an unknown mode", `{"mode":"pie"}`, "unknown mode"},
	{"an empty mode", `{"mode":""}`, "unknown mode"},
	{"no mode at all", `{}`, "unknown mode"},
	{"a mode of the wrong type", `{"mode":3}`, "bad message"},
	{"not JSON", `line`, "bad message"},
}

func TestWebSocketRejectsABadModeAndStaysOpen(t *testing.T) {
	srv := newServer(t)
	c := dial(t, srv.URL, nil)
	for _, tt := range badMessageTests {
		t.Run(tt.name, func(t *testing.T) {
			rep := exchange(t, c, tt.msg)
			if !strings.Contains(rep.Error, tt.wantErr) || rep.HTML != "" || rep.Mode != "" {
				t.Fatalf("reply = %+v, want only an error containing %q", rep, tt.wantErr)
			}
		})
	}
	if rep := exchange(t, c, `{"mode":"table"}`); rep.Mode != "table" {
		t.Fatalf("after bad messages the socket answered %+v, want the table", rep)
	}
}

func TestWebSocketRefusesACrossOriginPage(t *testing.T) {
	srv := newServer(t)
	for _, origin := range []string{"https://evil.example", "http://127.0.0.1.evil.example", "null"} {
		t.Run(origin, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, resp, err := websocket.Dial(ctx, wsURL(srv.URL), &websocket.DialOptions{
				HTTPHeader: http.Header{"Origin": {origin}},
			})
			if err == nil {
				c.CloseNow()
				t.Fatal("a cross-origin WebSocket was accepted")
			}
			if resp == nil || resp.StatusCode != http.StatusForbidden {
				t.Fatalf("dial error %v, response %v; want 403", err, resp)
			}
		})
	}
}

func TestWebSocketClosesOnAnOversizedMessage(t *testing.T) {
	srv := newServer(t)
	c := dial(t, srv.URL, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	big := `{"mode":"` + strings.Repeat("x", 4*maxMessageSize) + `"}`
	if err := c.Write(ctx, websocket.MessageText, []byte(big)); err != nil {
		t.Fatalf("write: %v", err)
	}
	_, _, err := c.Read(ctx)
	if got := websocket.CloseStatus(err); got != websocket.StatusMessageTooBig {
		t.Fatalf("read after oversized message: %v (close status %d), want %d", err, got, websocket.StatusMessageTooBig)
	}
}

func TestWebSocketClosesOnABinaryMessage(t *testing.T) {
	srv := newServer(t)
	c := dial(t, srv.URL, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageBinary, []byte(`{"mode":"bar"}`)); err != nil {
		t.Fatalf("write: %v", err)
	}
	_, _, err := c.Read(ctx)
	if got := websocket.CloseStatus(err); got != websocket.StatusUnsupportedData {
		t.Fatalf("read after binary message: %v (close status %d), want %d", err, got, websocket.StatusUnsupportedData)
	}
}

// The app itself must never cut an idle socket: that cap is exactly what
// moat exists to remove. This pins that no read deadline sneaks in.
func TestWebSocketStaysOpenWhileIdle(t *testing.T) {
	srv := newServer(t)
	c := dial(t, srv.URL, nil)
	time.Sleep(1500 * time.Millisecond)
	if rep := exchange(t, c, `{"mode":"area"}`); rep.Mode != "area" {
		t.Fatalf("after idling the socket answered %+v", rep)
	}
}

// A server's ReadTimeout and WriteTimeout must not bound a socket's life:
// net/http clears the connection's deadlines when Accept hijacks it, and
// this pins that, since `moat demo` serves the app with such timeouts.
func TestWebSocketOutlivesTheServersReadAndWriteTimeouts(t *testing.T) {
	srv := httptest.NewUnstartedServer(New())
	srv.Config.ReadTimeout = 300 * time.Millisecond
	srv.Config.WriteTimeout = 300 * time.Millisecond
	srv.Start()
	t.Cleanup(srv.Close)
	c := dial(t, srv.URL, nil)
	time.Sleep(time.Second)
	if rep := exchange(t, c, `{"mode":"bar"}`); rep.Mode != "bar" {
		t.Fatalf("after the server timeouts passed the socket answered %+v", rep)
	}
}

func TestWebSocketPathWithoutUpgradeIsRefused(t *testing.T) {
	srv := newServer(t)
	resp, _ := get(t, srv, "/ws")
	if resp.StatusCode != http.StatusUpgradeRequired {
		t.Fatalf("plain GET /ws = %d, want 426", resp.StatusCode)
	}
}

func FuzzAnswer(f *testing.F) {
	for _, s := range []string{`{"mode":"line"}`, `{"mode":"table"}`, `{}`, `[]`, `{"mode":null}`, `"`} {
		f.Add([]byte(s))
	}
	a := New().(*app)
	f.Fuzz(func(t *testing.T, msg []byte) {
		rep := a.answer(msg)
		if (rep.Error == "") == (rep.HTML == "") {
			t.Fatalf("reply %+v has both or neither of error and html", rep)
		}
		if rep.Error == "" {
			if _, err := parseMode(rep.Mode); err != nil {
				t.Fatalf("reply names mode %q", rep.Mode)
			}
		}
		if _, err := json.Marshal(rep); err != nil {
			t.Fatal(errors.New("reply does not encode"))
		}
	})
}
