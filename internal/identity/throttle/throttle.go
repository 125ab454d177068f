package throttle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"time"

	"github.com/moat-dev/moat/internal/attempts"
	"github.com/moat-dev/moat/internal/metrics"
	"github.com/moat-dev/moat/internal/store"
)

// Factor is what an attempt proves. Each factor has budgets of its own (a
// wrong password costs no second-factor attempt) and keys of its own in
// the counter.
type Factor string

// The factors moat checks.
const (
	// Password is a password, on the sign-in page or to change it.
	Password Factor = "pw"
	// SecondFactor is a TOTP code or a recovery code, and any other second
	// factor: they share one budget, so adding a kind adds no guesses.
	SecondFactor Factor = "2f"
)

// Reason says which budget refused an attempt. It is the reason label of
// moat_signin_throttled_total.
type Reason string

// Reasons for a refusal.
const (
	// ReasonClient: the client (an address, or an IPv6 /64) failed too
	// often across accounts.
	ReasonClient Reason = "client"
	// ReasonAccountClient: the client tried this account too often.
	ReasonAccountClient Reason = "account_client"
	// ReasonDevice: the browser's device cookie (or session) spent its
	// budget on this account.
	ReasonDevice Reason = "device"
	// ReasonAccount: the account's unknown devices are slowed down; the
	// next attempt must wait its turn.
	ReasonAccount Reason = "account"
	// ReasonLocked: a distributed attack locked the account's sign-in from
	// unknown devices.
	ReasonLocked Reason = "locked"
)

// Source is where an attempt comes from.
type Source struct {
	// Client is the client's address; an IPv6 client's /64 counts as one
	// client (see ClientKey).
	Client netip.Addr
	// Device names a browser the account knows: the id of its device
	// cookie for the account (device.Jar.ID), or SessionDevice of the
	// signed-in session the attempt is made in. "" for an unknown device.
	Device string
}

// SessionDevice is the Device of an attempt made in a signed-in session
// (the account page, a password change): the session proves an earlier
// sign-in on this browser at least as well as a device cookie does.
func SessionDevice(sessionIDHash string) string { return "session:" + sessionIDHash }

// Attempt is one try at a factor.
type Attempt struct {
	Factor Factor
	// Account is the account tried, its normalized email address (every
	// spelling of an address is one account), or "" when none is named
	// yet: then only the client's budget applies.
	Account string
	Source
}

func (a Attempt) known() bool { return a.Device != "" && a.Account != "" }

// Budget is how many times a key may count within Window: a count is
// forgotten once Window passes without another.
type Budget struct {
	N      int
	Window time.Duration
}

// SlowDown is the delay unknown devices share on one account: the first
// Free failures cost nothing, then one attempt per Delay, which starts at
// Base and doubles with each failure up to Max. Failures are forgotten once
// Window passes without another.
type SlowDown struct {
	Free      int
	Base, Max time.Duration
	Window    time.Duration
}

// Delay is the time between attempts after the given number of failures.
func (s SlowDown) Delay(failures int64) time.Duration {
	if failures < int64(s.Free) || s.Base <= 0 {
		return 0
	}
	d := s.Base
	for i := int64(s.Free); i < failures && d < s.Max; i++ {
		d *= 2
	}
	return min(d, s.Max)
}

// Lock is when a distributed attack locks an account's sign-in from
// unknown devices: Failures failures (within SlowDown.Window of one
// another) from at least Clients different clients lock it For.
type Lock struct {
	Failures, Clients int
	For               time.Duration
}

// Limits are one factor's budgets.
type Limits struct {
	// Client: failures from one client across accounts (unknown devices).
	Client Budget
	// Pair: attempts from one client at one account (unknown devices),
	// forgotten after a success.
	Pair Budget
	// Device: attempts from one device cookie or session at its account,
	// forgotten after a success.
	Device Budget
	// Account: the slow-down every unknown device shares on the account.
	Account SlowDown
	// Lock: the lock of a distributed attack.
	Lock Lock
}

// The limits of each factor (the README's "Brute-force protection" gives
// the same numbers).
//
// Passwords: an unknown client gets 10 tries at one account and 50
// failures across accounts per 15 minutes; past 5 failures from anywhere
// the account's unknown devices get one try per 1 s, 2 s, 4 s … 1 min, so
// even a botnet guesses at most about 60 times an hour; 100 failures from
// 10 or more clients lock sign-in from unknown devices for an hour.
//
// Second factors: the attacker already has the password, so the slow-down
// grows to 5 minutes and 20 failures lock, from any number of clients: at
// most about 20 codes an hour, against a million six-digit codes (three of
// which are valid at a time).
var (
	PasswordLimits = Limits{
		Client:  Budget{N: 50, Window: 15 * time.Minute},
		Pair:    Budget{N: 10, Window: 15 * time.Minute},
		Device:  Budget{N: 10, Window: 15 * time.Minute},
		Account: SlowDown{Free: 5, Base: time.Second, Max: time.Minute, Window: time.Hour},
		Lock:    Lock{Failures: 100, Clients: 10, For: time.Hour},
	}
	SecondFactorLimits = Limits{
		Client:  Budget{N: 50, Window: 15 * time.Minute},
		Pair:    Budget{N: 10, Window: 15 * time.Minute},
		Device:  Budget{N: 10, Window: 15 * time.Minute},
		Account: SlowDown{Free: 3, Base: time.Second, Max: 5 * time.Minute, Window: time.Hour},
		Lock:    Lock{Failures: 20, Clients: 1, For: time.Hour},
	}
)

// Service applies the rules of every factor to attempts, on one counter.
// The process holds one for its whole life; it is safe for concurrent
// use, and instances sharing the counter share every budget.
type Service struct {
	// Limits are each factor's budgets: PasswordLimits and
	// SecondFactorLimits unless replaced before use.
	Limits  map[Factor]Limits
	counter attempts.Counter
	log     *slog.Logger
	memo    refusals
}

// New returns a Service counting in c.
func New(c attempts.Counter, log *slog.Logger) *Service {
	if log == nil {
		log = slog.Default()
	}
	return &Service{
		Limits:  map[Factor]Limits{Password: PasswordLimits, SecondFactor: SecondFactorLimits},
		counter: c,
		log:     log,
		memo:    refusals{until: map[string]refusal{}},
	}
}

// Open returns the Service of the counters: and counters_fail settings:
// counting in Redis when counters names a server, else in the store st.
// While Redis does not answer, counters_fail "open" counts in this
// instance's memory (each instance then has budgets of its own) and
// "closed" makes every check fail, so sign-ins are answered 503; either
// way one log line says so, and another when Redis answers again. Open
// does not connect: an unreachable Redis shows at the first attempt.
func Open(counters, countersFail string, st store.Store, log *slog.Logger) (*Service, error) {
	if log == nil {
		log = slog.Default()
	}
	c, err := attempts.Open(counters, st)
	if err != nil {
		return nil, fmt.Errorf("sign-in throttle: %w", err)
	}
	if counters != "" {
		f := &failover{primary: c, mode: countersFail, log: log}
		if countersFail != "closed" {
			f.mode, f.local = "open", attempts.NewMemory(0)
		}
		c = f
	}
	return New(c, log), nil
}

// Close releases the counter's connections (Redis).
func (s *Service) Close() error {
	if c, ok := s.counter.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// Verdict is Begin's answer. The zero Verdict lets the attempt go ahead.
type Verdict struct {
	// Wait is how long the client should wait before trying again.
	Wait time.Duration
	// Reason names the budget that refused the attempt; "" when it may go
	// ahead.
	Reason Reason
}

// Refused reports whether the attempt must not be checked.
func (v Verdict) Refused() bool { return v.Reason != "" }

// Begin is called before a factor is checked. A refused attempt must be
// answered without checking what was typed (429 with Retry-After: Wait):
// checking it would tell the guesser whether it was right. An attempt that
// goes ahead is counted against the budgets that must be exact (Pair,
// Device) already, and must be followed by Failed or Passed. An error
// means the counts could not be read or written: answer 503, never guess.
func (s *Service) Begin(ctx context.Context, a Attempt) (Verdict, error) {
	return s.decide(ctx, a, true)
}

// Check reports whether Begin would refuse a now, without counting it or
// taking a turn: for what comes before an attempt (a passkey ceremony's
// start), so a refused browser is told before it asks the person for
// anything. It counts in moat_signin_throttled_total like Begin.
func (s *Service) Check(ctx context.Context, a Attempt) (Verdict, error) {
	return s.decide(ctx, a, false)
}

func (s *Service) decide(ctx context.Context, a Attempt, count bool) (Verdict, error) {
	var v Verdict
	var err error
	switch k, lim := s.keys(a), s.limits(a.Factor); {
	case !a.known():
		v, err = s.beginUnknown(ctx, a, count)
	case count:
		v, err = s.spend(ctx, k.device, lim.Device, ReasonDevice)
	default:
		v, err = s.check(ctx, k.device, lim.Device, ReasonDevice)
	}
	if err != nil {
		return Verdict{}, fmt.Errorf("sign-in throttle: %w", err)
	}
	if v.Refused() {
		metrics.SignInThrottled.WithLabelValues(string(v.Reason)).Inc()
	}
	return v, nil
}

// beginUnknown applies the budgets of an unknown device, cheapest first,
// so that a refused client costs as little as possible; the slow-down's
// turn is taken only by an attempt no other budget refuses, so a refused
// attacker cannot take the turns of others. Without count it only reads.
func (s *Service) beginUnknown(ctx context.Context, a Attempt, count bool) (Verdict, error) {
	lim, k := s.limits(a.Factor), s.keys(a)
	if v, err := s.check(ctx, k.client, lim.Client, ReasonClient); err != nil || v.Refused() || a.Account == "" {
		return v, err
	}
	if v, err := s.check(ctx, k.pair, lim.Pair, ReasonAccountClient); err != nil || v.Refused() {
		return v, err
	}
	st, err := s.counter.Get(ctx, k.account)
	if err != nil {
		return Verdict{}, err
	}
	if st.Locked > 0 {
		return Verdict{Wait: st.Locked, Reason: ReasonLocked}, nil
	}
	if d := lim.Account.Delay(st.Count); d > 0 {
		if v, err := s.takeTurn(ctx, k, d, lim.Account.Max, count); err != nil || v.Refused() || !count {
			return v, err
		}
	}
	if !count {
		return Verdict{}, nil
	}
	return s.count(ctx, k.pair, lim.Pair, ReasonAccountClient)
}

// takeTurn admits one attempt per d at the account, however many clients
// fire at once and through however many instances. k.turns counts the
// turns taken (its SinceLast is the time since the last); the turn after
// the nth is claimed by counting a failure of k.turns|n, and only its
// first counter gets it: two racing attempts get ranks 1 and 2. Without
// claim it only says whether a turn is free.
func (s *Service) takeTurn(ctx context.Context, k keySet, d, maxDelay time.Duration, claim bool) (Verdict, error) {
	window := max(d, maxDelay)
	turns, err := s.counter.Get(ctx, k.turns)
	if err != nil {
		return Verdict{}, err
	}
	if turns.Count > 0 && turns.SinceLast < d {
		return Verdict{Wait: d - turns.SinceLast, Reason: ReasonAccount}, nil
	}
	if !claim {
		return Verdict{}, nil
	}
	taken, err := s.counter.Fail(ctx, fmt.Sprintf("%s|%d", k.turns, turns.Count), window)
	if err != nil {
		return Verdict{}, err
	}
	if taken.Count > 1 {
		return Verdict{Wait: d, Reason: ReasonAccount}, nil
	}
	if _, err := s.counter.Fail(ctx, k.turns, window); err != nil {
		return Verdict{}, err
	}
	return Verdict{}, nil
}

// check refuses once key has counted b.N times (without counting).
func (s *Service) check(ctx context.Context, key string, b Budget, r Reason) (Verdict, error) {
	now := time.Now()
	if wait := s.memo.get(key, now); wait > 0 {
		return Verdict{Wait: wait, Reason: r}, nil
	}
	st, err := s.counter.Get(ctx, key)
	if err != nil {
		return Verdict{}, err
	}
	if st.Count < int64(b.N) {
		return Verdict{}, nil
	}
	wait := max(time.Second, b.Window-st.SinceLast)
	s.memo.set(key, now.Add(wait))
	return Verdict{Wait: wait, Reason: r}, nil
}

// count counts an attempt of key and refuses it when its rank is past
// b.N: two attempts racing through two instances get different ranks, so
// the budget is exact.
func (s *Service) count(ctx context.Context, key string, b Budget, r Reason) (Verdict, error) {
	st, err := s.counter.Fail(ctx, key, b.Window)
	if err != nil {
		return Verdict{}, err
	}
	if st.Count <= int64(b.N) {
		return Verdict{}, nil
	}
	s.memo.set(key, time.Now().Add(b.Window))
	return Verdict{Wait: b.Window, Reason: r}, nil
}

// spend is check, then count.
func (s *Service) spend(ctx context.Context, key string, b Budget, r Reason) (Verdict, error) {
	if v, err := s.check(ctx, key, b, r); err != nil || v.Refused() {
		return v, err
	}
	return s.count(ctx, key, b, r)
}

// Failed counts a failure of an attempt Begin let through. locked reports
// that this failure locked the account's sign-in from unknown devices (a
// distributed attack): the caller records the audit event. An error means
// the failure could not be counted.
func (s *Service) Failed(ctx context.Context, a Attempt) (locked bool, err error) {
	if a.known() {
		return false, nil // counted by Begin, against the device's own budget
	}
	locked, err = s.failUnknown(ctx, a)
	if err != nil {
		return false, fmt.Errorf("sign-in throttle: count a failure: %w", err)
	}
	return locked, nil
}

func (s *Service) failUnknown(ctx context.Context, a Attempt) (bool, error) {
	lim, k := s.limits(a.Factor), s.keys(a)
	if _, err := s.counter.Fail(ctx, k.client, lim.Client.Window); err != nil || a.Account == "" {
		return false, err
	}
	st, err := s.counter.Fail(ctx, k.account, lim.Account.Window)
	if err != nil {
		return false, err
	}
	// How many clients failed at the account: a client counts once while
	// its own failures there are remembered, and again after an unlock
	// (which starts a new generation of the account's counts).
	gen, err := s.counter.Get(ctx, k.generation)
	if err != nil {
		return false, err
	}
	seen, err := s.counter.Fail(ctx, fmt.Sprintf("%s|%d", k.seen, gen.Count), lim.Account.Window)
	if err != nil {
		return false, err
	}
	var clients attempts.State
	if seen.Count == 1 {
		clients, err = s.counter.Fail(ctx, k.clients, lim.Account.Window)
	} else {
		clients, err = s.counter.Get(ctx, k.clients)
	}
	if err != nil {
		return false, err
	}
	if st.Locked > 0 || st.Count < int64(lim.Lock.Failures) || clients.Count < int64(lim.Lock.Clients) || lim.Lock.For <= 0 {
		return false, nil
	}
	if err := s.counter.Lock(ctx, k.account, lim.Lock.For); err != nil {
		return false, err
	}
	metrics.SignInLocks.Inc()
	s.log.Warn("sign-in from unknown devices locked after a distributed attack", "factor", string(a.Factor),
		"failures", st.Count, "clients", clients.Count, "for", lim.Lock.For.String())
	return true, nil
}

// Passed forgets the budget an attempt spent after it passed: the
// device's, or the client's at the account. The account's slow-down and
// lock stay: one success does not end an attack.
func (s *Service) Passed(ctx context.Context, a Attempt) error {
	k := s.keys(a)
	key := k.pair
	switch {
	case a.known():
		key = k.device
	case a.Account == "":
		return nil
	}
	s.memo.drop(key)
	if err := s.counter.Reset(ctx, key); err != nil {
		return fmt.Errorf("sign-in throttle: forget a passed attempt's count: %w", err)
	}
	return nil
}

// Unlock lifts the lock of account's sign-in from unknown devices, of
// every factor, and forgets the failures that slowed it down: an
// administrator's unlock. It fails when the counter cannot be reached,
// never pretending.
func (s *Service) Unlock(ctx context.Context, account string) error {
	var errs []error
	for f := range s.Limits {
		k := s.keys(Attempt{Factor: f, Account: account})
		if err := s.counter.Unlock(ctx, k.account); err != nil {
			errs = append(errs, err)
			continue
		}
		_, err := s.counter.Fail(ctx, k.generation, generationWindow)
		errs = append(errs, s.counter.Unlock(ctx, k.clients), err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sign-in throttle: unlock: %w", err)
	}
	return nil
}

// Locked returns how much longer account's sign-in from unknown devices
// stays locked (the longest of its factors' locks); 0 when it is not.
func (s *Service) Locked(ctx context.Context, account string) (time.Duration, error) {
	var longest time.Duration
	for f := range s.Limits {
		st, err := s.counter.Get(ctx, s.keys(Attempt{Factor: f, Account: account}).account)
		if err != nil {
			return 0, fmt.Errorf("sign-in throttle: read lock: %w", err)
		}
		longest = max(longest, st.Locked)
	}
	return longest, nil
}

// Sweep forgets counts and refusals that have run out; the process calls
// it every few minutes.
func (s *Service) Sweep(ctx context.Context) error {
	s.memo.sweep(time.Now())
	return s.counter.Sweep(ctx)
}

func (s *Service) limits(f Factor) Limits {
	if l, ok := s.Limits[f]; ok {
		return l
	}
	return PasswordLimits
}

// keySet is an attempt's keys in the counter, one family per rule, each
// prefixed by the factor.
type keySet struct {
	client  string // failures of the client, across accounts
	pair    string // attempts of the client at the account
	device  string // attempts of the known device at the account
	account string // failures of unknown devices at the account; its lock
	turns   string // the slow-down's turns taken at the account
	seen    string // failures of the client at the account, over the account's window (with the generation)
	clients string // clients that failed at the account
	// generation counts the account's unlocks: after one, every client
	// counts as new again.
	generation string
}

// generationWindow is how long an account's generation is remembered
// after its last unlock: far longer than any count it scopes.
const generationWindow = 30 * 24 * time.Hour

func (s *Service) keys(a Attempt) keySet {
	p, c, acct := string(a.Factor)+":", ClientKey(a.Client), a.Account
	return keySet{
		client:     p + "c:" + c,
		pair:       p + "ac:" + acct + "|" + c,
		device:     p + "d:" + acct + "|" + a.Device,
		account:    p + "a:" + acct,
		turns:      p + "t:" + acct,
		seen:       p + "s:" + acct + "|" + c,
		clients:    p + "n:" + acct,
		generation: p + "g:" + acct,
	}
}

// ClientKey is the throttling key of a client address: the address for
// IPv4, its /64 for IPv6 (one host usually holds a whole /64).
func ClientKey(ip netip.Addr) string {
	if !ip.IsValid() {
		return "unknown"
	}
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}
