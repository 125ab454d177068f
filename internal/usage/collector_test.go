package usage

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	_ "modernc.org/sqlite" // the locker's own connection

	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/metrics"
	"github.com/moat-dev/moat/internal/request"
	"github.com/moat-dev/moat/internal/store"
)

// counterValue reads a Prometheus counter.
func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// clock is a test's hand-moved time.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock {
	c := &clock{}
	c.ns.Store(t.UnixNano())
	return c
}

func (c *clock) now() time.Time                { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) add(d time.Duration) time.Time { return time.Unix(0, c.ns.Add(int64(d))).UTC() }

var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

func openStore(t *testing.T, path string) store.Store {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "moat.db")
	}
	st, err := store.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func newCollector(t *testing.T, st store.Usage, clk *clock) *Collector {
	t.Helper()
	c := New(st, config.Usage{Retention: config.Duration(90 * 24 * time.Hour), FlushInterval: config.Duration(time.Second)}, nil)
	c.now = clk.now
	return c
}

func visitor(rt *config.Route, session, email string, at time.Time) *request.Info {
	return &request.Info{Start: at, Route: rt, User: request.User{Email: email, Provider: "password", SessionID: session}}
}

func flush(t *testing.T, c *Collector) {
	t.Helper()
	if err := c.Flush(t.Context()); err != nil {
		t.Fatalf("flush: %v", err)
	}
}

func TestRequestsOfOneSessionAreOneVisit(t *testing.T) {
	st := openStore(t, "")
	clk := newClock(t0)
	c := newCollector(t, st, clk)
	dash := &config.Route{Host: "dash.example.com"}
	for i := range 100 {
		c.Visit(visitor(dash, "s1", "alice@example.com", t0.Add(time.Duration(i)*time.Second)))
	}
	c.Visit(visitor(dash, "", "anonymous@example.com", t0)) // no session: not counted
	c.Visit(&request.Info{Start: t0, User: request.User{Email: "x@example.com", SessionID: "s9"}})
	flush(t, c)
	// The next write carries the session again, later.
	c.Visit(visitor(dash, "s1", "alice@example.com", t0.Add(10*time.Minute)))
	flush(t, c)

	sessions, err := st.UsageSessions(t.Context(), store.UsageFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(sessions) != 1 {
		t.Fatalf("sessions = %+v, want alice's one", sessions)
	}
	s := sessions[0]
	if s.Route != "dash.example.com" || s.Email != "alice@example.com" || !s.Start.Equal(t0) || !s.End.Equal(t0.Add(10*time.Minute)) {
		t.Errorf("session = %+v; want 09:00 to 09:10 on dash.example.com", s)
	}
	if s.Key == "s1" || s.Key != SessionKey("s1") {
		t.Errorf("the stored key %q is not derived from the session id", s.Key)
	}
	days, _ := st.UsageDays(t.Context(), store.UsageFilter{})
	if len(days) != 1 || days[0].Users != 1 || days[0].Sessions != 1 {
		t.Errorf("days = %+v, want one user and one session", days)
	}
}

func TestSignInsAreCountedPerRouteDayAndProvider(t *testing.T) {
	st := openStore(t, "")
	clk := newClock(t0)
	c := newCollector(t, st, clk)
	dash := &config.Route{Host: "metrics-test.example.com", PathPrefix: "/sales/"}
	before := counterValue(metrics.SignIns.WithLabelValues("metrics-test.example.com/sales/", "google"))
	for range 3 {
		c.SignIn(&request.Info{Route: dash}, "google")
	}
	c.SignIn(&request.Info{Route: dash}, "password")
	c.SignIn(&request.Info{}, "password") // no route: not counted
	flush(t, c)
	days, _ := st.UsageDays(t.Context(), store.UsageFilter{})
	if len(days) != 1 || days[0].SignIns != 4 || days[0].Route != "metrics-test.example.com/sales/" {
		t.Errorf("days = %+v, want 4 sign-ins on the route", days)
	}
	if got := counterValue(metrics.SignIns.WithLabelValues("metrics-test.example.com/sales/", "google")) - before; got != 3 {
		t.Errorf("moat_signins_total{provider=google} went up by %v, want 3", got)
	}
}

func TestSocketsCountConnectedTimeAndActiveMinutesPerSession(t *testing.T) {
	st := openStore(t, "")
	clk := newClock(t0)
	c := newCollector(t, st, clk)
	dash := &config.Route{Host: "sockets-test.example.com"}
	info := visitor(dash, "s1", "alice@example.com", t0)

	// Two tabs of one session: connected time is the time at least one
	// is open, and a minute in which both send messages is one minute.
	a := c.OpenSocket(info)
	clk.add(30 * time.Second)
	b := c.OpenSocket(info)
	a.Message(clk.now().UnixNano())
	b.Message(clk.now().UnixNano())
	clk.add(45 * time.Second) // 09:01:15
	a.Message(clk.now().UnixNano())
	a.Message(clk.now().UnixNano())
	flush(t, c)              // a write while both are open
	clk.add(2 * time.Minute) // 09:03:15: a quiet minute between
	b.Message(clk.now().UnixNano())
	a.Close()
	a.Close()                 // a second close changes nothing
	clk.add(45 * time.Second) // 09:04:00
	b.Close()
	(*Socket)(nil).Message(1) // an anonymous socket's nil
	(*Socket)(nil).Close()
	if c.OpenSocket(visitor(dash, "", "", t0)) != nil {
		t.Error("an anonymous socket is followed")
	}
	flush(t, c)

	sessions, err := st.UsageSessions(t.Context(), store.UsageFilter{})
	if err != nil || len(sessions) != 1 {
		t.Fatalf("sessions = %+v, %v", sessions, err)
	}
	s := sessions[0]
	if s.Connected != 4*time.Minute || s.ActiveMinutes != 3 || !s.Start.Equal(t0) || !s.End.Equal(t0.Add(3*time.Minute+15*time.Second)) {
		t.Errorf("session = %+v; want 4m connected, 3 active minutes (09:00, 09:01, 09:03), used 09:00 to 09:03:15", s)
	}
	if n := len(c.live); n != 0 {
		t.Errorf("%d live sessions left after every socket closed", n)
	}
}

// TestTwoInstancesAddUp: two collectors (two instances) on one database
// see the same session; the store holds the sum.
func TestTwoInstancesAddUp(t *testing.T) {
	path := filepath.Join(t.TempDir(), "moat.db")
	st1, st2 := openStore(t, path), openStore(t, path)
	clk := newClock(t0)
	c1, c2 := newCollector(t, st1, clk), newCollector(t, st2, clk)
	dash := &config.Route{Host: "dash.example.com"}
	c1.SignIn(&request.Info{Route: dash}, "password")
	c2.SignIn(&request.Info{Route: dash}, "password")
	c1.Visit(visitor(dash, "s1", "alice@example.com", t0))
	c2.Visit(visitor(dash, "s1", "alice@example.com", t0.Add(time.Minute)))
	c2.Visit(visitor(dash, "s2", "bob@example.com", t0.Add(time.Minute)))
	s1 := c1.OpenSocket(visitor(dash, "s1", "alice@example.com", t0))
	s2 := c2.OpenSocket(visitor(dash, "s1", "alice@example.com", t0))
	s1.Message(t0.UnixNano())
	s2.Message(t0.Add(time.Minute).UnixNano())
	clk.add(2 * time.Minute)
	s1.Close()
	s2.Close()
	flush(t, c1)
	flush(t, c2)
	days, _ := st1.UsageDays(t.Context(), store.UsageFilter{})
	if len(days) != 1 || days[0].Users != 2 || days[0].SignIns != 2 || days[0].Sessions != 2 || days[0].ActiveMinutes != 2 {
		t.Errorf("days = %+v; want 2 users, 2 sign-ins, 2 sessions, 2 active minutes", days)
	}
	users, _ := st2.UsageUsers(t.Context(), store.UsageFilter{})
	if len(users) != 2 || users[0].Email != "alice@example.com" || users[0].Connected != 4*time.Minute {
		t.Errorf("users = %+v; want alice first with 4m connected (2m on each instance)", users)
	}
}

// lockSQLite holds an exclusive lock on the database at path, as a stuck
// writer would, until the returned function is called.
func lockSQLite(t *testing.T, path string) (unlock func()) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(t.Context(), "BEGIN EXCLUSIVE"); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	unlock = func() {
		once.Do(func() {
			_, _ = conn.ExecContext(context.Background(), "ROLLBACK")
			conn.Close()
			db.Close()
		})
	}
	t.Cleanup(unlock)
	return unlock
}

// TestAStoreOutageNeitherBlocksNorLosesUsage: while the database is
// locked, a write fails and keeps its batch, requests are counted without
// waiting, and the next write after the outage stores everything once.
func TestAStoreOutageNeitherBlocksNorLosesUsage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "moat.db")
	st := openStore(t, path)
	clk := newClock(t0)
	c := newCollector(t, st, clk)
	dash := &config.Route{Host: "dash.example.com"}
	c.Visit(visitor(dash, "s1", "alice@example.com", t0))
	c.SignIn(&request.Info{Route: dash}, "password")

	unlock := lockSQLite(t, path)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	err := c.Flush(ctx)
	cancel()
	if err == nil {
		t.Fatal("a write to a locked database succeeded")
	}

	// A write in progress against the locked store holds no lock that
	// requests take: a thousand visits finish while it waits.
	writing := make(chan error, 1)
	go func() { writing <- c.Flush(t.Context()) }()
	for i := range 1000 {
		c.Visit(visitor(dash, fmt.Sprintf("v%d", i%10), "bob@example.com", t0.Add(time.Minute)))
	}
	select {
	case err := <-writing:
		t.Fatalf("the write finished (%v) before the store was unlocked", err)
	default:
	}
	unlock()
	if err := <-writing; err != nil {
		t.Fatalf("the write after the outage: %v", err)
	}
	flush(t, c)
	days, _ := st.UsageDays(t.Context(), store.UsageFilter{})
	if len(days) != 1 || days[0].Users != 2 || days[0].SignIns != 1 || days[0].Sessions != 11 {
		t.Errorf("after the outage days = %+v; want 2 users, 1 sign-in (once), 11 sessions", days)
	}
}

// TestMemoryIsBounded: past MaxEntries, new sessions are dropped and
// counted rather than held; so is what a failing store would pile up.
func TestMemoryIsBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "moat.db")
	st := openStore(t, path)
	c := newCollector(t, st, newClock(t0))
	c.MaxEntries = 3
	dash := &config.Route{Host: "dash.example.com"}
	full := metrics.UsageDropped.WithLabelValues("full")
	storeDrops := metrics.UsageDropped.WithLabelValues("store")
	before, beforeStore := counterValue(full), counterValue(storeDrops)
	for i := range 5 {
		c.Visit(visitor(dash, fmt.Sprintf("s%d", i), "a@example.com", t0))
	}
	if got := counterValue(full) - before; got != 2 {
		t.Errorf("dropped %v visits as full, want 2", got)
	}
	unlock := lockSQLite(t, path)
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	if err := c.Flush(ctx); err == nil {
		t.Fatal("a write to a locked database succeeded")
	}
	cancel()
	for i := 5; i < 8; i++ {
		c.Visit(visitor(dash, fmt.Sprintf("s%d", i), "a@example.com", t0))
	}
	ctx, cancel = context.WithTimeout(t.Context(), 200*time.Millisecond)
	if err := c.Flush(ctx); err == nil {
		t.Fatal("a write to a locked database succeeded")
	}
	cancel()
	if got := counterValue(storeDrops) - beforeStore; got != 3 {
		t.Errorf("dropped %v sessions waiting for the store, want 3 (3 new ones kept, 3 old ones over the bound)", got)
	}
	unlock()
	flush(t, c)
	sessions, _ := st.UsageSessions(t.Context(), store.UsageFilter{})
	if len(sessions) != 3 {
		t.Errorf("%d sessions stored, want the 3 within the bound", len(sessions))
	}
}

func TestOffCountsNothingAndRetentionPrunes(t *testing.T) {
	st := openStore(t, "")
	clk := newClock(t0)
	c := newCollector(t, st, clk)
	dash := &config.Route{Host: "dash.example.com"}
	c.Visit(visitor(dash, "old", "a@example.com", t0))
	flush(t, c)
	c.Configure(config.Usage{Off: true})
	c.Visit(visitor(dash, "off", "a@example.com", t0))
	c.SignIn(&request.Info{Route: dash}, "password")
	if c.OpenSocket(visitor(dash, "off", "a@example.com", t0)) != nil {
		t.Error("a socket is followed while usage is off")
	}
	flush(t, c)
	c.Configure(config.Usage{Retention: config.Duration(30 * 24 * time.Hour), FlushInterval: config.Duration(time.Second)})
	clk.add(31 * 24 * time.Hour)
	c.Visit(visitor(dash, "new", "a@example.com", clk.now()))
	flush(t, c)
	if err := c.Prune(t.Context()); err != nil {
		t.Fatal(err)
	}
	sessions, _ := st.UsageSessions(t.Context(), store.UsageFilter{})
	if len(sessions) != 1 || sessions[0].Key != SessionKey("new") {
		t.Errorf("sessions = %+v; want only the one within the 30 days (none while off)", sessions)
	}
}

// TestRunWritesEveryIntervalAndCloseWritesTheRest runs the real loop.
func TestRunWritesEveryIntervalAndCloseWritesTheRest(t *testing.T) {
	st := openStore(t, "")
	c := New(st, config.Usage{Retention: config.Duration(90 * 24 * time.Hour), FlushInterval: config.Duration(50 * time.Millisecond)}, nil)
	dash := &config.Route{Host: "dash.example.com"}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	c.Visit(visitor(dash, "s1", "a@example.com", time.Now()))
	deadline := time.Now().Add(10 * time.Second)
	for {
		sessions, err := st.UsageSessions(t.Context(), store.UsageFilter{})
		if err != nil {
			t.Fatal(err)
		}
		if len(sessions) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Run wrote nothing within 10s at a 50ms interval")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	c.SignIn(&request.Info{Route: dash}, "password")
	c.Close()
	days, _ := st.UsageDays(t.Context(), store.UsageFilter{})
	if len(days) != 1 || days[0].SignIns != 1 {
		t.Errorf("days = %+v; want the sign-in Close wrote", days)
	}
}

type noApp struct{}

func (noApp) ServeHTTP(http.ResponseWriter, *http.Request) {}

func TestTrackVisitsRequestsThatUseTheApp(t *testing.T) {
	st := openStore(t, "")
	c := newCollector(t, st, newClock(t0))
	dash := &config.Route{Host: "dash.example.com"}
	reached := 0
	h := Track(c, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached++ }))
	r := httptest.NewRequest("GET", "https://dash.example.com/", nil)
	h.ServeHTTP(httptest.NewRecorder(), request.With(r, visitor(dash, "s1", "alice@example.com", t0)))
	h.ServeHTTP(httptest.NewRecorder(), r) // no request info: passes, not counted
	favicon := httptest.NewRequest("GET", "https://dash.example.com/favicon.ico", nil)
	favicon.Header.Set("Sec-Fetch-Mode", "no-cors")
	h.ServeHTTP(httptest.NewRecorder(), request.With(favicon, visitor(dash, "s2", "admin@example.com", t0)))
	if _, same := Track(nil, noApp{}).(noApp); !same {
		t.Error("Track without a recorder wraps the handler")
	}
	flush(t, c)
	sessions, _ := st.UsageSessions(t.Context(), store.UsageFilter{})
	if reached != 3 || len(sessions) != 1 || sessions[0].Email != "alice@example.com" {
		t.Errorf("reached the app %d times, sessions %+v; want 3 and alice's alone (a favicon load is no use)", reached, sessions)
	}
}
