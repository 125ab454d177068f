package policy

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/moat-dev/moat/internal/config"
)

func TestExpressions(t *testing.T) {
	cases := []struct {
		name   string
		expr   string
		target string
		method string
		header http.Header
		ip     string
		want   bool
	}{
		{name: "request.path with startsWith", expr: `request.path.startsWith('/admin')`, target: "/admin/x", want: true},
		{name: "request.path is cleaned of dot segments", expr: `request.path.startsWith('/admin')`, target: "/x/../admin", want: true},
		{name: "request.path is decoded", expr: `request.path.startsWith('/admin')`, target: "/%61dmin", want: true},
		{name: "an encoded slash cannot climb out of a denied path", expr: `request.path.startsWith('/admin')`, target: "/admin%2F..", want: true},
		{name: "doubled slashes are merged", expr: `request.path.startsWith('/admin')`, target: "//admin", want: true},
		{name: "request.path with endsWith", expr: `request.path.endsWith('.php')`, target: "/a.php", want: true},
		{name: "request.method", expr: `request.method == 'POST'`, method: "POST", want: true},
		{name: "request.query with contains", expr: `request.query.contains('debug=1')`, target: "/?a=b&debug=1", want: true},
		{name: "request.headers has lower-case keys", expr: `request.headers['user-agent'].contains('curl')`, header: http.Header{"User-Agent": {"curl/8"}}, want: true},
		{name: "repeated headers are joined with commas", expr: `request.headers['x-a'] == '1,2'`, header: http.Header{"X-A": {"1", "2"}}, want: true},
		{name: "a missing header does not match", expr: `request.headers['x-missing'] == ''`, want: false},
		{name: "the in operator finds headers", expr: `!('x-missing' in request.headers)`, want: true},
		{name: "the in operator finds a present header", expr: `'x-a' in request.headers`, header: http.Header{"X-A": {"1"}}, want: true},
		{name: "has() finds a present header", expr: `has(request.headers.accept)`, header: http.Header{"Accept": {"*/*"}}, want: true},
		{name: "a header name is looked up in lower case only", expr: `'X-A' in request.headers`, header: http.Header{"X-A": {"1"}}, want: false},
		{name: "a name net/http left as sent is found in lower case", expr: `request.headers['x_a'] == '1'`, header: http.Header{"X_A": {"1"}}, want: true},
		{name: "the whole map: size", expr: `request.headers.size() == 2`, header: http.Header{"X-A": {"1"}, "X-B": {"2", "3"}}, want: true},
		{name: "the whole map: iteration", expr: `request.headers.exists(k, k == 'x-b' && request.headers[k] == '2,3')`, header: http.Header{"X-A": {"1"}, "X-B": {"2", "3"}}, want: true},
		{name: "the whole map: equality", expr: `request.headers == {'x-a': '1'}`, header: http.Header{"X-A": {"1"}}, want: true},
		{name: "request.host without port", expr: `request.host == 'app.example.com'`, want: true},
		{name: "request.scheme", expr: `request.scheme == 'https'`, want: true},
		{name: "origin.ip", expr: `origin.ip == '2001:db8::1'`, ip: "2001:db8::1", want: true},
		{name: "inIpRange with IPv4", expr: `inIpRange(origin.ip, '192.0.2.0/24')`, want: true},
		{name: "inIpRange with IPv6", expr: `inIpRange(origin.ip, '2001:db8::/32')`, ip: "2001:db8::1", want: true},
		{name: "inIpRange outside", expr: `inIpRange(origin.ip, '10.0.0.0/8')`, want: false},
		{name: "lower()", expr: `request.headers['x-a'].lower() == 'abc'`, header: http.Header{"X-A": {"AbC"}}, want: true},
		{name: "matches is a partial RE2 match", expr: `request.path.matches('wp-(login|admin)')`, target: "/blog/wp-login.php", want: true},
		{name: "logical operators", expr: `request.method == 'GET' && !request.path.startsWith('/static')`, target: "/x", want: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := configWith(t, `rules:
  - priority: 1
    expr: "`+strings.ReplaceAll(tc.expr, `"`, `\"`)+`"
    action: "deny(403)"`)
			h := newEngine(t, cfg, Options{}).Handler("p", okHandler)
			ip := tc.ip
			if ip == "" {
				ip = "192.0.2.1"
			}
			target := "https://app.example.com" + tc.target
			if tc.target == "" {
				target += "/"
			}
			w := serve(h, req{ip: ip, method: tc.method, target: target, header: tc.header})
			if got := w.Code == 403; got != tc.want {
				t.Fatalf("matched = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestExpressionErrorsNameTheirPosition(t *testing.T) {
	cases := []struct {
		name  string
		rule  string
		want  string // file:line:column suffix and message part
		inMsg string
	}{
		{name: "an undeclared variable in a quoted expression", rule: `  - priority: 1
    expr: "request.pth == '/'"
    action: allow`, want: ":14:16:", inMsg: "undeclared reference"},
		{name: "an undeclared variable in a plain expression", rule: `  - priority: 1
    expr: request.method == 'GET' && foo
    action: allow`, want: ":14:42:", inMsg: "undeclared reference to 'foo'"},
		{name: "a syntax error on the second line of a block", rule: `  - priority: 1
    expr: |
      request.method == 'GET' &&
        request.path.startsWith(
    action: allow`, want: ":17:", inMsg: "Syntax error"},
		{name: "a bad CIDR in inIpRange", rule: `  - priority: 1
    expr: "inIpRange(origin.ip, '10.0.0.0/33')"
    action: allow`, want: ":14:37:", inMsg: "invalid IP range"},
		{name: "a non-boolean expression", rule: `  - priority: 1
    expr: "request.path"
    action: allow`, want: ":14:16:", inMsg: "true or false"},
		{name: "an unknown function", rule: `  - priority: 1
    expr: "request.path.shout()"
    action: allow`, want: ":14:34:", inMsg: "shout"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := configWith(t, "rules:\n"+strings.TrimPrefix(indent(tc.rule, ""), ""))
			_, err := New(cfg, Options{Logger: quietLogger()})
			if err == nil {
				t.Fatal("no error")
			}
			var ce config.Errors
			if !asErrors(err, &ce) {
				t.Fatalf("error is %T, want config.Errors", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, "moat.yaml"+tc.want) || !strings.Contains(msg, tc.inMsg) || !strings.Contains(msg, "security_policies.p.rules[0].expr") {
				t.Fatalf("error %q, want position %q and %q", msg, tc.want, tc.inMsg)
			}
			if err := Check(cfg); err == nil {
				t.Fatal("Check found no error")
			}
		})
	}
}

func asErrors(err error, ce *config.Errors) bool {
	e, ok := err.(config.Errors)
	*ce = e
	return ok
}

func TestExpressionsAreCostBounded(t *testing.T) {
	cfg := configWith(t, `rules:
  - priority: 1
    expr: "request.headers.all(k, request.headers.all(k2, request.headers.all(k3, request.path.matches(k + k2 + k3))))"
    action: allow`)
	_, err := New(cfg, Options{Logger: quietLogger()})
	if err == nil || !strings.Contains(err.Error(), "cost") {
		t.Fatalf("err = %v, want a cost error", err)
	}
}

func FuzzCompileExpr(f *testing.F) {
	for _, s := range []string{
		`request.path.startsWith('/admin')`,
		`inIpRange(origin.ip, '10.0.0.0/8') && request.headers['x'].lower().matches('a+')`,
		`request.headers.exists(k, k.contains('x'))`,
		`(((((`,
	} {
		f.Add(s, "/p", "x-a", "v")
	}
	env, err := newCELEnv()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, src, path, hname, hval string) {
		prg, errs := compileExpr(env, src)
		if prg == nil {
			if len(errs) == 0 {
				t.Fatal("no program and no error")
			}
			return
		}
		r := mustRequest(t, "192.0.2.1", "https://app.example.com/")
		r.URL.Path = path
		r.Header[hname] = []string{hval}
		prg.eval(newActivation(r, netip.MustParseAddr("192.0.2.1"), "https"))
	})
}

// FuzzHeaderLookup checks that a lookup in request.headers (findHeader)
// answers as the whole map (lowerHeaders) would, for names net/http
// canonicalises and names it leaves as sent.
func FuzzHeaderLookup(f *testing.F) {
	f.Add("User-Agent", "x_a", "user-agent", "curl")
	f.Add("X_A", "x_a", "x_a", "1")
	f.Add("X-A", "x-a", "X-A", "v")
	f.Add("\u212aey", "b", "key", "v") // the Kelvin sign lower-cases to k
	f.Fuzz(func(t *testing.T, n1, n2, key, v string) {
		h := http.Header{n1: {v}, n2: {v, "w"}}
		want, wantOK := lowerHeaders(h)[key]
		got, ok := findHeader(h, key)
		if ok != wantOK {
			t.Fatalf("findHeader(%q) found %v, the map %v", key, ok, wantOK)
		}
		// Two names that differ only in case are one key: the map keeps
		// either's values, findHeader joins both.
		if ok && strings.ToLower(n1) != strings.ToLower(n2) && got != want {
			t.Fatalf("findHeader(%q) = %q, the map has %q", key, got, want)
		}
	})
}
