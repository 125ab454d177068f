package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/config"
)

// installPebble is the install step the ACME test needs.
const installPebble = "scripts/install-pebble.sh (go install github.com/letsencrypt/pebble/v2/cmd/pebble@v2.10.3 github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv@v2.10.3)"

// findTool looks for a binary on PATH and in $(go env GOPATH)/bin. When it
// is missing the test fails under CI=true and is skipped otherwise.
func findTool(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		for _, dir := range filepath.SplitList(strings.TrimSpace(string(out))) {
			p := filepath.Join(dir, "bin", name)
			if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
				return p
			}
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not installed: run %s", name, installPebble)
	}
	t.Skipf("%s is not installed (run %s)", name, installPebble)
	return ""
}

// freePort returns a port that was free on 127.0.0.1 a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startProcess runs a command until the test ends, with its output in
// the test log on failure.
func startProcess(t *testing.T, name string, env []string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	out := &logBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(name), out)
		}
	})
}

// waitTCP waits until something listens on addr.
func waitTCP(t *testing.T, addr string) {
	t.Helper()
	eventually(t, 15*time.Second, addr+" is not listening", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// pebble is a running Pebble with its DNS helper.
type pebble struct {
	directoryURL string
	caFile       string         // trusts Pebble's own listeners
	roots        *x509.CertPool // Pebble's issuing root
	intermediate string         // its issuing intermediate's common name
}

// startPebble runs pebble-challtestsrv as DNS server answering 127.0.0.1
// for every name, and Pebble validating HTTP-01 on httpPort. Its TLS-ALPN-01
// port is tlsPort.
func startPebble(t *testing.T, httpPort, tlsPort int) *pebble {
	t.Helper()
	pebbleBin := findTool(t, "pebble")
	challBin := findTool(t, "pebble-challtestsrv")
	dir := t.TempDir()

	// A certificate for Pebble's own HTTPS listeners, trusted as ca_file.
	c, k := makePair(t, "pebble listener", []string{"localhost", "127.0.0.1"}, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	caFile := filepath.Join(dir, "pebble-listener.pem")
	keyFile := filepath.Join(dir, "pebble-listener.key")
	writeFile(t, caFile, c, 0o644)
	writeFile(t, keyFile, k, 0o600)

	dnsPort, challMgmtPort := freePort(t), freePort(t)
	startProcess(t, challBin, nil,
		"-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
		"-dnsserver", fmt.Sprintf("127.0.0.1:%d", dnsPort),
		"-management", fmt.Sprintf("127.0.0.1:%d", challMgmtPort),
		"-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "")
	waitTCP(t, fmt.Sprintf("127.0.0.1:%d", challMgmtPort))
	waitTCP(t, fmt.Sprintf("127.0.0.1:%d", dnsPort))

	listen, mgmt := fmt.Sprintf("127.0.0.1:%d", freePort(t)), fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":                  listen,
		"managementListenAddress":        mgmt,
		"certificate":                    caFile,
		"privateKey":                     keyFile,
		"httpPort":                       httpPort,
		"tlsPort":                        tlsPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
		"retryAfter":                     map[string]int{"authz": 1, "order": 1},
		"keyAlgorithm":                   "ecdsa",
	}}
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "pebble-config.json")
	writeFile(t, cfgFile, b, 0o644)
	startProcess(t, pebbleBin, []string{"PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0"},
		"-config", cfgFile, "-dnsserver", fmt.Sprintf("127.0.0.1:%d", dnsPort))
	waitTCP(t, listen)
	waitTCP(t, mgmt)

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	t.Cleanup(client.CloseIdleConnections)
	get := func(path string) []byte {
		t.Helper()
		resp, err := client.Get("https://" + mgmt + path)
		if err != nil {
			t.Fatalf("pebble management %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("pebble management %s: %d %v", path, resp.StatusCode, err)
		}
		return body
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(get("/roots/0")) {
		t.Fatal("pebble /roots/0 is not PEM")
	}
	inter := x509.NewCertPool()
	interPEM := get("/intermediates/0")
	if !inter.AppendCertsFromPEM(interPEM) {
		t.Fatal("pebble /intermediates/0 is not PEM")
	}
	interCert, err := parsePEMCert(interPEM)
	if err != nil {
		t.Fatal(err)
	}
	return &pebble{directoryURL: "https://" + listen + "/dir", caFile: caFile, roots: roots, intermediate: interCert.Subject.CommonName}
}

func parsePEMCert(b []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("no PEM certificate")
	}
	return x509.ParseCertificate(block.Bytes)
}

// TestACMECertificateIsIssuedByPebbleOverHTTP01 runs the whole flow against
// a real ACME server: the first handshake for a routed host makes moat order
// a certificate, Pebble fetches the HTTP-01 token from HTTPHandler, and the
// client receives a certificate chaining to Pebble's root. TLS-ALPN-01 is
// pointed at a closed port so that only HTTP-01 can succeed.
func TestACMECertificateIsIssuedByPebbleOverHTTP01(t *testing.T) {
	const host = "moat-test.example"
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpPort := httpLn.Addr().(*net.TCPAddr).Port
	p := startPebble(t, httpPort, freePort(t))

	dataDir := t.TempDir()
	cfg := config.TLS{ACME: &config.ACME{Email: "ops@moat-test.example", DirectoryURL: p.directoryURL, CAFile: p.caFile}}
	const second = "second.moat-test.example"
	s, logs := newSource(t, cfg, dataDir, []string{host, second})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("moat log:\n%s", logs)
		}
	})
	if got := s.TLSConfig().NextProtos; !strings.Contains(strings.Join(got, ","), "acme-tls/1") {
		t.Errorf("NextProtos %v lack acme-tls/1", got)
	}

	var challenges atomic.Int32
	httpHandler := s.HTTPHandler("443")
	httpSrv := &http.Server{
		ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, acmeChallengePrefix) {
				challenges.Add(1)
			}
			httpHandler.ServeHTTP(w, r)
		}),
	}
	go httpSrv.Serve(httpLn)
	t.Cleanup(func() { httpSrv.Close() })
	addr := serveTLS(t, s)

	start := time.Now()
	leaf, st, err := handshake(t, addr, &tls.Config{ServerName: host, RootCAs: p.roots})
	if err != nil {
		t.Fatalf("handshake for %s (certificate chaining to Pebble's root): %v", host, err)
	}
	t.Logf("certificate issued in %s", time.Since(start).Round(time.Millisecond))
	if leaf.Issuer.CommonName != p.intermediate {
		t.Errorf("issuer %q, want Pebble's intermediate %q", leaf.Issuer.CommonName, p.intermediate)
	}
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != host {
		t.Errorf("certificate names %v, want [%s]", leaf.DNSNames, host)
	}
	if len(st.VerifiedChains) == 0 {
		t.Error("no verified chain")
	}
	if challenges.Load() == 0 {
		t.Error("Pebble never fetched an HTTP-01 challenge from HTTPHandler")
	}

	// The certificate and the account key are cached in data_dir/acme.
	for _, name := range []string{host, "acme_account+key"} {
		if _, err := os.Stat(filepath.Join(dataDir, "acme", name)); err != nil {
			t.Errorf("ACME cache: %v", err)
		}
	}

	// A host that is not routed gets no certificate, and moat asks nothing.
	if _, _, err := handshake(t, addr, &tls.Config{ServerName: "other.example", RootCAs: p.roots}); err == nil {
		t.Error("handshake for an unrouted host succeeded")
	}
	if _, _, err := handshake(t, addr, &tls.Config{ServerName: host, RootCAs: p.roots, InsecureSkipVerify: false}); err != nil {
		t.Errorf("second handshake: %v", err)
	}

	// Obtain gets the other routed host's certificate without a handshake.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Obtain(ctx); err != nil {
		t.Fatalf("Obtain: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "acme", second)); err != nil {
		t.Errorf("Obtain did not cache a certificate for %s: %v", second, err)
	}

	// A restarted moat serves the cached certificate without a new order:
	// point it at a directory that does not exist.
	cached := config.TLS{ACME: &config.ACME{DirectoryURL: "https://127.0.0.1:" + strconv.Itoa(freePort(t)) + "/dir", CAFile: p.caFile}}
	s2, _ := newSource(t, cached, dataDir, []string{host})
	leaf2, _, err := handshake(t, serveTLS(t, s2), &tls.Config{ServerName: host, RootCAs: p.roots})
	if err != nil {
		t.Fatalf("handshake after restart: %v", err)
	}
	if !leaf2.Equal(leaf) {
		t.Error("after a restart a different certificate was served, not the cached one")
	}
}

func TestACMERefusesWildcardHosts(t *testing.T) {
	logger, _ := newLogger()
	cfg := config.TLS{ACME: &config.ACME{DirectoryURL: "https://127.0.0.1:1/dir"}}
	if s, err := New(context.Background(), cfg, t.TempDir(), []string{"*.example.com"}, logger); err == nil {
		s.Close()
		t.Fatal("New accepted a wildcard host with ACME")
	}
}

func TestACMEHTTPHandlerAnswersChallengesOnlyForRoutedHosts(t *testing.T) {
	cfg := config.TLS{ACME: &config.ACME{DirectoryURL: "https://127.0.0.1:" + strconv.Itoa(freePort(t)) + "/dir"}}
	s, _ := newSource(t, cfg, t.TempDir(), []string{"moat-test.example"})
	srv := &http.Server{Handler: s.HTTPHandler("443"), ReadHeaderTimeout: 5 * time.Second}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	tests := []struct {
		name, host, path string
		status           int
	}{
		{"an unknown token for a routed host is not found, not redirected", "moat-test.example:5002", "/.well-known/acme-challenge/nope", 404},
		{"a challenge for an unrouted host is not found", "evil.example", "/.well-known/acme-challenge/nope", 404},
		{"other paths are redirected", "moat-test.example", "/x", 301},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", "http://"+ln.Addr().String()+tt.path, nil)
			req.Host = tt.host
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.status)
			}
		})
	}
}
