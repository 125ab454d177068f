package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/moat-dev/moat/internal/metrics"
)

// Healthy reports whether any of the backend's replicas passed its last
// health check: the backend can serve while one replica can. A replica
// without health_path is always healthy; one with a health_path is
// unhealthy until Run's first check passes.
//
// Requests go to healthy replicas only (see pick). When none is healthy,
// they are still forwarded: the app's own answer (or moat's 502) is more
// useful to a visitor than a guess.
func (b *Backend) Healthy() bool {
	for _, rp := range b.replicas {
		if rp.healthy.Load() {
			return true
		}
	}
	return false
}

// ReplicaHealth reports each replica's last health check, by its URL.
func (b *Backend) ReplicaHealth() map[string]bool {
	out := make(map[string]bool, len(b.replicas))
	for _, rp := range b.replicas {
		out[rp.label] = rp.healthy.Load()
	}
	return out
}

// Run checks every replica's health_path every health_interval until ctx
// ends, updating Healthy and the moat_backend_up{backend,replica} metric.
// The first checks run at once. A replica that fails is taken out of the
// rotation, its users move to the others, and it is put back (and its
// users with it) when a check passes again. Without a health_path, Run
// only marks the replicas up and waits for ctx.
func (b *Backend) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, rp := range b.replicas {
		wg.Go(func() { b.check(ctx, rp) })
	}
	wg.Wait()
}

// check runs one replica's health checks until ctx ends.
func (b *Backend) check(ctx context.Context, rp *replica) {
	up := metrics.BackendUp.WithLabelValues(b.name, rp.label)
	if b.cfg.HealthPath == "" {
		rp.healthy.Store(true)
		up.Set(1)
		<-ctx.Done()
		return
	}
	interval := orDefault(b.cfg.HealthInterval.D(), defaultHealthInterval)
	client := &http.Client{
		Transport: b.transport,
		Timeout:   min(interval, b.transport.ResponseHeaderTimeout),
		// A redirect is an answer: the replica is up.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	hp, err := url.Parse(b.cfg.HealthPath)
	if err != nil {
		b.log().Error("proxy: invalid health_path", "backend", b.name, "error", err.Error())
		up.Set(0)
		<-ctx.Done()
		return
	}
	u := *rp.target
	u.Path, u.RawPath = joinURLPath(rp.target, hp)
	u.RawQuery = hp.RawQuery
	healthURL := u.String()

	first := true
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		err := probe(ctx, client, healthURL)
		if ctx.Err() != nil {
			return
		}
		was := rp.healthy.Swap(err == nil)
		switch {
		case err == nil:
			up.Set(1)
			if !was {
				b.log().Info("proxy: backend healthy", "backend", b.name, "replica", rp.label)
			}
		default:
			up.Set(0)
			if was || first {
				b.log().Warn("proxy: backend unhealthy", "backend", b.name, "replica", rp.label, "error", err.Error())
			}
		}
		first = false
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// probe asks target once; an answer below 400 is healthy.
func probe(ctx context.Context, client *http.Client, target string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return fmt.Errorf("health check: %w", err)
	}
	req.Header.Set("User-Agent", "moat-health-check")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("health check: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode >= 400 {
		return fmt.Errorf("health check: %s answered %d", target, resp.StatusCode)
	}
	return nil
}
