package store

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"
)

// Usage keeps who used which route (issue 14): sign-ins per day, the users
// of each day, and each sign-in session's use of a route. Every instance
// writes what it counted since its last write (AddUsage), so the numbers
// of many instances add up; the readers serve the admin console's usage
// page and `moat usage`.
type Usage interface {
	// AddUsage adds one instance's counts, in one transaction: sign-ins,
	// connected time and active minutes are added to what is stored; a
	// session's first and last use move only outward; a user's day is
	// kept once however many instances report it.
	AddUsage(ctx context.Context, b *UsageBatch) error
	// UsageDays lists, per day and route, the distinct users, sign-ins,
	// sessions begun and active minutes; oldest day first, then by route.
	UsageDays(ctx context.Context, f UsageFilter) ([]UsageDay, error)
	// UsageUsers lists the users of the period, most active first (active
	// minutes, then days with use, then sessions); Limit 0: all.
	UsageUsers(ctx context.Context, f UsageFilter) ([]UsageUser, error)
	// UsageSessions lists the sessions used in the period, the most
	// recently used first; Limit 0: all.
	UsageSessions(ctx context.Context, f UsageFilter) ([]UsageSession, error)
	// DeleteUsageBefore deletes the usage of days before the day of
	// before, and sessions last used before it (the retention), and
	// reports how many rows it deleted.
	DeleteUsageBefore(ctx context.Context, before time.Time) (int, error)
}

// UsageBatch is what one instance counted since it last wrote. Its numbers
// are increments, so the batches of many instances add up.
type UsageBatch struct {
	SignIns  []UsageSignIns
	Sessions []UsageSession
}

// UsageSignIns counts sign-ins headed to one route through one provider
// on one day.
type UsageSignIns struct {
	Route    string
	Day      time.Time // any time of the day (UTC)
	Provider string
	Count    int64
}

// UsageSession is one sign-in session's use of one route. In a batch its
// numbers are what one instance saw since it last wrote; read back, they
// are the totals of every instance.
type UsageSession struct {
	Route string
	// Key names the sign-in session; it is derived from the session's id
	// hash and is neither the cookie nor what the sessions table keeps.
	Key      string
	Email    string
	Provider string
	// Start and End are the first and last use: a request that reached
	// the app, or a message on one of its WebSockets. Both are zero in a
	// batch from an instance that saw only an open, quiet WebSocket.
	Start, End time.Time
	// Connected is the time during which the session had at least one
	// WebSocket open on the route.
	Connected time.Duration
	// ActiveMinutes counts the minutes in which its WebSockets carried a
	// message (pings and pongs are not use); they count on End's day.
	ActiveMinutes int64
}

// UsageFilter selects usage: one route or all (""), and the period from
// Since (inclusive) to Until (exclusive; zero: no end). Days are whole UTC
// days: a day counts when any of it falls in the period.
type UsageFilter struct {
	Route        string
	Since, Until time.Time
	Limit        int
}

// UsageDay is one route's use on one day.
type UsageDay struct {
	Route         string
	Day           time.Time // midnight UTC
	Users         int       // distinct users
	SignIns       int64
	Sessions      int // sessions whose first use was that day
	ActiveMinutes int64
}

// UsageUser is one user's use over a period.
type UsageUser struct {
	Email         string
	Days          int // days with use, on any route of the filter
	Sessions      int
	ActiveMinutes int64
	Connected     time.Duration
	LastSeen      time.Time
}

// UsageDayNumber is t's day as usage counts days: whole days since 1970-01-01
// UTC.
func UsageDayNumber(t time.Time) int64 {
	return t.Unix() / 86400
}

// UsageDayStart is the midnight UTC that starts usage day d.
func UsageDayStart(d int64) time.Time { return time.Unix(d*86400, 0).UTC() }

// maxUsageDaySpan bounds the days one session's first and last use in a
// batch may span: a batch covers seconds, or the time a store outage
// lasted, never months.
const maxUsageDaySpan = 31

func (s *sqlStore) AddUsage(ctx context.Context, b *UsageBatch) error {
	if b == nil || len(b.SignIns) == 0 && len(b.Sessions) == 0 {
		return nil
	}
	// Rows are written in key order, so two instances writing the same
	// rows at once take their locks in the same order and never deadlock.
	signins := slices.Clone(b.SignIns)
	slices.SortFunc(signins, func(x, y UsageSignIns) int {
		return cmp.Or(cmp.Compare(x.Route, y.Route), cmp.Compare(UsageDayNumber(x.Day), UsageDayNumber(y.Day)), cmp.Compare(x.Provider, y.Provider))
	})
	sessions := slices.Clone(b.Sessions)
	slices.SortFunc(sessions, func(x, y UsageSession) int {
		return cmp.Or(cmp.Compare(x.Route, y.Route), cmp.Compare(x.Key, y.Key))
	})
	type userDay struct {
		route   string
		day     int64
		email   string
		minutes int64
	}
	var days []userDay
	for _, u := range sessions {
		if u.Start.IsZero() || u.End.IsZero() {
			continue
		}
		first, last := UsageDayNumber(u.Start), UsageDayNumber(u.End)
		first = max(first, last-maxUsageDaySpan)
		for d := first; d <= last; d++ {
			ud := userDay{route: u.Route, day: d, email: u.Email}
			if d == last {
				ud.minutes = u.ActiveMinutes
			}
			days = append(days, ud)
		}
	}
	slices.SortFunc(days, func(x, y userDay) int {
		return cmp.Or(cmp.Compare(x.route, y.route), cmp.Compare(x.day, y.day), cmp.Compare(x.email, y.email))
	})
	err := s.e.inTx(ctx, func(q querier) error {
		for _, c := range signins {
			if c.Count <= 0 {
				continue
			}
			if _, err := q.exec(ctx, `INSERT INTO usage_signins (route, day, provider, count) VALUES ($1, $2, $3, $4)
				ON CONFLICT (route, day, provider) DO UPDATE SET count = usage_signins.count + excluded.count`,
				c.Route, UsageDayNumber(c.Day), c.Provider, c.Count); err != nil {
				return fmt.Errorf("sign-ins: %w", err)
			}
		}
		for _, u := range sessions {
			if _, err := q.exec(ctx, `INSERT INTO usage_sessions (route, session_key, email, provider, first_seen, last_seen, connected_ms, active_minutes)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
				ON CONFLICT (route, session_key) DO UPDATE SET
					first_seen = CASE WHEN excluded.first_seen > 0 AND (usage_sessions.first_seen = 0 OR excluded.first_seen < usage_sessions.first_seen)
						THEN excluded.first_seen ELSE usage_sessions.first_seen END,
					last_seen = CASE WHEN excluded.last_seen > usage_sessions.last_seen THEN excluded.last_seen ELSE usage_sessions.last_seen END,
					connected_ms = usage_sessions.connected_ms + excluded.connected_ms,
					active_minutes = usage_sessions.active_minutes + excluded.active_minutes`,
				u.Route, u.Key, u.Email, u.Provider, ts(u.Start), ts(u.End), u.Connected.Milliseconds(), u.ActiveMinutes); err != nil {
				return fmt.Errorf("sessions: %w", err)
			}
		}
		for _, d := range days {
			if _, err := q.exec(ctx, `INSERT INTO usage_user_days (route, day, email, active_minutes) VALUES ($1, $2, $3, $4)
				ON CONFLICT (route, day, email) DO UPDATE SET active_minutes = usage_user_days.active_minutes + excluded.active_minutes`,
				d.route, d.day, d.email, d.minutes); err != nil {
				return fmt.Errorf("user days: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("add usage: %w", err)
	}
	return nil
}

// usageWhere builds the WHERE clause of a usage query: the route column
// and a range on col, whose values are turned from times by conv.
func usageWhere(f UsageFilter, col string, conv func(t time.Time, end bool) int64) (string, []any) {
	where, args := " WHERE 1 = 1", []any{}
	if f.Route != "" {
		args = append(args, f.Route)
		where += fmt.Sprintf(" AND route = $%d", len(args))
	}
	if !f.Since.IsZero() {
		args = append(args, conv(f.Since, false))
		where += fmt.Sprintf(" AND %s >= $%d", col, len(args))
	}
	if !f.Until.IsZero() {
		args = append(args, conv(f.Until, true))
		where += fmt.Sprintf(" AND %s < $%d", col, len(args))
	}
	return where, args
}

// dayBound is the day number of a filter's bound: Since's day, and for
// Until the day after the last one it includes.
func dayBound(t time.Time, end bool) int64 {
	if end {
		return UsageDayNumber(t.Add(-time.Microsecond)) + 1
	}
	return UsageDayNumber(t)
}

func microBound(t time.Time, _ bool) int64 { return ts(t) }

func (s *sqlStore) UsageDays(ctx context.Context, f UsageFilter) ([]UsageDay, error) {
	type key struct {
		route string
		day   int64
	}
	byKey := map[key]*UsageDay{}
	row := func(route string, day int64) *UsageDay {
		k := key{route, day}
		if byKey[k] == nil {
			byKey[k] = &UsageDay{Route: route, Day: UsageDayStart(day)}
		}
		return byKey[k]
	}
	where, args := usageWhere(f, "day", dayBound)
	err := s.scanAll(ctx, `SELECT route, day, COUNT(*), COALESCE(SUM(active_minutes), 0) FROM usage_user_days`+where+` GROUP BY route, day`, args,
		func(r rows) error {
			var route string
			var day, users, minutes int64
			if err := r.Scan(&route, &day, &users, &minutes); err != nil {
				return err
			}
			d := row(route, day)
			d.Users, d.ActiveMinutes = int(users), minutes
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("usage days: %w", err)
	}
	err = s.scanAll(ctx, `SELECT route, day, COALESCE(SUM(count), 0) FROM usage_signins`+where+` GROUP BY route, day`, args,
		func(r rows) error {
			var route string
			var day, n int64
			if err := r.Scan(&route, &day, &n); err != nil {
				return err
			}
			row(route, day).SignIns = n
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("usage days: sign-ins: %w", err)
	}
	// A session counts on the day it began; sessions seen only through a
	// quiet socket (no first use) do not begin anywhere.
	where, args = usageWhere(f, "first_seen", func(t time.Time, end bool) int64 { return dayBound(t, end) * 86400 * 1e6 })
	err = s.scanAll(ctx, `SELECT route, first_seen / 86400000000, COUNT(*) FROM usage_sessions`+where+` AND first_seen > 0 GROUP BY route, first_seen / 86400000000`, args,
		func(r rows) error {
			var route string
			var day, n int64
			if err := r.Scan(&route, &day, &n); err != nil {
				return err
			}
			row(route, day).Sessions = int(n)
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("usage days: sessions: %w", err)
	}
	out := make([]UsageDay, 0, len(byKey))
	for _, d := range byKey {
		out = append(out, *d)
	}
	slices.SortFunc(out, func(x, y UsageDay) int {
		return cmp.Or(x.Day.Compare(y.Day), cmp.Compare(x.Route, y.Route))
	})
	return out, nil
}

func (s *sqlStore) UsageUsers(ctx context.Context, f UsageFilter) ([]UsageUser, error) {
	byEmail := map[string]*UsageUser{}
	user := func(email string) *UsageUser {
		if byEmail[email] == nil {
			byEmail[email] = &UsageUser{Email: email}
		}
		return byEmail[email]
	}
	where, args := usageWhere(f, "day", dayBound)
	err := s.scanAll(ctx, `SELECT email, COUNT(DISTINCT day), COALESCE(SUM(active_minutes), 0) FROM usage_user_days`+where+` GROUP BY email`, args,
		func(r rows) error {
			var email string
			var days, minutes int64
			if err := r.Scan(&email, &days, &minutes); err != nil {
				return err
			}
			u := user(email)
			u.Days, u.ActiveMinutes = int(days), minutes
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("usage users: %w", err)
	}
	where, args = sessionWhere(f)
	err = s.scanAll(ctx, `SELECT email, COUNT(*), COALESCE(SUM(connected_ms), 0), MAX(last_seen) FROM usage_sessions`+where+` GROUP BY email`, args,
		func(r rows) error {
			var email string
			var n, ms, last int64
			if err := r.Scan(&email, &n, &ms, &last); err != nil {
				return err
			}
			u := user(email)
			u.Sessions, u.Connected, u.LastSeen = int(n), time.Duration(ms)*time.Millisecond, tm(last)
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("usage users: sessions: %w", err)
	}
	out := make([]UsageUser, 0, len(byEmail))
	for _, u := range byEmail {
		out = append(out, *u)
	}
	slices.SortFunc(out, func(x, y UsageUser) int {
		return cmp.Or(cmp.Compare(y.ActiveMinutes, x.ActiveMinutes), cmp.Compare(y.Days, x.Days),
			cmp.Compare(y.Sessions, x.Sessions), cmp.Compare(x.Email, y.Email))
	})
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}

// sessionWhere selects the sessions used in f's period: last used at or
// after Since, first used before Until.
func sessionWhere(f UsageFilter) (string, []any) {
	where, args := usageWhere(UsageFilter{Route: f.Route, Since: f.Since}, "last_seen", microBound)
	if !f.Until.IsZero() {
		args = append(args, ts(f.Until))
		where += fmt.Sprintf(" AND first_seen < $%d", len(args))
	}
	return where + " AND last_seen > 0", args
}

func (s *sqlStore) UsageSessions(ctx context.Context, f UsageFilter) ([]UsageSession, error) {
	where, args := sessionWhere(f)
	q := `SELECT route, session_key, email, provider, first_seen, last_seen, connected_ms, active_minutes FROM usage_sessions` + where +
		` ORDER BY last_seen DESC, route, session_key` + page(&args, f.Limit, 0)
	var out []UsageSession
	err := s.scanAll(ctx, q, args, func(r rows) error {
		var u UsageSession
		var first, last, ms int64
		if err := r.Scan(&u.Route, &u.Key, &u.Email, &u.Provider, &first, &last, &ms, &u.ActiveMinutes); err != nil {
			return err
		}
		u.Start, u.End, u.Connected = tm(first), tm(last), time.Duration(ms)*time.Millisecond
		out = append(out, u)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("usage sessions: %w", err)
	}
	return out, nil
}

func (s *sqlStore) DeleteUsageBefore(ctx context.Context, before time.Time) (int, error) {
	var total int64
	err := s.e.inTx(ctx, func(q querier) error {
		total = 0
		day := UsageDayNumber(before)
		for _, st := range []struct {
			q   string
			arg int64
		}{
			{`DELETE FROM usage_user_days WHERE day < $1`, day},
			{`DELETE FROM usage_signins WHERE day < $1`, day},
			{`DELETE FROM usage_sessions WHERE last_seen < $1`, ts(before)},
		} {
			n, err := q.exec(ctx, st.q, st.arg)
			if err != nil {
				return err
			}
			total += n
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("delete usage before %s: %w", before.UTC().Format(time.DateOnly), err)
	}
	return int(total), nil
}

// scanAll runs a query and hands each row to fn.
func (s *sqlStore) scanAll(ctx context.Context, q string, args []any, fn func(rows) error) error {
	r, err := s.e.query(ctx, q, args...)
	if err != nil {
		return err
	}
	defer r.Close()
	for r.Next() {
		if err := fn(r); err != nil {
			return err
		}
	}
	return r.Err()
}
