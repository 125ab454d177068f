package proxy_test

import (
	"context"
	"log"
	"net/http"

	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/proxy"
)

// A server builds one Backend per configured backend, all sharing one
// Sockets registry that outlives configuration reloads.
func ExampleNew() {
	sockets := proxy.NewSockets()
	dashboard, err := proxy.New("dashboard", &config.Backend{
		URL:        "http://127.0.0.1:8501",
		HealthPath: "/_stcore/health",
	}, sockets)
	if err != nil {
		log.Fatal(err)
	}
	// Sign-in code adds identity headers after moat's own were stripped.
	dashboard.SetIdentity = func(out, in *http.Request) {
		out.Header.Set("X-Moat-User-Email", "alice@example.com")
	}
	ctx, stop := context.WithCancel(context.Background())
	go dashboard.Run(ctx) // health checks, for /readyz and moat_backend_up

	_ = http.Handler(dashboard) // the route's handler, after policy and sign-in

	// On SIGTERM, after the listeners stop:
	sockets.CloseAll(1001, "server shutting down")
	// When a session is revoked:
	_ = sockets.CloseSession("session-hash", 1008, "signed out")
	stop()
	dashboard.Close()
}
