package policy

import (
	"net/http"
	"strings"
	"testing"

	"github.com/moat-dev/moat/internal/ratelimit"
	"github.com/moat-dev/moat/internal/ratelimit/redistest"
	"github.com/moat-dev/moat/internal/testnet"
)

func throttlePolicy(key, extra string) string {
	return `rules:
  - priority: 100
    match: {src_ip_ranges: ["*"]}
    action: throttle
    rate_limit: {count: 2, interval: 1m, key: ` + key + extra + `}
  - {priority: 2147483647, match: {src_ip_ranges: ["*"]}, action: "deny(403)"}`
}

func TestThrottleAllowsUpToTheLimitThenAppliesTheExceedAction(t *testing.T) {
	h := newEngine(t, configWith(t, throttlePolicy("ip", "")), Options{}).Handler("p", okHandler)
	for i, want := range []int{200, 200, 429, 429} {
		w := serve(h, req{ip: "192.0.2.1"})
		if w.Code != want {
			t.Fatalf("request %d: status %d, want %d", i+1, w.Code, want)
		}
		if want == 429 && w.Header().Get("Retry-After") != "60" {
			t.Fatalf("Retry-After %q, want 60", w.Header().Get("Retry-After"))
		}
	}
}

func TestThrottleCanRedirectWhenExceeded(t *testing.T) {
	h := newEngine(t, configWith(t, throttlePolicy("all", ", exceed_action: redirect(/slow-down)")), Options{}).Handler("p", okHandler)
	serve(h, req{ip: "192.0.2.1"})
	serve(h, req{ip: "192.0.2.2"})
	w := serve(h, req{ip: "192.0.2.3"})
	if w.Code != 302 || w.Header().Get("Location") != "/slow-down" {
		t.Fatalf("status %d Location %q", w.Code, w.Header().Get("Location"))
	}
}

// TestRateLimitKeys sends three requests; first and second differ only in
// "other", so they share a count exactly when the key ignores "other".
func TestRateLimitKeys(t *testing.T) {
	type variant struct {
		ip, path, header, cookie, user string
	}
	cases := []struct {
		name   string
		key    string
		a, b   variant // a twice, then b: b is refused when it shares a's count
		shared bool
	}{
		{"ip keeps addresses apart", "ip", variant{ip: "192.0.2.1"}, variant{ip: "192.0.2.2"}, false},
		{"ip counts one address across paths", "ip", variant{ip: "192.0.2.1", path: "/a"}, variant{ip: "192.0.2.1", path: "/b"}, true},
		{"ip keeps IPv6 addresses apart", "ip", variant{ip: "2001:db8::1"}, variant{ip: "2001:db8::2"}, false},
		{"all counts everyone together", "all", variant{ip: "192.0.2.1"}, variant{ip: "2001:db8::2"}, true},
		{"header keeps values apart", "header:x-api-key", variant{header: "k1"}, variant{header: "k2"}, false},
		{"a missing header falls back to all", "header:x-api-key", variant{ip: "192.0.2.1"}, variant{ip: "192.0.2.2"}, true},
		{"cookie keeps values apart", "cookie:sid", variant{cookie: "c1"}, variant{cookie: "c2"}, false},
		{"path keeps paths apart", "path", variant{path: "/a"}, variant{path: "/b"}, false},
		{"path counts one path across addresses", "path", variant{ip: "192.0.2.1", path: "/a"}, variant{ip: "192.0.2.2", path: "/a"}, true},
		{"user keeps users apart", "user", variant{user: "a@example.com"}, variant{user: "b@example.com"}, false},
		{"a missing user falls back to all", "user", variant{ip: "192.0.2.1"}, variant{ip: "192.0.2.2"}, true},
		{"combined keys separate on any part", "[ip, path]", variant{ip: "192.0.2.1", path: "/a"}, variant{ip: "192.0.2.1", path: "/b"}, false},
		{"combined keys share when all parts agree", "[ip, path, header:x-api-key]", variant{ip: "192.0.2.1", path: "/a", header: "k"}, variant{ip: "192.0.2.1", path: "/a", header: "k"}, true},
	}
	send := func(h http.Handler, v variant) int {
		q := req{ip: v.ip, target: "https://app.example.com" + v.path, header: http.Header{}, user: v.user}
		if q.ip == "" {
			q.ip = "198.51.100.1"
		}
		if v.path == "" {
			q.target += "/"
		}
		if v.header != "" {
			q.header.Set("X-Api-Key", v.header)
		}
		if v.cookie != "" {
			q.header.Set("Cookie", "sid="+v.cookie)
		}
		return serve(h, q).Code
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newEngine(t, configWith(t, throttlePolicy(tc.key, "")), Options{}).Handler("p", okHandler)
			send(h, tc.a)
			send(h, tc.a)
			got := send(h, tc.b)
			if want := map[bool]int{true: 429, false: 200}[tc.shared]; got != want {
				t.Fatalf("third request: status %d, want %d", got, want)
			}
		})
	}
}

func banPolicy() string {
	return `rules:
  - priority: 10
    match: {src_ip_ranges: ["*"]}
    action: rate_based_ban
    rate_limit:
      count: 100
      interval: 1m
      key: ip
      ban_duration: 1h
      ban_threshold: {count: 3, interval: 1m}
  - {priority: 2147483647, match: {src_ip_ranges: ["*"]}, action: allow}`
}

func TestRateBasedBanRefusesEveryRequestDuringTheBan(t *testing.T) {
	h := newEngine(t, configWith(t, banPolicy()), Options{}).Handler("p", okHandler)
	for i, want := range []int{200, 200, 200, 429, 429, 429} {
		if w := serve(h, req{ip: "192.0.2.1"}); w.Code != want {
			t.Fatalf("request %d: status %d, want %d", i+1, w.Code, want)
		}
	}
	if w := serve(h, req{ip: "192.0.2.2"}); w.Code != 200 {
		t.Fatalf("another client: status %d, want 200", w.Code)
	}
}

func TestCountersSurviveAReload(t *testing.T) {
	counter := ratelimit.NewMemory(0)
	cfg := configWith(t, banPolicy())
	old := newEngine(t, cfg, Options{Counter: counter}).Handler("p", okHandler)
	for range 4 {
		serve(old, req{ip: "192.0.2.1"})
	}
	reloaded := newEngine(t, configWith(t, banPolicy()), Options{Counter: counter}).Handler("p", okHandler)
	if w := serve(reloaded, req{ip: "192.0.2.1"}); w.Code != 429 {
		t.Fatalf("after reload: status %d, want 429 (ban kept)", w.Code)
	}
}

func TestTwoInstancesOnOneRedisShareBans(t *testing.T) {
	url := redistest.Start(t)
	open := func() http.Handler {
		c, err := ratelimit.Open(url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return newEngine(t, configWith(t, banPolicy(), "counters: "+url), Options{Counter: c}).Handler("p", okHandler)
	}
	a, b := open(), open()
	if w := serve(b, req{ip: "192.0.2.9"}); w.Code != 200 {
		t.Fatalf("b before the ban: %d", w.Code)
	}
	for range 3 {
		serve(a, req{ip: "192.0.2.9"})
	}
	if w := serve(b, req{ip: "192.0.2.9"}); w.Code != 429 {
		t.Fatalf("b after the client was banned through a: status %d, want 429", w.Code)
	}
	if w := serve(b, req{ip: "192.0.2.10"}); w.Code != 200 {
		t.Fatalf("another client on b: status %d, want 200", w.Code)
	}
}

func TestUnreachableCountersFollowCountersFail(t *testing.T) {
	url := "redis://" + testnet.FreeAddr(t) // nothing listens there
	for mode, want := range map[string]int{"open": 200, "closed": 429} {
		t.Run("counters_fail "+mode, func(t *testing.T) {
			c, _ := ratelimit.Open(url)
			t.Cleanup(func() { c.Close() })
			cfg := configWith(t, throttlePolicy("ip", ""), "counters: "+url, "counters_fail: "+mode)
			h := newEngine(t, cfg, Options{Counter: c}).Handler("p", okHandler)
			before := counterValue(counterFailures.WithLabelValues("p", mode))
			if w := serve(h, req{ip: "192.0.2.1"}); w.Code != want {
				t.Fatalf("status %d, want %d", w.Code, want)
			}
			if counterValue(counterFailures.WithLabelValues("p", mode))-before != 1 {
				t.Fatal("the failure was not counted")
			}
		})
	}
}

func TestPreviewedRateLimitsNeverRefuse(t *testing.T) {
	p := strings.Replace(throttlePolicy("ip", ""), "action: throttle", "action: throttle\n    preview: true", 1)
	p = strings.Replace(p, `action: "deny(403)"`, "action: allow", 1)
	h := newEngine(t, configWith(t, p), Options{}).Handler("p", okHandler)
	for i := range 5 {
		if w := serve(h, req{ip: "192.0.2.1"}); w.Code != 200 {
			t.Fatalf("request %d: status %d, want 200", i+1, w.Code)
		}
	}
}
