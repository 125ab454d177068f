package e2e

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/moat-dev/moat/internal/testlog"
	"github.com/moat-dev/moat/internal/testnet"
	"github.com/moat-dev/moat/internal/testtool"
)

// moatRun is a running `moat run -- COMMAND`.
type moatRun struct {
	URL  string
	Cert *x509.Certificate
	// OneTime is the administrator's one-time password it printed.
	OneTime string
	proc    *child
	out     *testlog.Buffer
}

var oneTimeLine = regexp.MustCompile(`sign in as admin@moat\.test with the one-time password\n\s+(\S+)\n`)

// startMoatRun runs `moat run` with argv in dir, on a free port of
// localhost, and waits until it says it serves (after the app answered).
func startMoatRun(t *testing.T, dir string, argv ...string) *moatRun {
	t.Helper()
	return startLocalMoat(t, dir, "run", append([]string{"--"}, argv...)...)
}

// startLocalMoat runs `moat SUBCOMMAND --addr localhost:PORT --data-dir
// TMP ARGS…` (run, or demo) in dir and waits until it prints the one-time
// password, which it does once the app answers.
func startLocalMoat(t *testing.T, dir, sub string, rest ...string) *moatRun {
	t.Helper()
	if moatBuildErr != nil {
		t.Fatalf("moat binary: %v", moatBuildErr)
	}
	if out, err := exec.Command(pythonBin(), "-c", "import streamlit, jwt").CombinedOutput(); err != nil {
		testtool.Missing(t, "streamlit and PyJWT are not installed for %s (run scripts/test, or pip install -r examples/streamlit-dashboard/requirements.txt): %v: %s", pythonBin(), err, out)
	}
	port := testnet.FreePort(t)
	home := t.TempDir()
	args := append([]string{sub, "--addr", fmt.Sprintf("localhost:%d", port), "--data-dir", t.TempDir()}, rest...)
	cmd := exec.Command(moatBin, args...)
	cmd.Dir = dir
	cmd.Env = append(cmd.Environ(), "HOME="+home, "PYTHONUNBUFFERED=1")
	r := &moatRun{URL: fmt.Sprintf("https://localhost:%d", port), out: &testlog.Buffer{}}
	var err error
	if r.proc, err = startChild(cmd, r.out); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.proc.stop(30 * time.Second); err != nil {
			t.Errorf("moat run did not stop cleanly: %v", err)
		}
		if t.Failed() {
			t.Logf("moat run output:\n%s", r.out)
		}
	})
	deadline := time.Now().Add(150 * time.Second)
	for {
		if m := oneTimeLine.FindStringSubmatch(r.out.String()); m != nil {
			r.OneTime = m[1]
			break
		}
		select {
		case <-r.proc.done:
			t.Fatalf("moat %s exited: %v\n%s", sub, r.proc.err, r.out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("moat %s did not serve within 150 s:\n%s", sub, r.out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	cert, err := localhostCert(fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	r.Cert = cert
	return r
}

// appPIDs lists the pids moat run logged starting the app with, in order.
func (r *moatRun) appPIDs() []int {
	var pids []int
	sc := bufio.NewScanner(strings.NewReader(r.out.String()))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var rec struct {
			Msg string `json:"msg"`
			PID int    `json:"pid"`
		}
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "started the app" {
			pids = append(pids, rec.PID)
		}
	}
	return pids
}

// captions returns the dashboard's captions in the main area.
const captionsJS = `[...document.querySelectorAll('[data-testid="stMain"] [data-testid="stCaptionContainer"]')].map(e => e.textContent.trim()).join("\n")`

// demoAdminCaption is how the example dashboard greets the administrator
// `moat demo` and `moat run` make (its display name from X-Moat-User-Name).
const demoAdminCaption = "Signed in as Demo administrator (admin@moat.test)"

// waitCaption polls the page's captions until one starts with prefix.
func waitCaption(t *testing.T, ctx context.Context, prefix string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var all string
	for time.Now().Before(deadline) {
		all, _ = chromedp.Run(ctx, chromedp.Evaluate[string](captionsJS))
		for _, c := range strings.Split(all, "\n") {
			if strings.HasPrefix(c, prefix) {
				return c
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	screenshot(t, ctx, "no-caption")
	t.Fatalf("no caption starting %q; captions: %q", prefix, all)
	return ""
}

// TestMoatRunServesTheSeedsStreamlitAppAndRestartsItAfterAKill is issue
// 14's `moat run -- streamlit run app.py` on the seed's dashboard in
// Chromium: the administrator signs in (changing the one-time password),
// Streamlit shows who they are from st.user and has checked moat's
// assertion, the four modes switch, and when the app is killed moat starts
// it again and the page works again.
func TestMoatRunServesTheSeedsStreamlitAppAndRestartsItAfterAKill(t *testing.T) {
	t.Parallel()
	r := startMoatRun(t, filepath.Join(repoRoot, "examples", "streamlit-dashboard"),
		pythonBin(), "-m", "streamlit", "run", "--server.fileWatcherType", "none", "app.py")
	ctx := newBrowser(t, r.Cert)

	const passphrase = "a long passphrase for the demo administrator"
	within(t, ctx, 90*time.Second, "sign in with the one-time password",
		chromedp.Navigate(r.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`input[name=email]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=email]`), "admin@moat.test"),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), r.OneTime),
		chromedp.Submit(chromedp.CSS(`input[name=password]`)),
		chromedp.WaitVisible(chromedp.CSS(`input[name=new]`)))
	within(t, ctx, 90*time.Second, "choose a password and reach the dashboard",
		chromedp.SendKeys(chromedp.CSS(`input[name=current]`), r.OneTime),
		chromedp.SendKeys(chromedp.CSS(`input[name=new]`), passphrase),
		chromedp.SendKeys(chromedp.CSS(`input[name=confirm]`), passphrase),
		chromedp.Submit(chromedp.CSS(`input[name=confirm]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="stRadioOption"]`)))
	waitRendered(t, ctx, dashboardModes[0].kind, 60*time.Second)

	if got := waitCaption(t, ctx, "Signed in as"); got != demoAdminCaption {
		t.Errorf("caption %q, want %q: st.user.name and st.user.email from moat's headers", got, demoAdminCaption)
	}
	if got := waitCaption(t, ctx, "Identity "); got != "Identity verified: X-Moat-Assertion signed by https://localhost" {
		t.Errorf("caption %q, want the assertion verified with PyJWT against MOAT_JWKS_URL", got)
	}
	if got := waitCaption(t, ctx, "Groups:"); !strings.Contains(got, "demo") {
		t.Errorf("caption %q, want st.user.groups to hold the administrator's groups", got)
	}
	screenshot(t, ctx, "signed-in")
	for _, mode := range dashboardModes[1:] { // ends on the table
		selectMode(t, ctx, mode.label)
		waitRendered(t, ctx, mode.kind, 30*time.Second)
	}

	pids := r.appPIDs()
	if len(pids) != 1 {
		t.Fatalf("moat run logged %d app starts before the kill, want 1: %v", len(pids), pids)
	}
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	deadline := time.Now().Add(60 * time.Second)
	for len(r.appPIDs()) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("moat did not start the app again within 60 s of the kill")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if again := r.appPIDs()[1]; again == pids[0] {
		t.Fatalf("the restarted app has the killed pid %d", again)
	}
	// Streamlit's page reconnects by itself once the app answers again,
	// and the new app draws it again; then the radio works as before.
	for _, mode := range []int{0, 1} {
		selectMode(t, ctx, dashboardModes[mode].label)
		waitRendered(t, ctx, dashboardModes[mode].kind, 90*time.Second)
	}
	t.Logf("the page switched modes again %s after the kill", time.Since(killed).Round(time.Millisecond))
	if got := waitCaption(t, ctx, "Signed in as"); got != demoAdminCaption {
		t.Errorf("after the restart the caption is %q", got)
	}
	screenshot(t, ctx, "after-restart")
}

// TestDemoStreamlitRunsTheBuiltInExampleWithStreamlit: `moat demo
// --streamlit` needs no checkout: it writes the example dashboard from the
// binary and runs it with Streamlit behind sign-in.
func TestDemoStreamlitRunsTheBuiltInExampleWithStreamlit(t *testing.T) {
	t.Parallel()
	r := startLocalMoat(t, t.TempDir(), "demo", "--streamlit")
	if !strings.Contains(r.out.String(), "moat is serving Streamlit dashboard: open "+r.URL+"/") {
		t.Errorf("moat demo --streamlit does not say where it serves:\n%s", r.out)
	}
	if !strings.Contains(r.out.String(), `"command":"`+pythonBin()+` -m streamlit run --server.address 127.0.0.1`) {
		t.Errorf("moat demo --streamlit did not run Streamlit with moat's flags:\n%s", r.out)
	}
	ctx := newBrowser(t, r.Cert)
	within(t, ctx, 60*time.Second, "open the dashboard",
		chromedp.Navigate(r.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`input[name=email]`)))
	heading, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('h1').textContent`))
	if !strings.Contains(heading, "Streamlit dashboard") {
		t.Errorf("login page heading %q, want the demo's title", heading)
	}
}

// TestMoatRunWithAConfigRunsTheCommandForItsBackend: with -c FILE, moat
// serves FILE and runs the command on the port of the backend's url (the
// app reads it from PORT); SIGTERM to moat stops the app too.
func TestMoatRunWithAConfigRunsTheCommandForItsBackend(t *testing.T) {
	t.Parallel()
	if moatBuildErr != nil {
		t.Fatalf("moat binary: %v", moatBuildErr)
	}
	dir := t.TempDir()
	https, internal, app := testnet.FreePort(t), testnet.FreePort(t), testnet.FreePort(t)
	cfg := filepath.Join(dir, "moat.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`server:
  https_addr: "127.0.0.1:%d"
  http_addr: "off"
  internal_addr: "127.0.0.1:%d"
data_dir: %q
tls: {self_signed: true}
backends:
  files: {url: "http://127.0.0.1:%d"}
routes:
  - {host: localhost, backend: files, public: true}
`, https, internal, filepath.Join(dir, "data"), app)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("served by the app moat runs\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(moatBin, "run", "-c", cfg, "--", "sh", "-c", `exec "$0" -m http.server "$PORT" --bind 127.0.0.1`, pythonBin())
	cmd.Dir = dir
	out := &testlog.Buffer{}
	proc, err := startChild(cmd, out)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proc.stop(20 * time.Second) })
	m := &Moat{HTTPSAddr: fmt.Sprintf("127.0.0.1:%d", https), proc: proc, logs: out}
	if err := waitHTTP(fmt.Sprintf("http://127.0.0.1:%d/healthz", internal), proc, 60*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	cert, err := localhostCert(m.HTTPSAddr)
	if err != nil {
		t.Fatal(err)
	}
	m.Cert = cert
	var body string
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && !strings.Contains(body, "served by the app") {
		if resp, err := m.Client().Get(fmt.Sprintf("https://localhost:%d/hello.txt", https)); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(body, "served by the app moat runs") {
		t.Fatalf("through moat the app answered %q\n%s", body, out)
	}
	pids := (&moatRun{out: out}).appPIDs()
	if len(pids) != 1 {
		t.Fatalf("app starts logged: %v", pids)
	}
	if err := proc.stop(20 * time.Second); err != nil {
		t.Errorf("moat run did not exit cleanly on SIGTERM: %v", err)
	}
	if syscall.Kill(pids[0], 0) == nil {
		t.Errorf("the app (pid %d) outlived moat run", pids[0])
	}

	// A file with several backends needs --backend.
	one, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	two := strings.Replace(string(one), "backends:\n", "backends:\n  other: {url: \"http://127.0.0.1:1\"}\n", 1)
	if err := os.WriteFile(cfg, []byte(two), 0o600); err != nil {
		t.Fatal(err)
	}
	msg, err := exec.Command(moatBin, "run", "-c", cfg, "--", "true").CombinedOutput()
	if err == nil || !strings.Contains(string(msg), "has 2 backends (files, other): say which one the command serves with --backend") {
		t.Errorf("moat run -c with two backends: %v\n%s", err, msg)
	}
}
