package e2e

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/auth/instancekey"
	"github.com/moat-dev/moat/internal/certs/pebbletest"
	"github.com/moat-dev/moat/internal/store/storetest"
	"github.com/moat-dev/moat/internal/testnet"
)

// clusterConfig is the configuration of one instance of a cluster on the
// PostgreSQL database dsn: store, then rest (tls, backends, routes). It
// gives the moat processes the test starts one instance key, as a
// cluster's instances share theirs (so the test cannot run in parallel).
func clusterConfig(t *testing.T, dsn, rest string) string {
	key := make([]byte, instancekey.Size)
	_, _ = rand.Read(key)
	t.Setenv(instancekey.EnvVar, base64.StdEncoding.EncodeToString(key))
	return fmt.Sprintf("store: %q\n", dsn) + rest
}

// publicApp is a backend (on a port where nothing listens) and one public
// route to it for host.
func publicApp(t *testing.T, host string) string {
	return fmt.Sprintf(`backends:
  app: {url: "http://127.0.0.1:%d"}
routes:
  - host: %s
    backend: app
    public: true
`, testnet.FreePort(t), host)
}

// TestInstancesServeOneSelfSignedCertificate starts three moat processes
// on one PostgreSQL, each with a data_dir of its own: all three serve the
// one self-signed certificate in the store.
func TestInstancesServeOneSelfSignedCertificate(t *testing.T) {
	cfg := clusterConfig(t, storetest.Postgres(t), publicApp(t, "dash.moat-test.example"))
	var leaves []*x509.Certificate
	for range 3 {
		m := startMoat(t, cfg)
		leaf, err := serverLeaf(m.HTTPSAddr, &tls.Config{ServerName: "dash.moat-test.example", InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		leaves = append(leaves, leaf)
	}
	for i, l := range leaves[1:] {
		if !l.Equal(leaves[0]) {
			t.Errorf("instance %d serves serial %s, instance 0 serial %s", i+1, l.SerialNumber, leaves[0].SerialNumber)
		}
	}
}

// TestInstancesShareACMECertificates runs two moat processes on one
// PostgreSQL against a real ACME CA (Pebble). The first orders the
// certificate while the CA's validation reaches only the second, which
// answers the challenge from the store; both then serve the one
// certificate, ordered once. Certificates last 30 s here, and the CA offers
// no renewal information, so renewal is due 20 s after issuance: one of
// the instances renews, once, and both serve the new certificate.
func TestInstancesShareACMECertificates(t *testing.T) {
	const host = "cluster.moat-test.example"
	const lifetime = 30 * time.Second
	// The CA validates HTTP-01 and TLS-ALPN-01 through these, which lead
	// to the second instance only.
	httpFwd, tlsFwd := startForwarder(t), startForwarder(t)
	ca := pebbletest.Start(t, pebbletest.Options{
		HTTPPort: httpFwd.port(), TLSPort: tlsFwd.port(), CertValidity: lifetime, WithoutARI: true,
	})
	cfg := clusterConfig(t, storetest.Postgres(t), fmt.Sprintf(`tls:
  acme: {email: ops@moat-test.example, directory_url: %q, ca_file: %q, renew_interval: 1s}
`, ca.DirectoryURL, ca.CAFile)+publicApp(t, host))

	a := startMoat(t, cfg)
	// The second instance starts once the first holds the order's lock,
	// so that the first is the one that orders.
	a.WaitLog(t, 30*time.Second, func(r map[string]any) bool {
		return r["msg"] == "took the certificate lock" && r["lock"] == "issue_cert_"+host
	})
	b := startMoat(t, cfg)
	httpFwd.to(b.HTTPAddr)
	tlsFwd.to(b.HTTPSAddr)

	verify := &tls.Config{ServerName: host, RootCAs: ca.Roots}
	leafA := waitLeaf(t, a.HTTPSAddr, verify, func(*x509.Certificate) bool { return true })
	leafB := waitLeaf(t, b.HTTPSAddr, verify, func(*x509.Certificate) bool { return true })
	if !leafA.Equal(leafB) {
		t.Fatalf("the instances serve different certificates: serials %s and %s", leafA.SerialNumber, leafB.SerialNumber)
	}
	if n := ca.Orders(); n != 1 {
		t.Errorf("%d orders for %s, want 1", n, host)
	}
	if httpFwd.count()+tlsFwd.count() == 0 {
		t.Error("the CA's validation never reached the second instance")
	}
	if obtained(a, false) != 1 || obtained(b, false) != 0 {
		t.Errorf("certificates obtained: first instance %d, second %d; want 1 and 0", obtained(a, false), obtained(b, false))
	}
	t.Logf("certificate issued, serial %s, valid until %s; challenges through the second instance: %d HTTP, %d TLS",
		leafA.SerialNumber, leafA.NotAfter.Format(time.TimeOnly), httpFwd.count(), tlsFwd.count())

	// Renewal: both instances come to serve one new certificate.
	renewed := func(l *x509.Certificate) bool { return l.SerialNumber.Cmp(leafA.SerialNumber) != 0 }
	newA := waitLeaf(t, a.HTTPSAddr, verify, renewed)
	newB := waitLeaf(t, b.HTTPSAddr, verify, renewed)
	if !newA.Equal(newB) {
		t.Fatalf("after renewal the instances serve different certificates: serials %s and %s", newA.SerialNumber, newB.SerialNumber)
	}
	if n := ca.Orders(); n != 2 {
		t.Errorf("%d orders after one renewal, want 2", n)
	}
	if ra, rb := obtained(a, true), obtained(b, true); ra+rb != 1 {
		t.Errorf("renewals: first instance %d, second %d; want one in all", ra, rb)
	}
	t.Logf("renewed %s after issuance, serial %s", newA.NotBefore.Sub(leafA.NotBefore).Round(time.Second), newA.SerialNumber)
}

// obtained counts m's log lines saying it obtained an ACME certificate,
// renewals or first orders.
func obtained(m *Moat, renewal bool) int {
	n := 0
	for _, r := range m.LogRecords() {
		if r["msg"] == "obtained an ACME certificate" && r["renewal"] == renewal {
			n++
		}
	}
	return n
}

// waitLeaf polls addr until it serves a certificate that verifies with
// cfg and satisfies ok, for at most a minute.
func waitLeaf(t *testing.T, addr string, cfg *tls.Config, ok func(*x509.Certificate) bool) *x509.Certificate {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		leaf, err := serverLeaf(addr, cfg)
		if err == nil && ok(leaf) {
			return leaf
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no suitable certificate within a minute (last: %v)", addr, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// forwarder is a TCP port that leads to an address set later; connections
// that arrive before then wait for it (up to 30 s).
type forwarder struct {
	ln     net.Listener
	target atomic.Pointer[string]
	set    chan struct{}
	once   sync.Once
	conns  atomic.Int32
}

func startForwarder(t *testing.T) *forwarder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &forwarder{ln: ln, set: make(chan struct{})}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.conns.Add(1)
			go f.serve(c)
		}
	}()
	return f
}

func (f *forwarder) port() int { return f.ln.Addr().(*net.TCPAddr).Port }

func (f *forwarder) count() int { return int(f.conns.Load()) }

// to sets where connections go.
func (f *forwarder) to(addr string) {
	f.target.Store(&addr)
	f.once.Do(func() { close(f.set) })
}

func (f *forwarder) serve(c net.Conn) {
	defer c.Close()
	select {
	case <-f.set:
	case <-time.After(30 * time.Second):
		return
	}
	up, err := net.DialTimeout("tcp", *f.target.Load(), 5*time.Second)
	if err != nil {
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	splice := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go splice(up, c)
	go splice(c, up)
	<-done
	<-done
}
