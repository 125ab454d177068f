package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/moat-dev/moat/internal/store/storetest"
)

// waitCaptionIs polls the page's captions until one is want, for at most
// limit, and returns how long that took.
func waitCaptionIs(t *testing.T, ctx context.Context, want string, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var all string
	for time.Since(start) < limit {
		all, _ = chromedp.Run(ctx, chromedp.Evaluate[string](captionsJS))
		for _, c := range strings.Split(all, "\n") {
			if c == want {
				return time.Since(start)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	screenshot(t, ctx, "caption-"+want)
	t.Fatalf("no caption %q within %s; captions: %q", want, limit, all)
	return 0
}

// TestStreamlitFollowsAGroupChangeWithoutAReload is issue 14 item 1 in
// real Streamlit and Chromium: a signed-in user's page shows who they are
// from st.user (their display name, not ASCII, through X-Moat-User-Name,
// and their groups); an admin changes their groups with the CLI; within
// seconds the live page shows the new groups, without the user reloading:
// moat asked the page's WebSocket to reconnect (1012), and Streamlit read
// the new identity when it did.
func TestStreamlitFollowsAGroupChangeWithoutAReload(t *testing.T) {
	st := sharedStreamlit(t)
	m := startMoat(t, clusterConfig(t, storetest.Postgres(t), fmt.Sprintf(`backends:
  dashboard: {url: %q, health_path: /_stcore/health}
routes:
  - {host: localhost, backend: dashboard, login: [password], allow: ["group:staff"]}
`, st.URL)))
	const email, name, password = "juergen@example.com", "Jürgen Weiß", "a long passphrase for the dashboard"
	cmd := exec.Command(moatBin, "users", "add", email, "--name", name, "--group", "staff", "--password-stdin", "-c", m.ConfigPath)
	cmd.Stdin = strings.NewReader(password + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("moat users add: %v\n%s", err, out)
	}

	ctx := newBrowser(t, m.Cert)
	sockets := recordWebSockets(t, ctx)
	within(t, ctx, 90*time.Second, "sign in and open the dashboard",
		chromedp.Navigate(m.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`input[name=email]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=email]`), email),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), password),
		chromedp.Submit(chromedp.CSS(`input[name=password]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="stRadioOption"]`)))
	waitCaptionIs(t, ctx, "Signed in as "+name+" ("+email+")", 30*time.Second)
	waitCaptionIs(t, ctx, "Groups: staff", 30*time.Second)
	// A mark that a reload would wipe.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.moatTestMark = true`)); err != nil {
		t.Fatal(err)
	}
	screenshot(t, ctx, "before")

	out, err := exec.Command(moatBin, "users", "set-groups", email, "staff", "analysts", "-c", m.ConfigPath).CombinedOutput()
	if err != nil {
		t.Fatalf("moat users set-groups: %v\n%s", err, out)
	}
	took := waitCaptionIs(t, ctx, "Groups: analysts,staff", 30*time.Second)
	t.Logf("the live page showed the new groups %s after the change", took.Round(time.Millisecond))
	screenshot(t, ctx, "after")
	if mark, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.moatTestMark === true`)); err != nil || !mark {
		t.Errorf("the page was reloaded (mark %v, %v); want the same page, reconnected", mark, err)
	}
	if got := sockets.Matching("/_stcore/stream"); len(got) != 2 || !got[0].Closed || got[1].Closed || got[1].Status != 101 {
		t.Errorf("stream WebSockets %+v: want the first closed and one reconnected, open", got)
	}
	waitCaptionIs(t, ctx, "Signed in as "+name+" ("+email+")", 10*time.Second)
}
