package policy

import (
	"fmt"
	"net/netip"
	"strconv"
	"testing"
)

// nativeShapes are the expressions nativeOf evaluates in Go, with %s for
// the variable (or header lookup) and %q for the constant.
var nativeShapes = []string{
	"%s.startsWith(%s)",
	"%s.endsWith(%s)",
	"%s.contains(%s)",
	"%s == %s",
	"%s != %s",
	"%[2]s == %[1]s",
}

var nativeOperands = []string{
	"request.path", "request.method", "request.query", "request.host", "request.scheme", "origin.ip",
	"request.headers['user-agent']", "request.headers['x_a']", "request.headers['X-A']",
}

// FuzzNativeExpr holds the native evaluator to CEL's answers: for every
// shape it knows, on any request, the same match and the same error.
func FuzzNativeExpr(f *testing.F) {
	f.Add(uint8(0), uint8(0), "/admin", "/admin/x", "GET", "a=1", "User-Agent", "curl", "192.0.2.1")
	f.Add(uint8(2), uint8(6), "sqlmap", "/", "GET", "", "User-Agent", "sqlmap/1.7", "2001:db8::1")
	f.Add(uint8(3), uint8(1), "TRACE", "/", "TRACE", "", "X-A", "v", "::ffff:192.0.2.9")
	f.Add(uint8(4), uint8(7), "1", "/x/../y", "POST", "", "X_A", "1", "10.1.2.3")
	f.Add(uint8(5), uint8(5), "192.0.2.1", "/a.php", "GET", "", "", "", "192.0.2.1")
	f.Add(uint8(6), uint8(0), "10.0.0.0/8", "/", "GET", "", "", "", "10.0.0.1")
	env, err := newCELEnv()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, shape, opnd uint8, lit, path, method, query, hname, hval, ip string) {
		var src string
		if int(shape) == len(nativeShapes) {
			src = "inIpRange(origin.ip, " + strconv.Quote(lit) + ")"
		} else {
			form := nativeShapes[int(shape)%len(nativeShapes)]
			src = fmt.Sprintf(form, nativeOperands[int(opnd)%len(nativeOperands)], strconv.Quote(lit))
		}
		parsed, iss := env.Compile(src)
		if iss.Err() != nil || len(checkRanges(parsed)) > 0 {
			return
		}
		n := nativeOf(parsed)
		if n == nil {
			t.Fatalf("%s: not evaluated natively", src)
		}
		prg, err := celProgramOf(env, parsed)
		if err != nil {
			t.Fatal(err)
		}
		addr, err := netip.ParseAddr(ip)
		if err != nil {
			addr = netip.Addr{}
		}
		r := mustRequest(t, "192.0.2.1", "https://app.example.com/")
		r.Method, r.URL.Path, r.URL.RawQuery = method, path, query
		if hname != "" {
			r.Header[hname] = []string{hval}
		}
		got, gotErr := n.eval(newActivation(r, addr, "https"))
		want, wantErr := prg.eval(newActivation(r, addr, "https"))
		if got != want || (gotErr == nil) != (wantErr == nil) || gotErr != nil && gotErr.Error() != wantErr.Error() {
			t.Fatalf("%s on %s %s?%s %s: %q, ip %v: native (%v, %v), CEL (%v, %v)", src, method, path, query, hname, hval, addr, got, gotErr, want, wantErr)
		}
	})
}

// TestNativeShapes checks which expressions run natively: one test of one
// variable against a constant; anything more runs in CEL.
func TestNativeShapes(t *testing.T) {
	env, err := newCELEnv()
	if err != nil {
		t.Fatal(err)
	}
	for src, native := range map[string]bool{
		`request.path.startsWith('/admin')`:              true,
		`'TRACE' == request.method`:                      true,
		`request.headers['user-agent'].contains('bot')`:  true,
		`inIpRange(origin.ip, '192.0.2.0/24')`:           true,
		`request.path.matches('a+')`:                     false,
		`request.headers['x'].lower() == 'a'`:            false,
		`inIpRange(request.headers['x'], '10.0.0.0/8')`:  false,
		`request.method == 'GET' && request.path == '/'`: false,
		`request.path == request.query`:                  false,
		`'x-a' in request.headers`:                       false,
	} {
		parsed, iss := env.Compile(src)
		if iss.Err() != nil {
			t.Fatalf("%s: %v", src, iss.Err())
		}
		if got := nativeOf(parsed) != nil; got != native {
			t.Errorf("%s: native %v, want %v", src, got, native)
		}
	}
}
