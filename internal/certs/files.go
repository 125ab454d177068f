package certs

import (
	"crypto/tls"
	"fmt"
	"os"
	"time"
)

// fileStamp identifies one version of the certificate and key files by
// modification time and size.
type fileStamp struct {
	certMod, keyMod   time.Time
	certSize, keySize int64
}

func statPair(certFile, keyFile string) (fileStamp, error) {
	c, err := os.Stat(certFile)
	if err != nil {
		return fileStamp{}, fmt.Errorf("certificate file: %w", err)
	}
	k, err := os.Stat(keyFile)
	if err != nil {
		return fileStamp{}, fmt.Errorf("key file: %w", err)
	}
	return fileStamp{certMod: c.ModTime(), keyMod: k.ModTime(), certSize: c.Size(), keySize: k.Size()}, nil
}

// initFiles loads the pair once; a broken pair fails start-up.
func (s *Source) initFiles(certFile, keyFile string) error {
	if certFile == "" || keyFile == "" {
		return fmt.Errorf("cert_file and key_file go together: set both")
	}
	s.certFile, s.keyFile = certFile, keyFile
	return s.reloadFiles(true)
}

// reloadFiles loads the pair when the files changed since the last attempt
// (or always, when force is set). On error the previous certificate stays.
func (s *Source) reloadFiles(force bool) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	stamp, err := statPair(s.certFile, s.keyFile)
	if err != nil {
		if force {
			return err
		}
		// A missing file is usually a replacement in progress: report it
		// once, when the stamp changes, like a broken pair.
		if s.stamp == (fileStamp{}) {
			return nil
		}
		s.stamp = fileStamp{}
		return err
	}
	if !force && stamp == s.stamp {
		return nil
	}
	s.stamp = stamp
	cert, err := loadPair(s.certFile, s.keyFile)
	if err != nil {
		return err
	}
	s.cert.Store(cert)
	leaf := cert.Leaf
	s.logger.Info("loaded certificate", "path", s.certFile, "subject", leaf.Subject.String(), "dns_names", leaf.DNSNames, "not_after", leaf.NotAfter)
	if time.Now().After(leaf.NotAfter) {
		s.logger.Warn("the certificate has expired", "path", s.certFile, "not_after", leaf.NotAfter)
	}
	return nil
}

// loadPair reads a PEM certificate chain and its private key, which must
// match.
func loadPair(certFile, keyFile string) (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load %s and %s: %w", certFile, keyFile, err)
	}
	if cert.Leaf == nil {
		return nil, fmt.Errorf("load %s: no certificate", certFile)
	}
	return &cert, nil
}
