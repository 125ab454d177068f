package throttle

import (
	"context"
	"net/netip"
	"testing"
	"time"
)

func TestThrottleDoublesTheWaitThenLocks(t *testing.T) {
	th := NewMemory(Limits{Free: 2, Base: time.Second, Max: 4 * time.Second, LockAfter: 6, LockFor: time.Minute}).(*memory)
	now := time.Unix(1000, 0)
	for i, want := range []time.Duration{0, 0, time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second} {
		if d, locked := th.wait("k", now); d != want || locked {
			t.Fatalf("after %d failures: wait %v locked %v, want %v", i, d, locked, want)
		}
		now = now.Add(want)
		if locked := th.fail("k", now); locked != (i == 5) {
			t.Fatalf("failure %d: locked = %v", i+1, locked)
		}
	}
	if d, locked := th.wait("k", now.Add(time.Second)); !locked || d != time.Minute-time.Second {
		t.Fatalf("after the lock: wait %v locked %v", d, locked)
	}
	if d, _ := th.wait("other", now); d != 0 {
		t.Error("another key is throttled")
	}
	if d, locked := th.wait("k", now.Add(time.Minute+time.Second)); d != 0 || locked {
		t.Errorf("after the lock ended: wait %v locked %v", d, locked)
	}
	th.fail("k", now)
	_ = th.Reset(context.Background(), "k")
	if d, _ := th.wait("k", now); d != 0 {
		t.Error("reset kept the failures")
	}
}

func TestThrottleStaysBounded(t *testing.T) {
	th := NewMemory(Clients).(*memory)
	now := time.Now()
	for i := range maxThrottleKeys + 500 {
		th.fail(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).String(), now)
	}
	if n := len(th.entries); n > maxThrottleKeys {
		t.Fatalf("%d entries, bound %d", n, maxThrottleKeys)
	}
}

func TestClientKeyGroupsAnIPv6Host(t *testing.T) {
	for _, tc := range []struct{ ip, want string }{
		{"203.0.113.7", "203.0.113.7"},
		{"::ffff:203.0.113.7", "203.0.113.7"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"},
	} {
		if got := ClientKey(netip.MustParseAddr(tc.ip)); got != tc.want {
			t.Errorf("ClientKey(%s) = %s, want %s", tc.ip, got, tc.want)
		}
	}
	if ClientKey(netip.Addr{}) != "unknown" {
		t.Error("no address is not one key")
	}
}
