package password

import (
	"context"
	"errors"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fast keeps unit tests quick; DefaultParams are measured by the benchmarks.
var fast = Params{Memory: 64, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32}

func TestHashVerifiesAndRefusesOtherPasswords(t *testing.T) {
	h, err := Hash("correct horse battery staple", fast)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Errorf("hash %q is not a PHC argon2id string", h)
	}
	for _, tc := range []struct {
		name string
		pw   string
		want bool
	}{
		{"the same password matches", "correct horse battery staple", true},
		{"another password does not", "correct horse battery stapler", false},
		{"case matters", "Correct horse battery staple", false},
		{"empty does not", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ok, _, err := VerifyWith(tc.pw, h, fast)
			if err != nil || ok != tc.want {
				t.Errorf("ok = %v, %v; want %v", ok, err, tc.want)
			}
		})
	}
	h2, _ := Hash("correct horse battery staple", fast)
	if h2 == h {
		t.Error("two hashes of one password are equal: salt not random")
	}
}

func TestVerifyAsksForRehashWhenParametersChange(t *testing.T) {
	h, _ := Hash("correct horse battery staple", fast)
	stronger := fast
	stronger.Iterations = 2
	for _, tc := range []struct {
		name    string
		pw      string
		current Params
		want    bool
	}{
		{"same parameters: no rehash", "correct horse battery staple", fast, false},
		{"new parameters: rehash", "correct horse battery staple", stronger, true},
		{"wrong password: never rehash", "nope", stronger, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, re, err := VerifyWith(tc.pw, h, tc.current)
			if err != nil || re != tc.want {
				t.Errorf("needsRehash = %v, %v; want %v", re, err, tc.want)
			}
		})
	}
	if _, re, _ := Verify("correct horse battery staple", h); !re {
		t.Error("a hash at test parameters does not ask to be rehashed at DefaultParams")
	}
}

func TestMalformedHashesAreRefused(t *testing.T) {
	for _, h := range []string{
		"",
		"plain",
		"$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=18$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=99999999,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=64,t=1000,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=64,t=1,p=0$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=64,t=1,p=1,x=2$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=64,t=1,p=1$!!$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaA",
	} {
		if ok, _, err := Verify("pw", h); ok || !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: ok = %v, err = %v; want ErrMalformed", h, ok, err)
		}
	}
}

func TestOverlongPasswordsAreBounded(t *testing.T) {
	long := strings.Repeat("a", MaxLength+1)
	if _, err := Hash(long, fast); !errors.Is(err, ErrTooLong) {
		t.Errorf("Hash: err = %v, want ErrTooLong", err)
	}
	h, _ := Hash(long[:MaxLength], fast)
	if ok, _, err := VerifyWith(long, h, fast); ok || err != nil {
		t.Errorf("a password past the bound matched its prefix: ok = %v, err = %v", ok, err)
	}
}

func TestDummyHashMatchesNothingAndCostsTheSame(t *testing.T) {
	d := DummyHash(fast)
	for _, pw := range []string{"", "password", "correct horse battery staple"} {
		if ok, _, err := VerifyWith(pw, d, fast); ok || err != nil {
			t.Errorf("%q matched the dummy hash: %v %v", pw, ok, err)
		}
	}
	if !strings.HasPrefix(d, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Errorf("dummy hash %q is not at the given parameters", d)
	}
	// A verification's cost is the parameters' (salt and key lengths
	// included), whatever the key is.
	if p, _, _, err := decode(d); err != nil || p != fast {
		t.Errorf("dummy hash decodes to %+v (%v), want %+v", p, err, fast)
	}
}

func TestPolicy(t *testing.T) {
	p := Policy{MinLength: 12}
	for _, tc := range []struct {
		name, pw, email, want string
	}{
		{"a long uncommon password passes", "tangerine-voltage-harbor", "a@example.com", ""},
		{"a short one is too short", "Xk3#vq9!", "a@example.com", "too short: use at least 12 characters (it has 8)"},
		{"length counts characters, not bytes", "ぱすわーどぱすわーどぱす", "a@example.com", ""},
		{"a common password is refused", "password1234", "a@example.com", "commonly used"},
		{"common ignores case", "PASSWORD1234", "a@example.com", "commonly used"},
		{"the email is refused", "Alice.Long@Example.com", "alice.long@example.com", "your email address"},
		{"the email's local part is refused", "alice.longname", "Alice.Longname@example.com", "your email address"},
		{"one repeated character is refused", "zzzzzzzzzzzzzzzzz", "a@example.com", "repeated"},
		{"spaces only are refused", "              ", "a@example.com", "only spaces"},
		{"past the bound is refused", strings.Repeat("ab", 200), "a@example.com", "too long"},
		{"invalid UTF-8 is refused", "abcdefghijkl\xff", "a@example.com", "UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := p.Check(tc.pw, tc.email)
			if tc.want == "" {
				if err != nil {
					t.Errorf("refused: %v", err)
				}
				return
			}
			var pe *PolicyError
			if !errors.As(err, &pe) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want a PolicyError containing %q", err, tc.want)
			}
		})
	}
	if err := (Policy{}).Check("abcdefg", ""); err == nil {
		t.Error("a zero Policy allowed 7 characters: the floor is 8")
	}
}

func TestTheCommonListIsLoaded(t *testing.T) {
	if n := len(common()); n < 10000 {
		t.Fatalf("%d common passwords, want the full list", n)
	}
	for _, pw := range []string{"123456", "qwerty", "iloveyou", "letmein", "Password"} {
		if !IsCommon(pw) {
			t.Errorf("%q is not in the list", pw)
		}
	}
}

func TestLimiterBoundsConcurrencyAndGivesUp(t *testing.T) {
	l := NewLimiter(2, 50*time.Millisecond)
	release := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() { _ = l.Do(context.Background(), func() { <-release }) })
	}
	for l.InUse() < 2 {
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	err := l.Do(context.Background(), func() { t.Error("ran while saturated") })
	if !errors.Is(err, ErrBusy) {
		t.Errorf("err = %v, want ErrBusy", err)
	}
	if d := time.Since(start); d < 40*time.Millisecond || d > time.Second {
		t.Errorf("gave up after %v, want about the 50ms wait", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.Do(ctx, func() {}); !errors.Is(err, context.Canceled) && !errors.Is(err, ErrBusy) {
		t.Errorf("cancelled: err = %v", err)
	}
	close(release)
	wg.Wait()
	h, err := l.Hash(context.Background(), "correct horse battery staple", fast)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _, err := l.Verify(context.Background(), "correct horse battery staple", h); !ok || err != nil {
		t.Errorf("Verify in a slot: %v %v", ok, err)
	}
}

func BenchmarkHash(b *testing.B) {
	for b.Loop() {
		if _, err := Hash("correct horse battery staple", DefaultParams); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerify is the cost of one sign-in at DefaultParams; with -cpu
// the parallel variant gives the login throughput of the machine.
// It also reports the CPU time per check, which a busy shared machine
// inflates far less than the wall time.
func BenchmarkVerify(b *testing.B) {
	h, _ := Hash("correct horse battery staple", DefaultParams)
	cpu0 := cpuTime()
	for b.Loop() {
		if ok, _, _ := Verify("correct horse battery staple", h); !ok {
			b.Fatal("no match")
		}
	}
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/op")
}

// cpuTime is the user+system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkVerifyParallel reports sign-ins per second through a Limiter of
// GOMAXPROCS slots, as the login handler runs them.
func BenchmarkVerifyParallel(b *testing.B) {
	h, _ := Hash("correct horse battery staple", DefaultParams)
	l := NewLimiter(0, time.Minute)
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if ok, _, err := l.Verify(context.Background(), "correct horse battery staple", h); !ok || err != nil {
				b.Fatal("no match", err)
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "logins/s")
}

// FuzzDecode: no stored string, however tampered, makes the parser panic
// or accept parameters past the bounds.
func FuzzDecode(f *testing.F) {
	h, _ := Hash("pw", fast)
	f.Add(h)
	f.Add("$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA")
	f.Add("$argon2id$v=19$m=4294967295,t=1,p=1$$")
	f.Fuzz(func(t *testing.T, phc string) {
		p, salt, key, err := decode(phc)
		if err != nil {
			return
		}
		if p.Memory > maxMemory || p.Iterations > maxIterations || p.Parallelism == 0 || len(salt) < 8 || len(key) < 16 {
			t.Errorf("accepted out-of-bounds %+v from %q", p, phc)
		}
	})
}
