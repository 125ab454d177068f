package certs

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/auth/instancekey"
	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/store"
	"github.com/moat-dev/moat/internal/store/storetest"
	"github.com/moat-dev/moat/internal/testlog"
)

func TestMain(m *testing.M) { storetest.Main(m) }

func init() {
	// Notice changed certificate files within a test's patience, and
	// take a lock soon after another instance releases it.
	pollInterval = 50 * time.Millisecond
	lockPoll = 50 * time.Millisecond
}

func newLogger() (*slog.Logger, *testlog.Buffer) {
	b := &testlog.Buffer{}
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

// newStore opens a SQLite store in a temporary directory, closed when the
// test ends.
// sealer is the instance key every test's certificates are sealed with.
var sealer = func() *instancekey.Key {
	k, err := instancekey.New(bytes.Repeat([]byte{7}, instancekey.Size))
	if err != nil {
		panic(err)
	}
	return k
}()

func newStore(t testing.TB) store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "moat.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// newSource builds a Source on st (nil for certificate files) and closes
// it when the test ends.
func newSource(t *testing.T, cfg config.TLS, st Store, hosts []string) (*Source, *testlog.Buffer) {
	t.Helper()
	logger, logs := newLogger()
	s, err := New(context.Background(), cfg, Options{Store: st, Sealer: sealer, Hosts: hosts, Logger: logger})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, logs
}

// serveTLS serves the source's TLS config on 127.0.0.1 and returns the
// address. Connections complete the handshake and are closed.
func serveTLS(t *testing.T, s *Source) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveTLSConfigOn(t, s.TLSConfig(), ln)
}

// serveTLSConfigOn serves conf on a listener the test opened already.
func serveTLSConfigOn(t *testing.T, conf *tls.Config, tcp net.Listener) string {
	t.Helper()
	ln := tls.NewListener(tcp, conf)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(90 * time.Second))
				_ = c.(*tls.Conn).Handshake()
				var b [1]byte
				_, _ = c.Read(b[:])
			}()
		}
	}()
	return ln.Addr().String()
}

// handshake dials addr with the given client config and returns the
// server's leaf certificate and the connection state.
func handshake(t *testing.T, addr string, cfg *tls.Config) (*x509.Certificate, tls.ConnectionState, error) {
	t.Helper()
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: cfg}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, tls.ConnectionState{}, err
	}
	defer c.Close()
	st := c.(*tls.Conn).ConnectionState()
	return st.PeerCertificates[0], st, nil
}

// handshakeUntil retries handshake until it succeeds or d passes, and
// returns the leaf of the first success or the last error.
func handshakeUntil(t *testing.T, addr string, cfg *tls.Config, d time.Duration) (*x509.Certificate, error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		leaf, _, err := handshake(t, addr, cfg)
		if err == nil || time.Now().After(deadline) {
			return leaf, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// insecure is a client config that accepts any certificate, for tests that
// only look at which certificate was served.
func insecure(serverName string) *tls.Config {
	return &tls.Config{ServerName: serverName, InsecureSkipVerify: true}
}

// makePair returns a PEM certificate and key, self-signed, for names, valid
// from notBefore to notAfter.
func makePair(t *testing.T, cn string, names []string, notBefore, notAfter time.Time) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

func writeFile(t *testing.T, path string, data []byte, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, perm); err != nil {
		t.Fatal(err)
	}
}
