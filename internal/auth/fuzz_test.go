package auth

import (
	"net/http"
	"strings"
	"testing"
)

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
