package attempts_test

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/attempts"
	"github.com/moat-dev/moat/internal/ratelimit/redistest"
	"github.com/moat-dev/moat/internal/store/storetest"
)

// benchCounters open the implementations a sign-in's budget check may
// pay for: one Fail before the password check, one Get for the delay.
var benchCounters = []struct {
	name string
	open func(b *testing.B) attempts.Counter
}{
	{"memory", func(*testing.B) attempts.Counter { return attempts.NewMemory(0) }},
	{"redis", func(b *testing.B) attempts.Counter {
		rc, err := attempts.NewRedis(redistest.Start(b))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { rc.Close() })
		return rc
	}},
	{"sqlite", func(b *testing.B) attempts.Counter {
		return attempts.NewStore(openStore(b, filepath.Join(b.TempDir(), "moat.db")))
	}},
	{"postgres", func(b *testing.B) attempts.Counter { return attempts.NewStore(openStore(b, storetest.Postgres(b))) }},
}

// BenchmarkFail is one counted failure, on 1000 keys.
func BenchmarkFail(b *testing.B) {
	for _, bc := range benchCounters {
		b.Run(bc.name, func(b *testing.B) {
			c := bc.open(b)
			i := 0
			for b.Loop() {
				if _, err := c.Fail(b.Context(), fmt.Sprint("ac:user", i%1000, "|192.0.2.1"), time.Hour); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkGet is one read of a key's state.
func BenchmarkGet(b *testing.B) {
	for _, bc := range benchCounters {
		b.Run(bc.name, func(b *testing.B) {
			c := bc.open(b)
			for i := range 1000 {
				if _, err := c.Fail(b.Context(), fmt.Sprint("ac:user", i, "|192.0.2.1"), time.Hour); err != nil {
					b.Fatal(err)
				}
			}
			i := 0
			for b.Loop() {
				if _, err := c.Get(b.Context(), fmt.Sprint("ac:user", i%1000, "|192.0.2.1")); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}
