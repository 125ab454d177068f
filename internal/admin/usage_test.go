package admin

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/store"
)

// seedUsage stores a few days of use ending now.
func seedUsage(t *testing.T, st store.Store, now time.Time) {
	t.Helper()
	day := func(d int) time.Time { return now.Add(-time.Duration(d) * 24 * time.Hour) }
	err := st.AddUsage(context.Background(), &store.UsageBatch{
		SignIns: []store.UsageSignIns{{Route: "127.0.0.1/app/", Day: day(0), Provider: "password", Count: 3}},
		Sessions: []store.UsageSession{
			{Route: "127.0.0.1/app/", Key: "a", Email: "alice@example.com", Provider: "password", Start: day(0).Add(-time.Hour), End: day(0), ActiveMinutes: 42, Connected: time.Hour},
			{Route: "127.0.0.1/app/", Key: "b", Email: "bob@example.com", Provider: "password", Start: day(2).Add(-time.Hour), End: day(2), ActiveMinutes: 7},
			{Route: `<script>x</script>`, Key: "c", Email: "mallory@example.com", Provider: "google", Start: day(20), End: day(20)},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestTheUsagePageShowsUsersPerDayTopUsersAndRecentSessions(t *testing.T) {
	h := newHarness(t, nil)
	h.cfg.Usage = config.Usage{Retention: config.Duration(90 * 24 * time.Hour)}
	seedUsage(t, h.st, time.Now())
	c := h.login(adminEmail, adminPassword)

	resp, body := h.do(c, "GET", "/_moat/admin/usage", nil, true, nil)
	wantPage(t, resp, body, http.StatusOK, `id="total-users">3<`, `id="total-signins">3<`, `id="total-sessions">3<`, `id="total-active">0.8<`,
		`<svg xmlns="http://www.w3.org/2000/svg" class="chart chart-lines"`, `class="chart chart-bars"`,
		"alice@example.com", "42 min · 1 day(s) · 1 session(s)", "Usage is kept for 90 days")
	if strings.Contains(body, "<script>x") || !strings.Contains(body, "&lt;script&gt;x&lt;/script&gt;") {
		t.Error("a route name from the store reached the page unescaped, or not at all")
	}
	if i, j := strings.Index(body, "alice@example.com"), strings.Index(body, "bob@example.com"); i < 0 || j < i {
		t.Error("the top user (most active minutes) is not first")
	}

	// Seven days of one route: mallory's use 20 days ago is out.
	resp, body = h.do(c, "GET", "/_moat/admin/usage?period=7&route=127.0.0.1/app/", nil, true, nil)
	wantPage(t, resp, body, http.StatusOK, `id="total-users">2<`, `<option value="7" selected>`, `<option value="127.0.0.1/app/" selected>`)
	if strings.Contains(body, "mallory@example.com") {
		t.Error("the 7-day page of one route shows another route's user of 20 days ago")
	}

	resp, body = h.do(c, "GET", "/_moat/admin/usage?period=5", nil, true, nil)
	wantPage(t, resp, body, http.StatusBadRequest, "Choose a period of 7, 30 or 90 days.")

	resp, body = h.do(c, "GET", "/_moat/admin/usage?lang=ja", nil, true, nil)
	wantPage(t, resp, body, http.StatusOK, "利用状況", "日別アクティブユーザー", "42 分 · 1 日 · 1 セッション")

	h.cfg.Usage = config.Usage{Off: true}
	resp, body = h.do(c, "GET", "/_moat/admin/usage?lang=en", nil, true, nil)
	wantPage(t, resp, body, http.StatusOK, "Usage is not being recorded", "alice@example.com")

	user := h.login(userEmail, userPassword)
	resp, _ = h.do(user, "GET", "/_moat/admin/usage", nil, true, nil)
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("a non-admin opened the usage page: %d", resp.StatusCode)
	}
}

func TestTheUsagePageOfAnEmptyStoreSaysSo(t *testing.T) {
	h := newHarness(t, nil)
	c := h.login(adminEmail, adminPassword)
	resp, body := h.do(c, "GET", "/_moat/admin/usage", nil, true, nil)
	wantPage(t, resp, body, http.StatusOK, `id="total-users">0<`, "No one used a route in this period.")
	if strings.Contains(body, "<svg") {
		t.Error("an empty period draws a chart")
	}
}
