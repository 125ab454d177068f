// Command harness measures moat against a trivial backend reached directly
// and through Caddy's reverse_proxy, on loopback: requests/s and latency with
// wrk, WebSocket echo round trips, and resident memory per idle proxied
// WebSocket. Runs alternate between the targets so that machine noise falls
// on all of them alike. Run it through bench/run, which installs wrk and
// Caddy and builds moat.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

func main() {
	if len(os.Args) > 2 && os.Args[1] == "backend" {
		runBackend(os.Args[2])
		return
	}
	var (
		moatBin  = flag.String("moat", "", "moat binary")
		caddyBin = flag.String("caddy", "", "caddy binary")
		wrkBin   = flag.String("wrk", "wrk", "wrk binary")
		duration = flag.Duration("duration", 10*time.Second, "length of one wrk run")
		rounds   = flag.Int("rounds", 3, "alternating rounds per target")
		conns    = flag.Int("conns", 32, "wrk connections")
		sockets  = flag.Int("sockets", 5000, "idle WebSockets to hold for the memory measurement")
	)
	flag.Parse()
	if *moatBin == "" || *caddyBin == "" {
		fatalf("usage: harness -moat BIN -caddy BIN [-wrk BIN] (bench/run sets these)")
	}
	dir, err := os.MkdirTemp("", "moat-bench-")
	if err != nil {
		fatalf("%v", err)
	}
	defer os.RemoveAll(dir)

	backendAddr := freeAddr()
	backend := start("backend", nil, os.Args[0], "backend", backendAddr)
	defer backend.stop()
	waitHTTP("http://" + backendAddr + "/")

	moatAddr := freeAddr()
	moatCfg := filepath.Join(dir, "moat.yaml")
	writeFile(moatCfg, fmt.Sprintf(`server:
  https_addr: %q
  http_addr: %q
  http_mode: serve
  internal_addr: %q
  log_level: warn
  max_conns_per_ip: 100000
data_dir: %q
tls: {self_signed: true}
backends:
  app: {url: "http://%s"}
routes:
  - {host: 127.0.0.1, backend: app, public: true}
  - {host: localhost, backend: app, public: true, security_policy: ten-rules}
security_policies:
  # Ten rules and a rate limit that a benign client passes through: nine
  # that do not match (ranges and expressions), then a throttle.
  ten-rules:
    rules:
      - {priority: 1, match: {src_ip_ranges: ["203.0.113.0/24", "2001:db8::/32"]}, action: "deny(403)"}
      - {priority: 2, match: {src_ip_ranges: ["198.51.100.0/24"]}, action: "deny(403)"}
      - {priority: 3, expr: "request.path.startsWith('/admin')", action: "deny(404)"}
      - {priority: 4, expr: "request.headers['user-agent'].contains('sqlmap')", action: "deny(403)"}
      - {priority: 5, expr: "request.method == 'TRACE'", action: "deny(403)"}
      - {priority: 6, expr: "request.query.contains('union select')", action: "deny(403)"}
      - {priority: 7, expr: "inIpRange(origin.ip, '192.0.2.0/24')", action: "deny(403)"}
      - {priority: 8, match: {src_ip_ranges: ["100.64.0.0/10"]}, action: "deny(403)"}
      - {priority: 9, expr: "request.path.endsWith('.php')", action: "deny(404)"}
      - priority: 10
        match: {src_ip_ranges: ["*"]}
        action: throttle
        rate_limit: {count: 1000000000, interval: 1m, key: ip, exceed_action: "deny(429)"}
      - {priority: 2147483647, match: {src_ip_ranges: ["*"]}, action: "deny(403)"}
`, freeAddr(), moatAddr, freeAddr(), filepath.Join(dir, "moat-data"), backendAddr))
	_, moatPort, _ := net.SplitHostPort(moatAddr)
	moat := start("moat", nil, *moatBin, "serve", "-c", moatCfg)
	defer moat.stop()
	waitHTTP("http://" + moatAddr + "/")

	caddyAddr := freeAddr()
	caddyCfg := filepath.Join(dir, "Caddyfile")
	writeFile(caddyCfg, fmt.Sprintf(`{
	admin off
	auto_https off
	persist_config off
}
http://%s {
	bind 127.0.0.1
	reverse_proxy %s
}
`, caddyAddr, backendAddr))
	caddy := start("caddy", []string{"XDG_DATA_HOME=" + dir, "XDG_CONFIG_HOME=" + dir}, *caddyBin, "run", "--config", caddyCfg, "--adapter", "caddyfile")
	defer caddy.stop()
	waitHTTP("http://" + caddyAddr + "/")

	targets := []target{
		{name: "direct", addr: backendAddr, proc: backend},
		{name: "moat", addr: moatAddr, proc: moat},
		{name: "moat+policy", addr: "localhost:" + moatPort, proc: moat},
		{name: "caddy", addr: caddyAddr, proc: caddy},
	}
	fmt.Printf("HTTP: wrk -t1 -c%d -d%s, %d alternating rounds, plain HTTP on loopback, trivial backend\n", *conns, *duration, *rounds)
	results := map[string][]wrkResult{}
	for round := 1; round <= *rounds; round++ {
		for _, t := range targets {
			r := runWrk(*wrkBin, *conns, *duration, "http://"+t.addr+"/")
			fmt.Printf("  round %d %-12s %9.0f req/s  p50 %7.3f ms  p99 %7.3f ms\n", round, t.name, r.rps, r.p50, r.p99)
			results[t.name] = append(results[t.name], r)
		}
	}
	med := map[string]wrkResult{}
	for name, rs := range results {
		med[name] = median(rs)
	}
	fmt.Printf("\nmedian of rounds               req/s      p50 ms   p99 ms   req/s vs direct   req/s vs caddy   p99 vs caddy\n")
	for _, t := range targets {
		m := med[t.name]
		fmt.Printf("  %-25s %9.0f   %7.3f  %7.3f   %8.2f×        %8.2f×        %6.2f×\n", t.name, m.rps, m.p50, m.p99,
			m.rps/med["direct"].rps, m.rps/med["caddy"].rps, m.p99/med["caddy"].p99)
	}

	fmt.Printf("\nWebSocket echo: 8 connections, 5 s each, alternating\n")
	for _, t := range targets {
		fmt.Printf("  %-12s %9.0f round trips/s\n", t.name, echoRate(t.addr, 8, 5*time.Second))
	}
	fmt.Printf("  moat+policy / moat requests/s: %.2f×\n", med["moat+policy"].rps/med["moat"].rps)

	fmt.Printf("\nIdle WebSockets: %d held open through the proxy; growth of the proxy's resident memory\n", *sockets)
	perSocket := map[string]float64{}
	for _, t := range targets {
		if t.name != "moat" && t.name != "caddy" {
			continue
		}
		kib := idleMemory(t, *sockets)
		perSocket[t.name] = kib
		fmt.Printf("  %-6s %7.1f KiB per socket\n", t.name, kib)
	}
	fmt.Printf("  moat / caddy memory per socket: %.2f×\n", perSocket["moat"]/perSocket["caddy"])
}

type target struct {
	name string
	addr string
	proc *process
}

type wrkResult struct{ rps, p50, p99 float64 }

var (
	rpsLine     = regexp.MustCompile(`Requests/sec:\s+([\d.]+)`)
	latencyLine = regexp.MustCompile(`^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$`)
)

func runWrk(bin string, conns int, d time.Duration, url string) wrkResult {
	out, err := exec.Command(bin, "-t1", fmt.Sprintf("-c%d", conns), fmt.Sprintf("-d%ds", int(d.Seconds())), "--latency", url).CombinedOutput()
	if err != nil {
		fatalf("wrk %s: %v\n%s", url, err, out)
	}
	var r wrkResult
	if m := rpsLine.FindSubmatch(out); m != nil {
		r.rps, _ = strconv.ParseFloat(string(m[1]), 64)
	}
	for _, line := range strings.Split(string(out), "\n") {
		m := latencyLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		v, _ := strconv.ParseFloat(m[2], 64)
		switch m[3] {
		case "us":
			v /= 1000
		case "s":
			v *= 1000
		}
		if m[1] == "50" {
			r.p50 = v
		} else {
			r.p99 = v
		}
	}
	if r.rps == 0 {
		fatalf("could not read wrk's output:\n%s", out)
	}
	return r
}

func median(rs []wrkResult) wrkResult {
	pick := func(f func(wrkResult) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		sort.Float64s(v)
		return v[len(v)/2]
	}
	return wrkResult{
		rps: pick(func(r wrkResult) float64 { return r.rps }),
		p50: pick(func(r wrkResult) float64 { return r.p50 }),
		p99: pick(func(r wrkResult) float64 { return r.p99 }),
	}
}

// echoRate runs conns WebSockets that each send a message and wait for its
// echo, back to back, for d; it returns round trips per second.
func echoRate(addr string, conns int, d time.Duration) float64 {
	var total atomic.Int64
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	msg := []byte("streamlit-sized delta 0123456789abcdef")
	for i := 0; i < conns; i++ {
		c, _, err := websocket.Dial(context.Background(), "ws://"+addr+"/ws", nil)
		if err != nil {
			fatalf("dial ws %s: %v", addr, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.CloseNow()
			for ctx.Err() == nil {
				if c.Write(ctx, websocket.MessageText, msg) != nil {
					return
				}
				if _, _, err := c.Read(ctx); err != nil {
					return
				}
				total.Add(1)
			}
		}()
	}
	wg.Wait()
	return float64(total.Load()) / d.Seconds()
}

// idleMemory opens n idle WebSockets through t and returns how much the
// proxy's resident memory grew, per socket, in KiB.
func idleMemory(t target, n int) float64 {
	// Warm up pools and the runtime first so that the growth is the
	// sockets', not the first request's.
	warm := dialMany(t.addr, 100)
	closeAll(warm)
	time.Sleep(time.Second)
	before := rssKiB(t.proc.cmd.Process.Pid)
	conns := dialMany(t.addr, n)
	time.Sleep(3 * time.Second) // let the proxy settle
	after := rssKiB(t.proc.cmd.Process.Pid)
	closeAll(conns)
	time.Sleep(2 * time.Second)
	return float64(after-before) / float64(n)
}

func dialMany(addr string, n int) []*websocket.Conn {
	conns := make([]*websocket.Conn, 0, n)
	for i := 0; i < n; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, _, err := websocket.Dial(ctx, "ws://"+addr+"/ws", nil)
		cancel()
		if err != nil {
			fatalf("dial ws %d/%d via %s: %v", i, n, addr, err)
		}
		conns = append(conns, c)
	}
	return conns
}

func closeAll(conns []*websocket.Conn) {
	for _, c := range conns {
		c.CloseNow()
	}
}

func rssKiB(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		fatalf("%v", err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	fatalf("no VmRSS for pid %d", pid)
	return 0
}

// runBackend is the trivial backend: "ok" for HTTP, echo for WebSockets.
func runBackend(addr string) {
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
		if err != nil {
			return
		}
		defer c.CloseNow()
		ctx := context.Background()
		for {
			typ, msg, err := c.Read(ctx)
			if err != nil {
				return
			}
			if c.Write(ctx, typ, msg) != nil {
				return
			}
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	if err := srv.ListenAndServe(); err != nil {
		fatalf("backend: %v", err)
	}
}

type process struct {
	name string
	cmd  *exec.Cmd
}

// start runs bin with extra environment variables; its stderr goes to a
// log file named in any failure.
func start(name string, env []string, bin string, args ...string) *process {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	log, err := os.CreateTemp("", "moat-bench-"+name+"-*.log")
	if err != nil {
		fatalf("%v", err)
	}
	cmd.Stderr = log
	if err := cmd.Start(); err != nil {
		fatalf("start %s: %v", name, err)
	}
	p := &process{name: name, cmd: cmd}
	started = append(started, p)
	return p
}

// started lists every process the harness runs, so that fatalf (which
// skips deferred calls) stops them too.
var started []*process

func (p *process) stop() {
	if p.cmd.Process != nil {
		p.cmd.Process.Kill()
		p.cmd.Wait()
	}
}

func waitHTTP(url string) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	fatalf("%s did not answer 200 within 30s", url)
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fatalf("%v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

func writeFile(path, content string) {
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		fatalf("%v", err)
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "harness: "+format+"\n", args...)
	for _, p := range started {
		p.stop()
	}
	os.Exit(1)
}
