package login

import (
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/auth/instancekey"
)

// FuzzOpenFlow: whatever a browser sends as a sign-in cookie, Flows.open
// never panics and opens only what this instance sealed.
func FuzzOpenFlow(f *testing.F) {
	raw := make([]byte, instancekey.Size)
	_, _ = rand.Read(raw)
	key, err := instancekey.New(raw)
	if err != nil {
		f.Fatal(err)
	}
	flows := NewFlows(key, nil)
	sealed, err := flows.seal(flow{Provider: "p", State: "s", Nonce: "n", Verifier: "v", ReturnTo: "/app/", Expires: time.Now().Add(time.Hour).Unix()})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{sealed, sealed[:len(sealed)-2], "", "a.b.c", strings.Repeat("A", 5000), "%%%"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		fl, err := flows.open(v)
		if err == nil && (v != sealed || fl.State != "s" || fl.ReturnTo != "/app/") {
			t.Fatalf("open(%q) opened %+v", v, fl)
		}
	})
}

// FuzzParsePending: the pending second-factor cookie is read within its
// bounds and never panics; what it yields names a user.
func FuzzParsePending(f *testing.F) {
	for _, s := range []string{"YWxpY2U.1700000000.mac", "", "..", "a.b", "YWxpY2U.x.mac", strings.Repeat("A.", 300)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		p, ok := parsePending(v)
		if ok && (len(v) > 512 || p.userID == "" || strings.Count(v, ".") != 2) {
			t.Fatalf("parsePending(%q) = %+v", v, p)
		}
	})
}
