package certs

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/store"
	"github.com/moat-dev/moat/internal/store/storetest"
	"github.com/moat-dev/moat/internal/testwait"
)

var selfSigned = config.TLS{SelfSigned: true}

// storedCert returns the self-signed certificate's blob in the store.
// storedCert reads the self-signed pair in st as an instance does
// (opened with the instance key).
func storedCert(t *testing.T, st Store) []byte {
	t.Helper()
	b, err := newStorage(st, sealer, slog.New(slog.DiscardHandler)).Load(context.Background(), selfSignedKey)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// putStored stores blob as the self-signed pair, sealed as an instance
// seals it.
func putStored(t *testing.T, st Store, blob []byte) {
	t.Helper()
	if err := newStorage(st, sealer, slog.New(slog.DiscardHandler)).Store(context.Background(), selfSignedKey, blob); err != nil {
		t.Fatal(err)
	}
}

func TestSelfSignedCertificateCoversRoutedHostsAndLoopback(t *testing.T) {
	s, _ := newSource(t, selfSigned, newStore(t), []string{"dash.example.com", "*.apps.example.com", "10.0.0.7"})
	leaf := s.cert.Load().Leaf

	for _, name := range []string{"dash.example.com", "*.apps.example.com", "localhost"} {
		if !covers(leaf, name) {
			t.Errorf("certificate does not list %s: %v", name, leaf.DNSNames)
		}
	}
	for _, ip := range []string{"127.0.0.1", "::1", "10.0.0.7"} {
		if !covers(leaf, ip) {
			t.Errorf("certificate does not list %s: %v", ip, leaf.IPAddresses)
		}
	}
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Errorf("key is %T, want ECDSA P-256", leaf.PublicKey)
	}
	if leaf.IsCA {
		t.Error("self-signed leaf is marked as a CA")
	}
	if d := leaf.NotAfter.Sub(time.Now()); d < 364*24*time.Hour || d > 366*24*time.Hour {
		t.Errorf("valid for %s, want about a year", d)
	}
}

func TestSelfSignedCertificateNeedsAStore(t *testing.T) {
	if _, err := New(context.Background(), selfSigned, Options{Hosts: []string{"dash.example.com"}}); err == nil {
		t.Error("a self-signed source without a store was accepted")
	}
}

func TestSelfSignedCertificateServesAVerifiableHandshake(t *testing.T) {
	s, _ := newSource(t, selfSigned, newStore(t), []string{"dash.example.com", "*.apps.example.com"})
	addr := serveTLS(t, s)
	roots := x509.NewCertPool()
	roots.AddCert(s.cert.Load().Leaf)

	for _, name := range []string{"dash.example.com", "x.apps.example.com", "localhost"} {
		_, st, err := handshake(t, addr, &tls.Config{ServerName: name, RootCAs: roots, NextProtos: []string{"h2", "http/1.1"}})
		if err != nil {
			t.Fatalf("handshake for %s: %v", name, err)
		}
		if st.NegotiatedProtocol != "h2" {
			t.Errorf("ALPN chose %q, want h2", st.NegotiatedProtocol)
		}
	}
	if _, _, err := handshake(t, addr, &tls.Config{ServerName: "other.example.net", RootCAs: roots}); err == nil {
		t.Error("a client verifying another name accepted the certificate")
	}
}

func TestTLSConfigRefusesOldVersionsAndWeakCiphers(t *testing.T) {
	s, _ := newSource(t, selfSigned, newStore(t), []string{"dash.example.com"})
	addr := serveTLS(t, s)
	tests := []struct {
		name   string
		client *tls.Config
		ok     bool
	}{
		{"TLS 1.3 is accepted", &tls.Config{MinVersion: tls.VersionTLS13}, true},
		{"TLS 1.2 with ECDHE and AES-GCM is accepted", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}}, true},
		{"TLS 1.2 with CBC is refused", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}}, false},
		{"TLS 1.1 is refused", &tls.Config{MaxVersion: tls.VersionTLS11}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.client.InsecureSkipVerify = true
			tt.client.ServerName = "dash.example.com"
			_, _, err := handshake(t, addr, tt.client)
			if (err == nil) != tt.ok {
				t.Errorf("handshake error = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestSelfSignedCertificateIsReusedAcrossRestarts(t *testing.T) {
	st := newStore(t)
	hosts := []string{"dash.example.com", "*.apps.example.com"}
	s1, _ := newSource(t, selfSigned, st, hosts)
	first := storedCert(t, st)
	s1.Close()

	// Same hosts, and a subset: both are covered by the stored certificate.
	for _, hs := range [][]string{hosts, hosts[:1]} {
		s2, logs := newSource(t, selfSigned, st, hs)
		if !bytes.Equal(storedCert(t, st), first) {
			t.Fatalf("hosts %v: the certificate was rewritten", hs)
		}
		if !bytes.Equal(s2.cert.Load().Certificate[0], s1.cert.Load().Certificate[0]) {
			t.Fatalf("hosts %v: a different certificate is served", hs)
		}
		if !bytes.Contains([]byte(logs.String()), []byte("serving the self-signed certificate from the store")) {
			t.Errorf("log does not say the stored certificate is used:\n%s", logs)
		}
	}
}

func TestSelfSignedCertificateIsRegenerated(t *testing.T) {
	hosts := []string{"dash.example.com"}
	all := selfSignedNames(hosts)
	now := time.Now()
	pair := func(t *testing.T, cn string, notBefore, notAfter time.Time) []byte {
		c, k := makePair(t, cn, all, notBefore, notAfter)
		return append(c, k...)
	}
	tests := []struct {
		name  string
		hosts []string
		// stored replaces the stored blob before the restart.
		stored func(t *testing.T, old []byte) []byte
	}{
		{name: "when a routed host is added", hosts: append(hosts, "new.example.com")},
		{name: "when it expires within 30 days", hosts: hosts, stored: func(t *testing.T, _ []byte) []byte {
			return pair(t, "old", now.Add(-300*24*time.Hour), now.Add(20*24*time.Hour))
		}},
		{name: "when it is not yet valid", hosts: hosts, stored: func(t *testing.T, _ []byte) []byte {
			return pair(t, "future", now.Add(24*time.Hour), now.Add(400*24*time.Hour))
		}},
		{name: "when the key does not match", hosts: hosts, stored: func(t *testing.T, old []byte) []byte {
			c, _ := makePair(t, "one", all, now, now.Add(400*24*time.Hour))
			_, k := makePair(t, "other", all, now, now.Add(400*24*time.Hour))
			return append(c, k...)
		}},
		{name: "when the blob is garbage", hosts: hosts, stored: func(t *testing.T, _ []byte) []byte {
			return []byte("not a certificate")
		}},
		{name: "when the key is missing", hosts: hosts, stored: func(t *testing.T, _ []byte) []byte {
			c, _ := makePair(t, "keyless", all, now, now.Add(400*24*time.Hour))
			return c
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := newStore(t)
			s1, _ := newSource(t, selfSigned, st, hosts)
			s1.Close()
			if tt.stored != nil {
				putStored(t, st, tt.stored(t, storedCert(t, st)))
			}
			before := storedCert(t, st)

			s2, _ := newSource(t, selfSigned, st, tt.hosts)
			after := storedCert(t, st)
			if bytes.Equal(after, before) {
				t.Fatal("the stored certificate was not replaced")
			}
			leaf := s2.cert.Load().Leaf
			for _, n := range selfSignedNames(tt.hosts) {
				if !covers(leaf, n) {
					t.Errorf("new certificate does not cover %s", n)
				}
			}
			if time.Until(leaf.NotAfter) < 360*24*time.Hour {
				t.Errorf("new certificate expires at %s", leaf.NotAfter)
			}
			if c, err := tls.X509KeyPair(after, after); err != nil || !c.Leaf.Equal(leaf) {
				t.Errorf("stored pair does not load as the one served: %v", err)
			}
		})
	}
}

func TestRunningServerRenewsASelfSignedCertificateNearExpiry(t *testing.T) {
	st := newStore(t)
	s, _ := newSource(t, selfSigned, st, []string{"dash.example.com"})
	// Pretend a year went by: the store holds a certificate that expires
	// in 10 days.
	c, k := makePair(t, "old", selfSignedNames([]string{"dash.example.com"}), time.Now().Add(-355*24*time.Hour), time.Now().Add(10*24*time.Hour))
	putStored(t, st, append(c, k...))
	testwait.For(t, 5*time.Second, "the certificate was not renewed", func() bool {
		return time.Until(s.cert.Load().Leaf.NotAfter) > 300*24*time.Hour
	})
	if leaf := s.cert.Load().Leaf; leaf.Subject.CommonName == "old" {
		t.Error("the expiring certificate is served")
	}
}

// TestInstancesOnOneStoreServeOneSelfSignedCertificate starts several
// sources at once on one PostgreSQL database, as instances of a cluster:
// one makes the certificate, all serve it, and a certificate one of them
// replaces (a routed host added by its configuration) reaches the others.
func TestInstancesOnOneStoreServeOneSelfSignedCertificate(t *testing.T) {
	dsn := storetest.Postgres(t)
	hosts := []string{"dash.example.com"}
	const n = 3
	sources := make([]*Source, n)
	var wg sync.WaitGroup
	for i := range n {
		st, err := store.Open(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		wg.Go(func() {
			logger, _ := newLogger()
			s, err := New(context.Background(), selfSigned, Options{Store: st, Sealer: sealer, Hosts: hosts, Logger: logger})
			if err != nil {
				t.Error(err)
				return
			}
			t.Cleanup(func() { s.Close() })
			sources[i] = s
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	first := sources[0].cert.Load().Leaf
	for i, s := range sources[1:] {
		if !s.cert.Load().Leaf.Equal(first) {
			t.Fatalf("instance %d serves another certificate than instance 0", i+1)
		}
	}

	// An instance whose configuration gains a host makes a new one that
	// keeps the old names; the others follow within a poll.
	st, err := store.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	grown, _ := newSource(t, selfSigned, st, append(hosts, "new.example.com"))
	leaf := grown.cert.Load().Leaf
	if leaf.Equal(first) || !covers(leaf, "new.example.com") || !covers(leaf, "dash.example.com") {
		t.Fatalf("the grown instance serves %v", leaf.DNSNames)
	}
	for _, s := range sources {
		testwait.For(t, 5*time.Second, "an instance did not take the new certificate", func() bool {
			return s.cert.Load().Leaf.Equal(leaf)
		})
	}
}

func TestSelfSignedKeepsServingWhenTheStoreFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), "moat.db")
	st, err := store.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := newSource(t, selfSigned, st, []string{"dash.example.com"})
	served := s.cert.Load()
	st.Close()
	if err := s.Reload(); err == nil {
		t.Error("Reload with a closed store reported no error")
	}
	if s.cert.Load() != served {
		t.Error("the certificate changed while the store failed")
	}
}
