package bodylimit

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// result is what a test handler saw of its request body.
type result struct {
	n        int64
	err      error
	ctxErr   error
	recorded error
}

// startServer runs a real server whose handler reads its request body
// under l and reports what it saw; after the body it waits hold (as an app
// still working on an upload would) and notes whether the request's context
// survived. It answers with Status for a body cut short.
func startServer(t *testing.T, l Limits, hold time.Duration, h2 bool) (*httptest.Server, chan result) {
	t.Helper()
	results := make(chan result, 1)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r = Wrap(w, r, l)
		n, err := io.Copy(io.Discard, r.Body)
		res := result{n: n, err: err, recorded: Err(r.Context())}
		if err == nil && hold > 0 {
			select {
			case <-r.Context().Done():
			case <-time.After(hold):
			}
		}
		res.ctxErr = r.Context().Err()
		results <- res
		if status, key, ok := Status(err); ok {
			http.Error(w, key, status)
			return
		}
		fmt.Fprintf(w, "%d", n)
	}))
	if h2 {
		srv.EnableHTTP2 = true
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return srv, results
}

func wait(t *testing.T, results chan result) result {
	t.Helper()
	select {
	case r := <-results:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("the handler did not finish reading within 10s")
		return result{}
	}
}

// slowClient sends a request declaring a body of size bytes over HTTP/1.1,
// then one byte every gap until the server answers or closes. It returns
// how many body bytes it sent and the status line it got, if any.
func slowClient(t *testing.T, addr string, size int, gap time.Duration) (sent int, status string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", size)
	answered := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(conn).ReadString('\n')
		answered <- strings.TrimSpace(line)
	}()
	tick := time.NewTicker(gap)
	defer tick.Stop()
	for sent < size {
		select {
		case status = <-answered:
			return sent, status
		case <-tick.C:
		}
		if _, err := conn.Write([]byte{'x'}); err != nil {
			break
		}
		sent++
	}
	return sent, <-answered
}

func TestABodyThatStallsIsCut(t *testing.T) {
	srv, results := startServer(t, Limits{Stall: 300 * time.Millisecond}, 0, false)
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nten bytes!")
	got := wait(t, results)
	if !errors.Is(got.err, ErrTooSlow) || got.n != 10 || !errors.Is(got.recorded, ErrTooSlow) {
		t.Fatalf("handler read %d bytes, then %v (recorded %v); want 10 and ErrTooSlow", got.n, got.err, got.recorded)
	}
	line, _ := bufio.NewReader(conn).ReadString('\n')
	if !strings.Contains(line, "408") {
		t.Errorf("client got %q, want 408", line)
	}
}

// The finding itself: one byte every so often keeps a stall timeout happy
// but not the minimum rate.
func TestABodyBelowTheMinimumRateIsCut(t *testing.T) {
	srv, results := startServer(t, Limits{Stall: 500 * time.Millisecond, MinRate: 50}, 0, false)
	const size = 100 // 10 s at one byte per 100 ms
	sent, status := slowClient(t, srv.Listener.Addr().String(), size, 100*time.Millisecond)
	got := wait(t, results)
	if !errors.Is(got.err, ErrTooSlow) {
		t.Fatalf("handler read %d bytes, then %v; want ErrTooSlow", got.n, got.err)
	}
	if sent >= size || !strings.Contains(status, "408") {
		t.Errorf("client sent %d of %d bytes and got %q; want the body cut with 408", sent, size, status)
	}
}

func TestABodyOverMaxBytesIsCutWith413(t *testing.T) {
	srv, results := startServer(t, Limits{MaxBytes: 1000, Stall: time.Second, MinRate: 1}, 0, false)
	resp, err := http.Post(srv.URL, "text/plain", io.MultiReader(strings.NewReader(strings.Repeat("x", 5000))))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	got := wait(t, results)
	var tooLarge *http.MaxBytesError
	if !errors.As(got.err, &tooLarge) || !errors.As(got.recorded, &tooLarge) || resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("handler saw %v (recorded %v), client got %d; want MaxBytesError and 413", got.err, got.recorded, resp.StatusCode)
	}
}

// A fast body passes whole, and once it is in, the read deadline is lifted:
// an app that takes longer than the stall timeout to answer keeps its
// request.
func TestAFastBodyPassesAndLeavesNoDeadlineBehind(t *testing.T) {
	for _, tc := range []struct {
		name    string
		h2      bool
		chunked bool
	}{
		{"HTTP/1.1 with a length", false, false},
		{"HTTP/1.1 chunked", false, true},
		{"HTTP/2 with a length", true, false},
		{"HTTP/2 without a length", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const stall = 200 * time.Millisecond
			srv, results := startServer(t, Limits{Stall: stall, MinRate: 1 << 20}, 3*stall, tc.h2)
			const size = 8 << 20
			var body io.Reader = bytes.NewReader(bytes.Repeat([]byte("x"), size))
			if tc.chunked {
				body = io.MultiReader(body)
			}
			resp, err := srv.Client().Post(srv.URL, "application/octet-stream", body)
			if err != nil {
				t.Fatal(err)
			}
			answer, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			got := wait(t, results)
			if got.err != nil || got.n != size || got.ctxErr != nil {
				t.Fatalf("handler read %d bytes with %v, context %v; want %d, no error, a live context", got.n, got.err, got.ctxErr, size)
			}
			if resp.StatusCode != 200 || string(answer) != fmt.Sprint(size) {
				t.Errorf("client got %d %q", resp.StatusCode, answer)
			}
			if tc.h2 && resp.ProtoMajor != 2 {
				t.Errorf("protocol %s, want HTTP/2", resp.Proto)
			}
		})
	}
}

func TestAStalledHTTP2BodyIsCut(t *testing.T) {
	srv, results := startServer(t, Limits{Stall: 300 * time.Millisecond, MinRate: 1}, 0, true)
	pr, pw := io.Pipe()
	t.Cleanup(func() { pw.Close() })
	go func() { pw.Write([]byte("a few bytes, then nothing")) }()
	req, _ := http.NewRequest(http.MethodPost, srv.URL, pr)
	c := srv.Client()
	c.Transport.(*http.Transport).TLSClientConfig = &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}}
	resp, err := c.Do(req)
	if err == nil {
		resp.Body.Close()
	}
	got := wait(t, results)
	if !errors.Is(got.err, ErrTooSlow) {
		t.Fatalf("handler read %d bytes, then %v; want ErrTooSlow", got.n, got.err)
	}
	if err == nil && resp.StatusCode != http.StatusRequestTimeout {
		t.Errorf("client got %d, want 408", resp.StatusCode)
	}
}

func TestStatus(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{fmt.Errorf("read: %w", &http.MaxBytesError{Limit: 1}), 413},
		{fmt.Errorf("read: %w", ErrTooSlow), 408},
		{io.ErrUnexpectedEOF, 0},
		{nil, 0},
	} {
		if got, _, _ := Status(tc.err); got != tc.want {
			t.Errorf("Status(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}
