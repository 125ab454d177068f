package usage

import (
	"fmt"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/store"
)

func TestReportSumsThePeriodAndChartsEveryDay(t *testing.T) {
	st := openStore(t, "")
	day := func(d, h int) time.Time { return t0.AddDate(0, 0, d).Add(time.Duration(h) * time.Hour) }
	if err := st.AddUsage(t.Context(), &store.UsageBatch{
		SignIns: []store.UsageSignIns{{Route: "a.example.com", Day: day(0, 0), Provider: "password", Count: 2}},
		Sessions: []store.UsageSession{
			{Route: "a.example.com", Key: "1", Email: "alice@example.com", Start: day(0, 0), End: day(0, 1), ActiveMinutes: 10, Connected: time.Hour},
			{Route: "b.example.com", Key: "2", Email: "bob@example.com", Start: day(2, 0), End: day(2, 1), ActiveMinutes: 5},
			{Route: "a.example.com", Key: "3", Email: "bob@example.com", Start: day(2, 2), End: day(2, 3), ActiveMinutes: 1},
			{Route: "a.example.com", Key: "old", Email: "carol@example.com", Start: day(-9, 0), End: day(-9, 1)},
		},
	}); err != nil {
		t.Fatal(err)
	}
	r, err := Load(t.Context(), st, Query{Since: day(0, -9), Until: day(3, -9), TopUsers: 1})
	if err != nil {
		t.Fatal(err)
	}
	if r.Totals != (Totals{SignIns: 2, Users: 2, Sessions: 3, ActiveMinutes: 16}) {
		t.Errorf("totals = %+v", r.Totals)
	}
	if len(r.TopUsers) != 1 || r.TopUsers[0].Email != "alice@example.com" || r.TopUsers[0].ConnectedSeconds != 3600 {
		t.Errorf("top users = %+v, want alice (10 active minutes on her day) alone", r.TopUsers)
	}
	if len(r.RecentSessions) != 3 || r.RecentSessions[0].Email != "bob@example.com" || r.RecentSessions[0].Route != "a.example.com" {
		t.Errorf("recent sessions = %+v", r.RecentSessions)
	}
	x, series := r.ActiveUsers()
	if fmt.Sprint(x) != "[03-02 03-03 03-04]" || len(series) != 2 ||
		fmt.Sprint(series[0]) != "{a.example.com [1 0 1]}" || fmt.Sprint(series[1]) != "{b.example.com [0 0 1]}" {
		t.Errorf("active users = %v %v; want a day each, zero where nobody came", x, series)
	}
	r, _ = Load(t.Context(), st, Query{Route: "b.example.com", Since: day(0, 0), Until: day(3, 0)})
	if r.Totals.Users != 1 || len(r.Days) != 1 || r.Days[0].Day != "2026-03-04" {
		t.Errorf("report of b.example.com = %+v", r)
	}
}
