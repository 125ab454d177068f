package server

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/moat-dev/moat/internal/clientip"
	"github.com/moat-dev/moat/internal/metrics"
)

var connsRefused = prometheus.NewCounter(prometheus.CounterOpts{
	Name: "moat_connections_refused_total",
	Help: "Connections closed at accept because their client already held server.max_conns_per_ip.",
})

func init() { metrics.Registry.MustRegister(connsRefused) }

// limitListener closes a new connection at once when its client address
// already holds max open connections, so one client cannot exhaust the
// process's file descriptors. Trusted proxies are exempt: many clients
// share their address.
type limitListener struct {
	net.Listener
	max     int
	trusted func(netip.Addr) bool

	mu    sync.Mutex
	count map[netip.Addr]int
}

func newLimitListener(l net.Listener, max int, trusted *clientip.Resolver) net.Listener {
	return &limitListener{Listener: l, max: max, trusted: trusted.IsTrusted, count: map[netip.Addr]int{}}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := clientip.PeerAddr(c.RemoteAddr().String())
		if !ip.IsValid() || l.trusted(ip) {
			return c, nil
		}
		l.mu.Lock()
		if l.count[ip] >= l.max {
			l.mu.Unlock()
			connsRefused.Inc()
			c.Close()
			continue
		}
		l.count[ip]++
		l.mu.Unlock()
		return &limitConn{Conn: c, release: func() { l.release(ip) }}, nil
	}
}

func (l *limitListener) release(ip netip.Addr) {
	l.mu.Lock()
	if l.count[ip]--; l.count[ip] <= 0 {
		delete(l.count, ip)
	}
	l.mu.Unlock()
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

// SyscallConn is the wrapped connection's, so that an idle proxied
// WebSocket can wait for it without a goroutine (proxy's poller). The
// wrapper reads nothing ahead, so the descriptor shows every byte to come.
func (c *limitConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.New("connection has no descriptor")
	}
	return sc.SyscallConn()
}
