package policy

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/moat-dev/moat/internal/bodylimit"
	"github.com/moat-dev/moat/internal/config"
)

func TestActions(t *testing.T) {
	cases := []struct {
		name     string
		action   string
		status   int
		location string
	}{
		{"allow passes the request on", "allow", 200, ""},
		{"deny(403) refuses with 403", "deny(403)", 403, ""},
		{"deny(404) refuses with 404", "deny(404)", 404, ""},
		{"deny(429) refuses with 429", "deny(429)", 429, ""},
		{"deny(502) refuses with 502", "deny(502)", 502, ""},
		{"redirect to a path answers 302 there", "redirect(/blocked)", 302, "/blocked"},
		{"redirect to an https URL answers 302 there", "redirect(https://example.org/why)", 302, "https://example.org/why"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := configWith(t, `rules:
  - {priority: 10, match: {src_ip_ranges: ["*"]}, action: "`+tc.action+`"}`)
			h := newEngine(t, cfg, Options{}).Handler("p", okHandler)
			w := serve(h, req{ip: "192.0.2.1"})
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d", w.Code, tc.status)
			}
			if got := w.Header().Get("Location"); got != tc.location {
				t.Fatalf("Location %q, want %q", got, tc.location)
			}
			if tc.status >= 400 && !strings.Contains(w.Body.String(), "req-1") {
				t.Fatalf("the error page does not carry the request id: %s", w.Body)
			}
		})
	}
}

func TestTheLowestPriorityThatMatchesDecides(t *testing.T) {
	cfg := configWith(t, `rules:
  - {priority: 2147483647, match: {src_ip_ranges: ["*"]}, action: "deny(403)"}
  - {priority: 500, match: {src_ip_ranges: ["10.0.0.0/8"]}, action: "deny(404)"}
  - {priority: 100, match: {src_ip_ranges: ["10.1.0.0/16"]}, action: allow}
  - {priority: 0, match: {src_ip_ranges: ["10.1.2.3/32"]}, action: "deny(429)"}`)
	h := newEngine(t, cfg, Options{}).Handler("p", okHandler)
	for ip, want := range map[string]int{"10.1.2.3": 429, "10.1.2.4": 200, "10.2.0.1": 404, "192.0.2.1": 403} {
		if w := serve(h, req{ip: ip}); w.Code != want {
			t.Errorf("%s: status %d, want %d", ip, w.Code, want)
		}
	}
}

func TestWithoutADefaultRuleUnmatchedRequestsAreAllowedAndCheckWarns(t *testing.T) {
	cfg := configWith(t, `rules:
  - {priority: 1, match: {src_ip_ranges: ["10.0.0.0/8"]}, action: "deny(403)"}`)
	warned := false
	for _, w := range cfg.Warnings {
		warned = warned || strings.Contains(w, "no default rule")
	}
	if !warned {
		t.Fatalf("no warning about the missing default rule: %q", cfg.Warnings)
	}
	h := newEngine(t, cfg, Options{}).Handler("p", okHandler)
	if w := serve(h, req{ip: "192.0.2.1"}); w.Code != 200 {
		t.Fatalf("status %d, want 200", w.Code)
	}
	if w := serve(h, req{ip: "10.0.0.1"}); w.Code != 403 {
		t.Fatalf("status %d, want 403", w.Code)
	}
}

func TestIPv6Ranges(t *testing.T) {
	cfg := configWith(t, `rules:
  - {priority: 0, match: {src_ip_ranges: ["2001:db8:1::/48", "::ffff:198.51.100.0/120"]}, action: allow}
  - {priority: 2147483647, match: {src_ip_ranges: ["*"]}, action: "deny(403)"}`)
	h := newEngine(t, cfg, Options{}).Handler("p", okHandler)
	for ip, want := range map[string]int{
		"2001:db8:1:ffff::1": 200, "2001:db8:2::1": 403,
		"198.51.100.7": 200, "::ffff:198.51.100.8": 200, "198.51.101.1": 403,
	} {
		if w := serve(h, req{ip: ip}); w.Code != want {
			t.Errorf("%s: status %d, want %d", ip, w.Code, want)
		}
	}
}

func TestPreviewLogsAndCountsButDoesNotEnforce(t *testing.T) {
	cfg := configWith(t, `rules:
  - {priority: 5, match: {src_ip_ranges: ["*"]}, action: "deny(403)", preview: true}
  - {priority: 2147483647, match: {src_ip_ranges: ["*"]}, action: allow}`)
	h := newEngine(t, cfg, Options{}).Handler("p", okHandler)
	before := counterValue(decisions.WithLabelValues("p", "5", "deny(403)", "true"))
	if w := serve(h, req{ip: "192.0.2.1"}); w.Code != 200 {
		t.Fatalf("status %d, want 200: preview must not enforce", w.Code)
	}
	if got := counterValue(decisions.WithLabelValues("p", "5", "deny(403)", "true")) - before; got != 1 {
		t.Fatalf("preview counted %v times, want 1", got)
	}
}

func TestDecisionIsNotedForTheAccessLog(t *testing.T) {
	cfg := configWith(t, `rules:
  - {priority: 7, match: {src_ip_ranges: ["*"]}, action: "deny(404)"}`)
	e := newEngine(t, cfg, Options{})
	d := e.Policy("p").Evaluate(mustRequest(t, "192.0.2.1", "https://app.example.com/"))
	if got := d.String(); got != "p/7:deny(404)" {
		t.Fatalf("decision %q", got)
	}
}

func TestAPolicyWithAWAFNeedsAnInspector(t *testing.T) {
	cfg := configWith(t, `rules:
  - {priority: 0, match: {src_ip_ranges: ["*"]}, action: allow}
waf: {rule_sets: [sqli], paranoia: 1}`)
	if _, err := New(cfg, Options{Logger: quietLogger()}); err == nil || !strings.Contains(err.Error(), "waf") {
		t.Fatalf("New without NewInspector: %v, want a waf error", err)
	}
	if err := Check(cfg); err != nil {
		t.Fatalf("Check: %v", err)
	}
}

func TestTheWAFInspectsWhatTheRulesAllow(t *testing.T) {
	cfg := configWith(t, `rules:
  - {priority: 0, match: {src_ip_ranges: ["10.0.0.0/8"]}, action: "deny(404)"}
  - {priority: 2147483647, match: {src_ip_ranges: ["*"]}, action: allow}
waf: {rule_sets: [sqli], paranoia: 1}`)
	calls := 0
	opts := Options{NewInspector: func(name string, w *config.WAF) (Inspector, error) {
		return InspectorFunc(func(r *http.Request) (WAFVerdict, error) {
			calls++
			switch {
			case strings.Contains(r.URL.RawQuery, "attack"):
				return WAFVerdict{Blocked: true, WouldBlock: true, Status: 403, RuleIDs: []int{942100, 949110}}, nil
			case strings.Contains(r.URL.RawQuery, "maybe"):
				return WAFVerdict{WouldBlock: true, Status: 403, RuleIDs: []int{942100}}, nil
			case strings.Contains(r.URL.RawQuery, "broken"):
				return WAFVerdict{}, errTest
			case strings.Contains(r.URL.RawQuery, "huge"):
				return WAFVerdict{}, fmt.Errorf("waf: read request body: %w", &http.MaxBytesError{Limit: 1})
			case strings.Contains(r.URL.RawQuery, "trickle"):
				return WAFVerdict{}, fmt.Errorf("waf: read request body: %w", bodylimit.ErrTooSlow)
			}
			return WAFVerdict{}, nil
		}), nil
	}}
	h := newEngine(t, cfg, opts).Handler("p", okHandler)
	for _, tc := range []struct {
		ip, target string
		want       int
	}{
		{"192.0.2.1", "https://app.example.com/?q=attack", 403},
		{"192.0.2.1", "https://app.example.com/?q=maybe", 200},
		{"192.0.2.1", "https://app.example.com/?q=broken", 403},
		{"192.0.2.1", "https://app.example.com/?q=fine", 200},
		{"192.0.2.1", "https://app.example.com/?q=huge", 413},
		{"192.0.2.1", "https://app.example.com/?q=trickle", 408},
		{"10.0.0.1", "https://app.example.com/?q=attack", 404},
	} {
		if w := serve(h, req{ip: tc.ip, target: tc.target}); w.Code != tc.want {
			t.Errorf("%s %s: status %d, want %d", tc.ip, tc.target, w.Code, tc.want)
		}
	}
	if calls != 6 {
		t.Fatalf("inspector ran %d times, want 6 (not for requests the rules refused)", calls)
	}
}

func counterValue(c interface{ Write(*dto.Metric) error }) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

func TestHandlerWithoutAPolicyPassesAndAnUnknownOneFailsClosed(t *testing.T) {
	cfg := configWith(t, `rules:
  - {priority: 0, match: {src_ip_ranges: ["*"]}, action: "deny(404)"}`)
	e := newEngine(t, cfg, Options{})
	if w := serve(e.Handler("", okHandler), req{ip: "192.0.2.1"}); w.Code != 200 {
		t.Fatalf("no policy: status %d, want 200", w.Code)
	}
	if w := serve(e.Handler("nonexistent", okHandler), req{ip: "192.0.2.1"}); w.Code != 403 {
		t.Fatalf("unknown policy: status %d, want 403", w.Code)
	}
}

func TestTheDefaultSecurityPolicyAppliesToRoutesWithoutOne(t *testing.T) {
	cfg := configWith(t, `rules:
  - {priority: 0, match: {src_ip_ranges: ["*"]}, action: "deny(404)"}`, "server: {default_security_policy: p}")
	e := newEngine(t, cfg, Options{})
	if w := serve(e.Handler("", okHandler), req{ip: "192.0.2.1"}); w.Code != 404 {
		t.Fatalf("status %d, want 404 from the default policy", w.Code)
	}
}
