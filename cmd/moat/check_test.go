package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files with the current output")

const goldenSeparator = "\n-- want --\n"

// TestCheckGolden runs `moat check` on every file in testdata/check: the
// config before the separator, the expected output (or errors) after it.
func TestCheckGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/check/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	t.Setenv("MOAT_TEST_SECRET", "s3cret")
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			input, want, ok := strings.Cut(string(data), goldenSeparator)
			if !ok {
				t.Fatalf("%s has no %q separator", file, strings.TrimSpace(goldenSeparator))
			}
			path := filepath.Join(t.TempDir(), "moat.yaml")
			if err := os.WriteFile(path, []byte(input), 0o600); err != nil {
				t.Fatal(err)
			}
			got := runCheck(t, path)
			got = strings.ReplaceAll(got, path, "moat.yaml")
			if *update {
				if err := os.WriteFile(file, []byte(input+goldenSeparator+got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if got != want {
				t.Errorf("moat check output differs from %s\n--- got ---\n%s--- want ---\n%s", file, got, want)
			}
		})
	}
}

// runCheck runs the check command in-process and returns what a person
// would see: the routing table, or the errors and the exit status.
func runCheck(t *testing.T, path string) string {
	t.Helper()
	cmd := newRootCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs([]string{"check", "-c", path})
	if err := cmd.Execute(); err != nil {
		out.WriteString(errorText(err))
		out.WriteString("exit status 1\n")
	}
	return out.String()
}
