package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/coder/websocket"

	"github.com/moat-dev/moat/internal/store"
	"github.com/moat-dev/moat/internal/store/storetest"
	"github.com/moat-dev/moat/internal/usage"
)

// usageApp is a small app behind moat: pages, and a WebSocket at
// /_stcore/stream that echoes, as Streamlit's answers the browser.
func usageApp(t *testing.T) string {
	t.Helper()
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/_stcore/stream" {
			fmt.Fprintf(w, "hello %s", r.Header.Get("X-Moat-User-Email"))
			return
		}
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, msg); err != nil {
				return
			}
		}
	}))
	t.Cleanup(app.Close)
	return app.URL
}

// usagePerson is someone's browser over HTTP: cookies kept per host name, as a
// browser keeps them whichever instance a balancer picks.
type usagePerson struct {
	email string
	jar   http.CookieJar
}

func newUsagePerson(email string) *usagePerson {
	jar, _ := cookiejar.New(nil)
	return &usagePerson{email: email, jar: jar}
}

// client is p's HTTP/1.1 client to instance m (WebSockets upgrade over
// HTTP/1.1).
func (p *usagePerson) client(m *Moat) *http.Client {
	c := m.Client()
	tr := c.Transport.(*http.Transport)
	tr.ForceAttemptHTTP2 = false
	tr.TLSClientConfig = tr.TLSClientConfig.Clone()
	tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
	c.Jar = p.jar
	return c
}

var csrfInput = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// signIn signs p in through m's login form.
func (p *usagePerson) signIn(t *testing.T, m *Moat, password string) {
	t.Helper()
	c := p.client(m)
	req, _ := http.NewRequest(http.MethodGet, m.URL+"/_moat/login?return_to=/", nil)
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	token := csrfInput.FindStringSubmatch(readAll(t, resp))
	if token == nil {
		t.Fatalf("login page of %s has no CSRF token", m.URL)
	}
	form := url.Values{"csrf": {token[1]}, "email": {p.email}, "password": {password}, "return_to": {"/"}}
	req, _ = http.NewRequest(http.MethodPost, m.URL+"/_moat/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", m.URL)
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("%s signing in on %s: %d to %q, want 303 to /", p.email, m.URL, resp.StatusCode, resp.Header.Get("Location"))
	}
}

// visit loads the app's page through m.
func (p *usagePerson) visit(t *testing.T, m *Moat) {
	t.Helper()
	resp, err := p.client(m).Get(m.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(t, resp); resp.StatusCode != http.StatusOK || body != "hello "+p.email {
		t.Fatalf("%s on %s: %d %q", p.email, m.URL, resp.StatusCode, body)
	}
}

// useSocket opens the app's WebSocket through m, sends n messages and
// closes it.
func (p *usagePerson) useSocket(t *testing.T, m *Moat, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hc := p.client(m)
	hc.Timeout = 0
	ws, _, err := websocket.Dial(ctx, "wss://localhost"+strings.TrimPrefix(m.URL, "https://localhost")+"/_stcore/stream",
		&websocket.DialOptions{HTTPClient: hc})
	if err != nil {
		t.Fatalf("%s: WebSocket through %s: %v", p.email, m.URL, err)
	}
	for i := range n {
		msg := fmt.Sprintf("click %d", i)
		if err := ws.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		if _, got, err := ws.Read(ctx); err != nil || string(got) != msg {
			t.Fatalf("echo %q: %q, %v", msg, got, err)
		}
	}
	ws.Close(websocket.StatusNormalClosure, "")
}

// readAll reads and closes a response's body (at most 1 MiB).
func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// usageReport runs the real `moat usage --format json` against m's
// configuration.
func usageReport(t *testing.T, m *Moat) usage.Report {
	t.Helper()
	out, err := exec.Command(moatBin, "usage", "--format", "json", "--since", "1d", "-c", m.ConfigPath).Output()
	if err != nil {
		t.Fatalf("moat usage: %v\n%s", err, out)
	}
	var r usage.Report
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("moat usage --format json: %v\n%s", err, out)
	}
	return r
}

// TestUsageOfTwoInstancesAddsUpInOneStore: two moat processes over one
// PostgreSQL each count what they see and write it every second; the
// store, `moat usage` and the console show the sum: two sign-ins (one on
// each), two users, two sessions (alice's, used through both instances,
// is one), their sockets' active minutes. Prometheus counts sign-ins on
// each instance without naming anyone. Then the admin looks at the usage
// page in Chromium (screenshot).
func TestUsageOfTwoInstancesAddsUpInOneStore(t *testing.T) {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	// Instances sharing a store share the instance key.
	t.Setenv("MOAT_SECRET_KEY", base64.StdEncoding.EncodeToString(key))
	dsn := storetest.Postgres(t)
	cfg := fmt.Sprintf(`store: %q
usage: {flush_interval: 1s}
backends:
  app: {url: %q}
routes:
  - host: localhost
    backend: app
    login: [password]
    allow: ["group:staff"]
`, dsn, usageApp(t))
	a, b := startMoat(t, cfg), startMoat(t, cfg)
	const password = "a long passphrase for usage"
	addUser(t, a, "alice@example.com", password, "staff")
	addUser(t, b, "bob@example.com", password, "staff")
	alice, bob := newUsagePerson("alice@example.com"), newUsagePerson("bob@example.com")

	alice.signIn(t, a, password)
	bob.signIn(t, b, password)
	// One session of alice's, through both instances, as a balancer
	// without affinity sends it.
	alice.visit(t, a)
	alice.visit(t, b)
	bob.visit(t, b)
	alice.useSocket(t, a, 3)
	alice.useSocket(t, b, 2)
	bob.useSocket(t, b, 1)

	var r usage.Report
	deadline := time.Now().Add(30 * time.Second)
	for {
		r = usageReport(t, a)
		if r.Totals.SignIns == 2 && r.Totals.Users == 2 && len(r.RecentSessions) == 2 && r.Totals.ActiveMinutes >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("moat usage after 30s: %+v; want 2 sign-ins, 2 users, 2 sessions and each socket's active minute", r)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if r.Totals.Sessions != 2 || len(r.Days) != 1 || r.Days[0].Route != "localhost" || r.Days[0].Users != 2 {
		t.Errorf("usage = %+v; want 2 sessions, one day of 2 users on localhost", r)
	}
	for _, s := range r.RecentSessions {
		if s.Email == "alice@example.com" && s.ActiveMinutes < 2 {
			t.Errorf("alice's session counts %d active minutes; her sockets on both instances sent messages", s.ActiveMinutes)
		}
	}
	for _, m := range []*Moat{a, b} {
		if n, _ := m.Metric(t, "moat_signins_total", `route="localhost"`, `provider="password"`); n != 1 {
			t.Errorf("moat_signins_total on %s = %v, want 1 (each instance counts its own)", m.URL, n)
		}
		if n, ok := m.Metric(t, "moat_websocket_seconds_total", `route="localhost"`); !ok || n <= 0 {
			t.Errorf("moat_websocket_seconds_total on %s = %v (found %v), want the sockets' time", m.URL, n, ok)
		}
		if strings.Contains(m.Metrics(t), "example.com") {
			t.Errorf("the metrics of %s name a user", m.URL)
		}
	}

	seedUsageHistory(t, dsn)
	addUser(t, a, "admin@example.com", password, "moat-admins", "staff")
	ctx := newBrowser(t, a.Cert)
	within(t, ctx, 60*time.Second, "sign in as the admin",
		chromedp.Navigate(a.URL+"/_moat/admin/usage?lang=en"),
		chromedp.WaitVisible(chromedp.CSS(`input[name=email]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=email]`), "admin@example.com"),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), password),
		chromedp.Submit(chromedp.CSS(`input[name=password]`)),
		chromedp.WaitVisible(chromedp.CSS(`#users-chart svg`)))
	users, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('#total-users').textContent`))
	if err != nil || users != "8" {
		t.Errorf("the usage page counts %q users (%v), want 8: alice, bob and six of the history", users, err)
	}
	screenshot(t, ctx, "usage-page")
	within(t, ctx, 30*time.Second, "open the page in Japanese",
		chromedp.Navigate(a.URL+"/_moat/admin/usage?lang=ja&period=90"),
		chromedp.WaitVisible(chromedp.CSS(`#top-chart svg`)))
	screenshot(t, ctx, "usage-page-ja-90-days")
}

// seedUsageHistory writes a month of made-up use of two more routes, as
// many instances would have written it, so the usage page shows what a
// month looks like.
func seedUsageHistory(t *testing.T, dsn string) {
	t.Helper()
	st, err := store.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	people := []string{"yuki@customer-a.example", "haruto@customer-a.example", "emma@example.com", "liam@example.com", "sofia@example.com", "noah@example.com"}
	routes := []string{"dash.example.com", "dash-partner.example.com"}
	today := time.Now().UTC().Truncate(24 * time.Hour)
	b := &store.UsageBatch{}
	for d := 29; d >= 1; d-- {
		day := today.AddDate(0, 0, -d)
		weekend := day.Weekday() == time.Saturday || day.Weekday() == time.Sunday
		for i, who := range people {
			for j, rt := range routes {
				// A steady pattern: fewer people at weekends, the
				// partner route used by the customer's two.
				if weekend && i%2 == 1 || j == 1 && i > 1 || j == 0 && i < 2 || (d+i+j)%4 == 0 {
					continue
				}
				start := day.Add(time.Duration(8+i) * time.Hour)
				minutes := 10 + (d*7+i*13+j*5)%50
				b.Sessions = append(b.Sessions, store.UsageSession{Route: rt, Key: fmt.Sprintf("h-%d-%d-%d", d, i, j), Email: who, Provider: []string{"google", "password"}[j],
					Start: start, End: start.Add(time.Duration(minutes+15) * time.Minute), Connected: time.Duration(minutes+10) * time.Minute, ActiveMinutes: int64(minutes)})
				b.SignIns = append(b.SignIns, store.UsageSignIns{Route: rt, Day: day, Provider: []string{"google", "password"}[j], Count: 1})
			}
		}
	}
	if err := st.AddUsage(context.Background(), b); err != nil {
		t.Fatal(err)
	}
}

// TestStreamlitUseIsCountedAsActiveMinutes: a person signs in, the real
// Streamlit dashboard renders in Chromium through moat and they switch its
// mode; `moat usage` then shows their sign-in, their day, and an active
// minute and connected time from the dashboard's WebSocket.
func TestStreamlitUseIsCountedAsActiveMinutes(t *testing.T) {
	t.Parallel()
	st := sharedStreamlit(t)
	m := startMoat(t, fmt.Sprintf(`usage: {flush_interval: 1s}
backends:
  dashboard: {url: %q, health_path: /_stcore/health}
routes:
  - {host: localhost, backend: dashboard, login: [password], allow: ["group:staff"]}
`, st.URL))
	const email, password = "ren@example.com", "a long passphrase for the dashboard"
	addUser(t, m, email, password, "staff")
	ctx := newBrowser(t, m.Cert)
	within(t, ctx, 90*time.Second, "sign in and open the dashboard",
		chromedp.Navigate(m.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`input[name=email]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=email]`), email),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), password),
		chromedp.Submit(chromedp.CSS(`input[name=password]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="stRadioOption"]`)))
	waitRendered(t, ctx, dashboardModes[0].kind, 60*time.Second)
	selectMode(t, ctx, dashboardModes[2].label)
	waitRendered(t, ctx, dashboardModes[2].kind, 30*time.Second)

	deadline := time.Now().Add(30 * time.Second)
	for {
		r := usageReport(t, m)
		if len(r.RecentSessions) == 1 && r.RecentSessions[0].ActiveMinutes >= 1 && r.RecentSessions[0].ConnectedSeconds >= 1 {
			s := r.RecentSessions[0]
			if s.Email != email || s.Route != "localhost" || s.Provider != "password" || r.Totals.SignIns != 1 || r.Totals.Users != 1 {
				t.Errorf("usage = %+v; want ren's one password session on localhost, one sign-in", r)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30s moat usage shows %+v; want ren's session with an active minute and connected time", r)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
