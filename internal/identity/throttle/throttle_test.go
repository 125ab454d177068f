package throttle

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/moat-dev/moat/internal/attempts"
	"github.com/moat-dev/moat/internal/metrics"
)

// testLimits are PasswordLimits without a slow-down (Free is high), so a
// test sees one budget at a time.
func testLimits() Limits {
	l := PasswordLimits
	l.Account.Free = 1000
	l.Lock.Failures = 1000
	return l
}

func newService(t *testing.T, l Limits) *Service {
	t.Helper()
	s := New(attempts.NewMemory(0), slog.New(slog.DiscardHandler))
	s.Limits[Password] = l
	return s
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func from(ip string) Source { return Source{Client: addr(ip)} }

func pw(account string, src Source) Attempt {
	return Attempt{Factor: Password, Account: account, Source: src}
}

// try runs one attempt that fails, unless Begin refuses it; it returns the
// verdict.
func try(t *testing.T, s *Service, a Attempt) Verdict {
	t.Helper()
	v, err := s.Begin(t.Context(), a)
	if err != nil {
		t.Fatal(err)
	}
	if !v.Refused() {
		if _, err := s.Failed(t.Context(), a); err != nil {
			t.Fatal(err)
		}
	}
	return v
}

func TestTheSlowDownDoublesUpToItsMaximum(t *testing.T) {
	s := SlowDown{Free: 3, Base: time.Second, Max: 5 * time.Second}
	for n, want := range []time.Duration{0, 0, 0, time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second} {
		if got := s.Delay(int64(n)); got != want {
			t.Errorf("after %d failures: delay %v, want %v", n, got, want)
		}
	}
	if got := s.Delay(1 << 40); got != 5*time.Second {
		t.Errorf("after very many failures: %v", got)
	}
}

// Issue 12 #2: the budget is per (account, client): a client that spent its
// tries at one account may still try another, and another client may still
// try the first.
func TestTheBudgetIsPerAccountAndClient(t *testing.T) {
	s := newService(t, testLimits())
	attacker := from("198.51.100.7")
	for i := range s.Limits[Password].Pair.N {
		if v := try(t, s, pw("alice@example.com", attacker)); v.Refused() {
			t.Fatalf("try %d refused: %+v", i+1, v)
		}
	}
	v := try(t, s, pw("alice@example.com", attacker))
	if v.Reason != ReasonAccountClient || v.Wait <= 0 {
		t.Fatalf("past the budget: %+v, want account_client with a wait", v)
	}
	if v := try(t, s, pw("bob@example.com", attacker)); v.Refused() {
		t.Errorf("the client's tries at another account: %+v", v)
	}
	if v := try(t, s, pw("alice@example.com", from("203.0.113.9"))); v.Refused() {
		t.Errorf("another client at the account: %+v", v)
	}
	// An IPv6 client is its /64.
	six := []Source{from("2001:db8:1:2::1"), from("2001:db8:1:2::ffff")}
	for i := range s.Limits[Password].Pair.N {
		try(t, s, pw("carol@example.com", six[i%2]))
	}
	if v := try(t, s, pw("carol@example.com", from("2001:db8:1:2:3::9"))); v.Reason != ReasonAccountClient {
		t.Errorf("another address of the same /64: %+v, want account_client", v)
	}
}

// A success forgets the client's tries at the account, not its failures
// across accounts.
func TestASuccessForgetsThePairsTries(t *testing.T) {
	s := newService(t, testLimits())
	c := from("198.51.100.7")
	for range s.Limits[Password].Pair.N - 1 {
		try(t, s, pw("alice@example.com", c))
	}
	a := pw("alice@example.com", c)
	if v, err := s.Begin(t.Context(), a); err != nil || v.Refused() {
		t.Fatal(v, err)
	}
	if err := s.Passed(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	for i := range s.Limits[Password].Pair.N {
		if v := try(t, s, pw("alice@example.com", c)); v.Refused() {
			t.Fatalf("after the success, try %d refused: %+v", i+1, v)
		}
	}
}

func TestTheClientBudgetSpansAccounts(t *testing.T) {
	l := testLimits()
	l.Client.N = 5
	s := newService(t, l)
	c := from("198.51.100.7")
	for i := range l.Client.N {
		if v := try(t, s, pw(fmt.Sprintf("user%d@example.com", i), c)); v.Refused() {
			t.Fatalf("failure %d refused: %+v", i+1, v)
		}
	}
	if v := try(t, s, pw("another@example.com", c)); v.Reason != ReasonClient {
		t.Fatalf("a new account from a client past its budget: %+v, want client", v)
	}
	if v := try(t, s, pw("another@example.com", from("198.51.100.8"))); v.Refused() {
		t.Errorf("another client: %+v", v)
	}
}

// The slow-down lets one attempt per turn through, however many clients
// fire at once: the budget is exact under concurrency. The next turn comes
// after the delay.
func TestTheSlowDownAdmitsOneAttemptPerTurn(t *testing.T) {
	l := testLimits()
	l.Account = SlowDown{Free: 2, Base: 300 * time.Millisecond, Max: 300 * time.Millisecond, Window: time.Hour}
	s := newService(t, l)
	for i := range 2 {
		try(t, s, pw("alice@example.com", from(fmt.Sprintf("198.51.100.%d", i+1))))
	}
	var mu sync.Mutex
	var admitted []string
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			a := pw("alice@example.com", from(fmt.Sprintf("203.0.113.%d", i+1)))
			v, err := s.Begin(context.Background(), a)
			if err != nil {
				t.Error(err)
				return
			}
			if v.Refused() {
				if v.Reason != ReasonAccount || v.Wait <= 0 || v.Wait > l.Account.Max {
					t.Errorf("refused with %+v, want the account's slow-down", v)
				}
				return
			}
			mu.Lock()
			admitted = append(admitted, a.Client.String())
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(admitted) != 1 {
		t.Fatalf("%d of 20 clients were admitted in one turn (%v), want 1", len(admitted), admitted)
	}
	next := pw("alice@example.com", from("192.0.2.1"))
	v, err := s.Begin(t.Context(), next)
	if err != nil || v.Reason != ReasonAccount {
		t.Fatalf("right after the turn was taken: %+v %v, want the slow-down", v, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for v.Refused() {
		if time.Now().After(deadline) {
			t.Fatalf("no next turn within 5 s: %+v", v)
		}
		if v, err = s.Begin(t.Context(), next); err != nil {
			t.Fatal(err)
		}
	}
}

// Issue 12 #2 at the throttle: an attack from many clients locks unknown
// devices out of the account; the owner's known browser keeps its budget,
// and an unlock lifts the lock.
func TestADistributedAttackLocksUnknownDevicesButNotTheOwnersBrowser(t *testing.T) {
	l := testLimits()
	l.Lock = Lock{Failures: 12, Clients: 4, For: time.Hour}
	s := newService(t, l)
	before := signInLocks(t)
	// Four clients, three failures each: the twelfth failure, from the
	// fourth client, locks.
	attack := func() bool {
		locked := false
		for c := range 4 {
			for range 3 {
				a := pw("alice@example.com", from(fmt.Sprintf("198.51.100.%d", c+1)))
				v, err := s.Begin(t.Context(), a)
				if err != nil || v.Refused() && !locked {
					t.Fatalf("refused before the lock: %+v %v", v, err)
				}
				if v.Refused() {
					continue
				}
				if locked, err = s.Failed(t.Context(), a); err != nil {
					t.Fatal(err)
				}
			}
		}
		return locked
	}
	if !attack() {
		t.Fatal("the twelfth failure from four clients did not lock")
	}
	if got := signInLocks(t) - before; got != 1 {
		t.Errorf("moat_signin_locks_total rose by %v, want 1", got)
	}
	v := try(t, s, pw("alice@example.com", from("192.0.2.50")))
	if v.Reason != ReasonLocked || v.Wait < 59*time.Minute {
		t.Fatalf("a new client during the lock: %+v, want locked for an hour", v)
	}
	if left, err := s.Locked(t.Context(), "alice@example.com"); err != nil || left < 59*time.Minute {
		t.Errorf("Locked = %v, %v", left, err)
	}
	owner := pw("alice@example.com", Source{Client: addr("192.0.2.50"), Device: "the owner's browser"})
	if v, err := s.Begin(t.Context(), owner); err != nil || v.Refused() {
		t.Fatalf("the owner's known browser during the lock: %+v %v", v, err)
	}
	if v := try(t, s, pw("bob@example.com", from("192.0.2.50"))); v.Refused() {
		t.Errorf("another account: %+v", v)
	}
	if err := s.Unlock(t.Context(), "alice@example.com"); err != nil {
		t.Fatal(err)
	}
	if left, _ := s.Locked(t.Context(), "alice@example.com"); left != 0 {
		t.Errorf("after the unlock: locked %v", left)
	}
	if v := try(t, s, pw("alice@example.com", from("192.0.2.51"))); v.Refused() {
		t.Errorf("a new client after the unlock: %+v", v)
	}
	// The same clients attacking again after the unlock lock it again.
	if !attack() {
		t.Error("the same attack after the unlock did not lock again")
	}
}

// One client alone never locks an account, however long it tries.
func TestOneClientAloneNeverLocks(t *testing.T) {
	l := testLimits()
	l.Pair.N = 1000
	l.Lock = Lock{Failures: 5, Clients: 2, For: time.Hour}
	s := newService(t, l)
	for i := range 20 {
		a := pw("alice@example.com", from("198.51.100.7"))
		if _, err := s.Begin(t.Context(), a); err != nil {
			t.Fatal(err)
		}
		if locked, err := s.Failed(t.Context(), a); err != nil || locked {
			t.Fatalf("failure %d from one client: locked %v, %v", i+1, locked, err)
		}
	}
}

// A known device has its own budget: spent, it is refused, while unknown
// devices are not.
func TestAKnownDeviceHasItsOwnBudget(t *testing.T) {
	s := newService(t, testLimits())
	dev := pw("alice@example.com", Source{Client: addr("192.0.2.1"), Device: "device-1"})
	for range s.Limits[Password].Device.N {
		if v := try(t, s, dev); v.Refused() {
			t.Fatalf("refused within the budget: %+v", v)
		}
	}
	if v := try(t, s, dev); v.Reason != ReasonDevice {
		t.Fatalf("past the budget: %+v, want device", v)
	}
	if v := try(t, s, pw("alice@example.com", from("192.0.2.1"))); v.Refused() {
		t.Errorf("the same address without the device: %+v", v)
	}
	// The device's failures do not count against the address.
	if st, _ := s.counter.Get(t.Context(), s.keys(pw("alice@example.com", from("192.0.2.1"))).client); st.Count != 1 {
		t.Errorf("the client's failures: %d, want 1 (the unknown device's)", st.Count)
	}
}

// A refused client is answered from memory: a flood costs the counter one
// read, not one per attempt.
func TestARefusedClientCostsOneRead(t *testing.T) {
	l := testLimits()
	l.Client.N = 1
	c := &countingCounter{Counter: attempts.NewMemory(0)}
	s := New(c, slog.New(slog.DiscardHandler))
	s.Limits[Password] = l
	try(t, s, pw("a@example.com", from("198.51.100.7")))
	c.reset()
	for range 100 {
		if v := try(t, s, pw("b@example.com", from("198.51.100.7"))); v.Reason != ReasonClient {
			t.Fatalf("%+v, want client", v)
		}
	}
	if n := c.calls(); n != 1 {
		t.Errorf("100 refused attempts made %d counter calls, want 1", n)
	}
	// The remembered refusal still says how long the whole window lasts.
	if v := try(t, s, pw("b@example.com", from("198.51.100.7"))); v.Wait < l.Client.Window-time.Minute {
		t.Errorf("a remembered refusal says wait %v, the window is %v", v.Wait, l.Client.Window)
	}
}

// counters_fail: with Redis unreachable, "open" counts in this process's
// memory and says so once; "closed" fails every check (503) and says so
// once; an unlock never pretends.
func TestAnUnreachableRedisFollowsCountersFail(t *testing.T) {
	const unreachable = "redis://127.0.0.1:1/0" // nothing listens on port 1
	for _, mode := range []string{"open", "closed"} {
		t.Run(mode, func(t *testing.T) {
			var logs bytes.Buffer
			s, err := Open(unreachable, mode, nil, slog.New(slog.NewTextHandler(&logs, nil)))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
			s.Limits[Password] = testLimits()
			a := pw("alice@example.com", from("198.51.100.7"))
			for range 3 {
				_, err = s.Begin(t.Context(), a)
				if mode == "open" && err == nil {
					_, err = s.Failed(t.Context(), a)
				}
			}
			switch {
			case mode == "open" && err != nil:
				t.Fatalf("counters_fail open: %v, want the attempt counted in memory", err)
			case mode == "closed" && err == nil:
				t.Fatal("counters_fail closed: the attempt went ahead without its budget")
			}
			if n := strings.Count(logs.String(), "Redis unreachable"); n != 1 {
				t.Errorf("%d log lines say Redis is unreachable, want 1:\n%s", n, logs.String())
			}
			if mode == "open" {
				if st, _ := s.counter.Get(t.Context(), s.keys(a).pair); st.Count != 3 {
					t.Errorf("the memory fallback counted %d tries, want 3", st.Count)
				}
			}
			if err := s.Unlock(t.Context(), "alice@example.com"); err == nil {
				t.Error("an unlock reported success without reaching Redis")
			}
		})
	}
}

func TestClientKeyGroupsAnIPv6Host(t *testing.T) {
	for _, tc := range []struct{ ip, want string }{
		{"203.0.113.7", "203.0.113.7"},
		{"::ffff:203.0.113.7", "203.0.113.7"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"},
	} {
		if got := ClientKey(netip.MustParseAddr(tc.ip)); got != tc.want {
			t.Errorf("ClientKey(%s) = %s, want %s", tc.ip, got, tc.want)
		}
	}
	if ClientKey(netip.Addr{}) != "unknown" {
		t.Error("no address is not one key")
	}
}

func TestRefusalsStayBounded(t *testing.T) {
	r := refusals{until: map[string]refusal{}}
	later := time.Now().Add(time.Minute)
	for i := range maxRefusals + 500 {
		r.set(fmt.Sprint(i), later)
	}
	if n := len(r.until); n > maxRefusals {
		t.Fatalf("%d refusals remembered, bound %d", n, maxRefusals)
	}
}

// signInLocks reads moat_signin_locks_total.
func signInLocks(t *testing.T) float64 {
	t.Helper()
	var m dto.Metric
	if err := metrics.SignInLocks.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// countingCounter counts the calls made to a Counter.
type countingCounter struct {
	attempts.Counter
	mu sync.Mutex
	n  int
}

func (c *countingCounter) count() { c.mu.Lock(); c.n++; c.mu.Unlock() }
func (c *countingCounter) calls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}
func (c *countingCounter) reset() { c.mu.Lock(); c.n = 0; c.mu.Unlock() }

func (c *countingCounter) Fail(ctx context.Context, key string, w time.Duration) (attempts.State, error) {
	c.count()
	return c.Counter.Fail(ctx, key, w)
}

func (c *countingCounter) Get(ctx context.Context, key string) (attempts.State, error) {
	c.count()
	return c.Counter.Get(ctx, key)
}

// Check says what Begin would, without counting: as often as it is asked,
// the budget stays whole.
func TestCheckCountsNothing(t *testing.T) {
	l := testLimits()
	l.Pair.N = 2
	s := newService(t, l)
	a := pw("alice@example.com", from("198.51.100.7"))
	for range 10 {
		if v, err := s.Check(t.Context(), a); err != nil || v.Refused() {
			t.Fatalf("Check: %+v %v", v, err)
		}
	}
	try(t, s, a)
	try(t, s, a)
	if v, err := s.Check(t.Context(), a); err != nil || v.Reason != ReasonAccountClient {
		t.Fatalf("Check past the budget: %+v %v, want account_client", v, err)
	}
	known := pw("alice@example.com", Source{Client: addr("198.51.100.7"), Device: "device-1"})
	for range 10 {
		if v, err := s.Check(t.Context(), known); err != nil || v.Refused() {
			t.Fatalf("Check of a known device: %+v %v", v, err)
		}
	}
	if v := try(t, s, known); v.Refused() {
		t.Errorf("the known device's first try after ten checks: %+v", v)
	}
}
