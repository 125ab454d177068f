package policy

import (
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moat-dev/moat/internal/config"
)

func randomPrefix(rng *rand.Rand) netip.Prefix {
	if rng.IntN(2) == 0 {
		var b [4]byte
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		return netip.PrefixFrom(netip.AddrFrom4(b), 8+rng.IntN(25)).Masked()
	}
	var b [16]byte
	b[0], b[1] = 0x20, 0x01
	for i := 2; i < 16; i++ {
		b[i] = byte(rng.IntN(4)) // dense, so ranges overlap
	}
	return netip.PrefixFrom(netip.AddrFrom16(b), 16+rng.IntN(113)).Masked()
}

func randomAddr(rng *rand.Rand, near []netip.Prefix) netip.Addr {
	p := near[rng.IntN(len(near))]
	b := p.Addr().AsSlice()
	// Flip a bit around the prefix boundary to land just inside or outside.
	bit := min(p.Bits()+rng.IntN(3)-1, len(b)*8-1)
	if bit >= 0 {
		b[bit/8] ^= 1 << (7 - bit%8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func TestCIDRSetAgreesWithALinearScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 20 {
		prefixes := make([]netip.Prefix, 1+rng.IntN(300))
		for i := range prefixes {
			prefixes[i] = randomPrefix(rng)
		}
		s := newCIDRSet(prefixes)
		for range 2000 {
			a := randomAddr(rng, prefixes)
			want := false
			for _, p := range prefixes {
				want = want || p.Contains(a)
			}
			if got := s.contains(a); got != want {
				t.Fatalf("round %d: contains(%s) = %v, want %v", round, a, got, want)
			}
		}
	}
}

func TestCIDRSetEdges(t *testing.T) {
	s := newCIDRSet([]netip.Prefix{
		netip.MustParsePrefix("0.0.0.0/0"),
		netip.MustParsePrefix("::/0"),
	})
	for _, a := range []string{"0.0.0.0", "255.255.255.255", "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"} {
		if !s.contains(netip.MustParseAddr(a)) {
			t.Errorf("%s not in the full ranges", a)
		}
	}
	s = newCIDRSet([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")})
	if s.contains(netip.MustParseAddr("::ffff:10.0.0.1")) && !s.contains(netip.MustParseAddr("10.0.0.1")) {
		t.Error("mapped addresses")
	}
	if s.contains(netip.MustParseAddr("2001:db8::1")) || s.contains(netip.Addr{}) {
		t.Error("IPv6 or zero address matched an IPv4 set")
	}
}

// bigPolicy writes a configuration with n CIDRs in one rule (sparse /32s and
// /24s, IPv4 and IPv6) and exprs expression rules that do not match, then
// a default deny.
func bigPolicy(b testing.TB, n, exprs int) *config.Config {
	b.Helper()
	rng := rand.New(rand.NewPCG(3, 4))
	var y strings.Builder
	y.WriteString("tls: {self_signed: true}\nbackends: {app: {url: \"http://127.0.0.1:1\"}}\n")
	y.WriteString("routes: [{host: app.example.com, backend: app, public: true, security_policy: p}]\n")
	y.WriteString("security_policies:\n  p:\n    rules:\n")
	for i := range exprs {
		fmt.Fprintf(&y, "      - {priority: %d, expr: \"request.path.startsWith('/never-%d') || request.headers['x-h%d'] == 'v' || inIpRange(origin.ip, '10.%d.0.0/16')\", action: \"deny(404)\"}\n", i+1, i, i, i%256)
	}
	fmt.Fprintf(&y, "      - priority: 100000\n        action: allow\n        match:\n          src_ip_ranges:\n")
	for i := range n {
		var p netip.Prefix
		if i%4 == 3 {
			var a [16]byte
			a[0], a[1] = 0x20, 0x01
			for j := 2; j < 8; j++ {
				a[j] = byte(rng.IntN(256))
			}
			p = netip.PrefixFrom(netip.AddrFrom16(a), 48)
		} else {
			a := [4]byte{byte(11 + rng.IntN(200)), byte(rng.IntN(256)), byte(rng.IntN(256)), byte(rng.IntN(256))}
			p = netip.PrefixFrom(netip.AddrFrom4(a), 24+8*rng.IntN(2)).Masked()
		}
		fmt.Fprintf(&y, "            - %s\n", p)
	}
	y.WriteString("      - {priority: 2147483647, match: {src_ip_ranges: [\"*\"]}, action: \"deny(403)\"}\n")
	path := filepath.Join(b.TempDir(), "big.yaml")
	if err := os.WriteFile(path, []byte(y.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		b.Fatal(err)
	}
	return cfg
}

// BenchmarkCIDRMatch measures the CIDR set alone at several sizes: the time
// should barely move from 1,000 to 100,000 ranges.
func BenchmarkCIDRMatch(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		b.Run(fmt.Sprintf("ranges=%d", n), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(5, 6))
			prefixes := make([]netip.Prefix, n)
			for i := range prefixes {
				prefixes[i] = randomPrefix(rng)
			}
			s := newCIDRSet(prefixes)
			addrs := make([]netip.Addr, 1024)
			for i := range addrs {
				addrs[i] = randomAddr(rng, prefixes)
			}
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				s.contains(addrs[i%len(addrs)])
			}
		})
	}
}

// BenchmarkPolicy100kCIDRs50Expressions evaluates a whole request against a
// policy of 50 expression rules and one rule of 100,000 CIDRs.
func BenchmarkPolicy100kCIDRs50Expressions(b *testing.B) {
	cfg := bigPolicy(b, 100000, 50)
	e := newEngine(b, cfg, Options{Logger: errorLogger()})
	p := e.Policy("p")
	r := mustRequest(b, "192.0.2.1", "https://app.example.com/dashboard?x=1")
	r.Header.Set("User-Agent", "bench")
	r.Header.Set("Accept", "text/html")
	b.ReportAllocs()
	for b.Loop() {
		d := p.Evaluate(r)
		if d.Status != http.StatusForbidden {
			b.Fatalf("decision %v", d)
		}
	}
}

// BenchmarkPolicy100kCIDRsOnly is the CIDR rule alone behind the engine.
func BenchmarkPolicy100kCIDRsOnly(b *testing.B) {
	cfg := bigPolicy(b, 100000, 0)
	p := newEngine(b, cfg, Options{Logger: errorLogger()}).Policy("p")
	r := mustRequest(b, "192.0.2.1", "https://app.example.com/")
	b.ReportAllocs()
	for b.Loop() {
		p.Evaluate(r)
	}
}

// errorLogger logs errors only, so benchmarks measure the engine rather than
// the formatting of the denial log line.
func errorLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError}))
}

// BenchmarkHandler compares a request through a 10-rule policy with a rate
// limit against the same handler with no policy (issue 5's 0.9 target is
// measured end to end by the server's benchmark; this is the policy's share).
func BenchmarkHandler(b *testing.B) {
	var rules strings.Builder
	rules.WriteString("rules:\n")
	for i := range 8 {
		fmt.Fprintf(&rules, "  - {priority: %d, match: {src_ip_ranges: [\"10.%d.0.0/16\"]}, action: \"deny(403)\"}\n", i+1, i)
	}
	rules.WriteString("  - {priority: 100, expr: \"request.path.startsWith('/admin')\", action: \"deny(404)\"}\n")
	rules.WriteString("  - {priority: 1000, match: {src_ip_ranges: [\"*\"]}, action: throttle, rate_limit: {count: 1000000000, interval: 1m, key: ip}}\n")
	rules.WriteString("  - {priority: 2147483647, match: {src_ip_ranges: [\"*\"]}, action: \"deny(403)\"}\n")
	cfg := configWith(b, rules.String())
	e := newEngine(b, cfg, Options{Logger: errorLogger()})
	for name, h := range map[string]http.Handler{"no policy": okHandler, "10 rules + rate limit": e.Handler("p", okHandler)} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if w := serve(h, req{ip: "192.0.2.1", target: "https://app.example.com/dashboard"}); w.Code != 200 {
					b.Fatalf("status %d", w.Code)
				}
			}
		})
	}
}
