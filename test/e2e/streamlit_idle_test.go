package e2e

import (
	"testing"
	"time"
)

// This test lives in its own file so that it sorts before the other
// Streamlit tests: it mostly sleeps, and starting it first lets the others
// run beside it within go test's default parallelism of GOMAXPROCS.

// idleFor is how long the idle test leaves the WebSocket alone: longer than
// the 30 s that Google's load balancer allowed the seed's Streamlit
// (timeout_sec = 30 bounds a WebSocket's life there).
const idleFor = 36 * time.Second

// TestStreamlitSessionOutlivesAThirtySecondCapWhileIdle holds a proxied
// Streamlit WebSocket open with no user action for longer than the seed's
// 30 s cap, then proves the same socket still carries a rerun.
func TestStreamlitSessionOutlivesAThirtySecondCapWhileIdle(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 36 s")
	}
	t.Parallel()
	st := sharedStreamlit(t)
	m := startMoat(t, dashboardConfig(st))
	ctx, sockets := openDashboard(t, m)
	before := streamSocket(t, m, sockets)

	time.Sleep(idleFor)

	after := streamSocket(t, m, sockets) // still one socket, never closed
	if n, _ := m.Metric(t, "moat_websockets_open", `route="localhost"`); n != 1 {
		t.Errorf("after %s idle moat_websockets_open = %v, want 1", idleFor, n)
	}
	selectMode(t, ctx, "テーブル")
	waitRendered(t, ctx, "table", 20*time.Second)
	now := streamSocket(t, m, sockets)
	if now.Frames <= after.Frames {
		t.Errorf("the rerun after %s idle did not travel over the original WebSocket (frames %d → %d)", idleFor, after.Frames, now.Frames)
	}
	t.Logf("stream WebSocket frames: %d at load, %d after %s idle, %d after a rerun", before.Frames, after.Frames, idleFor, now.Frames)
	screenshot(t, ctx, "after-idle")
}
