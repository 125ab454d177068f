package auth

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// FuzzOpenFlow: whatever a browser sends as a sign-in cookie, openFlow
// never panics and opens only what this instance sealed.
func FuzzOpenFlow(f *testing.F) {
	h := newHarness(f, nil)
	sealed, err := h.svc.p.sealFlow(flow{Provider: "p", State: "s", Nonce: "n", Verifier: "v", ReturnTo: "/app/", Expires: time.Now().Add(time.Hour).Unix()})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{sealed, sealed[:len(sealed)-2], "", "a.b.c", strings.Repeat("A", 5000), "%%%"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		fl, err := h.svc.p.openFlow(v)
		if err == nil && (v != sealed || fl.State != "s" || fl.ReturnTo != "/app/") {
			t.Fatalf("openFlow(%q) opened %+v", v, fl)
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

// FuzzBearerToken: any Authorization header gives a token only for the
// Bearer scheme, trimmed, and never panics.
func FuzzBearerToken(f *testing.F) {
	for _, s := range []string{"Bearer moat_pat_x", "bearer  x ", "Basic YWxpY2U6cHc=", "Bearer", "", "BEARER\tx"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		r, _ := http.NewRequest("GET", "https://moat.example/", nil)
		r.Header.Set("Authorization", header)
		tok, ok := bearerToken(r)
		if !ok {
			return
		}
		scheme, _, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if !strings.EqualFold(scheme, "Bearer") || tok != strings.TrimSpace(tok) {
			t.Fatalf("bearerToken(%q) = %q", header, tok)
		}
	})
}
