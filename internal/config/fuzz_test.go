package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzParse feeds arbitrary files to the loader: it never panics, a file it
// accepts has routes whose backends exist (or forward_auth routes, without
// a backend, behind trusted proxies), and a file it refuses is refused
// with problems that name the file and say something.
func FuzzParse(f *testing.F) {
	golden, _ := filepath.Glob("../../cmd/moat/testdata/check/*.txt")
	for _, g := range golden {
		if data, err := os.ReadFile(g); err == nil {
			in, _, _ := strings.Cut(string(data), "\n-- want --\n")
			f.Add([]byte(in))
		}
	}
	f.Add([]byte("backends: {app: {url: \"http://127.0.0.1:1\"}}\nroutes: [{host: a.example.com, backend: app, public: true}]\n"))
	f.Add([]byte("a: &a [*a, *a]\nb: &b [*a, *a, *a]\nc: [*b, *b, *b]\n"))
	f.Add([]byte("routes: [{host: \"${NOPE:-x}\", backend: \"${X:-${Y}}\"}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("moat.yaml", data)
		if err != nil {
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("error %v is not a list of problems", err)
			}
			for _, p := range errs {
				if p.File != "moat.yaml" || p.Msg == "" || p.Line < 0 {
					t.Fatalf("problem without file or message: %+v", p)
				}
			}
			return
		}
		if len(cfg.Routes) == 0 {
			t.Fatal("a configuration without routes was accepted")
		}
		for _, r := range cfg.Routes {
			switch {
			case r == nil:
				t.Fatal("a nil route was accepted")
			case r.ForwardAuth && (r.Backend != "" || len(cfg.Server.TrustedProxies) == 0):
				t.Fatalf("forward_auth route %s has a backend or no trusted proxies", r.Name())
			case !r.ForwardAuth && cfg.Backends[r.Backend] == nil:
				t.Fatalf("route %+v names no defined backend", r)
			}
			if !r.Public && len(r.Login) == 0 {
				t.Fatalf("route %s is neither public nor signed in", r.Name())
			}
		}
	})
}

// FuzzExpandEnv checks ${NAME} expansion: text without "${" is untouched,
// a value is inserted exactly once and never expanded again, and every
// problem names a reference that is in the text.
func FuzzExpandEnv(f *testing.F) {
	for _, s := range []string{"plain", "${A}", "x${A}y${B:-b}z", "${UNSET}", "${A:-}", "${A:-${B}}", "${", "${1A}", "$${A}", "${A:-a}b}"} {
		f.Add(s, "value")
		f.Add(s, "${B}")
	}
	f.Fuzz(func(t *testing.T, s, value string) {
		lookup := func(name string) (string, bool) {
			if name == "A" || name == "B" {
				return value, true
			}
			return "", false
		}
		out, problems := expand(s, lookup)
		if !strings.Contains(s, "${") && (out != s || len(problems) > 0) {
			t.Fatalf("expand(%q) = %q, %q; want it untouched", s, out, problems)
		}
		if s == "${A}" && (out != value || len(problems) > 0) {
			t.Fatalf("expand(${A}) = %q, want the value %q as it is", out, value)
		}
		for _, p := range problems {
			i := strings.Index(p, "${")
			name := strings.TrimPrefix(p, "environment variable ")
			if i >= 0 && strings.HasPrefix(p, "the default of ") {
				name = p[i+2:]
			}
			if j := strings.IndexAny(name, " }"); j >= 0 {
				name = name[:j]
			}
			if !strings.Contains(s, "${"+name) {
				t.Fatalf("expand(%q) reports %q, about a name not in the text", s, p)
			}
		}
	})
}

// FuzzParseDuration checks that durations are never negative, that days
// are whole days, and that every duration reads back from its own string.
func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"0", "30s", "15m", "12h", "7d", "1.5h", "-1s", "99999d", "100000d", "1d2h", "d", "9223372036854775807ns"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err != nil {
			if !strings.Contains(err.Error(), "invalid duration") {
				t.Fatalf("ParseDuration(%q): unhelpful error %v", s, err)
			}
			return
		}
		if d < 0 {
			t.Fatalf("ParseDuration(%q) = %s, negative", s, d)
		}
		if strings.HasSuffix(s, "d") && d%(24*time.Hour) != 0 {
			if _, err := time.ParseDuration(s); err != nil {
				t.Fatalf("ParseDuration(%q) = %s, not whole days", s, d)
			}
		}
		if again, err := ParseDuration(d.String()); err != nil || again != d {
			t.Fatalf("ParseDuration(%q) = %s, which reads back as %s, %v", s, d, again, err)
		}
	})
}

// FuzzParseAction checks that an accepted action is one moat knows, with
// a status it allows, and that it reads back from its own string.
func FuzzParseAction(f *testing.F) {
	for _, s := range []string{"allow", "deny", "deny(404)", "deny( 429 )", "deny(200)", "redirect(/blocked)", "redirect(https://example.com/x)",
		"redirect(//evil.example)", "redirect(javascript:alert(1))", "throttle", "rate_based_ban", "deny(", ")", "redirect('/q')"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAction(s)
		if err != nil {
			return
		}
		switch a.Kind {
		case ActionAllow, ActionThrottle, ActionRateBasedBan:
		case ActionDeny:
			if a.Status != 403 && a.Status != 404 && a.Status != 429 && a.Status != 502 {
				t.Fatalf("ParseAction(%q) denies with %d", s, a.Status)
			}
		case ActionRedirect:
			if checkRedirect(a.URL) != nil || strings.HasPrefix(a.URL, "//") {
				t.Fatalf("ParseAction(%q) redirects to %q", s, a.URL)
			}
		default:
			t.Fatalf("ParseAction(%q) = unknown kind %q", s, a.Kind)
		}
		if again, err := ParseAction(a.String()); err != nil || again != a {
			t.Fatalf("ParseAction(%q) = %+v, which reads back as %+v, %v", s, a, again, err)
		}
	})
}

// FuzzCheckRateLimitKey checks that an accepted key is one of the kinds
// moat counts by, with a name that cannot break the key's encoding.
func FuzzCheckRateLimitKey(f *testing.F) {
	for _, s := range []string{"ip", "all", "path", "user", "header:x-api-key", "cookie:sid", "header:", "cookie:a;b", "IP", "header:a:b", "xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, k string) {
		if CheckRateLimitKey(k) != nil {
			return
		}
		switch k {
		case "ip", "all", "path", "user":
			return
		}
		name, ok := strings.CutPrefix(k, "header:")
		if !ok {
			name, ok = strings.CutPrefix(k, "cookie:")
		}
		if !ok || name == "" || len(name) > 256 || strings.ContainsAny(name, " \t\r\n:;,=") {
			t.Fatalf("CheckRateLimitKey accepted %q", k)
		}
	})
}

// Found by FuzzParse: empty entries decoded to nil and crashed the loader
// (and so check, serve and a live reload) instead of being reported.
func TestEmptyEntriesAreReportedNotCrashed(t *testing.T) {
	for _, y := range []string{
		"routes: [~]\n",
		"security_policies: {p: }\nroutes: [{host: a.example.com, backend: b, public: true}]\n",
		"security_policies: {p: {rules: [~]}}\nroutes: [{host: a.example.com, backend: b, public: true}]\n",
		"backends: {b: }\nroutes: [{host: a.example.com, backend: b, public: true}]\n",
	} {
		if _, err := Parse("moat.yaml", []byte(y)); err == nil {
			t.Errorf("%q was accepted", y)
		}
	}
}
