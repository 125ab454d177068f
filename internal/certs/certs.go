// Package certs supplies moat's TLS certificates: a self-signed certificate,
// a certificate/key pair read from files and picked up again when they
// change, or certificates issued over ACME (Let's Encrypt, or any RFC 8555
// CA such as Pebble). Self-signed and ACME certificates, the ACME account
// and pending challenge answers live in moat's store, so every instance on
// one database serves the same certificate, one instance at a time orders
// or renews it, and a challenge is answered by whichever instance the CA
// reaches; an instance needs no writable disk for them. The package also
// serves the plain-HTTP listener, which answers ACME HTTP-01 challenges
// and redirects everything else to HTTPS.
package certs

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3"

	"github.com/moat-dev/moat/internal/config"
)

// pollInterval is how often certificate files are checked for changes (and
// the store for the shared self-signed certificate). Tests shorten it.
var pollInterval = 3 * time.Second

// Options are what a Source needs besides the tls configuration.
type Options struct {
	// Store keeps self-signed and ACME certificates for every instance.
	// Required for those two; certificate files do not use it.
	Store Store
	// Sealer encrypts everything kept in Store (private keys among it)
	// with a key every instance holds: the instance key. Required with
	// Store.
	Sealer Sealer
	// Hosts are the routed hosts (wildcards such as *.example.com
	// allowed, except with ACME).
	Hosts []string
	// HTTPAddr and HTTPSAddr are the listen addresses of moat's plain-HTTP
	// listener ("off" when there is none) and HTTPS listener, which answer
	// ACME challenges, so that the ACME client opens no port of its own.
	HTTPAddr, HTTPSAddr string
	// Logger receives the source's log lines; nil discards them.
	Logger *slog.Logger
}

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
	selfSigned *selfSigning

	// acme mode.
	acme       *acmeIssuing
	acmeIssuer *certmagic.ACMEIssuer

	pollInterval time.Duration
	// ctx ends at Close (or when New's ctx ends): it stops the watch,
	// a wait for the store's lock, and ACME orders and their retries.
	ctx       context.Context
	cancel    context.CancelFunc
	done      chan struct{} // closed when the watch has stopped
	closeOnce sync.Once
}

// New builds the certificate source that tlsCfg asks for. Certificate
// files and the self-signed certificate are loaded (or made) before New
// returns, so a broken pair fails start-up. Background work (watching
// files, following the shared self-signed certificate) runs until Close or
// until ctx is cancelled; ACME starts with Obtain.
func New(ctx context.Context, tlsCfg config.TLS, o Options) (*Source, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	hs, err := newHostSet(o.Hosts)
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	s := &Source{
		logger:       logger.With("component", "certs"),
		hosts:        hs,
		pollInterval: pollInterval,
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
	s.ctx, s.cancel = context.WithCancel(ctx)
	switch {
	case tlsCfg.SelfSigned:
		s.kind = "self_signed"
		err = s.initSelfSigned(s.ctx, o.Store, o.Sealer, o.Hosts)
	case tlsCfg.ACME != nil:
		s.kind = "acme"
		err = s.initACME(*tlsCfg.ACME, o)
	default:
		s.kind = "files"
		err = s.initFiles(tlsCfg.CertFile, tlsCfg.KeyFile)
	}
	if err != nil {
		s.cancel()
		return nil, fmt.Errorf("certs: %w", err)
	}
	go s.watch()
	return s, nil
}

// TLSConfig returns a server configuration for the HTTPS listener: TLS 1.2 or
// later (1.2 only with ECDHE key exchange and AEAD ciphers), HTTP/2 and
// HTTP/1.1 offered over ALPN, and, with ACME, the acme-tls/1 protocol for
// TLS-ALPN-01 challenges. Each call returns a new value the caller may adjust.
func (s *Source) TLSConfig() *tls.Config {
	protos := []string{"h2", "http/1.1"}
	if s.acme != nil {
		protos = append(protos, acmez.ACMETLS1Protocol)
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
// tls.Config hook TLSConfig installs; with ACME it refuses names that are
// not routed and answers TLS-ALPN-01 challenges.
func (s *Source) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if s.acme == nil {
		return s.cert.Load(), nil
	}
	return s.acmeCertificate(hello)
}

// Kind names the certificate source in use: "self_signed", "files" or
// "acme".
func (s *Source) Kind() string { return s.kind }

// Reload reads the certificate files again now, without waiting for the next
// poll, and for a self-signed certificate takes the one in the store or
// renews it if it is about to expire. A broken pair is returned as an error and the old certificate keeps
// serving. With ACME it does nothing: renewal is automatic.
func (s *Source) Reload() error {
	switch s.kind {
	case "files":
		return s.reloadFiles(true)
	case "self_signed":
		return s.followSelfSigned(s.ctx)
	}
	return nil
}

// Close stops the background work, ACME orders and renewals included. It
// is safe to call more than once.
func (s *Source) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		<-s.done
		if s.acme != nil {
			s.acme.cache.Stop()
		}
	})
	return nil
}

// watch polls the certificate files (or the shared self-signed
// certificate) until Close or New's ctx is done.
func (s *Source) watch() {
	defer close(s.done)
	if s.kind == "acme" {
		<-s.ctx.Done()
		return
	}
	t := time.NewTicker(s.pollInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		if s.kind == "self_signed" {
			s.pollSelfSigned(s.ctx)
			continue
		}
		if err := s.reloadFiles(false); err != nil {
			s.logger.Error("certificate reload failed; the previous certificate keeps serving", "err", err)
		}
	}
}
