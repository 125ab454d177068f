package usage

import (
	"context"
	"slices"
	"time"

	"github.com/moat-dev/moat/internal/chart"
	"github.com/moat-dev/moat/internal/store"
)

// Report defaults.
const (
	DefaultTopUsers       = 10
	DefaultRecentSessions = 25
	// maxChartDays bounds the days a chart draws.
	maxChartDays = 366
)

// Query selects a report: one route ("" for every route) over the period
// from Since to Until.
type Query struct {
	Route        string
	Since, Until time.Time
	// TopUsers and RecentSessions bound the two lists
	// (DefaultTopUsers and DefaultRecentSessions when zero).
	TopUsers, RecentSessions int
}

// Report is who used which route over a period: what the admin console's
// usage page shows and `moat usage` prints (its JSON form is part of the
// CLI's output).
type Report struct {
	Route  string    `json:"route,omitempty"`
	Since  time.Time `json:"since"`
	Until  time.Time `json:"until"`
	Totals Totals    `json:"totals"`
	// Days has a row per day and route with any use, oldest first.
	Days []Day `json:"days"`
	// TopUsers are the most active users: active minutes, then days with
	// use, then sessions.
	TopUsers []User `json:"top_users"`
	// RecentSessions are the sessions used last, the latest first.
	RecentSessions []Session `json:"recent_sessions"`
}

// Totals sum a report's period.
type Totals struct {
	SignIns       int64 `json:"sign_ins"`
	Users         int   `json:"users"`    // distinct users
	Sessions      int   `json:"sessions"` // sessions begun in the period
	ActiveMinutes int64 `json:"active_minutes"`
}

// Day is one route's use on one day (UTC).
type Day struct {
	Day           string `json:"day"` // 2006-01-02
	Route         string `json:"route"`
	Users         int    `json:"users"`
	SignIns       int64  `json:"sign_ins"`
	Sessions      int    `json:"sessions"`
	ActiveMinutes int64  `json:"active_minutes"`
}

// User is one user's use over the period.
type User struct {
	Email            string    `json:"email"`
	Days             int       `json:"days"`
	Sessions         int       `json:"sessions"`
	ActiveMinutes    int64     `json:"active_minutes"`
	ConnectedSeconds int64     `json:"connected_seconds"`
	LastSeen         time.Time `json:"last_seen"`
}

// Session is one sign-in session's use of one route.
type Session struct {
	Route            string    `json:"route"`
	Email            string    `json:"email"`
	Provider         string    `json:"provider"`
	Start            time.Time `json:"start"`
	End              time.Time `json:"end"`
	ConnectedSeconds int64     `json:"connected_seconds"`
	ActiveMinutes    int64     `json:"active_minutes"`
}

// Length is how long the session used its route, from first to last use,
// as Span writes it; "-" when its first use is not known.
func (s Session) Length() string {
	if s.Start.IsZero() || s.End.IsZero() {
		return "-"
	}
	return Span(s.End.Sub(s.Start))
}

// ConnectedTime is the session's connected time as Span writes it.
func (s Session) ConnectedTime() string {
	return Span(time.Duration(s.ConnectedSeconds) * time.Second)
}

// Load reads the report q asks for from st.
func Load(ctx context.Context, st store.Usage, q Query) (*Report, error) {
	if q.TopUsers <= 0 {
		q.TopUsers = DefaultTopUsers
	}
	if q.RecentSessions <= 0 {
		q.RecentSessions = DefaultRecentSessions
	}
	f := store.UsageFilter{Route: q.Route, Since: q.Since, Until: q.Until}
	days, err := st.UsageDays(ctx, f)
	if err != nil {
		return nil, err
	}
	users, err := st.UsageUsers(ctx, f)
	if err != nil {
		return nil, err
	}
	f.Limit = q.RecentSessions
	sessions, err := st.UsageSessions(ctx, f)
	if err != nil {
		return nil, err
	}
	r := &Report{Route: q.Route, Since: q.Since.UTC(), Until: q.Until.UTC(),
		Days: []Day{}, TopUsers: []User{}, RecentSessions: []Session{}}
	for _, d := range days {
		r.Days = append(r.Days, Day{Day: d.Day.Format(time.DateOnly), Route: d.Route, Users: d.Users, SignIns: d.SignIns,
			Sessions: d.Sessions, ActiveMinutes: d.ActiveMinutes})
		r.Totals.SignIns += d.SignIns
		r.Totals.Sessions += d.Sessions
		r.Totals.ActiveMinutes += d.ActiveMinutes
	}
	r.Totals.Users = len(users)
	for _, u := range users[:min(len(users), q.TopUsers)] {
		r.TopUsers = append(r.TopUsers, User{Email: u.Email, Days: u.Days, Sessions: u.Sessions, ActiveMinutes: u.ActiveMinutes,
			ConnectedSeconds: int64(u.Connected / time.Second), LastSeen: u.LastSeen})
	}
	for _, s := range sessions {
		r.RecentSessions = append(r.RecentSessions, Session{Route: s.Route, Email: s.Email, Provider: s.Provider, Start: s.Start, End: s.End,
			ConnectedSeconds: int64(s.Connected / time.Second), ActiveMinutes: s.ActiveMinutes})
	}
	return r, nil
}

// Routes lists the routes with use in the report, by name.
func (r *Report) Routes() []string {
	var out []string
	for _, d := range r.Days {
		if !slices.Contains(out, d.Route) {
			out = append(out, d.Route)
		}
	}
	slices.Sort(out)
	return out
}

// ActiveUsers is the report's "active users per day" as chart series: the
// days of the period as x labels (MM-DD), one series per route, zero on
// days without use.
func (r *Report) ActiveUsers() (x []string, series []chart.Series) {
	first, last := store.UsageDayNumber(r.Since), store.UsageDayNumber(r.Until.Add(-time.Microsecond))
	if r.Since.IsZero() || r.Until.IsZero() || last < first {
		return nil, nil
	}
	first = max(first, last-maxChartDays+1)
	for d := first; d <= last; d++ {
		x = append(x, store.UsageDayStart(d).Format("01-02"))
	}
	index := map[string]int{}
	for _, name := range r.Routes() {
		index[name] = len(series)
		series = append(series, chart.Series{Name: name, Values: make([]float64, len(x))})
	}
	for _, d := range r.Days {
		t, err := time.Parse(time.DateOnly, d.Day)
		if err != nil {
			continue
		}
		if i := store.UsageDayNumber(t) - first; i >= 0 && i < int64(len(x)) {
			series[index[d.Route]].Values[i] = float64(d.Users)
		}
	}
	return x, series
}
