package e2e

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestExampleConfigPassesMoatCheck keeps examples/streamlit-dashboard's
// moat.yaml valid as the configuration schema evolves.
func TestExampleConfigPassesMoatCheck(t *testing.T) {
	if moatBuildErr != nil {
		t.Fatalf("moat binary: %v", moatBuildErr)
	}
	cmd := exec.Command(moatBin, "check", "-c", "moat.yaml")
	cmd.Dir = filepath.Join(repoRoot, "examples", "streamlit-dashboard")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("moat check -c examples/streamlit-dashboard/moat.yaml: %v\n%s", err, out)
	}
	for _, want := range []string{"localhost", "dashboard", "http://127.0.0.1:8501", "public"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("moat check output lacks %q:\n%s", want, out)
		}
	}
}
