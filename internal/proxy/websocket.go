package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/moat-dev/moat/internal/metrics"
	"github.com/moat-dev/moat/internal/request"
	"github.com/moat-dev/moat/internal/tracing"
	"github.com/moat-dev/moat/internal/usage"
	"github.com/moat-dev/moat/internal/web"
)

const (
	// maxHandshakeBytes bounds the backend's 101 response (status line and
	// headers).
	maxHandshakeBytes = 64 << 10
	// closeGrace is how long moat waits for a frame boundary before
	// injecting a Close frame, and for the peers to answer it, before it
	// drops the connections.
	closeGrace = time.Second
	// maxCloseReason is the longest reason a Close frame carries (a control
	// frame's payload is at most 125 bytes, two of them the code).
	maxCloseReason = 123

	opClose = 0x8
)

// isWebSocketUpgrade reports whether r asks for a WebSocket over HTTP/1.x,
// the only upgrade moat proxies.
func isWebSocketUpgrade(r *http.Request) bool {
	return r.ProtoMajor == 1 && r.Method == http.MethodGet &&
		headerHasToken(r.Header, "Connection", "upgrade") &&
		strings.EqualFold(strings.TrimSpace(r.Header.Get("Upgrade")), "websocket")
}

// serveWebSocket proxies a WebSocket handshake to rp and, when it switches
// protocols, splices the two connections frame by frame. It does not use
// ReverseProxy's upgrade copy, which holds two 32 KiB buffers per socket
// for its whole life. cookie, when set, is the affinity cookie to give the
// client with the answer.
func (b *Backend) serveWebSocket(w http.ResponseWriter, r *http.Request, info *request.Info, rp *replica, cookie *http.Cookie) {
	if !originAllowed(r, info) {
		b.log().Info("proxy: cross-origin WebSocket refused", "request_id", info.ID, "route", routeName(info),
			"backend", b.name, "origin", truncate(r.Header.Get("Origin"), maxLoggedOrigin), "client_ip", clientIP(r, info))
		web.Error(w, r, http.StatusForbidden, "websocket_origin")
		return
	}
	if cookie != nil {
		http.SetCookie(w, cookie)
	}
	out := r.Clone(r.Context())
	out.Body = nil
	out.ContentLength = 0
	out.TransferEncoding = nil
	out.Close = false
	out.RequestURI = ""
	upType := r.Header.Get("Upgrade")
	removeHopByHop(out.Header)
	b.prepareOutbound(out, r, info, rp.target)
	out.Header["Connection"] = []string{"Upgrade"}
	out.Header["Upgrade"] = []string{upType}
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = []string{""} // do not invent Go's
	}

	// The handshake is the round trip to the app: a span whose context
	// the app receives.
	span := tracing.Backend(out)
	ctx, cancel := context.WithTimeout(r.Context(), b.dialer.Timeout)
	backend, err := b.dialBackend(ctx, rp.target)
	cancel()
	if err != nil {
		span.Status(0, err)
		b.serveError(w, r, err)
		return
	}
	ok := false
	defer func() {
		if !ok {
			backend.Close()
		}
	}()

	_ = backend.SetDeadline(time.Now().Add(b.transport.ResponseHeaderTimeout))
	if err := out.Write(backend); err != nil {
		span.Status(0, err)
		b.serveError(w, r, fmt.Errorf("write websocket handshake: %w", err))
		return
	}
	lr := &io.LimitedReader{R: backend, N: maxHandshakeBytes}
	br := bufio.NewReaderSize(lr, 4<<10)
	resp, err := http.ReadResponse(br, out)
	span.Status(statusOf(resp), err)
	if err != nil {
		b.serveError(w, r, fmt.Errorf("read websocket handshake response: %w", err))
		return
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		// The backend refused the upgrade (403 for a bad Origin, 404, …):
		// relay its answer as is.
		lr.N = math.MaxInt64
		defer resp.Body.Close()
		removeHopByHop(resp.Header)
		h := w.Header()
		for k, vv := range resp.Header {
			h[k] = vv
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, io.LimitReader(resp.Body, 1<<20))
		return
	}
	if !strings.EqualFold(resp.Header.Get("Upgrade"), upType) {
		b.serveError(w, r, fmt.Errorf("backend switched to protocol %q, not %q", resp.Header.Get("Upgrade"), upType))
		return
	}
	_ = backend.SetDeadline(time.Time{})
	backendIn := withPrefix(backend, br)

	client, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		b.serveError(w, r, fmt.Errorf("hijack client connection: %w", err))
		return
	}
	ok = true
	// Hijack already clears the server's deadlines; clear them again so no
	// read, write or idle timeout of net/http can reach the spliced socket
	// (an idle Streamlit session must stay open for hours).
	_ = client.SetDeadline(time.Time{})
	clientIn := withPrefix(client, brw.Reader)
	brw = nil

	c := &wsConn{
		client:    client,
		backend:   backend,
		clientIn:  clientIn,
		backendIn: backendIn,
		toClient:  make(chan struct{}, 1),
		toBackend: make(chan struct{}, 1),
		done:      make(chan struct{}),
		sessionID: info.User.SessionID,
		sockets:   b.sockets,
		// What a re-check needs: whose it is, where, knowing what.
		userID:      info.User.ID,
		route:       routeName(info),
		fingerprint: info.User.Fingerprint(),
		usage:       b.sockets.openUsage(info),
		gauge:       metrics.WebSockets.WithLabelValues(routeName(info)),
		idle:        b.cfg.WebSocketIdleTimeout.D(),
	}
	// Count the socket before the client can see the 101, and hold the
	// client's write lock so that a Close injected meanwhile follows it.
	c.toClient <- struct{}{}
	c.sockets.add(c)
	c.gauge.Inc()
	var head bytes.Buffer
	head.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
	resp.Header["Connection"] = []string{"Upgrade"}
	resp.Header["Upgrade"] = []string{resp.Header.Get("Upgrade")}
	if cookie != nil {
		resp.Header.Add("Set-Cookie", cookie.String())
	}
	_ = resp.Header.Write(&head)
	head.WriteString("\r\n")
	_ = client.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err = client.Write(head.Bytes())
	_ = client.SetWriteDeadline(time.Time{})
	<-c.toClient
	if err != nil {
		c.teardown()
		b.log().Debug("proxy: write websocket handshake to client", "request_id", info.ID, "route", routeName(info), "backend", b.name, "error", err.Error())
		return
	}
	c.start(b.cfg.WebSocketMaxLifetime.D())
}

// statusOf is resp's status, or 0 when there is no response.
func statusOf(resp *http.Response) int {
	if resp == nil {
		return 0
	}
	return resp.StatusCode
}

// dialBackend opens a connection to target, with TLS when it says https.
func (b *Backend) dialBackend(ctx context.Context, target *url.URL) (net.Conn, error) {
	host := target.Host
	if target.Port() == "" {
		port := "80"
		if target.Scheme == "https" {
			port = "443"
		}
		host = net.JoinHostPort(target.Hostname(), port)
	}
	conn, err := b.dialer.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, err
	}
	if target.Scheme != "https" {
		return conn, nil
	}
	tc := tls.Client(conn, &tls.Config{
		ServerName: target.Hostname(),
		NextProtos: []string{"http/1.1"},
		MinVersion: tls.VersionTLS12,
	})
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("tls handshake with backend: %w", err)
	}
	return tc, nil
}

// withPrefix returns conn as a reader that first yields whatever br has
// already buffered, so that bytes read ahead during the handshake are not
// lost. br itself is not kept.
func withPrefix(conn net.Conn, br *bufio.Reader) io.Reader {
	n := br.Buffered()
	if n == 0 {
		return conn
	}
	p, _ := br.Peek(n)
	return &prefixReader{prefix: bytes.Clone(p), r: conn}
}

type prefixReader struct {
	prefix []byte
	r      io.Reader
}

func (p *prefixReader) Read(b []byte) (int, error) {
	if len(p.prefix) > 0 {
		n := copy(b, p.prefix)
		p.prefix = p.prefix[n:]
		if len(p.prefix) == 0 {
			p.prefix = nil
		}
		return n, nil
	}
	return p.r.Read(b)
}

// wsConn is one spliced WebSocket. While idle it holds its two pump
// goroutines, each blocked reading a frame header into a 14-byte array;
// copy buffers are borrowed from a pool only while a frame moves.
type wsConn struct {
	client, backend     net.Conn
	clientIn, backendIn io.Reader
	// toClient and toBackend are one-slot semaphores held while a frame is
	// written in that direction, so a Close frame moat injects lands at a
	// frame boundary.
	toClient, toBackend chan struct{}
	// sealedClient and sealedBackend are set once moat has sent its Close
	// frame that way; later frames in that direction are dropped.
	sealedClient, sealedBackend atomic.Bool
	closing                     atomic.Bool
	closeReplies                atomic.Int32
	done                        chan struct{}
	teardownOnce                sync.Once

	sessionID string
	// userID, route and fingerprint are the user, the route's name and
	// request.User.Fingerprint when the socket opened (Sockets.Recheck).
	userID      string
	route       string
	fingerprint uint64
	sockets     *Sockets
	gauge       prometheus.Gauge
	// usage follows the socket for usage counts (nil: not counted).
	usage *usage.Socket

	idle       time.Duration
	lastActive atomic.Int64
	idleTimer  *time.Timer
	lifeTimer  *time.Timer
}

// start arms the timers and starts the pumps of a registered socket.
func (c *wsConn) start(maxLifetime time.Duration) {
	c.touch()
	if c.idle > 0 {
		t := time.AfterFunc(time.Hour, c.checkIdle)
		t.Stop()
		c.idleTimer = t
		t.Reset(c.idle)
	}
	if maxLifetime > 0 {
		t := time.AfterFunc(time.Hour, func() { c.closeWith(1001, "max lifetime") })
		t.Stop()
		c.lifeTimer = t
		t.Reset(maxLifetime)
	}
	go c.pump(c.clientIn, c.backend, c.toBackend, &c.sealedBackend, true)
	go c.pump(c.backendIn, c.client, c.toClient, &c.sealedClient, false)
}

// touch records that a frame moved, for the idle timeout and for
// Sockets.Sessions (so sign-in sees a session in use over its socket),
// and returns the time it read (Unix nanoseconds).
func (c *wsConn) touch() int64 {
	now := time.Now().UnixNano()
	c.lastActive.Store(now)
	return now
}

func (c *wsConn) checkIdle() {
	since := time.Duration(time.Now().UnixNano() - c.lastActive.Load())
	if since >= c.idle {
		c.closeWith(1001, "idle timeout")
		return
	}
	select {
	case <-c.done:
	default:
		c.idleTimer.Reset(c.idle - since)
	}
}

// pump copies frames from src to dst until either side closes. It parses
// each frame's header and copies exactly its payload, without unmasking.
func (c *wsConn) pump(src io.Reader, dst net.Conn, lock chan struct{}, sealed *atomic.Bool, fromClient bool) {
	defer c.teardown()
	var hdr [14]byte
	for {
		// Idle sockets wait here, holding only hdr.
		if _, err := io.ReadFull(src, hdr[:2]); err != nil {
			return
		}
		now := c.touch()
		if fromClient && hdr[1]&0x80 == 0 {
			// RFC 6455 section 5.1: a client must mask every frame.
			c.closeWith(1002, "unmasked client frame")
			return
		}
		if fromClient && hdr[0]&0x8 == 0 {
			// A data frame from the browser is use; pings, pongs and
			// the backend's pushes are not.
			c.usage.Message(now)
		}
		hl := frameHeaderLen(hdr[1])
		if hl > 2 {
			if _, err := io.ReadFull(src, hdr[2:hl]); err != nil {
				return
			}
		}
		fh, err := parseFrameHeader(hdr[:hl])
		if err != nil {
			c.closeWith(1002, err.Error())
			return
		}
		if err := c.forward(src, dst, lock, sealed, hdr[:hl], fh.size); err != nil {
			return
		}
		if fh.opcode == opClose && c.closing.Load() {
			// A peer answered moat's Close; once both have, the sockets go.
			if c.closeReplies.Add(1) >= 2 {
				return
			}
		}
	}
}

// frameHeader is what the pump needs of a frame header (RFC 6455 section
// 5.2); the payload is copied as it is, masked or not.
type frameHeader struct {
	opcode byte
	masked bool
	// size is the payload length.
	size int64
}

// errFrameTooLarge refuses a 64-bit payload length with its top bit set,
// which RFC 6455 forbids and an int64 cannot hold.
var errFrameTooLarge = errors.New("frame too large")

// frameHeaderLen is the length of a frame header, 2 to 14 bytes, from its
// second byte: the mask bit and the 7-bit length (126 and 127 announce a
// 16- and a 64-bit length).
func frameHeaderLen(b1 byte) int {
	n := 2
	switch b1 & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b1&0x80 != 0 {
		n += 4
	}
	return n
}

// parseFrameHeader reads a frame header of exactly frameHeaderLen(b[1])
// bytes.
func parseFrameHeader(b []byte) (frameHeader, error) {
	fh := frameHeader{opcode: b[0] & 0x0f, masked: b[1]&0x80 != 0}
	switch n := b[1] & 0x7f; n {
	case 126:
		fh.size = int64(binary.BigEndian.Uint16(b[2:4]))
	case 127:
		size := binary.BigEndian.Uint64(b[2:10])
		if size > math.MaxInt64 {
			return frameHeader{}, errFrameTooLarge
		}
		fh.size = int64(size)
	default:
		fh.size = int64(n)
	}
	return fh, nil
}

// forward writes one frame (header already read, size bytes of payload
// still in src) to dst, or drops it when moat has closed that direction.
func (c *wsConn) forward(src io.Reader, dst net.Conn, lock chan struct{}, sealed *atomic.Bool, hdr []byte, size int64) error {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	select {
	case lock <- struct{}{}:
	case <-c.done:
		return net.ErrClosed
	}
	defer func() { <-lock }()
	drop := sealed.Load()
	// The first write carries the header and as much payload as fits, so
	// a small frame costs one write.
	n := copy(buf, hdr)
	for {
		chunk := int64(len(buf) - n)
		if chunk > size {
			chunk = size
		}
		if chunk > 0 {
			if _, err := io.ReadFull(src, buf[n:n+int(chunk)]); err != nil {
				return err
			}
			c.touch()
			size -= chunk
			n += int(chunk)
		}
		if !drop {
			if _, err := dst.Write(buf[:n]); err != nil {
				return err
			}
		}
		n = 0
		if size == 0 {
			return nil
		}
	}
}

// closeWith sends a Close frame with code and reason to both ends: to the
// client unmasked, as a server does, and to the backend masked with a
// random key, as a client does (RFC 6455 section 5.3). The sockets are
// torn down when both answer, or after closeGrace.
func (c *wsConn) closeWith(code int, reason string) {
	if !c.closing.CompareAndSwap(false, true) {
		return
	}
	if len(reason) > maxCloseReason {
		reason = reason[:maxCloseReason]
	}
	payload := make([]byte, 2+len(reason))
	binary.BigEndian.PutUint16(payload, uint16(code))
	copy(payload[2:], reason)

	toClient := append([]byte{0x80 | opClose, byte(len(payload))}, payload...)
	var key [4]byte
	_, _ = rand.Read(key[:])
	toBackend := append([]byte{0x80 | opClose, 0x80 | byte(len(payload))}, key[:]...)
	for i, p := range payload {
		toBackend = append(toBackend, p^key[i%4])
	}
	time.AfterFunc(2*closeGrace, c.teardown)
	c.inject(c.client, c.toClient, &c.sealedClient, toClient)
	c.inject(c.backend, c.toBackend, &c.sealedBackend, toBackend)
}

func (c *wsConn) inject(dst net.Conn, lock chan struct{}, sealed *atomic.Bool, frame []byte) {
	t := time.NewTimer(closeGrace)
	defer t.Stop()
	select {
	case lock <- struct{}{}:
	case <-t.C:
		// A frame is stuck half-way; no clean boundary will come.
		c.teardown()
		return
	case <-c.done:
		return
	}
	sealed.Store(true)
	_ = dst.SetWriteDeadline(time.Now().Add(closeGrace))
	_, _ = dst.Write(frame)
	<-lock
}

// teardown closes both connections and forgets the socket; safe to call
// more than once.
func (c *wsConn) teardown() {
	c.teardownOnce.Do(func() {
		close(c.done)
		c.client.Close()
		c.backend.Close()
		if c.idleTimer != nil {
			c.idleTimer.Stop()
		}
		if c.lifeTimer != nil {
			c.lifeTimer.Stop()
		}
		c.sockets.remove(c)
		c.gauge.Dec()
		c.usage.Close()
	})
}
