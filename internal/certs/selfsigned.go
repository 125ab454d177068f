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
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"slices"
	"time"
)

const (
	// selfSignedValidity is how long a new self-signed certificate lasts.
	selfSignedValidity = 365 * 24 * time.Hour
	// selfSignedRenewBefore is how long before expiry it is replaced.
	selfSignedRenewBefore = 30 * 24 * time.Hour
	// selfSignedKey is the store key (under tls/) of the certificate and
	// its private key, kept together in one PEM blob so that no reader
	// ever sees one without the other.
	selfSignedKey = "self_signed/certificate.pem"
	// selfSignedLock is held while a new one is made, so that instances
	// starting together make one.
	selfSignedLock = "self_signed"
)

// selfSigning is the self-signed side of a Source: one certificate in the
// store, shared by every instance.
type selfSigning struct {
	storage *storage
	names   []string // what this instance needs it to cover
	pem     []byte   // the stored PEM now served
	failing string   // the poll error logged last
}

// initSelfSigned serves the self-signed certificate in the store when it
// covers every routed host (plus localhost and the loopback addresses) and
// is valid for more than 30 days, and makes and stores a new one otherwise.
func (s *Source) initSelfSigned(ctx context.Context, st Store, sealer Sealer, hosts []string) error {
	if st == nil || sealer == nil {
		return errors.New("self-signed certificate: no store to keep it in, or no instance key to seal it with")
	}
	s.selfSigned = &selfSigning{storage: newStorage(st, sealer, s.logger), names: selfSignedNames(hosts)}
	return s.followSelfSigned(ctx)
}

// followSelfSigned serves the stored certificate if it changed and suits
// this instance; if it does not (missing, about to expire, or lacking a
// routed host), it makes a new one under the store's lock. On error the
// certificate already served stays.
func (s *Source) followSelfSigned(ctx context.Context) error {
	ss := s.selfSigned
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	stored, cert, reason, err := ss.load(ctx)
	if err != nil {
		return err
	}
	if reason == "" {
		if !bytes.Equal(stored, ss.pem) {
			ss.pem = stored
			s.cert.Store(cert)
			s.logger.Info("serving the self-signed certificate from the store", "not_after", cert.Leaf.NotAfter, "names", certNames(cert.Leaf))
		}
		return nil
	}

	if err := ss.storage.Lock(ctx, selfSignedLock); err != nil {
		return fmt.Errorf("self-signed certificate: %w", err)
	}
	defer func() {
		if err := ss.storage.Unlock(context.WithoutCancel(ctx), selfSignedLock); err != nil {
			s.logger.Warn("could not release the self-signed certificate lock; it expires on its own", "err", err)
		}
	}()
	// Another instance may have made one while this one waited.
	stored, cert, reason, err = ss.load(ctx)
	if err != nil {
		return err
	}
	if reason != "" {
		// Keep the names of a stored certificate that is still in use,
		// so instances whose routes differ for a while (a rolling
		// configuration change) do not replace each other's in turn.
		names := ss.names
		if cert != nil && time.Now().Before(cert.Leaf.NotAfter) {
			for _, n := range certNames(cert.Leaf) {
				if !slices.Contains(names, n) {
					names = append(names, n)
				}
			}
		}
		if stored, cert, err = newSelfSigned(names); err != nil {
			return err
		}
		if err := ss.storage.Store(ctx, selfSignedKey, stored); err != nil {
			return fmt.Errorf("self-signed certificate: store: %w", err)
		}
		s.logger.Info("made a new self-signed certificate", "reason", reason, "names", names, "not_after", cert.Leaf.NotAfter)
	}
	ss.pem = stored
	s.cert.Store(cert)
	return nil
}

// pollSelfSigned follows the stored certificate (see followSelfSigned)
// and logs a failure once, not at every poll while the store is down.
func (s *Source) pollSelfSigned(ctx context.Context) {
	ss := s.selfSigned
	err := s.followSelfSigned(ctx)
	switch {
	case err != nil && err.Error() != ss.failing:
		ss.failing = err.Error()
		s.logger.Error("cannot read the self-signed certificate from the store; the current one keeps serving", "err", err)
	case err == nil && ss.failing != "":
		ss.failing = ""
		s.logger.Info("the self-signed certificate in the store is readable again")
	}
}

// load reads the stored certificate. reason is empty when it suits this
// instance, and says why not otherwise; cert is set whenever the blob
// parses, suitable or not. err is for a store that cannot be read.
func (ss *selfSigning) load(ctx context.Context) (stored []byte, cert *tls.Certificate, reason string, err error) {
	stored, err = ss.storage.Load(ctx, selfSignedKey)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, "there is none in the store", nil
	}
	if errors.Is(err, errUnsealable) {
		return nil, nil, "the stored one does not open: " + err.Error(), nil
	}
	if err != nil {
		return nil, nil, "", fmt.Errorf("self-signed certificate: load from the store: %w", err)
	}
	c, err := tls.X509KeyPair(stored, stored)
	if err != nil {
		return stored, nil, "the stored one does not load: " + err.Error(), nil
	}
	now, leaf := time.Now(), c.Leaf
	switch {
	case now.Before(leaf.NotBefore):
		return stored, &c, fmt.Sprintf("the stored one is not valid before %s", leaf.NotBefore), nil
	case leaf.NotAfter.Sub(now) <= selfSignedRenewBefore:
		return stored, &c, fmt.Sprintf("the stored one expires at %s", leaf.NotAfter), nil
	}
	for _, name := range ss.names {
		if !covers(leaf, name) {
			return stored, &c, fmt.Sprintf("the stored one does not cover %s", name), nil
		}
	}
	return stored, &c, "", nil
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

// certNames lists a certificate's DNS names and IP addresses.
func certNames(leaf *x509.Certificate) []string {
	names := slices.Clone(leaf.DNSNames)
	for _, ip := range leaf.IPAddresses {
		names = append(names, ip.String())
	}
	return names
}

// covers reports whether name is literally among the certificate's names:
// a wildcard host must be in the certificate as that wildcard.
func covers(leaf *x509.Certificate, name string) bool {
	if ip := net.ParseIP(name); ip != nil {
		return slices.ContainsFunc(leaf.IPAddresses, ip.Equal)
	}
	return slices.Contains(leaf.DNSNames, name)
}

// newSelfSigned makes a new ECDSA P-256 key and a self-signed leaf
// certificate (no CA) for names, and returns both as one PEM blob.
func newSelfSigned(names []string) ([]byte, *tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("self-signed certificate: generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, fmt.Errorf("self-signed certificate: serial: %w", err)
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
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("self-signed certificate: create: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("self-signed certificate: marshal key: %w", err)
	}
	blob := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	blob = append(blob, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})...)
	cert, err := tls.X509KeyPair(blob, blob)
	if err != nil {
		return nil, nil, fmt.Errorf("self-signed certificate: %w", err)
	}
	return blob, &cert, nil
}
