package passkey

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/descope/virtualwebauthn"

	"github.com/moat-dev/moat/internal/attempts"
	"github.com/moat-dev/moat/internal/auth/instancekey"
	"github.com/moat-dev/moat/internal/auth/mfa"
	"github.com/moat-dev/moat/internal/auth/passkey/passkeytest"
	"github.com/moat-dev/moat/internal/identity/throttle"
	"github.com/moat-dev/moat/internal/store"
	"github.com/moat-dev/moat/internal/store/storetest"
)

// clock is a settable fake time, starting now (the library checks its own
// expiry against the real clock).
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	st    store.Store
	svc   *Service
	mfa   *mfa.Service
	clock *clock
	user  *store.User
	rp    RP
	// auth is the user's authenticator: a software one, as a browser's
	// would answer (descope/virtualwebauthn).
	auth virtualwebauthn.Authenticator
}

func testKey(t testing.TB) *instancekey.Key {
	t.Helper()
	k, err := instancekey.New(bytes.Repeat([]byte{7}, instancekey.Size))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func openStore(t testing.TB) store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "moat.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func newFixture(t testing.TB, st store.Store) *fixture {
	t.Helper()
	if st == nil {
		st = openStore(t)
	}
	u := &store.User{Email: "alice@example.com", Name: "Alice"}
	if err := st.CreateUser(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	key := testKey(t)
	c := &clock{t: time.Now()}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	factor := mfa.New(st, key, throttle.New(attempts.NewStore(st), quiet))
	factor.Now, factor.Logger = c.now, quiet
	svc := New(st, key, factor)
	svc.Now, svc.Logger = c.now, quiet
	rp, err := RPOf("dash.example.com", "Sales dashboard")
	if err != nil {
		t.Fatal(err)
	}
	auth := virtualwebauthn.NewAuthenticatorWithOptions(virtualwebauthn.AuthenticatorOptions{UserHandle: []byte(u.ID)})
	return &fixture{st: st, svc: svc, mfa: factor, clock: c, user: u, rp: rp, auth: auth}
}

// freshBudgets gives the fixture a throttle with nothing counted yet, for a
// test that refuses many passkeys on purpose.
func (f *fixture) freshBudgets() {
	f.mfa.Throttle = throttle.New(attempts.NewMemory(0), f.mfa.Logger)
}

// browser is what a browser on origin at host rpID would answer.
func browser(rp RP) virtualwebauthn.RelyingParty {
	return virtualwebauthn.RelyingParty{ID: rp.ID, Name: rp.Name, Origin: rp.Origin}
}

func optionsJSON(t testing.TB, b *Begun) string {
	t.Helper()
	raw, err := json.Marshal(b.Options)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

// create answers a registration's options with a new credential.
func (f *fixture) create(t testing.TB, b *Begun, as virtualwebauthn.RelyingParty) (virtualwebauthn.Credential, []byte) {
	t.Helper()
	opts, err := virtualwebauthn.ParseAttestationOptions(optionsJSON(t, b))
	if err != nil {
		t.Fatal(err)
	}
	cred := passkeytest.Credential()
	return cred, []byte(virtualwebauthn.CreateAttestationResponse(as, f.auth, cred, *opts))
}

// get answers an assertion's options with cred, its counter one up.
func (f *fixture) get(t testing.TB, b *Begun, as virtualwebauthn.RelyingParty, cred *virtualwebauthn.Credential) []byte {
	t.Helper()
	opts, err := virtualwebauthn.ParseAssertionOptions(optionsJSON(t, b))
	if err != nil {
		t.Fatal(err)
	}
	cred.Counter++
	return []byte(virtualwebauthn.CreateAssertionResponse(as, f.auth, *cred, *opts))
}

// register adds a passkey for the fixture's user on the fixture's host.
func (f *fixture) register(t testing.TB, binding string) (*virtualwebauthn.Credential, *store.Passkey) {
	t.Helper()
	ctx := context.Background()
	b, err := f.svc.BeginRegistration(ctx, f.rp, f.user, binding)
	if err != nil {
		t.Fatal(err)
	}
	cred, resp := f.create(t, b, browser(f.rp))
	p, err := f.svc.FinishRegistration(ctx, f.rp, f.user, binding, b.State, resp, "Laptop", "192.0.2.1")
	if err != nil {
		t.Fatalf("finish registration: %v", err)
	}
	return &cred, p
}

func (f *fixture) audits(t testing.TB, action string) []*store.AuditEvent {
	t.Helper()
	ev, err := f.st.ListAudit(context.Background(), store.AuditFilter{Action: action})
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func TestAPasskeyIsAddedThenProvesTheSecondFactor(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	cred, p := f.register(t, "session-1")
	if p.Name != "Laptop" || p.RPID != "dash.example.com" || p.UserID != f.user.ID || p.CredentialID == "" {
		t.Fatalf("stored passkey %+v", p)
	}
	if len(f.audits(t, "passkey.add")) != 1 {
		t.Error("adding a passkey is not an audit event")
	}
	b, err := f.svc.BeginAssertion(ctx, f.rp, f.user, "pending-1", throttle.Source{})
	if err != nil {
		t.Fatal(err)
	}
	used, err := f.svc.FinishAssertion(ctx, f.rp, f.user, "pending-1", b.State, f.get(t, b, browser(f.rp), cred), throttle.Source{Client: netip.MustParseAddr("192.0.2.1")})
	if err != nil {
		t.Fatalf("finish assertion: %v", err)
	}
	if used.ID != p.ID || used.SignCount != 1 {
		t.Errorf("used %+v, want passkey %s at counter 1", used, p.ID)
	}
	list, _ := f.st.ListPasskeys(ctx, f.user.ID)
	if len(list) != 1 || list[0].SignCount != 1 || list[0].LastUsed.IsZero() {
		t.Errorf("after use the store has %+v, want counter 1 and a last use", list)
	}
	// The record is sealed: the public key is not in the store in clear.
	if bytes.Contains(list[0].Record, []byte("publicKey")) {
		t.Error("the credential record is stored in clear")
	}
}

func TestAChallengeFinishesOneCeremonyOnly(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	cred, _ := f.register(t, "s")
	b, _ := f.svc.BeginAssertion(ctx, f.rp, f.user, "p", throttle.Source{})
	resp := f.get(t, b, browser(f.rp), cred)
	if _, err := f.svc.FinishAssertion(ctx, f.rp, f.user, "p", b.State, resp, throttle.Source{}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.FinishAssertion(ctx, f.rp, f.user, "p", b.State, resp, throttle.Source{}); !errors.Is(err, ErrExpired) {
		t.Fatalf("the same answer replayed: %v, want ErrExpired", err)
	}
	// A fresh signature over the used challenge is refused too.
	if _, err := f.svc.FinishAssertion(ctx, f.rp, f.user, "p", b.State, f.get(t, b, browser(f.rp), cred), throttle.Source{}); !errors.Is(err, ErrExpired) {
		t.Fatalf("a new answer to a used challenge: %v, want ErrExpired", err)
	}
	// Registration challenges are single-use as well.
	rb, _ := f.svc.BeginRegistration(ctx, f.rp, f.user, "s")
	_, rresp := f.create(t, rb, browser(f.rp))
	if _, err := f.svc.FinishRegistration(ctx, f.rp, f.user, "s", rb.State, rresp, "Phone", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.FinishRegistration(ctx, f.rp, f.user, "s", rb.State, rresp, "Phone", ""); !errors.Is(err, ErrExpired) {
		t.Fatalf("a registration replayed: %v, want ErrExpired", err)
	}
}

func TestAnExpiredCeremonyIsRefused(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	cred, _ := f.register(t, "s")
	b, _ := f.svc.BeginAssertion(ctx, f.rp, f.user, "p", throttle.Source{})
	resp := f.get(t, b, browser(f.rp), cred)
	f.clock.add(CeremonyTTL + time.Second)
	if _, err := f.svc.FinishAssertion(ctx, f.rp, f.user, "p", b.State, resp, throttle.Source{}); !errors.Is(err, ErrExpired) {
		t.Fatalf("finished %s after it began: %v, want ErrExpired", CeremonyTTL+time.Second, err)
	}
}

func TestAStateOpensOnlyForItsBindingPurposeUserAndHost(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	cred, _ := f.register(t, "s")
	other := &store.User{Email: "bob@example.com"}
	if err := f.st.CreateUser(ctx, other); err != nil {
		t.Fatal(err)
	}
	otherRP, _ := RPOf("other.example.com", "")
	for _, tc := range []struct {
		name   string
		finish func(b *Begun, resp []byte) error
	}{
		{"another binding (session, pending step, browser)", func(b *Begun, resp []byte) error {
			_, err := f.svc.FinishAssertion(ctx, f.rp, f.user, "someone else's", b.State, resp, throttle.Source{})
			return err
		}},
		{"another purpose", func(b *Begun, resp []byte) error {
			_, _, err := f.svc.FinishSignIn(ctx, f.rp, "p", b.State, resp, throttle.Source{})
			return err
		}},
		{"another user", func(b *Begun, resp []byte) error {
			_, err := f.svc.FinishAssertion(ctx, f.rp, other, "p", b.State, resp, throttle.Source{})
			return err
		}},
		{"another host", func(b *Begun, resp []byte) error {
			_, err := f.svc.FinishAssertion(ctx, otherRP, f.user, "p", b.State, resp, throttle.Source{})
			return err
		}},
		{"a state changed by the browser", func(b *Begun, resp []byte) error {
			s := []byte(b.State)
			s[len(s)/2] ^= 1
			_, err := f.svc.FinishAssertion(ctx, f.rp, f.user, "p", string(s), resp, throttle.Source{})
			return err
		}},
		{"no state", func(b *Begun, resp []byte) error {
			_, err := f.svc.FinishAssertion(ctx, f.rp, f.user, "p", "", resp, throttle.Source{})
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := f.svc.BeginAssertion(ctx, f.rp, f.user, "p", throttle.Source{})
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.finish(b, f.get(t, b, browser(f.rp), cred)); !errors.Is(err, ErrExpired) {
				t.Errorf("err = %v, want ErrExpired", err)
			}
			f.freshBudgets()
		})
	}
}

func TestAnAnswerFromAnotherOriginOrForAnotherHostIsRefused(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	cred, _ := f.register(t, "s")
	phishing := browser(f.rp)
	phishing.Origin = "https://dash.example.com.evil.example"
	otherHost := browser(f.rp)
	otherHost.ID = "example.com" // signed for another relying party id
	otherPort := browser(f.rp)
	otherPort.Origin = "https://dash.example.com:8443"
	for name, as := range map[string]virtualwebauthn.RelyingParty{"another origin": phishing, "another relying party id": otherHost, "another port": otherPort} {
		t.Run(name, func(t *testing.T) {
			b, _ := f.svc.BeginAssertion(ctx, f.rp, f.user, "p", throttle.Source{})
			if _, err := f.svc.FinishAssertion(ctx, f.rp, f.user, "p", b.State, f.get(t, b, as, cred), throttle.Source{}); !errors.Is(err, ErrInvalid) {
				t.Errorf("err = %v, want ErrInvalid", err)
			}
			f.freshBudgets()
		})
	}
	t.Run("a registration from another origin", func(t *testing.T) {
		b, _ := f.svc.BeginRegistration(ctx, f.rp, f.user, "s")
		_, resp := f.create(t, b, phishing)
		if _, err := f.svc.FinishRegistration(ctx, f.rp, f.user, "s", b.State, resp, "Evil", ""); !errors.Is(err, ErrInvalid) {
			t.Errorf("err = %v, want ErrInvalid", err)
		}
	})
}

func TestAPasskeySignsOnlyForTheHostItWasMadeOn(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	cred, _ := f.register(t, "s")
	otherRP, _ := RPOf("reports.example.com", "")
	if _, err := f.svc.BeginAssertion(ctx, otherRP, f.user, "p", throttle.Source{}); !errors.Is(err, ErrNone) {
		t.Fatalf("a second step on another host offered the passkey: %v, want ErrNone", err)
	}
	b, _ := f.svc.BeginSignIn(ctx, otherRP, "browser")
	if _, _, err := f.svc.FinishSignIn(ctx, otherRP, "browser", b.State, f.get(t, b, browser(otherRP), cred), throttle.Source{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("signed in on another host: %v, want ErrInvalid", err)
	}
	all, here, err := f.svc.Count(ctx, f.user.ID, otherRP.ID)
	if err != nil || all != 1 || here != 0 {
		t.Errorf("Count = %d, %d, %v; want 1 in all, 0 here", all, here, err)
	}
}

func TestAClonedAuthenticatorIsRefused(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	cred, p := f.register(t, "s")
	clone := *cred // the same key, copied off the device
	cred.Counter = 4
	b, _ := f.svc.BeginAssertion(ctx, f.rp, f.user, "p", throttle.Source{})
	if _, err := f.svc.FinishAssertion(ctx, f.rp, f.user, "p", b.State, f.get(t, b, browser(f.rp), cred), throttle.Source{}); err != nil {
		t.Fatal(err)
	}
	clone.Counter = 2 // the copy is behind the original (5)
	b, _ = f.svc.BeginAssertion(ctx, f.rp, f.user, "p", throttle.Source{})
	if _, err := f.svc.FinishAssertion(ctx, f.rp, f.user, "p", b.State, f.get(t, b, browser(f.rp), &clone), throttle.Source{}); !errors.Is(err, ErrCloned) {
		t.Fatalf("a counter behind the stored one: %v, want ErrCloned", err)
	}
	ev := f.audits(t, "passkey.clone_suspected")
	if len(ev) != 1 || ev[0].Subject != f.user.Email || !strings.Contains(ev[0].Detail, `"Laptop"`) || !strings.Contains(ev[0].Detail, "counter 3 not above 5") {
		t.Errorf("audit events %+v, want one passkey.clone_suspected naming the passkey", ev)
	}
	// The same counter again (a replayed signature's) is refused too.
	b, _ = f.svc.BeginAssertion(ctx, f.rp, f.user, "p", throttle.Source{})
	clone.Counter = 4
	if _, err := f.svc.FinishAssertion(ctx, f.rp, f.user, "p", b.State, f.get(t, b, browser(f.rp), &clone), throttle.Source{}); !errors.Is(err, ErrCloned) {
		t.Fatalf("the stored counter again: %v, want ErrCloned", err)
	}
	got, _ := f.st.GetPasskeyByCredentialID(ctx, p.CredentialID)
	if got.SignCount != 5 {
		t.Errorf("stored counter %d, want 5 (the clone moved nothing)", got.SignCount)
	}
}

func TestSignInWithAPasskeyAlone(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	cred, p := f.register(t, "s")
	b, err := f.svc.BeginSignIn(ctx, f.rp, "browser")
	if err != nil {
		t.Fatal(err)
	}
	if opts := optionsJSON(t, b); strings.Contains(opts, "allowCredentials") || !strings.Contains(opts, `"userVerification":"required"`) {
		t.Errorf("sign-in options %s: want no allow list (discoverable) and user verification required", opts)
	}
	u, used, err := f.svc.FinishSignIn(ctx, f.rp, "browser", b.State, f.get(t, b, browser(f.rp), cred), throttle.Source{})
	if err != nil {
		t.Fatal(err)
	}
	if u.ID != f.user.ID || used.ID != p.ID {
		t.Errorf("signed in %s with %s, want %s with %s", u.Email, used.ID, f.user.Email, p.ID)
	}

	t.Run("without user verification", func(t *testing.T) {
		f.auth.Options.UserNotVerified = true
		defer func() { f.auth.Options.UserNotVerified = false }()
		b, _ := f.svc.BeginSignIn(ctx, f.rp, "browser")
		if _, _, err := f.svc.FinishSignIn(ctx, f.rp, "browser", b.State, f.get(t, b, browser(f.rp), cred), throttle.Source{}); !errors.Is(err, ErrInvalid) {
			t.Errorf("err = %v, want ErrInvalid", err)
		}
	})
	t.Run("claiming another user", func(t *testing.T) {
		f.auth.Options.UserHandle = []byte("someone-else")
		defer func() { f.auth.Options.UserHandle = []byte(f.user.ID) }()
		b, _ := f.svc.BeginSignIn(ctx, f.rp, "browser")
		if _, _, err := f.svc.FinishSignIn(ctx, f.rp, "browser", b.State, f.get(t, b, browser(f.rp), cred), throttle.Source{}); !errors.Is(err, ErrInvalid) {
			t.Errorf("err = %v, want ErrInvalid", err)
		}
	})
	t.Run("an unknown credential", func(t *testing.T) {
		stranger := passkeytest.Credential()
		b, _ := f.svc.BeginSignIn(ctx, f.rp, "browser")
		if _, _, err := f.svc.FinishSignIn(ctx, f.rp, "browser", b.State, f.get(t, b, browser(f.rp), &stranger), throttle.Source{}); !errors.Is(err, ErrInvalid) {
			t.Errorf("err = %v, want ErrInvalid", err)
		}
	})
	t.Run("a disabled user", func(t *testing.T) {
		f.freshBudgets()
		u, _ := f.st.GetUser(ctx, f.user.ID)
		u.Disabled = true
		if err := f.st.UpdateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		b, _ := f.svc.BeginSignIn(ctx, f.rp, "browser")
		if _, _, err := f.svc.FinishSignIn(ctx, f.rp, "browser", b.State, f.get(t, b, browser(f.rp), cred), throttle.Source{}); !errors.Is(err, ErrInvalid) {
			t.Errorf("err = %v, want ErrInvalid", err)
		}
	})
}

// Refused passkeys count on the second-factor budget a wrong TOTP code
// counts on: past it, the next passkey and the next code both wait.
func TestRefusedPasskeysShareTheTOTPBudget(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	cred, _ := f.register(t, "s")
	wrong := browser(f.rp)
	wrong.Origin = "https://evil.example"
	lim := throttle.SecondFactorLimits
	lim.Account = throttle.SlowDown{Free: 3, Base: time.Hour, Max: time.Hour, Window: time.Hour}
	f.mfa.Throttle.Limits[throttle.SecondFactor] = lim
	from := throttle.Source{Client: netip.MustParseAddr("198.51.100.7")}
	var te *mfa.ThrottledError
	refused := 0
	for ; refused <= lim.Account.Free+1; refused++ {
		b, err := f.svc.BeginAssertion(ctx, f.rp, f.user, "p", from)
		if errors.As(err, &te) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.FinishAssertion(ctx, f.rp, f.user, "p", b.State, f.get(t, b, wrong, cred), from); !errors.Is(err, ErrInvalid) {
			t.Fatal(err)
		}
	}
	if te == nil {
		t.Fatalf("after %d refused passkeys the account need not wait", refused)
	}
	// The free failures, then the slow-down's first turn.
	if refused != lim.Account.Free+1 {
		t.Errorf("%d passkeys were refused before the wait, want %d", refused, lim.Account.Free+1)
	}
	if err := f.mfa.Verify(ctx, f.user.ID, f.user.Email, "123456", throttle.Source{Client: netip.MustParseAddr("203.0.113.9")}); !errors.As(err, &te) {
		t.Fatalf("a TOTP code after %d refused passkeys: %v, want the same wait", refused, err)
	}
	if n := len(f.audits(t, "mfa.failure")); n != refused {
		t.Errorf("%d mfa.failure audit events, want %d", n, refused)
	}
	// A browser with a budget of its own (a signed-in session) passes
	// with a good passkey meanwhile.
	own := throttle.Source{Client: netip.MustParseAddr("203.0.113.9"), Device: throttle.SessionDevice("the owner's session")}
	b, err := f.svc.BeginAssertion(ctx, f.rp, f.user, "p", own)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.FinishAssertion(ctx, f.rp, f.user, "p", b.State, f.get(t, b, browser(f.rp), cred), own); err != nil {
		t.Fatal(err)
	}
}

func TestARemovedPasskeyNoLongerSigns(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	cred, p := f.register(t, "s")
	b, _ := f.svc.BeginSignIn(ctx, f.rp, "browser")
	resp := f.get(t, b, browser(f.rp), cred)
	if err := f.st.DeletePasskey(ctx, f.user.ID, p.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.svc.FinishSignIn(ctx, f.rp, "browser", b.State, resp, throttle.Source{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a removed passkey signed in: %v", err)
	}
	if _, err := f.svc.BeginAssertion(ctx, f.rp, f.user, "p", throttle.Source{}); !errors.Is(err, ErrNone) {
		t.Fatalf("a removed passkey is offered: %v", err)
	}
}

func TestARecordMovedToAnotherUserDoesNotOpen(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	cred, p := f.register(t, "s")
	mallory := &store.User{Email: "mallory@example.com"}
	if err := f.st.CreateUser(ctx, mallory); err != nil {
		t.Fatal(err)
	}
	// A database writer copies alice's record into a row of mallory's.
	if err := f.st.DeletePasskey(ctx, f.user.ID, p.ID); err != nil {
		t.Fatal(err)
	}
	if err := f.st.AddPasskey(ctx, &store.Passkey{UserID: mallory.ID, CredentialID: p.CredentialID, RPID: p.RPID, Name: "copied", Record: p.Record}); err != nil {
		t.Fatal(err)
	}
	f.auth.Options.UserHandle = []byte(mallory.ID)
	b, _ := f.svc.BeginSignIn(ctx, f.rp, "browser")
	if _, _, err := f.svc.FinishSignIn(ctx, f.rp, "browser", b.State, f.get(t, b, browser(f.rp), cred), throttle.Source{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a copied record signed mallory in: %v", err)
	}
}

func TestAnAuthenticatorMakesOnePasskeyPerHost(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	cred, _ := f.register(t, "s")
	b, _ := f.svc.BeginRegistration(ctx, f.rp, f.user, "s")
	opts, _ := virtualwebauthn.ParseAttestationOptions(optionsJSON(t, b))
	if !cred.IsExcludedForAttestation(*opts) {
		t.Error("a registration does not exclude the credential the user has on this host")
	}
	// The same credential sent again anyway is refused.
	resp := virtualwebauthn.CreateAttestationResponse(browser(f.rp), f.auth, *cred, *opts)
	if _, err := f.svc.FinishRegistration(ctx, f.rp, f.user, "s", b.State, []byte(resp), "Again", ""); !errors.Is(err, ErrExists) {
		t.Fatalf("the same credential twice: %v, want ErrExists", err)
	}
}

func TestRPOfNeedsAHostName(t *testing.T) {
	for _, tc := range []struct {
		host, id, origin string
		err              bool
	}{
		{host: "Dash.Example.com", id: "dash.example.com", origin: "https://dash.example.com"},
		{host: "dash.example.com:443", id: "dash.example.com", origin: "https://dash.example.com"},
		{host: "localhost:8443", id: "localhost", origin: "https://localhost:8443"},
		{host: "127.0.0.1:8443", err: true},
		{host: "[::1]:8443", err: true},
		{host: "", err: true},
		{host: "a/b", err: true},
	} {
		rp, err := RPOf(tc.host, "")
		if tc.err != (err != nil) || !tc.err && (rp.ID != tc.id || rp.Origin != tc.origin) {
			t.Errorf("RPOf(%q) = %+v, %v", tc.host, rp, err)
		}
	}
}

func TestCleanName(t *testing.T) {
	for in, want := range map[string]string{"  Laptop ": "Laptop", "": "Chrome · Linux", "一台目のキー": "一台目のキー", strings.Repeat("鍵", MaxName): strings.Repeat("鍵", MaxName)} {
		if got, err := CleanName(in, "Chrome · Linux"); err != nil || got != want {
			t.Errorf("CleanName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"a\nb", strings.Repeat("x", MaxName+1), "tab\there", "\xff"} {
		if _, err := CleanName(bad, ""); !errors.Is(err, ErrName) {
			t.Errorf("CleanName(%q): %v, want ErrName", bad, err)
		}
	}
	if _, err := CleanName("", ""); !errors.Is(err, ErrName) {
		t.Error("an empty name without a fallback was accepted")
	}
}

// TestACeremonyBegunOnOneInstanceFinishesOnAnotherOnce: two instances (two
// services on their own connections to one PostgreSQL, sharing the
// instance key): a ceremony begun on the first finishes on the second, and
// the same answer then fails on the first.
func TestACeremonyBegunOnOneInstanceFinishesOnAnotherOnce(t *testing.T) {
	dsn := storetest.Postgres(t)
	open := func() store.Store {
		st, err := store.Open(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		return st
	}
	a := newFixture(t, open())
	stB := open()
	b := New(stB, testKey(t), mfa.New(stB, testKey(t), throttle.New(attempts.NewStore(stB), nil)))
	b.Logger = a.svc.Logger
	ctx := context.Background()

	begun, err := a.svc.BeginRegistration(ctx, a.rp, a.user, "s")
	if err != nil {
		t.Fatal(err)
	}
	cred, resp := a.create(t, begun, browser(a.rp))
	if _, err := b.FinishRegistration(ctx, a.rp, a.user, "s", begun.State, resp, "Laptop", ""); err != nil {
		t.Fatalf("registration begun on A, finished on B: %v", err)
	}
	begun, _ = b.BeginSignIn(ctx, a.rp, "browser")
	answer := a.get(t, begun, browser(a.rp), &cred)
	if u, _, err := a.svc.FinishSignIn(ctx, a.rp, "browser", begun.State, answer, throttle.Source{}); err != nil || u.ID != a.user.ID {
		t.Fatalf("sign-in begun on B, finished on A: %v", err)
	}
	if _, _, err := b.FinishSignIn(ctx, a.rp, "browser", begun.State, answer, throttle.Source{}); !errors.Is(err, ErrExpired) {
		t.Fatalf("the same answer on B after A: %v, want ErrExpired", err)
	}
}
