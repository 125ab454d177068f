package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"
)

// upstream is the round tripper of a plain-HTTP backend. A request without
// a body that may be retried (GET, HEAD, OPTIONS: most of a dashboard's
// traffic) goes over a lean HTTP/1.1 client; everything else (bodies,
// upgrades, TLS backends) goes to fallback, an http.Transport.
//
// Why not only http.Transport: it hands every request and response between
// the caller's goroutine and two per-connection goroutines (readLoop,
// writeLoop), which profiles of moat's public route put at about a third of
// a request's CPU (issue 13). The lean client does the round trip on the
// caller's goroutine. The bytes on the wire stay net/http's own: requests
// are written by http.Request.Write and responses parsed by
// http.ReadResponse; only the pool of idle connections is moat's.
type upstream struct {
	// dial, the timeouts and the pool's bounds are the fallback's.
	dial                  func(ctx context.Context, network, addr string) (net.Conn, error)
	responseHeaderTimeout time.Duration
	maxHeaderBytes        int64
	idleTimeout           time.Duration
	maxIdle               int
	fallback              *http.Transport

	mu   sync.Mutex
	idle map[string][]*upConn // by host:port, most recently used last
}

// upConn is one connection to the backend.
type upConn struct {
	nc       net.Conn
	lr       *io.LimitedReader // bounds what a response's header may read
	br       *bufio.Reader
	bw       *bufio.Writer
	addr     string
	lastUsed time.Time
}

// noLimit lifts the header bound while a body is read (bodies are framed
// by net/http and bounded by the route's limits, not here).
const noLimit = 1<<63 - 1

// newUpstream puts the lean client in front of t, with t's dialer,
// timeouts and bounds.
func newUpstream(t *http.Transport) *upstream {
	return &upstream{
		dial:                  t.DialContext,
		responseHeaderTimeout: t.ResponseHeaderTimeout,
		maxHeaderBytes:        t.MaxResponseHeaderBytes,
		idleTimeout:           t.IdleConnTimeout,
		maxIdle:               t.MaxIdleConnsPerHost,
		fallback:              t,
	}
}

// RoundTrip sends req over the lean client when it can, else through the
// fallback Transport.
func (u *upstream) RoundTrip(req *http.Request) (*http.Response, error) {
	if !leanable(req) {
		return u.fallback.RoundTrip(req)
	}
	addr := req.URL.Host
	if req.URL.Port() == "" {
		addr = net.JoinHostPort(req.URL.Hostname(), "80")
	}
	for attempt := 0; ; attempt++ {
		c, reused, err := u.conn(req.Context(), addr)
		if err != nil {
			return nil, err
		}
		resp, err := u.roundTrip(c, req)
		if err == nil {
			return resp, nil
		}
		c.nc.Close()
		// A kept-alive connection the backend closed while it sat idle
		// fails before any byte of an answer; the request has no body and
		// may be repeated, so it is, once, on a fresh connection (as
		// http.Transport does).
		if reused && attempt == 0 && req.Context().Err() == nil && errors.Is(err, errNothingRead) {
			continue
		}
		return nil, err
	}
}

// leanable reports whether req can take the lean path: plain HTTP, no
// body, a method that may be retried, no protocol upgrade.
func leanable(req *http.Request) bool {
	if req.URL.Scheme != "http" || (req.Body != nil && req.Body != http.NoBody) || req.ContentLength > 0 {
		return false
	}
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
	default:
		return false
	}
	_, upgrade := req.Header["Upgrade"]
	return !upgrade && len(req.Trailer) == 0
}

// errNothingRead marks a failure before the backend sent any byte of an
// answer: a request that may be repeated can go again on a new connection.
var errNothingRead = errors.New("backend closed the connection before answering")

// aLongTimeAgo is a deadline in the past, which interrupts a blocked read.
var aLongTimeAgo = time.Unix(1, 0)

func (u *upstream) roundTrip(c *upConn, req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	// The client going away (or moat shutting down) interrupts the round
	// trip and the body's copy at once.
	stop := context.AfterFunc(ctx, func() { c.nc.SetDeadline(aLongTimeAgo) })
	fail := func(err error) (*http.Response, error) {
		stop()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	if u.responseHeaderTimeout > 0 {
		c.nc.SetDeadline(time.Now().Add(u.responseHeaderTimeout))
	}
	if err := req.Write(c.bw); err != nil {
		return fail(fmt.Errorf("write request: %w: %w", errNothingRead, err))
	}
	if err := c.bw.Flush(); err != nil {
		return fail(fmt.Errorf("write request: %w: %w", errNothingRead, err))
	}
	c.lr.N = u.maxHeaderBytes
	var resp *http.Response
	for {
		if _, err := c.br.Peek(1); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
				err = errNothingRead
			}
			return fail(fmt.Errorf("read response: %w", err))
		}
		var err error
		resp, err = http.ReadResponse(c.br, req)
		if err != nil {
			if c.lr.N <= 0 {
				err = fmt.Errorf("response header larger than %d bytes", u.maxHeaderBytes)
			}
			return fail(fmt.Errorf("read response: %w", err))
		}
		// Informational answers (100 Continue, 103 Early Hints) precede
		// the real one; 101 was not asked for.
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
		io.Copy(io.Discard, resp.Body)
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return fail(errors.New("read response: backend switched protocols unasked"))
	}
	c.lr.N = noLimit
	c.nc.SetDeadline(time.Time{})
	if ctx.Err() != nil { // AfterFunc may have set the deadline just before
		return fail(ctx.Err())
	}
	b := &upBody{ctx: ctx, rc: resp.Body, u: u, c: c, stop: stop, keep: !resp.Close}
	if resp.Body == http.NoBody {
		b.done(true)
		return resp, nil
	}
	resp.Body = b
	return resp, nil
}

// upBody returns its connection to the pool once the response is read to
// its end and closed, and closes it otherwise.
type upBody struct {
	ctx      context.Context
	rc       io.ReadCloser
	u        *upstream
	c        *upConn
	stop     func() bool
	keep     bool
	eof      bool
	finished bool
}

func (b *upBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	if err != nil && err != io.EOF && b.ctx.Err() != nil {
		return n, b.ctx.Err() // the deadline the AfterFunc set, in plain words
	}
	return n, err
}

func (b *upBody) Close() error {
	b.done(b.eof)
	return nil
}

// done releases the connection: back to the pool when the whole response
// was read and the backend keeps the connection alive, closed otherwise.
func (b *upBody) done(complete bool) {
	if b.finished {
		return
	}
	b.finished = true
	// stop reports false when the context's AfterFunc already ran (or is
	// running) and set a deadline on the connection: never reuse it then.
	if b.stop() && complete && b.keep {
		b.u.put(b.c)
		return
	}
	b.c.nc.Close()
}

// conn returns an idle connection to addr that is still good, or dials a
// new one.
func (u *upstream) conn(ctx context.Context, addr string) (*upConn, bool, error) {
	for {
		u.mu.Lock()
		list := u.idle[addr]
		if len(list) == 0 {
			u.mu.Unlock()
			break
		}
		c := list[len(list)-1]
		u.idle[addr] = list[:len(list)-1]
		u.mu.Unlock()
		if time.Since(c.lastUsed) < u.idleTimeout && quiet(c.nc) {
			return c, true, nil
		}
		c.nc.Close()
	}
	nc, err := u.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, false, err
	}
	c := &upConn{nc: nc, addr: addr}
	c.lr = &io.LimitedReader{R: nc, N: noLimit}
	c.br = bufio.NewReaderSize(c.lr, 16<<10)
	c.bw = bufio.NewWriterSize(nc, 16<<10)
	return c, false, nil
}

// put keeps c for the next request, unless the pool is full or the
// backend sent bytes nobody asked for (which would otherwise be read as the
// next request's answer).
func (u *upstream) put(c *upConn) {
	if c.br.Buffered() > 0 {
		c.nc.Close()
		return
	}
	c.lastUsed = time.Now()
	u.mu.Lock()
	if u.idle == nil {
		u.idle = map[string][]*upConn{}
	}
	list := u.idle[c.addr]
	if len(list) >= u.maxIdle {
		u.mu.Unlock()
		c.nc.Close()
		return
	}
	u.idle[c.addr] = append(list, c)
	u.mu.Unlock()
}

// quiet reports whether an idle connection has nothing to read and is not
// closed: a peek that does not wait. A backend that closed the connection
// (EOF) or sent unsolicited bytes is not reused.
func quiet(nc net.Conn) bool {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	ok = false
	var buf [1]byte
	raw.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		ok = n < 0 && (err == syscall.EAGAIN || err == syscall.EWOULDBLOCK)
		return true // never wait for readiness
	})
	return ok
}

// CloseIdleConnections closes every idle connection of both paths.
func (u *upstream) CloseIdleConnections() {
	u.mu.Lock()
	idle := u.idle
	u.idle = nil
	u.mu.Unlock()
	for _, list := range idle {
		for _, c := range list {
			c.nc.Close()
		}
	}
	u.fallback.CloseIdleConnections()
}
