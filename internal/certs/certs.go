// Package certs supplies moat's TLS certificates: a self-signed certificate
// kept in the data directory, a certificate/key pair read from files and
// picked up again when they change, or certificates issued over ACME (Let's
// Encrypt, or any RFC 8555 CA such as Pebble) and cached in the data
// directory. It also serves the plain-HTTP listener, which answers ACME
// HTTP-01 challenges and redirects everything else to HTTPS.
package certs

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"

	"github.com/moat-dev/moat/internal/config"
)

// pollInterval is how often certificate files are checked for changes (and a
// self-signed certificate for approaching expiry). Tests shorten it.
var pollInterval = 3 * time.Second

// Source hands out the certificate for each TLS handshake. Build one with
// New, serve TLSConfig on the HTTPS listener and HTTPHandler on the plain-HTTP
// one, and Close it when the server stops.
type Source struct {
	logger *slog.Logger
	hosts  hostSet
	kind   string // "self_signed", "files" or "acme"

	// cert is the certificate served in self_signed and files mode.
	cert atomic.Pointer[tls.Certificate]

	// files mode.
	certFile, keyFile string
	reloadMu          sync.Mutex
	stamp             fileStamp // of the pair last tried, good or bad

	// self_signed mode.
	selfSignedDir string
	selfSignedFor []string

	// acme mode.
	manager     *autocert.Manager
	acmeHosts   []string
	acmeHandler http.Handler

	pollInterval time.Duration
	stop         chan struct{}
	done         chan struct{}
	closeOnce    sync.Once
}

// New builds the certificate source that tlsCfg asks for. hosts are the
// routed hosts (wildcards such as *.example.com allowed, except with ACME);
// dataDir holds the self-signed certificate (dataDir/certs) and the ACME
// cache (dataDir/acme). Certificate files and the self-signed certificate are
// loaded before New returns, so a broken pair fails start-up. Background
// work (watching files) runs until Close or until ctx is cancelled.
func New(ctx context.Context, tlsCfg config.TLS, dataDir string, hosts []string, logger *slog.Logger) (*Source, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	hs, err := newHostSet(hosts)
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	s := &Source{
		logger:       logger.With("component", "certs"),
		hosts:        hs,
		pollInterval: pollInterval,
		stop:         make(chan struct{}),
		done:         make(chan struct{}),
	}
	set := 0
	if tlsCfg.SelfSigned {
		set++
	}
	if tlsCfg.CertFile != "" || tlsCfg.KeyFile != "" {
		set++
	}
	if tlsCfg.ACME != nil {
		set++
	}
	if set != 1 {
		return nil, errors.New("certs: choose exactly one certificate source: self_signed, cert_file + key_file, or acme")
	}
	switch {
	case tlsCfg.SelfSigned:
		s.kind = "self_signed"
		err = s.initSelfSigned(dataDir, hosts)
	case tlsCfg.ACME != nil:
		s.kind = "acme"
		err = s.initACME(*tlsCfg.ACME, dataDir, hosts)
	default:
		s.kind = "files"
		err = s.initFiles(tlsCfg.CertFile, tlsCfg.KeyFile)
	}
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	go s.watch(ctx)
	return s, nil
}

// TLSConfig returns a server configuration for the HTTPS listener: TLS 1.2 or
// later (1.2 only with ECDHE key exchange and AEAD ciphers), HTTP/2 and
// HTTP/1.1 offered over ALPN, and, with ACME, the acme-tls/1 protocol for
// TLS-ALPN-01 challenges. Each call returns a new value the caller may adjust.
func (s *Source) TLSConfig() *tls.Config {
	protos := []string{"h2", "http/1.1"}
	if s.manager != nil {
		protos = append(protos, acme.ALPNProto)
	}
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     protos,
		GetCertificate: s.GetCertificate,
		// TLS 1.3 suites are not configurable and all good; for 1.2 keep
		// forward secrecy and authenticated encryption only.
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
	}
}

// GetCertificate returns the certificate for a handshake. It is the
// tls.Config hook TLSConfig installs; with ACME it obtains a certificate on
// the first handshake for a routed host and refuses any other name.
func (s *Source) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if s.manager == nil {
		return s.cert.Load(), nil
	}
	return s.acmeCertificate(hello)
}

// Kind names the certificate source in use: "self_signed", "files" or
// "acme".
func (s *Source) Kind() string { return s.kind }

// Reload reads the certificate files again now, without waiting for the next
// poll, and for a self-signed certificate renews it if it is about to
// expire. A broken pair is returned as an error and the old certificate keeps
// serving. With ACME it does nothing: renewal is automatic.
func (s *Source) Reload() error {
	switch s.kind {
	case "files":
		return s.reloadFiles(true)
	case "self_signed":
		return s.renewSelfSigned()
	}
	return nil
}

// Close stops the background work. It is safe to call more than once.
func (s *Source) Close() error {
	s.closeOnce.Do(func() { close(s.stop) })
	<-s.done
	return nil
}

// watch polls the certificate files (or the self-signed certificate's
// expiry) until Close or ctx is done.
func (s *Source) watch(ctx context.Context) {
	defer close(s.done)
	if s.kind == "acme" {
		select {
		case <-s.stop:
		case <-ctx.Done():
		}
		return
	}
	t := time.NewTicker(s.pollInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var err error
		if s.kind == "files" {
			err = s.reloadFiles(false)
		} else {
			err = s.renewSelfSigned()
		}
		if err != nil {
			s.logger.Error("certificate reload failed; the previous certificate keeps serving", "err", err)
		}
	}
}
