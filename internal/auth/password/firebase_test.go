package password

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

// The sample project and account of the reference implementation's README
// (github.com/firebase/scrypt): its hash parameters, an exported account's
// salt and passwordHash, and the account's password.
const (
	refSignerKey     = "jxspr8Ki0RYycVU8zykbdLGjFQ3McFUH0uiiTvC8pVMXAn210wjLNmdZJzxUECKbm0QsEmYUSDzZvpjeJ9WmXA=="
	refSaltSeparator = "Bw=="
	refRounds        = 8
	refMemCost       = 14
	refSalt          = "42xEC+ixf3L2lw=="
	refHash          = "lSrfV15cpx95/sZS2W9c9Kp6i/LVgQNDNC/qzrCnh1SAyZvqmZqAjTdn3aoItz+VHjoZilo78198JAdRuid5lQ=="
	refPassword      = "user1password"
)

func std(t testing.TB, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func refParams(t testing.TB) FirebaseParams {
	return FirebaseParams{SignerKey: std(t, refSignerKey), SaltSeparator: std(t, refSaltSeparator), Rounds: refRounds, MemCost: refMemCost}
}

func TestFirebaseDigestMatchesTheReferenceImplementation(t *testing.T) {
	got, err := FirebaseDigest(refPassword, refParams(t), std(t, refSalt))
	if err != nil {
		t.Fatal(err)
	}
	if want := std(t, refHash); !bytes.Equal(got, want) {
		t.Errorf("digest = %s, want the README's %s", base64.StdEncoding.EncodeToString(got), refHash)
	}
}

func TestAnImportedFirebaseHashVerifiesAndAsksForArgon2id(t *testing.T) {
	enc, err := FirebaseHash(refParams(t), std(t, refSalt), std(t, refHash))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(enc, "$firebase-scrypt$r=8,m=14$") {
		t.Errorf("encoded form %q does not say what it is", enc)
	}
	for _, tc := range []struct {
		name         string
		pw           string
		ok, rehashed bool
	}{
		{"the original password matches and asks for a rehash", refPassword, true, true},
		{"another password does not match", "user1password ", false, false},
		{"case matters", "User1password", false, false},
		{"a password longer than MaxLength never matches", refPassword + strings.Repeat("x", MaxLength), false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ok, rehash, err := Verify(tc.pw, enc)
			if err != nil || ok != tc.ok || rehash != tc.rehashed {
				t.Errorf("Verify = %v, %v, %v; want %v, %v, nil", ok, rehash, err, tc.ok, tc.rehashed)
			}
		})
	}
}

// TestTheFirstSignInRehashesToArgon2id follows what sign-in does with
// Verify's answer: hash again under DefaultParams, and the new hash is an
// argon2id one that verifies without asking again.
func TestTheFirstSignInRehashesToArgon2id(t *testing.T) {
	enc, err := FirebaseHash(refParams(t), std(t, refSalt), std(t, refHash))
	if err != nil {
		t.Fatal(err)
	}
	l := NewLimiter(1, 0)
	ok, rehash, err := l.Verify(t.Context(), refPassword, enc)
	if !ok || !rehash || err != nil {
		t.Fatalf("Limiter.Verify = %v, %v, %v", ok, rehash, err)
	}
	next, err := l.Hash(t.Context(), refPassword, fast)
	if err != nil {
		t.Fatal(err)
	}
	if ok, rehash, err := VerifyWith(refPassword, next, fast); !ok || rehash || err != nil {
		t.Errorf("the argon2id rehash: Verify = %v, %v, %v; want true, false, nil", ok, rehash, err)
	}
}

func TestFirebaseHashRefusesParametersOutsideFirebasesOwn(t *testing.T) {
	good := refParams(t)
	salt, hash := std(t, refSalt), std(t, refHash)
	for _, tc := range []struct {
		name string
		edit func(p *FirebaseParams, salt, hash *[]byte)
		want string
	}{
		{"rounds above 8", func(p *FirebaseParams, _, _ *[]byte) { p.Rounds = 9 }, "rounds must be between 1 and 8"},
		{"mem cost above 14", func(p *FirebaseParams, _, _ *[]byte) { p.MemCost = 15 }, "mem cost must be between 1 and 14"},
		{"no hash key", func(p *FirebaseParams, _, _ *[]byte) { p.SignerKey = nil }, "the hash key must be"},
		{"a hash of another length than the key", func(_ *FirebaseParams, _, h *[]byte) { *h = (*h)[:32] }, "is the hash key the project's?"},
		{"no salt", func(_ *FirebaseParams, s, _ *[]byte) { *s = nil }, "the salt must be"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, s, h := good, salt, hash
			tc.edit(&p, &s, &h)
			if _, err := FirebaseHash(p, s, h); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to say %q", err, tc.want)
			}
		})
	}
}

// TestATamperedFirebaseHashIsMalformed: a stored row cannot make Verify
// allocate more than Firebase's own bounds allow, or compare against a
// hash of the wrong size.
func TestATamperedFirebaseHashIsMalformed(t *testing.T) {
	enc, err := FirebaseHash(refParams(t), std(t, refSalt), std(t, refHash))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, enc string }{
		{"mem cost raised to 2^24", strings.Replace(enc, "m=14", "m=24", 1)},
		{"rounds raised", strings.Replace(enc, "r=8", "r=4096", 1)},
		{"unknown parameter", strings.Replace(enc, "r=8", "p=8", 1)},
		{"a field missing", enc[:strings.LastIndex(enc, "$")]},
		{"the hash cut short", enc[:len(enc)-8]},
		{"not base64", enc[:len(enc)-2] + "!!"},
		{"only the prefix", "$firebase-scrypt$"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ok, rehash, err := Verify(refPassword, tc.enc)
			if ok || rehash || !errors.Is(err, ErrMalformed) {
				t.Errorf("Verify = %v, %v, %v; want false, false, ErrMalformed", ok, rehash, err)
			}
		})
	}
}

func FuzzDecodeFirebase(f *testing.F) {
	enc, err := FirebaseHash(refParams(f), std(f, refSalt), std(f, refHash))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(enc)
	f.Add("$firebase-scrypt$r=1,m=1$AA$$AA$AA")
	f.Fuzz(func(t *testing.T, s string) {
		p, salt, hash, err := decodeFirebase(s)
		if err != nil {
			return
		}
		if p.Validate() != nil || len(hash) != len(p.SignerKey) || len(salt) == 0 {
			t.Fatalf("decodeFirebase accepted %q with params %+v", s, p)
		}
	})
}

// BenchmarkVerifyFirebase is the cost of one sign-in with an imported
// Firebase hash at the usual project parameters (rounds 8, mem cost 14:
// 16 MiB), beside BenchmarkVerify's argon2id; it holds a hashing slot the
// same way.
func BenchmarkVerifyFirebase(b *testing.B) {
	enc, err := FirebaseHash(refParams(b), std(b, refSalt), std(b, refHash))
	if err != nil {
		b.Fatal(err)
	}
	cpu0 := cpuTime()
	for b.Loop() {
		if ok, _, _ := Verify(refPassword, enc); !ok {
			b.Fatal("no match")
		}
	}
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/op")
}
