package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/moat-dev/moat/internal/config"
)

// defaultRenewInterval is how often certificates are checked for renewal
// when tls.acme.renew_interval is not set (certmagic's and Caddy's
// default).
const defaultRenewInterval = 10 * time.Minute

// acmeIssuing is the ACME side of a Source: certmagic, configured for
// exactly the routed hosts, with its state in moat's store.
//
// Why certmagic rather than x/crypto/acme/autocert: autocert's Cache has
// no lock, so every instance orders its own certificate at start and
// renews it on its own timer, and N instances soon hit the CA's rate
// limits. certmagic's Storage has a cluster-wide lock around every order,
// renewal and ARI refresh, re-reads the store after taking it (so the
// instance that waited loads what the other obtained), keeps challenge
// answers in the store so that any instance the CA reaches can answer
// (HTTP-01 and TLS-ALPN-01), and reloads a certificate another instance
// renewed. It is what Caddy runs in clusters, and it also speaks ACME
// Renewal Information (RFC 9773).
type acmeIssuing struct {
	cache  *certmagic.Cache
	config *certmagic.Config
	names  []string
}

// initACME sets up certmagic for the routed hosts that can have a public
// certificate.
func (s *Source) initACME(cfg config.ACME, o Options) error {
	if o.Store == nil || o.Sealer == nil {
		return errors.New("acme: no store to keep certificates in, or no instance key to seal them with")
	}
	var names []string
	for _, h := range o.Hosts {
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
		dir = certmagic.LetsEncryptProductionCA
	}
	var roots *x509.CertPool
	if cfg.CAFile != "" {
		pool, err := caPool(cfg.CAFile)
		if err != nil {
			return fmt.Errorf("acme: %w", err)
		}
		roots = pool
	}
	interval := cfg.RenewInterval.D()
	if interval <= 0 {
		interval = defaultRenewInterval
	}

	zl := zapLogger(s.logger)
	var cmc *certmagic.Config
	cache := certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert:   func(certmagic.Certificate) (*certmagic.Config, error) { return cmc, nil },
		RenewCheckInterval: interval,
		Logger:             zl,
	})
	cmc = certmagic.New(cache, certmagic.Config{
		Storage: newStorage(o.Store, o.Sealer, s.logger),
		Logger:  zl,
		OnEvent: s.acmeEvent,
	})
	issuer := certmagic.ACMEIssuer{
		CA:           dir,
		Email:        cfg.Email,
		Agreed:       true,
		TrustedRoots: roots,
		Logger:       zl,
	}
	// certmagic binds a challenge port itself unless something already
	// listens there: point it at moat's own listeners, which answer from
	// the store, so it never opens a port of its own.
	if o.HTTPAddr == "" || o.HTTPAddr == "off" {
		issuer.DisableHTTPChallenge = true
	} else if host, port, err := listenerAddr(o.HTTPAddr); err == nil {
		issuer.ListenHost, issuer.AltHTTPPort = host, port
	}
	if host, port, err := listenerAddr(o.HTTPSAddr); err == nil {
		issuer.AltTLSALPNPort = port
		if issuer.ListenHost == "" {
			issuer.ListenHost = host
		}
	}
	cmc.Issuers = []certmagic.Issuer{certmagic.NewACMEIssuer(cmc, issuer)}

	s.acme = &acmeIssuing{cache: cache, config: cmc, names: names}
	s.acmeIssuer = cmc.Issuers[0].(*certmagic.ACMEIssuer)
	s.logger.Info("certificates from ACME, kept in the store", "directory_url", dir, "hosts", names, "renew_interval", interval.String())
	return nil
}

// listenerAddr splits a listen address such as ":80" or "127.0.0.1:8080".
func listenerAddr(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, err
	}
	return host, port, nil
}

// acmeEvent logs certmagic's milestones under moat's own, stable messages.
func (s *Source) acmeEvent(_ context.Context, event string, data map[string]any) error {
	switch event {
	case "cert_obtained":
		s.logger.Info("obtained an ACME certificate", "host", data["identifier"], "renewal", data["renewal"], "issuer", data["issuer"])
	case "cert_failed":
		s.logger.Error("could not obtain an ACME certificate; retrying with backoff", "host", data["identifier"], "renewal", data["renewal"], "err", data["error"])
	}
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

// acmeCertificate serves a handshake in ACME mode, TLS-ALPN-01 challenges
// included. Names that are not routed are refused before certmagic sees
// them.
func (s *Source) acmeCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := normalizeHost(hello.ServerName)
	if name == "" {
		return nil, errors.New("acme: the client sent no server name (SNI)")
	}
	if net.ParseIP(name) != nil || !s.hosts.match(name) {
		s.logger.Debug("TLS handshake for a host moat does not route", "server_name", name)
		return nil, fmt.Errorf("acme: host %q is not routed", name)
	}
	cert, err := s.acme.config.GetCertificate(hello)
	if err != nil {
		s.logger.Debug("no ACME certificate for this handshake yet", "server_name", name, "err", err)
		return nil, fmt.Errorf("acme: %w", err)
	}
	return cert, nil
}

// Obtain starts managing the routed hosts' certificates: those in the
// store are loaded, missing ones are ordered (by one instance at a time;
// the others wait and then load it), and all are renewed in time. Call it
// once the listeners accept connections, since the CA connects back to
// them. It returns at once; orders and their retries run until Close. It
// does nothing unless the source is ACME.
func (s *Source) Obtain(ctx context.Context) error {
	if s.acme == nil {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.acme.config.ManageAsync(s.ctx, s.acme.names); err != nil {
		return fmt.Errorf("acme: %w", err)
	}
	return nil
}
