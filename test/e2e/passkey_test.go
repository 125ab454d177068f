package e2e

import (
	"context"
	"fmt"
	"html"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"
)

// whoAmI is a backend that shows who moat says the user is.
func whoAmI(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><title>app</title><h1 id="app">Signed in as %s</h1>`, html.EscapeString(r.Header.Get("X-Moat-User-Email")))
	}))
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL
}

// passkeyConfig is a host of moat's own users (password sign-in) whose
// route requires a second factor, in front of whoAmI.
func passkeyConfig(backend string) string {
	return fmt.Sprintf(`backends:
  app: {url: %q}
routes:
  - host: localhost
    backend: app
    title: "Sales dashboard"
    login: [password]
    allow: ["group:staff"]
    mfa: required
`, backend)
}

// addAuthenticator gives the browser tab a virtual platform authenticator
// (DevTools WebAuthn domain): it makes discoverable credentials, verifies
// the user (as a fingerprint reader would) and answers without a person.
func addAuthenticator(t testing.TB, ctx context.Context) webauthn.AuthenticatorID {
	t.Helper()
	if _, err := chromedp.Call(ctx, webauthn.Enable, webauthn.EnableParams{}); err != nil {
		t.Fatalf("WebAuthn.enable: %v", err)
	}
	res, err := chromedp.Call(ctx, webauthn.AddVirtualAuthenticator, webauthn.AddVirtualAuthenticatorParams{Options: &webauthn.VirtualAuthenticatorOptions{
		Protocol:                    webauthn.AuthenticatorProtocolCtap2,
		Ctap2version:                webauthn.Ctap2versionCtap21,
		Transport:                   webauthn.AuthenticatorTransportInternal,
		HasResidentKey:              true,
		HasUserVerification:         true,
		IsUserVerified:              true,
		AutomaticPresenceSimulation: false,
	}})
	if err != nil {
		t.Fatalf("WebAuthn.addVirtualAuthenticator: %v", err)
	}
	return res.AuthenticatorID
}

// touch runs actions with the authenticator answering (a person touching
// it), and leaves it waiting for a touch again: pending requests, such as
// the login page's autofill, stay pending as with a real authenticator.
func touch(t testing.TB, ctx context.Context, id webauthn.AuthenticatorID, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	presence := func(on bool) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.Call(ctx, webauthn.SetAutomaticPresenceSimulation, webauthn.SetAutomaticPresenceSimulationParams{AuthenticatorID: id, Enabled: on})
			return err
		})
	}
	within(t, ctx, 30*time.Second, what, append(append([]chromedp.Action[chromedp.Void]{presence(true)}, actions...), presence(false))...)
}

func credentials(t testing.TB, ctx context.Context, id webauthn.AuthenticatorID) []*webauthn.Credential {
	t.Helper()
	res, err := chromedp.Call(ctx, webauthn.GetCredentials, webauthn.GetCredentialsParams{AuthenticatorID: id})
	if err != nil {
		t.Fatalf("WebAuthn.getCredentials: %v", err)
	}
	return res.Credentials
}

func pageText(t testing.TB, ctx context.Context, sel string) string {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	s, err := chromedp.Run(tctx, chromedp.Text(chromedp.CSS(sel), chromedp.NodeVisible))
	if err != nil {
		screenshot(t, ctx, "failed-read-"+sanitize(sel))
		t.Fatalf("read %s: %v", sel, err)
	}
	return strings.TrimSpace(s)
}

// passkeyWalk is one person's way through passkeys in one language: the
// route requires a second factor, so after the password the user adds a
// passkey on the enrolment page; then signs in with password + passkey,
// sees the passkey on the account page, and signs in with the passkey
// alone.
type passkeyWalk struct {
	lang string
	// text the pages show in lang
	addLabel, signInLabel, useLabel, title string
}

var passkeyWalks = []passkeyWalk{
	{lang: "en", addLabel: "Add a passkey", signInLabel: "Sign in with a passkey", useLabel: "Use a passkey", title: "Passkeys"},
	{lang: "ja", addLabel: "パスキーを追加", signInLabel: "パスキーでサインイン", useLabel: "パスキーを使う", title: "パスキー"},
}

// TestPasskeysInChromium: in real Chromium with its virtual authenticator,
// in English and Japanese, a passkey meets a route's mfa: required, is the
// second step of a password sign-in, and signs in alone.
func TestPasskeysInChromium(t *testing.T) {
	t.Parallel()
	m := startMoat(t, passkeyConfig(whoAmI(t)))
	for _, walk := range passkeyWalks {
		t.Run(walk.lang, func(t *testing.T) {
			email, password := "kenji-"+walk.lang+"@example.com", "a long passphrase for passkeys"
			addUser(t, m, email, password, "staff")
			ctx := newBrowser(t, m.Cert)
			auth := addAuthenticator(t, ctx)
			shot := func(name string) { screenshot(t, ctx, walk.lang+"-"+name) }

			signInWithPassword := func() {
				t.Helper()
				within(t, ctx, 30*time.Second, "sign in with the password",
					chromedp.Navigate(m.URL+"/_moat/login?return_to=%2F&lang="+walk.lang),
					chromedp.WaitVisible(chromedp.CSS(`#email`)),
					chromedp.SendKeys(chromedp.CSS(`#email`), email),
					chromedp.SendKeys(chromedp.CSS(`#password`), password),
					chromedp.Submit(chromedp.CSS(`#password`)))
			}
			signOut := func() {
				t.Helper()
				within(t, ctx, 30*time.Second, "sign out",
					chromedp.Navigate(m.URL+"/_moat/logout"),
					chromedp.Click(chromedp.CSS(`form[action="/_moat/logout"] button`), chromedp.NodeVisible),
					chromedp.WaitVisible(chromedp.CSS(`#email`)))
			}
			atApp := func(what string) {
				t.Helper()
				within(t, ctx, 30*time.Second, what, chromedp.WaitVisible(chromedp.CSS(`#app`)))
				if got := pageText(t, ctx, `#app`); got != "Signed in as "+email {
					t.Fatalf("%s: the app says %q", what, got)
				}
			}

			// The route requires a second factor: after the password the
			// enrolment page offers a passkey beside the authenticator app.
			signInWithPassword()
			within(t, ctx, 30*time.Second, "the enrolment page offers a passkey", chromedp.WaitVisible(chromedp.CSS(`#passkey-add`)))
			if got := pageText(t, ctx, `#passkey-add`); got != walk.addLabel {
				t.Errorf("add button says %q, want %q", got, walk.addLabel)
			}
			shot("enrol")
			touch(t, ctx, auth, "add a passkey", chromedp.Click(chromedp.CSS(`#passkey-add`)), chromedp.WaitVisible(chromedp.CSS(`#app`)))
			atApp("the app opens once the passkey is added")
			creds := credentials(t, ctx, auth)
			if len(creds) != 1 || creds[0].RpID != "localhost" || !creds[0].IsResidentCredential {
				t.Fatalf("the authenticator holds %+v, want one discoverable credential for localhost", creds)
			}

			// Password + passkey: the second step offers the passkey only
			// (no authenticator app was set up).
			signOut()
			signInWithPassword()
			within(t, ctx, 30*time.Second, "the second step offers the passkey", chromedp.WaitVisible(chromedp.CSS(`#passkey-second-factor`)))
			if got := pageText(t, ctx, `#passkey-second-factor`); got != walk.useLabel {
				t.Errorf("second-step button says %q, want %q", got, walk.useLabel)
			}
			if n, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#code').length`)); n != 0 {
				t.Error("the second step asks for a code the user has no app for")
			}
			shot("second-step")
			touch(t, ctx, auth, "use the passkey", chromedp.Click(chromedp.CSS(`#passkey-second-factor`)), chromedp.WaitVisible(chromedp.CSS(`#app`)))
			atApp("the app opens after password + passkey")

			// The account page lists it: name, host, last use.
			within(t, ctx, 30*time.Second, "the account page", chromedp.Navigate(m.URL+"/_moat/account"), chromedp.WaitVisible(chromedp.CSS(`#passkeys`)))
			row := pageText(t, ctx, `#passkeys tbody tr`)
			if !strings.Contains(row, "Chrome") || !strings.Contains(row, "localhost") || strings.Count(row, "UTC") != 2 {
				t.Errorf("the account page lists %q, want the passkey's name, host, creation and last use", row)
			}
			shot("account")

			// The passkey alone.
			signOut()
			within(t, ctx, 30*time.Second, "the login page offers a passkey", chromedp.WaitVisible(chromedp.CSS(`#passkey-signin`)))
			if got := pageText(t, ctx, `#passkey-signin`); got != walk.signInLabel {
				t.Errorf("sign-in button says %q, want %q", got, walk.signInLabel)
			}
			shot("login")
			within(t, ctx, 30*time.Second, "the login page", chromedp.Navigate(m.URL+"/"), chromedp.WaitVisible(chromedp.CSS(`#passkey-signin`)))
			touch(t, ctx, auth, "sign in with the passkey alone", chromedp.Click(chromedp.CSS(`#passkey-signin`)), chromedp.WaitVisible(chromedp.CSS(`#app`)))
			atApp("the app opens after the passkey alone")

			// The login page also asks the browser to offer passkeys in the
			// email field's autofill (conditional mediation): choosing it
			// signs in without a click on the button.
			signOut()
			touch(t, ctx, auth, "sign in from the autofill", chromedp.Navigate(m.URL+"/"), chromedp.WaitVisible(chromedp.CSS(`#app`)))
			atApp("the app opens after the autofill's passkey")

			m.WaitLog(t, 5*time.Second, func(r map[string]any) bool {
				return r["msg"] == "audit" && r["action"] == "login.success" && r["user"] == email && r["detail"] == "passkey"
			})
			m.WaitLog(t, 5*time.Second, func(r map[string]any) bool {
				return r["msg"] == "audit" && r["action"] == "login.success" && r["user"] == email && r["detail"] == "password+passkey"
			})
		})
	}
}
