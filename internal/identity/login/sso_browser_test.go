package login_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/moat-dev/moat/internal/auth/authtest"
	"github.com/moat-dev/moat/internal/testtool"
)

// TestSSOSignInInARealBrowser: headless Chromium opens a protected
// dashboard, moat sends it straight to the OpenID Provider's login page
// (the route's only way to sign in), the person signs in there, and the
// browser comes back through /_moat/oidc/callback to the dashboard, signed
// in. Chromium trusts the test server's certificate by its key (a
// __Host- cookie needs a secure origin); nothing else is ignored.
func TestSSOSignInInARealBrowser(t *testing.T) {
	path := testtool.Chromium(t)
	h := authtest.NewSSO(t, nil)
	cert := h.Srv.Certificate()
	pin := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
		chromedp.ExecPath(path),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("ignore-certificate-errors-spki-list", base64.StdEncoding.EncodeToString(pin[:])),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelTab(); cancelAlloc() })
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()

	if err := chromedp.Do(ctx,
		chromedp.Navigate(h.Srv.URL+"/sso/"),
		chromedp.WaitVisible(chromedp.CSS("#provider-login")),
	); err != nil {
		t.Fatalf("open the dashboard and reach the provider's login page: %v", err)
	}
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil || !strings.HasPrefix(loc, h.OP.Issuer+"/login") {
		t.Fatalf("the browser is at %s (%v), want the provider's login page", loc, err)
	}
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS("#email"), "alice@example.com"),
		chromedp.SendKeys(chromedp.CSS("#password"), authtest.SSOPassword),
		chromedp.Click(chromedp.CSS("#sign-in")),
		chromedp.WaitVisible(chromedp.CSS("#dashboard")),
	); err != nil {
		t.Fatalf("sign in at the provider and come back: %v", err)
	}
	who, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#who")))
	if err != nil {
		t.Fatal(err)
	}
	loc, _ = chromedp.Run(ctx, chromedp.Location())
	if who != "Signed in as alice@example.com" || loc != h.Srv.URL+"/sso/" {
		t.Fatalf("at %s the dashboard says %q, want alice signed in at /sso/", loc, who)
	}
}
