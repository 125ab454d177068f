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
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
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
	c.up = direction{src: clientIn, conn: client, fromClient: true}
	c.down = direction{src: backendIn, conn: backend}
	// Count the socket before the client can see the 101, and hold the
	// client's write lock so that a Close injected meanwhile follows it.
	c.down.wmu.Lock()
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
	c.down.wmu.Unlock()
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

// wsConn is one spliced WebSocket. While a frame is expected it holds a
// pump goroutine per direction, blocked reading a frame header into a
// 14-byte array; copy buffers are borrowed from a pool only while a frame
// moves. A direction idle for parkAfter gives up its goroutine and waits in
// the process's poller (park_linux.go), so an idle socket holds no
// goroutine at all.
type wsConn struct {
	// up carries the client's frames to the backend, down the backend's
	// to the client.
	up, down     direction
	closing      atomic.Bool
	torn         atomic.Bool // torn down: both connections closed
	closeReplies atomic.Int32

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

// direction is one way of a spliced socket: frames read from conn
// (through src) and written to the other direction's conn. Its fields are
// kept few: thousands of idle sockets hold them (issue 13).
type direction struct {
	// src is conn, or a reader that first yields what the handshake read
	// ahead.
	src  io.Reader
	conn net.Conn
	// wmu is held while a frame is written this way, so that a Close
	// frame moat injects lands at a frame boundary.
	wmu sync.Mutex
	// sealed is set once moat has sent its Close frame this way; later
	// frames this way are dropped.
	sealed     atomic.Bool
	fromClient bool
	// last is when the direction's pump last read a frame header, armed
	// when it last set conn's read deadline (Unix nanoseconds, 0: none
	// set). Only the direction's pump uses them; at most one runs.
	last, armed int64
	// parked is the poller's token while the direction waits there.
	parked atomic.Uint64
}

// dst is where d's frames go: the other direction's connection.
func (c *wsConn) dst(d *direction) net.Conn {
	if d == &c.up {
		return c.down.conn
	}
	return c.up.conn
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
	go c.pump(&c.up)
	go c.pump(&c.down)
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
	if !c.torn.Load() {
		c.idleTimer.Reset(c.idle - since)
	}
}

// pump copies frames of d until either side closes, or until d has been
// idle for parkAfter and is parked (a new pump starts when a frame comes).
// It parses each frame's header and copies exactly its payload, without
// unmasking.
func (c *wsConn) pump(d *direction) {
	parked := false
	ra := readAhead{d: d}
	defer func() {
		ra.release()
		if !parked {
			c.teardown()
		}
	}()
	d.last = time.Now().UnixNano()
	for {
		// Idle sockets wait here, at a frame boundary, until parked.
		if err := c.fill(&ra, 2, true); err != nil {
			parked = err == errParked
			return
		}
		now := c.touch()
		d.last = now
		b0, b1 := ra.buf[ra.start], ra.buf[ra.start+1]
		if d.fromClient && b1&0x80 == 0 {
			// RFC 6455 section 5.1: a client must mask every frame.
			c.closeWith(1002, "unmasked client frame")
			return
		}
		if d.fromClient && b0&0x8 == 0 {
			// A data frame from the browser is use; pings, pongs and
			// the backend's pushes are not.
			c.usage.Message(now)
		}
		hl := frameHeaderLen(b1)
		if err := c.fill(&ra, hl, false); err != nil {
			return
		}
		fh, err := parseFrameHeader(ra.buf[ra.start : ra.start+hl])
		if err != nil {
			c.closeWith(1002, err.Error())
			return
		}
		if err := c.forward(&ra, int64(hl)+fh.size); err != nil {
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

// readAhead is what a pump has read of its direction and not yet
// forwarded: buf[start:end]. One read fills it with whatever the peer has
// sent, so a small frame (header, mask and payload) costs one read, not
// three. buf is borrowed from a pool while the pump runs and returned when
// it parks or ends: a parked direction holds no buffer.
type readAhead struct {
	d          *direction
	buf        []byte
	start, end int
}

// readAheadSize is the buffer a pump reads into: room for the small
// frames of an interactive app; a larger frame streams through it.
const readAheadSize = 4 << 10

var readAheadPool = sync.Pool{New: func() any { b := make([]byte, readAheadSize); return &b }}

func (ra *readAhead) release() {
	if ra.buf != nil {
		b := ra.buf
		ra.buf, ra.start, ra.end = nil, 0, 0
		readAheadPool.Put(&b)
	}
}

// errParked ends a pump whose direction now waits in the poller.
var errParked = errors.New("parked")

// fill reads until ra holds at least n bytes (n ≤ readAheadSize). At a
// frame boundary (boundary, nothing buffered), while the direction's
// connection can be parked, a read deadline (set at most every
// parkAfter/2, not per frame) tells when it has been idle for parkAfter;
// then it is parked and fill returns errParked. Anywhere else the deadline
// passing is no error: it is cleared and the read goes on.
func (c *wsConn) fill(ra *readAhead, n int, boundary bool) error {
	d := ra.d
	if ra.end-ra.start >= n {
		return nil
	}
	if ra.buf == nil {
		ra.buf = *(readAheadPool.Get().(*[]byte))
	}
	if ra.start > 0 {
		ra.end = copy(ra.buf, ra.buf[ra.start:ra.end])
		ra.start = 0
	}
	after := c.sockets.parkAfter()
	parkable := boundary && ra.end == 0 && d.parkable()
	for ra.end < n {
		if parkable && d.last-d.armed >= int64(after/2) {
			_ = d.conn.SetReadDeadline(time.Unix(0, d.last+int64(after)))
			d.armed = d.last
		}
		m, err := d.src.Read(ra.buf[ra.end:])
		ra.end += m
		if err == nil || m > 0 && !errors.Is(err, os.ErrDeadlineExceeded) {
			if err != nil && ra.end >= n {
				return nil // the error comes again on the next read
			}
			if err != nil {
				return err
			}
			parkable = parkable && ra.end == 0
			continue
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) || d.armed == 0 {
			return err
		}
		if !parkable || ra.end > 0 {
			// Within a frame: the deadline only watches for idleness.
			_ = d.conn.SetReadDeadline(time.Time{})
			d.armed = 0
			parkable = false
			continue
		}
		if time.Now().UnixNano()-d.last < int64(after) {
			// A deadline set before the last frame: set it anew.
			_ = d.conn.SetReadDeadline(time.Unix(0, d.last+int64(after)))
			d.armed = d.last
			continue
		}
		_ = d.conn.SetReadDeadline(time.Time{})
		d.armed = 0
		ra.release()
		if c.park(d) {
			return errParked
		}
		ra.buf = *(readAheadPool.Get().(*[]byte))
		parkable = false // keep reading, without a deadline
	}
	return nil
}

// parkable reports whether d may wait in the poller: its connection is a
// plain one (a TLS one may hold decrypted bytes no descriptor shows) and
// the handshake's read-ahead is used up.
func (d *direction) parkable() bool {
	if d.src != io.Reader(d.conn) {
		pr, ok := d.src.(*prefixReader)
		if !ok || len(pr.prefix) > 0 {
			return false
		}
		d.src = d.conn
	}
	_, ok := d.conn.(syscall.Conn)
	return ok
}

// rawConn returns conn's descriptor, or nil when it has none of its own.
func rawConn(conn net.Conn) syscall.RawConn {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return raw
}

// park hands d to the poller, which starts a new pump when d's connection
// becomes readable; it reports whether d is parked.
func (c *wsConn) park(d *direction) bool {
	raw := rawConn(d.conn)
	if raw == nil {
		return false
	}
	poll := &c.sockets.poll
	id, err := poll.park(raw, func() {
		d.parked.Store(0)
		go c.pump(d)
	})
	if err != nil {
		return false
	}
	d.parked.Store(id)
	if c.torn.Load() {
		// Torn down meanwhile, perhaps before teardown could see the
		// token: forget it here.
		poll.cancel(id)
	}
	return true
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

// forward writes one frame of total bytes (header and payload), the
// first of them in ra, to its direction's destination, or drops it when
// moat has closed that direction. What ra holds goes in one write; a frame
// larger than ra streams through a 32 KiB copy buffer.
func (c *wsConn) forward(ra *readAhead, total int64) error {
	d := ra.d
	d.wmu.Lock()
	defer d.wmu.Unlock()
	if c.torn.Load() {
		return net.ErrClosed
	}
	dst := c.dst(d)
	drop := d.sealed.Load()
	n := min(int64(ra.end-ra.start), total)
	if !drop {
		if _, err := dst.Write(ra.buf[ra.start : ra.start+int(n)]); err != nil {
			return err
		}
	}
	ra.start += int(n)
	total -= n
	if total == 0 {
		return nil
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	for total > 0 {
		chunk := buf[:min(int64(len(buf)), total)]
		if err := c.readFull(d, chunk); err != nil {
			return err
		}
		c.touch()
		total -= int64(len(chunk))
		if !drop {
			if _, err := dst.Write(chunk); err != nil {
				return err
			}
		}
	}
	return nil
}

// readFull fills b from d within a frame: a read deadline set to watch for
// idleness passing is no error; it is cleared and the read goes on.
func (c *wsConn) readFull(d *direction, b []byte) error {
	for {
		n, err := io.ReadFull(d.src, b)
		if err == nil {
			return nil
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) || d.armed == 0 {
			return err
		}
		_ = d.conn.SetReadDeadline(time.Time{})
		d.armed = 0
		b = b[n:]
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
	c.inject(&c.down, toClient)
	c.inject(&c.up, toBackend)
}

// inject writes frame, a Close frame of moat's, to d's destination at a
// frame boundary, and seals d. A frame stuck half-way for closeGrace (no
// clean boundary will come) tears the socket down, which frees the lock.
func (c *wsConn) inject(d *direction, frame []byte) {
	stuck := time.AfterFunc(closeGrace, c.teardown)
	d.wmu.Lock()
	defer d.wmu.Unlock()
	stuck.Stop()
	if c.torn.Load() {
		return
	}
	d.sealed.Store(true)
	dst := c.dst(d)
	_ = dst.SetWriteDeadline(time.Now().Add(closeGrace))
	_, _ = dst.Write(frame)
}

// teardown closes both connections and forgets the socket; safe to call
// more than once.
func (c *wsConn) teardown() {
	if !c.torn.CompareAndSwap(false, true) {
		return
	}
	c.up.conn.Close()
	c.down.conn.Close()
	for _, d := range []*direction{&c.up, &c.down} {
		if id := d.parked.Swap(0); id != 0 {
			c.sockets.poll.cancel(id)
		}
	}
	if c.idleTimer != nil {
		c.idleTimer.Stop()
	}
	if c.lifeTimer != nil {
		c.lifeTimer.Stop()
	}
	c.sockets.remove(c)
	c.gauge.Dec()
	c.usage.Close()
}
