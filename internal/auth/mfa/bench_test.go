package mfa

import (
	"context"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/identity/throttle"
)

// BenchmarkVerifyTOTP measures one accepted code on SQLite: decrypt the
// secret, three HMACs, the atomic step update. Each iteration moves the
// clock one step so every code is new.
func BenchmarkVerifyTOTP(b *testing.B) {
	f := newFixture(b, nil)
	secret, _ := f.enrol(b)
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		f.clock.add(Period * time.Second)
		if err := f.svc.Verify(ctx, f.user.ID, f.user.Email, f.code(b, secret, f.clock.now()), throttle.Source{}); err != nil {
			b.Fatal(err)
		}
	}
}
