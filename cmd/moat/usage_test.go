package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/store"
)

// usageNow is the golden tests' now: Monday 2026-03-09, 12:00 UTC.
var usageNow = time.Date(2026, 3, 9, 12, 0, 0, 0, time.UTC)

// seedUsageStore writes a week of two routes' use into the store of the
// config at path.
func seedUsageStore(t *testing.T, path string) {
	t.Helper()
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), cfg.StoreDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	at := func(daysAgo int, hour, minute int) time.Time {
		d := usageNow.AddDate(0, 0, -daysAgo)
		return time.Date(d.Year(), d.Month(), d.Day(), hour, minute, 0, 0, time.UTC)
	}
	b := &store.UsageBatch{
		SignIns: []store.UsageSignIns{
			{Route: "dash.example.com", Day: at(0, 9, 0), Provider: "google", Count: 2},
			{Route: "dash.example.com", Day: at(2, 9, 0), Provider: "google", Count: 1},
			{Route: "partner.example.com", Day: at(1, 9, 0), Provider: "password", Count: 1},
			{Route: "dash.example.com", Day: at(20, 9, 0), Provider: "google", Count: 4},
		},
		Sessions: []store.UsageSession{
			{Route: "dash.example.com", Key: "a1", Email: "alice@example.com", Provider: "google", Start: at(0, 9, 0), End: at(0, 11, 30), Connected: 2*time.Hour + 20*time.Minute, ActiveMinutes: 48},
			{Route: "dash.example.com", Key: "b1", Email: "bob@example.com", Provider: "google", Start: at(0, 10, 5), End: at(0, 10, 17), Connected: 12 * time.Minute, ActiveMinutes: 9},
			{Route: "dash.example.com", Key: "a0", Email: "alice@example.com", Provider: "google", Start: at(2, 8, 0), End: at(2, 8, 45), Connected: 40 * time.Minute, ActiveMinutes: 30},
			{Route: "partner.example.com", Key: "y1", Email: "+1@customer-a.example", Provider: "password", Start: at(1, 14, 0), End: at(1, 14, 3), Connected: 3 * time.Minute, ActiveMinutes: 2},
			{Route: "dash.example.com", Key: "old", Email: "carol@example.com", Provider: "google", Start: at(20, 9, 0), End: at(20, 10, 0), ActiveMinutes: 60},
		},
	}
	if err := st.AddUsage(context.Background(), b); err != nil {
		t.Fatal(err)
	}
}

// TestUsageGolden runs `moat usage` on a seeded store for every file in
// testdata/usage: the command line's arguments on the first line, the
// expected output (or error) after the separator.
func TestUsageGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/usage/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "moat.yaml")
	yaml := "data_dir: " + filepath.Join(dir, "data") + `
tls: {self_signed: true}
backends:
  app: {url: "http://127.0.0.1:8501"}
routes:
  - {host: dash.example.com, backend: app, login: [password], allow: ["group:staff"]}
`
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	seedUsageStore(t, path)
	clock = func() time.Time { return usageNow }
	t.Cleanup(func() { clock = time.Now })
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
			args := strings.Fields(strings.SplitN(input, "\n", 2)[0])
			cmd := newRootCommand()
			var out bytes.Buffer
			cmd.SetOut(&out)
			cmd.SetErr(&out)
			cmd.SetArgs(append([]string{"usage", "-c", path}, args...))
			if err := cmd.Execute(); err != nil {
				out.WriteString(errorText(err))
				out.WriteString("exit status 1\n")
			}
			got := out.String()
			if *update {
				if err := os.WriteFile(file, []byte(input+goldenSeparator+got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if got != want {
				t.Errorf("moat usage %s differs from %s\n--- got ---\n%s--- want ---\n%s", strings.Join(args, " "), file, got, want)
			}
		})
	}
}
