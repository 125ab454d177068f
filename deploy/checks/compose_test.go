package checks

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

// TestComposeFileLoadsAndItsMoatYamlPassesMoatCheck loads compose.yaml with
// the Compose specification's own loader (the one docker compose uses:
// schema validation, interpolation, merge keys), as far as this machine,
// which has no Docker engine, allows; and checks the topology the file
// promises and its moat.yaml.
func TestComposeFileLoadsAndItsMoatYamlPassesMoatCheck(t *testing.T) {
	dir := filepath.Join(deployDir, "compose")
	path := filepath.Join(dir, "compose.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"MOAT_SECRET_KEY": "a-key-from-moat-keys-init", "MOAT_PG_PASSWORD": "from-dot-env"}
	details := types.ConfigDetails{
		WorkingDir:  dir,
		ConfigFiles: []types.ConfigFile{{Filename: path, Content: data}},
		Environment: env,
	}
	project, err := loader.LoadWithContext(context.Background(), details, func(o *loader.Options) {
		o.SetProjectName("moat", true)
		o.SkipResolveEnvironment = false
	})
	if err != nil {
		t.Fatalf("load %s: %v", path, err)
	}
	services := map[string]types.ServiceConfig{}
	for name, s := range project.Services {
		services[name] = s
	}
	for _, want := range []string{"moat-a", "moat-b", "app", "postgres", "redis"} {
		if _, ok := services[want]; !ok {
			t.Errorf("no service %s", want)
		}
	}
	published := map[string]bool{}
	for _, name := range []string{"moat-a", "moat-b"} {
		s := services[name]
		if s.User != "65532:65532" || !s.ReadOnly || len(s.CapDrop) != 1 || s.CapDrop[0] != "ALL" || !contains(s.SecurityOpt, "no-new-privileges:true") {
			t.Errorf("%s: user %q read_only %v cap_drop %v security_opt %v: want the image's confinement", name, s.User, s.ReadOnly, s.CapDrop, s.SecurityOpt)
		}
		if len(s.Volumes) != 0 {
			t.Errorf("%s: volumes %v: with the shared store moat writes nothing", name, s.Volumes)
		}
		if s.Environment["MOAT_SECRET_KEY"] == nil || *s.Environment["MOAT_SECRET_KEY"] != env["MOAT_SECRET_KEY"] {
			t.Errorf("%s: MOAT_SECRET_KEY is not the shared key", name)
		}
		for _, dep := range []string{"postgres", "redis"} {
			if s.DependsOn[dep].Condition != types.ServiceConditionHealthy {
				t.Errorf("%s: does not wait for %s to be healthy", name, dep)
			}
		}
		for _, p := range s.Ports {
			if published[p.Published] {
				t.Errorf("%s: host port %s published twice", name, p.Published)
			}
			published[p.Published] = true
		}
	}
	if app := services["app"]; len(app.Ports) != 0 {
		t.Errorf("the app publishes ports %v: only moat may reach it", app.Ports)
	}
	if pg := services["postgres"]; len(pg.Ports) != 0 {
		t.Errorf("PostgreSQL publishes ports %v", pg.Ports)
	}

	cfg, err := os.ReadFile(filepath.Join(dir, "moat.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	out := moatCheck(t, "compose-moat.yaml", cfg, "MOAT_PG_PASSWORD=from-dot-env")
	if !strings.Contains(out, "login password; allow group:staff") {
		t.Errorf("moat check output:\n%s", out)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
