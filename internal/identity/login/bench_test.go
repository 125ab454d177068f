package login_test

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/auth/authtest"
	"github.com/moat-dev/moat/internal/csrf"
	"github.com/moat-dev/moat/internal/identity/session"
	"github.com/moat-dev/moat/internal/request"
)

// BenchmarkLoginThroughput signs in over and over through the login
// handler, in parallel, at the default argon2id parameters and the
// hashing limiter: logins/s is the figure of merit.
func BenchmarkLoginThroughput(b *testing.B) {
	h := authtest.New(b, nil)
	h.AddUser("alice@example.com", authtest.AlicePassword, []string{"staff"}, false)
	handler := h.Svc.Identify(h.Svc.Handler())
	csrfCookie := strings.Repeat("c", session.IDLen)
	seed := httptest.NewRequest("GET", "https://127.0.0.1/_moat/login", nil)
	seed.Header.Set("Cookie", csrf.CookieName+"="+csrfCookie)
	form := url.Values{"csrf": {h.Proc.CSRF.Token(httptest.NewRecorder(), seed)}, "email": {"alice@example.com"}, "password": {authtest.AlicePassword}, "return_to": {"/app/"}}.Encode()
	start := time.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r := httptest.NewRequest("POST", "https://127.0.0.1/_moat/login", strings.NewReader(form))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			r.Header.Set("Cookie", csrf.CookieName+"="+csrfCookie)
			r = request.With(r, &request.Info{ID: "bench", ClientIP: netip.MustParseAddr("127.0.0.1")})
			w := httptest.NewRecorder()
			handler.ServeHTTP(w, r)
			if w.Code != http.StatusSeeOther {
				b.Errorf("login: %d", w.Code)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "logins/s")
}
