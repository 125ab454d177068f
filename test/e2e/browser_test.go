package e2e

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// webSocketLog records the WebSockets a browser tab opens, from the DevTools
// protocol's network events: what the page itself did, independent of what
// moat logs.
type webSocketLog struct {
	mu      sync.Mutex
	sockets map[network.RequestID]*webSocketRecord
	order   []network.RequestID
}

// webSocketRecord is one WebSocket seen by the browser.
type webSocketRecord struct {
	URL string
	// Status is the handshake's HTTP status (101 when upgraded), 0 before it.
	Status int64
	// Protocol is the Sec-WebSocket-Protocol the server accepted.
	Protocol string
	// Closed is true once the browser saw the socket close.
	Closed bool
	// Frames counts frames in both directions.
	Frames int
}

// recordWebSockets starts recording the WebSockets of the tab in ctx.
func recordWebSockets(t testing.TB, ctx context.Context) *webSocketLog {
	t.Helper()
	l := &webSocketLog{sockets: map[network.RequestID]*webSocketRecord{}}
	err := chromedp.Listen(ctx, func(ev any) {
		l.mu.Lock()
		defer l.mu.Unlock()
		switch e := ev.(type) {
		case *network.EventWebSocketCreated:
			l.sockets[e.RequestID] = &webSocketRecord{URL: e.URL}
			l.order = append(l.order, e.RequestID)
		case *network.EventWebSocketHandshakeResponseReceived:
			if s := l.sockets[e.RequestID]; s != nil && e.Response != nil {
				s.Status = e.Response.Status
				for k, v := range e.Response.Headers {
					if strings.EqualFold(k, "Sec-WebSocket-Protocol") {
						s.Protocol, _ = v.(string)
					}
				}
			}
		case *network.EventWebSocketFrameSent:
			if s := l.sockets[e.RequestID]; s != nil {
				s.Frames++
			}
		case *network.EventWebSocketFrameReceived:
			if s := l.sockets[e.RequestID]; s != nil {
				s.Frames++
			}
		case *network.EventWebSocketClosed:
			if s := l.sockets[e.RequestID]; s != nil {
				s.Closed = true
			}
		}
	})
	if err != nil {
		t.Fatalf("listen for WebSocket events: %v", err)
	}
	return l
}

// Matching returns copies of the records whose URL contains part, in the
// order the browser opened them.
func (l *webSocketLog) Matching(part string) []webSocketRecord {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []webSocketRecord
	for _, id := range l.order {
		if s := l.sockets[id]; strings.Contains(s.URL, part) {
			out = append(out, *s)
		}
	}
	return out
}
