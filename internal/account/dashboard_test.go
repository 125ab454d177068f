package account

import (
	"context"
	"net/http"
	"sync"

	"github.com/coder/websocket"

	"github.com/moat-dev/moat/internal/request"
)

// dashboard plays the app behind moat: a page whose script keeps a
// WebSocket open and shows when it is cut off. cut closes the sockets of a
// revoked session, as the server does through auth's OnRevoke.
type dashboard struct {
	mu    sync.Mutex
	conns map[string][]*websocket.Conn
}

func newDashboard() *dashboard { return &dashboard{conns: map[string][]*websocket.Conn{}} }

const dashboardPage = `<!doctype html><html><head><meta charset="utf-8"><title>Sales dashboard</title></head>
<body><h1 id="dash">Sales dashboard</h1><p>WebSocket: <span id="ws">connecting</span></p><script src="/app/dash.js"></script></body></html>`

const dashboardScript = `const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/app/ws");
ws.onopen = () => { document.documentElement.dataset.ws = "open"; document.getElementById("ws").textContent = "live"; };
ws.onclose = (e) => { document.documentElement.dataset.ws = "closed"; document.getElementById("ws").textContent = "cut off (" + e.code + ")"; };`

func (d *dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/app/dash.js":
		w.Header().Set("Content-Type", "text/javascript")
		_, _ = w.Write([]byte(dashboardScript))
	case "/app/ws":
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		hash := request.From(r).User.SessionID
		d.mu.Lock()
		d.conns[hash] = append(d.conns[hash], c)
		d.mu.Unlock()
		for {
			if _, _, err := c.Read(context.Background()); err != nil {
				return
			}
		}
	default:
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(dashboardPage))
	}
}

// cut closes the WebSockets of a revoked session.
func (d *dashboard) cut(hash string) {
	d.mu.Lock()
	conns := d.conns[hash]
	delete(d.conns, hash)
	d.mu.Unlock()
	for _, c := range conns {
		go c.Close(websocket.StatusPolicyViolation, "session revoked")
	}
}
