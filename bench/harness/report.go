package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// report collects the measurements and writes them as one markdown table
// (with the targets of issue 13 checked underneath) into dir.
type report struct {
	dir     string
	o       options
	command string

	loadStart, loadHTTP, loadEnd string
	httpTargets                  []httpTarget
	http, h2                     map[string][]result
	echo                         map[string][]float64
	idle                         map[string]float64
	floodAlone                   []result
	floodUnder                   map[string][]result // by kind: tool, browser
	floodRate                    map[string][]float64
	startup                      map[bool][]float64
}

func newReport(dir string, o options) *report {
	return &report{
		dir: dir, o: o, command: strings.Join(os.Args, " "),
		http: map[string][]result{}, h2: map[string][]result{},
		echo: map[string][]float64{}, idle: map[string]float64{}, startup: map[bool][]float64{},
		floodUnder: map[string][]result{}, floodRate: map[string][]float64{},
	}
}

func pick(rs []result, f func(result) float64) []float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	return v
}

func rps(r result) float64 { return r.rps }
func p50(r result) float64 { return r.p50 }
func p99(r result) float64 { return r.p99 }

// med is the median requests/s of a target, 0 when it was not measured.
func (r *report) med(key string) float64 { return medianOf(pick(r.http[key], rps)) }

func (r *report) write() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("## moat against its peers, %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	args := strings.Join(os.Args[1:], " ")
	if v, ok := os.LookupEnv("BENCH_RUN_ARGS"); ok {
		args = v // what was given to bench/run, without the binaries it adds
	}
	w("Command: `%s` on %s (2 cores shared by everything: wrk, the backend and the proxy). ",
		strings.TrimSpace("bench/run "+args), hostDesc())
	w("Load average at start %s, after the HTTP rounds %s, at the end %s. ", r.loadStart, r.loadHTTP, r.loadEnd)
	w("Medians of %d alternating rounds of %s each (wrk -t1 -c%d, plain HTTP on loopback, trivial Go backend); ", r.o.rounds, r.o.duration, r.o.conns)
	w("ranges are min–max over the rounds. Read the ratios: absolute figures follow the machine's load.\n\n")

	if len(r.http) > 0 {
		nginx, caddy := r.med("nginx"), r.med("caddy")
		w("| target | req/s | range | p50 ms | p99 ms | ÷ nginx | ÷ Caddy |\n|---|---:|---:|---:|---:|---:|---:|\n")
		for _, t := range r.httpTargets {
			rs := r.http[t.key]
			lo, hi := rangeOf(pick(rs, rps))
			m := medianOf(pick(rs, rps))
			w("| %s | %.0f | %.0f–%.0f | %.2f | %.2f | %s | %s |\n", t.label, m, lo, hi,
				medianOf(pick(rs, p50)), medianOf(pick(rs, p99)), ratio(m, nginx), ratio(m, caddy))
		}
		w("\n")
	}
	if len(r.h2) > 0 {
		w("HTTPS + HTTP/2 (h2load -c%d -m%d): moat %.0f req/s, nginx %.0f req/s.\n\n", r.o.h2Conns, r.o.h2Streams,
			medianOf(pick(r.h2["moat"], rps)), medianOf(pick(r.h2["nginx"], rps)))
	}
	if len(r.echo) > 0 {
		w("| WebSocket echo (8 sockets) | round trips/s | range |\n|---|---:|---:|\n")
		for _, name := range []string{"direct", "nginx", "caddy", "haproxy", "moat"} {
			if v, ok := r.echo[name]; ok {
				lo, hi := rangeOf(v)
				w("| %s | %.0f | %.0f–%.0f |\n", name, medianOf(v), lo, hi)
			}
		}
		w("\n")
	}
	if len(r.idle) > 0 {
		var parts []string
		for _, name := range []string{"moat", "haproxy", "nginx", "caddy"} {
			if v, ok := r.idle[name]; ok {
				parts = append(parts, fmt.Sprintf("%s %.1f KiB", name, v))
			}
		}
		w("Idle proxied WebSockets (%d), resident memory per socket: %s.\n\n", r.o.sockets, strings.Join(parts, "; "))
	}
	if len(r.floodAlone) > 0 {
		w("Login flood (%d connections posting wrong passwords from one address): signed-in p99 %.2f ms (%.0f req/s) alone; ",
			r.o.floodConns, medianOf(pick(r.floodAlone, p99)), medianOf(pick(r.floodAlone, rps)))
		w("%.2f ms (%.0f req/s) under a tool's flood (%.0f attempts/s, answered 429 in JSON); ",
			medianOf(pick(r.floodUnder["tool"], p99)), medianOf(pick(r.floodUnder["tool"], rps)), medianOf(r.floodRate["tool"]))
		w("%.2f ms (%.0f req/s) under a flood forging browser navigations (%.0f attempts/s, answered 429 with the login page).\n\n",
			medianOf(pick(r.floodUnder["browser"], p99)), medianOf(pick(r.floodUnder["browser"], rps)), medianOf(r.floodRate["browser"]))
	}
	if len(r.startup[false]) > 0 {
		lo0, hi0 := rangeOf(r.startup[false])
		lo1, hi1 := rangeOf(r.startup[true])
		w("Start-up to first 200 on a fresh data directory (%d tries): %.1f ms (%.1f–%.1f) without WAF, %.1f ms (%.1f–%.1f) with it.\n\n",
			len(r.startup[false]), medianOf(r.startup[false]), lo0, hi0, medianOf(r.startup[true]), lo1, hi1)
	}
	w("%s", r.targets())
	path := filepath.Join(r.dir, "results.md")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		fatalf("%v", err)
	}
	fmt.Printf("\n%s", b.String())
	return path
}

// hostDesc names the CPU, for the reader comparing runs.
func hostDesc() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "this machine"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "this machine"
}

func ratio(a, b float64) string {
	if a == 0 || b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

// targets checks issue 13's targets against this run.
func (r *report) targets() string {
	type check struct {
		what       string
		got, want  float64
		atMost, ok bool
	}
	var cs []check
	add := func(what string, got, want float64, atMost bool) {
		if got == 0 || want == 0 {
			return // a side was not measured
		}
		cs = append(cs, check{what: what, got: got, want: want, atMost: atMost, ok: true})
	}
	div := func(a, b float64) float64 {
		if a == 0 || b == 0 {
			return 0
		}
		return a / b
	}
	p99med := func(key string) float64 { return medianOf(pick(r.http[key], p99)) }
	add("public route ÷ nginx (req/s)", div(r.med("moat"), r.med("nginx")), 0.8, false)
	add("public route ÷ Caddy (req/s)", div(r.med("moat"), r.med("caddy")), 1.5, false)
	add("public route p99 ÷ nginx p99", div(p99med("moat"), p99med("nginx")), 1.2, true)
	add("signed-in ÷ public (req/s)", div(r.med("moat-signed-in"), r.med("moat")), 0.95, false)
	add("signed-in ÷ oauth2-proxy (req/s)", div(r.med("moat-signed-in"), r.med("oauth2-proxy")), 4, false)
	add("WAF ÷ no WAF, browser-like request", div(r.med("moat-waf-browser"), r.med("moat-browser")), 0.3, false)
	add("WAF ÷ nginx+ModSecurity, `GET /`", div(r.med("moat-waf"), r.med("nginx+modsec")), 1, false)
	add("WAF ÷ nginx+ModSecurity, browser-like", div(r.med("moat-waf-browser"), r.med("nginx+modsec-browser")), 1, false)
	add("WebSocket echo ÷ Caddy", div(medianOf(r.echo["moat"]), medianOf(r.echo["caddy"])), 1.2, false)
	add("WebSocket echo ÷ nginx", div(medianOf(r.echo["moat"]), medianOf(r.echo["nginx"])), 1, false)
	if _, ok := r.idle["haproxy"]; ok {
		add("idle WebSocket memory ÷ HAProxy's", div(r.idle["moat"], r.idle["haproxy"]), 1, true)
	}
	add("login flood (tool): signed-in p99 flooded ÷ alone", div(medianOf(pick(r.floodUnder["tool"], p99)), medianOf(pick(r.floodAlone, p99))), 2, true)
	add("login flood (forged navigations): p99 flooded ÷ alone", div(medianOf(pick(r.floodUnder["browser"], p99)), medianOf(pick(r.floodAlone, p99))), 2, true)
	add("HTTPS + HTTP/2 ÷ nginx (req/s)", div(medianOf(pick(r.h2["moat"], rps)), medianOf(pick(r.h2["nginx"], rps))), 0.8, false)
	add("start-up to first 200 without WAF (ms)", medianOf(r.startup[false]), 50, true)
	add("start-up to first 200 with WAF (ms)", medianOf(r.startup[true]), 150, true)
	var b strings.Builder
	b.WriteString("| issue 13 target | this run | target | met |\n|---|---:|---:|:-:|\n")
	for _, c := range cs {
		op, met := "≥", c.got >= c.want
		if c.atMost {
			op, met = "≤", c.got <= c.want
		}
		mark := "yes"
		if !met {
			mark = "**no**"
		}
		b.WriteString(fmt.Sprintf("| %s | %.2f | %s %.2f | %s |\n", c.what, c.got, op, c.want, mark))
	}
	return b.String()
}
