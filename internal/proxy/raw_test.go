package proxy

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// acceptKey computes Sec-WebSocket-Accept (RFC 6455 section 4.2.2).
func acceptKey(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

// frame builds a single-frame message; masked frames use key.
func frame(opcode byte, payload []byte, key []byte) []byte {
	f := []byte{0x80 | opcode}
	mask := byte(0)
	if key != nil {
		mask = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		f = append(f, mask|byte(n))
	case n < 1<<16:
		f = append(f, mask|126, byte(n>>8), byte(n))
	default:
		f = append(f, mask|127)
		f = binary.BigEndian.AppendUint64(f, uint64(n))
	}
	if key == nil {
		return append(f, payload...)
	}
	f = append(f, key...)
	for i, b := range payload {
		f = append(f, b^key[i%4])
	}
	return f
}

// readFrame reads one unmasked frame.
func readFrame(t *testing.T, r io.Reader) (byte, []byte) {
	t.Helper()
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		t.Fatalf("read frame: %v", err)
	}
	n := int(h[1] & 0x7f)
	if n >= 126 {
		t.Fatalf("test reader handles short frames only")
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		t.Fatalf("read payload: %v", err)
	}
	return h[0] & 0x0f, p
}

func TestAMessageTheBackendSendsWithItsHandshakeIsNotLost(t *testing.T) {
	backend := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		// 101 and the first frame in one write, so the proxy reads both at once.
		msg := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Accept: " + acceptKey(r.Header.Get("Sec-WebSocket-Key")) + "\r\n\r\n"
		_, _ = conn.Write(append([]byte(msg), frame(0x1, []byte("welcome"), nil)...))
		_, _ = io.Copy(io.Discard, conn)
	}))
	p := startProxy(t, backend.URL, proxyOpts{})
	c := dialWS(t, p, "/")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, got, err := c.Read(ctx)
	if err != nil || string(got) != "welcome" {
		t.Fatalf("got %q, %v", got, err)
	}
}

// rawUpgrade opens a TCP connection to p and writes a WebSocket upgrade
// request followed by extra bytes in the same write.
func rawUpgrade(t *testing.T, p *testProxy, extra []byte) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(p.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	req := "GET / HTTP/1.1\r\nHost: " + strings.TrimPrefix(p.URL, "http://") + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
	if _, err := conn.Write(append([]byte(req), extra...)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-Websocket-Accept") != acceptKey("dGhlIHNhbXBsZSBub25jZQ==") {
		t.Fatalf("handshake answered %d %v", resp.StatusCode, resp.Header)
	}
	return conn, br
}

func TestAFrameTheClientSendsWithItsHandshakeIsNotLost(t *testing.T) {
	wb := startWSBackend(t)
	p := startProxy(t, wb.url, proxyOpts{})
	// No Origin header: coder/websocket accepts a request without one.
	_, br := rawUpgrade(t, p, frame(0x1, []byte("early"), []byte{1, 2, 3, 4}))
	op, got := readFrame(t, br)
	if op != 0x1 || string(got) != "early" {
		t.Fatalf("echo %d %q", op, got)
	}
}

func TestAnUnmaskedClientFrameClosesWith1002(t *testing.T) {
	wb := startWSBackend(t)
	p := startProxy(t, wb.url, proxyOpts{})
	conn, br := rawUpgrade(t, p, nil)
	if _, err := conn.Write(frame(0x1, []byte("bare"), nil)); err != nil {
		t.Fatal(err)
	}
	op, got := readFrame(t, br)
	if op != opClose || len(got) < 2 || binary.BigEndian.Uint16(got) != 1002 {
		t.Fatalf("got opcode %d payload %q, want Close 1002", op, got)
	}
	if code := <-wb.closed; code != websocket.StatusProtocolError {
		t.Fatalf("backend saw %d", code)
	}
}
