package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/moat-dev/moat/internal/proxy"
)

// appReplica is one copy of an app: it names itself in the X-Replica
// header and in the first message of a WebSocket, and answers /health
// with the status it is told.
type appReplica struct {
	name   string
	health atomic.Int32
	srv    *httptest.Server
}

func startAppReplica(t *testing.T, name string) *appReplica {
	t.Helper()
	a := &appReplica{name: name}
	a.health.Store(http.StatusOK)
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			w.WriteHeader(int(a.health.Load()))
			return
		}
		if r.Header.Get("Upgrade") != "" {
			c, err := websocket.Accept(w, r, nil)
			if err != nil {
				return
			}
			defer c.CloseNow()
			_ = c.Write(r.Context(), websocket.MessageText, []byte(name))
			_, _, _ = c.Read(r.Context())
			return
		}
		w.Header().Set("X-Replica", name)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

// replicaConfig is signInConfig's moat with the app in two replicas: the
// first is startMoat's backend URL, the second is filled in here.
func replicaConfig(second string) string {
	return `
server:
  https_addr: "127.0.0.1:0"
  http_addr: "127.0.0.1:0"
  internal_addr: "127.0.0.1:0"
  shutdown_grace: 5s
data_dir: %q
tls: {self_signed: true}
backends:
  app: {urls: [%q, "` + second + `"], health_path: /health, health_interval: 50ms}
routes:
  - {host: dash.example.com, backend: app, public: true}
  - {host: app.example.com, backend: app, login: [password], allow: ["group:staff"]}
`
}

func replicaAt(t *testing.T, c *http.Client, url string) string {
	t.Helper()
	resp, _ := get(t, c, url)
	if resp.StatusCode != 200 {
		t.Fatalf("%s: status %d", url, resp.StatusCode)
	}
	return resp.Header.Get("X-Replica")
}

type readyz struct {
	Ready    bool                       `json:"ready"`
	Backends map[string]bool            `json:"backends"`
	Replicas map[string]map[string]bool `json:"replicas"`
}

func (m *testMoat) readyz(t *testing.T) (int, readyz) {
	t.Helper()
	resp, body := get(t, http.DefaultClient, "http://"+m.addrs.Internal+"/readyz")
	var r readyz
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("/readyz %q: %v", body, err)
	}
	return resp.StatusCode, r
}

func (m *testMoat) waitReadyz(t *testing.T, what string, cond func(int, readyz) bool) readyz {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, r := m.readyz(t)
		if cond(code, r) {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz never showed %s: %d %+v", what, code, r)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestBackendReplicasKeepEachUserOnOneAndServeWhileOneIsUp runs moat with
// an app in two replicas: an anonymous visitor sticks to one by moat's
// cookie, a signed-in user's requests and WebSocket reach one; when that
// replica fails its health check the user moves to the other and /readyz
// stays ready; with both down it is not.
func TestBackendReplicasKeepEachUserOnOneAndServeWhileOneIsUp(t *testing.T) {
	a, b := startAppReplica(t, "a"), startAppReplica(t, "b")
	byName := map[string]*appReplica{"a": a, "b": b}
	m := startMoat(t, a.srv.URL, replicaConfig(b.srv.URL))
	m.waitReadyz(t, "both replicas up", func(code int, r readyz) bool {
		return code == 200 && r.Replicas["app"][a.srv.URL] && r.Replicas["app"][b.srv.URL]
	})

	// Anonymous: the first answer sets the affinity cookie, which keeps
	// the visitor on one replica.
	anon := m.client()
	anon.Jar, _ = cookiejar.New(nil)
	resp, _ := get(t, anon, "https://dash.example.com/")
	var affinity *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == proxy.AffinityCookie {
			affinity = c
		}
	}
	if affinity == nil || !affinity.Secure || !affinity.HttpOnly {
		t.Fatalf("no Secure, HttpOnly affinity cookie in %v", resp.Header["Set-Cookie"])
	}
	first := resp.Header.Get("X-Replica")
	for range 5 {
		if got := replicaAt(t, anon, "https://dash.example.com/"); got != first {
			t.Fatalf("an anonymous visitor reached %s, then %s", first, got)
		}
	}

	// Signed in: requests and the WebSocket reach one replica.
	user, _ := signIn(t, m)
	home := replicaAt(t, user, "https://app.example.com/")
	for range 5 {
		if got := replicaAt(t, user, "https://app.example.com/"); got != home {
			t.Fatalf("a signed-in user reached %s, then %s", home, got)
		}
	}
	if ws := wsReplica(t, m, user, "wss://app.example.com/_stcore/stream"); ws != home {
		t.Fatalf("requests reached %s, the WebSocket %s", home, ws)
	}

	// Its replica fails: the user moves, the backend stays ready.
	down := byName[home]
	other := map[string]string{"a": "b", "b": "a"}[home]
	down.health.Store(http.StatusServiceUnavailable)
	r := m.waitReadyz(t, home+" out", func(code int, r readyz) bool { return !r.Replicas["app"][down.srv.URL] })
	if code, _ := m.readyz(t); code != 200 || !r.Ready || !r.Backends["app"] {
		t.Errorf("/readyz = %d %+v with one replica up, want ready", code, r)
	}
	metricsBody := func() string {
		_, body := get(t, http.DefaultClient, "http://"+m.addrs.Internal+"/metrics")
		return body
	}()
	if want := fmt.Sprintf("moat_backend_up{backend=%q,replica=%q} 0", "app", down.srv.URL); !strings.Contains(metricsBody, want) {
		t.Errorf("metrics lack %s", want)
	}
	if got := replicaAt(t, user, "https://app.example.com/"); got != other {
		t.Errorf("with %s down the user reached %s, want %s", home, got, other)
	}
	if ws := wsReplica(t, m, user, "wss://app.example.com/_stcore/stream"); ws != other {
		t.Errorf("with %s down the WebSocket reached %s, want %s", home, ws, other)
	}

	// Both down: not ready.
	byName[other].health.Store(http.StatusServiceUnavailable)
	m.waitReadyz(t, "not ready", func(code int, r readyz) bool { return code == http.StatusServiceUnavailable && !r.Ready })
}

// wsReplica opens a WebSocket as the client c (its cookies) and returns
// the replica that accepted it.
func wsReplica(t *testing.T, m *testMoat, c *http.Client, url string) string {
	t.Helper()
	ws := dialWith(t, m, c, url)
	defer ws.CloseNow()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, msg, err := ws.Read(ctx)
	if err != nil {
		t.Fatalf("first message: %v", err)
	}
	return string(msg)
}
