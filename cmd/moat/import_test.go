package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runMoat runs the CLI in-process with args alone.
func runMoat(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCommand()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

func mustRunMoat(t *testing.T, args ...string) string {
	t.Helper()
	out, err := runMoat(t, args...)
	if err != nil {
		t.Fatalf("moat %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// seedTerraform is the seed's Terraform, placeholders filled in; its
// import is golden-tested in internal/gcpimport.
const seedTerraform = "../../internal/gcpimport/testdata/seed"

func TestImportGCPWritesTheFileAndChecksIt(t *testing.T) {
	t.Setenv("GOOGLE_CLIENT_ID", "id.apps.googleusercontent.com")
	t.Setenv("GOOGLE_CLIENT_SECRET", "secret")
	out := filepath.Join(t.TempDir(), "moat.yaml")
	got := mustRunMoat(t, "import", "gcp", seedTerraform, "-o", out)
	for _, want := range []string{
		"wrote " + out + "\n",
		"moat check: the configuration is valid (2 routes, 1 backends)\n",
		"  - bring the Identity Platform users of dash-partner.example.com over with their passwords",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	written, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	golden, err := os.ReadFile(filepath.Join(seedTerraform, "want.golden"))
	if err != nil {
		t.Fatal(err)
	}
	// The header names the folder as given; the rest is the same.
	body := func(b []byte) string { return string(b[bytes.Index(b, []byte("\nserver:")):]) }
	if body(written) != body(golden) {
		t.Errorf("the file differs from the package's golden output:\n%s", written)
	}
	// moat check itself agrees.
	if check := runCheck(t, out); !strings.Contains(check, "configuration is valid (2 routes, 1 backends)") {
		t.Errorf("moat check:\n%s", check)
	}

	// The file is not overwritten by accident.
	if _, err := runMoat(t, "import", "gcp", seedTerraform, "-o", out); err == nil || !strings.Contains(err.Error(), "exists; choose another file with -o, or pass --force") {
		t.Errorf("second import: err = %v", err)
	}
	mustRunMoat(t, "import", "gcp", seedTerraform, "-o", out, "--force")
}

func TestImportGCPSaysWhichSecretsAreMissing(t *testing.T) {
	for _, name := range []string{"GOOGLE_CLIENT_ID", "GOOGLE_CLIENT_SECRET"} {
		t.Setenv(name, "") // restored after the test
		os.Unsetenv(name)
	}
	out := filepath.Join(t.TempDir(), "moat.yaml")
	got := mustRunMoat(t, "import", "gcp", seedTerraform, "-o", out, "--var", "oauth_domain=sso.example.net")
	if !strings.Contains(got, "moat check passes once GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET are set") {
		t.Errorf("output:\n%s", got)
	}
	written, _ := os.ReadFile(out)
	if !strings.Contains(string(written), `- host: "sso.example.net"`) {
		t.Errorf("--var did not reach the routes:\n%s", written)
	}
}

func TestImportGCPToStandardOutput(t *testing.T) {
	got := mustRunMoat(t, "import", "gcp", seedTerraform, "-o", "-")
	if !strings.HasPrefix(got, "# Written by `moat import gcp`") || strings.Contains(got, "wrote ") {
		t.Errorf("stdout is not the configuration alone:\n%s", got)
	}
	if _, err := runMoat(t, "import", "gcp", seedTerraform, "--var", "novalue"); err == nil || !strings.Contains(err.Error(), `--var "novalue": write NAME=VALUE`) {
		t.Errorf("bad --var: err = %v", err)
	}
}
