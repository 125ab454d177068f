package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/moat-dev/moat/internal/ratelimit/redistest"
	"github.com/moat-dev/moat/internal/store/storetest"
	"github.com/moat-dev/moat/internal/testnet"
)

// throttleRoutes is one signed-in route to a backend where nothing listens
// (sign-in never reaches it).
func throttleRoutes(t *testing.T) string {
	return fmt.Sprintf(`backends:
  app: {url: "http://127.0.0.1:%d"}
routes:
  - {host: localhost, backend: app, login: [password], allow: ["group:staff"]}
`, testnet.FreePort(t))
}

// guess posts a wrong password for email to m's login form, from a fresh
// browser on this machine's address, and returns the status: 401 for a
// password that was checked, 429 for one the throttle refused.
func guess(t *testing.T, m *Moat, email string) int {
	t.Helper()
	status := attempt(t, m, email)
	if status != http.StatusUnauthorized && status != http.StatusTooManyRequests {
		t.Fatalf("a wrong password answered %d", status)
	}
	return status
}

// checkedUntilRefused sends wrong passwords for email, through each of
// instances in turn, until one is refused, and returns how many were
// checked before.
func checkedUntilRefused(t *testing.T, email string, instances ...*Moat) int {
	t.Helper()
	for i := 0; i < 40; i++ {
		if guess(t, instances[i%len(instances)], email) == http.StatusTooManyRequests {
			return i
		}
	}
	t.Fatalf("40 wrong passwords for %s through %d instances were never refused", email, len(instances))
	return 0
}

// refusedWithin reports whether one of n quick wrong passwords is refused:
// a budget already spent refuses within two (the slow-down may have a turn
// ready), a fresh one admits five in a row.
func refusedWithin(t *testing.T, m *Moat, email string, n int) bool {
	t.Helper()
	for range n {
		if guess(t, m, email) == http.StatusTooManyRequests {
			return true
		}
	}
	return false
}

// Issue 9 item 3: the sign-in throttles counted per process, so N instances
// gave an attacker N budgets. Three moat processes on one PostgreSQL (their
// counts in the store), and three on Redis (counters:), spend one budget:
// wrong passwords sent through all three in turn are refused as soon as
// through one.
func TestInstancesSpendOneSignInBudget(t *testing.T) {
	redisURL := redistest.Start(t)
	for _, tc := range []struct{ name, counters string }{
		{"postgres", ""},
		{"redis", fmt.Sprintf("counters: %q\n", redisURL)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := clusterConfig(t, storetest.Postgres(t), tc.counters+throttleRoutes(t))
			a, b, c := startMoat(t, cfg), startMoat(t, cfg), startMoat(t, cfg)
			const pw = "correct horse battery staple"
			addUser(t, a, "alice@example.com", pw, "staff")
			addUser(t, a, "bob@example.com", pw, "staff")
			alone := checkedUntilRefused(t, "alice@example.com", a)
			together := checkedUntilRefused(t, "bob@example.com", a, b, c)
			t.Logf("wrong passwords checked before the first refusal: %d through one instance, %d through three in turn", alone, together)
			// Equal, but for one more turn of the slow-down when a check
			// happens to outlast its delay; three budgets would be three
			// times one.
			if together > alone+1 || together < alone-1 {
				t.Errorf("three instances checked %d wrong passwords, one instance %d: not one budget", together, alone)
			}
			if tc.counters != "" {
				opt, _ := redis.ParseURL(redisURL)
				rc := redis.NewClient(opt)
				defer rc.Close()
				keys, err := rc.Keys(context.Background(), "moat:fail:*").Result()
				if err != nil || len(keys) == 0 {
					t.Errorf("nothing counted in Redis (%v, %v)", keys, err)
				}
			}
		})
	}
}

// Issue 9 item 3: a reload rebuilt sign-in and forgot the counts, and a
// restart forgot them too. With the SQLite default the counts are in the
// data_dir's database: neither a reload (SIGHUP) nor a restart of the
// process gives a spent budget back.
func TestAReloadAndARestartKeepTheSignInBudgetSpent(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	cfg := fmt.Sprintf("data_dir: %q\n", data) + throttleRoutes(t)
	m := startMoat(t, cfg)
	const email = "bob@example.com"
	addUser(t, m, email, "correct horse battery staple", "staff")
	checked := checkedUntilRefused(t, email, m)
	t.Logf("%d wrong passwords were checked before the first refusal", checked)

	if err := m.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	m.WaitLog(t, 30*time.Second, func(r map[string]any) bool { return r["msg"] == "configuration reloaded" })
	if !refusedWithin(t, m, email, 2) {
		t.Error("after a reload the budget was fresh again")
	}

	if err := m.Stop(); err != nil {
		t.Fatal(err)
	}
	again := startMoat(t, cfg)
	if !refusedWithin(t, again, email, 2) {
		t.Error("after a restart the budget was fresh again")
	}
}

// Issue 9 item 6: with Redis down, sign-in follows counters_fail. "closed"
// answers 503 (no budget, no guess checked) and says so once in the log;
// "open" goes on counting in the instance's memory and says so; both say
// when Redis answers again, and counting goes back to it.
func TestARedisOutageFollowsCountersFail(t *testing.T) {
	for _, mode := range []string{"closed", "open"} {
		t.Run(mode, func(t *testing.T) {
			srv := redistest.NewServer(t)
			cfg := fmt.Sprintf("counters: %q\ncounters_fail: %s\n", srv.URL(), mode) + throttleRoutes(t)
			m := startMoat(t, cfg)
			addUser(t, m, "carol@example.com", "correct horse battery staple", "staff")
			if got := guess(t, m, "carol@example.com"); got != http.StatusUnauthorized {
				t.Fatalf("with Redis up: %d, want 401", got)
			}
			srv.Stop(t)
			status := attempt(t, m, "carol@example.com")
			switch {
			case mode == "closed" && status != http.StatusServiceUnavailable:
				t.Errorf("counters_fail closed, Redis down: %d, want 503", status)
			case mode == "open" && status != http.StatusUnauthorized:
				t.Errorf("counters_fail open, Redis down: %d, want 401 (checked, counted in memory)", status)
			}
			m.WaitLog(t, 10*time.Second, func(r map[string]any) bool {
				msg, _ := r["msg"].(string)
				return strings.HasPrefix(msg, "sign-in throttle: Redis unreachable") && r["counters_fail"] == mode
			})
			srv.Start(t)
			back := func() bool {
				for _, r := range m.LogRecords() {
					if msg, _ := r["msg"].(string); strings.HasPrefix(msg, "sign-in throttle: Redis answers again") {
						return true
					}
				}
				return false
			}
			// Each attempt asks Redis again (after its one-second backoff).
			deadline := time.Now().Add(20 * time.Second)
			for attempt(t, m, "carol@example.com") != http.StatusUnauthorized || !back() {
				if time.Now().After(deadline) {
					t.Fatal("sign-in did not count in Redis again within 20 s of its return")
				}
			}
		})
	}
}

// attempt posts a wrong password for email to m's login form, from a
// fresh browser on this machine's address, and returns the status.
func attempt(t *testing.T, m *Moat, email string) int {
	t.Helper()
	c := m.Client()
	c.Jar, _ = cookiejar.New(nil)
	resp, err := c.Get(m.URL + "/_moat/login?return_to=%2F")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	tok := csrfField.FindSubmatch(page)
	if tok == nil {
		t.Fatalf("the login page has no CSRF field:\n%s", page)
	}
	form := url.Values{"csrf": {string(tok[1])}, "return_to": {"/"}, "email": {email}, "password": {"not the password at all"}}
	req, _ := http.NewRequest(http.MethodPost, m.URL+"/_moat/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", m.URL)
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
