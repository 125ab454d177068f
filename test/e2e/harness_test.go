package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/moat-dev/moat/internal/testlog"
	"github.com/moat-dev/moat/internal/testnet"
	"github.com/moat-dev/moat/internal/testtool"
)

// child is a process a test started: moat or Streamlit.
type child struct {
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited
	err     error         // its exit error, once done is closed
	once    sync.Once
	stopErr error
}

// startChild starts cmd in its own process group, killed with the test
// binary if that dies first, with stdout and stderr going to out.
func startChild(cmd *exec.Cmd, out io.Writer) (*child, error) {
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// exited reports whether the process has exited (then err is its exit
// error).
func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process group and waits up to grace for the
// process to exit, then kills the group. It returns the exit error; later
// calls return the first call's result.
func (c *child) stop(grace time.Duration) error {
	c.once.Do(func() {
		_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-c.done:
			c.stopErr = c.err
		case <-time.After(grace):
			_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
			<-c.done
			c.stopErr = fmt.Errorf("did not exit within %s of SIGTERM; killed", grace)
		}
	})
	return c.stopErr
}

// waitHTTP polls url until it answers 200, or the process exits, or timeout
// passes.
func waitHTTP(url string, c *child, timeout time.Duration) error {
	err := testnet.WaitOK(nil, url, timeout, c.done)
	if err != nil && c.exited() {
		return fmt.Errorf("%w: %v", err, c.err)
	}
	return err
}

// ---------------------------------------------------------------- Streamlit

// streamlitApp is a running `streamlit run app.py`.
type streamlitApp struct {
	// URL is where it listens, http://127.0.0.1:PORT.
	URL string
	// Addr is its host:port.
	Addr string
	proc *child
	logs *testlog.Buffer
}

// pythonBin is the interpreter that runs Streamlit (MOAT_PYTHON, else python3).
func pythonBin() string {
	if p := os.Getenv("MOAT_PYTHON"); p != "" {
		return p
	}
	return "python3"
}

// startStreamlitApp runs the Streamlit app in appDir on a free port with
// Streamlit's defaults (XSRF protection and CORS checks on) and waits for
// /_stcore/health. workDir receives Streamlit's home directory.
func startStreamlitApp(appDir, workDir string) (*streamlitApp, error) {
	py := pythonBin()
	if out, err := exec.Command(py, "-c", "import streamlit").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("streamlit is not installed for %s (run scripts/test, or pip install -r examples/streamlit-dashboard/requirements.txt): %v: %s", py, err, bytes.TrimSpace(out))
	}
	port, err := testnet.Port()
	if err != nil {
		return nil, err
	}
	home, err := os.MkdirTemp(workDir, "streamlit-home-")
	if err != nil {
		return nil, err
	}
	// Deliberately not set: server.enableXsrfProtection and server.enableCORS
	// stay at their defaults (on); moat must work with them.
	cmd := exec.Command(py, "-m", "streamlit", "run", "app.py",
		"--server.port", strconv.Itoa(port),
		"--server.address", "127.0.0.1",
		"--server.headless", "true",
		"--browser.gatherUsageStats", "false",
		"--server.fileWatcherType", "none",
	)
	cmd.Dir = appDir
	cmd.Env = append(os.Environ(), "HOME="+home, "PYTHONUNBUFFERED=1")
	s := &streamlitApp{
		Addr: fmt.Sprintf("127.0.0.1:%d", port),
		URL:  fmt.Sprintf("http://127.0.0.1:%d", port),
		logs: &testlog.Buffer{},
	}
	if s.proc, err = startChild(cmd, s.logs); err != nil {
		return nil, fmt.Errorf("start streamlit: %w", err)
	}
	if err := waitHTTP(s.URL+"/_stcore/health", s.proc, 120*time.Second); err != nil {
		s.stop()
		return nil, fmt.Errorf("streamlit: %w\n%s", err, s.logs.String())
	}
	return s, nil
}

func (s *streamlitApp) stop() { _ = s.proc.stop(5 * time.Second) }

// startStreamlit runs the Streamlit app in appDir for one test and returns
// its URL; it stops when the test ends.
func startStreamlit(t testing.TB, appDir string) string {
	t.Helper()
	s, err := startStreamlitApp(appDir, t.TempDir())
	if err != nil {
		testtool.Missing(t, "%v", err)
	}
	t.Cleanup(s.stop)
	return s.URL
}

// sharedStreamlit returns the package's Streamlit (the example dashboard),
// started on first use and stopped after the last test.
func sharedStreamlit(t testing.TB) *streamlitApp {
	t.Helper()
	dashboardOnce.Do(func() {
		start := time.Now()
		dashboard, dashboardErr = startStreamlitApp(filepath.Join(repoRoot, "examples", "streamlit-dashboard"), workDir)
		t.Logf("started the shared Streamlit in %s", time.Since(start).Round(time.Millisecond))
	})
	if dashboardErr != nil {
		testtool.Missing(t, "%v", dashboardErr)
	}
	return dashboard
}

// --------------------------------------------------------------------- moat

// Moat is a running `moat serve` started by startMoat.
type Moat struct {
	// URL is the public HTTPS origin, https://localhost:PORT.
	URL string
	// HTTPSAddr, HTTPAddr and InternalAddr are the listeners' host:port.
	HTTPSAddr, HTTPAddr, InternalAddr string
	// InternalURL is http://InternalAddr (metrics, healthz, readyz).
	InternalURL string
	// ConfigPath is the configuration file moat was started with.
	ConfigPath string
	// DataDir is moat's data_dir.
	DataDir string
	// Cert is the certificate moat served on its first handshake, for
	// localhost; nil when the config's own tls serves none for it (ACME).
	Cert *x509.Certificate

	proc *child
	logs *testlog.Buffer
}

var topLevelKey = regexp.MustCompile(`(?m)^([a-z_]+):`)

// startMoat writes configYAML to a temporary directory and runs `moat serve`
// on it. Unless configYAML sets them itself, it adds a server block with free
// 127.0.0.1 ports for https_addr, http_addr and internal_addr, a data_dir in
// the temporary directory and `tls: {self_signed: true}`. It waits for
// /healthz on the internal listener and stops moat with SIGTERM when the test
// ends, printing moat's log if the test failed. serverLines are added to the
// server block it writes (such as `trusted_proxies: ["127.0.0.1"]`).
func startMoat(t testing.TB, configYAML string, serverLines ...string) *Moat {
	t.Helper()
	return startMoatWith(t, configYAML, moatOptions{ServerLines: serverLines})
}

// moatOptions change how startMoatWith runs moat.
type moatOptions struct {
	// Dir, when set, holds the configuration file (and the data_dir moat
	// is given) instead of a fresh temporary directory.
	Dir string
	// Unprivileged runs moat as nobody (dropped with setpriv) when the
	// test runs as root; as another user it runs as that user.
	Unprivileged bool
	// ServerLines are added to the server block startMoatWith writes.
	ServerLines []string
}

// startMoatWith is startMoat with options.
func startMoatWith(t testing.TB, configYAML string, opts moatOptions) *Moat {
	t.Helper()
	if moatBuildErr != nil {
		t.Fatalf("moat binary: %v", moatBuildErr)
	}
	dir := opts.Dir
	if dir == "" {
		dir = t.TempDir()
	}
	m := &Moat{
		DataDir:    filepath.Join(dir, "data"),
		ConfigPath: filepath.Join(dir, "moat.yaml"),
		logs:       &testlog.Buffer{},
	}
	present := map[string]bool{}
	for _, k := range topLevelKey.FindAllStringSubmatch(configYAML, -1) {
		present[k[1]] = true
	}
	var head strings.Builder
	if !present["server"] {
		m.HTTPSAddr = testnet.FreeAddr(t)
		m.HTTPAddr = testnet.FreeAddr(t)
		m.InternalAddr = testnet.FreeAddr(t)
		fmt.Fprintf(&head, "server:\n  https_addr: %q\n  http_addr: %q\n  internal_addr: %q\n",
			m.HTTPSAddr, m.HTTPAddr, m.InternalAddr)
		for _, l := range opts.ServerLines {
			fmt.Fprintf(&head, "  %s\n", l)
		}
	}
	if !present["data_dir"] {
		fmt.Fprintf(&head, "data_dir: %q\n", m.DataDir)
	}
	if !present["tls"] {
		head.WriteString("tls: {self_signed: true}\n")
	}
	// An unprivileged moat must read its file; it holds no secret (keys
	// come from the environment).
	mode := os.FileMode(0o600)
	if opts.Unprivileged {
		mode = 0o644
	}
	if err := os.WriteFile(m.ConfigPath, []byte(head.String()+configYAML), mode); err != nil {
		t.Fatal(err)
	}
	if m.HTTPSAddr == "" {
		t.Fatal("startMoat: a config with its own server block is not supported yet; leave server out")
	}
	_, port, _ := net.SplitHostPort(m.HTTPSAddr)
	m.URL = "https://localhost:" + port
	m.InternalURL = "http://" + m.InternalAddr

	cmd := exec.Command(moatBin, "serve", "-c", m.ConfigPath)
	if opts.Unprivileged && os.Geteuid() == 0 {
		cmd = exec.Command("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--", unprivilegedBin(t), "serve", "-c", m.ConfigPath)
	}
	cmd.Dir = dir
	var err error
	if m.proc, err = startChild(cmd, m.logs); err != nil {
		t.Fatalf("start moat: %v", err)
	}
	t.Cleanup(func() {
		m.Stop()
		if t.Failed() {
			t.Logf("moat config:\n%s\nmoat log:\n%s", head.String()+configYAML, m.Logs())
		}
	})
	if err := waitHTTP(m.InternalURL+"/healthz", m.proc, 30*time.Second); err != nil {
		t.Fatalf("moat did not come up: %v\nconfig:\n%s\nlog:\n%s", err, head.String()+configYAML, m.Logs())
	}
	cert, err := localhostCert(m.HTTPSAddr)
	switch {
	case err == nil:
		m.Cert = cert
	case !present["tls"]:
		t.Fatalf("TLS handshake with moat: %v", err)
	}
	return m
}

// serverLeaf completes a TLS handshake with addr and returns the leaf.
func serverLeaf(addr string, cfg *tls.Config) (*x509.Certificate, error) {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: cfg}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.(*tls.Conn).ConnectionState().PeerCertificates[0], nil
}

// localhostCert returns the certificate addr serves for localhost, taken
// unverified: it is what the test trusts from then on.
func localhostCert(addr string) (*x509.Certificate, error) {
	return serverLeaf(addr, &tls.Config{ServerName: "localhost", InsecureSkipVerify: true})
}

// Stop sends moat SIGTERM and waits for it to drain and exit (at most 20 s).
// It returns the exit error; later calls return the first one's.
func (m *Moat) Stop() error { return m.proc.stop(20 * time.Second) }

// Kill ends moat with SIGKILL, as a crash or an OOM kill would: no
// draining, every connection cut. It returns once the process is gone.
func (m *Moat) Kill() {
	_ = syscall.Kill(-m.proc.cmd.Process.Pid, syscall.SIGKILL)
	<-m.proc.done
}

// unprivilegedBin returns the moat binary's path, once nobody may run it:
// the run's directory (root's, 0700 by default) becomes traversable, not
// listable.
func unprivilegedBin(t testing.TB) string {
	t.Helper()
	if err := os.Chmod(workDir, 0o711); err != nil {
		t.Fatalf("let nobody run moat: %v", err)
	}
	return moatBin
}

// Signal sends sig to the moat process (SIGHUP reloads the configuration).
func (m *Moat) Signal(sig syscall.Signal) error { return m.proc.cmd.Process.Signal(sig) }

// Logs returns everything moat wrote to stdout and stderr so far.
func (m *Moat) Logs() string { return m.logs.String() }

// LogRecords returns moat's JSON log lines, decoded; other lines are skipped.
func (m *Moat) LogRecords() []map[string]any { return m.logs.Records() }

// WaitLog waits up to timeout for a JSON log record for which match is true
// and returns it.
func (m *Moat) WaitLog(t testing.TB, timeout time.Duration, match func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, rec := range m.LogRecords() {
			if match(rec) {
				return rec
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no matching log record within %s; log:\n%s", timeout, m.Logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Client returns an HTTP client that trusts moat's certificate (and nothing
// else), does not follow redirects and dials every host to moat's HTTPS
// listener, so any routed host name works.
func (m *Moat) Client() *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(m.Cert)
	return testnet.Pin{Addr: m.HTTPSAddr, TLS: &tls.Config{RootCAs: pool, ServerName: "localhost"}, HTTP2: true, Timeout: 30 * time.Second}.Client()
}

// Metrics returns the internal listener's /metrics text.
func (m *Moat) Metrics(t testing.TB) string {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(m.InternalURL + "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	return string(b)
}

// Metric sums the samples of the metric called name whose label sets
// contain every given `key="value"` pair. found is false when none matched.
func (m *Moat) Metric(t testing.TB, name string, labels ...string) (sum float64, found bool) {
	t.Helper()
	return sumMetric(m.Metrics(t), name, labels...)
}

func sumMetric(text, name string, labels ...string) (sum float64, found bool) {
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name) || strings.HasPrefix(line, "#") {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != '{' && rest[0] != ' ') {
			continue // a longer metric name with the same prefix
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(rest, l) {
				ok = false
			}
		}
		if !ok {
			continue
		}
		f := strings.Fields(rest[strings.LastIndex(rest, "}")+1:])
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		sum += v
		found = true
	}
	return sum, found
}

// ------------------------------------------------------------------ browser

// newBrowser starts a fresh headless Chromium (its own user-data-dir) and
// returns a chromedp context for one tab; everything stops when the test
// ends. Chromium trusts the given certificates by their public keys (moat's
// self-signed one) and no others: no certificate errors are ignored.
func newBrowser(t testing.TB, trust ...*x509.Certificate) context.Context {
	t.Helper()
	path := testtool.Chromium(t)
	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
		chromedp.ExecPath(path),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
	)
	if len(trust) > 0 {
		var pins []string
		for _, c := range trust {
			sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
			pins = append(pins, base64.StdEncoding.EncodeToString(sum[:]))
		}
		// Honoured only with a user-data-dir, which every browser here has.
		opts = append(opts, chromedp.Flag("ignore-certificate-errors-spki-list", strings.Join(pins, ",")))
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
	})
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// within runs the chromedp actions with a time limit, failing the test with
// what and a screenshot on error.
func within(t testing.TB, ctx context.Context, limit time.Duration, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	if err := chromedp.Do(tctx, actions...); err != nil {
		screenshot(t, ctx, "failed-"+sanitize(what))
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("not done within %s: %w", limit, err)
		}
		t.Fatalf("%s: %v", what, err)
	}
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

func sanitize(s string) string { return strings.Trim(unsafeName.ReplaceAllString(s, "-"), "-") }

// screenshot saves a full-page PNG of the tab to
// test/e2e/test-output/TEST-NAME.png and returns the file's path. Errors
// are logged, not fatal: a screenshot is evidence, not a check.
func screenshot(t testing.TB, ctx context.Context, name string) string {
	t.Helper()
	dir := filepath.Join(repoRoot, "test", "e2e", "test-output")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Logf("screenshot: %v", err)
		return ""
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Logf("screenshot %s: %v", name, err)
		return ""
	}
	path := filepath.Join(dir, sanitize(t.Name())+"-"+sanitize(name)+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Logf("screenshot: %v", err)
		return ""
	}
	t.Logf("screenshot: %s", path)
	return path
}
