package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// dashboardModes are the seed's four display modes in the radio's order, and
// what the page draws for each: the kind of Vega-Lite mark Streamlit's chart
// renders as SVG (its "… mark container" group), or a table.
var dashboardModes = []struct {
	label string
	kind  string
}{
	{"折れ線グラフ", "line mark"},
	{"棒グラフ", "rect mark"},
	{"面グラフ", "area mark"},
	{"テーブル", "table"},
}

// dashboardConfig puts the shared Streamlit behind moat on a public route for
// localhost.
func dashboardConfig(st *streamlitApp) string {
	return fmt.Sprintf(`backends:
  dashboard: {url: %q, health_path: /_stcore/health}
routes:
  - {host: localhost, backend: dashboard, public: true}
`, st.URL)
}

// rendered is what the dashboard's main area shows now.
type rendered struct {
	// Kind is "line mark", "rect mark", "area mark", "table" or "" (nothing
	// settled yet).
	Kind string `json:"kind"`
	// Marks counts the chart's marks of that kind (one path per line or
	// area, one per bar); Rows and Cols the table's body rows and header
	// cells.
	Marks int `json:"marks"`
	Rows  int `json:"rows"`
	Cols  int `json:"cols"`
	// Selected is the radio option shown as selected.
	Selected string `json:"selected"`
	// Seen lists every mark kind in the chart, for failure messages.
	Seen string `json:"seen"`
	// Title is the page's h1.
	Title string `json:"title"`
}

// renderedJS reads what the dashboard shows, ignoring elements Streamlit
// marks stale while a rerun is under way.
const renderedJS = `(() => {
  const r = {kind: "", marks: 0, rows: 0, cols: 0, selected: "", title: "", seen: ""};
  const h1 = document.querySelector('[data-testid="stMain"] h1');
  if (h1) r.title = h1.textContent.trim();
  const sel = document.querySelector('[data-testid="stRadioOption"][data-selected="true"]');
  if (sel) r.selected = sel.textContent.trim();
  const main = document.querySelector('[data-testid="stMain"]');
  if (!main || main.querySelector('[data-stale="true"]')) return JSON.stringify(r);
  const table = main.querySelector('[data-testid="stTable"] table');
  if (table) {
    r.kind = "table";
    r.rows = table.querySelectorAll('tbody tr').length;
    r.cols = table.querySelectorAll('thead th').length;
    return JSON.stringify(r);
  }
  const kinds = {};
  for (const c of main.querySelectorAll('[data-testid="stVegaLiteChart"] svg [aria-roledescription$=" mark container"]')) {
    const k = c.getAttribute('aria-roledescription').replace(/ container$/, "");
    kinds[k] = (kinds[k] || 0) + c.querySelectorAll('[aria-roledescription]').length;
  }
  r.seen = Object.keys(kinds).join(",");
  for (const k of ["line mark", "rect mark", "area mark"]) {
    if (kinds[k]) { r.kind = k; r.marks = kinds[k]; break; }
  }
  return JSON.stringify(r);
})()`

// readRendered evaluates renderedJS in the tab.
func readRendered(ctx context.Context) (rendered, error) {
	var r rendered
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](renderedJS))
	if err != nil {
		return r, err
	}
	err = json.Unmarshal([]byte(s), &r)
	return r, err
}

// waitRendered polls the page until it shows kind, for at most limit.
func waitRendered(t testing.TB, ctx context.Context, kind string, limit time.Duration) rendered {
	t.Helper()
	deadline := time.Now().Add(limit)
	var last rendered
	var err error
	for time.Now().Before(deadline) {
		last, err = readRendered(ctx)
		if err == nil && last.Kind == kind {
			return last
		}
		time.Sleep(150 * time.Millisecond)
	}
	screenshot(t, ctx, "not-"+kind)
	t.Fatalf("page did not show %q within %s: last saw %+v (err %v)", kind, limit, last, err)
	return last
}

// optionSelector finds the sidebar radio option with the given label.
func optionSelector(label string) chromedp.JSPath {
	return chromedp.JSPath(fmt.Sprintf(
		`[...document.querySelectorAll('[data-testid="stRadioOption"]')].find(o => o.textContent.trim() === %q)`, label))
}

// selectMode clicks the sidebar option like a person would (a real mouse
// event at the element's position) and waits until the radio shows it as
// selected. The sidebar slides in after the first render, so a click that
// lands while it moves is tried again.
func selectMode(t testing.TB, ctx context.Context, label string) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		within(t, ctx, 30*time.Second, "click "+label, chromedp.Click(optionSelector(label), chromedp.NodeVisible))
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			if r, err := readRendered(ctx); err == nil && r.Selected == label {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		if attempt == 3 {
			screenshot(t, ctx, "unselected-"+label)
			t.Fatalf("radio option %q not selected after %d clicks", label, attempt)
		}
	}
}

// openDashboard loads the dashboard through moat in a fresh browser and
// waits for its first render (the line chart).
func openDashboard(t testing.TB, m *Moat) (context.Context, *webSocketLog) {
	t.Helper()
	start := time.Now()
	ctx := newBrowser(t, m.Cert)
	sockets := recordWebSockets(t, ctx)
	browserUp := time.Since(start)
	// Generous limits: on a loaded 2-core machine the first load of
	// Streamlit's 3 MB of JavaScript has taken 50 s.
	nctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	resp, err := chromedp.RunResponse(nctx, chromedp.Navigate(m.URL+"/"))
	if err != nil {
		t.Fatalf("open %s: %v", m.URL, err)
	}
	if resp.Status != 200 {
		t.Fatalf("open %s: status %d", m.URL, resp.Status)
	}
	if resp.SecurityState != "secure" {
		t.Errorf("Chromium rated moat's HTTPS %q, want secure (its certificate is trusted by key)", resp.SecurityState)
	}
	within(t, ctx, 90*time.Second, "wait for the sidebar radio",
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="stRadioOption"]`)))
	waitRendered(t, ctx, dashboardModes[0].kind, 60*time.Second)
	t.Logf("browser up in %s, dashboard rendered through moat %s later", browserUp.Round(time.Millisecond), (time.Since(start) - browserUp).Round(time.Millisecond))
	return ctx, sockets
}

// streamSocket returns the one /_stcore/stream WebSocket the page opened,
// failing unless there is exactly one, upgraded, still open.
func streamSocket(t testing.TB, m *Moat, sockets *webSocketLog) webSocketRecord {
	t.Helper()
	got := sockets.Matching("/_stcore/stream")
	if len(got) != 1 {
		t.Fatalf("browser opened %d /_stcore/stream WebSockets, want 1 (a reconnect means the first was cut): %+v", len(got), got)
	}
	ws := got[0]
	want := "wss://" + strings.TrimPrefix(m.URL, "https://") + "/_stcore/stream"
	if ws.URL != want || ws.Status != 101 || ws.Closed {
		t.Fatalf("stream WebSocket = %+v, want %s upgraded (101) and open", ws, want)
	}
	return ws
}

// TestStreamlitDashboardSwitchesModesBehindMoat is the seed's story end to
// end: a real Streamlit app behind moat on a public route, loaded in real
// headless Chromium over HTTPS, with Streamlit's XSRF protection and CORS
// checks at their defaults (on). Every click on the sidebar radio goes to
// Streamlit over moat's WebSocket proxy and the chart or table changes; the
// session then survives longer idle than the seed's load balancer allowed.
func TestStreamlitDashboardSwitchesModesBehindMoat(t *testing.T) {
	t.Parallel()
	st := sharedStreamlit(t)
	m := startMoat(t, dashboardConfig(st))
	ctx, sockets := openDashboard(t, m)

	first, err := readRendered(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if first.Title != "Streamlit Sample" {
		t.Errorf("title = %q, want the seed's %q", first.Title, "Streamlit Sample")
	}
	if first.Marks != 3 {
		t.Errorf("line chart has %d lines, want 3 (columns a, b, c)", first.Marks)
	}
	screenshot(t, ctx, "0-"+dashboardModes[0].kind)

	// Each mode in turn, then back to the first: every change is a rerun
	// that Streamlit performs on a message over the WebSocket.
	order := append(dashboardModes[1:], dashboardModes[0])
	prev := first.Kind
	for i, mode := range order {
		clicked := time.Now()
		selectMode(t, ctx, mode.label)
		r := waitRendered(t, ctx, mode.kind, 30*time.Second)
		if r.Kind == prev {
			t.Errorf("after selecting %q the page still shows %q", mode.label, prev)
		}
		prev = r.Kind
		t.Logf("%s (%s) rendered %s after the click", mode.label, mode.kind, time.Since(clicked).Round(time.Millisecond))
		if mode.kind == "table" && (r.Rows != 20 || r.Cols < 3) {
			t.Errorf("table has %d rows and %d header cells, want 20 rows of a, b, c", r.Rows, r.Cols)
		}
		screenshot(t, ctx, fmt.Sprintf("%d-%s", i+1, mode.kind))
	}

	ws := streamSocket(t, m, sockets)
	if ws.Frames < 2*len(order) {
		t.Errorf("only %d frames crossed the stream WebSocket for %d reruns", ws.Frames, len(order))
	}
	// Streamlit's XSRF protection is on: it set its token cookie, and the
	// browser offered the token as a WebSocket subprotocol moat passed on.
	cookies, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{m.URL + "/"}})
	if err != nil {
		t.Fatal(err)
	}
	xsrf := false
	for _, c := range cookies.Cookies {
		xsrf = xsrf || c.Name == "_streamlit_xsrf"
	}
	if !xsrf {
		t.Errorf("no _streamlit_xsrf cookie: is Streamlit's XSRF protection off? cookies: %+v", cookies.Cookies)
	}

	// moat's side: the WebSocket is open on its route now.
	if n, _ := m.Metric(t, "moat_websockets_open", `route="localhost"`); n != 1 {
		t.Errorf("moat_websockets_open{route=localhost} = %v, want 1", n)
	}

	// The seed's load balancer cut every WebSocket after 30 s (timeout_sec =
	// 30). Leave this one idle for longer, then rerun over the same socket.
	t.Run("the same WebSocket carries a rerun after 36 s idle", func(t *testing.T) {
		if testing.Short() {
			t.Skip("takes 36 s")
		}
		before := streamSocket(t, m, sockets)
		time.Sleep(idleFor)
		after := streamSocket(t, m, sockets) // still one socket, never closed
		if n, _ := m.Metric(t, "moat_websockets_open", `route="localhost"`); n != 1 {
			t.Errorf("after %s idle moat_websockets_open = %v, want 1", idleFor, n)
		}
		selectMode(t, ctx, dashboardModes[3].label)
		waitRendered(t, ctx, dashboardModes[3].kind, 30*time.Second)
		now := streamSocket(t, m, sockets)
		if now.Frames <= after.Frames {
			t.Errorf("the rerun after %s idle did not travel over the original WebSocket (frames %d → %d)", idleFor, after.Frames, now.Frames)
		}
		t.Logf("stream WebSocket frames: %d before, %d after %s idle, %d after a rerun", before.Frames, after.Frames, idleFor, now.Frames)
		screenshot(t, ctx, "after-idle")
	})

	// SIGTERM: moat drains, closing the open WebSocket (1001, going away)
	// rather than waiting for Streamlit, and exits cleanly; the access log
	// then has the upgrade.
	stopped := time.Now()
	if err := m.Stop(); err != nil {
		t.Errorf("moat did not exit cleanly on SIGTERM with a WebSocket open: %v", err)
	}
	t.Logf("moat drained and exited %s after SIGTERM", time.Since(stopped).Round(time.Millisecond))
	deadline := time.Now().Add(5 * time.Second)
	for !sockets.Matching("/_stcore/stream")[0].Closed && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if !sockets.Matching("/_stcore/stream")[0].Closed {
		t.Errorf("the browser's stream WebSocket is still open after moat stopped")
	}
	rec := m.WaitLog(t, 5*time.Second, func(r map[string]any) bool {
		return r["msg"] == "request" && r["path"] == "/_stcore/stream"
	})
	if status, _ := rec["status"].(float64); status != 101 {
		t.Errorf("access log for /_stcore/stream has status %v, want 101: %v", rec["status"], rec)
	}
}

// captionJS returns the "Signed in as …" caption the dashboard shows when
// Streamlit received an X-Moat-User-Email header, or "".
const captionJS = `(() => {
  const c = [...document.querySelectorAll('[data-testid="stMain"] [data-testid="stCaptionContainer"], [data-testid="stMain"] p')]
    .map(e => e.textContent.trim()).find(s => s.startsWith("Signed in as"));
  return c || "";
})()`

// idleFor is how long the WebSocket is left alone: longer than the 30 s that
// Google's load balancer allowed the seed's Streamlit (timeout_sec = 30
// bounds a WebSocket's life there).
const idleFor = 36 * time.Second

// TestStreamlitNeverSeesAnIdentityHeaderTheClientSent sends a forged
// X-Moat-User-Email from the browser. Straight to Streamlit it reaches the
// app (the control: the dashboard shows it); through moat's public route it
// must not, because moat deletes every header it owns before proxying.
func TestStreamlitNeverSeesAnIdentityHeaderTheClientSent(t *testing.T) {
	t.Parallel()
	st := sharedStreamlit(t)
	m := startMoat(t, dashboardConfig(st))
	ctx := newBrowser(t, m.Cert)
	const forged = "mallory@example.com"
	if _, err := chromedp.Call(ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{
		Headers: network.Headers{"X-Moat-User-Email": forged},
	}); err != nil {
		t.Fatal(err)
	}

	readCaption := func(url string) string {
		t.Helper()
		start := time.Now()
		defer func() { t.Logf("%s rendered in %s", url, time.Since(start).Round(time.Millisecond)) }()
		within(t, ctx, 90*time.Second, "open "+url, chromedp.Navigate(url),
			chromedp.WaitVisible(chromedp.CSS(`[data-testid="stRadioOption"]`)))
		waitRendered(t, ctx, dashboardModes[0].kind, 60*time.Second)
		c, err := chromedp.Run(ctx, chromedp.Evaluate[string](captionJS))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	if got := readCaption(st.URL + "/"); got != "Signed in as "+forged {
		screenshot(t, ctx, "control")
		t.Fatalf("control: straight to Streamlit the page shows %q, want the forged header shown; the test cannot prove anything", got)
	}
	if got := readCaption(m.URL + "/"); got != "" {
		screenshot(t, ctx, "forged")
		t.Errorf("through moat the page shows %q: a client-sent X-Moat-User-Email reached the app", got)
	}
}
