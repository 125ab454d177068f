package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/testnet"
)

// testAppArg makes the test binary a backend app (see TestMain): it
// answers every request with what it knows, as JSON.
const testAppArg = "moat-test-app"

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == testAppArg {
		runTestApp(os.Args[2:])
		return
	}
	os.Exit(m.Run())
}

// appReport is what the test app answers.
type appReport struct {
	PID      int    `json:"pid"`
	Args     string `json:"args"`
	Issuer   string `json:"issuer"`
	JWKSURL  string `json:"jwks_url"`
	Audience string `json:"audience"`
	// JWKS is the status and start of what MOAT_JWKS_URL served the app.
	JWKS string `json:"jwks"`
}

func runTestApp(args []string) {
	ln, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("PORT"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "test app:", err)
		os.Exit(1)
	}
	_ = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rep := appReport{PID: os.Getpid(), Args: strings.Join(args, " "), Issuer: os.Getenv("MOAT_ISSUER"),
			JWKSURL: os.Getenv("MOAT_JWKS_URL"), Audience: os.Getenv("MOAT_AUDIENCE")}
		if resp, err := http.Get(rep.JWKSURL); err == nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 64))
			resp.Body.Close()
			rep.JWKS = resp.Status + " " + string(b)
		}
		_ = json.NewEncoder(w).Encode(rep)
	}))
}

// appConfig runs the test app (with an extra argument, if any) for the
// backend; its verbs take the data dir and the backend URL, as startMoat
// fills them.
func appConfig(extra string) string {
	argv := []string{os.Args[0], testAppArg}
	if extra != "" {
		argv = append(argv, extra)
	}
	cmd, _ := json.Marshal(argv)
	return `
server:
  https_addr: "127.0.0.1:0"
  http_addr: "127.0.0.1:0"
  internal_addr: "127.0.0.1:0"
data_dir: %q
tls: {self_signed: true}
backends:
  app:
    url: %q
    command: ` + string(cmd) + `
routes:
  - {host: dash.example.com, backend: app, public: true}
`
}

func (m *testMoat) appReport(t *testing.T) appReport {
	t.Helper()
	_, body := get(t, m.client(), "https://dash.example.com/")
	var rep appReport
	if err := json.Unmarshal([]byte(body), &rep); err != nil {
		t.Fatalf("the app's answer %q: %v", body, err)
	}
	return rep
}

// TestABackendCommandRunsForTheLifeOfMoat: moat starts the backend's app
// before it reports ready, tells it where its keys are, keeps it across a
// reload that leaves its command alone, restarts it when the command
// changes, and stops it with moat.
func TestABackendCommandRunsForTheLifeOfMoat(t *testing.T) {
	url := "http://" + testnet.FreeAddr(t)
	m := startMoat(t, url, appConfig(""))

	first := m.appReport(t)
	if first.PID == 0 || first.Args != "" {
		t.Fatalf("the app answered %+v", first)
	}
	if want := "http://" + m.addrs.Internal + "/_moat/jwks.json"; first.JWKSURL != want {
		t.Errorf("MOAT_JWKS_URL = %q, want the internal listener's %s", first.JWKSURL, want)
	}
	if !strings.HasPrefix(first.JWKS, `200 OK {"keys":[`) {
		t.Errorf("the app fetched %q from MOAT_JWKS_URL, want moat's JWKS", first.JWKS)
	}
	if first.Issuer != "https://dash.example.com" || first.Audience != "dash.example.com" {
		t.Errorf("MOAT_ISSUER %q, MOAT_AUDIENCE %q", first.Issuer, first.Audience)
	}

	// A reload that changes something else keeps the app.
	write := func(yaml string) {
		t.Helper()
		if err := os.WriteFile(m.path, []byte(fmt.Sprintf(yaml, m.server.world.Load().cfg.DataDir, url)), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := m.server.Reload(context.Background(), "test"); err != nil {
			t.Fatal(err)
		}
	}
	write(strings.Replace(appConfig(""), "public: true}", "public: true, title: Reports}", 1))
	if again := m.appReport(t); again.PID != first.PID {
		t.Errorf("a reload that kept the command restarted the app (pid %d → %d)", first.PID, again.PID)
	}

	// A changed command restarts it.
	write(appConfig("v2"))
	var second appReport
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := m.client().Get("https://dash.example.com/"); err == nil {
			_ = json.NewDecoder(resp.Body).Decode(&second)
			resp.Body.Close()
			if second.Args == "v2" {
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if second.Args != "v2" || second.PID == first.PID {
		t.Fatalf("after the command changed the app is %+v, want a new process with v2", second)
	}
	if syscall.Kill(first.PID, 0) == nil {
		t.Errorf("the first app (pid %d) still runs", first.PID)
	}

	// Stopping moat stops the app.
	m.cancel()
	select {
	case err := <-m.done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("moat did not stop")
	}
	m.done <- nil // for the cleanup's wait
	if syscall.Kill(second.PID, 0) == nil {
		t.Errorf("the app (pid %d) outlived moat", second.PID)
	}
}

func TestAReloadWithABrokenCommandKeepsTheRunningApp(t *testing.T) {
	url := "http://" + testnet.FreeAddr(t)
	m := startMoat(t, url, appConfig(""))
	before := m.appReport(t)
	broken := strings.Replace(appConfig("v2"), "routes:", "    command_dir: /nonexistent/moat-dir\nroutes:", 1)
	if err := os.WriteFile(m.path, []byte(fmt.Sprintf(broken, m.server.world.Load().cfg.DataDir, url)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := m.server.Reload(context.Background(), "test"); err == nil || !strings.Contains(err.Error(), "is not a directory") {
		t.Errorf("Reload = %v, want the bad command_dir refused", err)
	}
	if after := m.appReport(t); after.PID != before.PID || after.Args != "" {
		t.Errorf("after a refused reload the app is %+v, want the first one (pid %d) still", after, before.PID)
	}
}
