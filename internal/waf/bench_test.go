package waf

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
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
