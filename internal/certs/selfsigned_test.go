package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/config"
)

var selfSigned = config.TLS{SelfSigned: true}

func storedCert(t *testing.T, dataDir string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dataDir, "certs", "self-signed.crt"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSelfSignedCertificateCoversRoutedHostsAndLoopback(t *testing.T) {
	dir := t.TempDir()
	s, _ := newSource(t, selfSigned, dir, []string{"dash.example.com", "*.apps.example.com", "10.0.0.7"})
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

	for path, want := range map[string]os.FileMode{
		filepath.Join(dir, "certs"):                    0o700 | os.ModeDir,
		filepath.Join(dir, "certs", "self-signed.key"): 0o600,
	} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s has mode %v, want %v", path, fi.Mode(), want)
		}
	}
}

func TestSelfSignedCertificateServesAVerifiableHandshake(t *testing.T) {
	s, _ := newSource(t, selfSigned, t.TempDir(), []string{"dash.example.com", "*.apps.example.com"})
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
	s, _ := newSource(t, selfSigned, t.TempDir(), []string{"dash.example.com"})
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
	dir := t.TempDir()
	hosts := []string{"dash.example.com", "*.apps.example.com"}
	s1, _ := newSource(t, selfSigned, dir, hosts)
	first := storedCert(t, dir)
	s1.Close()

	// Same hosts, and a subset: both are covered by the stored certificate.
	for _, hs := range [][]string{hosts, hosts[:1]} {
		s2, logs := newSource(t, selfSigned, dir, hs)
		if !bytes.Equal(storedCert(t, dir), first) {
			t.Fatalf("hosts %v: the certificate was rewritten", hs)
		}
		if !bytes.Equal(s2.cert.Load().Certificate[0], s1.cert.Load().Certificate[0]) {
			t.Fatalf("hosts %v: a different certificate is served", hs)
		}
		if !bytes.Contains([]byte(logs.String()), []byte("using the stored self-signed certificate")) {
			t.Errorf("log does not say the stored certificate is used:\n%s", logs)
		}
	}
}

func TestSelfSignedCertificateIsRegenerated(t *testing.T) {
	hosts := []string{"dash.example.com"}
	all := selfSignedNames(hosts)
	now := time.Now()
	tests := []struct {
		name  string
		hosts []string
		// prepare replaces the stored pair before the restart.
		prepare func(t *testing.T, certPath, keyPath string)
	}{
		{name: "when a routed host is added", hosts: append(hosts, "new.example.com")},
		{name: "when it expires within 30 days", hosts: hosts, prepare: func(t *testing.T, certPath, keyPath string) {
			c, k := makePair(t, "old", all, now.Add(-300*24*time.Hour), now.Add(20*24*time.Hour))
			writeFile(t, certPath, c, 0o644)
			writeFile(t, keyPath, k, 0o600)
		}},
		{name: "when it is not yet valid", hosts: hosts, prepare: func(t *testing.T, certPath, keyPath string) {
			c, k := makePair(t, "future", all, now.Add(24*time.Hour), now.Add(400*24*time.Hour))
			writeFile(t, certPath, c, 0o644)
			writeFile(t, keyPath, k, 0o600)
		}},
		{name: "when the key does not match", hosts: hosts, prepare: func(t *testing.T, certPath, keyPath string) {
			_, k := makePair(t, "other", all, now, now.Add(400*24*time.Hour))
			writeFile(t, keyPath, k, 0o600)
		}},
		{name: "when the certificate file is garbage", hosts: hosts, prepare: func(t *testing.T, certPath, keyPath string) {
			writeFile(t, certPath, []byte("not a certificate"), 0o644)
		}},
		{name: "when the key file is missing", hosts: hosts, prepare: func(t *testing.T, certPath, keyPath string) {
			if err := os.Remove(keyPath); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s1, _ := newSource(t, selfSigned, dir, hosts)
			s1.Close()
			certPath := filepath.Join(dir, "certs", "self-signed.crt")
			keyPath := filepath.Join(dir, "certs", "self-signed.key")
			if tt.prepare != nil {
				tt.prepare(t, certPath, keyPath)
			}
			before := storedCert(t, dir)

			s2, _ := newSource(t, selfSigned, dir, tt.hosts)
			if bytes.Equal(storedCert(t, dir), before) {
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
			if _, err := tls.LoadX509KeyPair(certPath, keyPath); err != nil {
				t.Errorf("stored pair does not load: %v", err)
			}
		})
	}
}

func TestRunningServerRenewsASelfSignedCertificateNearExpiry(t *testing.T) {
	dir := t.TempDir()
	s, _ := newSource(t, selfSigned, dir, []string{"dash.example.com"})
	// Pretend a year went by: serve a certificate that expires in 10 days.
	c, k := makePair(t, "old", selfSignedNames([]string{"dash.example.com"}), time.Now().Add(-355*24*time.Hour), time.Now().Add(10*24*time.Hour))
	old, err := tls.X509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	s.cert.Store(&old)
	eventually(t, 5*time.Second, "the certificate was not renewed", func() bool {
		return time.Until(s.cert.Load().Leaf.NotAfter) > 300*24*time.Hour
	})
}
