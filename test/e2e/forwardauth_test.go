package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/coder/websocket"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/moat-dev/moat/internal/testnet"
)

// echoApp is the app behind an ingress: it answers every request with the
// headers it saw (as JSON) and, at /ws, accepts a WebSocket whose first
// message is the same; it remembers every path it was asked for.
type echoApp struct {
	srv   *httptest.Server
	mu    sync.Mutex
	paths []string
}

// appSaw is what the app reports of a request.
type appSaw struct {
	Path   string              `json:"path"`
	Header map[string][]string `json:"header"`
}

func startEchoApp(t testing.TB) *echoApp {
	t.Helper()
	a := &echoApp{}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.paths = append(a.paths, r.URL.Path)
		a.mu.Unlock()
		report, _ := json.Marshal(appSaw{Path: r.URL.Path, Header: r.Header})
		if r.URL.Path == "/ws" {
			c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
			if err != nil {
				return
			}
			defer c.CloseNow()
			ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
			defer cancel()
			_ = c.Write(ctx, websocket.MessageText, report)
			for {
				typ, msg, err := c.Read(ctx)
				if err != nil {
					return
				}
				_ = c.Write(ctx, typ, msg)
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(report)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

// Addr is the app's host:port.
func (a *echoApp) Addr() string { return strings.TrimPrefix(a.srv.URL, "http://") }

// asked reports whether the app was ever asked for a path starting with p.
func (a *echoApp) asked(p string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, got := range a.paths {
		if strings.HasPrefix(got, p) {
			return true
		}
	}
	return false
}

// forwardAuthRoutes protects localhost for an ingress: everything for
// staff, under a policy that hides /secret, and /open/ for everyone.
const forwardAuthRoutes = `security_policies:
  guard:
    rules:
      - {priority: 100, expr: "request.path.startsWith('/secret')", action: "deny(404)"}
      - {priority: 2147483647, match: {src_ip_ranges: ["*"]}, action: allow}
routes:
  - {host: localhost, forward_auth: true, login: [password], allow: ["group:staff"], security_policy: guard}
  - {host: localhost, path_prefix: /open/, forward_auth: true, public: true}
`

// trustLocalIngress is the server setting that makes moat believe the
// ingresses, which connect from 127.0.0.1.
const trustLocalIngress = `trusted_proxies: ["127.0.0.1"]`

// TestForwardAuthBehindNginxAndCaddy puts the real nginx (auth_request)
// and the real Caddy (forward_auth) in front of moat and an app, and
// drives them as a browser and a script would: sign-in through the
// ingress, allow list and security policy decisions, the identity reaching
// the app over HTTP and a WebSocket, and the spoofing cases — a client's
// X-Forwarded-Uri, X-Forwarded-Host, X-Forwarded-Method or X-Moat-*
// headers change no decision and never reach the app.
func TestForwardAuthBehindNginxAndCaddy(t *testing.T) {
	t.Parallel()
	m := startMoat(t, forwardAuthRoutes, trustLocalIngress)
	const staff, outsider, pw = "kiko@example.com", "ren@example.com", "a long passphrase for the ingress test"
	addUser(t, m, staff, pw, "staff")
	addUser(t, m, outsider, pw, "sales")
	cert := newIngressCert(t)
	for _, kind := range ingressKinds {
		t.Run(kind, func(t *testing.T) {
			app := startEchoApp(t)
			in := startIngress(t, kind, m, app.Addr(), cert)
			anon := in.client(cert, nil)

			// Anonymous: a page navigation is sent to moat's login page
			// on the protected host, a script gets 401; the app sees
			// neither, whatever the client claims about its request.
			resp, _ := in.get(t, anon, "/reports?q=1", "Sec-Fetch-Mode", "navigate", "Accept", "text/html")
			if loc := resp.Header.Get("Location"); resp.StatusCode/100 != 3 || !strings.HasSuffix(loc, "/_moat/login?return_to=%2Freports%3Fq%3D1") {
				t.Errorf("anonymous navigation: %d Location %q, want a redirect to the login page", resp.StatusCode, loc)
			}
			resp, _ = in.get(t, anon, "/reports", "Sec-Fetch-Mode", "cors",
				"X-Forwarded-Uri", "/open/x", "X-Forwarded-Host", "elsewhere.example", "X-Forwarded-Method", "OPTIONS",
				"X-Original-URI", "/open/x", "X-Moat-User-Email", staff, "X-Moat-Assertion", "forged")
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("anonymous fetch claiming to be for /open/: %d, want 401", resp.StatusCode)
			}
			if app.asked("/reports") {
				t.Fatal("the app was asked for /reports by someone not signed in")
			}
			// A client asking moat's auth path itself, through the
			// ingress's route to moat's pages, names only that request.
			for _, path := range []string{"/_moat/auth", "/_moat/auth/nginx"} {
				resp, _ = in.get(t, anon, path, "X-Forwarded-Uri", "/open/x", "X-Forwarded-Host", "localhost", "X-Forwarded-Method", "GET", "X-Forwarded-Proto", "https")
				if resp.StatusCode/100 == 2 {
					t.Errorf("a client's own %s naming /open/x: %d", path, resp.StatusCode)
				}
			}

			// Public forward_auth route: no sign-in, and no identity the
			// client made up.
			resp, body := in.get(t, anon, "/open/status", "X-Moat-User-Email", staff, "X_Moat_User_Email", staff,
				"X-Moat-User-Groups", "admins", "X-Moat-Assertion", "forged")
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("public route: %d %s", resp.StatusCode, body)
			}
			noIdentity(t, "public route", decodeSeen(t, body))

			// Sign in through the ingress, on the protected host.
			kiko := in.client(cert, in.signIn(t, cert, staff, pw, "/reports"))
			u, _ := url.Parse(in.URL)
			kiko.Jar.SetCookies(u, []*http.Cookie{{Name: "theme", Value: "dark"}})
			resp, body = in.get(t, kiko, "/reports", "X-Moat-User-Email", "someone@else.example", "X_Moat_User_Email", "someone@else.example",
				"X-Moat-User-Groups", "admins", "X-Moat-Assertion", "forged", "X-Forwarded-Uri", "/secret/x")
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("signed-in staff: %d %s", resp.StatusCode, body)
			}
			s := decodeSeen(t, body)
			if got := first(s.Header, "X-Moat-User-Email"); got != staff {
				t.Errorf("the app saw X-Moat-User-Email %q, want moat's %s", got, staff)
			}
			if got := first(s.Header, "X-Moat-User-Groups"); got != "staff" {
				t.Errorf("the app saw X-Moat-User-Groups %q, want moat's staff", got)
			}
			claims := verifyThroughIngress(t, kiko, in.URL+"/_moat/jwks.json", first(s.Header, "X-Moat-Assertion"), "localhost")
			if claims.Email != staff {
				t.Errorf("the assertion names %q", claims.Email)
			}
			if got := first(s.Header, "Cookie"); got != "theme=dark" {
				t.Errorf("the app saw Cookie %q, want its own theme=dark and none of moat's", got)
			}
			for name := range s.Header {
				if strings.Contains(strings.ToLower(name), "moat_") {
					t.Errorf("the app saw the look-alike header %s", name)
				}
			}

			// The route's allow list and security policy decide, as they
			// would for a route moat proxies; a client's X-Forwarded-Uri
			// does not move the decision to another path.
			ren := in.client(cert, in.signIn(t, cert, outsider, pw, "/reports"))
			if resp, _ := in.get(t, ren, "/reports/ren"); resp.StatusCode != http.StatusForbidden {
				t.Errorf("a user the allow list refuses: %d, want 403", resp.StatusCode)
			}
			wantPolicy := map[string]int{"nginx": http.StatusForbidden, "caddy": http.StatusNotFound}[kind]
			resp, _ = in.get(t, kiko, "/secret/plans", "X-Forwarded-Uri", "/reports", "X-Forwarded-Host", "localhost")
			if resp.StatusCode != wantPolicy {
				t.Errorf("a path the policy hides, with a client's X-Forwarded-Uri naming another: %d, want %d", resp.StatusCode, wantPolicy)
			}
			if app.asked("/reports/ren") || app.asked("/secret") {
				t.Error("the app was asked for a refused request")
			}

			// A WebSocket upgrade passes through the ingress with the
			// identity on its handshake; an anonymous one is refused.
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			ws, _, err := websocket.Dial(ctx, "wss"+strings.TrimPrefix(in.URL, "https")+"/ws", &websocket.DialOptions{HTTPClient: kiko,
				HTTPHeader: http.Header{"X-Moat-User-Email": {"someone@else.example"}}})
			if err != nil {
				t.Fatalf("signed-in WebSocket through %s: %v", kind, err)
			}
			defer ws.CloseNow()
			_, msg, err := ws.Read(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got := first(decodeSeen(t, string(msg)).Header, "X-Moat-User-Email"); got != staff {
				t.Errorf("the WebSocket handshake reached the app as %q, want %s", got, staff)
			}
			if err := ws.Write(ctx, websocket.MessageText, []byte("ping")); err != nil {
				t.Fatal(err)
			}
			if _, msg, err = ws.Read(ctx); err != nil || string(msg) != "ping" {
				t.Errorf("echo over the socket: %q %v", msg, err)
			}
			ws.Close(websocket.StatusNormalClosure, "")
			_, resp, err = websocket.Dial(ctx, "wss"+strings.TrimPrefix(in.URL, "https")+"/ws", &websocket.DialOptions{HTTPClient: anon})
			if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("anonymous WebSocket: %v (status %v), want 401", err, resp)
			}
		})
	}

	// Straight to moat, past the ingress: from an address moat does not
	// trust, X-Forwarded-* cannot name a request, even a public one.
	direct := testnet.Pin{Addr: m.HTTPSAddr, From: "127.0.0.2"}.Client()
	req, _ := http.NewRequest(http.MethodGet, "https://localhost/_moat/auth", nil)
	req.Header.Set("X-Forwarded-Method", "GET")
	req.Header.Set("X-Forwarded-Proto", "https")
	req.Header.Set("X-Forwarded-Host", "localhost")
	req.Header.Set("X-Forwarded-Uri", "/open/x")
	resp, err := direct.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("an auth request from an untrusted address: %d, want 403", resp.StatusCode)
	}
}

// TestForwardAuthSignInWithARealBrowserBehindNginxAndCaddy opens the
// Streamlit dashboard through each ingress in Chromium: moat's login page
// on the dashboard's own host, then the dashboard rendering over its
// WebSocket (through the ingress) with the user's name, which Streamlit
// read from the X-Moat-User-Email the ingress took from moat's answer.
func TestForwardAuthSignInWithARealBrowserBehindNginxAndCaddy(t *testing.T) {
	t.Parallel()
	st := sharedStreamlit(t)
	m := startMoat(t, `routes:
  - {host: localhost, forward_auth: true, title: "Sales dashboard", login: [password], allow: ["group:customer-a"]}
`, trustLocalIngress)
	const email, password = "yuki@customer-a.example", "a long passphrase for the VPN users"
	addUser(t, m, email, password, "customer-a")
	cert := newIngressCert(t)
	for _, kind := range ingressKinds {
		t.Run(kind, func(t *testing.T) {
			in := startIngress(t, kind, m, st.Addr, cert)
			ctx := newBrowser(t, cert.Cert)
			within(t, ctx, 60*time.Second, "open the dashboard through "+kind,
				chromedp.Navigate(in.URL+"/"),
				chromedp.WaitVisible(chromedp.CSS(`input[name=email]`)))
			loc, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`location.origin + location.pathname`))
			if loc != in.URL+"/_moat/login" {
				t.Errorf("the dashboard sent the browser to %s, want %s/_moat/login", loc, in.URL)
			}
			within(t, ctx, 60*time.Second, "sign in through "+kind,
				chromedp.SendKeys(chromedp.CSS(`input[name=email]`), email),
				chromedp.SendKeys(chromedp.CSS(`input[name=password]`), password),
				chromedp.Submit(chromedp.CSS(`input[name=password]`)),
				chromedp.WaitVisible(chromedp.CSS(`[data-testid="stRadioOption"]`)))
			waitRendered(t, ctx, dashboardModes[0].kind, 60*time.Second)
			deadline := time.Now().Add(20 * time.Second)
			var caption string
			for time.Now().Before(deadline) && caption == "" {
				caption, _ = chromedp.Run(ctx, chromedp.Evaluate[string](captionJS))
				if caption == "" {
					time.Sleep(200 * time.Millisecond)
				}
			}
			if caption != "Signed in as "+email {
				t.Errorf("dashboard caption %q, want the X-Moat-User-Email from moat's answer", caption)
			}
			selectMode(t, ctx, dashboardModes[3].label)
			waitRendered(t, ctx, dashboardModes[3].kind, 30*time.Second)
			screenshot(t, ctx, "dashboard-behind-"+kind)
		})
	}
}

// client is an HTTP client for the ingress that trusts its certificate,
// keeps cookies in jar (a new one when nil) and follows no redirects.
func (in *ingress) client(cert *ingressCert, jar http.CookieJar) *http.Client {
	if jar == nil {
		jar, _ = cookiejar.New(nil)
	}
	return &http.Client{
		Transport:     &http.Transport{TLSClientConfig: cert.TLSConfig()},
		Jar:           jar,
		Timeout:       20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// get requests path from the ingress with headers (name, value pairs).
func (in *ingress) get(t testing.TB, c *http.Client, path string, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, in.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s through %s: %v", path, in.Name, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp, string(body)
}

// signIn signs email in through the ingress's login page, as a browser
// would, and returns the cookie jar holding the session.
func (in *ingress) signIn(t testing.TB, cert *ingressCert, email, password, returnTo string) http.CookieJar {
	t.Helper()
	c := in.client(cert, nil)
	_, page := in.get(t, c, "/_moat/login?return_to="+url.QueryEscape(returnTo), "Sec-Fetch-Mode", "navigate", "Accept", "text/html")
	token := csrfField.FindStringSubmatch(page)
	if token == nil {
		t.Fatalf("the login page through %s has no CSRF token:\n%s", in.Name, page)
	}
	form := url.Values{"csrf": {token[1]}, "email": {email}, "password": {password}, "return_to": {returnTo}}
	req, _ := http.NewRequest(http.MethodPost, in.URL+"/_moat/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", in.URL)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != returnTo {
		t.Fatalf("signing %s in through %s: %d Location %q", email, in.Name, resp.StatusCode, resp.Header.Get("Location"))
	}
	return c.Jar
}

func decodeSeen(t testing.TB, body string) appSaw {
	t.Helper()
	var s appSaw
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatalf("the app's report %q: %v", body, err)
	}
	return s
}

func first(h map[string][]string, name string) string {
	if vs := http.Header(h).Values(name); len(vs) > 0 {
		return vs[0]
	}
	return ""
}

// noIdentity fails when the app saw any header under moat's names.
func noIdentity(t testing.TB, what string, s appSaw) {
	t.Helper()
	for name, vs := range s.Header {
		l := strings.ToLower(name)
		if strings.HasPrefix(l, "x-moat") || strings.HasPrefix(l, "x_moat") {
			t.Errorf("%s: the app saw %s: %q", what, name, vs)
		}
	}
}

// assertionClaims is what an app reads from X-Moat-Assertion.
type assertionClaims struct {
	jwt.Claims
	Email string `json:"email"`
}

// verifyThroughIngress checks an assertion as the app would, with the key
// set fetched from moat's JWKS through the ingress.
func verifyThroughIngress(t testing.TB, c *http.Client, jwksURL, token, audience string) assertionClaims {
	t.Helper()
	resp, err := c.Get(jwksURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&set); err != nil {
		t.Fatalf("JWKS through the ingress: %v", err)
	}
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatalf("the app's X-Moat-Assertion %q: %v", token, err)
	}
	keys := set.Key(tok.Headers[0].KeyID)
	if len(keys) != 1 {
		t.Fatalf("kid %q is not in the JWKS", tok.Headers[0].KeyID)
	}
	var claims assertionClaims
	if err := tok.Claims(keys[0].Key, &claims); err != nil {
		t.Fatalf("assertion signature: %v", err)
	}
	if err := claims.ValidateWithLeeway(jwt.Expected{AnyAudience: jwt.Audience{audience}, Time: time.Now()}, 30*time.Second); err != nil {
		t.Fatalf("assertion claims: %v", err)
	}
	return claims
}
