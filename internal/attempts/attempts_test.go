package attempts_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/attempts"
	"github.com/moat-dev/moat/internal/ratelimit/redistest"
	"github.com/moat-dev/moat/internal/store"
	"github.com/moat-dev/moat/internal/store/storetest"
	"github.com/moat-dev/moat/internal/testwait"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(helperEnv); spec != "" {
		os.Exit(helper(spec))
	}
	storetest.Main(m)
}

// counters returns each implementation, fresh.
func counters(t *testing.T) map[string]attempts.Counter {
	t.Helper()
	rc, err := attempts.NewRedis(redistest.Start(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close() })
	return map[string]attempts.Counter{
		"memory":         attempts.NewMemory(0),
		"redis":          rc,
		"sqlite store":   attempts.NewStore(openStore(t, filepath.Join(t.TempDir(), "moat.db"))),
		"postgres store": attempts.NewStore(openStore(t, storetest.Postgres(t))),
	}
}

func openStore(t testing.TB, dsn string) store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestCounters(t *testing.T) {
	for name, c := range counters(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			if s, err := c.Get(ctx, "a:alice"); err != nil || s != (attempts.State{}) {
				t.Fatalf("a key never counted: %+v, %v", s, err)
			}
			for want := int64(1); want <= 3; want++ {
				s, err := c.Fail(ctx, "a:alice", time.Hour)
				if err != nil || s.Count != want || s.Locked != 0 || s.SinceLast > time.Second {
					t.Fatalf("failure %d: %+v, %v", want, s, err)
				}
			}
			if s, _ := c.Fail(ctx, "a:bob", time.Hour); s.Count != 1 {
				t.Errorf("keys count apart: %+v", s)
			}
			if s, _ := c.Get(ctx, "a:alice"); s.Count != 3 || s.SinceLast > time.Second {
				t.Errorf("get: %+v", s)
			}

			// A success resets the count, not a lock.
			if err := c.Lock(ctx, "a:alice", time.Hour); err != nil {
				t.Fatal(err)
			}
			if err := c.Lock(ctx, "a:alice", time.Minute); err != nil {
				t.Fatal(err)
			}
			if err := c.Reset(ctx, "a:alice"); err != nil {
				t.Fatal(err)
			}
			s, err := c.Get(ctx, "a:alice")
			if err != nil || s.Count != 0 || s.SinceLast != 0 || s.Locked < 59*time.Minute || s.Locked > time.Hour {
				t.Fatalf("after lock, shorter lock and reset: %+v, %v; want no failures, locked about an hour", s, err)
			}
			if s, _ := c.Fail(ctx, "a:alice", time.Hour); s.Count != 1 || s.Locked < 59*time.Minute {
				t.Errorf("a failure while locked: %+v", s)
			}
			// The admin's unlock lifts both.
			if err := c.Unlock(ctx, "a:alice"); err != nil {
				t.Fatal(err)
			}
			if s, _ := c.Get(ctx, "a:alice"); s != (attempts.State{}) {
				t.Errorf("after unlock: %+v", s)
			}

			// A hostile key of any length is counted, in bounded space,
			// and unlocked by the same key.
			long := "a:" + strings.Repeat("x", 10000) + "@example.com"
			for range 2 {
				if _, err := c.Fail(ctx, long, time.Hour); err != nil {
					t.Fatal(err)
				}
			}
			if s, _ := c.Get(ctx, long); s.Count != 2 {
				t.Errorf("a long key: %+v", s)
			}
			if s, _ := c.Get(ctx, long[:len(long)-1]); s.Count != 0 {
				t.Errorf("a long key's neighbour shares its count: %+v", s)
			}
			if err := c.Unlock(ctx, long); err != nil {
				t.Fatal(err)
			}
			if s, _ := c.Get(ctx, long); s.Count != 0 {
				t.Errorf("a long key after unlock: %+v", s)
			}

			// Windows and locks run out, and the sweep keeps what has not.
			for range 2 {
				if _, err := c.Fail(ctx, "c:192.0.2.1", 100*time.Millisecond); err != nil {
					t.Fatal(err)
				}
			}
			if err := c.Lock(ctx, "c:192.0.2.2", 100*time.Millisecond); err != nil {
				t.Fatal(err)
			}
			testwait.For(t, 10*time.Second, "the window and the lock to run out", func() bool {
				a, err1 := c.Get(ctx, "c:192.0.2.1")
				b, err2 := c.Get(ctx, "c:192.0.2.2")
				return err1 == nil && err2 == nil && a == (attempts.State{}) && b == (attempts.State{})
			})
			if s, _ := c.Fail(ctx, "c:192.0.2.1", time.Hour); s.Count != 1 {
				t.Errorf("a failure after the window: %+v, want the count to start again", s)
			}
			if err := c.Sweep(ctx); err != nil {
				t.Fatal(err)
			}
			if s, _ := c.Get(ctx, "c:192.0.2.1"); s.Count != 1 {
				t.Errorf("the sweep took a live count: %+v", s)
			}

			if _, err := c.Fail(ctx, "", time.Hour); err == nil {
				t.Error("an empty key was counted")
			}
			if _, err := c.Fail(ctx, "k", 0); err == nil {
				t.Error("a zero window was accepted")
			}
			if err := c.Lock(ctx, "k", -time.Second); err == nil {
				t.Error("a negative lock was accepted")
			}
		})
	}
}

// TestRedisOutageIsErrUnavailable: while Redis is down every operation
// fails with ErrUnavailable (a sign-in must not guess); after it is back
// the same counter works again, with the counts Redis lost starting over.
func TestRedisOutageIsErrUnavailable(t *testing.T) {
	srv := redistest.NewServer(t)
	c, err := attempts.NewRedis(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Fail(t.Context(), "a:alice", time.Hour); err != nil {
		t.Fatal(err)
	}
	srv.Stop(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	if _, err := c.Fail(ctx, "a:alice", time.Hour); !errors.Is(err, attempts.ErrUnavailable) {
		t.Errorf("fail while Redis is down: %v", err)
	}
	if _, err := c.Get(ctx, "a:alice"); !errors.Is(err, attempts.ErrUnavailable) {
		t.Errorf("get while Redis is down: %v", err)
	}
	srv.Start(t)
	testwait.For(t, 10*time.Second, "a failure counted after Redis is back", func() bool {
		s, err := c.Fail(t.Context(), "a:alice", time.Hour)
		return err == nil && s.Count >= 1
	})
}

// TestStoreOutageIsErrUnavailable: the same for the counter in
// PostgreSQL.
func TestStoreOutageIsErrUnavailable(t *testing.T) {
	srv := storetest.NewServer(t)
	c := attempts.NewStore(openStore(t, srv.DSN()))
	if _, err := c.Fail(t.Context(), "a:alice", time.Hour); err != nil {
		t.Fatal(err)
	}
	srv.Stop(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	_, err := c.Fail(ctx, "a:alice", time.Hour)
	if !errors.Is(err, attempts.ErrUnavailable) || !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("fail while PostgreSQL is down: %v", err)
	}
	srv.Start(t)
	testwait.For(t, 10*time.Second, "a failure counted after PostgreSQL is back", func() bool {
		s, err := c.Fail(t.Context(), "a:alice", time.Hour)
		return err == nil && s.Count == 2
	})
}

func TestOpen(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "moat.db"))
	if c, err := attempts.Open("", st); err != nil {
		t.Fatal(err)
	} else if _, ok := c.(*attempts.Store); !ok {
		t.Errorf("no Redis: %T, want the store", c)
	}
	if c, err := attempts.Open("redis://127.0.0.1:1/0", st); err != nil {
		t.Fatal(err)
	} else if _, ok := c.(*attempts.Redis); !ok {
		t.Errorf("redis://: %T", c)
	}
	if _, err := attempts.Open("memcached://secret@h", st); err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("unsupported scheme: %v", err)
	}
}
