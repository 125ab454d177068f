package e2e

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// addUser creates a password user through the real CLI, against the store
// of the running moat, as an operator would.
func addUser(t testing.TB, m *Moat, email, password string, groups ...string) {
	t.Helper()
	args := []string{"users", "add", email, "--password-stdin", "-c", m.ConfigPath}
	for _, g := range groups {
		args = append(args, "--group", g)
	}
	cmd := exec.Command(moatBin, args...)
	cmd.Stdin = strings.NewReader(password + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("moat users add: %v\n%s", err, out)
	}
}

// TestSignInOpensTheDashboardAndSignOutClosesIt: the protected Streamlit
// dashboard sends a browser to moat's login page; after signing in the
// dashboard renders over moat's WebSocket with the user's name on it; after
// signing out the dashboard sends the browser back to the login page.
func TestSignInOpensTheDashboardAndSignOutClosesIt(t *testing.T) {
	t.Parallel()
	st := sharedStreamlit(t)
	m := startMoat(t, fmt.Sprintf(`backends:
  dashboard: {url: %q, health_path: /_stcore/health}
routes:
  - host: localhost
    backend: dashboard
    title: "Sales dashboard"
    login: [password]
    allow: ["group:customer-a"]
`, st.URL))
	const email, password = "yuki@customer-a.example", "a long passphrase for the VPN users"
	addUser(t, m, email, password, "customer-a")

	ctx := newBrowser(t, m.Cert)
	location := func() string {
		t.Helper()
		loc, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.pathname + location.search`))
		if err != nil {
			t.Fatal(err)
		}
		return loc
	}
	within(t, ctx, 60*time.Second, "open the dashboard",
		chromedp.Navigate(m.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`input[name=email]`)))
	if loc := location(); !strings.HasPrefix(loc, "/_moat/login") {
		t.Fatalf("the protected dashboard left the browser at %s, want moat's login page", loc)
	}
	heading, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('h1').textContent`))
	if !strings.Contains(heading, "Sales dashboard") {
		t.Errorf("login page heading %q does not name the route's title", heading)
	}
	screenshot(t, ctx, "login")

	within(t, ctx, 60*time.Second, "sign in",
		chromedp.SendKeys(chromedp.CSS(`input[name=email]`), email),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), password),
		chromedp.Submit(chromedp.CSS(`input[name=password]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="stRadioOption"]`)))
	if loc := location(); loc != "/" {
		t.Errorf("after signing in the browser is at %s, want the dashboard at /", loc)
	}
	waitRendered(t, ctx, dashboardModes[0].kind, 60*time.Second)
	deadline := time.Now().Add(20 * time.Second)
	var caption string
	for time.Now().Before(deadline) {
		caption, _ = chromedp.Run(ctx, chromedp.Evaluate[string](captionJS))
		if caption != "" {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if caption != "Signed in as "+email {
		t.Errorf("dashboard caption %q, want Streamlit to have read moat's X-Moat-User-Email %s", caption, email)
	}
	selectMode(t, ctx, dashboardModes[1].label)
	waitRendered(t, ctx, dashboardModes[1].kind, 30*time.Second)
	screenshot(t, ctx, "dashboard")

	within(t, ctx, 30*time.Second, "sign out",
		chromedp.Navigate(m.URL+"/_moat/logout"),
		chromedp.Click(chromedp.CSS(`form[action="/_moat/logout"] button`), chromedp.NodeVisible),
		chromedp.WaitVisible(chromedp.CSS(`input[name=email]`)))
	within(t, ctx, 30*time.Second, "open the dashboard again",
		chromedp.Navigate(m.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`input[name=email]`)))
	if loc := location(); !strings.HasPrefix(loc, "/_moat/login") {
		t.Errorf("after signing out the dashboard left the browser at %s, want the login page", loc)
	}
	m.WaitLog(t, 5*time.Second, func(r map[string]any) bool {
		return r["msg"] == "request" && r["path"] == "/_stcore/stream" && r["user"] == email
	})
}
