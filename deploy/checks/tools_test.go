package checks

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	// deployDir is deploy/, repoRoot the repository above it.
	deployDir, repoRoot string
	// workDir is the package's temporary directory.
	workDir string
)

func TestMain(m *testing.M) {
	// go test runs a test binary in its package's folder (whatever
	// -trimpath did to the file names the binary knows).
	wd, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, "checks:", err)
		os.Exit(1)
	}
	deployDir = filepath.Dir(wd)
	repoRoot = filepath.Dir(deployDir)
	dir, err := os.MkdirTemp("", "moat-deploy-checks-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "checks:", err)
		os.Exit(1)
	}
	workDir = dir
	// terraform reads a CLI configuration; an empty one keeps a missing
	// ~/.terraformrc from warning on every command.
	rc := filepath.Join(workDir, "terraformrc")
	if err := os.WriteFile(rc, nil, 0o600); err == nil {
		os.Setenv("TF_CLI_CONFIG_FILE", rc)
	}
	code := m.Run()
	_ = os.RemoveAll(workDir)
	os.Exit(code)
}

func inCI() bool {
	v := os.Getenv("CI")
	return v != "" && v != "false" && v != "0"
}

// skipOrFail skips on a developer's machine and fails under CI=true.
func skipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if inCI() {
		t.Fatalf(format, args...)
	}
	t.Skipf(format+" (skipped; CI=true makes this a failure)", args...)
}

// tool returns the path of a command, or skips (fails under CI) naming
// the install step that provides it.
func tool(t testing.TB, name, install string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		skipOrFail(t, "%s is not installed (%s)", name, install)
	}
	return p
}

// run runs a command and returns its combined output, failing the test on
// an error.
func run(t testing.TB, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

var moatBin struct {
	once sync.Once
	path string
	err  error
}

// moat returns the moat binary built from this checkout (once per run).
func moat(t testing.TB) string {
	t.Helper()
	moatBin.once.Do(func() {
		moatBin.path = filepath.Join(workDir, "moat")
		cmd := exec.Command("go", "build", "-o", moatBin.path, "./cmd/moat")
		cmd.Dir = repoRoot
		if out, err := cmd.CombinedOutput(); err != nil {
			moatBin.err = fmt.Errorf("go build ./cmd/moat: %v\n%s", err, out)
		}
	})
	if moatBin.err != nil {
		t.Fatal(moatBin.err)
	}
	return moatBin.path
}

// moatCheck runs `moat check` on the configuration in data (with env set)
// and returns its output; a configuration moat refuses fails the test.
func moatCheck(t testing.TB, name string, data []byte, env ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(moat(t), "check", "-c", path)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("moat check %s: %v\n%s\n--- %s ---\n%s", name, err, out, name, data)
	}
	return string(out)
}

// writeSelfSigned writes a throwaway self-signed certificate and its key
// as PEM files.
func writeSelfSigned(t testing.TB, certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "dash.example.com"},
		DNSNames: []string{"dash.example.com"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}), 0o600); err != nil {
		t.Fatal(err)
	}
}
