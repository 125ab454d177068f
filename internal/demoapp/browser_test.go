//go:build browser

package demoapp

// These tests drive the dashboard in real headless Chromium. They need a
// chromium binary on PATH (Debian: apt-get install chromium) and run with
//
//	go test -tags browser ./internal/demoapp
//
// Set DEMOAPP_SCREENSHOTS=DIR to keep desktop and phone screenshots.

import (
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// newBrowser starts headless Chromium for one test and collects every
// console error, exception and browser-log warning (CSP violations land
// there) that the page produces.
func newBrowser(t *testing.T) (context.Context, func() []string) {
	t.Helper()
	path := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		t.Fatal("no Chromium on PATH: install it (apt-get install chromium) before running the browser tests")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.Headless, chromedp.DisableGPU)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })

	var mu sync.Mutex
	var problems []string
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleWarning || m.IsException() {
				mu.Lock()
				problems = append(problems, m.String())
				mu.Unlock()
			}
		}
	}()
	return ctx, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), problems...)
	}
}

// within runs steps with a deadline, on a browser context that has
// already started (a timeout on the first run would bound the browser).
func within(ctx context.Context, steps ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	return chromedp.Do(ctx, steps...)
}

func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("DEMOAPP_SCREENSHOTS")
	if dir == "" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// evalBool evaluates a JavaScript expression in the page.
func evalBool(t *testing.T, ctx context.Context, expr string) bool {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

func TestBrowserSwitchesEveryModeOverTheWebSocketUnderCSP(t *testing.T) {
	srv := httptest.NewServer(New())
	t.Cleanup(srv.Close)
	ctx, problems := newBrowser(t)

	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/")); err != nil {
		t.Fatalf("load page: %v", err)
	}
	if err := within(ctx, chromedp.WaitVisible(chromedp.CSS(`#view[data-mode="line"] svg.chart-line`))); err != nil {
		t.Fatalf("wait for the line chart: %v", err)
	}
	if err := within(ctx, chromedp.WaitReady(chromedp.CSS(`html[data-ws="open"]`))); err != nil {
		t.Fatalf("wait for the WebSocket: %v", err)
	}
	// A marker that a full page load would wipe: a switch must not reload.
	evalBool(t, ctx, `(window.__noReload = true)`)
	screenshot(t, ctx, "desktop-line")

	for _, tt := range []struct{ mode, sel string }{
		{"bar", `#view[data-mode="bar"] svg.chart.chart-bar`},
		{"area", `#view[data-mode="area"] svg.chart.chart-area`},
		{"table", `#view[data-mode="table"] table#data-table`},
		{"line", `#view[data-mode="line"] svg.chart.chart-line`},
	} {
		t.Run(tt.mode, func(t *testing.T) {
			if err := within(ctx,
				chromedp.Click(chromedp.CSS(`input[name="mode"][value="`+tt.mode+`"]`)),
				chromedp.WaitVisible(chromedp.CSS(tt.sel)),
			); err != nil {
				t.Fatalf("switch to %s: %v", tt.mode, err)
			}
			if !evalBool(t, ctx, `window.__noReload === true`) {
				t.Error("the page reloaded instead of switching over the WebSocket")
			}
			loc, err := chromedp.Run(ctx, chromedp.Location())
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasSuffix(loc, "?mode="+tt.mode) {
				t.Errorf("location = %s, want it to end in ?mode=%s", loc, tt.mode)
			}
			screenshot(t, ctx, "desktop-"+tt.mode)
		})
	}

	if err := within(ctx,
		chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile),
		chromedp.Navigate(srv.URL+"/?mode=bar"),
		chromedp.WaitVisible(chromedp.CSS(`svg.chart-bar`)),
	); err != nil {
		t.Fatalf("phone view: %v", err)
	}
	screenshot(t, ctx, "phone-bar")
	if err := within(ctx, chromedp.Navigate(srv.URL+"/?mode=table"), chromedp.WaitVisible(chromedp.CSS(`#data-table`))); err != nil {
		t.Fatalf("phone table: %v", err)
	}
	screenshot(t, ctx, "phone-table")

	if p := problems(); len(p) > 0 {
		t.Errorf("the browser reported problems (CSP violations, errors):\n%s", strings.Join(p, "\n"))
	}
}

func TestBrowserWithoutJavaScriptSwitchesByFormGet(t *testing.T) {
	srv := httptest.NewServer(New())
	t.Cleanup(srv.Close)
	ctx, _ := newBrowser(t)
	if _, err := chromedp.Call(ctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true}); err != nil {
		t.Fatalf("disable JavaScript: %v", err)
	}
	if err := within(ctx,
		chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#view[data-mode="line"] svg.chart-line`)),
		chromedp.Click(chromedp.CSS(`input[name="mode"][value="table"]`)),
		chromedp.Click(chromedp.CSS(`#mode-form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#view[data-mode="table"] #data-table`)),
	); err != nil {
		t.Fatalf("switch without JavaScript: %v", err)
	}
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(loc, "/?mode=table") {
		t.Errorf("location = %s, want /?mode=table", loc)
	}
}
