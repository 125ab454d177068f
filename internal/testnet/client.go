package testnet

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"time"
)

// Pin describes an HTTP client for a test that talks to the one server it
// started. Each field's zero value is the common case.
type Pin struct {
	// Addr is where every connection goes, whatever the request URL's
	// host, so that a test can use the host names moat routes.
	Addr string
	// From, when set, is the local IP connections leave from (any
	// 127.0.0.0/8 address on Linux's loopback), so that one test can be
	// several clients.
	From string
	// TLS is the client's TLS configuration; nil accepts whatever
	// certificate the server shows (the test started that server).
	TLS *tls.Config
	// HTTP2 lets HTTPS requests speak HTTP/2; with a dialer of its own,
	// Go's client speaks HTTP/1.1 otherwise.
	HTTP2 bool
	// Jar keeps the client's cookies; nil keeps none.
	Jar http.CookieJar
	// Timeout bounds each request: zero means 10 seconds, a negative
	// value no limit (for WebSockets).
	Timeout time.Duration
}

// Client returns the client p describes. It does not follow redirects:
// tests look at each answer.
func (p Pin) Client() *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if p.From != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(p.From)}
	}
	conf := p.TLS
	if conf == nil {
		conf = &tls.Config{InsecureSkipVerify: true}
	}
	timeout := p.Timeout
	switch {
	case timeout == 0:
		timeout = 10 * time.Second
	case timeout < 0:
		timeout = 0
	}
	addr := p.Addr
	return &http.Client{
		Transport: &http.Transport{
			TLSClientConfig:   conf,
			ForceAttemptHTTP2: p.HTTP2,
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return d.DialContext(ctx, network, addr)
			},
		},
		Jar:           p.Jar,
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
