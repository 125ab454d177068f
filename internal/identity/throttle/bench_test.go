package throttle

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/moat-dev/moat/internal/attempts"
	"github.com/moat-dev/moat/internal/ratelimit/redistest"
	"github.com/moat-dev/moat/internal/store"
	"github.com/moat-dev/moat/internal/store/storetest"
)

// benchCounters are the counters a sign-in's throttle may count in.
var benchCounters = []struct {
	name string
	open func(b *testing.B) attempts.Counter
}{
	{"memory", func(*testing.B) attempts.Counter { return attempts.NewMemory(0) }},
	{"redis", func(b *testing.B) attempts.Counter {
		c, err := attempts.NewRedis(redistest.Start(b))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		return c
	}},
	{"sqlite", func(b *testing.B) attempts.Counter {
		return attempts.NewStore(benchStore(b, filepath.Join(b.TempDir(), "moat.db")))
	}},
	{"postgres", func(b *testing.B) attempts.Counter { return attempts.NewStore(benchStore(b, storetest.Postgres(b))) }},
}

func benchStore(b *testing.B, dsn string) store.Store {
	st, err := store.Open(context.Background(), dsn)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	return st
}

// BenchmarkAWrongPassword is what the throttle adds to a wrong password
// from an unknown device (Begin, then Failed), on top of the password
// hash (about 50 ms): the accounts and clients rotate so no budget runs
// out.
func BenchmarkAWrongPassword(b *testing.B) {
	for _, bc := range benchCounters {
		b.Run(bc.name, func(b *testing.B) {
			s := New(bc.open(b), slog.New(slog.DiscardHandler))
			ctx := context.Background()
			i := 0
			for b.Loop() {
				i++
				a := Attempt{Factor: Password, Account: fmt.Sprintf("user%d@example.com", i%1000),
					Source: Source{Client: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})}}
				if v, err := s.Begin(ctx, a); err != nil || v.Refused() {
					b.Fatal(v, err)
				}
				if _, err := s.Failed(ctx, a); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkARefusedClient is one attempt from a client past its budget:
// answered from the instance's memory of the refusal.
func BenchmarkARefusedClient(b *testing.B) {
	l := PasswordLimits
	l.Client.N = 1
	s := New(attempts.NewMemory(0), slog.New(slog.DiscardHandler))
	s.Limits[Password] = l
	ctx := context.Background()
	a := Attempt{Factor: Password, Account: "alice@example.com", Source: Source{Client: netip.MustParseAddr("198.51.100.7")}}
	if _, err := s.Begin(ctx, a); err != nil {
		b.Fatal(err)
	}
	if _, err := s.Failed(ctx, a); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if v, _ := s.Begin(ctx, a); v.Reason != ReasonClient {
			b.Fatal(v)
		}
	}
}
