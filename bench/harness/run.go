package main

import (
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"
)

// httpTarget is one line of the HTTP table.
type httpTarget struct {
	key, label string
	proc       string // the process serving it, in lab.procs
	url        string
	headers    []string
}

func (l *lab) httpTargets() []httpTarget {
	moat := "http://" + l.addrs["moat"]
	signedIn := "http://localhost:" + port(l.addrs["moat"]) + "/"
	ts := []httpTarget{
		{"direct", "direct backend", "direct", "http://" + l.addrs["direct"] + "/", nil},
		{"nginx", "nginx (2 workers, upstream keep-alive)", "nginx", "", nil},
		{"haproxy", "HAProxy (default threads)", "haproxy", "", nil},
		{"caddy", "Caddy reverse_proxy", "caddy", "", nil},
		{"httputil", "bare httputil.ReverseProxy", "httputil", "", nil},
		{"moat", "**moat public route**", "moat", moat + "/", nil},
		{"moat-signed-in", "moat signed-in (cookie session), 10-rule policy", "moat", signedIn, []string{"Cookie: " + l.moatCookie}},
		{"oauth2-proxy", "oauth2-proxy cookie session", "oauth2-proxy", "", []string{"Cookie: " + l.oauth2Cookie}},
		{"moat-browser", "moat public route, browser-like request", "moat", moat + browserPath, browserHeaders},
		{"moat-waf", "moat + WAF (6 CRS sets), `GET /`", "moat", moat + "/", []string{"Host: waf.test"}},
		{"nginx+modsec", "nginx + ModSecurity 3 + CRS 3.3, `GET /`", "nginx+modsec", "", nil},
		{"moat-waf-browser", "moat + WAF, browser-like request", "moat", moat + browserPath, append([]string{"Host: waf.test"}, browserHeaders...)},
		{"nginx+modsec-browser", "nginx + ModSecurity, browser-like request", "nginx+modsec", "", browserHeaders},
	}
	var out []httpTarget
	for _, t := range ts {
		addr, ok := l.addrs[t.proc]
		if !ok {
			continue
		}
		if t.url == "" {
			t.url = "http://" + addr + "/"
			if strings.HasSuffix(t.key, "-browser") {
				t.url = "http://" + addr + browserPath
			}
		}
		out = append(out, t)
	}
	return out
}

// header turns wrk's "Name: value" lines into an http.Header for the
// 200 check before measuring.
func header(lines []string) http.Header {
	h := http.Header{}
	for _, line := range lines {
		k, v, _ := strings.Cut(line, ": ")
		h.Add(k, v)
	}
	return h
}

func run(o options, rep *report) {
	rep.loadStart = loadAvg()
	fmt.Printf("load average at start: %s\n", rep.loadStart)
	l := startLab(o)
	o.backendAddr = l.backend
	targets := l.httpTargets()
	for _, t := range targets {
		waitOK(l.procs[t.proc], t.url, header(t.headers))
	}

	// Idle memory first, on processes that have served nothing but their
	// readiness checks: after the load sections the collector hands memory
	// back to the system while the sockets are held, and the growth reads
	// low, even negative.
	if o.sections["idle"] {
		fmt.Printf("\nIdle WebSockets: %d held open through each proxy; growth of its resident memory\n", o.sockets)
		settle := 3 * time.Second
		if o.quick {
			settle = time.Second
		}
		for _, name := range []string{"moat", "haproxy", "nginx", "caddy"} {
			addr, ok := l.addrs[name]
			if !ok {
				continue
			}
			kib := idleMemory(l.procs[name], addr, o.sockets, settle)
			fmt.Printf("  %-8s %7.1f KiB per socket\n", name, kib)
			rep.idle[name] = kib
		}
	}

	if o.sections["http"] {
		fmt.Printf("\nHTTP: wrk -t1 -c%d -d%s, %d alternating rounds, plain HTTP on loopback, trivial backend\n", o.conns, o.duration, o.rounds)
		for round := 1; round <= o.rounds; round++ {
			for _, t := range targets {
				r := wrk(o.bin["wrk"], o.conns, o.duration, t.url, t.headers)
				fmt.Printf("  round %d %-22s %9.0f req/s  p50 %7.3f ms  p99 %7.3f ms\n", round, t.key, r.rps, r.p50, r.p99)
				rep.http[t.key] = append(rep.http[t.key], r)
			}
		}
		rep.httpTargets = targets
		rep.loadHTTP = loadAvg()
	}

	if o.sections["h2"] && have(o.bin["h2load"]) && l.nginxTLS != "" {
		fmt.Printf("\nHTTPS + HTTP/2: h2load -c%d -m%d, %d alternating rounds\n", o.h2Conns, o.h2Streams, o.rounds)
		h2 := map[string]string{"moat": "https://127.0.0.1:" + port(l.moatHTTPS) + "/", "nginx": "https://" + l.nginxTLS + "/"}
		for round := 1; round <= o.rounds; round++ {
			for _, name := range []string{"nginx", "moat"} {
				r := h2load(o.bin["h2load"], o.h2Conns, o.h2Streams, o.duration, h2[name])
				fmt.Printf("  round %d %-8s %9.0f req/s\n", round, name, r.rps)
				rep.h2[name] = append(rep.h2[name], r)
			}
		}
	}

	if o.sections["flood"] {
		fmt.Printf("\nLogin flood: signed-in route measured alone and while %d connections post wrong passwords to /_moat/login (as a tool, then forging a browser's navigation), alternating\n", o.floodConns)
		signedIn := "http://localhost:" + port(l.addrs["moat"]) + "/"
		login := "http://localhost:" + port(l.addrs["moat"]) + "/_moat/login"
		cookie := []string{"Cookie: " + l.moatCookie}
		scripts := map[string]string{"tool": l.floodScript(false), "browser": l.floodScript(true)}
		for round := 1; round <= o.rounds; round++ {
			alone := wrk(o.bin["wrk"], o.conns, o.duration, signedIn, cookie)
			rep.floodAlone = append(rep.floodAlone, alone)
			fmt.Printf("  round %d alone            p99 %7.3f ms (%6.0f req/s)\n", round, alone.p99, alone.rps)
			for _, kind := range []string{"tool", "browser"} {
				under, rate := flooded(o, signedIn, cookie, login, scripts[kind])
				fmt.Printf("  round %d flooded (%-7s) p99 %7.3f ms (%6.0f req/s), flood %6.0f attempts/s\n", round, kind, under.p99, under.rps, rate)
				rep.floodUnder[kind] = append(rep.floodUnder[kind], under)
				rep.floodRate[kind] = append(rep.floodRate[kind], rate)
			}
		}
	}

	if o.sections["echo"] {
		fmt.Printf("\nWebSocket echo: 8 connections, %s each, %d alternating rounds\n", o.echoFor, o.rounds)
		for round := 1; round <= o.rounds; round++ {
			for _, name := range []string{"direct", "nginx", "caddy", "haproxy", "moat"} {
				addr, ok := l.addrs[name]
				if !ok {
					continue
				}
				rate := echoRate(addr, 8, o.echoFor)
				fmt.Printf("  round %d %-8s %9.0f round trips/s\n", round, name, rate)
				rep.echo[name] = append(rep.echo[name], rate)
			}
		}
	}

	if o.sections["startup"] {
		fmt.Printf("\nStart-up to first 200 (fresh data directory), %d alternating tries\n", o.startups)
		for i := 0; i < o.startups; i++ {
			for _, waf := range []bool{false, true} {
				d := startupTime(o, waf, i)
				fmt.Printf("  try %d waf=%-5v %6.1f ms\n", i+1, waf, ms(d))
				rep.startup[waf] = append(rep.startup[waf], ms(d))
			}
		}
	}
	rep.loadEnd = loadAvg()

	if !o.noProfiles {
		fmt.Printf("\nProfiles of moat (separate pass, not measured): %s\n", rep.dir)
		for _, t := range targets {
			if l.procs[t.proc] != l.procs["moat"] {
				continue
			}
			wait := profile(l.moatInternal, rep.dir, t.key, o.duration)
			wrk(o.bin["wrk"], o.conns, o.duration+time.Second, t.url, t.headers)
			wait()
		}
		if o.sections["flood"] {
			wait := profile(l.moatInternal, rep.dir, "moat-login-flood", o.duration)
			flooded(o, "http://localhost:"+port(l.addrs["moat"])+"/", []string{"Cookie: " + l.moatCookie},
				"http://localhost:"+port(l.addrs["moat"])+"/_moat/login", l.floodScript(true))
			wait()
		}
		if o.sections["h2"] && have(o.bin["h2load"]) {
			wait := profile(l.moatInternal, rep.dir, "moat-h2", o.duration)
			h2load(o.bin["h2load"], o.h2Conns, o.h2Streams, o.duration+time.Second, "https://127.0.0.1:"+port(l.moatHTTPS)+"/")
			wait()
		}
	}
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:3], " ")
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func medianOf(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func rangeOf(v []float64) (lo, hi float64) {
	if len(v) == 0 {
		return 0, 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[0], s[len(s)-1]
}
