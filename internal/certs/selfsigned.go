package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

const (
	// selfSignedValidity is how long a new self-signed certificate lasts.
	selfSignedValidity = 365 * 24 * time.Hour
	// selfSignedRenewBefore is how long before expiry it is replaced.
	selfSignedRenewBefore = 30 * 24 * time.Hour
	selfSignedCertName    = "self-signed.crt"
	selfSignedKeyName     = "self-signed.key"
)

// initSelfSigned loads dataDir/certs/self-signed.{crt,key} when it covers
// every routed host (plus localhost and the loopback addresses) and is valid
// for more than 30 days, and writes a new one otherwise.
func (s *Source) initSelfSigned(dataDir string, hosts []string) error {
	if dataDir == "" {
		return errors.New("self-signed certificate: data_dir is not set")
	}
	s.selfSignedDir = filepath.Join(dataDir, "certs")
	s.selfSignedFor = selfSignedNames(hosts)
	if cert, err := s.loadSelfSigned(time.Now()); err == nil {
		s.cert.Store(cert)
		s.logger.Info("using the stored self-signed certificate", "path", filepath.Join(s.selfSignedDir, selfSignedCertName), "not_after", cert.Leaf.NotAfter)
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		s.logger.Info("replacing the stored self-signed certificate", "reason", err.Error())
	}
	return s.writeSelfSigned()
}

// renewSelfSigned replaces the certificate when it is within 30 days of
// expiry, so a server that runs for a year keeps a valid certificate.
func (s *Source) renewSelfSigned() error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	if c := s.cert.Load(); c != nil && c.Leaf != nil && time.Until(c.Leaf.NotAfter) > selfSignedRenewBefore {
		return nil
	}
	return s.writeSelfSigned()
}

// selfSignedNames is hosts (wildcards kept: they are valid in a
// certificate), localhost and the loopback addresses, without duplicates.
func selfSignedNames(hosts []string) []string {
	names := []string{"localhost", "127.0.0.1", "::1"}
	for _, h := range hosts {
		h = normalizeHost(h)
		if !slices.Contains(names, h) {
			names = append(names, h)
		}
	}
	return names
}

// loadSelfSigned reads the stored pair and checks that it is still good.
func (s *Source) loadSelfSigned(now time.Time) (*tls.Certificate, error) {
	certPath := filepath.Join(s.selfSignedDir, selfSignedCertName)
	keyPath := filepath.Join(s.selfSignedDir, selfSignedKeyName)
	if _, err := os.Stat(certPath); err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", certPath, err)
	}
	leaf := cert.Leaf
	if now.Before(leaf.NotBefore) {
		return nil, fmt.Errorf("%s is not valid before %s", certPath, leaf.NotBefore)
	}
	if leaf.NotAfter.Sub(now) <= selfSignedRenewBefore {
		return nil, fmt.Errorf("%s expires at %s", certPath, leaf.NotAfter)
	}
	for _, name := range s.selfSignedFor {
		if !covers(leaf, name) {
			return nil, fmt.Errorf("%s does not cover %s", certPath, name)
		}
	}
	return &cert, nil
}

// covers reports whether name is literally among the certificate's names:
// a wildcard host must be in the certificate as that wildcard.
func covers(leaf *x509.Certificate, name string) bool {
	if ip := net.ParseIP(name); ip != nil {
		return slices.ContainsFunc(leaf.IPAddresses, ip.Equal)
	}
	return slices.Contains(leaf.DNSNames, name)
}

// writeSelfSigned makes a new ECDSA P-256 key and a self-signed leaf
// certificate (no CA) for s.selfSignedFor, stores both and serves them.
func (s *Source) writeSelfSigned() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("self-signed certificate: generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return fmt.Errorf("self-signed certificate: serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "moat self-signed", Organization: []string{"moat"}},
		NotBefore:             now.Add(-time.Hour), // tolerate clocks a little behind
		NotAfter:              now.Add(selfSignedValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	for _, n := range s.selfSignedFor {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("self-signed certificate: create: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("self-signed certificate: marshal key: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})

	if err := os.MkdirAll(s.selfSignedDir, 0o700); err != nil {
		return fmt.Errorf("self-signed certificate: %w", err)
	}
	if err := os.Chmod(s.selfSignedDir, 0o700); err != nil {
		return fmt.Errorf("self-signed certificate: %w", err)
	}
	// Key first: a crash in between leaves a pair that fails to load and
	// is regenerated, never a certificate beside someone else's key.
	if err := writeFileAtomic(filepath.Join(s.selfSignedDir, selfSignedKeyName), keyPEM, 0o600); err != nil {
		return fmt.Errorf("self-signed certificate: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(s.selfSignedDir, selfSignedCertName), certPEM, 0o644); err != nil {
		return fmt.Errorf("self-signed certificate: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("self-signed certificate: %w", err)
	}
	s.cert.Store(&cert)
	s.logger.Info("wrote a new self-signed certificate", "path", filepath.Join(s.selfSignedDir, selfSignedCertName), "hosts", s.selfSignedFor, "not_after", tmpl.NotAfter)
	return nil
}

// writeFileAtomic writes data to a temporary file in the same directory and
// renames it over path, so readers never see half a file.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
