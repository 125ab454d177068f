package clientip

import (
	"crypto/tls"
	"net/http"
	"net/netip"
	"testing"
)

var resolveCases = []struct {
	name    string
	remote  string
	xff     []string
	fwd     []string
	want    string
	trusted []string
}{
	{name: "an untrusted peer is the client", remote: "198.51.100.7:5555", want: "198.51.100.7"},
	{name: "a spoofed X-Forwarded-For from an untrusted peer is ignored", remote: "198.51.100.7:5555", xff: []string{"127.0.0.2"}, want: "198.51.100.7", trusted: []string{"10.0.0.0/8"}},
	{name: "a spoofed Forwarded from an untrusted peer is ignored", remote: "198.51.100.7:5555", fwd: []string{"for=127.0.0.2"}, want: "198.51.100.7", trusted: []string{"10.0.0.0/8"}},
	{name: "a trusted peer's X-Forwarded-For names the client", remote: "10.0.0.1:1", xff: []string{"203.0.113.9"}, want: "203.0.113.9", trusted: []string{"10.0.0.0/8"}},
	{name: "the right-most untrusted hop wins over a client-supplied prefix", remote: "10.0.0.1:1", xff: []string{"127.0.0.2, 203.0.113.9, 10.0.0.5"}, want: "203.0.113.9", trusted: []string{"10.0.0.0/8"}},
	{name: "repeated X-Forwarded-For headers are one list", remote: "10.0.0.1:1", xff: []string{"127.0.0.2", "203.0.113.9"}, want: "203.0.113.9", trusted: []string{"10.0.0.0/8"}},
	{name: "a malformed X-Forwarded-For yields the peer", remote: "10.0.0.1:1", xff: []string{"203.0.113.9, nonsense"}, want: "10.0.0.1", trusted: []string{"10.0.0.0/8"}},
	{name: "an empty X-Forwarded-For element yields the peer", remote: "10.0.0.1:1", xff: []string{"203.0.113.9,,"}, want: "10.0.0.1", trusted: []string{"10.0.0.0/8"}},
	{name: "all-trusted hops yield the left-most", remote: "10.0.0.1:1", xff: []string{"10.0.0.3, 10.0.0.2"}, want: "10.0.0.3", trusted: []string{"10.0.0.0/8"}},
	{name: "ports in X-Forwarded-For are tolerated", remote: "10.0.0.1:1", xff: []string{"203.0.113.9:4711"}, want: "203.0.113.9", trusted: []string{"10.0.0.0/8"}},
	{name: "IPv6 peers and hops are resolved", remote: "[2001:db8::1]:443", xff: []string{"2001:db8:beef::7, [2001:db8::2]:80"}, want: "2001:db8:beef::7", trusted: []string{"2001:db8::/64"}},
	{name: "an IPv4-mapped IPv6 peer is unmapped", remote: "[::ffff:192.0.2.1]:80", want: "192.0.2.1"},
	{name: "Forwarded for= names the client", remote: "10.0.0.1:1", fwd: []string{`for=192.0.2.60;proto=https;by=203.0.113.43, for="[2001:db8:cafe::17]:4711"`}, want: "2001:db8:cafe::17", trusted: []string{"10.0.0.0/8"}},
	{name: "Forwarded for=unknown yields the peer", remote: "10.0.0.1:1", fwd: []string{"for=unknown"}, want: "10.0.0.1", trusted: []string{"10.0.0.0/8"}},
	{name: "an unterminated Forwarded quote yields the peer", remote: "10.0.0.1:1", fwd: []string{`for="192.0.2.1`}, want: "10.0.0.1", trusted: []string{"10.0.0.0/8"}},
	// Google's external Application Load Balancer appends "<client>, <forwarding rule IP>"
	// to what the client sent; Cloud Run's front end connects from a link-local
	// address (deploy/terraform/cloud-run renders these trusted_proxies).
	{name: "behind Google's load balancer and Cloud Run the client is left of the balancer's IP", remote: "169.254.169.126:40000", xff: []string{"203.0.113.7, 198.51.100.23, 34.120.0.9"}, want: "198.51.100.23", trusted: []string{"169.254.0.0/16", "34.120.0.9/32"}},
	{name: "X-Forwarded-For is preferred over Forwarded", remote: "10.0.0.1:1", xff: []string{"203.0.113.9"}, fwd: []string{"for=192.0.2.1"}, want: "203.0.113.9", trusted: []string{"10.0.0.0/8"}},
}

func TestResolve(t *testing.T) {
	for _, tc := range resolveCases {
		t.Run(tc.name, func(t *testing.T) {
			res := &Resolver{}
			for _, p := range tc.trusted {
				res.Trusted = append(res.Trusted, netip.MustParsePrefix(p))
			}
			r, _ := http.NewRequest("GET", "http://x/", nil)
			r.RemoteAddr = tc.remote
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			for _, v := range tc.fwd {
				r.Header.Add("Forwarded", v)
			}
			if got := res.Resolve(r); got.String() != tc.want {
				t.Fatalf("Resolve = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestAnOverlongChainIsMalformed(t *testing.T) {
	v := ""
	for i := 0; i < maxHops+1; i++ {
		v += "192.0.2.1,"
	}
	if _, ok := ParseXForwardedFor([]string{v[:len(v)-1]}); ok {
		t.Fatal("a chain longer than maxHops was accepted")
	}
}

func FuzzParseXForwardedFor(f *testing.F) {
	for _, s := range []string{"1.2.3.4", "1.2.3.4, [::1]:80", "::1,,", "a, b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		chain, ok := ParseXForwardedFor([]string{s})
		if ok && len(chain) > maxHops {
			t.Fatalf("chain of %d hops", len(chain))
		}
		for _, a := range chain {
			if !a.IsValid() || a.Is4In6() || a.Zone() != "" {
				t.Fatalf("bad address %v", a)
			}
		}
	})
}

func FuzzParseForwarded(f *testing.F) {
	for _, s := range []string{`for=1.2.3.4`, `for="[::1]:80";proto=https, for=2.2.2.2`, `for=`, `for="\"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		chain, ok := ParseForwarded([]string{s})
		if ok && len(chain) > maxHops {
			t.Fatalf("chain of %d hops", len(chain))
		}
		for _, a := range chain {
			if !a.IsValid() || a.Is4In6() {
				t.Fatalf("bad address %v", a)
			}
		}
	})
}

func TestNewParsesTrustedProxies(t *testing.T) {
	res, err := New([]string{"10.0.0.0/8", "2001:db8::1", "::ffff:192.0.2.0/120"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.0/8", "2001:db8::1/128", "192.0.2.0/24"}
	for i, p := range res.Trusted {
		if p.String() != want[i] {
			t.Errorf("Trusted[%d] = %s, want %s", i, p, want[i])
		}
	}
	if _, err := New([]string{"nonsense"}); err == nil {
		t.Error("a bad range was accepted")
	}
}

func TestScheme(t *testing.T) {
	trusted := &Resolver{Trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	for _, tc := range []struct {
		name   string
		remote string
		tls    bool
		xfp    []string
		want   string
	}{
		{name: "a TLS connection is https whatever it claims", remote: "198.51.100.7:1", tls: true, xfp: []string{"http"}, want: "https"},
		{name: "a plain connection without a claim is http", remote: "10.0.0.1:1", want: "http"},
		{name: "a trusted front's https is believed", remote: "10.0.0.1:1", xfp: []string{"https"}, want: "https"},
		{name: "a trusted front's value is read without case", remote: "10.0.0.1:1", xfp: []string{" HTTPS "}, want: "https"},
		{name: "the right-most value is the nearest proxy's", remote: "10.0.0.1:1", xfp: []string{"http, https"}, want: "https"},
		{name: "the last header is the nearest proxy's", remote: "10.0.0.1:1", xfp: []string{"https", "http"}, want: "http"},
		{name: "an unknown scheme is http", remote: "10.0.0.1:1", xfp: []string{"wss"}, want: "http"},
		{name: "an untrusted client's https is not believed", remote: "198.51.100.7:1", xfp: []string{"https"}, want: "http"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := http.NewRequest("GET", "http://x/", nil)
			r.RemoteAddr = tc.remote
			if tc.tls {
				r.TLS = &tls.ConnectionState{}
			}
			for _, v := range tc.xfp {
				r.Header.Add("X-Forwarded-Proto", v)
			}
			if got := trusted.Scheme(r); got != tc.want {
				t.Fatalf("Scheme = %q, want %q", got, tc.want)
			}
		})
	}
}
