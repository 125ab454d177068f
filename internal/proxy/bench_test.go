package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/request"
	"github.com/moat-dev/moat/internal/testproc"
)

// BenchmarkProxyHTTP measures small GETs through the proxy; compare with
// BenchmarkDirectHTTP from the same run (the machine is shared, so only
// the ratio means much).
func BenchmarkProxyHTTP(b *testing.B) {
	p := startProxy(b, startBackend(b, trivial()).URL, proxyOpts{})
	benchGET(b, p.URL+"/")
}

// BenchmarkProxyHTTPReplicas is BenchmarkProxyHTTP to a backend with
// three replicas, for signed-in users (each request picks a replica by
// its session id).
func BenchmarkProxyHTTPReplicas(b *testing.B) {
	var urls []string
	for range 3 {
		urls = append(urls, startBackend(b, trivial()).URL)
	}
	p := startProxy(b, "", proxyOpts{cfg: config.Backend{URLs: urls}})
	benchGET(b, p.URL+"/?session=a-signed-in-session-id-hash")
}

// BenchmarkDirectHTTP is BenchmarkProxyHTTP without the proxy.
func BenchmarkDirectHTTP(b *testing.B) {
	benchGET(b, startBackend(b, trivial()).URL+"/")
}

func trivial() http.Handler {
	payload := []byte("hello, world\n")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(payload)
	})
}

func benchGET(b *testing.B, url string) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxIdleConns: 256}}
	b.Cleanup(client.CloseIdleConnections)
	b.ReportAllocs()
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}

func BenchmarkProxyWebSocketEcho(b *testing.B) {
	wb := startWSBackend(b)
	p := startProxy(b, wb.url, proxyOpts{})
	c := dialWS(b, p, "/")
	msg := []byte("tick")
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := c.Write(ctx, websocket.MessageText, msg); err != nil {
			b.Fatal(err)
		}
		if _, _, err := c.Read(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// peerEnv, when set, makes the test binary a WebSocket peer process (echo
// backend plus clients) for TestIdleProxiedWebSocketMemory, so that the
// measuring process holds only the proxy.
const peerEnv = "MOAT_PROXY_TEST_WS_PEER"

func TestMain(m *testing.M) {
	if os.Getenv(peerEnv) == "1" {
		runPeer()
		return
	}
	os.Exit(m.Run())
}

// runPeer serves a WebSocket echo backend, prints its URL, reads "URL N"
// from stdin, opens N sockets to URL (each echoes once), prints "ready"
// and holds them until stdin closes.
func runPeer() {
	srv := http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
		if err != nil {
			return
		}
		ctx := context.Background()
		for {
			typ, msg, err := c.Read(ctx)
			if err != nil {
				return
			}
			_ = c.Write(ctx, typ, msg)
		}
	})}
	l, err := netListen()
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	go func() { _ = srv.Serve(l) }()
	fmt.Println("http://" + l.Addr().String())

	in := bufio.NewScanner(os.Stdin)
	if !in.Scan() {
		os.Exit(1)
	}
	fields := strings.Fields(in.Text())
	n, _ := strconv.Atoi(fields[1])
	url := "ws" + strings.TrimPrefix(fields[0], "http") + "/"
	conns := make([]*websocket.Conn, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	var failed sync.Once
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, _, err := websocket.Dial(ctx, url, nil)
			if err == nil {
				err = c.Write(ctx, websocket.MessageText, []byte("hi"))
			}
			if err == nil {
				_, _, err = c.Read(ctx)
			}
			if err != nil {
				failed.Do(func() { fmt.Println("error", err) })
				return
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	fmt.Println("ready")
	for in.Scan() {
	}
	os.Exit(0)
}

// TestIdleProxiedWebSocketMemory opens many idle WebSockets through the
// proxy (peers in a child process) and measures the growth of the
// proxy process's HeapInuse+StackInuse per socket. The target is at most
// 50 KiB (Caddy holds about 100 KiB). MOAT_WS_MEMORY_N sets the count
// (default 1000).
func TestIdleProxiedWebSocketMemory(t *testing.T) {
	n := 1000
	if v, err := strconv.Atoi(os.Getenv("MOAT_WS_MEMORY_N")); err == nil && v > 0 {
		n = v
	}
	peers := testproc.Start(t, peerEnv+"=1")
	backend := peers.Line(t)
	if !strings.HasPrefix(backend, "http://") {
		t.Fatalf("peer process said %q", backend)
	}
	p := startProxy(t, backend, proxyOpts{})

	before, rssBefore := inUse(), rss()
	peers.Send(t, fmt.Sprintf("%s %d", p.URL, n))
	if got := peers.Line(t); got != "ready" {
		t.Fatalf("peer process said %q", got)
	}
	if got := p.sockets.Count(); got != n {
		t.Fatalf("%d sockets open, want %d", got, n)
	}
	time.Sleep(200 * time.Millisecond) // let every pump settle into its idle read
	after, rssAfter := inUse(), rss()
	per := float64(int64(after)-int64(before)) / float64(n) / 1024
	t.Logf("idle proxied WebSockets: %d; growth per socket: HeapInuse+StackInuse %.1f KiB, resident set %.1f KiB",
		n, per, float64(rssAfter-rssBefore)/float64(n)/1024)
	if per > 50 {
		t.Errorf("%.1f KiB per idle socket, target at most 50 KiB", per)
	}
	p.sockets.CloseAll(1001, "test over")
}

func inUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse
}

// rss returns the process's resident set size in bytes (Linux), or 0.
func rss() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

// BenchmarkPickReplica measures choosing one of three replicas, for a
// signed-in session and for a visitor with an affinity cookie.
func BenchmarkPickReplica(b *testing.B) {
	be, err := New("app", &config.Backend{URLs: []string{"http://10.0.0.1:8501", "http://10.0.0.2:8501", "http://10.0.0.3:8501"}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("session", func(b *testing.B) {
		r := httptest.NewRequest("GET", "/", nil)
		info := &request.Info{User: request.User{SessionID: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}}
		b.ReportAllocs()
		for b.Loop() {
			be.pick(r, info)
		}
	})
	b.Run("cookie", func(b *testing.B) {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Cookie", "_streamlit_xsrf=abc; "+AffinityCookie+"=AAAAAAAAAAAAAAAAAAAAAA")
		info := &request.Info{}
		b.ReportAllocs()
		for b.Loop() {
			be.pick(r, info)
		}
	})
}
