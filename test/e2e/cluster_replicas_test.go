package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/moat-dev/moat/internal/proxy"
	"github.com/moat-dev/moat/internal/store/storetest"
)

// namedReplica is one copy of an app that names itself: in the X-Replica
// header, and in the first message of a WebSocket. /health answers with
// the status it is told.
type namedReplica struct {
	name   string
	health atomic.Int32
	srv    *httptest.Server
}

func startNamedReplica(t *testing.T, name string) *namedReplica {
	t.Helper()
	r := &namedReplica{name: name}
	r.health.Store(http.StatusOK)
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/health" {
			w.WriteHeader(int(r.health.Load()))
			return
		}
		if req.Header.Get("Upgrade") != "" {
			c, err := websocket.Accept(w, req, &websocket.AcceptOptions{InsecureSkipVerify: true})
			if err != nil {
				return
			}
			defer c.CloseNow()
			_ = c.Write(req.Context(), websocket.MessageText, []byte(name))
			_, _, _ = c.Read(req.Context())
			return
		}
		w.Header().Set("X-Replica", name)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// TestInstancesSendAUserToOneReplica runs two moat processes on one
// PostgreSQL in front of an app in three replicas. A user signed in
// through one instance reaches one replica through either, over HTTP and
// WebSocket; a visitor's affinity cookie from one instance holds on the
// other; and when that replica fails, both instances move the user to the
// same other replica.
func TestInstancesSendAUserToOneReplica(t *testing.T) {
	replicas := []*namedReplica{startNamedReplica(t, "r0"), startNamedReplica(t, "r1"), startNamedReplica(t, "r2")}
	byName := map[string]*namedReplica{}
	var urls []string
	for _, r := range replicas {
		byName[r.name] = r
		urls = append(urls, fmt.Sprintf("%q", r.srv.URL))
	}
	cfg := clusterConfig(t, storetest.Postgres(t), `backends:
  app: {urls: [`+strings.Join(urls, ", ")+`], health_path: /health, health_interval: 100ms}
routes:
  - host: public.localhost
    backend: app
    public: true
  - host: localhost
    backend: app
    login: [password]
    allow: ["group:staff"]
`)
	a := startMoat(t, cfg)
	b := startMoat(t, cfg)
	if !a.Cert.Equal(b.Cert) {
		t.Fatal("the instances serve different certificates")
	}
	const email, password = "ren@example.com", "a long passphrase for the replicas"
	addUser(t, a, email, password, "staff")

	jar, _ := cookiejar.New(nil)
	viaA, viaB := a.Client(), b.Client()
	viaA.Jar, viaB.Jar = jar, jar
	signInOverHTTP(t, viaA, email, password)

	replicaVia := func(c *http.Client, u string) string {
		t.Helper()
		resp, err := c.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d", u, resp.StatusCode)
		}
		return resp.Header.Get("X-Replica")
	}
	home := replicaVia(viaA, "https://localhost/")
	for _, c := range []*http.Client{viaA, viaB, viaB, viaA} {
		if got := replicaVia(c, "https://localhost/"); got != home {
			t.Fatalf("the signed-in user reached %s, then %s", home, got)
		}
	}
	for name, m := range map[string]*Moat{"first": a, "second": b} {
		if ws := socketReplica(t, m, jar); ws != home {
			t.Errorf("through the %s instance the WebSocket reached %s, requests %s", name, ws, home)
		}
	}

	// A visitor: the cookie one instance set holds on the other.
	anonA, anonB := a.Client(), b.Client()
	anonA.Jar, _ = cookiejar.New(nil)
	anonB.Jar = anonA.Jar
	visitor := replicaVia(anonA, "https://public.localhost/")
	u, _ := url.Parse("https://public.localhost/")
	if cs := anonA.Jar.Cookies(u); len(cs) != 1 || cs[0].Name != proxy.AffinityCookie {
		t.Fatalf("visitor's cookies: %v, want the affinity cookie", cs)
	}
	for range 3 {
		if got := replicaVia(anonB, "https://public.localhost/"); got != visitor {
			t.Fatalf("the visitor reached %s through the first instance, %s through the second", visitor, got)
		}
	}

	// The user's replica fails: both instances send the user to the same
	// other one.
	byName[home].health.Store(http.StatusServiceUnavailable)
	deadline := time.Now().Add(10 * time.Second)
	for {
		ra, rb := replicaVia(viaA, "https://localhost/"), replicaVia(viaB, "https://localhost/")
		if ra != home && rb != home {
			if ra != rb {
				t.Errorf("with %s down the instances sent the user to %s and %s", home, ra, rb)
			}
			t.Logf("with %s down the user moved to %s", home, ra)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("with %s failing its health check the user still reaches it (%s, %s)", home, ra, rb)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, m := range []*Moat{a, b} {
		if v, ok := m.Metric(t, "moat_backend_up", `backend="app"`, fmt.Sprintf("replica=%q", byName[home].srv.URL)); !ok || v != 0 {
			t.Errorf("moat_backend_up for the failed replica = %v (found %v), want 0", v, ok)
		}
	}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// signInOverHTTP signs c in through moat's login form, as a browser does.
func signInOverHTTP(t *testing.T, c *http.Client, email, password string) {
	t.Helper()
	req, _ := http.NewRequest("GET", "https://localhost/_moat/login?return_to=/", nil)
	req.Header.Set("Accept", "text/html")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := csrfField.FindSubmatch(page)
	if m == nil {
		t.Fatalf("the login page has no CSRF token:\n%s", page)
	}
	form := url.Values{"csrf": {string(m[1])}, "email": {email}, "password": {password}, "return_to": {"/"}}
	req, _ = http.NewRequest("POST", "https://localhost/_moat/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://localhost")
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in answered %d, want 303", resp.StatusCode)
	}
}

// socketReplica opens a WebSocket through m with the cookies in jar and
// returns the replica that accepted it.
func socketReplica(t *testing.T, m *Moat, jar http.CookieJar) string {
	t.Helper()
	hc := m.Client()
	hc.Jar = jar
	hc.Timeout = 0
	tr := hc.Transport.(*http.Transport)
	tr.ForceAttemptHTTP2 = false
	tr.TLSClientConfig = &tls.Config{RootCAs: tr.TLSClientConfig.RootCAs, ServerName: "localhost", NextProtos: []string{"http/1.1"}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "wss://localhost/_stcore/stream", &websocket.DialOptions{HTTPClient: hc, HTTPHeader: http.Header{"Origin": {"https://localhost"}}})
	if err != nil {
		t.Fatalf("WebSocket through %s: %v", m.HTTPSAddr, err)
	}
	defer c.CloseNow()
	_, msg, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("first message: %v", err)
	}
	return string(msg)
}
