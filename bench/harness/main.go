// Command harness measures moat against its peers on loopback (issue 13):
// a trivial backend reached directly, through nginx, HAProxy, Caddy, a bare
// httputil.ReverseProxy, oauth2-proxy with a cookie session, nginx with
// ModSecurity 3 and the CRS, and through moat (public, signed in behind a
// ten-rule policy, with the WAF). It measures requests/s and latency with
// wrk, HTTPS with HTTP/2 with h2load, WebSocket echo round trips, resident
// memory per idle proxied WebSocket, a login flood's effect on signed-in
// latency and moat's start-up to its first 200.
//
// Every target must answer 200 before anything is measured. Rounds
// alternate between the targets so that machine noise falls on all of them
// alike; the table gives medians and ranges and the load average. CPU and
// allocation profiles of moat under each of its loads are written beside
// the table, from a separate pass so that profiling never slows a measured
// round. Run it through bench/run, which installs the peers and builds moat.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// options are the command-line flags.
type options struct {
	bin                               map[string]string
	duration, echoFor                 time.Duration
	rounds, conns, sockets, startups  int
	out                               string
	quick, noProfiles                 bool
	only                              string
	floodConns                        int
	h2Conns, h2Streams                int
	idleSettle                        time.Duration
	sections                          map[string]bool
	dir                               string // scratch directory, removed at the end
	backendAddr, wsBackendAddr, label string
}

func main() {
	if len(os.Args) > 2 {
		switch os.Args[1] {
		case "backend":
			runBackend(os.Args[2])
			return
		case "httputil":
			runHTTPUtil(os.Args[2], os.Args[3])
			return
		}
	}
	o := options{bin: map[string]string{}}
	bins := map[string]*string{}
	for _, name := range []string{"moat", "caddy", "oauth2-proxy", "wrk", "h2load", "nginx", "haproxy"} {
		def := name // from PATH
		if name == "moat" || name == "caddy" || name == "oauth2-proxy" {
			def = "" // built by bench/run
		}
		bins[name] = flag.String(name, def, name+" binary; empty leaves its targets out")
	}
	flag.DurationVar(&o.duration, "duration", 8*time.Second, "length of one wrk or h2load run")
	flag.IntVar(&o.rounds, "rounds", 5, "alternating rounds per target")
	flag.IntVar(&o.conns, "conns", 32, "wrk connections")
	flag.IntVar(&o.sockets, "sockets", 5000, "idle WebSockets held for the memory measurement")
	flag.IntVar(&o.startups, "startups", 9, "moat start-ups timed per configuration")
	flag.IntVar(&o.floodConns, "flood-conns", 8, "connections of the login flood")
	flag.IntVar(&o.h2Conns, "h2-conns", 32, "h2load clients")
	flag.IntVar(&o.h2Streams, "h2-streams", 10, "h2load concurrent streams per client")
	flag.DurationVar(&o.echoFor, "echo", 5*time.Second, "length of one WebSocket echo run")
	flag.StringVar(&o.out, "out", "bench/results", "directory for the table and profiles (a dated subdirectory is made)")
	flag.BoolVar(&o.quick, "quick", false, "a run of about a minute: 1 s runs, 3 rounds, 500 sockets, 3 start-ups, no profiles")
	flag.BoolVar(&o.noProfiles, "no-profiles", false, "skip the profiling pass")
	flag.StringVar(&o.only, "only", "", "comma-separated sections to run: http,h2,echo,idle,flood,startup (default all)")
	flag.Parse()
	if o.quick {
		o.duration, o.rounds, o.sockets, o.startups, o.echoFor = time.Second, 3, 500, 3, time.Second
		o.noProfiles = true
	}
	for name, p := range bins {
		o.bin[name] = *p
	}
	o.sections = parseSections(o.only)
	if o.bin["moat"] == "" {
		fatalf("usage: harness -moat BIN [-caddy BIN] [-oauth2-proxy BIN] … (bench/run sets these)")
	}
	dir, err := os.MkdirTemp("", "moat-bench-")
	if err != nil {
		fatalf("%v", err)
	}
	o.dir, logDir = dir, dir
	defer os.RemoveAll(dir)
	o.label = time.Now().UTC().Format("2006-01-02T150405Z")
	outDir := filepath.Join(o.out, o.label)
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		fatalf("%v", err)
	}
	rep := newReport(outDir, o)
	run(o, rep)
	stopAll()
	path := rep.write()
	fmt.Printf("\ntable: %s\n", path)
}

func parseSections(only string) map[string]bool {
	all := []string{"http", "h2", "echo", "idle", "flood", "startup"}
	s := map[string]bool{}
	if only == "" {
		for _, n := range all {
			s[n] = true
		}
		return s
	}
	for _, n := range splitComma(only) {
		s[n] = true
	}
	return s
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "harness: "+format+"\n", args...)
	stopAll()
	os.Exit(1)
}
