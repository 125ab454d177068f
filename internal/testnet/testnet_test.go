package testnet

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestAFreeAddrRefusesUntilSomeoneListensThere(t *testing.T) {
	addr := FreeAddr(t)
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatalf("%s accepted a connection before anyone listened", addr)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on the free address: %v", err)
	}
	l.Close()
}

func TestWaitOKWaitsForTheFirst200(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	if err := WaitOK(nil, srv.URL, 10*time.Second, nil); err != nil || calls.Load() != 3 {
		t.Fatalf("err %v after %d requests, want nil after 3", err, calls.Load())
	}
	if err := WaitListening(srv.Listener.Addr().String(), 10*time.Second, nil); err != nil {
		t.Fatal(err)
	}
}

func TestWaitsEndWhenTheProcessHasExitedOrTheLimitPasses(t *testing.T) {
	addr := FreeAddr(t)
	exited := make(chan struct{})
	close(exited)
	if err := WaitListening(addr, time.Minute, exited); err == nil || !strings.Contains(err.Error(), "exited") {
		t.Errorf("with the process gone: %v", err)
	}
	if err := WaitOK(nil, "http://"+addr+"/", 50*time.Millisecond, nil); err == nil || !strings.Contains(err.Error(), "within 50ms") {
		t.Errorf("with nothing listening: %v", err)
	}
}

func TestAPinnedClientReachesItsServerForAnyHostWithoutFollowingRedirects(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Host", r.Host)
		w.Header().Set("X-From", r.RemoteAddr)
		http.Redirect(w, r, "/elsewhere", http.StatusSeeOther)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	for _, p := range []Pin{
		{Addr: srv.Listener.Addr().String()},
		{Addr: srv.Listener.Addr().String(), From: "127.0.0.2", HTTP2: true},
	} {
		resp, err := p.Client().Get("https://dash.example.com/")
		if err != nil {
			t.Fatalf("%+v: %v", p, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("X-Host") != "dash.example.com" {
			t.Errorf("%+v: %d with host %q, want the redirect itself from dash.example.com", p, resp.StatusCode, resp.Header.Get("X-Host"))
		}
		if want := p.From; want != "" && !strings.HasPrefix(resp.Header.Get("X-From"), want+":") {
			t.Errorf("%+v: the server saw %s, want %s", p, resp.Header.Get("X-From"), want)
		}
		if want := map[bool]int{false: 1, true: 2}[p.HTTP2]; resp.ProtoMajor != want {
			t.Errorf("%+v: %s, want HTTP/%d", p, resp.Proto, want)
		}
	}
}
