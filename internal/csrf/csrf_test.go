package csrf

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// issued returns a request that carries the cookie a page set, and the
// token that page put in its form.
func issued(t *testing.T, g *Guard) (*http.Request, string) {
	t.Helper()
	w := httptest.NewRecorder()
	token := g.Token(w, httptest.NewRequest("GET", "https://app.example.com/_moat/login", nil))
	cookies := w.Result().Cookies()
	if len(cookies) != 1 || cookies[0].Name != CookieName || !cookies[0].Secure || !cookies[0].HttpOnly {
		t.Fatalf("Token set cookies %+v, want one Secure HttpOnly %s", cookies, CookieName)
	}
	r := httptest.NewRequest("POST", "https://app.example.com/_moat/login", nil)
	r.AddCookie(cookies[0])
	return r, token
}

func TestCheck(t *testing.T) {
	g := New([]byte("key"))
	tests := []struct {
		name    string
		prepare func(r *http.Request, token string) string
		want    bool
	}{
		{"the token of the cookie passes", func(r *http.Request, tok string) string { return tok }, true},
		{"a same-origin browser passes", func(r *http.Request, tok string) string { r.Header.Set("Sec-Fetch-Site", "same-origin"); return tok }, true},
		{"a matching Origin passes", func(r *http.Request, tok string) string {
			r.Header.Set("Origin", "https://app.example.com")
			return tok
		}, true},
		{"no token fails", func(r *http.Request, tok string) string { return "" }, false},
		{"another token fails", func(r *http.Request, tok string) string { return tok[:len(tok)-1] + "x" }, false},
		{"a cross-site browser fails with the right token", func(r *http.Request, tok string) string { r.Header.Set("Sec-Fetch-Site", "cross-site"); return tok }, false},
		{"another Origin fails with the right token", func(r *http.Request, tok string) string { r.Header.Set("Origin", "https://evil.example"); return tok }, false},
		{"no cookie fails", func(r *http.Request, tok string) string { r.Header.Del("Cookie"); return tok }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, token := issued(t, g)
			if got := g.Check(r, tt.prepare(r, token)); got != tt.want {
				t.Errorf("Check = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestGuardsWithOneKeyShareTokensAndOthersDoNot(t *testing.T) {
	r, token := issued(t, New([]byte("key")))
	if !New([]byte("key")).Check(r, token) {
		t.Error("a page with the same key refused the token")
	}
	if New([]byte("other")).Check(r, token) {
		t.Error("a page with another key accepted the token")
	}
}

func TestTokenKeepsAnExistingCookie(t *testing.T) {
	g := New([]byte("key"))
	r, token := issued(t, g)
	w := httptest.NewRecorder()
	if again := g.Token(w, r); again != token || len(w.Result().Cookies()) != 0 {
		t.Errorf("second Token = %q (cookies %v), want the same token and no new cookie", again, w.Result().Cookies())
	}
}

// FuzzCheck: whatever cookie and token a request carries, Check accepts
// only the token this guard derived for that cookie, and never panics.
func FuzzCheck(f *testing.F) {
	g := New([]byte("fuzz key"))
	good := strings.Repeat("a", cookieLen)
	f.Add(good, g.tokenFor(good))
	f.Add(good, "")
	f.Add("short", g.tokenFor("short"))
	f.Add("", "x")
	f.Fuzz(func(t *testing.T, cookie, token string) {
		r, _ := http.NewRequest("POST", "https://moat.example/_moat/login", nil)
		r.Header.Set("Cookie", CookieName+"="+cookie)
		if g.Check(r, token) {
			if v := cookieValue(r); len(v) != cookieLen || token != g.tokenFor(v) {
				t.Fatalf("Check accepted cookie %q with token %q", cookie, token)
			}
		}
	})
}
