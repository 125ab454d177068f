package proxy

import (
	"encoding/binary"
	"testing"
)

// encodeFrameHeader writes a frame header the way RFC 6455 section 5.2
// draws it, independently of parseFrameHeader: the shortest length form,
// then the mask key.
func encodeFrameHeader(b0 byte, masked bool, size uint64, key [4]byte) []byte {
	h := []byte{b0, 0}
	switch {
	case size < 126:
		h[1] = byte(size)
	case size <= 0xffff:
		h[1] = 126
		h = binary.BigEndian.AppendUint16(h, uint16(size))
	default:
		h[1] = 127
		h = binary.BigEndian.AppendUint64(h, size)
	}
	if masked {
		h[1] |= 0x80
		h = append(h, key[:]...)
	}
	return h
}

// FuzzFrameHeader parses arbitrary frame headers: the announced length is
// what RFC 6455 says the bytes mean, never negative, a 64-bit length with
// its top bit set is refused, and a header written from the parsed fields
// parses back to them.
func FuzzFrameHeader(f *testing.F) {
	f.Add([]byte{0x81, 0x85, 1, 2, 3, 4})
	f.Add([]byte{0x82, 0x7e, 0x01, 0x00})
	f.Add([]byte{0x82, 0xfe, 0xff, 0xff, 9, 9, 9, 9})
	f.Add([]byte{0x88, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4})
	f.Add([]byte{0x88, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0x01, 0x7f, 0, 0, 0, 0, 0, 0, 0, 5})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < 2 {
			return
		}
		n := frameHeaderLen(b[1])
		if n < 2 || n > 14 {
			t.Fatalf("header length %d", n)
		}
		if len(b) < n {
			return
		}
		fh, err := parseFrameHeader(b[:n])
		var want uint64
		switch l := b[1] & 0x7f; l {
		case 126:
			want = uint64(b[2])<<8 | uint64(b[3])
		case 127:
			for _, c := range b[2:10] {
				want = want<<8 | uint64(c)
			}
		default:
			want = uint64(l)
		}
		if want>>63 != 0 {
			if err == nil {
				t.Fatalf("length %d with the top bit set was accepted", want)
			}
			return
		}
		if err != nil || fh.size < 0 || uint64(fh.size) != want || fh.opcode != b[0]&0x0f || fh.masked != (b[1]&0x80 != 0) {
			t.Fatalf("parseFrameHeader(% x) = %+v, %v; want size %d", b[:n], fh, err, want)
		}
		var key [4]byte
		if fh.masked {
			copy(key[:], b[n-4:n])
		}
		again := encodeFrameHeader(b[0], fh.masked, want, key)
		if len(again) != frameHeaderLen(again[1]) {
			t.Fatalf("re-encoded header % x has length %d, frameHeaderLen says %d", again, len(again), frameHeaderLen(again[1]))
		}
		if fh2, err := parseFrameHeader(again); err != nil || fh2 != fh {
			t.Fatalf("re-encoded header parses as %+v, %v; want %+v", fh2, err, fh)
		}
	})
}
