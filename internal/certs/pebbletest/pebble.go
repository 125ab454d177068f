// Package pebbletest runs Let's Encrypt's Pebble, a real ACME server, for
// tests: Pebble itself, pebble-challtestsrv as its DNS server (every name
// resolves to 127.0.0.1), and a proxy in front of Pebble's directory that
// counts new orders, so a test can tell how many certificates were ordered
// by however many moat instances. Everything listens on 127.0.0.1 and
// stops when the test ends.
//
// The binaries come from scripts/install-pebble.sh. Without them Start
// skips the test, or fails it when CI=true.
package pebbletest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/testlog"
	"github.com/moat-dev/moat/internal/testnet"
	"github.com/moat-dev/moat/internal/testtool"
)

// Install is the step that installs the binaries, for messages.
const Install = "scripts/install-pebble.sh (go install github.com/letsencrypt/pebble/v2/cmd/pebble@v2.10.3 github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv@v2.10.3)"

// Options shape the CA.
type Options struct {
	// HTTPPort and TLSPort are where Pebble validates HTTP-01 and
	// TLS-ALPN-01 challenges, on 127.0.0.1 (every name resolves there).
	HTTPPort, TLSPort int
	// CertValidity is how long issued certificates last; zero is
	// Pebble's default (90 days).
	CertValidity time.Duration
	// WithoutARI hides ACME Renewal Information from the directory, so
	// clients renew by expiry alone: at a known time rather than at one
	// picked at random in the window ARI suggests.
	WithoutARI bool
}

// Pebble is a running ACME server.
type Pebble struct {
	// DirectoryURL is the ACME directory (tls.acme.directory_url), served
	// through the counting proxy.
	DirectoryURL string
	// CAFile is a PEM file that trusts the directory's HTTPS listener
	// (tls.acme.ca_file).
	CAFile string
	// Roots holds Pebble's issuing root, to verify issued certificates.
	Roots *x509.CertPool
	// Intermediate is the common name of the issuing intermediate.
	Intermediate string

	orders atomic.Int32
}

// Orders is how many new orders (POST /order-plz) clients have sent.
func (p *Pebble) Orders() int { return int(p.orders.Load()) }

// Start runs Pebble with its DNS helper and the counting proxy until the
// test ends.
func Start(t testing.TB, o Options) *Pebble {
	t.Helper()
	pebbleBin := testtool.Find(t, "run "+Install, "pebble")
	challBin := testtool.Find(t, "run "+Install, "pebble-challtestsrv")
	dir := t.TempDir()

	// One certificate for Pebble's HTTPS listeners and the proxy's,
	// trusted as ca_file.
	certPEM, keyPEM := listenerPair(t)
	caFile := filepath.Join(dir, "listener.pem")
	keyFile := filepath.Join(dir, "listener.key")
	writeFile(t, caFile, certPEM)
	writeFile(t, keyFile, keyPEM)

	dnsAddr, challMgmt := testnet.FreeAddr(t), testnet.FreeAddr(t)
	startProcess(t, challBin, nil,
		"-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
		"-dnsserver", dnsAddr, "-management", challMgmt,
		"-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "")
	waitTCP(t, challMgmt)
	waitTCP(t, dnsAddr)

	listen, mgmt := testnet.FreeAddr(t), testnet.FreeAddr(t)
	pc := map[string]any{
		"listenAddress":                  listen,
		"managementListenAddress":        mgmt,
		"certificate":                    caFile,
		"privateKey":                     keyFile,
		"httpPort":                       o.HTTPPort,
		"tlsPort":                        o.TLSPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
		"retryAfter":                     map[string]int{"authz": 1, "order": 1},
		"keyAlgorithm":                   "ecdsa",
	}
	if o.CertValidity > 0 {
		pc["profiles"] = map[string]any{"default": map[string]any{
			"description":    "short-lived, for renewal tests",
			"validityPeriod": int(o.CertValidity / time.Second),
		}}
	}
	b, err := json.Marshal(map[string]any{"pebble": pc})
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "pebble-config.json")
	writeFile(t, cfgFile, b)
	// No sleep before validating, no deliberately bad nonces, and no
	// reuse of valid authorizations: every order is validated afresh.
	startProcess(t, pebbleBin, []string{"PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0"},
		"-config", cfgFile, "-dnsserver", dnsAddr)
	waitTCP(t, listen)
	waitTCP(t, mgmt)

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
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
	p := &Pebble{CAFile: caFile, Roots: x509.NewCertPool()}
	if !p.Roots.AppendCertsFromPEM(get("/roots/0")) {
		t.Fatal("pebble /roots/0 is not PEM")
	}
	block, _ := pem.Decode(get("/intermediates/0"))
	if block == nil {
		t.Fatal("pebble /intermediates/0 is not PEM")
	}
	inter, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	p.Intermediate = inter.Subject.CommonName

	keyPair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	p.DirectoryURL = "https://" + p.startProxy(t, listen, pool, keyPair, o.WithoutARI) + "/dir"
	return p
}

// startProxy serves Pebble's ACME API on another address, counting new
// orders. It keeps the client's Host header, from which Pebble builds
// every URL it hands out, so clients keep talking through the proxy.
func (p *Pebble) startProxy(t testing.TB, pebbleAddr string, pool *x509.CertPool, cert tls.Certificate, withoutARI bool) string {
	t.Helper()
	target := &url.URL{Scheme: "https", Host: pebbleAddr}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
		},
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		ModifyResponse: func(resp *http.Response) error {
			if !withoutARI || resp.Request.URL.Path != "/dir" {
				return nil
			}
			body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			if err != nil {
				return err
			}
			var d map[string]any
			if err := json.Unmarshal(body, &d); err != nil {
				return err
			}
			delete(d, "renewalInfo")
			if body, err = json.Marshal(d); err != nil {
				return err
			}
			resp.Body = io.NopCloser(bytes.NewReader(body))
			resp.ContentLength = int64(len(body))
			resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
			return nil
		},
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost && r.URL.Path == "/order-plz" {
				p.orders.Add(1)
			}
			rp.ServeHTTP(w, r)
		}),
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// startProcess runs a command until the test ends, with its output in the
// test log on failure.
func startProcess(t testing.TB, name string, env []string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	out := &testlog.Buffer{}
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
func waitTCP(t testing.TB, addr string) {
	t.Helper()
	if err := testnet.WaitListening(addr, 15*time.Second, nil); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// listenerPair makes a self-signed certificate for localhost and
// 127.0.0.1, for the HTTPS listeners of Pebble and the proxy.
func listenerPair(t testing.TB) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "pebble listener"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}
