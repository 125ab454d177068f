package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// result is one measured run.
type result struct{ rps, p50, p99 float64 }

var (
	rpsLine     = regexp.MustCompile(`Requests/sec:\s+([\d.]+)`)
	latencyLine = regexp.MustCompile(`^\s+(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$`)
	non2xxLine  = regexp.MustCompile(`Non-2xx or 3xx responses:\s+(\d+)`)
	errorsLine  = regexp.MustCompile(`Socket errors:.*`)
)

// wrk runs wrk for d and parses requests/s and the 50th and 99th latency
// percentiles. Any non-2xx answer fails the run: a target that refuses the
// load is not measured.
func wrk(bin string, conns int, d time.Duration, url string, headers []string) result {
	out := wrkRaw(bin, conns, d, url, headers, "")
	r := parseWrk(out)
	if m := non2xxLine.FindStringSubmatch(out); m != nil {
		fatalf("wrk %s: %s answers were not 2xx:\n%s", url, m[1], out)
	}
	return r
}

func wrkRaw(bin string, conns int, d time.Duration, url string, headers []string, script string) string {
	args := []string{"-t1", fmt.Sprintf("-c%d", conns), fmt.Sprintf("-d%ds", max(1, int(d.Seconds()))), "--latency"}
	for _, h := range headers {
		args = append(args, "-H", h)
	}
	if script != "" {
		args = append(args, "-s", script)
	}
	args = append(args, url)
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		fatalf("wrk %s: %v\n%s", url, err, out)
	}
	return string(out)
}

func parseWrk(out string) result {
	var r result
	if m := rpsLine.FindStringSubmatch(out); m != nil {
		r.rps, _ = strconv.ParseFloat(m[1], 64)
	}
	for _, line := range strings.Split(out, "\n") {
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

var (
	h2ReqLine = regexp.MustCompile(`finished in [\d.]+m?s, ([\d.]+) req/s`)
	h2Status  = regexp.MustCompile(`status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx`)
	h2Counts  = regexp.MustCompile(`requests: \d+ total, \d+ started, (\d+) done, \d+ succeeded, (\d+) failed, (\d+) errored`)
)

// h2load runs h2load over HTTPS with HTTP/2 for d and returns requests/s.
func h2load(bin string, clients, streams int, d time.Duration, url string) result {
	args := []string{"-c", strconv.Itoa(clients), "-m", strconv.Itoa(streams), "-t", "1",
		"-D", strconv.Itoa(max(1, int(d.Seconds()))), url}
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		fatalf("h2load %s: %v\n%s", url, err, out)
	}
	var r result
	m := h2ReqLine.FindSubmatch(out)
	s := h2Status.FindSubmatch(out)
	if m == nil || s == nil {
		fatalf("could not read h2load's output:\n%s", out)
	}
	if string(s[3]) != "0" || string(s[4]) != "0" || string(s[1]) == "0" {
		fatalf("h2load %s: not every answer was 2xx:\n%s", url, out)
	}
	// A server that closes connections early finishes with fewer requests
	// than the clients could have sent; only a run without failures counts.
	if c := h2Counts.FindSubmatch(out); c == nil || string(c[2]) != "0" || string(c[3]) != "0" {
		fatalf("h2load %s: failed or errored requests:\n%s", url, out)
	}
	r.rps, _ = strconv.ParseFloat(string(m[1]), 64)
	return r
}

// echoRate runs conns WebSockets that each send a message and wait for its
// echo, back to back, for d; it returns round trips per second.
func echoRate(addr string, conns int, d time.Duration) float64 {
	var total atomic.Int64
	var wg sync.WaitGroup
	msg := []byte("streamlit-sized delta 0123456789abcdef")
	clients := make([]*websocket.Conn, conns)
	for i := range clients {
		clients[i] = dialWS(addr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for _, c := range clients {
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

func dialWS(addr string) *websocket.Conn {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+addr+"/ws", nil)
	if err != nil {
		fatalf("dial ws via %s: %v", addr, err)
	}
	return c
}

// idleMemory opens n idle WebSockets through p and returns how much its
// resident memory (with its children's) grew, per socket, in KiB.
func idleMemory(p *process, addr string, n int, settle time.Duration) float64 {
	// Warm up pools and the runtime first, so that the growth is the
	// sockets', not the first request's.
	closeAll(dialMany(addr, 100))
	time.Sleep(settle)
	before := p.rssKiB()
	conns := dialMany(addr, n)
	time.Sleep(settle) // let the proxy settle
	after := p.rssKiB()
	closeAll(conns)
	time.Sleep(settle)
	return float64(after-before) / float64(n)
}

func dialMany(addr string, n int) []*websocket.Conn {
	conns := make([]*websocket.Conn, 0, n)
	for i := 0; i < n; i++ {
		conns = append(conns, dialWS(addr))
	}
	return conns
}

func closeAll(conns []*websocket.Conn) {
	for _, c := range conns {
		c.CloseNow()
	}
}

// floodScript makes wrk post wrong passwords to moat's login form with a
// valid CSRF token and cookie (from one visit to the login page), as a
// password-guessing tool from one address does: each attempt reaches the
// login throttle, which soon answers 429. NAVIGATE is empty for a tool, or
// the headers of a browser's page navigation, which a flood can forge to be
// answered with the whole login page.
const floodScript = `wrk.method = "POST"
wrk.body = "csrf=TOKEN&email=victim%40moat.test&password=guess&return_to=%2F"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Origin"] = "ORIGIN"
wrk.headers["Cookie"] = "COOKIE"
NAVIGATE`

const navigateHeaders = `wrk.headers["Accept"] = "text/html"
wrk.headers["Sec-Fetch-Mode"] = "navigate"
`

// flooded measures url under wrk while another wrk runs script against
// loginURL, and returns the measured result and the flood's attempts per
// second.
func flooded(o options, url string, headers []string, loginURL, script string) (result, float64) {
	var wg sync.WaitGroup
	var floodOut string
	wg.Add(1)
	go func() {
		defer wg.Done()
		// The flood starts first and ends last, so it covers the whole run.
		floodOut = wrkRaw(o.bin["wrk"], o.floodConns, o.duration+time.Second, loginURL, nil, script)
	}()
	time.Sleep(300 * time.Millisecond)
	r := wrk(o.bin["wrk"], o.conns, o.duration, url, headers)
	wg.Wait()
	return r, parseWrk(floodOut).rps
}

// startupTime starts moat on a fresh data directory (as Cloud Run starts
// an instance from zero) and returns the time from exec to its first 200
// on the public route.
func startupTime(o options, withWAF bool, i int) time.Duration {
	dir := filepath.Join(o.dir, fmt.Sprintf("startup-%v-%d", withWAF, i))
	os.MkdirAll(dir, 0o700)
	httpAddr := freeAddr()
	cfg := filepath.Join(dir, "moat.yaml")
	writeFile(cfg, moatConfig(freeAddr(), httpAddr, freeAddr(), filepath.Join(dir, "data"), o.backendAddr, withWAF))
	url := "http://" + httpAddr + "/"
	if withWAF {
		url = "http://" + httpAddr + browserPath
	}
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	t0 := time.Now()
	p := start("moat-startup", nil, o.bin["moat"], "serve", "-c", cfg)
	defer p.stop()
	for time.Since(t0) < 20*time.Second {
		// A dial to a port nobody listens on fails at once on loopback;
		// poll every half millisecond.
		if c, err := net.DialTimeout("tcp", httpAddr, 100*time.Millisecond); err == nil {
			c.Close()
			req, _ := http.NewRequest(http.MethodGet, url, nil)
			if withWAF {
				req.Host = "waf.test"
				for _, h := range browserHeaders {
					k, v, _ := strings.Cut(h, ": ")
					req.Header.Set(k, v)
				}
			}
			if resp, err := client.Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return time.Since(t0)
				}
			}
		}
		if p.cmd.ProcessState != nil {
			break
		}
		time.Sleep(500 * time.Microsecond)
	}
	fatalf("moat did not answer 200 within 20s of starting; log %s", p.log)
	return 0
}

// profile fetches a CPU profile and an allocation profile (delta) of
// moat over d from its internal listener into dir/name.{cpu,allocs}.pprof.
func profile(internal, dir, name string, d time.Duration) func() {
	var wg sync.WaitGroup
	secs := strconv.Itoa(max(1, int(d.Seconds())))
	for kind, path := range map[string]string{"cpu": "/debug/pprof/profile?seconds=" + secs, "allocs": "/debug/pprof/allocs?seconds=" + secs} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := (&http.Client{Timeout: d + 30*time.Second}).Get("http://" + internal + path)
			if err != nil {
				fmt.Fprintf(os.Stderr, "harness: %s profile: %v\n", kind, err)
				return
			}
			defer resp.Body.Close()
			f, err := os.Create(filepath.Join(dir, name+"."+kind+".pprof"))
			if err != nil {
				return
			}
			io.Copy(f, resp.Body)
			f.Close()
		}()
	}
	return wg.Wait
}
