package e2e

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/moat-dev/moat/internal/auth/instancekey"
	"github.com/moat-dev/moat/internal/ratelimit/redistest"
	"github.com/moat-dev/moat/internal/store/storetest"
	"github.com/moat-dev/moat/internal/testlog"
	"github.com/moat-dev/moat/internal/testnet"
	"github.com/moat-dev/moat/internal/testwait"
)

// The multi-instance suite (issue 9, item 7): real moat processes on one
// PostgreSQL and one Redis of the test's own, which the drills stop, crash
// and start again. Certificates shared through the store (with a real ACME
// CA, Pebble) are in cluster_certs_test.go, replicas in
// cluster_replicas_test.go.

// clusterApp is the app behind the instances: / names the user moat sent,
// /slow answers after ?ms= milliseconds, /ws echoes WebSocket messages
// (the first one being the user moat sent).
type clusterApp struct {
	*httptest.Server
	// slow counts the requests to /slow that have arrived.
	slow atomic.Int32
}

func newClusterApp(t *testing.T) *clusterApp {
	t.Helper()
	app := &clusterApp{}
	app.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user := r.Header.Get("X-Moat-User-Email")
		switch r.URL.Path {
		case "/ws":
			c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
			if err != nil {
				return
			}
			defer c.CloseNow()
			_ = c.Write(r.Context(), websocket.MessageText, []byte(user))
			for {
				typ, msg, err := c.Read(r.Context())
				if err != nil {
					return
				}
				if err := c.Write(r.Context(), typ, msg); err != nil {
					return
				}
			}
		case "/slow":
			app.slow.Add(1)
			d, _ := time.ParseDuration(r.URL.Query().Get("ms") + "ms")
			select {
			case <-time.After(min(d, 30*time.Second)):
			case <-r.Context().Done():
				return
			}
		}
		fmt.Fprintf(w, "hello %s", user)
	}))
	t.Cleanup(app.Close)
	return app
}

// cluster is moat instances on one PostgreSQL and one Redis, with one
// instance key.
type cluster struct {
	t     *testing.T
	pg    *storetest.Server
	redis *redistest.Server
	cfg   string
	// key is the instance key every instance is given (MOAT_SECRET_KEY).
	key string

	mu    sync.Mutex
	moats []*Moat // live instances, in the order the front tries them
}

// newCluster starts PostgreSQL, Redis, the app and n instances of the
// configuration rest (backends, policies, routes) on them.
func newCluster(t *testing.T, n int, settings, rest string) *cluster {
	t.Helper()
	c := &cluster{t: t, pg: storetest.NewServer(t), redis: redistest.NewServer(t)}
	raw := make([]byte, instancekey.Size)
	_, _ = rand.Read(raw)
	c.key = base64.StdEncoding.EncodeToString(raw)
	// Every instance and every CLI command the test runs gets it.
	t.Setenv(instancekey.EnvVar, c.key)
	c.cfg = fmt.Sprintf("store: %q\ncounters: %q\n", c.pg.DSN(), c.redis.URL()) + settings + rest
	for range n {
		c.start()
	}
	return c
}

// start starts one more instance and puts it last in the front's order.
func (c *cluster) start() *Moat {
	c.t.Helper()
	m := startMoat(c.t, c.cfg)
	c.mu.Lock()
	c.moats = append(c.moats, m)
	c.mu.Unlock()
	return m
}

// kill ends m with SIGKILL and takes it out of the front's order.
func (c *cluster) kill(m *Moat) {
	m.Kill()
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, x := range c.moats {
		if x == m {
			c.moats = append(c.moats[:i:i], c.moats[i+1:]...)
		}
	}
}

// first puts m first in the front's order.
func (c *cluster) first(m *Moat) {
	c.mu.Lock()
	defer c.mu.Unlock()
	order := []*Moat{m}
	for _, x := range c.moats {
		if x != m {
			order = append(order, x)
		}
	}
	c.moats = order
}

// front is a client through the load balancer in front of the instances:
// each new connection goes to the first instance in order that accepts it
// (a balancer sends traffic only to live instances). Its requests speak
// HTTP/1.1, so WebSockets upgrade over them too.
func (c *cluster) front(jar http.CookieJar) *http.Client {
	c.mu.Lock()
	pool := x509.NewCertPool()
	pool.AddCert(c.moats[0].Cert)
	c.mu.Unlock()
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost", NextProtos: []string{"http/1.1"}},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			c.mu.Lock()
			order := append([]*Moat(nil), c.moats...)
			c.mu.Unlock()
			var last error = errors.New("no instance")
			for _, m := range order {
				conn, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, network, m.HTTPSAddr)
				if err == nil {
					return conn, nil
				}
				last = err
			}
			return nil, last
		},
	}
	return &http.Client{Transport: tr, Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// via is a client of m alone, over HTTP/1.1, with jar's cookies.
func via(m *Moat, jar http.CookieJar) *http.Client {
	hc := m.Client()
	tr := hc.Transport.(*http.Transport)
	tr.ForceAttemptHTTP2 = false
	tr.TLSClientConfig = tr.TLSClientConfig.Clone()
	tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
	hc.Jar = jar
	return hc
}

// seen is what one request through moat got.
type seen struct {
	status     int
	body       string
	location   string
	retryAfter string
	err        error
}

func (s seen) String() string {
	if s.err != nil {
		return "error " + s.err.Error()
	}
	b := s.body
	if len(b) > 120 {
		b = b[:120] + "…"
	}
	return fmt.Sprintf("%d %q location %q retry-after %q", s.status, b, s.location, s.retryAfter)
}

// page loads path as a person's browser does (a navigation).
func page(c *http.Client, path string) seen {
	req, _ := http.NewRequest(http.MethodGet, "https://localhost"+path, nil)
	req.Header.Set("Accept", "text/html")
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	resp, err := c.Do(req)
	if err != nil {
		return seen{err: err}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return seen{status: resp.StatusCode, body: string(b), location: resp.Header.Get("Location"), retryAfter: resp.Header.Get("Retry-After")}
}

// postForm submits a form of moat's own page at path (fetched first for
// its CSRF token) with the values given.
func postForm(c *http.Client, path, formPath string, values url.Values) seen {
	got := page(c, formPath)
	if got.err != nil {
		return got
	}
	token := csrfField.FindStringSubmatch(got.body)
	if token == nil {
		return seen{err: fmt.Errorf("%s has no form: %s", formPath, got)}
	}
	values.Set("csrf", token[1])
	req, _ := http.NewRequest(http.MethodPost, "https://localhost"+path, strings.NewReader(values.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://localhost")
	req.Header.Set("Accept", "text/html")
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	resp, err := c.Do(req)
	if err != nil {
		return seen{err: err}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return seen{status: resp.StatusCode, body: string(b), location: resp.Header.Get("Location"), retryAfter: resp.Header.Get("Retry-After")}
}

// signInVia signs jar's person in through c and reports what moat said.
func signInVia(c *http.Client, email, password string) seen {
	return postForm(c, "/_moat/login", "/_moat/login?return_to=/", url.Values{"email": {email}, "password": {password}, "return_to": {"/"}})
}

// signOutVia signs jar's person out through c.
func signOutVia(c *http.Client) seen {
	return postForm(c, "/_moat/logout", "/_moat/logout", url.Values{})
}

// signedInAs reports whether got is the app's page for email.
func (s seen) signedInAs(email string) bool {
	return s.err == nil && s.status == http.StatusOK && s.body == "hello "+email
}

// sentToSignIn reports whether got sends the browser to the login page.
func (s seen) sentToSignIn() bool {
	return s.err == nil && s.status == http.StatusSeeOther && strings.HasPrefix(s.location, "/_moat/login")
}

// storeDown reports whether got is moat's 503 page with heading.
func (s seen) storeDown(heading string) bool {
	return s.err == nil && s.status == http.StatusServiceUnavailable && s.retryAfter != "" && strings.Contains(s.body, heading)
}

// dialSocket opens the app's WebSocket through c and returns it with the
// user the app saw.
func dialSocket(ctx context.Context, c *http.Client) (*websocket.Conn, string, error) {
	hc := *c
	hc.Timeout = 0
	ws, _, err := websocket.Dial(ctx, "wss://localhost/ws", &websocket.DialOptions{HTTPClient: &hc, HTTPHeader: http.Header{"Origin": {"https://localhost"}}})
	if err != nil {
		return nil, "", err
	}
	_, who, err := ws.Read(ctx)
	if err != nil {
		ws.CloseNow()
		return nil, "", err
	}
	return ws, string(who), nil
}

// echoOn sends msg over ws and waits for it to come back.
func echoOn(ws *websocket.Conn, msg string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ws.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		return err
	}
	_, got, err := ws.Read(ctx)
	if err == nil && string(got) != msg {
		err = fmt.Errorf("echo %q, want %q", got, msg)
	}
	return err
}

// drillTable collects the rows of the table the fault drills print: what
// was done, what users saw, and how long it took, measured.
type drillTable struct {
	mu   sync.Mutex
	rows [][3]string
}

func (d *drillTable) add(fault, users string, took time.Duration, note string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	v := note
	if took >= 0 {
		v = took.Round(time.Millisecond).String()
		if took >= time.Second {
			v = took.Round(10 * time.Millisecond).String()
		}
		if note != "" {
			v += " " + note
		}
	}
	d.rows = append(d.rows, [3]string{fault, users, v})
}

// markdown renders the table.
func (d *drillTable) markdown() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var b strings.Builder
	b.WriteString("| fault or change | what users see | time to take effect / to recover (measured) |\n| --- | --- | --- |\n")
	for _, r := range d.rows {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", r[0], r[1], r[2])
	}
	return b.String()
}

// print logs the table and writes it to test-output/NAME.md.
func (d *drillTable) print(t *testing.T, name string) {
	md := d.markdown()
	t.Logf("measured on this machine (go test -tags browser -run '%s' ./test/e2e/):\n%s", t.Name(), md)
	dir := filepath.Join(repoRoot, "test", "e2e", "test-output")
	if err := os.MkdirAll(dir, 0o755); err == nil {
		_ = os.WriteFile(filepath.Join(dir, name+".md"), []byte(md), 0o644)
	}
}

const clusterEmail, clusterPassword = "mika@example.com", "a long passphrase for the cluster"

// clusterRoutes is a signed-in route for staff, and a public route under a
// rate-based ban (5 requests a minute per client address, then a minute's
// ban, counted in Redis).
func clusterRoutes(app string) string {
	return fmt.Sprintf(`backends:
  app: {url: %q}
security_policies:
  limited:
    rules:
      - priority: 100
        match: {src_ip_ranges: ["*"]}
        action: rate_based_ban
        rate_limit: {count: 5, interval: 1m, key: ip, ban_duration: 1m, exceed_action: "deny(429)"}
      - {priority: 2147483647, match: {src_ip_ranges: ["*"]}, action: allow}
routes:
  - host: localhost
    backend: app
    login: [password]
    allow: ["group:staff"]
  - host: public.localhost
    backend: app
    public: true
    security_policy: limited
`, app)
}

// publicHit makes one request to the rate-limited public route through c.
func publicHit(c *http.Client) int {
	req, _ := http.NewRequest(http.MethodGet, "https://public.localhost/", nil)
	resp, err := c.Do(req)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestClusterSharesSessionsBansAndKeys runs three moat processes on one
// PostgreSQL and one Redis: one certificate; a sign-in on one instance
// works on the others and a sign-out on one ends it on all; a ban by one
// holds on all; an instance given another instance key refuses to start
// with a one-line error; and an instance running as an unprivileged user
// whose data_dir it cannot write serves like the others.
func TestClusterSharesSessionsBansAndKeys(t *testing.T) {
	var table drillTable
	c := newCluster(t, 3, "", clusterRoutes(newClusterApp(t).URL))
	a, b, cc := c.moats[0], c.moats[1], c.moats[2]
	for i, m := range []*Moat{b, cc} {
		if !m.Cert.Equal(a.Cert) {
			t.Fatalf("instance %d serves another certificate than the first", i+1)
		}
	}
	table.add("three instances start on one store", "one self-signed certificate, made once and kept in the store", -1, "at start")
	addUser(t, a, clusterEmail, clusterPassword, "staff")

	jar, _ := cookiejar.New(nil)
	if got := signInVia(via(a, jar), clusterEmail, clusterPassword); got.status != http.StatusSeeOther {
		t.Fatalf("sign-in through the first instance: %s", got)
	}
	start := time.Now()
	for i, m := range []*Moat{a, b, cc} {
		if got := page(via(m, jar), "/"); !got.signedInAs(clusterEmail) {
			t.Fatalf("signed in through the first instance, on instance %d: %s", i, got)
		}
	}
	table.add("sign in on instance 1", "signed in on instances 2 and 3 too", time.Since(start), "(first request on each)")

	// A second browser's sign-out through one instance ends that session
	// on the others within the revocation poll (or the fan-out, once
	// wired).
	jar2, _ := cookiejar.New(nil)
	if got := signInVia(via(a, jar2), clusterEmail, clusterPassword); got.status != http.StatusSeeOther {
		t.Fatalf("second sign-in: %s", got)
	}
	for _, m := range []*Moat{b, cc} {
		if got := page(via(m, jar2), "/"); !got.signedInAs(clusterEmail) {
			t.Fatalf("second browser on another instance: %s", got)
		}
	}
	// Sign out on instance 2: its own cookie is cleared by the answer, so
	// the other instances are asked with the cookie as it was.
	ended := jarCopy(t, jar2)
	if got := signOutVia(via(b, jar2)); got.status != http.StatusSeeOther {
		t.Fatalf("sign-out on the second instance: %s", got)
	}
	took := testwait.For(t, 15*time.Second, "the sign-out reaching the other instances", func() bool {
		return page(via(a, ended), "/").sentToSignIn() && page(via(cc, ended), "/").sentToSignIn()
	})
	table.add("sign out on instance 2", "the session is refused (sent to sign in) on instances 1 and 3", took, "")
	if !page(via(cc, jar), "/").signedInAs(clusterEmail) {
		t.Fatal("the first browser's session ended with the second's")
	}

	// A ban by one instance holds on the others at once.
	anon := []*http.Client{via(a, nil), via(b, nil), via(cc, nil)}
	for i := range 5 {
		if s := publicHit(anon[i%3]); s != http.StatusOK {
			t.Fatalf("request %d to the rate-limited route: %d", i+1, s)
		}
	}
	if s := publicHit(anon[0]); s != http.StatusTooManyRequests {
		t.Fatalf("the 6th request in a minute: %d, want 429", s)
	}
	start = time.Now()
	for i, hc := range anon {
		if s := publicHit(hc); s != http.StatusTooManyRequests {
			t.Errorf("instance %d after the ban: %d, want 429", i, s)
		}
	}
	table.add("a client passes a rate limit (5/min, counted through 3 instances)", "429 from every instance (the ban is in Redis)", time.Since(start), "(first request on each)")

	// Another instance key: refused at start, with one line saying why.
	other := make([]byte, instancekey.Size)
	_, _ = rand.Read(other)
	line, took, err := c.serveOnce(t, instancekey.EnvVar+"="+base64.StdEncoding.EncodeToString(other))
	if err == nil {
		t.Fatal("an instance with another key started")
	}
	if !strings.Contains(line, "instance key") || !strings.Contains(line, "cannot open the store's signing key") || strings.Contains(line, base64.StdEncoding.EncodeToString(other)) {
		t.Errorf("an instance with another key said %q; want one line naming the instance key (and not the key itself)", line)
	}
	table.add("an instance starts with another instance key", "it refuses to start: "+line, took, "to exit")

	// An instance running as an unprivileged user whose data_dir it cannot
	// write serves the same sessions.
	ro := unwritableDir(t)
	start = time.Now()
	d := startMoatWith(t, fmt.Sprintf("data_dir: %q\n", filepath.Join(ro, "data"))+c.cfg, moatOptions{
		Dir: ro, Unprivileged: true,
	})
	ready := time.Since(start)
	if !d.Cert.Equal(a.Cert) {
		t.Error("the unprivileged instance serves another certificate")
	}
	if got := page(via(d, jar), "/"); !got.signedInAs(clusterEmail) {
		t.Errorf("through the unprivileged instance: %s", got)
	}
	if entries, err := os.ReadDir(filepath.Join(ro, "data")); err != nil || len(entries) != 0 {
		t.Errorf("the unprivileged instance's data_dir holds %v (%v), want nothing written", entries, err)
	}
	who := "the test's user"
	if os.Geteuid() == 0 {
		who = "nobody"
	}
	table.add("an instance runs as "+who+", its data_dir not writable (store and key shared)", "it serves the same sessions and certificate", ready, "to start")
	table.print(t, "cluster")
}

// jarCopy returns a new jar with jar's cookies for https://localhost.
func jarCopy(t *testing.T, jar http.CookieJar) http.CookieJar {
	t.Helper()
	u, _ := url.Parse("https://localhost/")
	cp, _ := cookiejar.New(nil)
	var cookies []*http.Cookie
	for _, ck := range jar.Cookies(u) {
		cookies = append(cookies, &http.Cookie{Name: ck.Name, Value: ck.Value, Path: "/", Secure: true})
	}
	cp.SetCookies(u, cookies)
	return cp
}

// serveOnce runs one more instance of the cluster's configuration, with
// env added to its environment, and returns the last line it wrote (moat's
// prefix cut), how long it ran and its exit error; one still running after
// 30 s has started, and is stopped (nil error).
func (c *cluster) serveOnce(t *testing.T, env ...string) (string, time.Duration, error) {
	t.Helper()
	cfgPath := filepath.Join(t.TempDir(), "moat.yaml")
	cfg := fmt.Sprintf("server: {https_addr: \"127.0.0.1:%d\", http_addr: off, internal_addr: \"127.0.0.1:%d\"}\ndata_dir: %q\ntls: {self_signed: true}\n",
		testnet.FreePort(t), testnet.FreePort(t), t.TempDir()) + c.cfg
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(moatBin, "serve", "-c", cfgPath)
	cmd.Env = append(os.Environ(), env...)
	start := time.Now()
	out, err := runWithin(cmd, 30*time.Second)
	return strings.TrimPrefix(lastNonEmpty(out), "moat: "), time.Since(start), err
}

// runWithin runs cmd and returns its output, killing it after limit.
func runWithin(cmd *exec.Cmd, limit time.Duration) (string, error) {
	var out testlog.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.String(), err
	case <-time.After(limit):
		_ = cmd.Process.Kill()
		<-done
		return out.String(), nil // still running: it started
	}
}

func lastNonEmpty(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// unwritableDir returns a directory with an empty data/ in it that moat,
// run by startMoatWith with Unprivileged, may read but not write: owned by
// root when the test runs as root (moat then runs as nobody), else
// read-only for the test's user.
func unwritableDir(t *testing.T) string {
	t.Helper()
	base := "/tmp"
	if os.Geteuid() != 0 {
		base = t.TempDir()
	}
	dir, err := os.MkdirTemp(base, "moat-ro-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = os.Chmod(dir, 0o755)
		_ = os.Chmod(filepath.Join(dir, "data"), 0o755)
		_ = os.RemoveAll(dir)
	})
	if os.Geteuid() != 0 {
		// The test's own user: a read-only data_dir.
		if err := os.Chmod(filepath.Join(dir, "data"), 0o555); err != nil {
			t.Fatal(err)
		}
	} else if err := os.Chmod(dir, 0o755); err != nil { // root's: nobody may read, not write
		t.Fatal(err)
	}
	return dir
}
