package security

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/testtool"
)

// mozillaIntermediate is the TLS 1.2 and 1.3 cipher suites of Mozilla's
// intermediate profile (Server Side TLS 5.7), by IANA name; it admits TLS
// 1.2 and 1.3 only.
var mozillaIntermediate = map[string]bool{
	"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256":       true,
	"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256":         true,
	"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384":       true,
	"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384":         true,
	"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": true,
	"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256":   true,
	"TLS_DHE_RSA_WITH_AES_128_GCM_SHA256":           true,
	"TLS_DHE_RSA_WITH_AES_256_GCM_SHA384":           true,
	"TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256":     true,
	"TLS_AES_128_GCM_SHA256":                        true,
	"TLS_AES_256_GCM_SHA384":                        true,
	"TLS_CHACHA20_POLY1305_SHA256":                  true,
}

// testsslBin finds testssl.sh (Debian installs it as testssl).
func testsslBin(t *testing.T) string {
	t.Helper()
	return testtool.Find(t, "run scripts/test, or apt-get install testssl.sh", "testssl", "testssl.sh")
}

// moat's HTTPS listener, scanned by testssl.sh: protocols, each cipher
// suite per protocol, and the HTTP headers (HSTS). Nothing below Mozilla's
// intermediate profile may be offered.
func TestTLSMeetsMozillaIntermediateByTestssl(t *testing.T) {
	t.Parallel() // mostly waiting: for testssl, or for another instance to learn of a change
	bin := testsslBin(t)
	a := startApp(t)
	m := startMoat(t, "", fmt.Sprintf("backends:\n  app: {url: %q}\nroutes:\n  - {host: localhost, backend: app, public: true}\n", a.URL))
	_, port, _ := net.SplitHostPort(m.HTTPS)
	out := filepath.Join(t.TempDir(), "testssl.json")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	start := time.Now()
	// -p protocols, -E every cipher suite per protocol (through its own
	// sockets, so suites this machine's OpenSSL lacks are tried too), -h
	// the response headers.
	cmd := exec.CommandContext(ctx, bin, "--quiet", "--color", "0", "--warnings", "off", "--ip", "127.0.0.1",
		"-p", "-E", "-h", "--jsonfile", out, "https://localhost:"+port+"/")
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	text, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("testssl: %v\n%s", err, text)
	}
	t.Logf("testssl took %s", time.Since(start).Round(time.Second))
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var findings []struct{ ID, Severity, Finding string }
	if err := json.Unmarshal(data, &findings); err != nil {
		t.Fatalf("testssl JSON: %v", err)
	}
	got := map[string]string{}
	var suites []string
	for _, f := range findings {
		got[f.ID] = f.Finding
		if strings.HasPrefix(f.ID, "cipher-") {
			fields := strings.Fields(f.Finding)
			proto := strings.Join(fields[:2], " ") // "TLS 1.2"
			iana := fields[len(fields)-1]
			suites = append(suites, proto+" "+iana)
			if proto != "TLS 1.2" && proto != "TLS 1.3" {
				t.Errorf("offered over %s: %s", proto, iana)
			}
			if !mozillaIntermediate[iana] {
				t.Errorf("offered outside Mozilla's intermediate profile: %s %s", proto, iana)
			}
		}
	}
	for id, want := range map[string]string{"SSLv2": "not offered", "SSLv3": "not offered", "TLS1": "not offered", "TLS1_1": "not offered", "TLS1_2": "offered", "TLS1_3": "offered"} {
		if !strings.HasPrefix(got[id], want) {
			t.Errorf("%s: testssl says %q, want %q", id, got[id], want)
		}
	}
	if len(suites) == 0 {
		t.Error("testssl listed no cipher suite")
	}
	if hsts := got["HSTS_time"]; !strings.Contains(hsts, "seconds") {
		t.Errorf("HSTS: testssl says %q, want a max-age", hsts)
	}
	t.Logf("protocols: SSLv2 %s, SSLv3 %s, TLS 1.0 %s, TLS 1.1 %s, TLS 1.2 %s, TLS 1.3 %s", got["SSLv2"], got["SSLv3"], got["TLS1"], got["TLS1_1"], got["TLS1_2"], got["TLS1_3"])
	t.Logf("suites: %s", strings.Join(suites, ", "))
	t.Logf("HSTS: %s", got["HSTS_time"])
}
