package storetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/store"
)

// usageDay0 is a fixed day for usage tests: 2026-03-02, a Monday.
var usageDay0 = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)

func at(day int, hour, minute int) time.Time {
	return usageDay0.AddDate(0, 0, day).Add(time.Duration(hour)*time.Hour + time.Duration(minute)*time.Minute)
}

func mustAddUsage(t *testing.T, s store.Store, b *store.UsageBatch) {
	t.Helper()
	if err := s.AddUsage(ctx(t), b); err != nil {
		t.Fatalf("add usage: %v", err)
	}
}

// testUsageInstancesAddUp writes what two instances saw of the same
// session and route: numbers add, first and last use move outward, and
// the user's day is one day.
func testUsageInstancesAddUp(t *testing.T, s store.Store) {
	a := &store.UsageBatch{
		SignIns: []store.UsageSignIns{{Route: "dash.example.com", Day: at(0, 9, 0), Provider: "google", Count: 2}},
		Sessions: []store.UsageSession{{Route: "dash.example.com", Key: "k1", Email: "alice@example.com", Provider: "google",
			Start: at(0, 9, 0), End: at(0, 9, 30), Connected: 25 * time.Minute, ActiveMinutes: 12}},
	}
	b := &store.UsageBatch{
		SignIns: []store.UsageSignIns{
			{Route: "dash.example.com", Day: at(0, 17, 0), Provider: "google", Count: 1},
			{Route: "dash.example.com", Day: at(0, 10, 0), Provider: "password", Count: 1},
		},
		Sessions: []store.UsageSession{
			{Route: "dash.example.com", Key: "k1", Email: "alice@example.com", Provider: "google",
				Start: at(0, 8, 55), End: at(0, 9, 20), Connected: 10 * time.Minute, ActiveMinutes: 3},
			// An instance that saw only a quiet open socket of the session.
			{Route: "dash.example.com", Key: "k1", Email: "alice@example.com", Provider: "google", Connected: 5 * time.Minute},
			{Route: "dash.example.com", Key: "k2", Email: "bob@example.com", Provider: "password",
				Start: at(0, 10, 0), End: at(0, 10, 5)},
		},
	}
	mustAddUsage(t, s, a)
	mustAddUsage(t, s, b)

	sessions, err := s.UsageSessions(ctx(t), store.UsageFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(sessions) != 2 {
		t.Fatalf("%d sessions, want 2: %+v", len(sessions), sessions)
	}
	k1 := sessions[1]
	if k1.Key != "k1" || !k1.Start.Equal(at(0, 8, 55)) || !k1.End.Equal(at(0, 9, 30)) ||
		k1.Connected != 40*time.Minute || k1.ActiveMinutes != 15 || k1.Email != "alice@example.com" || k1.Provider != "google" {
		t.Errorf("the session both instances saw = %+v; want 08:55 to 09:30, 40m connected, 15 active minutes", k1)
	}
	days, err := s.UsageDays(ctx(t), store.UsageFilter{})
	if err != nil {
		t.Fatal(err)
	}
	want := []store.UsageDay{{Route: "dash.example.com", Day: usageDay0, Users: 2, SignIns: 4, Sessions: 2, ActiveMinutes: 15}}
	if fmt.Sprint(days) != fmt.Sprint(want) {
		t.Errorf("days = %+v\nwant %+v", days, want)
	}
}

// testUsageFilters reads usage by route and period.
func testUsageFilters(t *testing.T, s store.Store) {
	mustAddUsage(t, s, &store.UsageBatch{
		SignIns: []store.UsageSignIns{
			{Route: "a.example.com", Day: at(0, 9, 0), Provider: "password", Count: 1},
			{Route: "b.example.com/x/", Day: at(2, 9, 0), Provider: "password", Count: 3},
		},
		Sessions: []store.UsageSession{
			{Route: "a.example.com", Key: "s1", Email: "alice@example.com", Start: at(0, 9, 0), End: at(0, 11, 0), Connected: time.Hour, ActiveMinutes: 30},
			// Over midnight: a user of days 1 and 2, minutes on day 2.
			{Route: "a.example.com", Key: "s2", Email: "alice@example.com", Start: at(1, 23, 50), End: at(2, 0, 10), ActiveMinutes: 20},
			{Route: "b.example.com/x/", Key: "s3", Email: "bob@example.com", Start: at(2, 9, 0), End: at(2, 9, 1), ActiveMinutes: 1},
			{Route: "b.example.com/x/", Key: "s4", Email: "alice@example.com", Start: at(3, 9, 0), End: at(3, 9, 1)},
		},
	})
	days, err := s.UsageDays(ctx(t), store.UsageFilter{Route: "a.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	want := []store.UsageDay{
		{Route: "a.example.com", Day: usageDay0, Users: 1, SignIns: 1, Sessions: 1, ActiveMinutes: 30},
		{Route: "a.example.com", Day: usageDay0.AddDate(0, 0, 1), Users: 1, Sessions: 1},
		{Route: "a.example.com", Day: usageDay0.AddDate(0, 0, 2), Users: 1, ActiveMinutes: 20},
	}
	if fmt.Sprint(days) != fmt.Sprint(want) {
		t.Errorf("days of a.example.com = %+v\nwant %+v", days, want)
	}
	// Days 2 and 3 only: a period that starts and ends mid-day takes its
	// whole days.
	days, err = s.UsageDays(ctx(t), store.UsageFilter{Since: at(2, 12, 0), Until: at(3, 12, 0)})
	if err != nil {
		t.Fatal(err)
	}
	if len(days) != 3 || !days[0].Day.Equal(usageDay0.AddDate(0, 0, 2)) || days[2].Route != "b.example.com/x/" || days[2].Users != 1 || days[1].SignIns != 3 {
		t.Errorf("days 2 to 3 = %+v", days)
	}
	users, err := s.UsageUsers(ctx(t), store.UsageFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(users) != 2 || users[0].Email != "alice@example.com" || users[0].Days != 4 || users[0].Sessions != 3 ||
		users[0].ActiveMinutes != 50 || users[0].Connected != time.Hour || !users[0].LastSeen.Equal(at(3, 9, 1)) {
		t.Errorf("users = %+v; want alice first with 4 days, 3 sessions, 50 active minutes, 1h connected", users)
	}
	users, err = s.UsageUsers(ctx(t), store.UsageFilter{Route: "b.example.com/x/", Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(users) != 1 || users[0].Email != "bob@example.com" {
		t.Errorf("top user of b.example.com/x/ = %+v, want bob (more active minutes)", users)
	}
	sessions, err := s.UsageSessions(ctx(t), store.UsageFilter{Since: at(2, 0, 5), Until: at(3, 0, 0), Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(sessions) != 2 || sessions[0].Key != "s3" || sessions[1].Key != "s2" {
		t.Errorf("sessions used on day 2 = %+v, want s3 then s2", sessions)
	}
	sessions, err = s.UsageSessions(ctx(t), store.UsageFilter{Limit: 1})
	if err != nil || len(sessions) != 1 || sessions[0].Key != "s4" {
		t.Errorf("the most recent session = %+v, %v; want s4", sessions, err)
	}
}

// testUsageRetention deletes what is older than the retention.
func testUsageRetention(t *testing.T, s store.Store) {
	mustAddUsage(t, s, &store.UsageBatch{
		SignIns: []store.UsageSignIns{{Route: "r", Day: at(0, 9, 0), Provider: "p", Count: 1}, {Route: "r", Day: at(5, 9, 0), Provider: "p", Count: 1}},
		Sessions: []store.UsageSession{
			{Route: "r", Key: "old", Email: "a@example.com", Start: at(0, 9, 0), End: at(0, 10, 0)},
			{Route: "r", Key: "new", Email: "a@example.com", Start: at(4, 23, 0), End: at(5, 1, 0)},
		},
	})
	n, err := s.DeleteUsageBefore(ctx(t), at(5, 0, 30))
	if err != nil {
		t.Fatal(err)
	}
	// The old session, its day, the new session's first day, one sign-in
	// row: the new session was used after the cut, so it stays.
	if n != 4 {
		t.Errorf("deleted %d rows, want 4", n)
	}
	days, _ := s.UsageDays(ctx(t), store.UsageFilter{Since: at(5, 0, 30)})
	sessions, _ := s.UsageSessions(ctx(t), store.UsageFilter{})
	if len(days) != 1 || !days[0].Day.Equal(usageDay0.AddDate(0, 0, 5)) || days[0].Users != 1 || days[0].SignIns != 1 ||
		len(sessions) != 1 || sessions[0].Key != "new" {
		t.Errorf("after the cut: days %+v, sessions %+v", days, sessions)
	}
}

// testUsageConcurrentWriters has many writers (as many instances would)
// add to the same rows at once: every increment counts, none deadlocks.
func testUsageConcurrentWriters(t *testing.T, s store.Store) {
	const workers, each = 6, 15
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				b := &store.UsageBatch{SignIns: []store.UsageSignIns{{Route: "r", Day: at(0, 9, 0), Provider: "p", Count: 1}}}
				// Every worker writes both sessions, in its own order.
				keys := []string{"k1", "k2"}
				if w%2 == 1 {
					keys = []string{"k2", "k1"}
				}
				for _, k := range keys {
					b.Sessions = append(b.Sessions, store.UsageSession{Route: "r", Key: k, Email: k + "@example.com",
						Start: at(0, 9, i), End: at(0, 9, i+1), Connected: time.Second, ActiveMinutes: 1})
				}
				if err := s.AddUsage(context.Background(), b); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	sessions, err := s.UsageSessions(ctx(t), store.UsageFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range sessions {
		if u.Connected != workers*each*time.Second || u.ActiveMinutes != workers*each || !u.Start.Equal(at(0, 9, 0)) || !u.End.Equal(at(0, 9, each)) {
			t.Errorf("session %s = %+v; want %d s connected, %d minutes, 09:00 to 09:%02d", u.Key, u, workers*each, workers*each, each)
		}
	}
	days, _ := s.UsageDays(ctx(t), store.UsageFilter{})
	if len(days) != 1 || days[0].SignIns != workers*each || days[0].Users != 2 || days[0].ActiveMinutes != 2*workers*each {
		t.Errorf("days = %+v; want %d sign-ins, 2 users, %d minutes", days, workers*each, 2*workers*each)
	}
}
