package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/moat-dev/moat/internal/ratelimit/redistest"
	"github.com/moat-dev/moat/internal/store/storetest"
)

// fanoutBound is how soon a change made on one instance, or by the CLI,
// must take effect on every other instance (issue 9).
const fanoutBound = time.Second

// identityApp is the app behind a cluster: a page answers with the
// identity moat sent it, as JSON, and a WebSocket stays open, echoing.
func identityApp(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			return
		}
		if r.Header.Get("Upgrade") != "" {
			ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
			if err != nil {
				return
			}
			defer ws.CloseNow()
			ctx := context.Background()
			for {
				typ, msg, err := ws.Read(ctx)
				if err != nil {
					return
				}
				if err := ws.Write(ctx, typ, msg); err != nil {
					return
				}
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{
			"email":     r.Header.Get("X-Moat-User-Email"),
			"groups":    r.Header.Get("X-Moat-User-Groups"),
			"name":      r.Header.Get("X-Moat-User-Name"),
			"assertion": r.Header.Get("X-Moat-Assertion"),
		})
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// fanoutRoutes is the configuration a fan-out test serves: the app for
// staff (and scripts with a token) on /, and for ops on /ops/.
const fanoutRoutes = `identity:
  jwks_max_age: 2s
backends:
  app: {url: %q, health_path: /health}
routes:
  - {host: localhost, backend: app, login: [password], allow: ["group:staff"], bearer: true}
  - {host: localhost, path_prefix: /ops/, backend: app, login: [password], allow: ["group:ops"]}
`

// startPair starts two moat instances sharing one store, whose fan-out
// runs over transport: "postgres" (a PostgreSQL store: LISTEN/NOTIFY) or
// "redis" (one SQLite file and counters on Redis: pub/sub).
func startPair(t *testing.T, transport string) (one, two *Moat) {
	t.Helper()
	rest := fmt.Sprintf(fanoutRoutes, identityApp(t))
	var cfg string
	switch transport {
	case "postgres":
		cfg = clusterConfig(t, storetest.Postgres(t), rest)
	case "redis":
		cfg = clusterConfig(t, filepath.Join(t.TempDir(), "moat.db"), "counters: "+redistest.Start(t)+"\n"+rest)
	default:
		t.Fatalf("unknown transport %q", transport)
	}
	return startMoat(t, cfg), startMoat(t, cfg)
}

// visitor is someone using the cluster from one browser: a cookie jar that
// every instance sees (they all answer on localhost).
type visitor struct {
	email, password string
	jar             http.CookieJar
}

func newVisitor(email string) *visitor {
	jar, _ := cookiejar.New(nil)
	return &visitor{email: email, password: "correct horse battery " + strings.Split(email, "@")[0], jar: jar}
}

// client is p's HTTP/1.1 client to m (WebSockets upgrade over HTTP/1.1).
func (p *visitor) client(m *Moat) *http.Client {
	c := m.Client()
	tr := c.Transport.(*http.Transport)
	tr.ForceAttemptHTTP2 = false
	tr.TLSClientConfig = tr.TLSClientConfig.Clone()
	tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
	c.Jar = p.jar
	return c
}

// form loads page on m and posts its form to action with fields added, as
// a browser does; it returns moat's answer and when the post was sent.
func (p *visitor) form(t *testing.T, m *Moat, page, action string, fields url.Values) (*http.Response, time.Time) {
	t.Helper()
	c := p.client(m)
	req, _ := http.NewRequest(http.MethodGet, m.URL+page, nil)
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	req.Header.Set("Accept", "text/html")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	token := csrfInput.FindStringSubmatch(readAll(t, resp))
	if token == nil {
		t.Fatalf("%s on %s has no CSRF token", page, m.URL)
	}
	if fields == nil {
		fields = url.Values{}
	}
	fields.Set("csrf", token[1])
	req, _ = http.NewRequest(http.MethodPost, m.URL+action, strings.NewReader(fields.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", m.URL)
	posted := time.Now()
	if resp, err = c.Do(req); err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	return resp, posted
}

// signIn signs p in on m.
func (p *visitor) signIn(t *testing.T, m *Moat) {
	t.Helper()
	resp, _ := p.form(t, m, "/_moat/login?return_to=/", "/_moat/login", url.Values{"email": {p.email}, "password": {p.password}, "return_to": {"/"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("%s signing in on %s: %d to %q, want 303 to /", p.email, m.URL, resp.StatusCode, resp.Header.Get("Location"))
	}
}

// signOut signs p out on m and returns when the sign-out was posted.
func (p *visitor) signOut(t *testing.T, m *Moat) time.Time {
	t.Helper()
	resp, posted := p.form(t, m, "/_moat/logout", "/_moat/logout", nil)
	if resp.StatusCode/100 != 3 {
		t.Fatalf("%s signing out on %s: %d", p.email, m.URL, resp.StatusCode)
	}
	return posted
}

// seen is what the app was told on a page load through m: the status and
// the identity headers.
func (p *visitor) seen(t *testing.T, m *Moat, path string) (int, map[string]string) {
	t.Helper()
	resp, err := p.client(m).Get(m.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	var got map[string]string
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatalf("%s: %v\n%s", path, err, body)
		}
	}
	return resp.StatusCode, got
}

// socket is an open WebSocket through moat whose end a test awaits.
type socket struct {
	ws     *websocket.Conn
	closed chan closing
}

// closing is how and when moat closed a socket.
type closing struct {
	code   websocket.StatusCode
	reason string
	at     time.Time
}

// openSocket opens a WebSocket on path through m as c, with header, and
// starts reading it (the app echoes; moat's close ends the read).
func openSocket(t *testing.T, m *Moat, c *http.Client, path string, header http.Header) *socket {
	t.Helper()
	hc := *c
	hc.Timeout = 0
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "wss://localhost"+strings.TrimPrefix(m.URL, "https://localhost")+path, &websocket.DialOptions{HTTPClient: &hc, HTTPHeader: header})
	if err != nil {
		t.Fatalf("WebSocket %s through %s: %v", path, m.URL, err)
	}
	t.Cleanup(func() { ws.CloseNow() })
	s := &socket{ws: ws, closed: make(chan closing, 1)}
	go func() {
		for {
			if _, _, err := ws.Read(context.Background()); err != nil {
				at := time.Now()
				var ce websocket.CloseError
				errors.As(err, &ce)
				s.closed <- closing{code: ce.Code, reason: ce.Reason, at: at}
				return
			}
		}
	}()
	if err := ws.Write(ctx, websocket.MessageText, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	return s
}

// open reports whether the socket still answers a ping.
func (s *socket) open() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return s.ws.Ping(ctx) == nil
}

// awaitClose waits up to limit for moat to close s.
func (s *socket) awaitClose(t *testing.T, limit time.Duration) closing {
	t.Helper()
	select {
	case c := <-s.closed:
		return c
	case <-time.After(limit):
		t.Fatalf("the socket is still open %s later", limit)
		return closing{}
	}
}

// cli runs a moat command against m's configuration, as an operator does
// from a shell on no instance, and returns its output and when it started
// (the change is made some time after: the process starts, loads the
// configuration and opens the store first).
func cli(t *testing.T, m *Moat, stdin string, args ...string) (string, time.Time) {
	t.Helper()
	cmd := exec.Command(moatBin, append(args, "-c", m.ConfigPath)...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin + "\n")
	}
	started := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("moat %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	if strings.Contains(string(out), "could not be told") {
		t.Errorf("moat %s could not tell the instances:\n%s", strings.Join(args, " "), out)
	}
	return string(out), started
}

// latencies are how long changes took to reach the other instance, by
// kind of change: from the moment the change was asked for (the sign-out
// posted, the CLI started) to its effect on the other instance, an upper
// bound of the fan-out's own delay.
type latencies map[string][]time.Duration

// add records one change's latency, which must be within fanoutBound.
func (l latencies) add(t *testing.T, kind string, d time.Duration) {
	t.Helper()
	l[kind] = append(l[kind], d)
	if d > fanoutBound {
		t.Errorf("%s took %s to reach the other instance, more than %s", kind, d.Round(time.Millisecond), fanoutBound)
	}
}

func (l latencies) report(t *testing.T, transport string) {
	var all []time.Duration
	kinds := make([]string, 0, len(l))
	for k := range l {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	for _, k := range kinds {
		ds := slices.Clone(l[k])
		slices.Sort(ds)
		all = append(all, ds...)
		t.Logf("%s: %s: n=%d p50 %s max %s", transport, k, len(ds), ds[len(ds)/2].Round(time.Millisecond), ds[len(ds)-1].Round(time.Millisecond))
	}
	slices.Sort(all)
	t.Logf("%s: every change: n=%d p50 %s max %s", transport, len(all), all[len(all)/2].Round(time.Millisecond), all[len(all)-1].Round(time.Millisecond))
}

var (
	patRe   = regexp.MustCompile(`moat_pat_[A-Za-z0-9_-]+`)
	tokenID = regexp.MustCompile(`Token (\S+) for`)
)

// TestChangesReachEveryInstanceWithinASecond: two moat processes share a
// store; a sign-out on one, and changes made by the CLI from a shell on
// neither (a group removed, an account disabled, a token revoked, a key
// rotated), take effect on the other within a second, over PostgreSQL's
// LISTEN/NOTIFY and over Redis pub/sub. Removing the group a route allows
// closes the user's socket on that route (1008) and asks the socket on the
// route they keep to reconnect (1012: the app was told the old groups),
// which it does, and is told the new ones; a token's revocation closes its
// socket and leaves the user's browser socket open. The test reports p50
// and max per change.
func TestChangesReachEveryInstanceWithinASecond(t *testing.T) {
	for _, transport := range []string{"postgres", "redis"} {
		t.Run(transport, func(t *testing.T) {
			one, two := startPair(t, transport)
			lat := latencies{}

			ann := newVisitor("ann@example.com")
			addUser(t, one, ann.email, ann.password, "staff")
			for range 8 {
				ann.jar, _ = cookiejar.New(nil)
				ann.signIn(t, one)
				s := openSocket(t, two, ann.client(two), "/stream", nil)
				signedOut := ann.signOut(t, one)
				c := s.awaitClose(t, 5*time.Second)
				if c.code != websocket.StatusPolicyViolation {
					t.Errorf("after sign-out the socket on the other instance closed with %d %q, want 1008", c.code, c.reason)
				}
				lat.add(t, "sign-out on one instance closes the session's socket on the other", c.at.Sub(signedOut))
				if code, _ := ann.seen(t, two, "/"); code == http.StatusOK {
					t.Error("the signed-out session still opens the app on the other instance")
				}
			}

			bob := newVisitor("bob@example.com")
			addUser(t, one, bob.email, bob.password, "staff", "ops")
			bob.signIn(t, one)
			for i := range 6 {
				if i > 0 {
					cli(t, one, "", "users", "set-groups", bob.email, "staff", "ops")
					// Until the other instance applied it, its cache
					// may still hold the previous groups.
					deadline := time.Now().Add(5 * time.Second)
					for code, _ := bob.seen(t, two, "/ops/"); code != http.StatusOK; code, _ = bob.seen(t, two, "/ops/") {
						if time.Now().After(deadline) {
							t.Fatal("the other instance never let bob into /ops/ again")
						}
						time.Sleep(10 * time.Millisecond)
					}
				}
				ops := openSocket(t, two, bob.client(two), "/ops/stream", nil)
				dash := openSocket(t, two, bob.client(two), "/stream", nil)
				_, changed := cli(t, one, "", "users", "set-groups", bob.email, "staff")
				c := ops.awaitClose(t, 5*time.Second)
				if c.code != websocket.StatusPolicyViolation || c.reason != "access removed" {
					t.Errorf("the socket of the route bob lost closed with %d %q, want 1008 access removed", c.code, c.reason)
				}
				lat.add(t, "CLI set-groups closes the socket of the lost route", c.at.Sub(changed))
				c = dash.awaitClose(t, 5*time.Second)
				if c.code != websocket.StatusCode(1012) || c.reason != "identity changed" {
					t.Errorf("the socket of the route bob keeps closed with %d %q, want 1012 identity changed", c.code, c.reason)
				}
				lat.add(t, "CLI set-groups asks the socket of a kept route to reconnect", c.at.Sub(changed))
			}
			// Reconnected, the kept route's app is told the new groups.
			again := openSocket(t, two, bob.client(two), "/stream", nil)
			if code, got := bob.seen(t, two, "/"); code != http.StatusOK || got["groups"] != "staff" {
				t.Errorf("after the change the app on the other instance is told %d %q, want 200 staff", code, got["groups"])
			}
			if code, _ := bob.seen(t, two, "/ops/"); code != http.StatusForbidden {
				t.Errorf("/ops/ after the change: %d, want 403", code)
			}

			// A token's revocation closes its socket; the browser's stays.
			for range 4 {
				out, _ := cli(t, one, "", "tokens", "create", bob.email, "--name", "script", "--ttl", "1h")
				token, id := patRe.FindString(out), tokenID.FindStringSubmatch(out)
				if token == "" || id == nil {
					t.Fatalf("tokens create printed:\n%s", out)
				}
				script := openSocket(t, two, (&visitor{}).client(two), "/stream", http.Header{"Authorization": {"Bearer " + token}})
				_, revoked := cli(t, one, "", "tokens", "revoke", id[1])
				c := script.awaitClose(t, 5*time.Second)
				if c.code != websocket.StatusPolicyViolation {
					t.Errorf("the revoked token's socket closed with %d %q, want 1008", c.code, c.reason)
				}
				lat.add(t, "CLI tokens revoke closes the token's socket", c.at.Sub(revoked))
				if !again.open() {
					t.Fatal("revoking a token closed bob's browser socket")
				}
			}

			// Disabling an account ends its sessions everywhere.
			cyd := newVisitor("cyd@example.com")
			addUser(t, one, cyd.email, cyd.password, "staff")
			for i := range 3 {
				if i > 0 {
					cli(t, one, "", "users", "enable", cyd.email)
				}
				cyd.jar, _ = cookiejar.New(nil)
				cyd.signIn(t, one)
				s := openSocket(t, two, cyd.client(two), "/stream", nil)
				_, disabled := cli(t, one, "", "users", "disable", cyd.email)
				c := s.awaitClose(t, 5*time.Second)
				if c.code != websocket.StatusPolicyViolation {
					t.Errorf("the disabled account's socket closed with %d %q, want 1008", c.code, c.reason)
				}
				lat.add(t, "CLI disable closes the account's socket", c.at.Sub(disabled))
				if code, _ := cyd.seen(t, two, "/"); code == http.StatusOK {
					t.Error("the disabled account's session still opens the app on the other instance")
				}
			}

			// A rotated key is in the other instance's JWKS at once.
			for range 3 {
				out, rotated := cli(t, one, "", "keys", "rotate")
				kid := strings.TrimSuffix(strings.Fields(strings.TrimPrefix(out, "new signing key "))[0], ":")
				for !strings.Contains(jwks(t, two), kid) {
					if time.Since(rotated) > 5*time.Second {
						t.Fatalf("the other instance does not publish key %s 5 s after the rotation", kid)
					}
					time.Sleep(5 * time.Millisecond)
				}
				lat.add(t, "CLI keys rotate publishes the key on the other instance", time.Since(rotated))
			}
			lat.report(t, transport)
		})
	}
}

// jwks returns m's /_moat/jwks.json.
func jwks(t *testing.T, m *Moat) string {
	t.Helper()
	resp, err := m.Client().Get(m.URL + "/_moat/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// strictVerifier is an app verifying X-Moat-Assertion the strictest way
// moat allows: it keeps the JWKS it fetched for exactly the Cache-Control
// max-age moat sent, and fetches it again only when that has passed, never
// because a kid is unknown. Every fetch goes to the next instance, as a
// load balancer would send it.
type strictVerifier struct {
	instances []*Moat
	fetches   int
	keys      jose.JSONWebKeySet
	until     time.Time
}

func (v *strictVerifier) fetch(t *testing.T) {
	t.Helper()
	m := v.instances[v.fetches%len(v.instances)]
	v.fetches++
	resp, err := m.Client().Get(m.URL + "/_moat/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	cc := resp.Header.Get("Cache-Control")
	age, err := strconv.Atoi(strings.TrimPrefix(cc, "public, max-age="))
	if err != nil {
		t.Fatalf("Cache-Control %q", cc)
	}
	if err := json.NewDecoder(resp.Body).Decode(&v.keys); err != nil {
		t.Fatal(err)
	}
	v.until = time.Now().Add(time.Duration(age) * time.Second)
}

// verify checks token with the cached keys and returns its kid; unknown
// reports a kid the cached JWKS lacks.
func (v *strictVerifier) verify(t *testing.T, token string) (kid string, unknown bool) {
	t.Helper()
	if !time.Now().Before(v.until) {
		v.fetch(t)
	}
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatalf("assertion: %v", err)
	}
	kid = tok.Headers[0].KeyID
	keys := v.keys.Key(kid)
	if len(keys) == 0 {
		return kid, true
	}
	var claims jwt.Claims
	if err := tok.Claims(keys[0].Key, &claims); err != nil {
		t.Errorf("assertion signed by %s does not verify: %v", kid, err)
	}
	return kid, false
}

// TestAKeyRotationNeverShowsAnAppAnUnknownKid (issue 9): an app caches the
// JWKS of two instances as told (here identity.jwks_max_age: 2s), having
// fetched it just before `moat keys rotate`; while requests alternate
// between the instances, every assertion it meets is signed by a key its
// copy holds: the new key is published at once everywhere and signs only
// twice the cache lifetime later.
func TestAKeyRotationNeverShowsAnAppAnUnknownKid(t *testing.T) {
	one, two := startPair(t, "postgres")
	instances := []*Moat{one, two}
	dee := newVisitor("dee@example.com")
	addUser(t, one, dee.email, dee.password, "staff")
	dee.signIn(t, one)
	assertion := func(i int) string {
		code, got := dee.seen(t, instances[i%2], "/")
		if code != http.StatusOK || got["assertion"] == "" {
			t.Fatalf("the app got %d and no assertion", code)
		}
		return got["assertion"]
	}
	v := &strictVerifier{instances: instances}
	oldKid, unknown := v.verify(t, assertion(0)) // fetches the JWKS
	if unknown {
		t.Fatal("before any rotation the JWKS lacks the signing key")
	}
	out, started := cli(t, one, "", "keys", "rotate")
	newKid := strings.TrimSuffix(strings.Fields(strings.TrimPrefix(out, "new signing key "))[0], ":")
	const switchAfter = 2 * 2 * time.Second // twice jwks_max_age
	var firstNew time.Time
	for i := 1; firstNew.IsZero() || time.Since(firstNew) < 2*time.Second; i++ {
		if time.Since(started) > switchAfter+10*time.Second {
			t.Fatalf("no assertion is signed by the new key %s %s after the rotation", newKid, time.Since(started).Round(time.Second))
		}
		kid, unknown := v.verify(t, assertion(i))
		if unknown {
			t.Fatalf("%s after the rotation the app met kid %s, which its JWKS (fetched as told) lacks", time.Since(started).Round(time.Millisecond), kid)
		}
		switch kid {
		case oldKid:
			if !firstNew.IsZero() {
				t.Errorf("instance %d signed with the old key after the switch", i%2+1)
			}
		case newKid:
			if firstNew.IsZero() {
				firstNew = time.Now()
			}
		default:
			t.Fatalf("an assertion signed by %s, neither the old key %s nor the new %s", kid, oldKid, newKid)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if took := firstNew.Sub(started); took < switchAfter {
		t.Errorf("the new key signed %s after the rotation started, before the %s switch", took.Round(time.Millisecond), switchAfter)
	}
	t.Logf("the new key signed from %s after the rotation started; the app fetched the JWKS %d times and never met an unknown kid",
		firstNew.Sub(started).Round(time.Millisecond), v.fetches)
}
