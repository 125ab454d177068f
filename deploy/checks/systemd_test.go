package checks

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

const systemdInstall = "scripts/test installs it: apt-get install systemd"

// maxExposure is the highest `systemd-analyze security` exposure the unit
// may reach (0 = fully confined, 10 = unconfined; the unit scores 1.6).
const maxExposure = 2.0

// TestSystemdUnitVerifiesAndIsConfined checks deploy/systemd/moat.service
// with systemd's own tools (this machine runs no systemd to start it):
// systemd-analyze verify finds nothing to say, and its offline security
// analysis rates the sandbox.
func TestSystemdUnitVerifiesAndIsConfined(t *testing.T) {
	analyze := tool(t, "systemd-analyze", systemdInstall)
	data, err := os.ReadFile(filepath.Join(deployDir, "systemd", "moat.service"))
	if err != nil {
		t.Fatal(err)
	}
	// verify wants the binaries the unit runs to exist.
	unit := strings.ReplaceAll(string(data), "/usr/local/bin/moat", moat(t))
	path := filepath.Join(t.TempDir(), "moat.service")
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := run(t, "", nil, analyze, "verify", path); strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify:\n%s", out)
	}
	out := run(t, "", nil, analyze, "security", "--offline=yes", "--no-pager", path)
	m := regexp.MustCompile(`Overall exposure level for moat\.service: ([0-9.]+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	if level, _ := strconv.ParseFloat(m[1], 64); level > maxExposure {
		t.Errorf("exposure %.1f, want at most %.1f:\n%s", level, maxExposure, out)
	}
	for _, want := range []string{"SystemCallFilter=@system-service", "UMask=0077", "NoNewPrivileges=yes", "ProtectSystem=strict", "DynamicUser=yes"} {
		if !strings.Contains(unit, want+"\n") {
			t.Errorf("the unit lacks %s", want)
		}
	}
}
