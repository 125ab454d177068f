// Package testtool finds the programs tests run (Chromium, PostgreSQL,
// Pebble, nginx, testssl.sh, moat itself) and keeps the one rule for a
// missing one: on a developer's machine the test is skipped, under CI it
// fails, since scripts/test installs everything there.
package testtool

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// CI reports whether the tests run under CI (CI set, and not to "false"
// or "0"), where no test may skip for a missing tool.
func CI() bool {
	v := os.Getenv("CI")
	return v != "" && v != "false" && v != "0"
}

// Missing skips t, or fails it under CI, with the message format and args
// make; the message should say what to install.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if CI() {
		t.Fatalf(format, args...)
	}
	t.Skipf(format+" (skipped; CI=true makes this a failure)", args...)
}

// Find returns the path of the first of names found on PATH, in /usr/sbin
// (daemons such as nginx) or in $(go env GOPATH)/bin (where go install
// puts tools). When there is none it calls Missing, naming install, the
// step that provides the program.
func Find(t testing.TB, install string, names ...string) string {
	t.Helper()
	dirs := []string{"/usr/sbin"}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		for _, dir := range filepath.SplitList(strings.TrimSpace(string(out))) {
			dirs = append(dirs, filepath.Join(dir, "bin"))
		}
	}
	for _, name := range names {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
		for _, dir := range dirs {
			if p := filepath.Join(dir, name); isExecutable(p) {
				return p
			}
		}
	}
	Missing(t, "%s is not installed (%s)", names[0], install)
	return ""
}

func isExecutable(path string) bool {
	info, err := os.Stat(path)
	return err == nil && !info.IsDir() && info.Mode()&0o111 != 0
}

// Chromium returns the Chromium the browser tests drive: MOAT_CHROMIUM,
// else chromium as Find finds it.
func Chromium(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("MOAT_CHROMIUM"); p != "" {
		if _, err := os.Stat(p); err != nil {
			Missing(t, "MOAT_CHROMIUM: %v", err)
		}
		return p
	}
	return Find(t, "run scripts/test, or apt-get install chromium", "chromium")
}

// BuildMoat builds moat from the checkout at root into dir and returns the
// binary's path. Test binaries call it once, in TestMain: a build costs
// seconds.
func BuildMoat(root, dir string) (string, error) {
	bin := filepath.Join(dir, "moat")
	build := exec.Command("go", "build", "-o", bin, "./cmd/moat")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/moat: %w\n%s", err, out)
	}
	return bin, nil
}
