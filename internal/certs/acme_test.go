package certs

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mholt/acmez/v3"

	"github.com/moat-dev/moat/internal/certs/pebbletest"
	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/testlog"
	"github.com/moat-dev/moat/internal/testnet"
)

// listen opens a TCP listener on 127.0.0.1, closed when the test ends.
func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func portOf(ln net.Listener) int { return ln.Addr().(*net.TCPAddr).Port }

// newACMESource builds an ACME source on st whose challenges are answered
// on moat's listeners at httpAddr and httpsAddr (which the test serves).
func newACMESource(t *testing.T, cfg config.TLS, st Store, hosts []string, httpAddr, httpsAddr string) (*Source, *testlog.Buffer) {
	t.Helper()
	logger, logs := newLogger()
	s, err := New(context.Background(), cfg, Options{Store: st, Sealer: sealer, Hosts: hosts, HTTPAddr: httpAddr, HTTPSAddr: httpsAddr, Logger: logger})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("moat log:\n%s", logs)
		}
	})
	return s, logs
}

// TestACMECertificatesAreIssuedByPebbleAndKeptInTheStore runs the whole
// flow against a real ACME server: Obtain makes moat order a certificate
// for each routed host, Pebble validates the challenge on moat's listeners
// (HTTP-01 on HTTPHandler or TLS-ALPN-01 on TLSConfig, as the client
// picks), and clients receive a certificate chaining to Pebble's root.
// A restarted moat on the same store serves it without a new order.
func TestACMECertificatesAreIssuedByPebbleAndKeptInTheStore(t *testing.T) {
	const host, second = "moat-test.example", "second.moat-test.example"
	httpLn, tlsLn := listen(t), listen(t)
	p := pebbletest.Start(t, pebbletest.Options{HTTPPort: portOf(httpLn), TLSPort: portOf(tlsLn)})
	st := newStore(t)
	cfg := config.TLS{ACME: &config.ACME{Email: "ops@moat-test.example", DirectoryURL: p.DirectoryURL, CAFile: p.CAFile}}
	s, _ := newACMESource(t, cfg, st, []string{host, second}, httpLn.Addr().String(), tlsLn.Addr().String())
	if got := s.TLSConfig().NextProtos; !slices.Contains(got, acmez.ACMETLS1Protocol) {
		t.Errorf("NextProtos %v lack acme-tls/1", got)
	}

	var challenges atomic.Int32
	httpHandler := s.HTTPHandler("443")
	httpSrv := &http.Server{
		ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, acmeChallengePrefix) {
				challenges.Add(1)
			}
			httpHandler.ServeHTTP(w, r)
		}),
	}
	go httpSrv.Serve(httpLn)
	t.Cleanup(func() { httpSrv.Close() })
	tlsConf := s.TLSConfig()
	tlsConf.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if slices.Contains(hello.SupportedProtos, acmez.ACMETLS1Protocol) {
			challenges.Add(1)
		}
		return s.GetCertificate(hello)
	}
	addr := serveTLSConfigOn(t, tlsConf, tlsLn)

	start := time.Now()
	if err := s.Obtain(t.Context()); err != nil {
		t.Fatalf("Obtain: %v", err)
	}
	for _, name := range []string{host, second} {
		leaf, err := handshakeUntil(t, addr, &tls.Config{ServerName: name, RootCAs: p.Roots}, time.Minute)
		if err != nil {
			t.Fatalf("handshake for %s (certificate chaining to Pebble's root): %v", name, err)
		}
		if leaf.Issuer.CommonName != p.Intermediate {
			t.Errorf("issuer %q, want Pebble's intermediate %q", leaf.Issuer.CommonName, p.Intermediate)
		}
		if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != name {
			t.Errorf("certificate names %v, want [%s]", leaf.DNSNames, name)
		}
	}
	t.Logf("two certificates issued in %s", time.Since(start).Round(time.Millisecond))
	if n := challenges.Load(); n < 2 {
		t.Errorf("Pebble validated %d challenges on moat's listeners, want one per host", n)
	}
	if n := p.Orders(); n != 2 {
		t.Errorf("%d orders, want one per host", n)
	}

	// The certificates, their keys and the account are in the store.
	blobs, err := st.ListBlobs(t.Context(), keyPrefix)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, b := range blobs {
		keys = append(keys, b.Key)
	}
	for _, want := range []string{"/" + host + ".crt", "/" + host + ".key", "/" + second + ".crt", ".json"} {
		if !slices.ContainsFunc(keys, func(k string) bool { return strings.HasSuffix(k, want) }) {
			t.Errorf("no stored key ending in %s: %v", want, keys)
		}
	}
	if !slices.ContainsFunc(keys, func(k string) bool { return strings.HasPrefix(k, keyPrefix+"acme/") && strings.Contains(k, "/users/") }) {
		t.Errorf("no ACME account in the store: %v", keys)
	}

	// A host that is not routed gets no certificate, and moat asks nothing.
	if _, _, err := handshake(t, addr, &tls.Config{ServerName: "other.example", RootCAs: p.Roots}); err == nil {
		t.Error("handshake for an unrouted host succeeded")
	}
	first, _, err := handshake(t, addr, &tls.Config{ServerName: host, RootCAs: p.Roots})
	if err != nil {
		t.Fatal(err)
	}

	// A restarted moat on the same store serves the same certificate
	// without ordering again.
	s.Close()
	s2, _ := newACMESource(t, cfg, st, []string{host}, httpLn.Addr().String(), tlsLn.Addr().String())
	if err := s2.Obtain(t.Context()); err != nil {
		t.Fatal(err)
	}
	leaf2, err := handshakeUntil(t, serveTLS(t, s2), &tls.Config{ServerName: host, RootCAs: p.Roots}, 30*time.Second)
	if err != nil {
		t.Fatalf("handshake after restart: %v", err)
	}
	if !leaf2.Equal(first) {
		t.Error("after a restart a different certificate was served, not the stored one")
	}
	if n := p.Orders(); n != 2 {
		t.Errorf("%d orders after the restart, want still 2", n)
	}
}

func TestACMERefusesWildcardHosts(t *testing.T) {
	logger, _ := newLogger()
	cfg := config.TLS{ACME: &config.ACME{DirectoryURL: "https://127.0.0.1:1/dir"}}
	if s, err := New(context.Background(), cfg, Options{Store: newStore(t), Sealer: sealer, Hosts: []string{"*.example.com"}, Logger: logger}); err == nil {
		s.Close()
		t.Fatal("New accepted a wildcard host with ACME")
	}
}

func TestACMEHTTPHandlerAnswersChallengesOnlyForRoutedHosts(t *testing.T) {
	cfg := config.TLS{ACME: &config.ACME{DirectoryURL: "https://" + testnet.FreeAddr(t) + "/dir"}}
	s, _ := newSource(t, cfg, newStore(t), []string{"moat-test.example"})
	srv := &http.Server{Handler: s.HTTPHandler("443"), ReadHeaderTimeout: 5 * time.Second}
	ln := listen(t)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	tests := []struct {
		name, host, path string
		status           int
	}{
		{"an unknown token for a routed host is not found, not redirected", "moat-test.example:5002", "/.well-known/acme-challenge/nope", 404},
		{"a challenge for an unrouted host is not found", "evil.example", "/.well-known/acme-challenge/nope", 404},
		{"other paths are redirected", "moat-test.example", "/x", 301},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", "http://"+ln.Addr().String()+tt.path, nil)
			req.Host = tt.host
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.status)
			}
		})
	}
}
