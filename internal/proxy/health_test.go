package proxy

import (
	"context"
	"log/slog"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/metrics"
)

func backendUp(t *testing.T, name, replica string) float64 {
	t.Helper()
	var m dto.Metric
	if err := metrics.BackendUp.WithLabelValues(name, replica).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}

func TestHealthCheckFollowsTheBackend(t *testing.T) {
	var status atomic.Int32
	status.Store(http.StatusServiceUnavailable)
	var path atomic.Value
	srv := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path.Store(r.URL.Path)
		w.WriteHeader(int(status.Load()))
	}))
	b, err := New("health-test", &config.Backend{
		URL: srv.URL, HealthPath: "/_stcore/health", HealthInterval: config.Duration(10 * time.Millisecond),
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b.Log = slog.New(slog.DiscardHandler)
	if b.Healthy() {
		t.Fatal("a backend with a health_path is healthy before its first check")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { b.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	eventually(t, "a first failing check", func() bool { return path.Load() != nil })
	if b.Healthy() || backendUp(t, "health-test", srv.URL) != 0 {
		t.Fatal("a 503 counted as healthy")
	}
	status.Store(http.StatusOK)
	eventually(t, "healthy", b.Healthy)
	if backendUp(t, "health-test", srv.URL) != 1 || path.Load() != "/_stcore/health" {
		t.Fatalf("metric %v, path %v", backendUp(t, "health-test", srv.URL), path.Load())
	}
	status.Store(http.StatusInternalServerError)
	eventually(t, "unhealthy", func() bool { return !b.Healthy() })
}

func TestBackendWithoutHealthPathIsAlwaysHealthy(t *testing.T) {
	b, err := New("no-health", &config.Backend{URL: refusedURL(t)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !b.Healthy() {
		t.Fatal("not healthy")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { b.Run(ctx); close(done) }()
	eventually(t, "metric up", func() bool { return backendUp(t, "no-health", b.replicas[0].label) == 1 })
	cancel()
	<-done
}

func TestNewRejectsABadURL(t *testing.T) {
	for _, u := range []string{"", "ftp://x", "http://", "127.0.0.1:8501"} {
		if _, err := New("x", &config.Backend{URL: u}, nil); err == nil {
			t.Errorf("New accepted url %q", u)
		}
	}
}
