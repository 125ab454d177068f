package demoapp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/coder/websocket"
)

// maxMessageSize bounds what a client may send: {"mode":"table"} is 16
// bytes, so 512 leaves room and nothing more.
const maxMessageSize = 512

// writeTimeout bounds one reply, so a client that stops reading cannot
// hold a goroutine forever. Reads have no timeout on purpose: an idle
// socket stays open as long as the client wants, which is what Streamlit
// needs and what moat's proxy must not cut.
const writeTimeout = 10 * time.Second

// modeRequest is what the page sends: {"mode":"bar"}.
type modeRequest struct {
	Mode string `json:"mode"`
}

// modeReply is the answer: the mode and its rendered fragment, or an error.
type modeReply struct {
	Mode  string `json:"mode,omitempty"`
	HTML  string `json:"html,omitempty"`
	Error string `json:"error,omitempty"`
}

// serveWebSocket switches display modes over one long-lived socket.
//
// The accept keeps coder/websocket's origin check: a browser's Origin must
// name the request's own host, so another site cannot drive a signed-in
// user's socket (cross-site WebSocket hijacking).
func (a *app) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		// Accept has already written the response (403 for a bad origin).
		a.log.Debug("demoapp: websocket refused", "err", err, "origin", r.Header.Get("Origin"))
		return
	}
	defer c.CloseNow()
	c.SetReadLimit(maxMessageSize)

	ctx := r.Context()
	for {
		typ, msg, err := c.Read(ctx)
		if err != nil {
			if websocket.CloseStatus(err) == -1 && !errors.Is(err, context.Canceled) {
				a.log.Debug("demoapp: websocket read", "err", err)
			}
			return
		}
		if typ != websocket.MessageText {
			c.Close(websocket.StatusUnsupportedData, "text messages only")
			return
		}
		if err := a.reply(ctx, c, msg); err != nil {
			a.log.Debug("demoapp: websocket write", "err", err)
			return
		}
	}
}

// reply answers one request message.
func (a *app) reply(ctx context.Context, c *websocket.Conn, msg []byte) error {
	out, err := json.Marshal(a.answer(msg))
	if err != nil {
		return fmt.Errorf("encode reply: %w", err)
	}
	wctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	return c.Write(wctx, websocket.MessageText, out)
}

// answer turns one request message into its reply. A bad message gets an
// error reply rather than a closed socket, so a page with a stale script
// keeps working for the modes it does know.
func (a *app) answer(msg []byte) modeReply {
	var req modeRequest
	if err := json.Unmarshal(msg, &req); err != nil {
		return modeReply{Error: `bad message: want {"mode":"line"}`}
	}
	m, err := parseMode(req.Mode)
	if err != nil || req.Mode == "" {
		return modeReply{Error: "unknown mode: want line, bar, area or table"}
	}
	return modeReply{Mode: string(m), HTML: a.fragments[m]}
}
