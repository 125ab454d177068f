package testtool

import (
	"path/filepath"
	"testing"
)

func TestCIIsAnyValueButFalseAndZero(t *testing.T) {
	for v, want := range map[string]bool{"": false, "false": false, "0": false, "true": true, "1": true} {
		t.Setenv("CI", v)
		if CI() != want {
			t.Errorf("CI=%q: %v, want %v", v, CI(), want)
		}
	}
}

func TestFindTakesTheFirstNameThatExists(t *testing.T) {
	if p := Find(t, "it is part of every system", "no-such-program-here", "sh"); filepath.Base(p) != "sh" {
		t.Errorf("found %q, want sh", p)
	}
}
