package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jackc/pgx/v5"

	"github.com/moat-dev/moat/internal/testwait"
)

// The outage PostgreSQL and the grace of the drills: a 10 s outage
// outlasts it, so both what the cache carries and what comes after show.
const (
	drillGrace  = 5 * time.Second
	drillOutage = 10 * time.Second
)

// person is someone using the dashboard through the front, with a
// browser's cookies.
type person struct {
	jar http.CookieJar
	c   *http.Client
}

func newPerson(c *cluster) *person {
	jar, _ := cookiejar.New(nil)
	return &person{jar: jar, c: c.front(jar)}
}

// checkpoint makes PostgreSQL write everything committed to disk. The
// test's server runs with synchronous_commit off, so a crash could lose
// the last commits, which a production server would keep.
func (c *cluster) checkpoint(t *testing.T) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), c.pg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(t.Context(), "CHECKPOINT"); err != nil {
		t.Fatal(err)
	}
}

// TestClusterFaultDrills runs two moat instances behind a front (a client
// that sends each new connection to the first live instance), on one
// PostgreSQL and one Redis, and breaks them one at a time: PostgreSQL
// stopped for 10 s, PostgreSQL crashed, Redis stopped, an instance killed
// with SIGKILL in the middle of a request and of a WebSocket, and a broken
// configuration reloaded on one instance. It checks what people see during
// and after each, measures how long each takes to take effect and to
// recover, and prints the table (also test/e2e/test-output/fault-drills.md).
func TestClusterFaultDrills(t *testing.T) {
	var table drillTable
	t.Cleanup(func() { table.print(t, "fault-drills") })
	app := newClusterApp(t)
	c := newCluster(t, 2, fmt.Sprintf("store_outage_grace: %s\ncounters_fail: open\n", drillGrace), clusterRoutes(app.URL))
	a, b := c.moats[0], c.moats[1]
	addUser(t, a, clusterEmail, clusterPassword, "staff")

	// Ann keeps using the dashboard, with its WebSocket open on the
	// second instance; Ben will try to sign out during the outage.
	ann, ben := newPerson(c), newPerson(c)
	for _, p := range []*person{ann, ben} {
		if got := signInVia(p.c, clusterEmail, clusterPassword); got.status != http.StatusSeeOther {
			t.Fatalf("sign-in: %s", got)
		}
	}
	c.first(b)
	ws, who, err := dialSocket(t.Context(), newPersonWith(c, ann.jar).c)
	if err != nil || who != clusterEmail {
		t.Fatalf("Ann's WebSocket through the second instance: %v (app saw %q)", err, who)
	}
	defer ws.CloseNow()
	c.first(a)

	t.Run("PostgreSQL stopped for 10 s", func(t *testing.T) {
		if !page(ann.c, "/").signedInAs(clusterEmail) || !page(ben.c, "/").signedInAs(clusterEmail) {
			t.Fatal("not signed in before the drill")
		}
		c.pg.Stop(t)
		stopped := time.Now()
		outage := fmt.Sprintf("PostgreSQL stopped for %s (store_outage_grace: %s)", drillOutage, drillGrace)

		got := signOutVia(ben.c)
		if !got.storeDown("You are still signed in") {
			t.Errorf("Ben's sign-out during the outage: %s", got)
		}
		table.add(outage, "sign-out: 503 page \"You are still signed in\" (the session is not ended, the cookie kept; signing out again later works)", time.Since(stopped), "into the outage")
		fresh := newPerson(c)
		got = signInVia(fresh.c, clusterEmail, clusterPassword)
		if !got.storeDown("We cannot sign you in right now") {
			t.Errorf("a new sign-in during the outage: %s", got)
		}
		table.add(outage, "a new sign-in: 503 page \"We cannot sign you in right now\" with Retry-After", time.Since(stopped), "into the outage")
		line, took, err := c.serveOnce(t)
		if err == nil || !strings.HasPrefix(line, "open store:") || !strings.Contains(line, "database unavailable") {
			t.Errorf("an instance started during the outage: %v, said %q; want it refused with one line", err, line)
		}
		if !strings.Contains(line, "check that it is up") {
			t.Errorf("an instance started during the outage said %q; want what to do next", line)
		}
		table.add(outage, "an instance started meanwhile refuses to start, with one line: "+strings.SplitN(line, ": failed to connect", 2)[0]+": … (moat does not start without its database: check that it is up …)", took, "to exit")

		var servedFor, firstRefusal time.Duration
		for time.Since(stopped) < drillOutage {
			got := page(ann.c, "/")
			switch {
			case got.signedInAs(clusterEmail) && firstRefusal == 0:
				servedFor = time.Since(stopped)
			case got.storeDown("Your sign-in cannot be checked right now"):
				if firstRefusal == 0 {
					firstRefusal = time.Since(stopped)
				}
			default:
				t.Fatalf("Ann's page %s into the outage: %s; want it served or moat's 503 page, never a sign-in", time.Since(stopped).Round(time.Millisecond), got)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if firstRefusal == 0 || servedFor > drillGrace+5*time.Second {
			t.Errorf("Ann's pages were served for %s and refused from %s; want served within the grace, then 503", servedFor, firstRefusal)
		}
		table.add(outage, "signed-in pages: served from the cache, then moat's 503 page \"Your sign-in cannot be checked right now\" (Retry-After, request id), never a sign-in page", servedFor,
			fmt.Sprintf("served; 503 from %s on", firstRefusal.Round(10*time.Millisecond)))
		if err := echoOn(ws, "through the outage"); err != nil {
			t.Errorf("Ann's WebSocket at the end of the outage: %v", err)
		}
		table.add(outage, "an open WebSocket: stays open and working", time.Since(stopped), "open throughout")

		c.pg.Start(t)
		took = testwait.For(t, 30*time.Second, "Ann's pages after PostgreSQL is back", func() bool { return page(ann.c, "/").signedInAs(clusterEmail) })
		table.add("PostgreSQL accepts connections again", "signed-in pages work again (no restart)", took, "")
		took = testwait.For(t, 30*time.Second, "a new sign-in after PostgreSQL is back", func() bool {
			return signInVia(newPerson(c).c, clusterEmail, clusterPassword).status == http.StatusSeeOther
		})
		table.add("PostgreSQL accepts connections again", "new sign-ins work again", took, "")
		if !page(ben.c, "/").signedInAs(clusterEmail) {
			t.Fatal("Ben's session after the outage: the failed sign-out signed him out after all")
		}
		if got := signOutVia(ben.c); got.status != http.StatusSeeOther {
			t.Fatalf("Ben's sign-out after the outage: %s", got)
		}
	})

	t.Run("PostgreSQL crashed", func(t *testing.T) {
		c.checkpoint(t)
		c.pg.Crash(t)
		crashed := time.Now()
		if got := signInVia(newPerson(c).c, clusterEmail, clusterPassword); !got.storeDown("We cannot sign you in right now") {
			t.Errorf("a sign-in after the crash: %s", got)
		}
		served := 0
		for time.Since(crashed) < 2*time.Second {
			if got := page(ann.c, "/"); !got.signedInAs(clusterEmail) {
				t.Fatalf("Ann's page %s after the crash: %s", time.Since(crashed).Round(time.Millisecond), got)
			}
			served++
			time.Sleep(100 * time.Millisecond)
		}
		table.add("PostgreSQL crashed (SIGQUIT: connections cut), started again 2 s later", "signed-in pages and WebSockets: nothing (the cache carries them); a new sign-in: 503 \"We cannot sign you in right now\"", time.Since(crashed),
			fmt.Sprintf("of crash: all %d page loads served", served))
		c.pg.Start(t)
		took := testwait.For(t, 30*time.Second, "a sign-in after PostgreSQL recovered", func() bool {
			return signInVia(newPerson(c).c, clusterEmail, clusterPassword).status == http.StatusSeeOther
		})
		table.add("PostgreSQL recovered from the crash and accepts connections", "sign-ins work again", took, "")
		if err := echoOn(ws, "after the crash"); err != nil {
			t.Errorf("Ann's WebSocket after the crash: %v", err)
		}
	})

	t.Run("Redis stopped and started again", func(t *testing.T) {
		anon := c.front(nil)
		c.redis.Stop(t)
		stopped := time.Now()
		var first time.Duration
		for i := range 8 {
			if s := publicHit(anon); s != http.StatusOK {
				t.Fatalf("request %d to the rate-limited route while Redis is down (counters_fail: open): %d, want 200", i+1, s)
			}
			if i == 0 {
				first = time.Since(stopped)
			}
		}
		if !page(ann.c, "/").signedInAs(clusterEmail) {
			t.Error("a signed-in page while Redis is down")
		}
		table.add("Redis stopped (counters_fail: open)", "rate limits and bans are not applied (8 requests over a limit of 5 pass); signed-in users see nothing", first, "to the first request answered without counters")

		// A sign-out on one instance reaches the other by the store poll.
		carl := newPerson(c)
		if got := signInVia(carl.c, clusterEmail, clusterPassword); got.status != http.StatusSeeOther {
			t.Fatalf("sign-in while Redis is down: %s", got)
		}
		before := jarCopy(t, carl.jar)
		if got := signOutVia(via(b, carl.jar)); got.status != http.StatusSeeOther {
			t.Fatalf("sign-out on the second instance: %s", got)
		}
		took := testwait.For(t, 15*time.Second, "the sign-out reaching the first instance", func() bool { return page(via(a, before), "/").sentToSignIn() })
		table.add("Redis stopped: a sign-out on one instance", "the other instance refuses the session (store poll)", took, "")

		c.redis.Start(t)
		took = testwait.For(t, 30*time.Second, "rate limits after Redis is back", func() bool { return publicHit(anon) == http.StatusTooManyRequests })
		table.add("Redis accepts connections again", "rate limits apply again (counts start over: this Redis keeps nothing)", took, "to the first 429, 5 counted requests included")
	})

	t.Run("an instance killed mid-request", func(t *testing.T) {
		c.first(a)
		inflight := make(chan seen, 1)
		// A POST: Go's client, like a browser, silently sends an
		// idempotent request again when its kept-alive connection drops.
		go func() {
			req, _ := http.NewRequest(http.MethodPost, "https://localhost/slow?ms=5000", strings.NewReader("form=data"))
			resp, err := ann.c.Do(req)
			if err != nil {
				inflight <- seen{err: err}
				return
			}
			resp.Body.Close()
			inflight <- seen{status: resp.StatusCode}
		}()
		testwait.For(t, 5*time.Second, "the slow request reaching the app", func() bool { return app.slow.Load() > 0 })
		c.kill(a)
		killed := time.Now()
		if got := <-inflight; got.err == nil {
			t.Errorf("the request in flight on the killed instance: %s, want the connection cut", got)
		}
		testwait.For(t, 10*time.Second, "Ann's page through the other instance", func() bool { return page(ann.c, "/").signedInAs(clusterEmail) })
		table.add("moat instance 1 killed (SIGKILL) mid-request", "a form post in flight fails (connection cut; a GET the browser resends by itself); the retry reaches instance 2, still signed in", time.Since(killed), "kill to a page served by instance 2")
	})

	t.Run("an instance killed mid-WebSocket", func(t *testing.T) {
		c.start() // instance 3 takes instance 1's place
		c.kill(b)
		killed := time.Now()
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		if _, _, err := ws.Read(ctx); err == nil {
			t.Fatal("Ann's WebSocket on the killed instance still reads")
		}
		var again *websocket.Conn
		testwait.For(t, 10*time.Second, "Ann's WebSocket reconnecting", func() bool {
			conn, who, err := dialSocket(t.Context(), newPersonWith(c, ann.jar).c)
			if err != nil || who != clusterEmail {
				return false
			}
			again = conn
			return true
		})
		defer again.CloseNow()
		if err := echoOn(again, "reconnected"); err != nil {
			t.Fatal(err)
		}
		table.add("moat instance 2 killed (SIGKILL) mid-WebSocket", "the socket drops (no close frame); the reconnect reaches instance 3 as the same user", time.Since(killed), "kill to a working socket")
	})

	t.Run("a broken configuration reloaded on one instance", func(t *testing.T) {
		m := c.moats[0]
		good, err := os.ReadFile(m.ConfigPath)
		if err != nil {
			t.Fatal(err)
		}
		broken := strings.Replace(string(good), "allow: [\"group:staff\"]", "allow: [\"group:staff\"]\n    mfa: sometimes", 1)
		if err := os.WriteFile(m.ConfigPath, []byte(broken), 0o600); err != nil {
			t.Fatal(err)
		}
		sent := time.Now()
		if err := m.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		m.WaitLog(t, 10*time.Second, func(r map[string]any) bool {
			return r["msg"] == "configuration reload failed; the previous configuration keeps serving"
		})
		took := time.Since(sent)
		if got := page(via(m, ann.jar), "/"); !got.signedInAs(clusterEmail) {
			t.Errorf("the instance after a broken reload: %s", got)
		}
		if v, _ := m.Metric(t, "moat_config_reloads_total", `result="error"`); v < 1 {
			t.Errorf("moat_config_reloads_total{result=\"error\"} = %v", v)
		}
		table.add("a broken configuration reloaded on one instance (SIGHUP)", "nothing: it keeps serving the previous configuration, logs why and counts moat_config_reloads_total{result=\"error\"}", took, "to the log line")
		if err := os.WriteFile(m.ConfigPath, good, 0o600); err != nil {
			t.Fatal(err)
		}
	})
}

// newPersonWith is a person through the front with jar's cookies.
func newPersonWith(c *cluster, jar http.CookieJar) *person {
	return &person{jar: jar, c: c.front(jar)}
}
