package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"

	"github.com/moat-dev/moat/internal/config"
)

// initACME sets up an autocert manager for exactly the routed hosts, with
// its cache in dataDir/acme.
func (s *Source) initACME(cfg config.ACME, dataDir string, hosts []string) error {
	if dataDir == "" {
		return errors.New("acme: data_dir is not set")
	}
	var names []string
	for _, h := range hosts {
		h = normalizeHost(h)
		if strings.HasPrefix(h, "*.") {
			return fmt.Errorf("acme: HTTP-01 cannot issue a certificate for the wildcard %q: use cert_file and key_file", h)
		}
		if net.ParseIP(h) != nil || !strings.Contains(h, ".") {
			// ACME CAs issue for public DNS names only; such a route is
			// served without a certificate (the handshake fails).
			s.logger.Warn("no ACME certificate for this host: it is an IP address or a single label", "host", h)
			continue
		}
		if !slices.Contains(names, h) {
			names = append(names, h)
		}
	}
	if len(names) == 0 {
		return errors.New("acme: no routed hosts to get certificates for")
	}
	dir := cfg.DirectoryURL
	if dir == "" {
		dir = autocert.DefaultACMEDirectory
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSHandshakeTimeout = 10 * time.Second
	transport.ResponseHeaderTimeout = 30 * time.Second
	if cfg.CAFile != "" {
		pool, err := caPool(cfg.CAFile)
		if err != nil {
			return fmt.Errorf("acme: %w", err)
		}
		transport.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	s.manager = &autocert.Manager{
		Prompt:     autocert.AcceptTOS,
		Cache:      autocert.DirCache(filepath.Join(dataDir, "acme")),
		HostPolicy: autocert.HostWhitelist(names...),
		Email:      cfg.Email,
		Client: &acme.Client{
			DirectoryURL: dir,
			UserAgent:    "moat",
			HTTPClient:   &http.Client{Transport: transport, Timeout: time.Minute},
		},
	}
	s.acmeHosts = names
	s.acmeHandler = s.manager.HTTPHandler(http.NotFoundHandler())
	s.logger.Info("certificates from ACME", "directory_url", dir, "hosts", names, "cache", filepath.Join(dataDir, "acme"))
	return nil
}

// caPool is the system roots plus the PEM certificates in file, so a
// private ACME CA such as Pebble is trusted without distrusting public ones.
func caPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("ca_file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("ca_file %s: no PEM certificate found", file)
	}
	return pool, nil
}

// acmeCertificate serves a handshake in ACME mode. Names that are not
// routed are refused before autocert sees them, so scanners cannot make moat
// ask the CA for anything.
func (s *Source) acmeCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := normalizeHost(hello.ServerName)
	if name == "" {
		return nil, errors.New("acme: the client sent no server name (SNI)")
	}
	if net.ParseIP(name) != nil || !s.hosts.match(name) {
		s.logger.Debug("TLS handshake for a host moat does not route", "server_name", name)
		return nil, fmt.Errorf("acme: host %q is not routed", name)
	}
	cert, err := s.manager.GetCertificate(hello)
	if err != nil {
		s.logger.Warn("could not get an ACME certificate", "server_name", name, "err", err)
		return nil, fmt.Errorf("acme: %w", err)
	}
	return cert, nil
}

// Obtain makes sure every routed host has a certificate now rather than at
// its first handshake, so the first visitor does not wait for the CA. Call it
// once the plain-HTTP listener serves HTTPHandler (the CA connects to it for
// HTTP-01). Certificates already cached are only loaded. It does nothing
// unless the source is ACME, and returns the errors of all hosts that failed.
func (s *Source) Obtain(ctx context.Context) error {
	if s.manager == nil {
		return nil
	}
	var errs []error
	for _, host := range s.acmeHosts {
		done := make(chan error, 1)
		go func() {
			// The hello of a modern client, so the ECDSA certificate that
			// browsers get is the one obtained.
			_, err := s.manager.GetCertificate(&tls.ClientHelloInfo{
				ServerName:        host,
				CipherSuites:      []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
				SignatureSchemes:  []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256},
				SupportedCurves:   []tls.CurveID{tls.CurveP256},
				SupportedVersions: []uint16{tls.VersionTLS13, tls.VersionTLS12},
			})
			done <- err
		}()
		select {
		case err := <-done:
			if err != nil {
				errs = append(errs, fmt.Errorf("acme: obtain a certificate for %s: %w", host, err))
			}
		case <-ctx.Done():
			return fmt.Errorf("acme: obtain certificates: %w", ctx.Err())
		}
	}
	return errors.Join(errs...)
}
