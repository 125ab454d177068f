package policy

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/moat-dev/moat/internal/request"
)

var errTest = errors.New("test failure")

func mustRequest(t testing.TB, ip, target string) *http.Request {
	t.Helper()
	r := httptest.NewRequest("GET", target, nil)
	return request.With(r, &request.Info{ID: "req-1", ClientIP: netip.MustParseAddr(ip), Scheme: "https"})
}
