package clientip

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// PROXY protocol bounds (https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt).
const (
	maxV1Header = 107 // the spec's bound, CRLF included
	maxV2Body   = 2048
	// DefaultProxyHeaderTimeout bounds the wait for a PROXY header.
	DefaultProxyHeaderTimeout = 5 * time.Second
)

var v2Signature = []byte("\r\n\r\n\x00\r\nQUIT\n")

// ErrProxyHeader is returned (wrapped) for a malformed PROXY header.
var ErrProxyHeader = errors.New("malformed PROXY protocol header")

// ProxyProtocolListener wraps l so that connections from trusted peers may
// start with a PROXY protocol v1 or v2 header, whose source address then
// becomes the connection's RemoteAddr. Connections from other peers are
// passed through untouched: their header, if any, is not believed (and
// reaches the HTTP server as garbage). A trusted peer that sends no header
// keeps its own address; a malformed header, or none within timeout (0 means
// DefaultProxyHeaderTimeout), closes the connection.
//
// Headers are read on a goroutine per connection before Accept returns it,
// so RemoteAddr is final (listeners stacked above, such as a per-client
// connection limit, see the real client) and a slow peer never holds up
// Accept for the others.
func ProxyProtocolListener(l net.Listener, trusted []netip.Prefix, timeout time.Duration) net.Listener {
	if timeout <= 0 {
		timeout = DefaultProxyHeaderTimeout
	}
	return &proxyListener{
		Listener: l, res: Resolver{Trusted: trusted}, timeout: timeout,
		ready: make(chan accepted), closed: make(chan struct{}),
	}
}

type proxyListener struct {
	net.Listener
	res     Resolver
	timeout time.Duration

	start     sync.Once
	ready     chan accepted
	closed    chan struct{}
	closeOnce sync.Once
}

type accepted struct {
	c   net.Conn
	err error
}

func (pl *proxyListener) Accept() (net.Conn, error) {
	pl.start.Do(func() { go pl.loop() })
	select {
	case a := <-pl.ready:
		return a.c, a.err
	case <-pl.closed:
		return nil, net.ErrClosed
	}
}

func (pl *proxyListener) Close() error {
	pl.closeOnce.Do(func() { close(pl.closed) })
	return pl.Listener.Close()
}

// deliver hands a to Accept, or drops it once the listener is closed.
func (pl *proxyListener) deliver(a accepted) {
	select {
	case pl.ready <- a:
	case <-pl.closed:
		if a.c != nil {
			_ = a.c.Close()
		}
	}
}

func (pl *proxyListener) loop() {
	for {
		c, err := pl.Listener.Accept()
		if err != nil {
			pl.deliver(accepted{err: err})
			var te interface{ Temporary() bool }
			if errors.Is(err, net.ErrClosed) || !errors.As(err, &te) || !te.Temporary() {
				return
			}
			continue // the caller (http.Server) backs off on temporary errors
		}
		peer := PeerAddr(c.RemoteAddr().String())
		if !peer.IsValid() || !pl.res.IsTrusted(peer) {
			pl.deliver(accepted{c: c})
			continue
		}
		go func() {
			pc := &proxyConn{Conn: c, timeout: pl.timeout}
			if pc.init(); pc.err != nil {
				return // logged by nobody: a broken header is the peer's bug; the conn is closed
			}
			pl.deliver(accepted{c: pc})
		}()
	}
}

// proxyConn is a connection from a trusted peer that may carry a header.
type proxyConn struct {
	net.Conn
	timeout time.Duration
	once    sync.Once
	br      *bufio.Reader
	remote  net.Addr
	err     error
}

func (c *proxyConn) init() {
	c.once.Do(func() {
		_ = c.Conn.SetReadDeadline(time.Now().Add(c.timeout))
		c.br = bufio.NewReaderSize(c.Conn, 512)
		src, err := ReadProxyHeader(c.br)
		_ = c.Conn.SetReadDeadline(time.Time{})
		if err != nil {
			c.err = fmt.Errorf("read PROXY header from %s: %w", c.Conn.RemoteAddr(), err)
			_ = c.Conn.Close()
			return
		}
		if src.IsValid() {
			c.remote = net.TCPAddrFromAddrPort(src)
		}
	})
}

func (c *proxyConn) Read(b []byte) (int, error) {
	c.init()
	if c.err != nil {
		return 0, c.err
	}
	return c.br.Read(b)
}

func (c *proxyConn) RemoteAddr() net.Addr {
	c.init()
	if c.remote != nil {
		return c.remote
	}
	return c.Conn.RemoteAddr()
}

// ReadProxyHeader reads a PROXY protocol v1 or v2 header from br, if one is
// there, and returns the source address it names. It returns the zero
// AddrPort, and nil, when the stream does not start with a header (nothing
// is consumed then) or the header is a v2 LOCAL or an UNKNOWN/unspecified
// family one (the peer speaks for itself).
func ReadProxyHeader(br *bufio.Reader) (netip.AddrPort, error) {
	first, err := br.Peek(1)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return netip.AddrPort{}, nil
		}
		return netip.AddrPort{}, err
	}
	switch first[0] {
	case 'P':
		b, err := br.Peek(6)
		if err != nil || string(b) != "PROXY " {
			// Not a header (an HTTP method starting with P, say).
			if err != nil && !errors.Is(err, io.EOF) {
				return netip.AddrPort{}, err
			}
			return netip.AddrPort{}, nil
		}
		return readV1(br)
	case '\r':
		b, err := br.Peek(len(v2Signature))
		if err != nil || !bytes.Equal(b, v2Signature) {
			if err != nil && !errors.Is(err, io.EOF) {
				return netip.AddrPort{}, err
			}
			return netip.AddrPort{}, nil
		}
		return readV2(br)
	}
	return netip.AddrPort{}, nil
}

func readV1(br *bufio.Reader) (netip.AddrPort, error) {
	var line []byte
	for len(line) < maxV1Header {
		c, err := br.ReadByte()
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("%w: %v", ErrProxyHeader, err)
		}
		line = append(line, c)
		if c == '\n' {
			break
		}
	}
	return ParseProxyV1(string(line))
}

// ParseProxyV1 parses one v1 header line, CRLF included.
func ParseProxyV1(line string) (netip.AddrPort, error) {
	body, ok := strings.CutSuffix(line, "\r\n")
	if !ok || len(line) > maxV1Header {
		return netip.AddrPort{}, fmt.Errorf("%w: v1 line not terminated by CRLF within %d bytes", ErrProxyHeader, maxV1Header)
	}
	f := strings.Split(body, " ")
	if len(f) < 2 || f[0] != "PROXY" {
		return netip.AddrPort{}, fmt.Errorf("%w: v1 line does not start with PROXY", ErrProxyHeader)
	}
	if f[1] == "UNKNOWN" {
		return netip.AddrPort{}, nil
	}
	if len(f) != 6 || f[1] != "TCP4" && f[1] != "TCP6" {
		return netip.AddrPort{}, fmt.Errorf("%w: v1 wants PROXY TCP4|TCP6 src dst sport dport", ErrProxyHeader)
	}
	src, err1 := netip.ParseAddr(f[2])
	dst, err2 := netip.ParseAddr(f[3])
	sport, err3 := parsePort(f[4])
	_, err4 := parsePort(f[5])
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return netip.AddrPort{}, fmt.Errorf("%w: %v", ErrProxyHeader, err)
	}
	if src.Zone() != "" || src.Is4() != (f[1] == "TCP4") || dst.Is4() != src.Is4() {
		return netip.AddrPort{}, fmt.Errorf("%w: v1 address family mismatch", ErrProxyHeader)
	}
	return netip.AddrPortFrom(src.Unmap(), sport), nil
}

func parsePort(s string) (uint16, error) {
	if s == "" || len(s) > 5 || (len(s) > 1 && s[0] == '0') {
		return 0, fmt.Errorf("invalid port %q", s)
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("invalid port %q", s)
	}
	return uint16(n), nil
}

func readV2(br *bufio.Reader) (netip.AddrPort, error) {
	hdr := make([]byte, 16)
	if _, err := io.ReadFull(br, hdr); err != nil {
		return netip.AddrPort{}, fmt.Errorf("%w: %v", ErrProxyHeader, err)
	}
	n := int(binary.BigEndian.Uint16(hdr[14:16]))
	if n > maxV2Body {
		return netip.AddrPort{}, fmt.Errorf("%w: v2 body of %d bytes exceeds %d", ErrProxyHeader, n, maxV2Body)
	}
	full := make([]byte, 16+n)
	copy(full, hdr)
	if _, err := io.ReadFull(br, full[16:]); err != nil {
		return netip.AddrPort{}, fmt.Errorf("%w: %v", ErrProxyHeader, err)
	}
	return ParseProxyV2(full)
}

// ParseProxyV2 parses a complete v2 header (signature, fixed part and body).
func ParseProxyV2(b []byte) (netip.AddrPort, error) {
	if len(b) < 16 || !bytes.Equal(b[:12], v2Signature) {
		return netip.AddrPort{}, fmt.Errorf("%w: no v2 signature", ErrProxyHeader)
	}
	verCmd, fam := b[12], b[13]
	n := int(binary.BigEndian.Uint16(b[14:16]))
	if len(b) != 16+n || n > maxV2Body {
		return netip.AddrPort{}, fmt.Errorf("%w: v2 length mismatch", ErrProxyHeader)
	}
	if verCmd>>4 != 2 {
		return netip.AddrPort{}, fmt.Errorf("%w: v2 version %d", ErrProxyHeader, verCmd>>4)
	}
	body := b[16:]
	switch verCmd & 0xf {
	case 0: // LOCAL: the proxy's own connection (a health check)
		return netip.AddrPort{}, nil
	case 1: // PROXY
	default:
		return netip.AddrPort{}, fmt.Errorf("%w: v2 command %d", ErrProxyHeader, verCmd&0xf)
	}
	switch fam >> 4 {
	case 1: // AF_INET
		if len(body) < 12 {
			return netip.AddrPort{}, fmt.Errorf("%w: v2 IPv4 body too short", ErrProxyHeader)
		}
		src := netip.AddrFrom4([4]byte(body[0:4]))
		return netip.AddrPortFrom(src, binary.BigEndian.Uint16(body[8:10])), nil
	case 2: // AF_INET6
		if len(body) < 36 {
			return netip.AddrPort{}, fmt.Errorf("%w: v2 IPv6 body too short", ErrProxyHeader)
		}
		src := netip.AddrFrom16([16]byte(body[0:16])).Unmap()
		return netip.AddrPortFrom(src, binary.BigEndian.Uint16(body[32:34])), nil
	}
	// AF_UNSPEC or AF_UNIX: no usable address; the peer speaks for itself.
	return netip.AddrPort{}, nil
}
