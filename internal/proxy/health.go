package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/moat-dev/moat/internal/metrics"
)

// Healthy reports whether the backend's last health check passed. A
// backend without health_path is always healthy; one with a health_path is
// unhealthy until Run's first check passes. An unhealthy backend still
// gets requests: health is information for /readyz and metrics, and the
// backend's own answer (or moat's 502) is more useful to a visitor than a
// guess.
func (b *Backend) Healthy() bool { return b.healthy.Load() }

// Run checks the backend's health_path every health_interval until ctx
// ends, updating Healthy and the moat_backend_up metric. The first check
// runs at once. Without a health_path, Run only marks the backend up and
// waits for ctx.
func (b *Backend) Run(ctx context.Context) {
	up := metrics.BackendUp.WithLabelValues(b.name)
	if b.cfg.HealthPath == "" {
		b.healthy.Store(true)
		up.Set(1)
		<-ctx.Done()
		return
	}
	interval := orDefault(b.cfg.HealthInterval.D(), defaultHealthInterval)
	client := &http.Client{
		Transport: b.transport,
		Timeout:   min(interval, b.transport.ResponseHeaderTimeout),
		// A redirect is an answer: the backend is up.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	hp, err := url.Parse(b.cfg.HealthPath)
	if err != nil {
		b.log().Error("proxy: invalid health_path", "backend", b.name, "error", err.Error())
		up.Set(0)
		<-ctx.Done()
		return
	}
	u := *b.target
	u.Path, u.RawPath = joinURLPath(b.target, hp)
	u.RawQuery = hp.RawQuery
	healthURL := u.String()

	first := true

	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		err := b.check(ctx, client, healthURL)
		if ctx.Err() != nil {
			return
		}
		was := b.healthy.Swap(err == nil)
		switch {
		case err == nil:
			up.Set(1)
			if !was {
				b.log().Info("proxy: backend healthy", "backend", b.name)
			}
		default:
			up.Set(0)
			if was || first {
				b.log().Warn("proxy: backend unhealthy", "backend", b.name, "error", err.Error())
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

func (b *Backend) check(ctx context.Context, client *http.Client, target string) error {
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
