package session

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/moat-dev/moat/internal/request"
	"github.com/moat-dev/moat/internal/store"
	"github.com/moat-dev/moat/internal/store/storetest"
	"github.com/moat-dev/moat/internal/web"
)

// outageLifetimes are short enough for a test: checked every 100 ms, and a
// cached session rides out 2 s of outage.
var outageLifetimes = Lifetimes{MaxAge: time.Hour, Idle: time.Hour, OutageGrace: 2 * time.Second}

// outageRig is one PostgreSQL server the test stops and starts, a store on
// it, and the sessions in front of it.
type outageRig struct {
	pg       *storetest.Server
	st       store.Store
	sessions *Sessions
	ended    []string
	handler  http.Handler
}

func newOutageRig(t *testing.T) *outageRig {
	t.Helper()
	pg := storetest.NewServer(t)
	st, err := store.Open(t.Context(), pg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	rig := &outageRig{pg: pg, st: st}
	rig.sessions = New(st, slog.New(slog.NewTextHandler(io.Discard, nil)), func(hash string) { rig.ended = append(rig.ended, hash) })
	rig.sessions.verifyEvery, rig.sessions.retryUnavailable = 100*time.Millisecond, 50*time.Millisecond
	rig.handler = rig.sessions.Identify(outageLifetimes, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, request.From(r).User.Email) // "" for anonymous
	}))
	return rig
}

// signIn starts a session for a new user and returns its cookie value.
func (rig *outageRig) signIn(t *testing.T, email string) string {
	t.Helper()
	u := &store.User{Email: email}
	if err := rig.st.CreateUser(t.Context(), u); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	if _, err := rig.sessions.Start(t.Context(), rec, httptest.NewRequest("POST", "/_moat/login", nil), u, "password", outageLifetimes); err != nil {
		t.Fatal(err)
	}
	for _, c := range rec.Result().Cookies() {
		if c.Name == Cookie {
			return c.Value
		}
	}
	t.Fatal("no session cookie set")
	return ""
}

// answer is what a request with the cookie got: the status, the user the
// app saw ("" for anonymous), the error code and Retry-After of a 503.
type answer struct {
	status     int
	user       string
	code       string
	retryAfter string
}

func (rig *outageRig) get(path, cookie string) answer {
	r := httptest.NewRequest("GET", path, nil)
	r.AddCookie(&http.Cookie{Name: Cookie, Value: cookie})
	rec := httptest.NewRecorder()
	rig.handler.ServeHTTP(rec, r)
	a := answer{status: rec.Code, retryAfter: rec.Header().Get("Retry-After")}
	if rec.Code == http.StatusOK {
		a.user = rec.Body.String()
		return a
	}
	var e struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(rec.Body.Bytes(), &e)
	a.code = e.Error
	return a
}

// TestAStoreOutageNeverSignsAnyoneOut stops PostgreSQL under a signed-in
// session (issue 9: after 4 s every signed-in request was anonymous): the
// session keeps working from the cache for store_outage_grace, then gets
// 503 with Retry-After, never an anonymous answer; a session the cache
// never saw gets 503 at once; a sign-out during the outage fails and says
// so, leaving the session as it was; sockets are not closed; and once
// PostgreSQL is back the session works again without a restart, and a
// sign-out then holds.
func TestAStoreOutageNeverSignsAnyoneOut(t *testing.T) {
	rig := newOutageRig(t)
	cached := rig.signIn(t, "ada@example.com")
	unseen := rig.signIn(t, "bob@example.com")
	rig.sessions.Drop(HashID(unseen)) // started elsewhere: not in this cache
	if a := rig.get("/", cached); a.status != 200 || a.user != "ada@example.com" {
		t.Fatalf("before the outage: %+v", a)
	}

	rig.pg.Stop(t)
	stopped := time.Now()

	if a := rig.get("/", unseen); a.status != http.StatusServiceUnavailable || a.code != "session_unavailable" || a.retryAfter != web.StoreRetryAfter {
		t.Errorf("a session the cache never saw, during the outage: %+v, want 503 session_unavailable with Retry-After", a)
	}
	if a := rig.get(web.StaticPrefix+"moat.css", unseen); a.status != 200 || a.user != "" {
		t.Errorf("moat's stylesheet (the 503 page loads it) during the outage: %+v, want it served to anyone", a)
	}
	err := rig.sessions.Revoke(context.Background(), HashID(cached))
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("a sign-out during the outage: %v, want an error wrapping store.ErrUnavailable", err)
	}
	if len(rig.ended) != 0 {
		t.Errorf("a sign-out that was not stored ended %v here", rig.ended)
	}

	// Within the grace the cached session works; after it, 503. Never
	// anonymous, never another user.
	var lastServed time.Duration
	for {
		a := rig.get("/", cached)
		since := time.Since(stopped)
		if a.status == 200 && a.user == "ada@example.com" {
			lastServed = since
			if since > outageLifetimes.OutageGrace+time.Second {
				t.Fatalf("still served from the cache %s into the outage, grace %s", since, outageLifetimes.OutageGrace)
			}
			time.Sleep(20 * time.Millisecond)
			continue
		}
		if a.status != http.StatusServiceUnavailable || a.code != "session_unavailable" || a.retryAfter != web.StoreRetryAfter {
			t.Fatalf("%s into the outage: %+v, want the session served or 503 session_unavailable", since, a)
		}
		if since < outageLifetimes.OutageGrace-time.Second {
			t.Fatalf("503 after %s, before the grace (%s) ran out", since, outageLifetimes.OutageGrace)
		}
		break
	}
	t.Logf("served from the cache for %s of the outage, then 503 (grace %s)", lastServed.Round(10*time.Millisecond), outageLifetimes.OutageGrace)
	if !rig.sessions.Alive(context.Background(), HashID(cached), time.Now(), outageLifetimes) {
		t.Error("past the grace, Alive reported the session ended: its WebSockets would close for a store error")
	}
	if !rig.sessions.Alive(context.Background(), HashID(unseen), time.Now(), outageLifetimes) {
		t.Error("Alive reported a session it could not check as ended")
	}

	rig.pg.Start(t)
	back := time.Now()
	for {
		a := rig.get("/", cached)
		if a.status == 200 && a.user == "ada@example.com" {
			break
		}
		if a.status != http.StatusServiceUnavailable {
			t.Fatalf("while PostgreSQL comes back: %+v", a)
		}
		if time.Since(back) > 30*time.Second {
			t.Fatalf("the session still gets %+v 30 s after PostgreSQL accepts connections", a)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("the session works again %s after PostgreSQL accepts connections", time.Since(back).Round(time.Millisecond))
	if a := rig.get("/", unseen); a.status != 200 || a.user != "bob@example.com" {
		t.Errorf("the other session after the outage: %+v", a)
	}

	if err := rig.sessions.Revoke(context.Background(), HashID(cached)); err != nil {
		t.Fatalf("sign-out after the outage: %v", err)
	}
	if a := rig.get("/", cached); a.status != 200 || a.user != "" {
		t.Errorf("after signing out: %+v, want anonymous", a)
	}
}

// TestSessionsRideOutAPostgreSQLCrash is the outage above with PostgreSQL
// crashing (connections cut, recovery from the WAL at the next start)
// rather than stopping: the cached session is served, then works again.
func TestSessionsRideOutAPostgreSQLCrash(t *testing.T) {
	rig := newOutageRig(t)
	cookie := rig.signIn(t, "ada@example.com")
	// The test server runs with synchronous_commit off: a crash would lose
	// the session's commit, unless the WAL reached the disk first.
	conn, err := pgx.Connect(t.Context(), rig.pg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(t.Context(), "CHECKPOINT"); err != nil {
		t.Fatal(err)
	}
	_ = conn.Close(t.Context())
	rig.pg.Crash(t)
	deadline := time.Now().Add(outageLifetimes.OutageGrace / 2)
	for time.Now().Before(deadline) {
		if a := rig.get("/", cookie); a.status != 200 || a.user != "ada@example.com" {
			t.Fatalf("within the grace after a crash: %+v", a)
		}
		time.Sleep(20 * time.Millisecond)
	}
	back := time.Now()
	rig.pg.Start(t)
	for {
		a := rig.get("/", cookie)
		if a.status != 200 || a.user != "ada@example.com" {
			t.Fatalf("after the crash, within the grace: %+v", a)
		}
		if e := rig.sessions.cache.get(HashID(cookie)); e != nil && e.verifiedAt.Load() > back.UnixNano() {
			break // confirmed by the store again
		}
		if time.Since(back) > 30*time.Second {
			t.Fatal("the session was not confirmed by the store within 30 s of PostgreSQL's restart")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("the store confirmed the session again %s after PostgreSQL was started again (its start included)", time.Since(back).Round(time.Millisecond))
}
