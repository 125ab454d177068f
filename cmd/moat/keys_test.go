package main

import (
	"strings"
	"testing"

	"github.com/moat-dev/moat/internal/identity/assertion"
)

func TestKeysRotateAddsAKeyAndKeepsTheOldOnePublished(t *testing.T) {
	e := newCLIEnv(t)
	t.Setenv("MOAT_SECRET_KEY", "")
	first := e.mustMoat(t, "", "keys", "rotate")
	if !strings.HasPrefix(first, "new signing key ") {
		t.Fatalf("rotate said %q", first)
	}
	e.mustMoat(t, "", "keys", "rotate")
	out := e.mustMoat(t, "", "keys", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.Contains(lines[1], "signing") || !strings.Contains(lines[2], "still published") {
		t.Fatalf("keys list:\n%s", out)
	}
	keys, err := assertion.ListKeys(t.Context(), e.store(t))
	if err != nil || len(keys) != 2 || !keys[1].Published {
		t.Fatalf("ListKeys = %+v, %v", keys, err)
	}
	if audit := e.mustMoat(t, "", "audit"); !strings.Contains(audit, "keys.rotate") {
		t.Errorf("no keys.rotate in the audit log:\n%s", audit)
	}
}
