package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/store"
)

// BenchmarkSQLiteGetSession is the cost of a session check that misses the
// caller's cache and reads the store.
func BenchmarkSQLiteGetSession(b *testing.B) {
	s, err := store.Open(context.Background(), b.TempDir()+"/moat.db")
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	u := &store.User{Email: "a@example.com"}
	if err := s.CreateUser(ctx, u); err != nil {
		b.Fatal(err)
	}
	for i := range 1000 {
		if err := s.CreateSession(ctx, &store.Session{IDHash: fmt.Sprint("h", i), UserID: u.ID, ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := s.GetSession(ctx, fmt.Sprint("h", i%1000)); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

// BenchmarkSQLiteTouchSession is one durable write (synchronous=FULL).
func BenchmarkSQLiteTouchSession(b *testing.B) {
	s, err := store.Open(context.Background(), b.TempDir()+"/moat.db")
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	u := &store.User{Email: "a@example.com"}
	if err := s.CreateUser(ctx, u); err != nil {
		b.Fatal(err)
	}
	if err := s.CreateSession(ctx, &store.Session{IDHash: "h", UserID: u.ID, ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := s.TouchSession(ctx, "h", time.Now()); err != nil {
			b.Fatal(err)
		}
	}
}
