//go:build linux

package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// An idle socket gives up both its goroutines and waits in the poller; a
// frame from either side wakes the direction it travels, and the socket
// goes on as if it had never slept.
func TestAnIdleSocketParksAndWakesForFramesBothWays(t *testing.T) {
	wb := startWSBackend(t)
	p := startProxy(t, wb.url, proxyOpts{})
	c := dialWS(t, p, "/")
	for i := range 3 {
		eventually(t, "both directions to park", func() bool { return p.sockets.Parked() == 2 })
		// The client's frame wakes the way up, the backend's echo the
		// way down.
		echo(t, c, websocket.MessageText, []byte{byte('a' + i)})
	}
}

// A frame larger than the copy buffer, trickling in slower than the park
// deadline, is not cut at the deadline: only a wait for a frame's first
// byte parks.
func TestADeadlineInsideAFrameDoesNotCutIt(t *testing.T) {
	wb := startWSBackend(t)
	p := startProxy(t, wb.url, proxyOpts{sockets: &Sockets{ParkAfter: time.Millisecond}})
	c := dialWS(t, p, "/")
	msg := make([]byte, 3<<20)
	_, _ = rand.Read(msg)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	w, err := c.Writer(ctx, websocket.MessageBinary)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		for off := 0; off < len(msg); off += 256 << 10 {
			if _, err := w.Write(msg[off : off+256<<10]); err != nil {
				done <- err
				return
			}
			time.Sleep(3 * time.Millisecond) // past the park deadline
		}
		done <- w.Close()
	}()
	typ, got, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read the echo: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("write: %v", err)
	}
	if typ != websocket.MessageBinary || !bytes.Equal(got, msg) {
		t.Fatalf("a %d-byte message came back as %d bytes", len(msg), len(got))
	}
}

// Closing parked sockets (shutdown, sign-out) still reaches both ends at a
// frame boundary, and nothing of them stays in the poller.
func TestCloseAllReachesParkedSockets(t *testing.T) {
	wb := startWSBackend(t)
	p := startProxy(t, wb.url, proxyOpts{})
	a, b := dialWS(t, p, "/"), dialWS(t, p, "/")
	echo(t, a, websocket.MessageText, []byte("a"))
	echo(t, b, websocket.MessageText, []byte("b"))
	eventually(t, "every direction to park", func() bool { return p.sockets.Parked() == 4 })
	go p.sockets.CloseAll(1001, "shutting down")
	expectClose(t, a, websocket.StatusGoingAway, "shutting down", 3*time.Second)
	expectClose(t, b, websocket.StatusGoingAway, "shutting down", 3*time.Second)
	for range 2 {
		if got := <-wb.closed; got != websocket.StatusGoingAway {
			t.Fatalf("backend saw close %d, want 1001", got)
		}
	}
	eventually(t, "the registry and the poller to empty", func() bool { return p.sockets.Count() == 0 && p.sockets.Parked() == 0 })
}

// A client that goes away while its socket is parked wakes it (the hang-up
// is readable): the socket is torn down and forgotten.
func TestAClientLeavingAParkedSocketTearsItDown(t *testing.T) {
	wb := startWSBackend(t)
	p := startProxy(t, wb.url, proxyOpts{})
	c := dialWS(t, p, "/")
	echo(t, c, websocket.MessageText, []byte("hi"))
	eventually(t, "both directions to park", func() bool { return p.sockets.Parked() == 2 })
	c.CloseNow()
	eventually(t, "the registry and the poller to empty", func() bool { return p.sockets.Count() == 0 && p.sockets.Parked() == 0 })
}

// Frames sent back to back arrive at the proxy several to a read, and
// split anywhere: each still reaches the other side whole and in order.
func TestFramesBackToBackPassWholeAndInOrder(t *testing.T) {
	wb := startWSBackend(t)
	p := startProxy(t, wb.url, proxyOpts{})
	c := dialWS(t, p, "/")
	msgs := make([][]byte, 300)
	for i := range msgs {
		// Sizes around the read-ahead buffer and the 16- and 64-bit
		// length encodings.
		sizes := []int{0, 1, 125, 126, 127, 4000, readAheadSize - 14, readAheadSize, readAheadSize + 1, 65535, 65536, 70000}
		msgs[i] = make([]byte, sizes[i%len(sizes)])
		_, _ = rand.Read(msgs[i])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		for _, m := range msgs {
			if err := c.Write(ctx, websocket.MessageBinary, m); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	for i, want := range msgs {
		_, got, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("read echo %d: %v", i, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("echo %d: %d bytes came back as %d bytes, or changed", i, len(want), len(got))
		}
	}
	if err := <-errc; err != nil {
		t.Fatalf("write: %v", err)
	}
}
