package clientip

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func v2Header(cmd, fam byte, body []byte) []byte {
	b := append([]byte{}, v2Signature...)
	b = append(b, 0x20|cmd, fam)
	b = binary.BigEndian.AppendUint16(b, uint16(len(body)))
	return append(b, body...)
}

func v2IPv4(src string, port uint16) []byte {
	body := netip.MustParseAddr(src).AsSlice()
	body = append(body, 127, 0, 0, 1)
	body = binary.BigEndian.AppendUint16(body, port)
	body = binary.BigEndian.AppendUint16(body, 443)
	return v2Header(1, 0x11, body)
}

func v2IPv6(src string, port uint16) []byte {
	body := netip.MustParseAddr(src).AsSlice()
	body = append(body, netip.IPv6Loopback().AsSlice()...)
	body = binary.BigEndian.AppendUint16(body, port)
	body = binary.BigEndian.AppendUint16(body, 443)
	body = append(body, 0x04, 0, 1, 'x') // a TLV, skipped
	return v2Header(1, 0x21, body)
}

var headerCases = []struct {
	name    string
	in      []byte
	want    string // "" for no address
	wantErr bool
	rest    string
}{
	{name: "v1 TCP4 names the source", in: []byte("PROXY TCP4 203.0.113.9 127.0.0.1 5555 443\r\nGET"), want: "203.0.113.9:5555", rest: "GET"},
	{name: "v1 TCP6 names the source", in: []byte("PROXY TCP6 2001:db8::9 ::1 5555 443\r\nGET"), want: "[2001:db8::9]:5555", rest: "GET"},
	{name: "v1 UNKNOWN keeps the peer", in: []byte("PROXY UNKNOWN\r\nGET"), rest: "GET"},
	{name: "v1 without CRLF is malformed", in: []byte("PROXY TCP4 203.0.113.9 127.0.0.1 5555 443\n"), wantErr: true},
	{name: "v1 with a family mismatch is malformed", in: []byte("PROXY TCP4 2001:db8::9 ::1 5555 443\r\n"), wantErr: true},
	{name: "v1 longer than 107 bytes is malformed", in: []byte("PROXY TCP4 " + strings.Repeat("1", 120) + "\r\n"), wantErr: true},
	{name: "v2 IPv4 names the source", in: append(v2IPv4("203.0.113.9", 5555), "GET"...), want: "203.0.113.9:5555", rest: "GET"},
	{name: "v2 IPv6 names the source and skips TLVs", in: append(v2IPv6("2001:db8::9", 5555), "GET"...), want: "[2001:db8::9]:5555", rest: "GET"},
	{name: "v2 LOCAL keeps the peer", in: append(v2Header(0, 0, nil), "GET"...), rest: "GET"},
	{name: "v2 with a short IPv4 body is malformed", in: v2Header(1, 0x11, []byte{1, 2, 3}), wantErr: true},
	{name: "v2 with an oversized body is malformed", in: v2Header(1, 0x11, make([]byte, maxV2Body+1)), wantErr: true},
	{name: "v2 truncated is malformed", in: v2IPv4("203.0.113.9", 1)[:20], wantErr: true},
	{name: "no header passes through", in: []byte("POST / HTTP/1.1\r\n"), rest: "POST / HTTP/1.1\r\n"},
}

func TestReadProxyHeader(t *testing.T) {
	for _, tc := range headerCases {
		t.Run(tc.name, func(t *testing.T) {
			br := bufio.NewReader(bytes.NewReader(tc.in))
			got, err := ReadProxyHeader(br)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if tc.wantErr {
				return
			}
			if s := addrString(got); s != tc.want {
				t.Fatalf("source = %q, want %q", s, tc.want)
			}
			rest, _ := io.ReadAll(br)
			if string(rest) != tc.rest {
				t.Fatalf("rest = %q, want %q", rest, tc.rest)
			}
		})
	}
}

func addrString(a netip.AddrPort) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// serve runs an HTTP server on a PROXY-protocol listener that answers with
// the RemoteAddr it sees.
func serve(t *testing.T, trusted []netip.Prefix, timeout time.Duration) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, PeerAddr(r.RemoteAddr).String())
	})}
	go srv.Serve(ProxyProtocolListener(l, trusted, timeout))
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

func roundTrip(t *testing.T, addr string, prefix []byte) (string, error) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write(append(prefix, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"...))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b), nil
}

func TestProxyProtocolListener(t *testing.T) {
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	t.Run("a trusted peer's v1 header sets RemoteAddr", func(t *testing.T) {
		addr := serve(t, loopback, time.Second)
		got, err := roundTrip(t, addr, []byte("PROXY TCP4 203.0.113.9 127.0.0.1 5555 443\r\n"))
		if err != nil || got != "203.0.113.9" {
			t.Fatalf("got %q, %v", got, err)
		}
	})
	t.Run("a trusted peer's v2 IPv6 header sets RemoteAddr", func(t *testing.T) {
		addr := serve(t, loopback, time.Second)
		got, err := roundTrip(t, addr, v2IPv6("2001:db8::9", 1234))
		if err != nil || got != "2001:db8::9" {
			t.Fatalf("got %q, %v", got, err)
		}
	})
	t.Run("a trusted peer without a header keeps its address", func(t *testing.T) {
		addr := serve(t, loopback, time.Second)
		got, err := roundTrip(t, addr, nil)
		if err != nil || got != "127.0.0.1" {
			t.Fatalf("got %q, %v", got, err)
		}
	})
	t.Run("an untrusted peer's header is not believed", func(t *testing.T) {
		addr := serve(t, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, time.Second)
		got, err := roundTrip(t, addr, []byte("PROXY TCP4 203.0.113.9 127.0.0.1 5555 443\r\n"))
		if err == nil && got == "203.0.113.9" {
			t.Fatalf("the spoofed source was believed")
		}
	})
	t.Run("a malformed header closes the connection", func(t *testing.T) {
		addr := serve(t, loopback, time.Second)
		if got, err := roundTrip(t, addr, []byte("PROXY TCP4 nonsense\r\n")); err == nil {
			t.Fatalf("got a response %q", got)
		}
	})
	t.Run("a slow header is cut off after the timeout", func(t *testing.T) {
		addr := serve(t, loopback, 200*time.Millisecond)
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("PROXY TCP4 "))
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		start := time.Now()
		_, err = c.Read(make([]byte, 1))
		if err == nil || time.Since(start) > 2*time.Second {
			t.Fatalf("connection not closed promptly: %v after %v", err, time.Since(start))
		}
	})
}

func TestASlowTrustedPeerDoesNotHoldUpOthers(t *testing.T) {
	addr := serve(t, []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, 3*time.Second)
	slow, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	slow.Write([]byte("PROXY TCP4 ")) // and nothing more
	start := time.Now()
	got, err := roundTrip(t, addr, []byte("PROXY TCP4 203.0.113.9 127.0.0.1 5555 443\r\n"))
	if err != nil || got != "203.0.113.9" {
		t.Fatalf("got %q, %v", got, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the second connection waited %v behind the slow one", d)
	}
}

func TestRemoteAddrIsFinalWhenAcceptReturns(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pl := ProxyProtocolListener(l, []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, time.Second)
	t.Cleanup(func() { pl.Close() })
	go func() {
		c, err := net.Dial("tcp", l.Addr().String())
		if err == nil {
			c.Write(v2IPv4("198.51.100.4", 7))
			time.Sleep(500 * time.Millisecond)
			c.Close()
		}
	}()
	c, err := pl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.RemoteAddr().String(); got != "198.51.100.4:7" {
		t.Fatalf("RemoteAddr = %s", got)
	}
	pl.Close()
	if _, err := pl.Accept(); err == nil {
		t.Fatal("Accept after Close succeeded")
	}
}

func FuzzReadProxyHeader(f *testing.F) {
	for _, tc := range headerCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		br := bufio.NewReader(bytes.NewReader(b))
		a, err := ReadProxyHeader(br)
		if err == nil && a.IsValid() && a.Addr().Is4In6() {
			t.Fatalf("mapped address %v", a)
		}
	})
}
