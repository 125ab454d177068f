package pat

import (
	"strings"
	"testing"
)

func TestNewTokensAreWellFormedUniqueAndHashed(t *testing.T) {
	a, ha := New()
	b, hb := New()
	if a == b || ha == hb {
		t.Fatal("two tokens are equal")
	}
	if !strings.HasPrefix(a, Prefix) || !Valid(a) {
		t.Fatalf("token %q is not well formed", a)
	}
	if ha != Hash(a) || len(ha) != 64 || strings.Contains(ha, a[len(Prefix):]) {
		t.Fatalf("hash %q", ha)
	}
}

func TestValidRefusesLookAlikes(t *testing.T) {
	good, _ := New()
	for name, s := range map[string]string{
		"empty":             "",
		"no prefix":         good[len(Prefix):],
		"wrong prefix":      "moat_xyz_" + good[len(Prefix):],
		"too short":         good[:len(good)-1],
		"too long":          good + "A",
		"not base64url":     good[:len(good)-1] + "+",
		"an ID token":       "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln",
		"prefix only":       Prefix,
		"with whitespace":   " " + good[1:],
		"upper-case prefix": strings.ToUpper(Prefix) + good[len(Prefix):],
	} {
		if Valid(s) {
			t.Errorf("%s: %q accepted", name, s)
		}
	}
}
