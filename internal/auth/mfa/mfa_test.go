package mfa

import (
	"bytes"
	"context"
	"errors"
	"image/png"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/moat-dev/moat/internal/attempts"
	"github.com/moat-dev/moat/internal/auth/instancekey"
	"github.com/moat-dev/moat/internal/identity/throttle"
	"github.com/moat-dev/moat/internal/store"
	"github.com/moat-dev/moat/internal/store/storetest"
)

// clock is a settable fake time.
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
	clock *clock
	user  *store.User
}

func testKey(t testing.TB) *instancekey.Key {
	t.Helper()
	k, err := instancekey.New(bytes.Repeat([]byte{7}, instancekey.Size))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newFixture(t testing.TB, st store.Store) *fixture {
	t.Helper()
	if st == nil {
		var err error
		st, err = store.Open(context.Background(), filepath.Join(t.TempDir(), "moat.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
	}
	u := &store.User{Email: "alice@example.com"}
	if err := st.CreateUser(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	svc := New(st, testKey(t), throttle.New(attempts.NewStore(st), nil))
	svc.Now = c.now
	return &fixture{st: st, svc: svc, clock: c, user: u}
}

func (f *fixture) code(t testing.TB, secret string, at time.Time) string {
	t.Helper()
	c, err := totp.GenerateCodeCustom(secret, at, totp.ValidateOpts{Period: Period, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// enrol runs Begin and Confirm and returns the secret and recovery codes.
func (f *fixture) enrol(t testing.TB) (string, []string) {
	t.Helper()
	ctx := context.Background()
	e, err := f.svc.Begin(ctx, f.user.ID, f.user.Email)
	if err != nil {
		t.Fatal(err)
	}
	codes, err := f.svc.Confirm(ctx, f.user.ID, f.user.Email, f.code(t, e.Secret, f.clock.now()), throttle.Source{Client: netip.MustParseAddr("192.0.2.1")})
	if err != nil {
		t.Fatalf("confirm: %v", err)
	}
	f.clock.add(Period * time.Second) // the enrolment code's step is used
	return e.Secret, codes
}

func TestEnrolmentGivesAKeyAQRCodeAndTenRecoveryCodes(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	e, err := f.svc.Begin(ctx, f.user.ID, f.user.Email)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(e.URL, "otpauth://totp/") || !strings.Contains(e.URL, "secret="+e.Secret) {
		t.Fatalf("url %q does not carry the secret", e.URL)
	}
	img, err := png.Decode(bytes.NewReader(e.QR))
	if err != nil || img.Bounds().Dx() != qrSize {
		t.Fatalf("qr code is not a %dpx PNG: %v", qrSize, err)
	}
	if ok, _ := f.svc.Enrolled(ctx, f.user.ID); ok {
		t.Fatal("enrolled before the first code")
	}
	if _, err := f.svc.Confirm(ctx, f.user.ID, f.user.Email, "000000", throttle.Source{}); !errors.Is(err, ErrInvalidCode) && f.code(t, e.Secret, f.clock.now()) != "000000" {
		t.Fatalf("a wrong code confirmed the enrolment: %v", err)
	}
	p, err := f.svc.Pending(ctx, f.user.ID, f.user.Email)
	if err != nil || p.Secret != e.Secret {
		t.Fatalf("pending enrolment lost its secret: %v", err)
	}
	codes, err := f.svc.Confirm(ctx, f.user.ID, f.user.Email, f.code(t, e.Secret, f.clock.now()), throttle.Source{})
	if err != nil {
		t.Fatal(err)
	}
	if len(codes) != RecoveryCodes {
		t.Fatalf("%d recovery codes, want %d", len(codes), RecoveryCodes)
	}
	if ok, _ := f.svc.Enrolled(ctx, f.user.ID); !ok {
		t.Fatal("not enrolled after confirm")
	}
	if _, err := f.svc.Begin(ctx, f.user.ID, f.user.Email); !errors.Is(err, ErrEnrolled) {
		t.Fatalf("begin over a confirmed factor: %v, want ErrEnrolled", err)
	}
}

func TestTheSecretIsSealedInTheStore(t *testing.T) {
	f := newFixture(t, nil)
	secret, _ := f.enrol(t)
	got, err := f.st.GetTOTP(context.Background(), f.user.ID)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(got.Secret, []byte(secret)) {
		t.Fatal("the store holds the TOTP secret in clear")
	}
	for _, h := range got.RecoveryCodes {
		if len(h) != 64 {
			t.Fatalf("recovery code stored as %q, want a SHA-256 hex", h)
		}
	}
}

func TestCodesWithinOneStepAreAcceptedAndFurtherOnesRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		offset time.Duration
		ok     bool
	}{
		{"a code of the current step", 0, true},
		{"a code of the previous step", -Period * time.Second, true},
		{"a code of the next step", Period * time.Second, true},
		{"a code two steps old", -2 * Period * time.Second, false},
		{"a code two steps ahead", 2 * Period * time.Second, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, nil)
			secret, _ := f.enrol(t)
			f.clock.add(5 * Period * time.Second)
			err := f.svc.Verify(context.Background(), f.user.ID, f.user.Email, f.code(t, secret, f.clock.now().Add(tc.offset)), throttle.Source{})
			if tc.ok && err != nil || !tc.ok && !errors.Is(err, ErrInvalidCode) {
				t.Fatalf("verify: %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestACodeIsAcceptedOnceOnly(t *testing.T) {
	f := newFixture(t, nil)
	secret, _ := f.enrol(t)
	ctx := context.Background()
	code := f.code(t, secret, f.clock.now())
	if err := f.svc.Verify(ctx, f.user.ID, f.user.Email, code, throttle.Source{}); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Verify(ctx, f.user.ID, f.user.Email, code, throttle.Source{}); !errors.Is(err, ErrInvalidCode) {
		t.Fatalf("replay: %v, want ErrInvalidCode", err)
	}
	// An earlier step's code is refused too once a later one was used.
	if err := f.svc.Verify(ctx, f.user.ID, f.user.Email, f.code(t, secret, f.clock.now().Add(-Period*time.Second)), throttle.Source{}); !errors.Is(err, ErrInvalidCode) {
		t.Fatalf("older step after a newer one: %v, want ErrInvalidCode", err)
	}
}

func TestAReplayIsRefusedByAnotherInstance(t *testing.T) {
	f := newFixture(t, nil)
	secret, _ := f.enrol(t)
	other := New(f.st, testKey(t), throttle.New(attempts.NewStore(f.st), nil))
	other.Now = f.clock.now
	ctx := context.Background()
	code := f.code(t, secret, f.clock.now())
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, s := range []*Service{f.svc, other} {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = s.Verify(ctx, f.user.ID, f.user.Email, code, throttle.Source{}) }()
	}
	wg.Wait()
	if (errs[0] == nil) == (errs[1] == nil) {
		t.Fatalf("two instances answered %v and %v; exactly one must accept", errs[0], errs[1])
	}
}

func TestARecoveryCodeWorksOnce(t *testing.T) {
	f := newFixture(t, nil)
	_, codes := f.enrol(t)
	ctx := context.Background()
	typed := strings.ToUpper(strings.ReplaceAll(codes[3], "-", " "))
	if err := f.svc.Verify(ctx, f.user.ID, f.user.Email, typed, throttle.Source{}); err != nil {
		t.Fatalf("first use (typed in capitals with spaces): %v", err)
	}
	if err := f.svc.Verify(ctx, f.user.ID, f.user.Email, codes[3], throttle.Source{}); !errors.Is(err, ErrInvalidCode) {
		t.Fatalf("second use: %v, want ErrInvalidCode", err)
	}
	if n, _ := f.svc.RecoveryCodesLeft(ctx, f.user.ID); n != RecoveryCodes-1 {
		t.Fatalf("%d codes left, want %d", n, RecoveryCodes-1)
	}
	fresh, err := f.svc.RegenerateRecoveryCodes(ctx, f.user.ID, f.user.Email, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Verify(ctx, f.user.ID, f.user.Email, codes[4], throttle.Source{}); !errors.Is(err, ErrInvalidCode) {
		t.Fatalf("an old code after regeneration: %v, want ErrInvalidCode", err)
	}
	f.clock.add(time.Minute)
	if err := f.svc.Verify(ctx, f.user.ID, f.user.Email, fresh[0], throttle.Source{}); err != nil {
		t.Fatalf("a regenerated code: %v", err)
	}
}

// Wrong codes from unknown devices lock the account's second factor for
// them (the attacker has the password already), with an audit event; the
// browser of a signed-in session keeps its own budget meanwhile, and an
// administrator's unlock lifts the lock.
func TestWrongCodesLockUnknownDevicesWithAnAuditEventButNotTheOwner(t *testing.T) {
	f := newFixture(t, nil)
	secret, _ := f.enrol(t)
	ctx := context.Background()
	lim := throttle.SecondFactorLimits
	lim.Account.Free, lim.Lock = 100, throttle.Lock{Failures: 5, Clients: 1, For: time.Hour}
	f.svc.Throttle.Limits[throttle.SecondFactor] = lim
	attacker := throttle.Source{Client: netip.MustParseAddr("198.51.100.7")}
	var throttled *ThrottledError
	for i := range lim.Lock.Failures {
		if err := f.svc.Verify(ctx, f.user.ID, f.user.Email, "abcdefgh", attacker); !errors.Is(err, ErrInvalidCode) {
			t.Fatalf("wrong code %d: %v, want ErrInvalidCode", i+1, err)
		}
	}
	// Even the right code is refused from an unknown device now, and from
	// another address too.
	for _, from := range []throttle.Source{attacker, {Client: netip.MustParseAddr("203.0.113.9")}} {
		err := f.svc.Verify(ctx, f.user.ID, f.user.Email, f.code(t, secret, f.clock.now()), from)
		if !errors.As(err, &throttled) || !throttled.Locked || throttled.Wait < 59*time.Minute {
			t.Fatalf("right code from %v while locked: %v, want a ThrottledError with the lock", from.Client, err)
		}
	}
	events, err := f.st.ListAudit(ctx, store.AuditFilter{Action: "mfa.locked"})
	if err != nil || len(events) != 1 || events[0].Subject != f.user.Email {
		t.Fatalf("lock audit events %v (%v), want one for %s", events, err, f.user.Email)
	}
	owner := throttle.Source{Client: netip.MustParseAddr("203.0.113.9"), Device: throttle.SessionDevice("the owner's session")}
	if err := f.svc.Verify(ctx, f.user.ID, f.user.Email, f.code(t, secret, f.clock.now()), owner); err != nil {
		t.Fatalf("the owner's signed-in browser during the lock: %v", err)
	}
	if err := f.svc.Throttle.Unlock(ctx, f.user.Email); err != nil {
		t.Fatal(err)
	}
	f.clock.add(Period * time.Second)
	if err := f.svc.Verify(ctx, f.user.ID, f.user.Email, f.code(t, secret, f.clock.now()), attacker); err != nil {
		t.Fatalf("after the unlock: %v", err)
	}
}

func TestVerifyWithoutEnrolmentSaysSo(t *testing.T) {
	f := newFixture(t, nil)
	if err := f.svc.Verify(context.Background(), f.user.ID, f.user.Email, "123456", throttle.Source{}); !errors.Is(err, ErrNotEnrolled) {
		t.Fatalf("got %v, want ErrNotEnrolled", err)
	}
	secret, _ := f.enrol(t)
	if err := f.svc.Remove(context.Background(), f.user.ID, "admin@example.com", f.user.Email, ""); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Verify(context.Background(), f.user.ID, f.user.Email, f.code(t, secret, f.clock.now()), throttle.Source{}); !errors.Is(err, ErrNotEnrolled) {
		t.Fatalf("after remove: %v, want ErrNotEnrolled", err)
	}
}

func TestReplayRefusedOnPostgres(t *testing.T) {
	dsn := storetest.Postgres(t)
	st, err := store.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	f := newFixture(t, st)
	secret, codes := f.enrol(t)
	ctx := context.Background()
	code := f.code(t, secret, f.clock.now())
	if err := f.svc.Verify(ctx, f.user.ID, f.user.Email, code, throttle.Source{}); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Verify(ctx, f.user.ID, f.user.Email, code, throttle.Source{}); !errors.Is(err, ErrInvalidCode) {
		t.Fatalf("replay on postgres: %v", err)
	}
	if err := f.svc.Verify(ctx, f.user.ID, f.user.Email, codes[0], throttle.Source{}); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Verify(ctx, f.user.ID, f.user.Email, codes[0], throttle.Source{}); !errors.Is(err, ErrInvalidCode) {
		t.Fatalf("recovery code reuse on postgres: %v", err)
	}
}
