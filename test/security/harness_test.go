package security

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/moat-dev/moat/internal/store/storetest"
	"github.com/moat-dev/moat/internal/testlog"
	"github.com/moat-dev/moat/internal/testnet"
	"github.com/moat-dev/moat/internal/testtool"
)

var (
	// moatBin is the moat binary built from this checkout for the run.
	moatBin string
	// buildErr is why it could not be built.
	buildErr error
)

func TestMain(m *testing.M) {
	// go test runs a test binary in its package's folder (whatever
	// -trimpath did to the file names the binary knows).
	wd, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, "security:", err)
		os.Exit(1)
	}
	root := filepath.Join(wd, "..", "..")
	tmp, err := os.MkdirTemp("", "moat-security-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "security:", err)
		os.Exit(1)
	}
	moatBin, buildErr = testtool.BuildMoat(root, tmp)
	code := m.Run()
	storetest.Stop()
	os.RemoveAll(tmp)
	os.Exit(code)
}

// ---------------------------------------------------------------- the app

// seen is one request as it reached the app behind moat.
type seen struct {
	Method, Path, RawPath, RequestURI string
	Header                            http.Header
}

// app is a real HTTP server standing in for the protected application: it
// answers every request 200 "app" (and accepts every WebSocket) and
// remembers what reached it.
type app struct {
	*httptest.Server
	mu   sync.Mutex
	seen []seen
}

func startApp(t *testing.T) *app {
	t.Helper()
	a := &app{}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			return
		}
		io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
		a.mu.Lock()
		a.seen = append(a.seen, seen{r.Method, r.URL.Path, r.URL.RawPath, r.RequestURI, r.Header.Clone()})
		a.mu.Unlock()
		if r.Header.Get("Upgrade") != "" {
			// A WebSocket endpoint that, like many, checks no Origin.
			if ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true}); err == nil {
				ws.Close(websocket.StatusNormalClosure, "")
			}
			return
		}
		io.WriteString(w, "app")
	}))
	t.Cleanup(a.Close)
	return a
}

// requests returns what reached the app so far and forgets it.
func (a *app) requests() []seen {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.seen
	a.seen = nil
	return s
}

// last returns the one request that reached the app since the last call,
// failing the test when there was not exactly one.
func (a *app) last(t *testing.T) seen {
	t.Helper()
	s := a.requests()
	if len(s) != 1 {
		t.Fatalf("%d requests reached the app, want 1: %+v", len(s), s)
	}
	return s[0]
}

// --------------------------------------------------------------------- moat

// moat is a running `moat serve`.
type moat struct {
	HTTPS, HTTP, Internal string
	ConfigPath            string
	env                   []string
	cmd                   *exec.Cmd
	done                  chan struct{}
	logs                  *testlog.Buffer
}

// secretKey returns a fresh MOAT_SECRET_KEY value, for instances that share
// a store (and so must share the key).
func secretKey(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// startMoat runs `moat serve` on a configuration made of a server block
// with free 127.0.0.1 ports plus serverExtra (more keys under server:,
// each line indented by two spaces), a data_dir of its own, a self-signed
// certificate, and rest (backends, routes, identity, store, …). env adds
// environment variables. moat stops with SIGTERM when the test ends; its
// log is printed if the test failed.
func startMoat(t *testing.T, serverExtra, rest string, env ...string) *moat {
	t.Helper()
	if buildErr != nil {
		t.Fatalf("moat binary: %v", buildErr)
	}
	dir := t.TempDir()
	m := &moat{
		HTTPS: testnet.FreeAddr(t), HTTP: testnet.FreeAddr(t), Internal: testnet.FreeAddr(t),
		ConfigPath: filepath.Join(dir, "moat.yaml"),
		env:        append(os.Environ(), env...),
		done:       make(chan struct{}),
		logs:       &testlog.Buffer{},
	}
	cfg := fmt.Sprintf("server:\n  https_addr: %q\n  http_addr: %q\n  internal_addr: %q\n  shutdown_grace: 2s\n%sdata_dir: %q\ntls: {self_signed: true}\n%s",
		m.HTTPS, m.HTTP, m.Internal, serverExtra, filepath.Join(dir, "data"), rest)
	if err := os.WriteFile(m.ConfigPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	m.cmd = exec.Command(moatBin, "serve", "-c", m.ConfigPath)
	m.cmd.Env = m.env
	m.cmd.Stdout, m.cmd.Stderr = m.logs, m.logs
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		m.cmd.Wait()
		close(m.done)
	}()
	t.Cleanup(func() {
		_ = m.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-m.done:
		case <-time.After(10 * time.Second):
			_ = m.cmd.Process.Kill()
			<-m.done
		}
		if t.Failed() {
			t.Logf("moat config:\n%s\nmoat log:\n%s", cfg, m.logs.String())
		}
	})
	if err := testnet.WaitOK(nil, "http://"+m.Internal+"/healthz", 30*time.Second, m.done); err != nil {
		t.Fatalf("moat is not ready: %v\n%s\nconfig:\n%s", err, m.logs.String(), cfg)
	}
	return m
}

// cli runs a moat command against m's configuration (and store), feeding
// stdin, and returns its output; it fails the test when the command fails.
func (m *moat) cli(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(moatBin, append(args, "-c", m.ConfigPath)...)
	cmd.Env = m.env
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("moat %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// addUser creates a password user through the CLI, as an operator does.
func (m *moat) addUser(t *testing.T, email, password string, groups ...string) {
	t.Helper()
	args := []string{"users", "add", email, "--password-stdin"}
	for _, g := range groups {
		args = append(args, "--group", g)
	}
	m.cli(t, password+"\n", args...)
}

// client returns a client that sends every request to m's HTTPS listener
// whatever the URL's host (so routed names work), keeps cookies, and does
// not follow redirects. from, when set, is the local address to dial from
// (127.0.0.x), so that tests can be several clients.
func (m *moat) client(t *testing.T, from ...string) *http.Client {
	t.Helper()
	return m.clientTo(t, m.HTTPS, from...)
}

// plainClient is client for m's plain-HTTP listener.
func (m *moat) plainClient(t *testing.T, from ...string) *http.Client {
	t.Helper()
	return m.clientTo(t, m.HTTP, from...)
}

func (m *moat) clientTo(t *testing.T, addr string, from ...string) *http.Client {
	t.Helper()
	p := testnet.Pin{Addr: addr, HTTP2: true, Timeout: 20 * time.Second}
	if len(from) > 0 {
		p.From = from[0]
	}
	p.Jar, _ = cookiejar.New(nil)
	return p.Client()
}

// http1 returns a copy of c that speaks HTTP/1.1 only (for hop-by-hop
// headers, which HTTP/2 does not carry).
func http1(c *http.Client) *http.Client {
	cc := *c
	tr := c.Transport.(*http.Transport).Clone()
	tr.ForceAttemptHTTP2 = false
	tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}}
	tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	cc.Transport = tr
	return &cc
}

// do sends a request and returns the status and body; header is name,
// value pairs.
func do(t *testing.T, c *http.Client, method, target string, body io.Reader, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, target, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	return send(t, c, req)
}

func send(t *testing.T, c *http.Client, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp, string(b)
}

// rawGet sends "GET target" with the request target exactly as given (no
// cleaning or escaping by the client), over HTTP/1.1.
func rawGet(t *testing.T, c *http.Client, host, target string, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "https://"+host+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.URL.Opaque = target
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	return send(t, http1(c), req)
}

// ------------------------------------------------------------------- forms

var (
	formRe  = regexp.MustCompile(`(?s)<form[^>]*action="([^"]*)"[^>]*>(.*?)</form>`)
	inputRe = regexp.MustCompile(`<input[^>]*>`)
	attrRe  = regexp.MustCompile(`([a-z]+)(?:="([^"]*)")?`)
)

// formFields returns the fields a browser would send from the form of page
// whose action's path is action (its query, such as the return_to a
// sign-in form carries, may differ): hidden and text inputs with their
// values, the checked radio buttons; and the form's whole action.
func formFields(page, action string) (url.Values, string, bool) {
	for _, f := range formRe.FindAllStringSubmatch(page, -1) {
		full := html.UnescapeString(f[1])
		if path, _, _ := strings.Cut(full, "?"); path != action {
			continue
		}
		v := url.Values{}
		for _, in := range inputRe.FindAllString(f[2], -1) {
			attrs := map[string]string{}
			for _, a := range attrRe.FindAllStringSubmatch(strings.TrimPrefix(in, "<input"), -1) {
				attrs[a[1]] = html.UnescapeString(a[2])
			}
			if attrs["name"] == "" || attrs["type"] == "radio" && !strings.Contains(in, " checked") {
				continue
			}
			v.Set(attrs["name"], attrs["value"])
		}
		return v, full, true
	}
	return nil, "", false
}

// submit opens pageURL with c, fills the form posting to action with
// fields, and posts it as the same-origin browser would.
func submit(t *testing.T, c *http.Client, pageURL, action string, fields url.Values) (*http.Response, string) {
	t.Helper()
	_, page := do(t, c, http.MethodGet, pageURL, nil, "Accept", "text/html", "Sec-Fetch-Mode", "navigate", "Sec-Fetch-Site", "same-origin")
	v, full, ok := formFields(page, action)
	if !ok {
		t.Fatalf("%s has no form posting to %s:\n%.2000s", pageURL, action, page)
	}
	for k, vv := range fields {
		v[k] = vv
	}
	u, _ := url.Parse(pageURL)
	origin := u.Scheme + "://" + u.Host
	return do(t, c, http.MethodPost, origin+full, strings.NewReader(v.Encode()),
		"Content-Type", "application/x-www-form-urlencoded", "Origin", origin,
		"Sec-Fetch-Site", "same-origin", "Sec-Fetch-Mode", "navigate", "Accept", "text/html")
}

// signIn signs c in on host with a password, through moat's login form,
// and fails the test unless moat accepts it.
func signIn(t *testing.T, c *http.Client, host, email, password string) {
	t.Helper()
	resp, body := trySignIn(t, c, host, email, password)
	if resp.StatusCode != http.StatusSeeOther || strings.HasPrefix(resp.Header.Get("Location"), "/_moat/login") {
		t.Fatalf("sign-in of %s answered %d Location %q:\n%.1500s", email, resp.StatusCode, resp.Header.Get("Location"), body)
	}
}

// trySignIn posts moat's login form and returns the answer.
func trySignIn(t *testing.T, c *http.Client, host, email, password string) (*http.Response, string) {
	t.Helper()
	return submit(t, c, "https://"+host+"/_moat/login?return_to=/", "/_moat/login",
		url.Values{"email": {email}, "password": {password}})
}

// signOut signs c out on host through moat's sign-out form.
func signOut(t *testing.T, c *http.Client, host string) {
	t.Helper()
	resp, body := submit(t, c, "https://"+host+"/_moat/logout", "/_moat/logout", nil)
	if resp.StatusCode/100 != 3 {
		t.Fatalf("sign-out answered %d:\n%.1500s", resp.StatusCode, body)
	}
}

// cookies returns what c would send to host.
func cookies(c *http.Client, host string) []*http.Cookie {
	return c.Jar.Cookies(&url.URL{Scheme: "https", Host: host, Path: "/"})
}

// cookieHeader is a Cookie header value for cs.
func cookieHeader(cs []*http.Cookie) string {
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = c.Name + "=" + c.Value
	}
	return strings.Join(parts, "; ")
}

// bare returns a client for m without cookies, from the same address.
func (m *moat) bare(t *testing.T, from ...string) *http.Client {
	t.Helper()
	c := m.client(t, from...)
	c.Jar = nil
	return c
}

// refused reports whether a response denies access to a protected page:
// a 401 or 403, or a redirect to moat's login page.
func refused(resp *http.Response) bool {
	switch {
	case resp.StatusCode == http.StatusUnauthorized, resp.StatusCode == http.StatusForbidden:
		return true
	case resp.StatusCode/100 == 3:
		return strings.HasPrefix(resp.Header.Get("Location"), "/_moat/login")
	}
	return false
}
