package ratelimit

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/ratelimit/redistest"
	"github.com/moat-dev/moat/internal/testnet"
)

// counters returns each implementation, fresh.
func counters(t *testing.T) map[string]Counter {
	t.Helper()
	rc, err := NewRedis(redistest.Start(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close() })
	return map[string]Counter{"memory": NewMemory(0), "redis": rc}
}

func TestCountersLimitAndBan(t *testing.T) {
	ctx := context.Background()
	for name, c := range counters(t) {
		t.Run(name+" counts up to the limit, then exceeds", func(t *testing.T) {
			lim := Limit{Count: 3, Interval: time.Minute}
			for i := 1; i <= 5; i++ {
				res, err := c.Hit(ctx, "k1", lim)
				if err != nil {
					t.Fatal(err)
				}
				if want := i > 3; res.Exceeded != want || res.Banned {
					t.Fatalf("hit %d: %+v, want exceeded=%v", i, res, want)
				}
			}
		})
		t.Run(name+" keeps keys apart", func(t *testing.T) {
			lim := Limit{Count: 1, Interval: time.Minute}
			for _, k := range []string{"a", "b", "c"} {
				if res, _ := c.Hit(ctx, "sep-"+k, lim); res.Exceeded {
					t.Fatalf("key %s exceeded on its first hit", k)
				}
			}
		})
		t.Run(name+" bans past the ban threshold until the ban ends", func(t *testing.T) {
			lim := Limit{Count: 1, Interval: time.Minute, BanCount: 2, BanInterval: time.Minute, BanDuration: 300 * time.Millisecond}
			var res Result
			for range 3 {
				res, _ = c.Hit(ctx, "ban", lim)
			}
			if !res.Banned || res.BanLeft <= 0 {
				t.Fatalf("third hit: %+v, want banned", res)
			}
			if res, _ = c.Hit(ctx, "ban", lim); !res.Banned {
				t.Fatalf("hit during ban: %+v, want banned", res)
			}
			time.Sleep(400 * time.Millisecond)
			if res, _ = c.Hit(ctx, "ban", lim); res.Banned {
				t.Fatalf("hit after ban: %+v, want not banned", res)
			}
		})
		t.Run(name+" forgets old windows", func(t *testing.T) {
			lim := Limit{Count: 2, Interval: time.Second}
			for range 3 {
				c.Hit(ctx, "slide", lim)
			}
			time.Sleep(2100 * time.Millisecond)
			if res, _ := c.Hit(ctx, "slide", lim); res.Exceeded || res.Count != 1 {
				t.Fatalf("after two intervals: %+v, want count 1", res)
			}
		})
	}
}

func TestTwoRedisClientsShareBans(t *testing.T) {
	url := redistest.Start(t)
	a, _ := NewRedis(url)
	b, _ := NewRedis(url)
	t.Cleanup(func() { a.Close(); b.Close() })
	lim := Limit{Count: 1, Interval: time.Minute, BanCount: 1, BanInterval: time.Minute, BanDuration: time.Minute}
	ctx := context.Background()
	if err := a.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	a.Hit(ctx, "shared", lim)
	if res, err := a.Hit(ctx, "shared", lim); err != nil || !res.Banned {
		t.Fatalf("second hit through a: %+v %v", res, err)
	}
	if res, err := b.Hit(ctx, "shared", lim); err != nil || !res.Banned {
		t.Fatalf("hit through b: %+v %v, want banned", res, err)
	}
}

func TestAnUnreachableRedisIsUnavailableQuickly(t *testing.T) {
	rc, err := NewRedis("redis://" + testnet.FreeAddr(t)) // nothing listens there
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close() })
	start := time.Now()
	for range 3 {
		if _, err := rc.Hit(context.Background(), "k", Limit{Count: 1, Interval: time.Second}); err == nil {
			t.Fatal("no error from an unreachable redis")
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("three hits took %v", d)
	}
}

func TestMemoryIsBounded(t *testing.T) {
	m := NewMemory(1024)
	lim := Limit{Count: 5, Interval: time.Minute}
	for i := range 20000 {
		m.Hit(context.Background(), fmt.Sprint("k", i), lim)
	}
	if n := m.Len(); n > 1024 {
		t.Fatalf("memory holds %d keys, cap 1024", n)
	}
}

func TestMemoryKeepsBansOverIdleKeysWhenFull(t *testing.T) {
	m := NewMemory(4 * shards) // four keys per shard
	ban := Limit{Count: 1, Interval: time.Minute, BanCount: 1, BanDuration: time.Hour}
	m.Hit(context.Background(), "bad", ban)
	m.Hit(context.Background(), "bad", ban)
	for i := range 200 {
		m.Hit(context.Background(), fmt.Sprint("k", i), Limit{Count: 5, Interval: time.Minute})
	}
	// Other keys in the same shard evict each other, not the ban.
	if res, _ := m.Hit(context.Background(), "bad", ban); !res.Banned {
		t.Fatalf("ban was evicted: %+v", res)
	}
}

func TestMemoryIsSafeForConcurrentUse(t *testing.T) {
	m := NewMemory(0)
	lim := Limit{Count: 1 << 30, Interval: time.Minute}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				m.Hit(context.Background(), "same", lim)
			}
		}()
	}
	wg.Wait()
	if res, _ := m.Hit(context.Background(), "same", lim); res.Count != 8001 {
		t.Fatalf("count %d, want 8001", res.Count)
	}
}

func BenchmarkMemoryHit(b *testing.B) {
	m := NewMemory(0)
	lim := Limit{Count: 100, Interval: time.Minute}
	ctx := context.Background()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			m.Hit(ctx, fmt.Sprint(i%1000), lim)
			i++
		}
	})
}
