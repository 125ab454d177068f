package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/moat-dev/moat/internal/config"
)

// rawBackend accepts connections and hands each to serve, for answers a
// well-behaved net/http server would never give. It counts connections.
func rawBackend(t *testing.T, serve func(c net.Conn, br *bufio.Reader)) (string, *atomic.Int32) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var conns atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer c.Close()
				serve(c, bufio.NewReader(c))
			}()
		}
	}()
	return "http://" + l.Addr().String(), &conns
}

// readRequest reads one request from br and discards it.
func readRequest(br *bufio.Reader) bool {
	req, err := http.ReadRequest(br)
	if err != nil {
		return false
	}
	io.Copy(io.Discard, req.Body)
	return true
}

func getBody(t *testing.T, p *testProxy, path string) (int, string) {
	t.Helper()
	resp, err := p.Client().Get(p.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestBodilessRequestsShareOneKeptAliveBackendConnection(t *testing.T) {
	var conns atomic.Int32
	// The hook is set before the server starts: setting it on a running
	// server raced with its accept loop.
	backend := httptest.NewUnstartedServer(trivial())
	backend.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	backend.Start()
	t.Cleanup(backend.Close)
	p := startProxy(t, backend.URL, proxyOpts{})
	for i := 0; i < 20; i++ {
		if code, body := getBody(t, p, "/"); code != 200 || body != "hello, world\n" {
			t.Fatalf("request %d: %d %q", i, code, body)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("20 sequential GETs used %d backend connections, want 1", n)
	}
}

func TestAConnectionTheBackendClosedWhileIdleIsRetriedOnANewOne(t *testing.T) {
	// Each connection answers one request with keep-alive, then closes.
	url, conns := rawBackend(t, func(c net.Conn, br *bufio.Reader) {
		if readRequest(br) {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	p := startProxy(t, url, proxyOpts{})
	for i := 0; i < 3; i++ {
		if code, body := getBody(t, p, "/"); code != 200 || body != "ok" {
			t.Fatalf("request %d: %d %q, want 200 ok", i, code, body)
		}
	}
	if n := conns.Load(); n != 3 {
		t.Errorf("backend saw %d connections, want 3 (one per request)", n)
	}
}

// A backend that sends a second answer nobody asked for must not have it
// read as the answer to the next request, which may be another user's.
func TestUnsolicitedBytesFromTheBackendAreNeverTheNextRequestsAnswer(t *testing.T) {
	url, _ := rawBackend(t, func(c net.Conn, br *bufio.Reader) {
		for readRequest(br) {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nmine"+
				"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nEVIL!")
		}
	})
	p := startProxy(t, url, proxyOpts{})
	for i := 0; i < 5; i++ {
		if code, body := getBody(t, p, "/"); code != 200 || body != "mine" {
			t.Fatalf("request %d: %d %q, want 200 mine", i, code, body)
		}
	}
}

func TestAnOversizedBackendResponseHeaderGives502(t *testing.T) {
	url, _ := rawBackend(t, func(c net.Conn, br *bufio.Reader) {
		if readRequest(br) {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Big: "+strings.Repeat("a", 2<<20)+"\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	p := startProxy(t, url, proxyOpts{})
	if code, _ := getBody(t, p, "/"); code != http.StatusBadGateway {
		t.Errorf("status %d, want 502", code)
	}
}

func TestInformationalAnswersBeforeTheRealOneAreSkipped(t *testing.T) {
	url, _ := rawBackend(t, func(c net.Conn, br *bufio.Reader) {
		if readRequest(br) {
			io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"+
				"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	p := startProxy(t, url, proxyOpts{})
	if code, body := getBody(t, p, "/"); code != 200 || body != "ok" {
		t.Errorf("got %d %q, want 200 ok", code, body)
	}
}

func TestRequestsWithABodyStillReachTheBackendWhole(t *testing.T) {
	backend := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, r.Method+" "+string(b))
	}))
	p := startProxy(t, backend.URL, proxyOpts{cfg: config.Backend{}})
	for _, method := range []string{"POST", "PUT", "PATCH", "DELETE"} {
		req, _ := http.NewRequest(method, p.URL+"/", strings.NewReader("payload"))
		resp, err := p.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != method+" payload" {
			t.Errorf("%s: backend answered %q", method, b)
		}
	}
}
