package policy

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/moat-dev/moat/internal/request"
)

// FuzzLimitKey checks the rate-limit key a rule with several parts builds:
// two requests share a count exactly when every part agrees (the parts
// cannot run into each other, however the values are chosen), and the key's
// size is bounded whatever the request sends.
func FuzzLimitKey(f *testing.F) {
	f.Add("a", "b", "a", "b")
	f.Add("a:", "b", "a", ":b")
	f.Add("1:a", "", "", "1:a")
	f.Add(strings.Repeat("x", 100), "y", strings.Repeat("x", 100), "z")
	e := newEngine(f, configWith(f, throttlePolicy("[header:x-a, header:x-b]", "")), Options{})
	p := e.Policy("p")
	var rl *rule
	for _, r := range p.rules {
		if r.limit != nil {
			rl = r
		}
	}
	if rl == nil {
		f.Fatal("the policy has no rate-limited rule")
	}
	key := func(a, b string) string {
		r := httptest.NewRequest("GET", "https://app.example.com/", nil)
		r.Header["X-A"] = []string{a}
		r.Header["X-B"] = []string{b}
		ev := &evaluation{p: p, r: r, info: &request.Info{}}
		return ev.limitKey(rl)
	}
	f.Fuzz(func(t *testing.T, a1, b1, a2, b2 string) {
		k1, k2 := key(a1, b1), key(a2, b2)
		if same := a1 == a2 && b1 == b2; (k1 == k2) != same {
			t.Fatalf("(%q, %q) and (%q, %q) give keys %q and %q", a1, b1, a2, b2, k1, k2)
		}
		if len(k1) > len("p/100/h")+maxRawKey+32 {
			t.Fatalf("key of %d bytes", len(k1))
		}
	})
}
