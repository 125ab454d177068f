package gcpimport

import (
	"bufio"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/policy"
	"github.com/moat-dev/moat/internal/policy/wafhook"
	"github.com/moat-dev/moat/internal/ratelimit"
	"gopkg.in/yaml.v3"
)

var update = flag.Bool("update", false, "rewrite the golden files with the current output")

// TestImportGolden imports every folder of testdata and compares the
// result with the folder's want.golden: the moat.yaml written, or the
// errors. The folder's vars file, if any, holds --var NAME=VALUE lines. A
// configuration written must pass what `moat check` checks, and must build
// its WAF too.
//
//   - seed: the Terraform of the document moat grew from, placeholders
//     filled in (docker-build.sh is its deploy script).
//   - seed-verbatim: the same, placeholders as the document left them.
//   - paths-and-members: host and path rules, Cloud Run v2, IAM members of
//     every kind, a public backend, a bucket, locals and terraform.tfvars.
//   - armor: Cloud Armor rules of every kind, and a --var.
//   - unset-variable: a host from a variable with no value.
func TestImportGolden(t *testing.T) {
	dirs, err := filepath.Glob("testdata/*")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	t.Setenv("GOOGLE_CLIENT_ID", "id.apps.googleusercontent.com")
	t.Setenv("GOOGLE_CLIENT_SECRET", "secret")
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			res, err := Import(dir, Options{Vars: readVars(t, filepath.Join(dir, "vars"))})
			var got string
			if err != nil {
				got = "error:\n" + err.Error() + "\n"
			} else {
				got = string(res.YAML)
				checkLikeMoatCheck(t, res.YAML)
			}
			golden := filepath.Join(dir, "want.golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("import of %s differs from %s (go test -update rewrites it)\n--- got ---\n%s", dir, golden, got)
			}
		})
	}
}

func readVars(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	vars := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			vars[k] = v
		}
	}
	return vars
}

// checkLikeMoatCheck loads the configuration as `moat check` does (every
// validation, expressions compiled), with no warning, and builds its
// policies with their WAF as `moat serve` does.
func checkLikeMoatCheck(t *testing.T, yaml []byte) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "moat.yaml")
	if err := os.WriteFile(path, yaml, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("moat check refuses the imported configuration:\n%v", err)
	}
	if err := policy.Check(cfg); err != nil {
		t.Fatalf("moat check refuses the imported policies:\n%v", err)
	}
	if len(cfg.Warnings) > 0 {
		t.Errorf("moat check warns about the imported configuration:\n%s", strings.Join(cfg.Warnings, "\n"))
	}
	if _, err := policy.New(cfg, policy.Options{Counter: ratelimit.NewMemory(1), NewInspector: wafhook.NewInspector}); err != nil {
		t.Fatalf("the imported policies do not build: %v", err)
	}
}

func TestImportRefusesWhatIsNotALoadBalancer(t *testing.T) {
	dir := t.TempDir()
	if _, err := Import(dir, Options{}); err == nil || !strings.Contains(err.Error(), "has no .tf files") {
		t.Errorf("empty folder: err = %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.tf"), []byte(`resource "google_storage_bucket" "b" { name = "b" }`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Import(dir, Options{}); err == nil || !strings.Contains(err.Error(), "has no google_compute_url_map") {
		t.Errorf("no URL map: err = %v", err)
	}
	if _, err := Import("testdata/seed", Options{Vars: map[string]string{"nope": "x"}}); err == nil || !strings.Contains(err.Error(), `--var nope: no variable "nope" is declared`) {
		t.Errorf("unknown --var: err = %v", err)
	}
}

func TestAppURLOverridesThePortFound(t *testing.T) {
	res, err := Import("testdata/seed", Options{AppURL: "http://127.0.0.1:9000"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(res.YAML), `url: "http://127.0.0.1:9000"`) {
		t.Errorf("the backend does not use the given URL:\n%s", res.YAML)
	}
	if _, err := Import("testdata/seed", Options{AppURL: "127.0.0.1:9000"}); err == nil || !strings.Contains(err.Error(), "write where the app listens") {
		t.Errorf("a URL without a scheme: err = %v", err)
	}
}

// FuzzImport feeds arbitrary Terraform to the import: it may refuse it,
// but must not panic, and what it writes must be YAML moat can parse.
func FuzzImport(f *testing.F) {
	for _, dir := range []string{"testdata/seed", "testdata/armor", "testdata/paths-and-members"} {
		src, err := os.ReadFile(filepath.Join(dir, "main.tf"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(src))
	}
	f.Fuzz(func(t *testing.T, src string) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "main.tf"), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		res, err := Import(dir, Options{})
		if err != nil {
			return
		}
		var doc yaml.Node
		if err := yaml.Unmarshal(res.YAML, &doc); err != nil {
			t.Fatalf("the import wrote YAML that does not parse: %v\n%s", err, res.YAML)
		}
	})
}
