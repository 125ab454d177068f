package certs

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/testwait"
)

// pairFiles writes a fresh pair with common name cn to dir and returns the
// config naming the files.
func pairFiles(t *testing.T, dir, cn string) config.TLS {
	t.Helper()
	c, k := makePair(t, cn, []string{"dash.example.com"}, time.Now().Add(-time.Hour), time.Now().Add(90*24*time.Hour))
	cfg := config.TLS{CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key")}
	writeFile(t, cfg.KeyFile, k, 0o600)
	writeFile(t, cfg.CertFile, c, 0o644)
	return cfg
}

func servedCN(t *testing.T, addr string) string {
	t.Helper()
	leaf, _, err := handshake(t, addr, insecure("dash.example.com"))
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	return leaf.Subject.CommonName
}

func TestCertificateFilesAreServed(t *testing.T) {
	cfg := pairFiles(t, t.TempDir(), "first")
	s, _ := newSource(t, cfg, nil, []string{"dash.example.com"})
	if got := servedCN(t, serveTLS(t, s)); got != "first" {
		t.Errorf("served %q, want first", got)
	}
}

func TestChangedCertificateFilesArePickedUpWithoutARestart(t *testing.T) {
	dir := t.TempDir()
	cfg := pairFiles(t, dir, "first")
	s, logs := newSource(t, cfg, nil, []string{"dash.example.com"})
	addr := serveTLS(t, s)

	pairFiles(t, dir, "second")
	testwait.For(t, 5*time.Second, "the new pair was not picked up by polling", func() bool {
		return servedCN(t, addr) == "second"
	})
	if !strings.Contains(logs.String(), "loaded certificate") {
		t.Errorf("log does not mention the reload:\n%s", logs)
	}

	// Reload picks a change up at once.
	pairFiles(t, dir, "third")
	if err := s.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if got := servedCN(t, addr); got != "third" {
		t.Errorf("after Reload served %q, want third", got)
	}
}

func TestBrokenCertificateFilesKeepTheOldCertificateServing(t *testing.T) {
	tests := []struct {
		name   string
		break_ func(t *testing.T, cfg config.TLS)
	}{
		{"when the key no longer matches the certificate", func(t *testing.T, cfg config.TLS) {
			other := pairFiles(t, t.TempDir(), "other")
			k, err := os.ReadFile(other.KeyFile)
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, cfg.KeyFile, k, 0o600)
		}},
		{"when the certificate file is garbage", func(t *testing.T, cfg config.TLS) {
			writeFile(t, cfg.CertFile, []byte("-----BEGIN CERTIFICATE-----\nnope\n"), 0o644)
		}},
		{"when the key file is removed", func(t *testing.T, cfg config.TLS) {
			if err := os.Remove(cfg.KeyFile); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := pairFiles(t, dir, "good")
			s, logs := newSource(t, cfg, nil, []string{"dash.example.com"})
			addr := serveTLS(t, s)

			tt.break_(t, cfg)
			testwait.For(t, 5*time.Second, "the broken pair was not logged", func() bool {
				return strings.Contains(logs.String(), "certificate reload failed")
			})
			if err := s.Reload(); err == nil {
				t.Error("Reload of a broken pair returned no error")
			}
			if got := servedCN(t, addr); got != "good" {
				t.Errorf("served %q after a broken change, want the old certificate", got)
			}

			// Fixing the files is picked up again.
			pairFiles(t, dir, "fixed")
			testwait.For(t, 5*time.Second, "the fixed pair was not picked up", func() bool {
				return servedCN(t, addr) == "fixed"
			})
		})
	}
}

func TestBrokenCertificateFilesFailStartUp(t *testing.T) {
	dir := t.TempDir()
	cfg := pairFiles(t, dir, "good")
	writeFile(t, cfg.KeyFile, []byte("garbage"), 0o600)
	logger, _ := newLogger()
	if s, err := New(context.Background(), cfg, Options{Hosts: []string{"dash.example.com"}, Logger: logger}); err == nil {
		s.Close()
		t.Fatal("New accepted a broken pair")
	}
	cfg.KeyFile = filepath.Join(dir, "missing.key")
	if s, err := New(context.Background(), cfg, Options{Hosts: []string{"dash.example.com"}, Logger: logger}); err == nil {
		s.Close()
		t.Fatal("New accepted a missing key file")
	}
}

func TestCloseStopsWatchingFiles(t *testing.T) {
	dir := t.TempDir()
	cfg := pairFiles(t, dir, "first")
	s, _ := newSource(t, cfg, nil, []string{"dash.example.com"})
	addr := serveTLS(t, s)
	s.Close()
	s.Close() // twice is fine
	pairFiles(t, dir, "second")
	time.Sleep(5 * pollInterval)
	if got := servedCN(t, addr); got != "first" {
		t.Errorf("served %q after Close, want the certificate from before", got)
	}
}
