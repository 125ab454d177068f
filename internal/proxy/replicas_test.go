package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/moat-dev/moat/internal/config"
)

// replicaServer is one replica of a test app: it names itself in every
// answer (the X-Replica header, and the first WebSocket message), answers
// /_health with the status it is told, and records the cookies it saw.
type replicaServer struct {
	name    string
	url     string
	health  atomic.Int32
	close   func()
	mu      sync.Mutex
	cookies []string
}

func startReplicas(t *testing.T, n int) []*replicaServer {
	t.Helper()
	var rs []*replicaServer
	for i := range n {
		rs = append(rs, startReplica(t, fmt.Sprint("replica-", i)))
	}
	return rs
}

func startReplica(t *testing.T, name string) *replicaServer {
	t.Helper()
	rs := &replicaServer{name: name}
	rs.health.Store(http.StatusOK)
	srv := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/_health" {
			w.WriteHeader(int(rs.health.Load()))
			return
		}
		rs.mu.Lock()
		rs.cookies = append(rs.cookies, r.Header.Get("Cookie"))
		rs.mu.Unlock()
		if r.Header.Get("Upgrade") != "" {
			c, err := websocket.Accept(w, r, nil)
			if err != nil {
				return
			}
			defer c.CloseNow()
			ctx := context.Background()
			if err := c.Write(ctx, websocket.MessageText, []byte(name)); err != nil {
				return
			}
			for {
				typ, msg, err := c.Read(ctx)
				if err != nil {
					return
				}
				if err := c.Write(ctx, typ, msg); err != nil {
					return
				}
			}
		}
		w.Header().Set("X-Replica", name)
		_, _ = io.WriteString(w, name)
	}))
	rs.url, rs.close = srv.URL, srv.Close
	return rs
}

func urlsOf(rs []*replicaServer) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.url)
	}
	return out
}

// runHealth runs the backend's health checks until the test ends.
func runHealth(t *testing.T, b *Backend) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { b.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

// replicaOf asks the proxy for / with the given query and cookie, and
// returns which replica answered and the affinity cookie moat set, if any.
func replicaOf(t *testing.T, p *testProxy, query, cookie string) (string, *http.Cookie) {
	t.Helper()
	req, _ := http.NewRequest("GET", p.URL+"/?"+query, nil)
	if cookie != "" {
		req.Header.Set("Cookie", AffinityCookie+"="+cookie)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	var set *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == AffinityCookie {
			set = c
		}
	}
	return resp.Header.Get("X-Replica"), set
}

// wsReplicaOf opens a WebSocket through the proxy, checks that it echoes,
// and returns the replica that accepted it and the affinity cookie of the
// 101. The socket is closed before it returns, and gone from the proxy's
// registry, so the next test's count of open sockets starts clean.
func wsReplicaOf(t *testing.T, p *testProxy, query, cookie string) (string, *http.Cookie) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h := http.Header{}
	if cookie != "" {
		h.Set("Cookie", AffinityCookie+"="+cookie)
	}
	open := p.sockets.Count()
	c, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(p.URL, "http")+"/ws?"+query, &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer func() {
		c.Close(websocket.StatusNormalClosure, "")
		eventually(t, "the socket closed", func() bool { return p.sockets.Count() == open })
	}()
	var set *http.Cookie
	for _, sc := range resp.Cookies() {
		if sc.Name == AffinityCookie {
			set = sc
		}
	}
	_, msg, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("first message: %v", err)
	}
	echo(t, c, websocket.MessageText, []byte("hello"))
	return string(msg), set
}

func TestRendezvousSpreadsUsersAndMovesFewWhenAReplicaIsAdded(t *testing.T) {
	urls := []string{"http://10.0.0.1:8501", "http://10.0.0.2:8501", "http://10.0.0.3:8501", "http://10.0.0.4:8501"}
	three, err := New("app", &config.Backend{URLs: urls[:3]}, nil)
	if err != nil {
		t.Fatal(err)
	}
	four, err := New("app", &config.Backend{URLs: urls}, nil)
	if err != nil {
		t.Fatal(err)
	}
	const users = 6000
	counts := map[string]int{}
	moved, movedElsewhere := 0, 0
	for i := range users {
		key := fmt.Sprintf("session-%d", i)
		before, after := three.rendezvous(key).label, four.rendezvous(key).label
		counts[before]++
		if before != after {
			moved++
			if after != urls[3] {
				movedElsewhere++
			}
		}
	}
	for _, u := range urls[:3] {
		if share := float64(counts[u]) / users; share < 0.28 || share > 0.39 {
			t.Errorf("replica %s has %.1f%% of users, want about a third", u, 100*share)
		}
	}
	if share := float64(moved) / users; share < 0.19 || share > 0.31 {
		t.Errorf("adding a fourth replica moved %.1f%% of users, want about a quarter", 100*share)
	}
	if movedElsewhere != 0 {
		t.Errorf("%d users moved between the old replicas", movedElsewhere)
	}
}

// TestOneUserReachesOneReplicaOverHTTPAndWebSocket: the requests and the
// WebSocket of a signed-in session reach one replica, and sessions spread
// over all of them.
func TestOneUserReachesOneReplicaOverHTTPAndWebSocket(t *testing.T) {
	rs := startReplicas(t, 3)
	p := startProxy(t, "", proxyOpts{cfg: config.Backend{URLs: urlsOf(rs)}})
	used := map[string]bool{}
	for i := range 40 {
		q := fmt.Sprint("session=s", i)
		first, set := replicaOf(t, p, q, "")
		if first == "" {
			t.Fatal("no replica answered")
		}
		if set != nil {
			t.Errorf("a signed-in user was given an affinity cookie")
		}
		for range 4 {
			if got, _ := replicaOf(t, p, q, ""); got != first {
				t.Fatalf("session %d: requests reached %s and %s", i, first, got)
			}
		}
		if ws, _ := wsReplicaOf(t, p, q, ""); ws != first {
			t.Fatalf("session %d: HTTP reached %s, the WebSocket %s", i, first, ws)
		}
		used[first] = true
	}
	// 40 sessions miss one of three replicas with a chance of 3·(2/3)^40,
	// about one in five million.
	if len(used) != 3 {
		t.Errorf("40 sessions used replicas %v, want all three", used)
	}
}

func TestAnonymousVisitorsStickByAnAffinityCookie(t *testing.T) {
	rs := startReplicas(t, 3)
	p := startProxy(t, "", proxyOpts{cfg: config.Backend{URLs: urlsOf(rs)}})

	first, set := replicaOf(t, p, "", "")
	if set == nil {
		t.Fatal("no affinity cookie for a visitor without one")
	}
	if !set.Secure || !set.HttpOnly || set.Path != "/" || set.Domain != "" || set.SameSite != http.SameSiteLaxMode || set.MaxAge != 0 || len(set.Value) < 16 {
		t.Errorf("cookie %s: want Secure, HttpOnly, Path=/, host-only, SameSite=Lax, for the browser session", set)
	}
	for range 5 {
		got, again := replicaOf(t, p, "", set.Value)
		if got != first {
			t.Fatalf("with the cookie, requests reached %s and %s", first, got)
		}
		if again != nil {
			t.Fatal("a visitor with a good cookie was given another")
		}
	}
	if ws, _ := wsReplicaOf(t, p, "", set.Value); ws != first {
		t.Errorf("the WebSocket reached %s, the requests %s", ws, first)
	}

	// A socket opened first gets its cookie with the 101.
	if _, wsSet := wsReplicaOf(t, p, "", ""); wsSet == nil {
		t.Error("no affinity cookie on a WebSocket handshake without one")
	}

	// Malformed values are replaced, never trusted.
	for _, bad := range []string{"short", strings.Repeat("a", 65), "has space in it; x=1 abcdefghij", "ünïcödé-ünïcödé-ünïcödé"} {
		if _, again := replicaOf(t, p, "", bad); again == nil {
			t.Errorf("cookie %q was accepted", bad)
		}
	}

	// The cookie is moat's: no replica ever saw it.
	for _, r := range rs {
		r.mu.Lock()
		for _, c := range r.cookies {
			if strings.Contains(c, AffinityCookie) {
				t.Errorf("%s received %q", r.name, c)
			}
		}
		r.mu.Unlock()
	}
}

// TestUsersOfAnUnhealthyReplicaMoveAndComeBack: a replica whose health
// check fails is taken out (its users go elsewhere, the others stay), is
// put back when it passes again, and one that is gone altogether loses
// its users too; moat_backend_up follows each replica.
func TestUsersOfAnUnhealthyReplicaMoveAndComeBack(t *testing.T) {
	rs := startReplicas(t, 3)
	p := startProxy(t, "", proxyOpts{cfg: config.Backend{
		URLs: urlsOf(rs), HealthPath: "/_health", HealthInterval: config.Duration(20 * time.Millisecond),
	}})
	runHealth(t, p.backend)
	eventually(t, "every replica healthy", func() bool {
		for _, h := range p.backend.ReplicaHealth() {
			if !h {
				return false
			}
		}
		return true
	})

	// bySession asks for each of 30 sessions which replica it reaches.
	bySession := func() map[string]string {
		m := map[string]string{}
		for i := range 30 {
			q := fmt.Sprint("session=u", i)
			m[q], _ = replicaOf(t, p, q, "")
		}
		return m
	}
	home := bySession()
	victim := rs[0]
	if !strings.Contains(fmt.Sprint(home), victim.name) {
		t.Fatalf("no session on %s: %v", victim.name, home)
	}

	victim.health.Store(http.StatusServiceUnavailable)
	eventually(t, "the failing replica taken out", func() bool { return !p.backend.ReplicaHealth()[victim.url] })
	if backendUp(t, "app", victim.url) != 0 || backendUp(t, "app", rs[1].url) != 1 {
		t.Error("moat_backend_up does not follow the replicas")
	}
	if !p.backend.Healthy() {
		t.Error("the backend is not ready while two replicas are")
	}
	during := bySession()
	for q, was := range home {
		switch {
		case was == victim.name && during[q] == victim.name:
			t.Errorf("%s still reaches the unhealthy replica", q)
		case was != victim.name && during[q] != was:
			t.Errorf("%s moved from the healthy %s to %s", q, was, during[q])
		}
	}
	// Its users' WebSockets go to a live replica too.
	for q, was := range home {
		if was == victim.name {
			if ws, _ := wsReplicaOf(t, p, q, ""); ws == victim.name {
				t.Errorf("%s opened a WebSocket on the unhealthy replica", q)
			}
			break
		}
	}

	victim.health.Store(http.StatusOK)
	eventually(t, "the replica put back", func() bool { return p.backend.ReplicaHealth()[victim.url] })
	if after := bySession(); fmt.Sprint(after) != fmt.Sprint(home) {
		t.Errorf("after recovery users are at %v, want back at %v", after, home)
	}

	// A replica that is gone (connection refused) is taken out too.
	gone := rs[1]
	gone.close()
	eventually(t, "the stopped replica taken out", func() bool { return !p.backend.ReplicaHealth()[gone.url] })
	for q, r := range bySession() {
		if r == "" || r == gone.name {
			t.Errorf("%s reached %q with %s stopped", q, r, gone.name)
		}
	}

	// With every replica down, requests still go somewhere (and get the
	// app's answer or moat's 502) rather than nowhere.
	rs[0].health.Store(http.StatusServiceUnavailable)
	rs[2].health.Store(http.StatusServiceUnavailable)
	eventually(t, "the backend down", func() bool { return !p.backend.Healthy() })
	resp, err := http.Get(p.URL + "/?session=u1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusBadGateway {
		t.Errorf("with every replica down: status %d", resp.StatusCode)
	}
}
