package policy

import (
	"encoding/binary"
	"net/netip"
	"slices"
)

// cidrSet answers "is this address in any of these ranges?" in time that
// does not grow with the number of ranges in practice: the prefixes are
// turned into sorted, merged, non-overlapping [lo, hi] intervals, one list
// per family, searched by bisection (O(log n): 17 steps for 100,000).
type cidrSet struct {
	all bool
	v4  []v4span
	v6  []v6span
}

type v4span struct{ lo, hi uint32 }

type u128 struct{ hi, lo uint64 }

func (a u128) less(b u128) bool { return a.hi < b.hi || a.hi == b.hi && a.lo < b.lo }

// next returns a+1 and whether it did not overflow.
func (a u128) next() (u128, bool) {
	if a.lo != ^uint64(0) {
		return u128{a.hi, a.lo + 1}, true
	}
	if a.hi != ^uint64(0) {
		return u128{a.hi + 1, 0}, true
	}
	return a, false
}

type v6span struct{ lo, hi u128 }

func addr128(a netip.Addr) u128 {
	b := a.As16()
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

// newCIDRSet builds a set from masked prefixes. An IPv4-mapped IPv6 prefix
// is taken as the IPv4 prefix it maps, since client addresses are unmapped.
func newCIDRSet(prefixes []netip.Prefix) *cidrSet {
	s := &cidrSet{}
	for _, p := range prefixes {
		p = p.Masked()
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		if p.Addr().Is4() {
			lo := binary.BigEndian.Uint32(p.Addr().AsSlice())
			hi := lo | uint32(uint64(1)<<(32-p.Bits())-1)
			s.v4 = append(s.v4, v4span{lo, hi})
			continue
		}
		lo := addr128(p.Addr())
		hi := lo
		host := 128 - p.Bits()
		switch {
		case host >= 64:
			hi.lo = ^uint64(0)
			if host == 128 {
				hi.hi = ^uint64(0)
			} else {
				hi.hi |= uint64(1)<<(host-64) - 1
			}
		case host > 0:
			hi.lo |= uint64(1)<<host - 1
		}
		s.v6 = append(s.v6, v6span{lo, hi})
	}
	slices.SortFunc(s.v4, func(a, b v4span) int {
		switch {
		case a.lo < b.lo:
			return -1
		case a.lo > b.lo:
			return 1
		}
		return 0
	})
	s.v4 = mergeV4(s.v4)
	slices.SortFunc(s.v6, func(a, b v6span) int {
		switch {
		case a.lo.less(b.lo):
			return -1
		case b.lo.less(a.lo):
			return 1
		}
		return 0
	})
	s.v6 = mergeV6(s.v6)
	return s
}

func mergeV4(in []v4span) []v4span {
	out := in[:0]
	for _, sp := range in {
		if n := len(out); n > 0 && (out[n-1].hi == ^uint32(0) || sp.lo <= out[n-1].hi+1) {
			out[n-1].hi = max(out[n-1].hi, sp.hi)
			continue
		}
		out = append(out, sp)
	}
	return slices.Clip(out)
}

func mergeV6(in []v6span) []v6span {
	out := in[:0]
	for _, sp := range in {
		if n := len(out); n > 0 {
			nx, ok := out[n-1].hi.next()
			if !ok || !nx.less(sp.lo) {
				if out[n-1].hi.less(sp.hi) {
					out[n-1].hi = sp.hi
				}
				continue
			}
		}
		out = append(out, sp)
	}
	return slices.Clip(out)
}

// contains reports whether a (unmapped) is in the set.
func (s *cidrSet) contains(a netip.Addr) bool {
	if s.all {
		return true
	}
	if a.Is4() {
		b := a.As4()
		x := binary.BigEndian.Uint32(b[:])
		// Find the first span with lo > x; the one before may hold x.
		i, j := 0, len(s.v4)
		for i < j {
			h := int(uint(i+j) >> 1)
			if s.v4[h].lo <= x {
				i = h + 1
			} else {
				j = h
			}
		}
		return i > 0 && x <= s.v4[i-1].hi
	}
	if !a.Is6() {
		return false
	}
	x := addr128(a)
	i, j := 0, len(s.v6)
	for i < j {
		h := int(uint(i+j) >> 1)
		if !x.less(s.v6[h].lo) {
			i = h + 1
		} else {
			j = h
		}
	}
	return i > 0 && !s.v6[i-1].hi.less(x)
}
