package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/moat-dev/moat/internal/auth"
	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/fanout"
	"github.com/moat-dev/moat/internal/identity/throttle"
	"github.com/moat-dev/moat/internal/proxy"
	"github.com/moat-dev/moat/internal/ratelimit"
	"github.com/moat-dev/moat/internal/store"
	"github.com/moat-dev/moat/internal/tracing"
	"github.com/moat-dev/moat/internal/usage"
)

// process is what outlives every configuration: the store, the rate-limit
// counters, the registry of open WebSockets, and sign-in's process state
// (instance key, session cache, throttles, OIDC replay, hashing limiter,
// signing keys). It is built once when moat starts; each world is built on
// it, and a reload swaps only the world. Changing store or counters needs a
// restart. (The certificate source is swapped apart from the world too, but
// only when tls or the hosts change: see Server.certs.)
type process struct {
	store    store.Store
	counter  ratelimit.Counter
	sockets  *proxy.Sockets
	identity *auth.Process
	// bus carries changes between instances (PostgreSQL LISTEN/NOTIFY,
	// Redis pub/sub, or this process alone on SQLite).
	bus *fanout.Bus
	// usage counts who used which route; sign-in, the sockets and each
	// route's chain report to it.
	usage *usage.Collector
	// tracer traces requests (tracing.otlp_endpoint); nil when off.
	tracer *tracing.Tracer
}

// openProcess opens what cfg's process needs: the store, the counters and
// the instance key, loaded here and nowhere else.
func openProcess(cfg *config.Config, log *slog.Logger) (*process, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := store.Open(ctx, cfg.StoreDSN())
	if errors.Is(err, store.ErrUnavailable) {
		return nil, fmt.Errorf("open store: %w (moat does not start without its database: check that it is up and reachable from here; a supervisor that restarts moat brings it up once it is)", err)
	}
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	p := &process{store: st, sockets: proxy.NewSockets()}
	if p.counter, err = ratelimit.Open(cfg.Counters); err != nil {
		st.Close()
		return nil, err
	}
	key, err := auth.InstanceKey(ctx, cfg, st)
	if err != nil {
		p.close()
		return nil, err // "instance key: …" already
	}
	if p.identity, err = auth.NewProcess(st, key, log); err != nil {
		p.close()
		return nil, err
	}
	// The sign-in throttles count for the whole cluster: in Redis when
	// counters: names one (counters_fail applies while it is down), else
	// in the store.
	th, err := throttle.Open(cfg.Counters, cfg.CountersFail, st, log)
	if err != nil {
		p.close()
		return nil, err
	}
	p.identity.UseThrottle(th)
	// Changes reach every instance within a second (issue 9): the store's
	// PostgreSQL, else the counters' Redis. An unreachable server is no
	// reason to refuse to start: the bus connects when it can, and the
	// store poll covers the gap.
	if p.bus, err = fanout.Open(ctx, cfg.StoreDSN(), cfg.Counters, log); err != nil {
		p.close()
		return nil, err
	}
	p.identity.Bus = p.bus
	// A revoked session loses its open WebSockets at once (issue #3: within
	// 10 s, also for revocations made elsewhere).
	p.identity.OnRevoke = func(sessionID string) {
		go p.sockets.CloseSession(sessionID, websocketPolicyViolation, "signed out")
	}
	p.useUsage(usage.New(st, cfg.Usage, log))
	if p.tracer, err = tracing.New(cfg.Tracing, log); err != nil {
		p.close()
		return nil, err
	}
	return p, nil
}

// useUsage makes c the process's usage counter, the one sign-in and the
// sockets report to.
func (p *process) useUsage(c *usage.Collector) {
	p.usage = c
	p.sockets.Usage = c
	p.identity.Usage = c
}

// close releases what the process holds, sending the spans still queued.
func (p *process) close() {
	if p.tracer != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = p.tracer.Shutdown(ctx)
		cancel()
	}
	if p.counter != nil {
		p.counter.Close()
	}
	if p.identity != nil {
		_ = p.identity.Throttle.Close()
	}
	if p.usage != nil {
		p.usage.Close() // writes the last counts, before the store closes
	}
	if p.bus != nil {
		p.bus.Close()
	}
	p.store.Close()
}
