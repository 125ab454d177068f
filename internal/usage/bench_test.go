package usage

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/request"
	"github.com/moat-dev/moat/internal/store"
)

// benchCollector is a Collector whose store is never written: the
// benchmarks measure what a request pays, not the background write.
func benchCollector(b *testing.B) *Collector {
	st, err := store.Open(b.Context(), filepath.Join(b.TempDir(), "moat.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	return New(st, config.Usage{Retention: config.Duration(90 * 24 * time.Hour)}, nil)
}

// BenchmarkVisit is the cost a request of a signed-in user pays on a
// route (usage.Track): one map lookup under a mutex, once the session has
// its entry for the current write interval.
func BenchmarkVisit(b *testing.B) {
	c := benchCollector(b)
	rt := &config.Route{Host: "dash.example.com", PathPrefix: "/sales/"}
	info := visitor(rt, "f3a9c1d2e4b5a6978877665544332211", "alice@example.com", time.Now())
	b.ReportAllocs()
	for b.Loop() {
		c.Visit(info)
	}
}

// BenchmarkVisitParallel is Visit from every core at once, over 1,000
// sessions.
func BenchmarkVisitParallel(b *testing.B) {
	c := benchCollector(b)
	rt := &config.Route{Host: "dash.example.com"}
	infos := make([]*request.Info, 1000)
	for i := range infos {
		infos[i] = visitor(rt, fmt.Sprintf("session-%04d", i), fmt.Sprintf("user%d@example.com", i), time.Now())
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			c.Visit(infos[i%len(infos)])
			i++
		}
	})
}

// BenchmarkSocketMessage is the cost of each message a browser sends over
// a proxied WebSocket (proxy pump): two atomic operations, no lock.
func BenchmarkSocketMessage(b *testing.B) {
	c := benchCollector(b)
	s := c.OpenSocket(visitor(&config.Route{Host: "dash.example.com"}, "s1", "alice@example.com", time.Now()))
	now := time.Now().UnixNano()
	b.ReportAllocs()
	for b.Loop() {
		s.Message(now)
	}
}
