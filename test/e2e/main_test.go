package e2e

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/store/storetest"
	"github.com/moat-dev/moat/internal/testtool"
)

// Shared by every test in the package: built and started once in TestMain,
// because a Go build and a Streamlit start each cost seconds.
var (
	// moatBin is the moat binary built from this checkout.
	moatBin string
	// moatBuildErr is why moatBin could not be built, if it could not.
	moatBuildErr error
	// dashboard is the shared Streamlit process running the example app.
	dashboard *streamlitApp
	// dashboardErr is why the shared Streamlit could not start.
	dashboardErr error
	// dashboardOnce starts the shared Streamlit on first use, so a run of
	// tests that need none does not pay for it.
	dashboardOnce sync.Once
	// repoRoot is the module root, two folders up from this file.
	repoRoot string
	// workDir is the package's temporary directory, removed after the run.
	workDir string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	flag.Parse()
	// go test runs a test binary in its package's folder (whatever
	// -trimpath did to the file names the binary knows).
	wd, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	repoRoot = filepath.Join(wd, "..", "..")

	tmp, err := os.MkdirTemp("", "moat-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(tmp)

	start := time.Now()
	moatBin, moatBuildErr = testtool.BuildMoat(repoRoot, tmp)
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "e2e: go build ./cmd/moat took %s\n", time.Since(start).Round(time.Millisecond))
	}

	workDir = tmp
	// Tests that share a PostgreSQL (several instances) get it from
	// storetest, which starts one server for the run.
	defer storetest.Stop()
	defer func() {
		if dashboard != nil {
			dashboard.stop()
		}
	}()
	// Tests that share a PostgreSQL (storetest.Postgres) start one server
	// for the run; stop it after the last.
	defer storetest.Stop()
	return m.Run()
}
