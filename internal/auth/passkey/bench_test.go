package passkey

import (
	"context"
	"testing"

	"github.com/go-webauthn/webauthn/protocol"

	"github.com/moat-dev/moat/internal/identity/throttle"
)

// BenchmarkVerifyAssertion is the cryptographic check of one passkey
// assertion alone: parse the browser's answer and verify it (client data,
// relying party hash, flags, ES256 signature, counter) with the library.
func BenchmarkVerifyAssertion(b *testing.B) {
	f := newFixture(b, nil)
	ctx := context.Background()
	cred, _ := f.register(b, "s")
	begun, err := f.svc.BeginAssertion(ctx, f.rp, f.user, "p", throttle.Source{})
	if err != nil {
		b.Fatal(err)
	}
	answer := f.get(b, begun, browser(f.rp), cred)
	c, err := f.svc.open(ctx, begun.State, Assert, f.rp, f.user.ID, "p")
	if err != nil {
		b.Fatal(err)
	}
	wu, err := f.svc.load(ctx, f.user, f.rp.ID)
	if err != nil {
		b.Fatal(err)
	}
	wa, err := relyingParty(f.rp, protocol.VerificationPreferred)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		parsed, err := parseAssertion(answer)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := wa.ValidateLogin(wu, c.Session, parsed); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFinishAssertion is what the second step pays per passkey on the
// embedded SQLite store: open the sealed state, use up its challenge (a
// write), read and open the user's passkeys, verify, and move the counter
// forward (a write). Making the answer is not timed.
func BenchmarkFinishAssertion(b *testing.B) {
	f := newFixture(b, nil)
	ctx := context.Background()
	cred, _ := f.register(b, "s")
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		begun, err := f.svc.BeginAssertion(ctx, f.rp, f.user, "p", throttle.Source{})
		if err != nil {
			b.Fatal(err)
		}
		answer := f.get(b, begun, browser(f.rp), cred)
		b.StartTimer()
		if _, err := f.svc.FinishAssertion(ctx, f.rp, f.user, "p", begun.State, answer, throttle.Source{}); err != nil {
			b.Fatal(err)
		}
	}
}
