package waf

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/config"
)

// cpuTime is the process's user+system CPU time. On the shared build
// machine wall-clock ns/op mostly measures the other jobs, so the
// benchmarks also report CPU time per operation (cpu-ns/op).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
}

// Benchmarks of a clean request through all rule sets; run with
// go test ./internal/waf -run XXX -bench . -benchtime 2000x
func BenchmarkInspect(b *testing.B) {
	for _, paranoia := range []int{1, 2} {
		f := firewall(b, fmt.Sprintf("all-pl%d", paranoia), allSets(paranoia))
		re2Queue.pending.Wait()
		b.Run(fmt.Sprintf("clean GET at paranoia %d", paranoia), func(b *testing.B) {
			b.ReportAllocs()
			defer reportCPU(b, cpuTime())
			for b.Loop() {
				v, err := f.Inspect(req("GET", "/dashboard?tab=sales&year=2024", "", nil))
				if err != nil || v.WouldBlock {
					b.Fatalf("%+v %v", v, err)
				}
			}
		})
		b.Run(fmt.Sprintf("small JSON POST at paranoia %d", paranoia), func(b *testing.B) {
			b.ReportAllocs()
			defer reportCPU(b, cpuTime())
			body := `{"name":"Alice","filters":{"region":"EMEA","months":[1,2,3]},"limit":50}`
			for b.Loop() {
				r := req("POST", "/api/query", body, map[string]string{"Content-Type": "application/json"})
				v, err := f.Inspect(r)
				if err != nil || v.WouldBlock {
					b.Fatalf("%+v %v", v, err)
				}
			}
		})
	}
	b.Run("request construction alone", func(b *testing.B) {
		defer reportCPU(b, cpuTime())
		for b.Loop() {
			_ = req("POST", "/api/query", strings.Repeat("x", 70), map[string]string{"Content-Type": "application/json"})
		}
	})
}

// issue13Sets are the rule sets of issue 13's WAF target.
var issue13Sets = []string{"sqli", "xss", "lfi", "rce", "scannerdetection", "protocolattack"}

// BenchmarkInspectBrowserRequest is issue 13's browser-like request (a
// navigation with Chromium's headers, five query arguments and three
// cookies) through the rule sets of its WAF target at paranoia 1.
func BenchmarkInspectBrowserRequest(b *testing.B) {
	f := firewall(b, "issue13", &config.WAF{RuleSets: issue13Sets, Paranoia: 1})
	re2Queue.pending.Wait()
	b.ReportAllocs()
	defer reportCPU(b, cpuTime())
	for b.Loop() {
		r := req("GET", "/dashboard?tab=sales&region=emea&year=2024&page=2&sort=desc", "", map[string]string{
			"Referer": "https://app.example.com/dashboard?tab=overview",
			"Cookie":  "_streamlit_xsrf=2|9f1c2a7e|8d0b6f4c1e2a3b5c7d9e0f1a2b3c4d5e|1733356800; ajs_anonymous_id=5e1f7c3a-8b2d-4f6e-9a0c-1d2e3f4a5b6c; theme=dark",
		})
		v, err := f.Inspect(r)
		if err != nil || v.WouldBlock {
			b.Fatalf("%+v %v", v, err)
		}
	}
}
